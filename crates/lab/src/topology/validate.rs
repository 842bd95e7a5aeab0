//! Validation: `raw::File` to `Topology`. Every problem is collected (not just the first) and
//! names its field (`nodes[2].subnet: …`); addresses must be usable hosts of their subnet and
//! unique across gateways, nodes, routers and etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use calico_api::Resource;
use ipnet::Ipv4Net;

use super::{Datastore, Interface, Node, Pod, Router, Subnet, Topology, raw};
use crate::names;

/// Smallest and largest MTU we accept on a link.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=65535;

fn parse_mtu(field: &str, v: Option<u32>, default: u32, p: &mut Vec<String>) -> u32 {
    match v {
        None => default,
        Some(m) if MTU_RANGE.contains(&m) => m,
        Some(m) => {
            p.push(format!(
                "{field}: {m} is out of range; use {}..={}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ));
            default
        }
    }
}

fn parse_addr(field: &str, s: &str, p: &mut Vec<String>) -> Option<Ipv4Addr> {
    match s.trim().parse::<Ipv4Addr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(format!(
                "{field}: {s:?} is not an IPv4 address (write it without a prefix length, e.g. 10.10.10.10)"
            ));
            None
        }
    }
}

/// The address must be a usable host address of the subnet.
fn check_host(field: &str, addr: Ipv4Addr, subnet: &Subnet, p: &mut Vec<String>) {
    if !subnet.cidr.contains(&addr) {
        p.push(format!(
            "{field}: {addr} is outside subnet {:?} ({})",
            subnet.name, subnet.cidr
        ));
    } else if subnet.cidr.prefix_len() < 31
        && (addr == subnet.cidr.network() || addr == subnet.cidr.broadcast())
    {
        p.push(format!(
            "{field}: {addr} is the network or broadcast address of {}",
            subnet.cidr
        ));
    }
}

struct Checker<'a> {
    subnets: &'a [Subnet],
    subnet_index: BTreeMap<&'a str, usize>,
    /// Every address handed out so far, with the field that took it.
    taken: BTreeMap<Ipv4Addr, String>,
}

impl Checker<'_> {
    fn claim(&mut self, field: &str, addr: Ipv4Addr, p: &mut Vec<String>) {
        if let Some(prev) = self.taken.get(&addr) {
            p.push(format!("{field}: address {addr} is already used by {prev}"));
        } else {
            self.taken.insert(addr, field.to_string());
        }
    }

    fn interface(
        &mut self,
        field: &str,
        name: String,
        raw_subnet: &str,
        raw_addr: &str,
        raw_mtu: Option<u32>,
        p: &mut Vec<String>,
    ) -> Option<Interface> {
        let Some(&subnet) = self.subnet_index.get(raw_subnet) else {
            let known: Vec<&str> = self.subnet_index.keys().copied().collect();
            p.push(format!(
                "{field}.subnet: no subnet named {raw_subnet:?} (subnets: {})",
                known.join(", ")
            ));
            return None;
        };
        let addr = parse_addr(&format!("{field}.address"), raw_addr, p)?;
        let sub = &self.subnets[subnet];
        check_host(&format!("{field}.address"), addr, sub, p);
        self.claim(&format!("{field}.address"), addr, p);
        let mtu = parse_mtu(&format!("{field}.mtu"), raw_mtu, sub.mtu, p);
        Some(Interface {
            name,
            subnet,
            address: addr,
            mtu,
        })
    }

    /// Extra interfaces of a node or router; `first` is the name the first one defaults to.
    fn extras(
        &mut self,
        field: &str,
        raws: &[raw::Interface],
        first: usize,
        used: &mut BTreeSet<String>,
        p: &mut Vec<String>,
    ) -> Vec<Interface> {
        if raws.len() > names::MAX_EXTRA_INTERFACES {
            p.push(format!(
                "{field}: {} interfaces; at most {} are supported",
                raws.len(),
                names::MAX_EXTRA_INTERFACES
            ));
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, r) in raws.iter().enumerate() {
            let f = format!("{field}[{k}]");
            let name = r
                .name
                .clone()
                .unwrap_or_else(|| format!("eth{}", first + k));
            if let Err(e) = names::check_ifname(&name) {
                p.push(format!("{f}.name: {e}"));
            } else if !used.insert(name.clone()) {
                p.push(format!(
                    "{f}.name: {name:?} is used twice in this namespace"
                ));
            }
            if let Some(i) = self.interface(&f, name, &r.subnet, &r.address, r.mtu, p) {
                out.push(i);
            }
        }
        out
    }
}

