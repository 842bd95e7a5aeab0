//! Node address autodetection (`IP_AUTODETECTION_METHOD` for IPv4, `IP6_AUTODETECTION_METHOD`
//! for IPv6), as upstream's calico-node does it. One code path serves both families: the
//! interfaces carry all their addresses and `detect` looks only at the requested family's.
//!
//! ```text
//!  netlink links + addresses ──read_interfaces──▶ [Iface] ──detect(method, reach source)──▶ CIDR
//!  can-reach=DEST ──UDP connect (no packet sent)──▶ source address ─┘
//! ```
//!
//! `detect` is pure. Upstream facts it reproduces: interfaces are walked in reverse kernel order
//! (upstream keeps that for compatibility with older releases); names match unanchored regexes,
//! several joined as alternatives; first-found and skip-interface exclude upstream's default list;
//! only global unicast addresses count (Go's `IsGlobalUnicast`: for IPv6 this drops link-local
//! fe80::/10, loopback, multicast and `::`); the result keeps the host address with the
//! interface's prefix length (`10.0.0.5/24`, `2001:db8::5/64`). One deliberate difference: interfaces that are administratively
//! down are skipped, since an address there can carry neither BGP nor VXLAN traffic.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};

pub use calico_dataplane::Family;
use calico_dataplane::Rtnl;
use ipnet::IpNet;
use regex::Regex;

/// Upstream's `DEFAULT_INTERFACES_TO_EXCLUDE` (first-found and skip-interface).
pub const DEFAULT_INTERFACES_TO_EXCLUDE: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^vxlan\\.calico.*",
    "^vxlan-v6\\.calico.*",
    "^wireguard\\.cali.*",
    "^wg-v6\\.cali.*",
    "^nodelocaldns.*",
];

/// One IP_AUTODETECTION_METHOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    FirstFound,
    /// `interface=REGEX[,REGEX…]`: only matching interfaces (no default exclusions).
    Interface(Vec<String>),
    /// `skip-interface=REGEX[,REGEX…]`: the default exclusions plus these.
    SkipInterface(Vec<String>),
    /// `can-reach=DEST`: the source address the kernel picks towards DEST.
    CanReach(String),
    /// `cidr=CIDR[,CIDR…]`: the first address inside one of these.
    Cidr(Vec<IpNet>),
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn compile(patterns: &[String]) -> Result<Option<Regex>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let joined = format!("({})", patterns.join(")|("));
    Regex::new(&joined)
        .map(Some)
        .map_err(|e| format!("invalid interface regex {patterns:?}: {e}"))
}

