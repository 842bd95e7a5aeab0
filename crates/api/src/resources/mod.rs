//! One module per kind or family. Each kind is `{apiVersion, kind, metadata, spec}` with
//! upstream's exact camelCase field names, plus `apply_defaults` and `validate`.

pub mod bgp;
pub mod bgpfilter;
pub mod cluster;
pub mod common;
pub mod endpoint;
pub mod felix;
pub mod ipam;
pub mod ippool;
pub mod node;
pub mod policy;
pub mod rule;

pub use bgp::*;
pub use bgpfilter::*;
pub use cluster::*;
pub use common::{AsNumber, Port, Protocol};
pub use endpoint::*;
pub use felix::*;
pub use ipam::*;
pub use ippool::*;
pub use node::*;
pub use policy::*;
pub use rule::*;
