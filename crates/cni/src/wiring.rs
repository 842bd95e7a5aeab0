//! Pod wiring in the kernel, as upstream does it: a veth whose peer is created directly in the
//! pod's namespace, host-side sysctls, the pod's /32 (/128) with `169.254.1.1` link and default
//! routes (IPv6: via the host side's link-local address), and `<ip> dev caliX scope link` on the
//! host. Also the undo (`unwire`) and the verification CHECK uses (`verify`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use calico_dataplane::{
    Address, Family, LinkChange, NetNs, Netlink, ProcSys, Route, RouteFilter, Rtnl, Sysctl,
    SysctlKey, VethEnd, VethSpec,
};
use ipnet::IpNet;

use crate::spec::{CniError, ErrorCode};

/// The host side's MAC, the same on every workload interface.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv4 gateway (never assigned anywhere; answered by proxy ARP).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The host side's IPv6 link-local address, derived from `HOST_MAC` (EUI-64).
pub fn host_link_local() -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee)
}

/// What to wire.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub host_veth: String,
    pub pod_ifname: String,
    pub mtu: u32,
    /// The pod's addresses (host prefixes).
    pub ips: Vec<IpNet>,
    pub allow_ip_forwarding: bool,
}

/// The pod side's MAC (for the result and the WorkloadEndpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    pub pod_mac: String,
}

fn dp(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::plugin(format!("cannot {what}"), e.to_string())
}

pub fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn host_sysctls(sys: &mut dyn Sysctl, w: &Wiring) -> Result<(), CniError> {
    let h = w.host_veth.as_str();
    let mut keys: Vec<(SysctlKey, &str)> = Vec::new();
    let key = |r: calico_dataplane::Result<SysctlKey>| r.map_err(|e| dp("name a sysctl", e));
    if w.ips.iter().any(|n| n.addr().is_ipv4()) {
        keys.push((key(SysctlKey::ipv4_conf(h, "proxy_arp"))?, "1"));
        keys.push((key(SysctlKey::ipv4_neigh(h, "proxy_delay"))?, "0"));
        keys.push((key(SysctlKey::ipv4_conf(h, "forwarding"))?, "1"));
        keys.push((key(SysctlKey::ipv4_conf(h, "route_localnet"))?, "1"));
    }
    if w.ips.iter().any(|n| n.addr().is_ipv6()) {
        keys.push((key(SysctlKey::ipv6_conf(h, "proxy_ndp"))?, "1"));
        keys.push((key(SysctlKey::ipv6_conf(h, "forwarding"))?, "1"));
        keys.push((key(SysctlKey::ipv6_conf(h, "accept_ra"))?, "0"));
        // The pod's default gateway is this side's link-local address: usable at once.
        keys.push((key(SysctlKey::ipv6_conf(h, "accept_dad"))?, "0"));
    }
    for (k, v) in keys {
        sys.set(&k, v)
            .map_err(|e| dp(&format!("set host sysctl {k}={v}"), e))?;
    }
    Ok(())
}

/// Everything inside the pod namespace (runs on a thread that entered it).
fn pod_side(w: &Wiring) -> Result<String, CniError> {
    let mut nl = Netlink::open().map_err(|e| dp("open netlink in the pod namespace", e))?;
    let link = nl
        .link_by_name(&w.pod_ifname)
        .map_err(|e| dp("read the pod interface", e))?
        .ok_or_else(|| {
            CniError::plugin(
                format!("pod interface {} vanished after creation", w.pod_ifname),
                "",
            )
        })?;
    let idx = link.index;
    let mut sys = ProcSys::default();
    let has_v6 = w.ips.iter().any(|n| n.addr().is_ipv6());
    if has_v6 {
        for (name, v) in [("accept_dad", "0"), ("disable_ipv6", "0")] {
            if let Ok(k) = SysctlKey::ipv6_conf(&w.pod_ifname, name) {
                sys.set(&k, v)
                    .map_err(|e| dp(&format!("set pod sysctl {k}={v}"), e))?;
            }
        }
    }
    if w.allow_ip_forwarding {
        let k = SysctlKey::parse("net/ipv4/ip_forward").map_err(|e| dp("name a sysctl", e))?;
        sys.set(&k, "1")
            .map_err(|e| dp("enable IP forwarding in the pod", e))?;
        if has_v6 {
            let k = SysctlKey::parse("net/ipv6/conf/all/forwarding")
                .map_err(|e| dp("name a sysctl", e))?;
            sys.set(&k, "1")
                .map_err(|e| dp("enable IPv6 forwarding in the pod", e))?;
        }
    }
    let mut v4 = false;
    let mut v6 = false;
    for net in &w.ips {
        let mut a = Address::new(idx, *net);
        a.nodad = net.addr().is_ipv6();
        match nl.add_address(&a) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(dp(&format!("add {net} to {} in the pod", w.pod_ifname), e)),
        }
        v4 |= net.addr().is_ipv4();
        v6 |= net.addr().is_ipv6();
    }
    let mut routes = Vec::new();
    if v4 {
        let gw = IpAddr::V4(GATEWAY_V4);
        routes.push(Route::link(IpNet::from(gw), idx));
        routes.push(Route::via(
            IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).map_err(|e| dp("route", e))?,
            gw,
            idx,
        ));
    }
    if v6 {
        routes.push(Route::via(
            IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).map_err(|e| dp("route", e))?,
            IpAddr::V6(host_link_local()),
            idx,
        ));
    }
    for r in &routes {
        nl.replace_route(r)
            .map_err(|e| dp(&format!("add pod route {r}"), e))?;
    }
    Ok(link.mac.as_deref().map(mac_string).unwrap_or_default())
}

