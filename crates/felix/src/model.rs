//! The calculation graph's output: the desired dataplane state of the local node as plain data,
//! and the changes that move one desired state to the next.
//!
//! Nothing here names a netlink type: the reconcilers (in `crates/dataplane` or felix's own
//! reconcile module) translate these values into kernel objects. Every collection is keyed so a
//! reconciler can diff it against what the kernel reports (routes by destination, neighbours by
//! address, FDB entries by MAC).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Name of the IPv4 VXLAN device Felix owns.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// Name of the IPv6 VXLAN device Felix owns (same VNI and port as the IPv4 one).
pub const VXLAN_V6_DEVICE: &str = "vxlan-v6.calico";
/// Name of the IPIP device (the kernel's `tunl0`).
pub const IPIP_DEVICE: &str = "tunl0";
/// Upstream's default VXLAN network identifier.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// IANA VXLAN port, upstream's default.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// Route protocol Felix marks its blackhole, same-subnet and IPIP routes with (`proto 80`).
pub const FELIX_ROUTE_PROTO: u8 = 80;
/// `RTPROT_BOOT`: what local workload and VXLAN routes carry (iproute2 prints no `proto`).
pub const BOOT_ROUTE_PROTO: u8 = 3;
/// Bytes of overhead each encapsulation adds to a packet (IPv4 outer header).
pub const VXLAN_OVERHEAD: u32 = 50;
pub const IPIP_OVERHEAD: u32 = 20;
/// VXLAN overhead with an IPv6 outer header.
pub const VXLAN_V6_OVERHEAD: u32 = 70;

/// The VXLAN device that carries traffic of an address family.
pub fn vxlan_device_for(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => VXLAN_DEVICE,
        IpAddr::V6(_) => VXLAN_V6_DEVICE,
    }
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RouteKind {
    /// `blackhole <block> proto 80`: a local affine block (so addresses not yet in use drop
    /// instead of following the default route).
    Blackhole,
    /// `<ip> dev <iface> scope link`: a local workload (`cali*`), or a remote VTEP address that
    /// no block route covers (`dev vxlan.calico`).
    Device { iface: String },
    /// `<dst> via <remote vtep> dev vxlan.calico onlink` (`vxlan-v6.calico` for an IPv6 VTEP).
    ViaVxlan { gw: IpAddr },
    /// `<dst> via <node ip> dev <uplink> proto 80 onlink`: same subnet (CrossSubnet).
    ViaNode { gw: IpAddr, dev: String },
    /// `<dst> via <node ip> dev tunl0 proto 80 onlink`.
    ViaIpip { gw: Ipv4Addr },
}

/// Why a route exists, for logs and for the reconciler's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum RouteSource {
    LocalWorkload,
    LocalBlock,
    RemoteBlock,
    /// A single address of a block affine to another node, used by the target node.
    Borrowed,
    /// A remote node's VXLAN tunnel address not covered by a block route.
    RemoteVtep,
}

/// One desired kernel route in the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Route {
    pub dst: IpNet,
    pub kind: RouteKind,
    /// Route protocol number ([`FELIX_ROUTE_PROTO`] or [`BOOT_ROUTE_PROTO`]).
    pub proto: u8,
    /// `scope link` (true) or universe.
    pub scope_link: bool,
    pub onlink: bool,
    pub source: RouteSource,
    /// The node the traffic goes to (remote routes), for diagnostics.
    pub node: Option<String>,
}

/// A route Felix does not program because the pool has no encapsulation: BGP provides it. The
/// BGP speaker exports local blocks and expects remote ones; this is the seam between them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BgpRoute {
    pub dst: IpNet,
    /// Node hosting the destination.
    pub node: String,
    /// That node's address (the expected BGP next hop), when known.
    pub next_hop: Option<IpAddr>,
    /// True for blocks (and borrowed /32s) of the local node: routes BGP should advertise.
    pub local: bool,
    /// The pool's `disableBGPExport`.
    pub disable_export: bool,
}

