//! calico-cni: the `calico` and `calico-ipam` CNI plugins.
//!
//! - `spec`: the CNI specification layer (environment, configuration, results, errors,
//!   delegation, one invocation end to end).
//! - `context`: what a request implies before anything changes (node name, MTU, datastore,
//!   workload identity and names, the log file).
//! - `ipam_plugin`: `calico-ipam` over `calico-ipam` (the crate), handle `<network>.<containerID>`.
//! - `wiring`: the kernel side of a pod (veth, sysctls, addresses, routes) over `calico-dataplane`.
//! - `calico_plugin`: `calico` — delegated IPAM, wiring, the WorkloadEndpoint, rollback.
//!
//! The binaries in `src/bin` only call `spec::run::run_io` with one of the two plugins.

pub mod spec;

pub mod calico_plugin;
pub mod context;
pub mod ipam_plugin;
pub mod wiring;