impl Method {
    /// Parses a method string; the error says what is accepted.
    pub fn parse(s: &str) -> Result<Method, String> {
        let s = s.trim();
        if s.is_empty() || s == "first-found" {
            return Ok(Method::FirstFound);
        }
        let nonempty = |v: Vec<String>, what: &str| {
            if v.is_empty() {
                Err(format!("{what} needs at least one value"))
            } else {
                Ok(v)
            }
        };
        if let Some(rest) = s.strip_prefix("interface=") {
            let v = nonempty(split_list(rest), "interface=")?;
            compile(&v)?;
            return Ok(Method::Interface(v));
        }
        if let Some(rest) = s.strip_prefix("skip-interface=") {
            let v = nonempty(split_list(rest), "skip-interface=")?;
            compile(&v)?;
            return Ok(Method::SkipInterface(v));
        }
        if let Some(rest) = s.strip_prefix("can-reach=") {
            let dest = rest.trim();
            if dest.is_empty() {
                return Err("can-reach= needs a destination address or host name".into());
            }
            return Ok(Method::CanReach(dest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("cidr=") {
            let mut nets = Vec::new();
            for c in nonempty(split_list(rest), "cidr=")? {
                let n: IpNet = c
                    .parse()
                    .map_err(|_| format!("invalid CIDR {c:?} in cidr= (e.g. 10.0.0.0/24)"))?;
                nets.push(n.trunc());
            }
            return Ok(Method::Cidr(nets));
        }
        Err(
            "unknown method; use first-found, interface=REGEX, skip-interface=REGEX, \
             can-reach=DEST or cidr=CIDR[,CIDR…]"
                .into(),
        )
    }
}

/// One interface as autodetection sees it, in kernel (index) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: Option<u32>,
    /// IPv4 and IPv6 addresses with the interface's prefix length (host bits kept).
    pub addrs: Vec<IpNet>,
}

/// The chosen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub iface: String,
    pub cidr: IpNet,
}

/// The family's name and the variables that configure it (`IP`/`IP6`, and their methods).
pub fn family_vars(family: Family) -> (&'static str, &'static str, &'static str) {
    match family {
        Family::V4 => ("IPv4", "IP", "IP_AUTODETECTION_METHOD"),
        Family::V6 => ("IPv6", "IP6", "IP6_AUTODETECTION_METHOD"),
    }
}

/// The family of `ip`.
pub fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DetectError {
    #[error("IP autodetection ({method}): no usable interface (all were excluded, down or absent)")]
    NoInterfaces { method: String },
    #[error(
        "IP autodetection ({method}): no global unicast {} address on the candidate interfaces \
         {candidates:?}; set {}=ADDRESS/PREFIX or choose another {}",
        family_vars(*family).0, family_vars(*family).1, family_vars(*family).2
    )]
    NoAddress {
        method: String,
        family: Family,
        candidates: Vec<String>,
    },
    #[error(
        "IP autodetection (can-reach={dest}): the kernel's source address {source_ip} towards it is \
         on no local interface"
    )]
    ReachMismatch { dest: String, source_ip: IpAddr },
    #[error("IP autodetection (can-reach={dest}): {reason}")]
    Reach { dest: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Go's `IP.IsGlobalUnicast`.
fn global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_link_local())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