/// Create and configure the veth pair in the kernel. On error, the caller undoes with `unwire`.
pub fn wire(w: &Wiring, pod_ns: &NetNs) -> Result<Wired, CniError> {
    let mut nl = Netlink::open().map_err(|e| dp("open netlink", e))?;
    let mut sys = ProcSys::default();
    wire_with(&mut nl, &mut sys, w, pod_ns, &mut |w| {
        pod_ns
            .run(|| pod_side(w))
            .map_err(|e| dp("enter the pod namespace", e))?
    })
}

/// The host-side steps over `rtnl`/`sys` (fakes in unit tests); `configure_pod` does the pod
/// side and returns the pod interface's MAC. Order: veth (peer created in `pod_ns`), host
/// sysctls while the host end is still down, host end up, pod side, host routes.
pub fn wire_with(
    rtnl: &mut dyn Rtnl,
    sys: &mut dyn Sysctl,
    w: &Wiring,
    pod_ns: &NetNs,
    configure_pod: &mut dyn FnMut(&Wiring) -> Result<String, CniError>,
) -> Result<Wired, CniError> {
    let spec = VethSpec {
        host: VethEnd {
            name: w.host_veth.clone(),
            mac: Some(HOST_MAC),
            mtu: Some(w.mtu),
            up: false,
        },
        peer: VethEnd {
            name: w.pod_ifname.clone(),
            mac: None,
            mtu: Some(w.mtu),
            up: true,
        },
        peer_netns: Some(pod_ns),
    };
    rtnl.create_veth(&spec).map_err(|e| {
        dp(
            &format!(
                "create veth {} with peer {} in the pod namespace",
                w.host_veth, w.pod_ifname
            ),
            e,
        )
    })?;
    host_sysctls(sys, w)?;
    let host = rtnl
        .link_by_name(&w.host_veth)
        .map_err(|e| dp("read the host veth", e))?
        .ok_or_else(|| CniError::plugin(format!("host veth {} vanished", w.host_veth), ""))?;
    rtnl.set_link(
        host.index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .map_err(|e| dp(&format!("bring {} up", w.host_veth), e))?;
    let pod_mac = configure_pod(w)?;
    for net in &w.ips {
        let r = Route::link(*net, host.index);
        rtnl.replace_route(&r)
            .map_err(|e| dp(&format!("add host route {} dev {}", net, w.host_veth), e))?;
    }
    Ok(Wired { pod_mac })
}

/// Delete the host veth (the peer and the host routes go with it); missing is fine.
pub fn unwire(host_veth: &str) -> Result<(), CniError> {
    let mut nl = Netlink::open().map_err(|e| dp("open netlink", e))?;
    unwire_with(&mut nl, host_veth)
}

/// `unwire` over any `Rtnl`.
pub fn unwire_with(rtnl: &mut dyn Rtnl, host_veth: &str) -> Result<(), CniError> {
    match rtnl.delete_link(host_veth) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(dp(&format!("delete veth {host_veth}"), e)),
    }
}

/// Whether the host veth exists.
pub fn host_veth_exists(host_veth: &str) -> Result<bool, CniError> {
    let mut nl = Netlink::open().map_err(|e| dp("open netlink", e))?;
    Ok(nl
        .link_by_name(host_veth)
        .map_err(|e| dp("read links", e))?
        .is_some())
}

fn check_failed(msg: String) -> CniError {
    CniError::new(ErrorCode::Other(crate::spec::error::CODE_PLUGIN), msg, "")
}

/// CHECK: the veth exists on both sides, the pod has its addresses and routes, the host has
/// its routes.
pub fn verify(w: &Wiring, pod_ns: &NetNs) -> Result<(), CniError> {
    let mut nl = Netlink::open().map_err(|e| dp("open netlink", e))?;
    let host = nl
        .link_by_name(&w.host_veth)
        .map_err(|e| dp("read links", e))?
        .ok_or_else(|| check_failed(format!("host veth {} is missing", w.host_veth)))?;
    for net in &w.ips {
        let fam = if net.addr().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        let routes = nl
            .routes(&RouteFilter {
                oif: Some(host.index),
                ..RouteFilter::main(fam)
            })
            .map_err(|e| dp("list host routes", e))?;
        if !routes.iter().any(|r| r.dst == *net) {
            return Err(check_failed(format!(
                "host route {net} dev {} is missing",
                w.host_veth
            )));
        }
    }
    let ips = w.ips.clone();
    let ifname = w.pod_ifname.clone();
    pod_ns
        .run(move || -> Result<(), CniError> {
            let mut nl = Netlink::open().map_err(|e| dp("open netlink in the pod", e))?;
            let link = nl
                .link_by_name(&ifname)
                .map_err(|e| dp("read pod links", e))?
                .ok_or_else(|| check_failed(format!("pod interface {ifname} is missing")))?;
            for net in &ips {
                let fam = if net.addr().is_ipv4() {
                    Family::V4
                } else {
                    Family::V6
                };
                let addrs = nl
                    .addresses(fam, Some(link.index))
                    .map_err(|e| dp("list pod addresses", e))?;
                if !addrs.iter().any(|a| a.net == *net) {
                    return Err(check_failed(format!(
                        "address {net} is missing on {ifname} in the pod"
                    )));
                }
                let routes = nl
                    .routes(&RouteFilter::main(fam))
                    .map_err(|e| dp("list pod routes", e))?;
                if !routes
                    .iter()
                    .any(|r| r.dst.prefix_len() == 0 && r.oif == Some(link.index))
                {
                    return Err(check_failed(format!(
                        "default route via {ifname} is missing in the pod"
                    )));
                }
            }
            Ok(())
        })
        .map_err(|e| dp("enter the pod namespace", e))?
}