pub(super) fn validate(file: raw::File, base: &Path) -> Result<Topology, Vec<String>> {
    let mut p = Vec::new();
    if let Err(e) = names::check_lab_name(&file.name) {
        p.push(format!("name: {e}"));
    }

    // Subnets.
    if file.subnets.is_empty() {
        p.push("subnets: at least one subnet is needed".into());
    }
    if file.subnets.len() > names::MAX_SUBNETS {
        p.push(format!(
            "subnets: {} subnets; at most {} are supported",
            file.subnets.len(),
            names::MAX_SUBNETS
        ));
        return Err(p);
    }
    let mut subnets: Vec<Subnet> = Vec::new();
    for (i, s) in file.subnets.iter().enumerate() {
        let f = format!("subnets[{i}]");
        if let Err(e) = names::check_object_name(&s.name) {
            p.push(format!("{f}.name: {e}"));
        }
        if subnets.iter().any(|o| o.name == s.name) {
            p.push(format!("{f}.name: subnet {:?} is defined twice", s.name));
        }
        let cidr = match s.cidr.trim().parse::<Ipv4Net>() {
            Ok(c) if c.trunc() != c => {
                p.push(format!(
                    "{f}.cidr: {c} has host bits set; did you mean {}?",
                    c.trunc()
                ));
                continue;
            }
            Ok(c) if c.prefix_len() > 30 => {
                p.push(format!("{f}.cidr: {c} is too small; use /30 or shorter"));
                continue;
            }
            Ok(c) => c,
            Err(_) => {
                p.push(format!(
                    "{f}.cidr: {:?} is not an IPv4 CIDR (e.g. 10.10.10.0/24)",
                    s.cidr
                ));
                continue;
            }
        };
        if let Some(o) = subnets
            .iter()
            .find(|o| o.cidr.contains(&cidr.network()) || cidr.contains(&o.cidr.network()))
        {
            p.push(format!(
                "{f}.cidr: {cidr} overlaps subnet {:?} ({})",
                o.name, o.cidr
            ));
        }
        let mtu = parse_mtu(&format!("{f}.mtu"), s.mtu, 1500, &mut p);
        let Some(gateway) = parse_addr(&format!("{f}.gateway"), &s.gateway, &mut p) else {
            continue;
        };
        let sub = Subnet {
            name: s.name.clone(),
            cidr,
            gateway,
            mtu,
        };
        check_host(&format!("{f}.gateway"), gateway, &sub, &mut p);
        subnets.push(sub);
    }
    // Bail out before nodes when subnets are broken: every node error would repeat it.
    if !p.is_empty() {
        return Err(p);
    }
    let mut ck = Checker {
        subnets: &subnets,
        subnet_index: subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect(),
        taken: subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.gateway, format!("subnets[{i}].gateway")))
            .collect(),
    };

    // Nodes and routers share one name space (their namespaces are named after them).
    let mut entity_names: BTreeMap<String, String> = BTreeMap::new();
    let mut claim_name = |field: &str, name: &str, p: &mut Vec<String>| {
        if let Err(e) = names::check_object_name(name) {
            p.push(format!("{field}: {e}"));
        } else if names::RESERVED.contains(&name) {
            p.push(format!(
                "{field}: {name:?} is reserved for the lab's own namespaces ({})",
                names::RESERVED.join(", ")
            ));
        } else if let Some(prev) = entity_names.get(name) {
            p.push(format!("{field}: {name:?} is already the name of {prev}"));
        } else {
            entity_names.insert(name.to_string(), field.to_string());
        }
    };

    if file.nodes.is_empty() {
        p.push("nodes: at least one node is needed".into());
    }
    if file.nodes.len() + file.routers.len() > names::MAX_ENTITIES {
        p.push(format!(
            "nodes: {} nodes and routers; at most {} are supported",
            file.nodes.len() + file.routers.len(),
            names::MAX_ENTITIES
        ));
        return Err(p);
    }
    for (k, v) in &file.node_env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            p.push(format!("nodeEnv.{k}: not a valid environment variable"));
        }
    }
    let mut nodes = Vec::new();
    for (i, n) in file.nodes.iter().enumerate() {
        let f = format!("nodes[{i}]");
        claim_name(&format!("{f}.name"), &n.name, &mut p);
        let mut used = BTreeSet::from([names::PRIMARY_IFNAME.to_string(), "lo".to_string()]);
        let primary = ck.interface(
            &f,
            names::PRIMARY_IFNAME.to_string(),
            &n.subnet,
            &n.address,
            n.mtu,
            &mut p,
        );
        let extras = ck.extras(
            &format!("{f}.interfaces"),
            &n.interfaces,
            2,
            &mut used,
            &mut p,
        );
        for (k, v) in &n.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                p.push(format!("{f}.env.{k}: not a valid environment variable"));
            }
        }
        let mut env = file.node_env.clone();
        env.extend(n.env.clone());
        if let Some(primary) = primary {
            let mut interfaces = vec![primary];
            interfaces.extend(extras);
            nodes.push(Node {
                name: n.name.clone(),
                interfaces,
                env,
            });
        }
    }

    let mut routers = Vec::new();
    for (i, r) in file.routers.iter().enumerate() {
        let f = format!("routers[{i}]");
        claim_name(&format!("{f}.name"), &r.name, &mut p);
        if r.asn == 0 {
            p.push(format!("{f}.as: 0 is not a valid AS number"));
        }
        if r.interfaces.is_empty() {
            p.push(format!(
                "{f}.interfaces: a router needs at least one interface (subnet and address)"
            ));
        }
        let mut used = BTreeSet::from(["lo".to_string()]);
        let interfaces = ck.extras(
            &format!("{f}.interfaces"),
            &r.interfaces,
            1,
            &mut used,
            &mut p,
        );
        routers.push(Router {
            name: r.name.clone(),
            kind: r.kind,
            asn: r.asn,
            interfaces,
        });
    }

    let mut pods = Vec::new();
    let mut pod_keys = BTreeSet::new();
    for (i, pod) in file.pods.iter().enumerate() {
        let f = format!("pods[{i}]");
        if let Err(e) = names::check_object_name(&pod.namespace) {
            p.push(format!("{f}.namespace: {e}"));
        }
        if let Err(e) = names::check_object_name(&pod.name) {
            p.push(format!("{f}.name: {e}"));
        }
        if !file.nodes.iter().any(|n| n.name == pod.node) {
            p.push(format!("{f}.node: no node named {:?}", pod.node));
        }
        if !pod_keys.insert((pod.namespace.clone(), pod.name.clone())) {
            p.push(format!(
                "{f}: pod {}/{} is defined twice",
                pod.namespace, pod.name
            ));
        }
        pods.push(Pod {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node.clone(),
            labels: pod.labels.clone(),
        });
    }

    let datastore = datastore(file.datastore.as_ref(), &mut ck, &mut p);
    let resources = load_resources(&file.resources, base, &mut p);
    if !p.is_empty() {
        return Err(p);
    }
    Ok(Topology {
        name: file.name,
        datastore,
        subnets,
        nodes,
        routers,
        resources,
        pods,
    })
}