/// The desired `vxlan.calico` (IPv4) or `vxlan-v6.calico` (IPv6) device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// The node IP of the device's family: source of encapsulated packets.
    pub local_ip: IpAddr,
    /// Tunnel address, configured as /32 (/128) on the device.
    pub tunnel_addr: IpAddr,
    pub mac: String,
    pub mtu: u32,
    /// Interface holding the node IP (the uplink), when known.
    pub parent: Option<String>,
}

/// The desired IPIP device (the kernel's `tunl0`): up, with the tunnel address as /32.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct IpipDevice {
    pub name: String,
    pub tunnel_addr: Ipv4Addr,
    pub mtu: u32,
}

/// A permanent neighbour: remote VTEP tunnel address → its MAC, on `dev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: String,
    pub dev: String,
}

/// A permanent FDB entry (`self permanent`): remote VTEP MAC → its node IP, on `dev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Fdb {
    pub mac: String,
    pub dst: IpAddr,
    pub dev: String,
}

/// Input of the natOutgoing rules: masquerade from `nat_pools` to outside `all_pools`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct NatOutgoing {
    pub nat_pools: Vec<IpNet>,
    pub all_pools: Vec<IpNet>,
}

/// MTUs the node uses: the host's (uplink) and the one pods get (written for the CNI plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Mtu {
    pub host: u32,
    pub pod: u32,
}

/// The whole desired state. `BTreeMap`s keep iteration (and rendering) deterministic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DesiredState {
    pub routes: BTreeMap<IpNet, Route>,
    pub bgp_routes: BTreeMap<IpNet, BgpRoute>,
    pub vxlan: Option<VxlanDevice>,
    /// `vxlan-v6.calico`, when an IPv6 pool has VXLAN.
    pub vxlan_v6: Option<VxlanDevice>,
    pub ipip: Option<IpipDevice>,
    pub neighbours: BTreeMap<IpAddr, Neighbour>,
    /// By (device, MAC): the IPv4 and IPv6 devices each have their own table.
    pub fdb: BTreeMap<(String, String), Fdb>,
    pub nat: NatOutgoing,
    pub mtu: Mtu,
    /// Pools' IPv4 CIDRs with VXLAN enabled (for the "allowed VXLAN sources" and sysctls).
    pub vxlan_enabled: bool,
    pub ipip_enabled: bool,
}

impl DesiredState {
    pub(crate) fn empty(host_mtu: u32) -> Self {
        DesiredState {
            routes: BTreeMap::new(),
            bgp_routes: BTreeMap::new(),
            vxlan: None,
            vxlan_v6: None,
            ipip: None,
            neighbours: BTreeMap::new(),
            fdb: BTreeMap::new(),
            nat: NatOutgoing::default(),
            mtu: Mtu {
                host: host_mtu,
                pod: host_mtu,
            },
            vxlan_enabled: false,
            ipip_enabled: false,
        }
    }
}

/// One difference between two desired states. Applying the changes of an update, in order, to
/// the previous state gives the new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Change {
    /// Add or replace the route to `route.dst`.
    RouteSet(Route),
    RouteRemoved(IpNet),
    BgpRouteSet(BgpRoute),
    BgpRouteRemoved(IpNet),
    /// The VXLAN device to have (`None`: remove it). Sent before the neighbours/FDB that need it.
    VxlanDevice(Option<VxlanDevice>),
    /// The same for `vxlan-v6.calico`.
    VxlanV6Device(Option<VxlanDevice>),
    /// The IPIP device to have (`None`: Felix no longer needs it; the kernel's `tunl0` stays).
    IpipDevice(Option<IpipDevice>),
    NeighbourSet(Neighbour),
    NeighbourRemoved(IpAddr),
    FdbSet(Fdb),
    /// (device, MAC).
    FdbRemoved((String, String)),
    Nat(NatOutgoing),
    Mtu(Mtu),
    Encap {
        vxlan: bool,
        ipip: bool,
    },
}

