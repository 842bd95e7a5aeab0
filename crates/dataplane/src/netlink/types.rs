//! Domain types of the rtnetlink client: what callers say (a veth to create, a route to
//! install) independent of the wire format. `messages.rs` turns them into netlink messages and
//! back; the recording fake stores them as they are.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::netns::NetNs;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// `RTPROT_BOOT`: what `ip route add` uses when no protocol is given.
pub const PROTO_BOOT: u8 = 3;
/// `RTPROT_KERNEL`: routes the kernel adds itself (connected prefixes).
pub const PROTO_KERNEL: u8 = 2;
/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

/// A network interface as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
    pub mac: Option<Vec<u8>>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// `IFLA_INFO_KIND` (`veth`, `vxlan`, …) when the driver reports one.
    pub kind: Option<String>,
}

/// One side of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VethEnd {
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    /// Bring the interface up as part of creation.
    pub up: bool,
}

/// A veth pair to create in one request; the peer is created directly in `peer_netns`
/// (IFLA_NET_NS_FD on the peer), never created here and moved: a move takes the kernel's
/// global network lock and costs ~20 ms instead of ~1 ms.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host: VethEnd,
    pub peer: VethEnd,
    /// Where the peer is created; `None` = the namespace of the netlink socket.
    pub peer_netns: Option<&'a NetNs>,
}

/// Changes to an existing link; `None` fields are left alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkChange {
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub up: Option<bool>,
}

/// An interface address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    /// Address and prefix length (host bits kept: `10.0.0.5/32`).
    pub net: IpNet,
    /// IPv6: skip duplicate address detection (IFA_F_NODAD).
    pub nodad: bool,
}

impl Address {
    pub fn new(index: u32, net: IpNet) -> Self {
        Address {
            index,
            net,
            nodad: false,
        }
    }
}

/// Route type (`rtm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unicast,
    Local,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

/// Route scope (`rtm_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Universe,
    Link,
    Host,
    Other(u8),
}

/// A route as we install and list it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub kind: RouteKind,
    pub scope: Scope,
    /// Output interface index.
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// RTNH_F_ONLINK: the gateway is reachable on `oif` even without a covering prefix.
    pub onlink: bool,
    /// `rtm_protocol` (Felix marks its routes with 80).
    pub protocol: u8,
    pub table: u32,
    pub metric: Option<u32>,
    pub src: Option<IpAddr>,
}

impl Route {
    fn base(dst: IpNet) -> Self {
        Route {
            dst,
            kind: RouteKind::Unicast,
            scope: Scope::Universe,
            oif: None,
            gateway: None,
            onlink: false,
            protocol: PROTO_BOOT,
            table: TABLE_MAIN,
            metric: None,
            src: None,
        }
    }

    /// `DST dev OIF scope link`.
    pub fn link(dst: IpNet, oif: u32) -> Self {
        Route {
            scope: Scope::Link,
            oif: Some(oif),
            ..Route::base(dst)
        }
    }

    /// `DST via GW dev OIF`.
    pub fn via(dst: IpNet, gateway: IpAddr, oif: u32) -> Self {
        Route {
            oif: Some(oif),
            gateway: Some(gateway),
            ..Route::base(dst)
        }
    }

    /// `blackhole DST`.
    pub fn blackhole(dst: IpNet) -> Self {
        Route {
            kind: RouteKind::Blackhole,
            ..Route::base(dst)
        }
    }

    pub fn with_protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn with_onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    pub fn with_table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    pub fn with_metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    pub fn with_src(mut self, src: IpAddr) -> Self {
        self.src = Some(src);
        self
    }
}

/// Renders like `ip route`, with interface indexes (`dev #5`), for error messages and logs.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => {}
            RouteKind::Local => f.write_str("local ")?,
            RouteKind::Blackhole => f.write_str("blackhole ")?,
            RouteKind::Unreachable => f.write_str("unreachable ")?,
            RouteKind::Prohibit => f.write_str("prohibit ")?,
            RouteKind::Other(t) => write!(f, "type {t} ")?,
        }
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev #{oif}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        write!(f, " proto {}", self.protocol)?;
        match self.scope {
            Scope::Universe => {}
            Scope::Link => f.write_str(" scope link")?,
            Scope::Host => f.write_str(" scope host")?,
            Scope::Other(s) => write!(f, " scope {s}")?,
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

/// Address family selector for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Which routes a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFilter {
    pub family: Family,
    /// `None` = every table.
    pub table: Option<u32>,
    pub oif: Option<u32>,
    pub protocol: Option<u8>,
}

impl RouteFilter {
    /// Every route of `family` in the main table.
    pub fn main(family: Family) -> Self {
        RouteFilter {
            family,
            table: Some(TABLE_MAIN),
            oif: None,
            protocol: None,
        }
    }

    pub fn matches(&self, route: &Route) -> bool {
        let family_ok = match self.family {
            Family::V4 => route.dst.addr().is_ipv4(),
            Family::V6 => route.dst.addr().is_ipv6(),
        };
        family_ok
            && self.table.is_none_or(|t| t == route.table)
            && self.oif.is_none_or(|o| route.oif == Some(o))
            && self.protocol.is_none_or(|p| p == route.protocol)
    }
}

/// One element of a batched route update.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteChange {
    /// Create; fails with EEXIST when the route exists.
    Add(Route),
    /// Create or replace.
    Replace(Route),
    Delete(Route),
}

impl RouteChange {
    pub fn route(&self) -> &Route {
        match self {
            RouteChange::Add(r) | RouteChange::Replace(r) | RouteChange::Delete(r) => r,
        }
    }
}
