//! calico-dataplane: the only crate that touches the Linux kernel (CONVENTIONS 1 and 6).
//!
//! - `netlink`: our own small synchronous rtnetlink client (veth with the peer created directly
//!   in a namespace, links, addresses, routes, batched route changes, a VXLAN device, permanent
//!   neighbours, bridge FDB entries) behind the `Rtnl` trait.
//! - `netns`: open namespaces and run closures inside them on a dedicated thread.
//! - `nft`: nftables scripts applied as one transaction (`nft -f -`).
//! - `sysctl`: `/proc/sys` writes by path components (names with dots are fine).
//! - `bench` (feature `test-util`): route programming through `apply_routes` vs `ip -batch`.
//! - `fake`: recording fakes of `Rtnl`, `Sysctl`, `Nft` and the netlink transport for unit tests.
//!
//! Callers (the CNI plugin, Felix) hold `&mut dyn Rtnl` / `&mut dyn Sysctl`, so their logic is
//! tested with fakes and only this crate's tests need a real kernel and root.

#[cfg(feature = "test-util")]
pub mod bench;
pub mod error;
pub mod fake;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod rtnl;
pub mod sysctl;
#[cfg(feature = "test-util")]
pub mod testns;

pub use error::{Error, Result};
pub use netlink::l2::{FdbEntry, Neighbour, VxlanLink, VxlanSpec, format_mac, parse_mac};
pub use netlink::types::{
    Address, Family, Link, LinkChange, Mac, PROTO_BOOT, PROTO_KERNEL, Route, RouteChange,
    RouteFilter, RouteKind, Scope, TABLE_MAIN, VethEnd, VethSpec,
};
pub use netlink::{BatchFailure, Netlink};
pub use netns::NetNs;
pub use nft::{Nft, NftCommand};
pub use rtnl::Rtnl;
pub use sysctl::{ProcSys, Sysctl, SysctlKey};
