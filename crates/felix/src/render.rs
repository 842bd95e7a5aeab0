//! Text renderings of a desired state in the shapes `ip route`, `ip neigh` and `bridge fdb` print
//! (the seeds' listings), for golden files, logs and `calico-lab`'s route tables.
//!
//! Routes are ordered as the kernel dumps the main table: by destination address, and for one
//! address the longer prefix first (`10.48.0.128 dev cali…` before `blackhole 10.48.0.128/26`).

use std::cmp::Reverse;
use std::fmt::Write;

use ipnet::IpNet;

use crate::model::{BOOT_ROUTE_PROTO, BgpRoute, DesiredState, Route, RouteKind};

fn dst(d: &IpNet) -> String {
    if d.prefix_len() == d.max_prefix_len() {
        d.addr().to_string()
    } else {
        d.to_string()
    }
}

/// One route as `ip route` prints it (without the trailing space iproute2 leaves).
pub fn route_line(r: &Route) -> String {
    let mut s = String::new();
    match &r.kind {
        RouteKind::Blackhole => {
            let _ = write!(s, "blackhole {}", dst(&r.dst));
        }
        RouteKind::Device { iface } => {
            let _ = write!(s, "{} dev {iface}", dst(&r.dst));
        }
        RouteKind::ViaVxlan { gw } => {
            let dev = crate::model::vxlan_device_for(gw);
            let _ = write!(s, "{} via {gw} dev {dev}", dst(&r.dst));
        }
        RouteKind::ViaNode { gw, dev } => {
            let _ = write!(s, "{} via {gw} dev {dev}", dst(&r.dst));
        }
        RouteKind::ViaIpip { gw } => {
            let _ = write!(s, "{} via {gw} dev {}", dst(&r.dst), crate::IPIP_DEVICE);
        }
    }
    if r.proto != BOOT_ROUTE_PROTO {
        let _ = write!(s, " proto {}", r.proto);
    }
    if r.scope_link {
        s.push_str(" scope link");
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    s
}

fn kernel_order(d: &IpNet) -> (std::net::IpAddr, Reverse<u8>) {
    (d.network(), Reverse(d.prefix_len()))
}

/// All routes, in the kernel's dump order.
pub fn route_lines(state: &DesiredState) -> Vec<String> {
    let mut routes: Vec<&Route> = state.routes.values().collect();
    routes.sort_by_key(|r| kernel_order(&r.dst));
    routes.into_iter().map(route_line).collect()
}

/// A BGP seam entry: what BGP should advertise (`export`) or is expected to install.
pub fn bgp_line(b: &BgpRoute) -> String {
    let hop = b
        .next_hop
        .map(|h| h.to_string())
        .unwrap_or_else(|| "?".to_string());
    if b.local {
        let export = if b.disable_export {
            " (export disabled)"
        } else {
            ""
        };
        format!("{} export from {} via {hop}{export}", b.dst, b.node)
    } else {
        format!("{} expect from {} via {hop}", b.dst, b.node)
    }
}

/// The whole state in sections, as the golden files hold it.
pub fn render_state(state: &DesiredState) -> String {
    let mut out = String::new();
    out.push_str("# ip route\n");
    for l in route_lines(state) {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("# ip neigh\n");
    for n in state.neighbours.values() {
        let _ = writeln!(out, "{} dev {} lladdr {} PERMANENT", n.ip, n.dev, n.mac);
    }
    out.push_str("# bridge fdb\n");
    for f in state.fdb.values() {
        let _ = writeln!(out, "{} dev {} dst {} self permanent", f.mac, f.dev, f.dst);
    }
    out.push_str("# tunnels\n");
    for v in state.vxlan.iter().chain(&state.vxlan_v6) {
        let _ = writeln!(
            out,
            "{}: vni {} port {} local {} addr {} mac {} mtu {} parent {}",
            v.name,
            v.vni,
            v.port,
            v.local_ip,
            IpNet::from(v.tunnel_addr),
            v.mac,
            v.mtu,
            v.parent.as_deref().unwrap_or("?")
        );
    }
    if let Some(t) = &state.ipip {
        let _ = writeln!(out, "{}: addr {}/32 mtu {}", t.name, t.tunnel_addr, t.mtu);
    }
    out.push_str("# bgp (routes Felix leaves to BGP)\n");
    let mut bgp: Vec<&BgpRoute> = state.bgp_routes.values().collect();
    bgp.sort_by_key(|b| kernel_order(&b.dst));
    for b in bgp {
        out.push_str(&bgp_line(b));
        out.push('\n');
    }
    out.push_str("# nat\n");
    let list = |v: &[IpNet]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "masquerade from {{{}}}", list(&state.nat.nat_pools));
    let _ = writeln!(out, "all pools {{{}}}", list(&state.nat.all_pools));
    out.push_str("# mtu\n");
    let _ = writeln!(out, "host {} pod {}", state.mtu.host, state.mtu.pod);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FELIX_ROUTE_PROTO, RouteSource};

    fn r(dst: &str, kind: RouteKind, proto: u8, scope_link: bool, onlink: bool) -> Route {
        Route {
            dst: dst.parse().expect("dst"),
            kind,
            proto,
            scope_link,
            onlink,
            source: RouteSource::RemoteBlock,
            node: None,
        }
    }

    #[test]
    fn every_kind_prints_like_ip_route() {
        let gw4 = "10.0.0.9".parse().expect("ip");
        let gw6: std::net::Ipv6Addr = "fd00:10::9".parse().expect("ip");
        let cases = [
            (
                r(
                    "10.1.0.0/26",
                    RouteKind::Blackhole,
                    FELIX_ROUTE_PROTO,
                    false,
                    false,
                ),
                "blackhole 10.1.0.0/26 proto 80",
            ),
            (
                r(
                    "10.1.0.5/32",
                    RouteKind::Device {
                        iface: "cali0123456789a".into(),
                    },
                    BOOT_ROUTE_PROTO,
                    true,
                    false,
                ),
                "10.1.0.5 dev cali0123456789a scope link",
            ),
            (
                r(
                    "10.1.0.64/26",
                    RouteKind::ViaVxlan {
                        gw: std::net::IpAddr::V4(gw4),
                    },
                    BOOT_ROUTE_PROTO,
                    false,
                    true,
                ),
                "10.1.0.64/26 via 10.0.0.9 dev vxlan.calico onlink",
            ),
            (
                r(
                    "fd00:1::40/122",
                    RouteKind::ViaVxlan {
                        gw: std::net::IpAddr::V6(gw6),
                    },
                    BOOT_ROUTE_PROTO,
                    false,
                    true,
                ),
                "fd00:1::40/122 via fd00:10::9 dev vxlan-v6.calico onlink",
            ),
            (
                r(
                    "10.1.0.128/26",
                    RouteKind::ViaNode {
                        gw: "10.0.0.9".parse().expect("ip"),
                        dev: "eth1".into(),
                    },
                    FELIX_ROUTE_PROTO,
                    false,
                    true,
                ),
                "10.1.0.128/26 via 10.0.0.9 dev eth1 proto 80 onlink",
            ),
            (
                r(
                    "10.1.0.192/26",
                    RouteKind::ViaIpip { gw: gw4 },
                    FELIX_ROUTE_PROTO,
                    false,
                    true,
                ),
                "10.1.0.192/26 via 10.0.0.9 dev tunl0 proto 80 onlink",
            ),
        ];
        for (route, want) in cases {
            assert_eq!(route_line(&route), want);
        }
    }

    #[test]
    fn kernel_order_puts_the_longer_prefix_first_for_one_address() {
        let mut v: Vec<IpNet> = [
            "10.48.0.128/26",
            "10.48.0.130/32",
            "10.48.0.128/32",
            "10.48.0.0/26",
        ]
        .iter()
        .map(|s| s.parse().expect("net"))
        .collect();
        v.sort_by_key(kernel_order);
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "10.48.0.0/26",
                "10.48.0.128/32",
                "10.48.0.128/26",
                "10.48.0.130/32"
            ]
        );
    }
}
