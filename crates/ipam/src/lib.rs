//! Calico IPAM.
//!
//! `block` owns one `AllocationBlock` (a small CIDR carved from an IP pool, stored at
//! `/calico/ipam/v2/assignment/ipv4/block/<cidr>`) and every operation on it as pure functions
//! over the value: no datastore, no clock, no randomness. The datastore-backed allocator reads a
//! block, applies one of these operations, and writes it back with compare-and-swap.
//!
//! ```text
//!   etcd bytes ──AllocationBlock::from_json (checked)──▶ block ──auto_assign/assign/release──▶
//!   block' ──to_json──▶ CAS write (retry from the top on conflict)
//! ```

pub mod allocator;
pub mod block;
pub mod check;
pub mod clock;
pub mod model;
pub mod pools;

pub use allocator::{
    AssignIpArgs, Assignments, Attrs, AutoAssignArgs, Ipam, IpamError, ReleaseResult,
};
pub use block::{AllocationAttribute, AllocationBlock, BlockError, ReleaseOutcome, ReleaseRequest};
pub use check::{Problem, ProblemKind, Report, check, repair};