fn datastore(raw: Option<&raw::Datastore>, ck: &mut Checker<'_>, p: &mut Vec<String>) -> Datastore {
    let spec = match raw {
        None => return Datastore::Embedded,
        Some(raw::Datastore::Name(n)) if n == "embedded" => return Datastore::Embedded,
        Some(raw::Datastore::Name(n)) if n == "etcd" => {
            p.push(
                "datastore: etcd needs a place in the lab: {type: etcd, subnet: NAME, address: IP}"
                    .into(),
            );
            return Datastore::Embedded;
        }
        Some(raw::Datastore::Name(n)) => {
            p.push(format!(
                "datastore: {n:?} is not a datastore; use embedded or {{type: etcd, subnet, address}}"
            ));
            return Datastore::Embedded;
        }
        Some(raw::Datastore::Spec(s)) => s,
    };
    match (spec.kind.as_str(), &spec.subnet, &spec.address) {
        ("embedded", None, None) => Datastore::Embedded,
        ("embedded", _, _) => {
            p.push("datastore: the embedded datastore takes no subnet or address".into());
            Datastore::Embedded
        }
        ("etcd", Some(subnet), Some(address)) => ck
            .interface(
                "datastore",
                names::PRIMARY_IFNAME.to_string(),
                subnet,
                address,
                None,
                p,
            )
            .map(|interface| Datastore::Etcd { interface })
            .unwrap_or(Datastore::Embedded),
        ("etcd", _, _) => {
            p.push("datastore: etcd needs both `subnet` and `address`".into());
            Datastore::Embedded
        }
        (other, _, _) => {
            p.push(format!(
                "datastore.type: {other:?} is not a datastore; use embedded or etcd"
            ));
            Datastore::Embedded
        }
    }
}

fn load_resources(
    sources: &[raw::ResourceSource],
    base: &Path,
    p: &mut Vec<String>,
) -> Vec<(String, Resource)> {
    let mut out = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let f = format!("resources[{i}]");
        let (origin, text) = match (&src.file, &src.inline) {
            (Some(file), None) => {
                let path = base.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(t) => (format!("{f}.file ({})", path.display()), t),
                    Err(e) => {
                        p.push(format!("{f}.file: cannot read {}: {e}", path.display()));
                        continue;
                    }
                }
            }
            (None, Some(serde_json::Value::String(s))) => (format!("{f}.inline"), s.clone()),
            (None, Some(v)) => (format!("{f}.inline"), v.to_string()),
            _ => {
                p.push(format!(
                    "{f}: give exactly one of `file` (a path relative to the topology) or `inline`"
                ));
                continue;
            }
        };
        match calico_api::codec::parse_documents(&text) {
            Ok(rs) if rs.is_empty() => p.push(format!("{origin}: holds no resource")),
            Ok(rs) => out.extend(rs.into_iter().map(|r| (origin.clone(), r))),
            Err(e) => p.push(format!("{origin}: {e}")),
        }
    }
    out
}