impl Change {
    /// Applies this change to `state` (what a consumer holding a copy of the state does).
    pub fn apply_to(&self, state: &mut DesiredState) {
        match self {
            Change::RouteSet(r) => {
                state.routes.insert(r.dst, r.clone());
            }
            Change::RouteRemoved(d) => {
                state.routes.remove(d);
            }
            Change::BgpRouteSet(r) => {
                state.bgp_routes.insert(r.dst, r.clone());
            }
            Change::BgpRouteRemoved(d) => {
                state.bgp_routes.remove(d);
            }
            Change::VxlanDevice(d) => state.vxlan = d.clone(),
            Change::VxlanV6Device(d) => state.vxlan_v6 = d.clone(),
            Change::IpipDevice(d) => state.ipip = d.clone(),
            Change::NeighbourSet(n) => {
                state.neighbours.insert(n.ip, n.clone());
            }
            Change::NeighbourRemoved(ip) => {
                state.neighbours.remove(ip);
            }
            Change::FdbSet(f) => {
                state.fdb.insert((f.dev.clone(), f.mac.clone()), f.clone());
            }
            Change::FdbRemoved(key) => {
                state.fdb.remove(key);
            }
            Change::Nat(n) => state.nat = n.clone(),
            Change::Mtu(m) => state.mtu = *m,
            Change::Encap { vxlan, ipip } => {
                state.vxlan_enabled = *vxlan;
                state.ipip_enabled = *ipip;
            }
        }
    }
}

/// A node's IPv4 address and subnet from `spec.bgp.ipv4Address` (`10.0.0.5/24`).
pub(crate) fn parse_node_address(s: &str) -> Option<(Ipv4Addr, Ipv4Net)> {
    if s.is_empty() {
        return None;
    }
    if let Ok(net) = s.parse::<Ipv4Net>() {
        return Some((net.addr(), net.trunc()));
    }
    let ip: Ipv4Addr = s.parse().ok()?;
    Some((ip, Ipv4Net::from(ip)))
}

/// A node's IPv6 address and subnet from `spec.bgp.ipv6Address` (`fd00:10::5/64`).
pub(crate) fn parse_node_address_v6(s: &str) -> Option<(Ipv6Addr, Ipv6Net)> {
    if s.is_empty() {
        return None;
    }
    if let Ok(net) = s.parse::<Ipv6Net>() {
        return Some((net.addr(), net.trunc()));
    }
    let ip: Ipv6Addr = s.parse().ok()?;
    Some((ip, Ipv6Net::from(ip)))
}

/// Whether a route found in the kernel's main table is Felix's to manage, so a reconciler may
/// delete it when it is not desired (also after a restart): anything with Felix's protocol
/// (blackholes, same-subnet and IPIP routes), anything on `vxlan.calico` or `vxlan-v6.calico`, and workload routes on
/// `cali*` interfaces. BGP's routes (`proto bird`) and the kernel's own stay untouched.
pub fn felix_owns_route(dev: Option<&str>, proto: u8) -> bool {
    const RTPROT_KERNEL: u8 = 2;
    proto == FELIX_ROUTE_PROTO
        || (proto != RTPROT_KERNEL
            && dev.is_some_and(|d| {
                d == VXLAN_DEVICE || d == VXLAN_V6_DEVICE || d.starts_with("cali")
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_protocol_and_device() {
        assert!(felix_owns_route(None, FELIX_ROUTE_PROTO));
        assert!(felix_owns_route(Some("eth1"), FELIX_ROUTE_PROTO));
        assert!(felix_owns_route(Some(VXLAN_DEVICE), BOOT_ROUTE_PROTO));
        assert!(felix_owns_route(Some("cali0123456789a"), BOOT_ROUTE_PROTO));
        assert!(!felix_owns_route(Some("eth1"), BOOT_ROUTE_PROTO));
        assert!(
            !felix_owns_route(Some("ens5"), 12),
            "bird's routes are BGP's"
        );
        assert!(
            !felix_owns_route(Some(VXLAN_DEVICE), 2),
            "kernel routes stay"
        );
    }

    #[test]
    fn node_address_parses_with_and_without_prefix() {
        let (ip, net) = parse_node_address("10.10.10.11/24").expect("cidr");
        assert_eq!(
            (ip.to_string(), net.to_string()),
            ("10.10.10.11".into(), "10.10.10.0/24".into())
        );
        let (_, net) = parse_node_address("192.168.1.4").expect("ip");
        assert_eq!(net.to_string(), "192.168.1.4/32");
        assert!(parse_node_address("").is_none());
        assert!(parse_node_address("fd00::1/64").is_none());
    }
}
