//! calico-cni: the `calico` and `calico-ipam` CNI plugins.
//!
//! `spec` is the CNI specification layer (environment, configuration, results, errors,
//! delegation). The Calico-specific ADD/DEL logic builds on it and on `calico-dataplane`
//! (kernel side effects) and `calico-ipam` (address allocation).

pub mod calico_plugin;
pub mod context;
pub mod ipam_plugin;
pub mod spec;
pub mod wiring;
