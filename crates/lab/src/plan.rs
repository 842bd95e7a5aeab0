//! From a validated topology to the ordered list of steps that build it (pure; no I/O).
//!
//! ```text
//! Topology ──plan()──▶ [Step]  ──lab::up executes──▶ namespaces, bridges, veths, addresses
//! ```
//!
//! The switch namespace comes first (one bridge per subnet holding the gateway address,
//! forwarding on), then every node and router: its namespace, loopback up, forwarding on, one
//! veth per interface created in the switch namespace with its peer placed straight into the
//! node's namespace (no create-then-move), the switch end enslaved to the subnet's bridge, the
//! address, and for nodes a default route via the primary subnet's gateway.

use std::fmt;

use crate::names;
use crate::names::LabNames;
use crate::topology::{Datastore, Interface, Topology};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a named network namespace (`ip netns add`). Recorded in the state file before it
    /// runs, so `down` finds it even when `up` dies right after.
    Netns(String),
    /// `ip -n NETNS ARGS…`
    Ip { netns: String, args: Vec<String> },
    /// Write `/proc/sys/KEY` (slash form) inside NETNS.
    Sysctl {
        netns: String,
        key: String,
        value: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Netns(n) => write!(f, "ip netns add {n}"),
            Step::Ip { netns, args } => write!(f, "ip -n {netns} {}", args.join(" ")),
            Step::Sysctl { netns, key, value } => write!(f, "[{netns}] {key} = {value}"),
        }
    }
}