fn describe(m: &Method) -> String {
    match m {
        Method::FirstFound => "first-found".into(),
        Method::Interface(v) => format!("interface={}", v.join(",")),
        Method::SkipInterface(v) => format!("skip-interface={}", v.join(",")),
        Method::CanReach(d) => format!("can-reach={d}"),
        Method::Cidr(v) => format!(
            "cidr={}",
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Interfaces passing the include/exclude patterns, in upstream's (reverse) order, up only.
fn candidates<'a>(
    ifaces: &'a [Iface],
    include: &[String],
    exclude: &[String],
) -> Result<Vec<&'a Iface>, DetectError> {
    let inc = compile(include).map_err(DetectError::Invalid)?;
    let exc = compile(exclude).map_err(DetectError::Invalid)?;
    Ok(ifaces
        .iter()
        .rev()
        .filter(|i| i.up)
        .filter(|i| inc.as_ref().is_none_or(|r| r.is_match(&i.name)))
        .filter(|i| !exc.as_ref().is_some_and(|r| r.is_match(&i.name)))
        .collect())
}

fn first_address(
    family: Family,
    method: &Method,
    cands: &[&Iface],
    cidrs: &[IpNet],
) -> Result<Detected, DetectError> {
    if cands.is_empty() {
        return Err(DetectError::NoInterfaces {
            method: describe(method),
        });
    }
    for i in cands {
        for a in &i.addrs {
            if family_of(a.addr()) == family
                && global_unicast(a.addr())
                && (cidrs.is_empty() || cidrs.iter().any(|c| c.contains(&a.addr())))
            {
                return Ok(Detected {
                    iface: i.name.clone(),
                    cidr: *a,
                });
            }
        }
    }
    Err(DetectError::NoAddress {
        method: describe(method),
        family,
        candidates: cands.iter().map(|i| i.name.clone()).collect(),
    })
}

/// The interface and CIDR carrying `ip`, over all interfaces (no exclusions).
pub fn find_address(ifaces: &[Iface], ip: IpAddr) -> Option<Detected> {
    ifaces.iter().rev().find_map(|i| {
        i.addrs.iter().find(|a| a.addr() == ip).map(|a| Detected {
            iface: i.name.clone(),
            cidr: *a,
        })
    })
}

/// Chooses the node's CIDR of `family`. `reach_source` is the kernel's source address towards
/// the can-reach destination (see `reach_source`); other methods ignore it.
pub fn detect(
    family: Family,
    method: &Method,
    ifaces: &[Iface],
    reach_source: Option<IpAddr>,
) -> Result<Detected, DetectError> {
    let defaults: Vec<String> = DEFAULT_INTERFACES_TO_EXCLUDE
        .iter()
        .map(|s| s.to_string())
        .collect();
    match method {
        Method::FirstFound => {
            first_address(family, method, &candidates(ifaces, &[], &defaults)?, &[])
        }
        Method::Interface(inc) => {
            first_address(family, method, &candidates(ifaces, inc, &[])?, &[])
        }
        Method::SkipInterface(skip) => {
            let mut exc = defaults;
            exc.extend(skip.iter().cloned());
            first_address(family, method, &candidates(ifaces, &[], &exc)?, &[])
        }
        Method::Cidr(nets) => first_address(family, method, &candidates(ifaces, &[], &[])?, nets),
        Method::CanReach(dest) => {
            let source_ip = reach_source.ok_or_else(|| DetectError::Reach {
                dest: dest.clone(),
                reason: "no source address known".into(),
            })?;
            find_address(ifaces, source_ip).ok_or(DetectError::ReachMismatch {
                dest: dest.clone(),
                source_ip,
            })
        }
    }
}

/// The source address the kernel would use towards `dest` (an address of `family` or a host
/// name), found by connecting a UDP socket to port 80 without sending anything (upstream's
/// approach).
pub fn reach_source(family: Family, dest: &str) -> Result<IpAddr, DetectError> {
    let err = |reason: String| DetectError::Reach {
        dest: dest.to_string(),
        reason,
    };
    let name = family_vars(family).0;
    let target: SocketAddr = match dest.parse::<IpAddr>() {
        Ok(ip) if family_of(ip) == family => SocketAddr::new(ip, 80),
        Ok(_) => return Err(err(format!("not an {name} address"))),
        Err(_) => (dest, 80)
            .to_socket_addrs()
            .map_err(|e| err(format!("cannot resolve: {e}")))?
            .find(|a| family_of(a.ip()) == family)
            .ok_or_else(|| err(format!("resolves to no {name} address")))?,
    };
    let any = match family {
        Family::V4 => "0.0.0.0:0",
        Family::V6 => "[::]:0",
    };
    let sock = UdpSocket::bind(any).map_err(|e| err(format!("UDP socket: {e}")))?;
    sock.connect(target)
        .map_err(|e| err(format!("no route ({e})")))?;
    sock.local_addr()
        .map(|a| a.ip())
        .map_err(|e| err(format!("local address: {e}")))
}

/// Links with their IPv4 and IPv6 addresses through netlink, in kernel order.
pub fn read_interfaces(rtnl: &mut dyn Rtnl) -> calico_dataplane::Result<Vec<Iface>> {
    let mut links = rtnl.links()?;
    links.sort_by_key(|l| l.index);
    let mut addrs = rtnl.addresses(Family::V4, None)?;
    addrs.extend(rtnl.addresses(Family::V6, None)?);
    Ok(links
        .into_iter()
        .map(|l| Iface {
            index: l.index,
            addrs: addrs
                .iter()
                .filter(|a| a.index == l.index)
                .map(|a| a.net)
                .collect(),
            name: l.name,
            up: l.up,
            mtu: l.mtu,
        })
        .collect())
}

#[cfg(test)]
#[path = "autodetect_tests.rs"]
mod tests;
