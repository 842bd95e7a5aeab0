//! Layer-2 objects of an overlay: a VXLAN device (created with its attributes, read back so a
//! reconciler can detect drift), permanent neighbour entries (`ip neigh ... PERMANENT`) and
//! bridge FDB entries on the VXLAN device (`bridge fdb ... dst IP self permanent`).
//!
//! Data flow as for routes: domain value → `*_message` (pure, byte-testable) → `Netlink` request;
//! dumps come back through `parse_*`. Neighbours are AF_INET/AF_INET6 RTM_*NEIGH messages; FDB
//! entries are the same messages with family AF_BRIDGE, flag NTF_SELF (the device's own table,
//! not a bridge master's) and NDA_DST naming the remote VTEP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};

use super::messages;
use super::types::{Link, Mac};

/// A VXLAN device to create (`ip link add NAME type vxlan id VNI dstport PORT local IP dev
/// PARENT nolearning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    /// UDP destination port (4789).
    pub port: u16,
    /// Source address of encapsulated packets (the node IP; IPv6 for an IPv6 underlay).
    pub local: Option<IpAddr>,
    /// Index of the underlay interface (`dev`).
    pub parent: Option<u32>,
    /// MAC learning from received packets; Calico programs the FDB itself, so off.
    pub learning: bool,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    /// Create it administratively up.
    pub up: bool,
}

/// A VXLAN device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    pub link: Link,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<IpAddr>,
    pub parent: Option<u32>,
    pub learning: Option<bool>,
}

impl VxlanLink {
    /// Attributes that differ from `spec` and cannot be changed in place (the device must be
    /// recreated): VNI, port, local address, parent, learning.
    pub fn immutable_drift(&self, spec: &VxlanSpec) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.vni != Some(spec.vni) {
            out.push("vni");
        }
        if self.port != Some(spec.port) {
            out.push("dstport");
        }
        if self.local != spec.local {
            out.push("local");
        }
        if spec.parent.is_some() && self.parent != spec.parent {
            out.push("dev (parent)");
        }
        if self.learning != Some(spec.learning) {
            out.push("learning");
        }
        out
    }
}

/// A neighbour (ARP/NDP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    /// `None` for entries without a link-layer address (INCOMPLETE, FAILED).
    pub mac: Option<Mac>,
    /// NUD_PERMANENT (static, never expires or re-resolves).
    pub permanent: bool,
}

impl Neighbour {
    /// `IP lladdr MAC dev #INDEX PERMANENT`.
    pub fn permanent(index: u32, ip: IpAddr, mac: Mac) -> Self {
        Neighbour {
            index,
            ip,
            mac: Some(mac),
            permanent: true,
        }
    }
}

/// A bridge FDB entry in a device's own table (`MAC dev #INDEX dst IP self permanent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: Mac,
    /// The remote VTEP (NDA_DST); `None` for local entries without one.
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

impl FdbEntry {
    pub fn permanent(index: u32, mac: Mac, dst: IpAddr) -> Self {
        FdbEntry {
            index,
            mac,
            dst: Some(dst),
            permanent: true,
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (case-insensitive).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// RTM_NEWLINK creating a VXLAN device.
pub(crate) fn vxlan_message(spec: &VxlanSpec) -> LinkMessage {
    let mut msg = messages::link_by_name(&spec.name);
    if spec.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    let mut data = vec![
        InfoVxlan::Id(spec.vni),
        InfoVxlan::Port(spec.port),
        InfoVxlan::Learning(spec.learning),
    ];
    match spec.local {
        Some(IpAddr::V4(local)) => data.push(InfoVxlan::Local(local)),
        Some(IpAddr::V6(local)) => data.push(InfoVxlan::Local6(local)),
        None => {}
    }
    if let Some(parent) = spec.parent {
        data.push(InfoVxlan::Link(parent));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    msg
}

/// RTM_NEWLINK creating an IPIP tunnel with no endpoints (what the kernel's `tunl0` is: it
/// takes every IPIP packet). Needs the kernel's ipip support (module `ipip`).
pub(crate) fn ipip_message(name: &str) -> LinkMessage {
    let mut msg = messages::link_by_name(name);
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::IpIp,
        )]));
    msg
}

