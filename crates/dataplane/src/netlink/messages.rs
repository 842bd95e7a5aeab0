//! Wire side of the domain types: builds `RouteNetlinkMessage`s from links, addresses and routes
//! and reads listings back into domain types. Pure functions, so byte-level tests need no kernel.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};

use super::types::{Address, Link, LinkChange, Route, RouteKind, Scope, VethEnd, VethSpec};

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

// No IFF_UP here: the kernel (6.x) refuses a veth created up with ENOTCONN, as its peer is not
// attached yet when the first side opens. `Rtnl::create_veth` sets the ends up afterwards.
fn end_message(end: &VethEnd) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(end.name.clone()));
    if let Some(mtu) = end.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = end.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    msg
}

/// RTM_NEWLINK for a veth pair, the peer carrying IFLA_NET_NS_FD when it goes elsewhere.
pub(crate) fn veth(spec: &VethSpec<'_>) -> LinkMessage {
    let mut peer = end_message(&spec.peer);
    if let Some(ns) = spec.peer_netns {
        // The fd stays open for as long as `spec` borrows the namespace, i.e. across the send.
        peer.attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
    }
    let mut msg = end_message(&spec.host);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

/// RTM_NEWLINK/SETLINK body changing an existing link.
pub(crate) fn link_change(index: u32, change: &LinkChange) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = change.up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = change.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = change.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    msg
}

/// RTM_SETLINK body setting the link called `name` up (index 0 = select by IFLA_IFNAME).
pub(crate) fn link_up_by_name(name: &str) -> LinkMessage {
    let mut msg = link_by_name(name);
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg
}

/// A link message selecting by name (GETLINK/DELLINK by IFLA_IFNAME).
pub(crate) fn link_by_name(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg
}

pub(crate) fn parse_link(msg: &LinkMessage) -> Option<Link> {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mtu: None,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Address(a) => link.mac = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

pub(crate) fn address(addr: &Address) -> AddressMessage {
    let mut msg = AddressMessage::default();
    let ip = addr.net.addr();
    msg.header.family = family_of(ip);
    msg.header.prefix_len = addr.net.prefix_len();
    msg.header.index = addr.index;
    msg.header.scope = AddressScope::Universe;
    if addr.nodad {
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    msg
}

pub(crate) fn parse_address(msg: &AddressMessage) -> Option<Address> {
    // IPv4 point-to-point links report the peer in IFA_ADDRESS; IFA_LOCAL is ours.
    let mut local = None;
    let mut address = None;
    let mut nodad = msg.header.flags.contains(AddressHeaderFlags::Nodad);
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => nodad |= f.contains(AddressFlags::Nodad),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let net = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some(Address {
        index: msg.header.index,
        net,
        nodad,
    })
}

fn kind_to_wire(kind: RouteKind) -> RouteType {
    match kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Local => RouteType::Local,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
        RouteKind::Other(t) => RouteType::from(t),
    }
}

fn kind_from_wire(kind: RouteType) -> RouteKind {
    match kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Local => RouteKind::Local,
        RouteType::BlackHole => RouteKind::Blackhole,
        RouteType::Unreachable => RouteKind::Unreachable,
        RouteType::Prohibit => RouteKind::Prohibit,
        other => RouteKind::Other(u8::from(other)),
    }
}

fn scope_to_wire(scope: Scope) -> RouteScope {
    match scope {
        Scope::Universe => RouteScope::Universe,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
        Scope::Other(s) => RouteScope::from(s),
    }
}

fn scope_from_wire(scope: RouteScope) -> Scope {
    match scope {
        RouteScope::Universe => Scope::Universe,
        RouteScope::Link => Scope::Link,
        RouteScope::Host => Scope::Host,
        other => Scope::Other(u8::from(other)),
    }
}

/// RTM_NEWROUTE/DELROUTE body. For deletes the scope is a wildcard (RT_SCOPE_NOWHERE), as
/// `ip route del` sends it, so a route is found whatever scope it was added with.
pub(crate) fn route(route: &Route, for_delete: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family_of(route.dst.addr());
    h.destination_prefix_length = route.dst.prefix_len();
    h.protocol = RouteProtocol::from(route.protocol);
    h.scope = if for_delete {
        RouteScope::NoWhere
    } else {
        scope_to_wire(route.scope)
    };
    h.kind = kind_to_wire(route.kind);
    if route.onlink {
        h.flags = RouteFlags::Onlink;
    }
    match u8::try_from(route.table) {
        Ok(t) => h.table = t,
        Err(_) => h.table = RouteHeader::RT_TABLE_UNSPEC,
    }
    let attrs = &mut msg.attributes;
    if route.table > 255 {
        attrs.push(RouteAttribute::Table(route.table));
    }
    if route.dst.prefix_len() > 0 {
        attrs.push(RouteAttribute::Destination(RouteAddress::from(
            route.dst.network(),
        )));
    }
    if let Some(gw) = route.gateway {
        attrs.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        attrs.push(RouteAttribute::Oif(oif));
    }
    if let Some(src) = route.src {
        attrs.push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(metric) = route.metric {
        attrs.push(RouteAttribute::Priority(metric));
    }
    msg
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// A listed route, or `None` for entries we do not model (multicast families, MPLS, cache).
pub(crate) fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let h = &msg.header;
    let unspecified: IpAddr = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    if h.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let mut dst = unspecified;
    let mut route = Route {
        dst: IpNet::new(unspecified, 0).ok()?,
        kind: kind_from_wire(h.kind),
        scope: scope_from_wire(h.scope),
        oif: None,
        gateway: None,
        onlink: h.flags.contains(RouteFlags::Onlink),
        protocol: u8::from(h.protocol),
        table: u32::from(h.table),
        metric: None,
        src: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_ip(a)?,
            RouteAttribute::Gateway(a) => route.gateway = route_ip(a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::PrefSource(a) => route.src = route_ip(a),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            RouteAttribute::Table(t) => route.table = *t,
            _ => {}
        }
    }
    route.dst = IpNet::new(dst, h.destination_prefix_length).ok()?;
    Some(route)
}
