//! Calico IPAM: upstream's block allocator over our datastore.
//!
//! Pure modules (no I/O, no clock, no randomness of their own):
//! - `block`: one `AllocationBlock` and every operation on it;
//! - `model`: the other stored values (affinities, handles, IPAM config) in upstream's JSON;
//! - `pools`: pool selection, IPReservations, the host's pseudo-random block order.
//!
//! The edge: `allocator` (`Ipam`: auto-assign, assign, release, config) reads and writes the
//! datastore with compare-and-swap loops; `check` cross-checks the stored state and repairs
//! what crashes leave; `usage` totals per pool and block for `calicoctl ipam show`.
//!
//! ```text
//!   etcd bytes ──from_json (checked)──▶ block ──auto_assign/assign/release──▶
//!   block' ──to_json──▶ CAS write (retry from the top on conflict, at most 100 times)
//! ```

pub mod allocator;
pub mod block;
pub mod check;
pub mod clock;
pub mod model;
pub mod pools;
pub mod usage;

pub use allocator::{
    AssignIpArgs, Assignments, Attrs, AutoAssignArgs, CACHE_TTL, HostRelease, Ipam, IpamError,
    NodeDeleteError, NodeDeletion, ReleaseResult, node_config_name,
};
pub use block::{AllocationAttribute, AllocationBlock, BlockError, ReleaseOutcome, ReleaseRequest};
pub use check::{Problem, ProblemKind, Report, check, repair, repair_problems};
pub use usage::{BlockUsage, PoolUsage};
