//! Naming rules: WorkloadEndpoint names, `cali` interface names, VTEP MAC addresses.