fn ip(netns: &str, args: &[&str]) -> Step {
    Step::Ip {
        netns: netns.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

fn forwarding(netns: &str) -> Step {
    Step::Sysctl {
        netns: netns.to_string(),
        key: "net/ipv4/ip_forward".into(),
        value: "1".into(),
    }
}

/// One namespace with links into the switch.
fn entity(
    topo: &Topology,
    names: &LabNames,
    index: usize,
    name: &str,
    interfaces: &[Interface],
    steps: &mut Vec<Step>,
) {
    let sw = names.switch_netns();
    let ns = names.netns(name);
    steps.push(Step::Netns(ns.clone()));
    steps.push(ip(&ns, &["link", "set", "lo", "up"]));
    steps.push(forwarding(&ns));
    for (k, iface) in interfaces.iter().enumerate() {
        let port = names.switch_port(index, k);
        let subnet = topo.subnet_of(iface);
        let mtu = iface.mtu.to_string();
        let addr = format!("{}/{}", iface.address, subnet.cidr.prefix_len());
        steps.push(ip(
            &sw,
            &[
                "link",
                "add",
                &port,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                &iface.name,
                "netns",
                &ns,
                "mtu",
                &mtu,
            ],
        ));
        steps.push(ip(
            &sw,
            &[
                "link",
                "set",
                &port,
                "master",
                &names.bridge(iface.subnet),
                "up",
            ],
        ));
        steps.push(ip(&ns, &["addr", "add", &addr, "dev", &iface.name]));
        steps.push(ip(&ns, &["link", "set", &iface.name, "up"]));
    }
}

/// Every step of `up`, in order.
pub fn plan(topo: &Topology, names: &LabNames) -> Vec<Step> {
    let mut steps = Vec::new();
    let sw = names.switch_netns();
    steps.push(Step::Netns(sw.clone()));
    steps.push(ip(&sw, &["link", "set", "lo", "up"]));
    steps.push(forwarding(&sw));
    for (i, s) in topo.subnets.iter().enumerate() {
        let br = names.bridge(i);
        let mtu = s.mtu.to_string();
        let gw = format!("{}/{}", s.gateway, s.cidr.prefix_len());
        steps.push(ip(
            &sw,
            &["link", "add", &br, "mtu", &mtu, "type", "bridge"],
        ));
        steps.push(ip(&sw, &["addr", "add", &gw, "dev", &br]));
        steps.push(ip(&sw, &["link", "set", &br, "up"]));
    }
    for (i, n) in topo.nodes.iter().enumerate() {
        entity(topo, names, i, &n.name, &n.interfaces, &mut steps);
        let gw = topo.subnet_of(n.primary()).gateway.to_string();
        let ns = names.netns(&n.name);
        steps.push(ip(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &gw,
                "dev",
                &n.primary().name,
            ],
        ));
    }
    for (j, r) in topo.routers.iter().enumerate() {
        entity(
            topo,
            names,
            topo.nodes.len() + j,
            &r.name,
            &r.interfaces,
            &mut steps,
        );
    }
    if let Datastore::Etcd { interface } = &topo.datastore {
        let index = topo.nodes.len() + topo.routers.len();
        let ifaces = std::slice::from_ref(interface);
        entity(topo, names, index, names::ETCD, ifaces, &mut steps);
        // Nodes in other subnets reach etcd through the switch.
        let gw = topo.subnet_of(interface).gateway.to_string();
        let ns = names.netns(names::ETCD);
        steps.push(ip(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &gw,
                "dev",
                &interface.name,
            ],
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const TOPO: &str = "
name: t
subnets:
  - {name: a, cidr: 10.1.0.0/24, gateway: 10.1.0.1}
  - {name: b, cidr: 10.2.0.0/24, gateway: 10.2.0.1, mtu: 9000}
nodes:
  - {name: n1, subnet: a, address: 10.1.0.10}
  - name: n2
    subnet: b
    address: 10.2.0.10
    interfaces: [{subnet: a, address: 10.1.0.11, mtu: 1400}]
routers:
  - {name: r1, kind: bird, as: 65000, interfaces: [{subnet: a, address: 10.1.0.254}]}
";

    #[test]
    fn plan_builds_switch_then_nodes_then_routers() {
        let topo = Topology::parse(TOPO, Path::new("t.yaml"), Path::new(".")).unwrap();
        let names = LabNames::new("t");
        let tag = names.tag().to_string();
        let text: Vec<String> = plan(&topo, &names)
            .iter()
            .map(|s| s.to_string().replace(&tag, "TAG"))
            .collect();
        let expected = [
            "ip netns add cl-TAG-t-switch",
            "ip -n cl-TAG-t-switch link set lo up",
            "[cl-TAG-t-switch] net/ipv4/ip_forward = 1",
            "ip -n cl-TAG-t-switch link add cbTAG-0 mtu 1500 type bridge",
            "ip -n cl-TAG-t-switch addr add 10.1.0.1/24 dev cbTAG-0",
            "ip -n cl-TAG-t-switch link set cbTAG-0 up",
            "ip -n cl-TAG-t-switch link add cbTAG-1 mtu 9000 type bridge",
            "ip -n cl-TAG-t-switch addr add 10.2.0.1/24 dev cbTAG-1",
            "ip -n cl-TAG-t-switch link set cbTAG-1 up",
            "ip netns add cl-TAG-t-n1",
            "ip -n cl-TAG-t-n1 link set lo up",
            "[cl-TAG-t-n1] net/ipv4/ip_forward = 1",
            "ip -n cl-TAG-t-switch link add cvTAG-0 mtu 1500 type veth peer name eth1 netns cl-TAG-t-n1 mtu 1500",
            "ip -n cl-TAG-t-switch link set cvTAG-0 master cbTAG-0 up",
            "ip -n cl-TAG-t-n1 addr add 10.1.0.10/24 dev eth1",
            "ip -n cl-TAG-t-n1 link set eth1 up",
            "ip -n cl-TAG-t-n1 route add default via 10.1.0.1 dev eth1",
            "ip netns add cl-TAG-t-n2",
            "ip -n cl-TAG-t-n2 link set lo up",
            "[cl-TAG-t-n2] net/ipv4/ip_forward = 1",
            "ip -n cl-TAG-t-switch link add cvTAG-1 mtu 9000 type veth peer name eth1 netns cl-TAG-t-n2 mtu 9000",
            "ip -n cl-TAG-t-switch link set cvTAG-1 master cbTAG-1 up",
            "ip -n cl-TAG-t-n2 addr add 10.2.0.10/24 dev eth1",
            "ip -n cl-TAG-t-n2 link set eth1 up",
            "ip -n cl-TAG-t-switch link add cvTAG-1-1 mtu 1400 type veth peer name eth2 netns cl-TAG-t-n2 mtu 1400",
            "ip -n cl-TAG-t-switch link set cvTAG-1-1 master cbTAG-0 up",
            "ip -n cl-TAG-t-n2 addr add 10.1.0.11/24 dev eth2",
            "ip -n cl-TAG-t-n2 link set eth2 up",
            "ip -n cl-TAG-t-n2 route add default via 10.2.0.1 dev eth1",
            "ip netns add cl-TAG-t-r1",
            "ip -n cl-TAG-t-r1 link set lo up",
            "[cl-TAG-t-r1] net/ipv4/ip_forward = 1",
            "ip -n cl-TAG-t-switch link add cvTAG-2 mtu 1500 type veth peer name eth1 netns cl-TAG-t-r1 mtu 1500",
            "ip -n cl-TAG-t-switch link set cvTAG-2 master cbTAG-0 up",
            "ip -n cl-TAG-t-r1 addr add 10.1.0.254/24 dev eth1",
            "ip -n cl-TAG-t-r1 link set eth1 up",
        ];
        assert_eq!(text, expected);
    }
}