/// The VXLAN attributes of a listed link; `None` when it is not a VXLAN device.
pub(crate) fn parse_vxlan(msg: &LinkMessage) -> Option<VxlanLink> {
    let link = messages::parse_link(msg)?;
    let mut out = VxlanLink {
        link,
        vni: None,
        port: None,
        local: None,
        parent: None,
        learning: None,
    };
    let mut is_vxlan = false;
    for attr in &msg.attributes {
        let LinkAttribute::LinkInfo(infos) = attr else {
            continue;
        };
        for info in infos {
            match info {
                LinkInfo::Kind(InfoKind::Vxlan) => is_vxlan = true,
                LinkInfo::Data(InfoData::Vxlan(data)) => {
                    for d in data {
                        match d {
                            InfoVxlan::Id(v) => out.vni = Some(*v),
                            InfoVxlan::Port(p) => out.port = Some(*p),
                            InfoVxlan::Local(ip) => out.local = Some(IpAddr::V4(*ip)),
                            InfoVxlan::Local6(ip) => out.local = Some(IpAddr::V6(*ip)),
                            InfoVxlan::Link(i) => out.parent = Some(*i),
                            InfoVxlan::Learning(l) => out.learning = Some(*l),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    is_vxlan.then_some(out)
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// RTM_NEWNEIGH/DELNEIGH body for a neighbour entry.
pub(crate) fn neighbour_message(n: &Neighbour) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family_of(n.ip);
    msg.header.ifindex = n.index;
    msg.header.state = if n.permanent {
        NeighbourState::Permanent
    } else {
        NeighbourState::Reachable
    };
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            n.ip,
        )));
    if let Some(mac) = n.mac {
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    msg
}

/// RTM_NEWNEIGH/DELNEIGH body for an FDB entry (AF_BRIDGE, NTF_SELF, NDA_DST).
pub(crate) fn fdb_message(f: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = f.index;
    msg.header.flags = NeighbourFlags::Own;
    msg.header.state = if f.permanent {
        NeighbourState::Permanent
    } else {
        NeighbourState::Noarp
    };
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(f.mac.to_vec()));
    if let Some(dst) = f.dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
    }
    msg
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(bytes).ok()
}

fn neighbour_ip(addr: &NeighbourAddress) -> Option<IpAddr> {
    match addr {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        // AF_BRIDGE messages carry NDA_DST as raw bytes: 4 for IPv4, 16 for IPv6 VTEPs.
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            16 => <[u8; 16]>::try_from(b.as_slice())
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        },
        _ => None,
    }
}

fn is_permanent(state: NeighbourState) -> bool {
    // NUD_PERMANENT is a bit; a dump may combine it with others (u16 Other).
    state == NeighbourState::Permanent || u16::from(state) & 0x80 != 0
}

/// A listed neighbour entry (AF_INET/AF_INET6 dumps).
pub(crate) fn parse_neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(a) => ip = neighbour_ip(a),
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
            _ => {}
        }
    }
    Some(Neighbour {
        index: msg.header.ifindex,
        ip: ip?,
        mac,
        permanent: is_permanent(msg.header.state),
    })
}

/// A listed FDB entry (AF_BRIDGE dumps).
pub(crate) fn parse_fdb(msg: &NeighbourMessage) -> Option<FdbEntry> {
    if msg.header.family != AddressFamily::Bridge {
        return None;
    }
    let mut dst = None;
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(a) => dst = neighbour_ip(a),
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
            _ => {}
        }
    }
    Some(FdbEntry {
        index: msg.header.ifindex,
        mac: mac?,
        dst,
        permanent: is_permanent(msg.header.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_garbage() {
        let mac = parse_mac("66:0A:ff:00:01:02").expect("valid");
        assert_eq!(format_mac(&mac), "66:0a:ff:00:01:02");
        for bad in [
            "",
            "66:0a",
            "66:0a:ff:00:01:02:03",
            "zz:0a:ff:00:01:02",
            "660:a:ff:00:01:02",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn vxlan_message_round_trips_through_the_parser() {
        let spec = VxlanSpec {
            name: "vxlan.calico".into(),
            vni: 4096,
            port: 4789,
            local: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            parent: Some(7),
            learning: false,
            mtu: Some(1450),
            mac: Some([0x66, 1, 2, 3, 4, 5]),
            up: true,
        };
        let msg = vxlan_message(&spec);
        let parsed = parse_vxlan(&msg).expect("a vxlan link");
        assert_eq!(parsed.vni, Some(4096));
        assert_eq!(parsed.port, Some(4789));
        assert_eq!(parsed.learning, Some(false));
        assert_eq!(parsed.link.mtu, Some(1450));
        assert!(parsed.immutable_drift(&spec).is_empty());
        let other = VxlanSpec { vni: 1, ..spec };
        assert_eq!(parsed.immutable_drift(&other), vec!["vni"]);
    }

    #[test]
    fn fdb_message_is_bridge_self_permanent_with_dst() {
        let f = FdbEntry::permanent(9, [0x66, 0, 0, 0, 0, 1], "10.0.0.3".parse().expect("ip"));
        let msg = fdb_message(&f);
        assert_eq!(msg.header.family, AddressFamily::Bridge);
        assert_eq!(msg.header.flags, NeighbourFlags::Own);
        assert_eq!(msg.header.state, NeighbourState::Permanent);
        assert_eq!(parse_fdb(&msg), Some(f));
        let n = Neighbour::permanent(9, "10.65.0.1".parse().expect("ip"), [0x66; 6]);
        assert_eq!(parse_neighbour(&neighbour_message(&n)), Some(n));
    }
}
