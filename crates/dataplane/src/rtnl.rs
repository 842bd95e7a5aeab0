//! `Rtnl`: the link/address/route operations the CNI plugin and the agent need, as one small
//! trait. `Netlink` implements it against the kernel; `fake::RecordingRtnl` records the calls
//! and can be told to fail, so rollback paths are unit-testable without root.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::Result;
use crate::netlink::l2::{self, FdbEntry, Neighbour, VxlanLink, VxlanSpec};
use crate::netlink::types::{
    Address, Family, Link, LinkChange, Route, RouteChange, RouteFilter, VethSpec,
};
use crate::netlink::{BatchFailure, Netlink, Transport, messages};

pub trait Rtnl {
    /// Create a veth pair; the peer goes straight into `spec.peer_netns`. All or nothing: when
    /// a later step (setting the ends up) fails, the pair is deleted again.
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()>;
    /// The link called `name`, `None` when there is none.
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>>;
    fn links(&mut self) -> Result<Vec<Link>>;
    fn set_link(&mut self, index: u32, change: &LinkChange) -> Result<()>;
    /// Delete the link called `name` (a veth takes its peer with it). Not-found is an error the
    /// caller can recognise with `Error::is_not_found`.
    fn delete_link(&mut self, name: &str) -> Result<()>;
    fn add_address(&mut self, addr: &Address) -> Result<()>;
    fn delete_address(&mut self, addr: &Address) -> Result<()>;
    /// Addresses of one interface, or of all when `index` is `None`.
    fn addresses(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Address>>;
    /// Create a route; EEXIST when it exists.
    fn add_route(&mut self, route: &Route) -> Result<()>;
    /// Create or replace a route.
    fn replace_route(&mut self, route: &Route) -> Result<()>;
    fn delete_route(&mut self, route: &Route) -> Result<()>;
    fn routes(&mut self, filter: &RouteFilter) -> Result<Vec<Route>>;
    /// Batched route changes (see `Netlink::apply_routes`).
    fn apply_routes(&mut self, changes: &[RouteChange]) -> Result<Vec<BatchFailure>>;
    /// Create a VXLAN device; EEXIST when a link of that name exists.
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()>;
    /// Create an IPIP tunnel device without endpoints (`ip link add NAME type ipip`, what the
    /// kernel's `tunl0` is); fails when the kernel has no ipip support. EEXIST when it exists.
    fn create_ipip(&mut self, name: &str) -> Result<()>;
    /// The VXLAN device called `name` with its attributes; `None` when there is no such link
    /// or it is not a VXLAN device.
    fn vxlan_by_name(&mut self, name: &str) -> Result<Option<VxlanLink>>;
    /// Create a neighbour entry; EEXIST when one exists for that address on that link.
    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()>;
    /// Create or replace a neighbour entry (`ip neigh replace`).
    fn replace_neighbour(&mut self, n: &Neighbour) -> Result<()>;
    fn delete_neighbour(&mut self, n: &Neighbour) -> Result<()>;
    /// Neighbour entries of `family`, of one link or of all.
    fn neighbours(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Neighbour>>;
    /// Create or replace an FDB entry in the device's own table (`bridge fdb replace ... self`).
    fn replace_fdb(&mut self, f: &FdbEntry) -> Result<()>;
    fn delete_fdb(&mut self, f: &FdbEntry) -> Result<()>;
    /// FDB entries in the own table of link `index`.
    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>>;
}

fn neighbour_object(n: &Neighbour) -> String {
    format!("neighbour {} on link #{}", n.ip, n.index)
}

fn fdb_object(f: &FdbEntry) -> String {
    match f.dst {
        Some(dst) => format!(
            "fdb entry {} dst {dst} on link #{}",
            l2::format_mac(&f.mac),
            f.index
        ),
        None => format!("fdb entry {} on link #{}", l2::format_mac(&f.mac), f.index),
    }
}

fn veth_object(spec: &VethSpec<'_>) -> String {
    match spec.peer_netns {
        Some(ns) => format!(
            "veth {} (peer {} in {})",
            spec.host.name,
            spec.peer.name,
            ns.path().display()
        ),
        None => format!("veth {} (peer {})", spec.host.name, spec.peer.name),
    }
}

impl<T: Transport> Netlink<T> {
    /// Set the requested ends up once both exist. The peer goes first so the host side never
    /// shows carrier towards a peer that is still down.
    fn set_veth_up(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        if spec.peer.up {
            let up = RouteNetlinkMessage::SetLink(messages::link_up_by_name(&spec.peer.name));
            let object = || format!("link {} (veth peer)", spec.peer.name);
            match spec.peer_netns {
                None => self.ack_request(up, 0, "set up", &object)?,
                Some(ns) => Netlink::open_in(ns)?.ack_request(up, 0, "set up", &object)?,
            }
        }
        if spec.host.up {
            let up = RouteNetlinkMessage::SetLink(messages::link_up_by_name(&spec.host.name));
            self.ack_request(up, 0, "set up", &|| format!("link {}", spec.host.name))?;
        }
        Ok(())
    }
}

impl<T: Transport> Rtnl for Netlink<T> {
    fn create_veth(&mut self, spec: &VethSpec<'_>) -> Result<()> {
        let msg = RouteNetlinkMessage::NewLink(messages::veth(spec));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "create", &|| {
            veth_object(spec)
        })?;
        // Not created up (see `messages::veth`); bring the ends up now.
        let result = self.set_veth_up(spec);
        if result.is_err() {
            let _ = self.delete_link(&spec.host.name);
        }
        result
    }

    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let msg = RouteNetlinkMessage::GetLink(messages::link_by_name(name));
        match self.get(msg, false, "get", &|| format!("link {name}")) {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => messages::parse_link(l),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn links(&mut self) -> Result<Vec<Link>> {
        let msg = RouteNetlinkMessage::GetLink(Default::default());
        let replies = self.get(msg, true, "list", &|| "links".to_string())?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => messages::parse_link(l),
                _ => None,
            })
            .collect())
    }

    fn set_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        let msg = RouteNetlinkMessage::SetLink(messages::link_change(index, change));
        self.ack_request(msg, 0, "change", &|| format!("link #{index} ({change:?})"))
    }

    fn delete_link(&mut self, name: &str) -> Result<()> {
        let msg = RouteNetlinkMessage::DelLink(messages::link_by_name(name));
        self.ack_request(msg, 0, "delete", &|| format!("link {name}"))
    }

    fn add_address(&mut self, addr: &Address) -> Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(messages::address(addr));
        let object = || format!("address {} on link #{}", addr.net, addr.index);
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "add", &object)
    }

    fn delete_address(&mut self, addr: &Address) -> Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(messages::address(addr));
        let object = || format!("address {} on link #{}", addr.net, addr.index);
        self.ack_request(msg, 0, "delete", &object)
    }

    fn addresses(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Address>> {
        let mut req = netlink_packet_route::address::AddressMessage::default();
        req.header.family = match family {
            Family::V4 => netlink_packet_route::AddressFamily::Inet,
            Family::V6 => netlink_packet_route::AddressFamily::Inet6,
        };
        let msg = RouteNetlinkMessage::GetAddress(req);
        let replies = self.get(msg, true, "list", &|| "addresses".to_string())?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => messages::parse_address(a),
                _ => None,
            })
            .filter(|a| index.is_none_or(|i| a.index == i))
            .collect())
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(messages::route(route, false));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "add", &|| {
            format!("route {route}")
        })
    }

    fn replace_route(&mut self, route: &Route) -> Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(messages::route(route, false));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_REPLACE, "replace", &|| {
            format!("route {route}")
        })
    }

    fn delete_route(&mut self, route: &Route) -> Result<()> {
        let msg = RouteNetlinkMessage::DelRoute(messages::route(route, true));
        self.ack_request(msg, 0, "delete", &|| format!("route {route}"))
    }

    fn routes(&mut self, filter: &RouteFilter) -> Result<Vec<Route>> {
        let mut req = netlink_packet_route::route::RouteMessage::default();
        req.header.address_family = match filter.family {
            Family::V4 => netlink_packet_route::AddressFamily::Inet,
            Family::V6 => netlink_packet_route::AddressFamily::Inet6,
        };
        let msg = RouteNetlinkMessage::GetRoute(req);
        let replies = self.get(msg, true, "list", &|| "routes".to_string())?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => messages::parse_route(r),
                _ => None,
            })
            .filter(|r| filter.matches(r))
            .collect())
    }

    fn apply_routes(&mut self, changes: &[RouteChange]) -> Result<Vec<BatchFailure>> {
        Netlink::apply_routes(self, changes)
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let msg = RouteNetlinkMessage::NewLink(l2::vxlan_message(spec));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "create", &|| {
            format!(
                "vxlan device {} (vni {}, dstport {})",
                spec.name, spec.vni, spec.port
            )
        })
    }

    fn create_ipip(&mut self, name: &str) -> Result<()> {
        let msg = RouteNetlinkMessage::NewLink(l2::ipip_message(name));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "create", &|| {
            format!("ipip device {name}")
        })
    }

    fn vxlan_by_name(&mut self, name: &str) -> Result<Option<VxlanLink>> {
        let msg = RouteNetlinkMessage::GetLink(messages::link_by_name(name));
        match self.get(msg, false, "get", &|| format!("link {name}")) {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l2::parse_vxlan(l),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        let msg = RouteNetlinkMessage::NewNeighbour(l2::neighbour_message(n));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_EXCL, "add", &|| {
            neighbour_object(n)
        })
    }

    fn replace_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        let msg = RouteNetlinkMessage::NewNeighbour(l2::neighbour_message(n));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_REPLACE, "replace", &|| {
            neighbour_object(n)
        })
    }

    fn delete_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        let msg = RouteNetlinkMessage::DelNeighbour(l2::neighbour_message(n));
        self.ack_request(msg, 0, "delete", &|| neighbour_object(n))
    }

    fn neighbours(&mut self, family: Family, index: Option<u32>) -> Result<Vec<Neighbour>> {
        let mut req = netlink_packet_route::neighbour::NeighbourMessage::default();
        req.header.family = match family {
            Family::V4 => netlink_packet_route::AddressFamily::Inet,
            Family::V6 => netlink_packet_route::AddressFamily::Inet6,
        };
        let msg = RouteNetlinkMessage::GetNeighbour(req);
        let replies = self.get(msg, true, "list", &|| "neighbours".to_string())?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => l2::parse_neighbour(n),
                _ => None,
            })
            .filter(|n| index.is_none_or(|i| n.index == i))
            .collect())
    }

    fn replace_fdb(&mut self, f: &FdbEntry) -> Result<()> {
        let msg = RouteNetlinkMessage::NewNeighbour(l2::fdb_message(f));
        self.ack_request(msg, NLM_F_CREATE | NLM_F_REPLACE, "replace", &|| {
            fdb_object(f)
        })
    }

    fn delete_fdb(&mut self, f: &FdbEntry) -> Result<()> {
        let msg = RouteNetlinkMessage::DelNeighbour(l2::fdb_message(f));
        self.ack_request(msg, 0, "delete", &|| fdb_object(f))
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        let mut req = netlink_packet_route::neighbour::NeighbourMessage::default();
        req.header.family = netlink_packet_route::AddressFamily::Bridge;
        let msg = RouteNetlinkMessage::GetNeighbour(req);
        let replies = self.get(msg, true, "list", &|| format!("fdb of link #{index}"))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => l2::parse_fdb(n),
                _ => None,
            })
            .filter(|f| f.index == index)
            .collect())
    }
}
