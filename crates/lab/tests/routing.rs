//! The seed labs end to end, with the real calico-node (Felix) and the real CNI plugins: the
//! block routes every node holds have exactly the seeds' shapes, every pod reaches every other
//! pod (ICMP and TCP), a live pool switch from vxlanMode Never to Always converges without a
//! restart, a deleted node's routes leave the others, and an uplink of MTU 9000 gives pods 8950.
//!
//! Needs root, iproute2, ping, and calico-node + calico + calico-ipam built next to calico-lab
//! (`cargo test --workspace` builds them); fails loudly otherwise. Each test runs its own lab.

mod common;

use std::collections::BTreeMap;

use common::*;

/// How each node of a lab is placed: name → (address, subnet name).
type Placement<'a> = &'a [(&'a str, &'a str, &'a str)];

/// block CIDR → its network address (`192.168.209.64/26` → `192.168.209.64`): the node's VXLAN
/// tunnel address, which calico-node takes first from its block, as in the seeds.
fn net(block: &str) -> &str {
    block.split('/').next().unwrap_or(block)
}

/// The block of each node from `up`'s affinity table (exactly one per node).
fn blocks(out: &str, nodes: Placement) -> BTreeMap<String, String> {
    let rows = Lab::affinities(out);
    let mut m = BTreeMap::new();
    for (name, node, cidr) in &rows {
        assert_eq!(
            name,
            &format!("{node}-{}", cidr.replace(['.', '/'], "-")),
            "affinity name shape: {out}"
        );
        assert!(
            m.insert(node.clone(), cidr.clone()).is_none(),
            "one block per node: {out}"
        );
    }
    assert_eq!(m.len(), nodes.len(), "every node has a block: {out}");
    m
}

/// The seed shapes: own block blackholed; remote blocks via the owner's address on eth1 when
/// CrossSubnet and in the same subnet, else via its VTEP on vxlan.calico.
fn expected(
    node: &str,
    nodes: Placement,
    blocks: &BTreeMap<String, String>,
    cross_subnet: bool,
) -> Vec<String> {
    let subnet_of = |n: &str| nodes.iter().find(|p| p.0 == n).map(|p| p.2);
    let mut v: Vec<String> = nodes
        .iter()
        .map(|(other, addr, subnet)| {
            let b = &blocks[*other];
            if *other == node {
                format!("blackhole {b} proto 80")
            } else if cross_subnet && subnet_of(node) == Some(subnet) {
                format!("{b} via {addr} dev eth1 proto 80 onlink")
            } else {
                format!("{b} via {} dev vxlan.calico onlink", net(b))
            }
        })
        .collect();
    v.sort();
    v
}

fn assert_routes(
    lab: &Lab,
    nodes: Placement,
    blocks: &BTreeMap<String, String>,
    pool: &str,
    cross: bool,
) {
    for (node, _, _) in nodes {
        assert_eq!(
            lab.block_routes(node, pool, 26),
            expected(node, nodes, blocks, cross),
            "{node}'s block routes"
        );
    }
}

/// Every pod pair answered in `out` (a `check`, `up` or `report` output).
fn assert_all_pods_reach(out: &str, pods: usize) {
    let pod_part = out
        .split("pod reachability")
        .nth(1)
        .unwrap_or_else(|| panic!("no pod matrix in:\n{out}"));
    assert_eq!(pod_part.matches(" ok").count(), pods * (pods - 1), "{out}");
    assert!(!pod_part.contains("FAIL"), "{out}");
    assert!(pod_part.contains("all pod pairs reach each other"), "{out}");
}

/// The pod's `eth0`: its MTU, a /32, and the default route via 169.254.1.1.
fn assert_pod_wiring(lab: &Lab, pod: &str, mtu: u32) {
    let link = lab.link(pod, "eth0");
    assert!(link.contains(&format!(" mtu {mtu} ")), "{pod}: {link}");
    let addr = lab.addr4(pod, "eth0");
    assert!(addr.contains("/32 "), "{pod}: {addr}");
    let routes = lab.ok(&["exec", pod, "--", "ip", "route", "show"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{pod}: {routes}"
    );
    assert!(
        routes.contains("169.254.1.1 dev eth0 scope link"),
        "{pod}: {routes}"
    );
}

const SEED000: Placement = &[
    ("k01-control-plane", "10.10.10.10", "vlan10"),
    ("k01-worker", "10.10.10.11", "vlan10"),
    ("k01-worker2", "10.10.10.12", "vlan10"),
    ("k01-worker3", "10.10.20.10", "vlan20"),
];

#[test]
fn seed000_crosssubnet_routes_have_the_seed_shapes_and_every_pod_pair_answers() {
    seed000("s0", "seed000-crosssubnet.yaml");
}

#[test]
fn seed000_with_etcd_inside_the_lab() {
    seed000("s0e", "seed000-crosssubnet-etcd.yaml");
}

fn seed000(prefix: &str, example: &str) {
    let lab = Lab::new(prefix);
    let out = lab.up_with_agents(&lab.example(example));
    let blocks = blocks(&out, SEED000);
    assert_routes(&lab, SEED000, &blocks, "192.168.0.0/16", true);
    // k01-worker3 (other subnet) and the others all have the VTEP device, MTU 1450, with the
    // first address of their block.
    for (node, _, _) in SEED000 {
        let link = lab.link(node, "vxlan.calico");
        assert!(link.contains(" mtu 1450 "), "{node}: {link}");
        let a = lab.addr4(node, "vxlan.calico");
        assert!(
            a.contains(&format!("{}/32", net(&blocks[*node]))),
            "{node}: {a}"
        );
    }
    assert_all_pods_reach(&out, 4);
    assert_pod_wiring(&lab, "default/pod-w3", 1450);
    let check = lab.ok(&["check"]);
    assert_all_pods_reach(&check, 4);
}

#[test]
fn seed003_vxlan_always_routes_every_remote_block_over_vxlan_calico() {
    let nodes: Placement = &[
        ("master1", "192.168.56.11", "hostonly"),
        ("master2", "192.168.56.12", "hostonly"),
        ("worker1", "192.168.56.13", "hostonly"),
    ];
    let lab = Lab::new("s3");
    let out = lab.up_with_agents(&lab.example("seed003-vxlan.yaml"));
    let blocks = blocks(&out, nodes);
    assert_routes(&lab, nodes, &blocks, "10.233.64.0/18", false);
    assert_all_pods_reach(&out, 3);
    assert_pod_wiring(&lab, "default/pod-m1", 1450);
}

#[test]
fn seed001_vxlan_always_with_the_kind_addresses() {
    let nodes: Placement = &[
        ("pod-network-control-plane", "172.18.0.4", "kind"),
        ("pod-network-worker", "172.18.0.3", "kind"),
        ("pod-network-worker2", "172.18.0.2", "kind"),
    ];
    let lab = Lab::new("s1");
    let out = lab.up_with_agents(&lab.example("seed001-vxlan.yaml"));
    // The control plane has no pod: its only block is its tunnel address's.
    let blocks = blocks(&out, nodes);
    assert_routes(&lab, nodes, &blocks, "192.168.0.0/16", false);
    assert_all_pods_reach(&out, 2);
    assert_pod_wiring(&lab, "default/multitool", 1450);
}

#[test]
fn seed002_pool_switch_from_never_to_always_converges_without_a_restart() {
    let nodes: Placement = &[
        ("control1", "10.0.1.20", "fabric"),
        ("worker1", "10.0.1.30", "fabric"),
        ("worker2", "10.0.1.31", "fabric"),
    ];
    let lab = Lab::new("s2");
    let out = lab.up_with_agents(&lab.example("seed002-bgp-to-vxlan.yaml"));
    let blocks = blocks(&out, nodes);
    // vxlanMode Never: no Felix route to any block, the own blackhole included (in the seed
    // those are BIRD's, `proto bird`), no VXLAN device; the pods got the uplink's MTU.
    for (node, _, _) in nodes {
        assert_eq!(
            lab.block_routes(node, "10.48.0.0/24", 26),
            Vec::<String>::new(),
            "{node}"
        );
        let o = lab.run(&[
            "exec",
            node,
            "--",
            "ip",
            "link",
            "show",
            "dev",
            "vxlan.calico",
        ]);
        assert!(!o.status.success(), "{node} has no vxlan.calico yet");
    }
    assert_pod_wiring(&lab, "default/pod-c1a", 9001);
    let pids = |lab: &Lab| {
        let status = lab.ok(&["status"]);
        status
            .lines()
            .filter(|l| l.contains("processes:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = pids(&lab);

    let always = examples_dir().join("seed002-vxlan-always.yaml");
    let out = lab.ok(&[
        "apply",
        "-f",
        always.to_str().expect("utf-8"),
        "--wait",
        "30",
    ]);
    assert!(out.contains("applied IPPool default-ipv4-ippool"), "{out}");
    // Remote blocks now via each owner's VTEP (allocated after the pods: not the block's
    // first address, as in the seed), the device with the uplink MTU minus 50.
    let vtep = |node: &str| -> String {
        let a = lab.addr4(node, "vxlan.calico");
        a.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .unwrap_or_else(|| panic!("{node}: no VTEP address in {a}"))
            .to_string()
    };
    for (node, _, _) in nodes {
        let mut want: Vec<String> = nodes
            .iter()
            .map(|(other, _, _)| {
                if other == node {
                    format!("blackhole {} proto 80", blocks[*other])
                } else {
                    format!(
                        "{} via {} dev vxlan.calico onlink",
                        blocks[*other],
                        vtep(other)
                    )
                }
            })
            .collect();
        want.sort();
        assert_eq!(lab.block_routes(node, "10.48.0.0/24", 26), want, "{node}");
        assert!(lab.link(node, "vxlan.calico").contains(" mtu 8951 "));
    }
    assert_all_pods_reach(&out, 8);
    assert_eq!(pids(&lab), before, "no process was restarted");
}

/// The IPAM handle holding `ip` in the lab's datastore, if any.
fn held(lab: &Lab, ip: std::net::Ipv4Addr) -> Option<String> {
    let st = calico_lab::state::Root(lab.state_dir())
        .load(&lab.name)
        .expect("state file")
        .expect("lab is up");
    calico_lab::datastore::with_store(&st, move |ds| async move {
        let a = calico_ipam::Ipam::new(ds).assignment_of(ip.into()).await?;
        Ok(a.map(|(handle, _)| handle.unwrap_or_default()))
    })
    .expect("read IPAM")
}

/// Per-node resources of n3 (which `node del` removes) and a global peer (which stays).
const N3_OWN: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: n3-own}
spec: {node: n3, peerIP: 10.20.0.1, asNumber: 64513}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: global}
spec: {peerIP: 10.20.0.1, asNumber: 64513}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.n3}
spec: {logSeverityScreen: Debug}
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.n3}
spec: {logSeverityScreen: Debug}
";

/// `<plural>/<name>` of every resource in the lab's datastore.
fn resource_names(lab: &Lab) -> Vec<String> {
    let st = calico_lab::state::Root(lab.state_dir())
        .load(&lab.name)
        .expect("state file")
        .expect("lab is up");
    let prefix = "/calico/resources/v3/projectcalico.org/";
    calico_lab::datastore::with_store(&st, |ds| async move {
        let kvs = ds.list(prefix).await?.kvs;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(prefix).map(str::to_string))
            .collect())
    })
    .expect("list the lab's resources")
}

