//! Felix's calculation graph, pure: the syncer's updates for the prefixes Felix follows go in,
//! the desired dataplane state of the local node comes out, as plain data and as the list of
//! changes each update made. No netlink, no clock, no I/O: reconcilers consume the output.
//!
//! ```text
//!  Syncer ──SyncUpdate──▶ CalcGraph::apply ──Outcome{changes}──▶ reconcilers (routes, vxlan
//!                              │                                 device, neigh/FDB, nft NAT,
//!                              └─ state(): DesiredState            MTU file, BGP seam)
//! ```
//!
//! - `input`: keys and stored JSON → typed facts (`watched_prefixes` lists the prefixes);
//! - `calc`: the graph (`CalcGraph`, `LocalFacts`, `Outcome`);
//! - `model`: output types (`Route`, `VxlanDevice`, `Neighbour`, `Fdb`, `NatOutgoing`, `Mtu`,
//!   `BgpRoute`, `DesiredState`, `Change`);
//! - `render`: `ip route` / `ip neigh` / `bridge fdb` text of a state (golden files, lab output);
//! - `nat`: the natOutgoing nftables script (`nft -f`, one table we own, replaced atomically);
//! - `reconcile`: the only module touching the kernel (through `calico-dataplane`'s traits):
//!   `Reconciler::apply`/`resync` move the kernel to a `DesiredState`, owning only its objects.

//!
//! How a reconciler consumes it: build `CalcGraph::new(LocalFacts)` (node name, uplink, its MTU),
//! feed every `SyncUpdate`; apply each `Outcome::changes` in order (a device comes before the
//! routes and neighbours that use it, and goes after them). Delete kernel objects that are not
//! desired only once `in_sync()` is true, and only those it owns (`felix_owns_route`: proto 80,
//! `vxlan.calico`, `cali*`). A periodic resync diffs `state()` against the kernel. Routes in
//! `DesiredState::bgp_routes` are the seam for BGP: `local` ones to advertise, others to expect.

pub mod calc;
pub mod input;
pub mod model;
pub mod nat;
pub mod reconcile;
pub mod render;

pub use calc::{CalcGraph, LocalFacts, Outcome};
pub use input::{InputError, watched_prefixes};
pub use model::*;