const THREE_JUMBO: &str = "
subnets:
  - {name: jumbo, cidr: 10.20.0.0/24, gateway: 10.20.0.1, mtu: 9000}
nodes:
  - {name: n1, subnet: jumbo, address: 10.20.0.11}
  - {name: n2, subnet: jumbo, address: 10.20.0.12}
  - {name: n3, subnet: jumbo, address: 10.20.0.13}
resources:
  - inline:
      apiVersion: projectcalico.org/v3
      kind: IPPool
      metadata: {name: pool}
      spec: {cidr: 10.99.0.0/16, blockSize: 26, vxlanMode: Always, natOutgoing: true}
nodeEnv:
  CALICO_NETWORKING_BACKEND: vxlan
  IP: autodetect
  IP_AUTODETECTION_METHOD: interface=eth1
  NO_DEFAULT_POOLS: \"true\"
pods:
  - {namespace: default, name: p1, node: n1}
  - {namespace: default, name: p2, node: n2}
  - {namespace: other, name: p3, node: n3}
";

#[test]
fn jumbo_uplink_gives_pods_8950_pods_come_and_go_a_mute_pod_fails_check_a_deleted_node_leaves() {
    let nodes: Placement = &[
        ("n1", "10.20.0.11", "jumbo"),
        ("n2", "10.20.0.12", "jumbo"),
        ("n3", "10.20.0.13", "jumbo"),
    ];
    let lab = Lab::new("mtu");
    let out = lab.up_with_agents(&lab.write_topology(THREE_JUMBO));
    for pod in ["default/p1", "default/p2", "other/p3"] {
        assert_pod_wiring(&lab, pod, 8950);
    }
    assert!(lab.link("n1", "vxlan.calico").contains(" mtu 8950 "));
    let blocks = blocks(&out, nodes);
    assert_routes(&lab, nodes, &blocks, "10.99.0.0/16", false);

    // A pod added later gets an address in its node's block and reaches the others.
    let added = lab.ok(&["pod", "add", &lab.name, "n1", "p4", "--label", "app=late"]);
    let ip: std::net::Ipv4Addr = added
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no address in {added:?}"));
    let block: ipnet::Ipv4Net = blocks["n1"].parse().expect("block");
    assert!(block.contains(&ip), "{ip} in n1's block {block}");
    assert_all_pods_reach(&lab.ok(&["check", &lab.name]), 4);
    let cali = |lab: &Lab| {
        let links = lab.ok(&["exec", "n1", "--", "ip", "-o", "link", "show"]);
        links.matches(": cali").count()
    };
    assert_eq!(cali(&lab), 2);
    assert!(held(&lab, ip).is_some(), "{ip} held by p4's handle");
    lab.ok(&["pod", "del", &lab.name, "p4"]);
    // CNI DEL removed the host side and released the address.
    assert_eq!(cali(&lab), 1);
    assert_eq!(held(&lab, ip), None, "{ip} released");

    // A pod that cannot answer fails `check`: its row and column (ICMP and TCP), nothing else.
    lab.ok(&["exec", "default/p2", "--", "ip", "route", "del", "default"]);
    let o = lab.run(&["check"]);
    assert!(!o.status.success(), "check must fail: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let pods = out.split("pod reachability").nth(1).unwrap_or_default();
    assert_eq!(pods.matches("FAIL(icmp,tcp)").count(), 4, "{out}");
    assert_eq!(pods.matches(" ok").count(), 2, "{out}");
    lab.ok(&[
        "exec",
        "default/p2",
        "--",
        "ip",
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ]);
    assert_all_pods_reach(&lab.ok(&["check"]), 3);

    // n3's own BGPPeer and node.n3 configurations go with it (upstream's node deletion, shared
    // with `calicoctl delete node`); a global peer stays.
    let own = lab.dir.path().join("n3-own.yaml");
    std::fs::write(&own, N3_OWN).expect("write n3-own.yaml");
    lab.ok(&["apply", &lab.name, "-f", own.to_str().expect("utf-8")]);
    let out = lab.ok(&["node", "del", &lab.name, "n3"]);
    assert!(out.contains("n3"), "{out}");
    let names = resource_names(&lab);
    assert!(names.iter().any(|n| n == "bgppeers/global"), "{names:?}");
    let n3 = ["n3-own", "node.n3", "/n3", "n3-k8s-"];
    assert!(
        !names.iter().any(|n| n3.iter().any(|p| n.contains(p))),
        "{names:?}"
    );
    let rest = &nodes[..2];
    let mut left = blocks.clone();
    left.remove("n3");
    lab.ok(&["report", "--wait", "30"]);
    assert_routes(&lab, rest, &left, "10.99.0.0/16", false);
    assert_all_pods_reach(&lab.ok(&["check"]), 2);
}
