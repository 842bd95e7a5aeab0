//! The incremental graph equals a recompute from scratch: random sequences of puts, deletes,
//! unreadable values and in-sync markers over a small universe of keys (so objects collide:
//! overlapping pools, shared VTEP addresses and MACs, workloads sharing an address, blocks
//! changing owner), checked after every update. Also: the changes an update emits are exactly
//! the difference (a replica that applies them stays equal), and the hot path touches only what
//! an update affects at the scale the benchmark uses (5,000 remote blocks, 100 local pods).

mod common;

use calico_datastore::keys;
use calico_datastore::syncer::SyncUpdate;
use calico_felix::{CalcGraph, Change, LocalFacts};
use common::{AllocSpec, BlockSpec, Store, block_json, put};
use proptest::prelude::*;
use serde_json::json;

const LOCAL: &str = "n0";
const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];
const MODES: [&str; 3] = ["Never", "Always", "CrossSubnet"];

fn local() -> LocalFacts {
    LocalFacts {
        node_name: LOCAL.into(),
        uplink: Some("eth0".into()),
        host_mtu: 1500,
    }
}

fn pool() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        0..2usize,
        prop::sample::select(vec![
            "10.0.0.0/16",
            "10.0.0.0/24",
            "10.1.0.0/16",
            "fd00::/48",
        ]),
        0..3usize,
        0..3usize,
        any::<bool>(),
    )
        .prop_map(|(i, cidr, vx, ip, nat)| {
            let name = format!("pool{i}");
            let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, "vxlanMode": MODES[vx], "ipipMode": MODES[ip], "natOutgoing": nat}});
            (
                keys::resource_key(calico_api::Kind::IPPool, None, &name),
                v.to_string().into_bytes(),
            )
        })
}

fn node() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        0..4usize,
        prop::option::of(prop::sample::select(vec![
            "192.168.0.1/24",
            "192.168.0.2/24",
            "192.168.1.3/24",
            "192.168.1.4",
        ])),
        prop::option::of(prop::sample::select(vec![
            "10.0.0.0",
            "10.0.0.64",
            "10.0.0.3",
            "10.1.0.0",
        ])),
        prop::option::of(prop::sample::select(vec![
            "66:00:00:00:00:01",
            "66:00:00:00:00:02",
        ])),
        prop::option::of(prop::sample::select(vec![
            "fd10::1/64",
            "fd10::2/64",
            "fd11::3/64",
        ])),
        prop::option::of(prop::sample::select(vec!["fd00::", "fd00::40", "fd00::1"])),
        prop::option::of(prop::sample::select(vec![
            "66:00:00:00:00:01",
            "66:00:00:00:00:03",
        ])),
    )
        .prop_map(|(i, addr, vtep, mac, addr6, vtep6, mac6)| {
            let name = NODES[i];
            let mut spec = serde_json::Map::new();
            let mut bgp = serde_json::Map::new();
            if let Some(a) = addr {
                bgp.insert("ipv4Address".into(), json!(a));
            }
            if let Some(a) = addr6 {
                bgp.insert("ipv6Address".into(), json!(a));
            }
            if !bgp.is_empty() {
                spec.insert("bgp".into(), bgp.into());
            }
            if let Some(v) = vtep6 {
                spec.insert("ipv6VXLANTunnelAddr".into(), json!(v));
            }
            if let Some(m) = mac6 {
                spec.insert("vxlanTunnelMACAddrV6".into(), json!(m));
            }
            if let Some(v) = vtep {
                spec.insert("ipv4VXLANTunnelAddr".into(), json!(v));
            }
            if let Some(m) = mac {
                spec.insert("vxlanTunnelMACAddr".into(), json!(m));
            }
            let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name}, "spec": spec});
            (
                keys::resource_key(calico_api::Kind::Node, None, name),
                v.to_string().into_bytes(),
            )
        })
}

const IPS: [&str; 8] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.65",
    "10.1.0.5",
    "10.0.0.128",
    "fd00::1",
    "fd00::40",
];

fn workload() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        0..4usize,
        0..2usize,
        prop::sample::subsequence(IPS.to_vec(), 0..3),
    )
        .prop_map(|(i, n, ips)| {
            let name = format!("w{i}");
            let nets: Vec<String> = ips
                .iter()
                .map(|ip| {
                    let len = if ip.contains(':') { 128 } else { 32 };
                    format!("{ip}/{len}")
                })
                .collect();
            let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"node": NODES[n], "interfaceName": format!("cali{i}"), "ipNetworks": nets}});
            (
                keys::resource_key(calico_api::Kind::WorkloadEndpoint, Some("ns"), &name),
                v.to_string().into_bytes(),
            )
        })
}

fn block() -> impl Strategy<Value = (String, Vec<u8>)> {
    let cidrs = vec![
        "10.0.0.0/26",
        "10.0.0.64/26",
        "10.0.0.128/32",
        "10.1.0.0/26",
        "fd00::/122",
        "fd00::40/122",
    ];
    (
        prop::sample::select(cidrs),
        prop::option::of(0..4usize),
        prop::collection::vec((0..IPS.len(), 0..4usize), 0..4),
    )
        .prop_map(|(cidr, owner, allocs)| {
            let net: ipnet::IpNet = cidr.parse().expect("cidr");
            let mut seen = std::collections::BTreeSet::new();
            let allocations = allocs
                .into_iter()
                .filter_map(|(ip, n)| {
                    let addr: std::net::IpAddr = IPS[ip].parse().ok()?;
                    (net.contains(&addr) && seen.insert(ip)).then(|| AllocSpec {
                        ip: IPS[ip].into(),
                        node: NODES[n].into(),
                        handle: None,
                    })
                })
                .collect();
            block_json(&BlockSpec {
                cidr: cidr.into(),
                affinity: owner.map(|o| format!("host:{}", NODES[o])),
                allocations,
            })
        })
}

fn felix_config() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop::option::of(1300..1500i64),
        prop::option::of(1300..1500i64),
    )
        .prop_map(|(mtu, mtu6)| {
            let mut spec = serde_json::Map::new();
            if let Some(m) = mtu {
                spec.insert("vxlanMTU".into(), json!(m));
            }
            if let Some(m) = mtu6 {
                spec.insert("vxlanMTUV6".into(), json!(m));
            }
            let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "default"}, "spec": spec});
            (
                keys::resource_key(calico_api::Kind::FelixConfiguration, None, "default"),
                v.to_string().into_bytes(),
            )
        })
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    /// Delete the n-th key present in the store (modulo its size).
    Delete(usize),
    /// Overwrite the n-th key with an unreadable value.
    Garbage(usize),
    InSync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => pool().prop_map(|(k, v)| Op::Put(k, v)),
        4 => node().prop_map(|(k, v)| Op::Put(k, v)),
        4 => workload().prop_map(|(k, v)| Op::Put(k, v)),
        4 => block().prop_map(|(k, v)| Op::Put(k, v)),
        1 => felix_config().prop_map(|(k, v)| Op::Put(k, v)),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Garbage),
        1 => Just(Op::InSync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_recompute(ops in prop::collection::vec(op(), 1..60)) {
        let mut g = CalcGraph::new(local());
        let mut replica = g.state().clone();
        let mut store = Store::new();
        for (i, op) in ops.into_iter().enumerate() {
            let rev = i as i64 + 1;
            let update = match op {
                Op::Put(k, v) => {
                    store.insert(k.clone(), v.clone());
                    put(&k, &v, rev)
                }
                Op::Delete(n) | Op::Garbage(n) if store.is_empty() => {
                    let _ = n;
                    SyncUpdate::InSync
                }
                Op::Delete(n) => {
                    let k = store.keys().nth(n % store.len()).cloned().unwrap_or_default();
                    store.remove(&k);
                    SyncUpdate::Delete { key: k, revision: rev }
                }
                Op::Garbage(n) => {
                    let k = store.keys().nth(n % store.len()).cloned().unwrap_or_default();
                    store.insert(k.clone(), b"{not json".to_vec());
                    put(&k, b"{not json", rev)
                }
                Op::InSync => SyncUpdate::InSync,
            };
            let outcome = g.apply(&update);
            for c in &outcome.changes {
                c.apply_to(&mut replica);
            }
            let scratch = CalcGraph::from_snapshot(
                local(),
                store.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            );
            prop_assert_eq!(g.state(), scratch.state(), "after update {} {:?}", i, update);
            prop_assert_eq!(&replica, g.state());
        }
    }
}

/// 5,000 remote blocks on 1,000 nodes (VXLAN Always) and 100 local pods: one pod or one remote
/// node changes only its own routes.
#[test]
fn hot_path_touches_only_what_changed() {
    let mut store = Store::new();
    let pool = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/8", "vxlanMode": "Always"}});
    store.insert(
        keys::resource_key(calico_api::Kind::IPPool, None, "p"),
        pool.to_string().into_bytes(),
    );
    let node = |i: u32, vtep: &str| {
        let name = format!("node{i}");
        let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": name},
            "spec": {"bgp": {"ipv4Address": format!("172.16.{}.{}/16", i / 250, i % 250 + 1)},
                     "ipv4VXLANTunnelAddr": vtep}});
        (
            keys::resource_key(calico_api::Kind::Node, None, &name),
            v.to_string().into_bytes(),
        )
    };
    for i in 0..1000u32 {
        let (k, v) = node(i, &format!("10.{}.{}.0", i / 200, (i % 200) + 1));
        store.insert(k, v);
    }
    for b in 0..5000u32 {
        let owner = if b == 0 { 0 } else { 1 + b % 999 };
        let cidr = format!(
            "10.{}.{}.{}/26",
            100 + b / 1024,
            (b / 4) % 256,
            (b % 4) * 64
        );
        let (k, v) = block_json(&BlockSpec {
            cidr,
            affinity: Some(format!("host:node{owner}")),
            allocations: vec![],
        });
        store.insert(k, v);
    }
    for p in 0..100u32 {
        let name = format!("pod{p}");
        let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"node": "node0", "interfaceName": format!("cali{p:011}"),
                     "ipNetworks": [format!("10.100.0.{p}/32")]}});
        store.insert(
            keys::resource_key(calico_api::Kind::WorkloadEndpoint, Some("ns"), &name),
            v.to_string().into_bytes(),
        );
    }
    let facts = LocalFacts {
        node_name: "node0".into(),
        uplink: Some("eth0".into()),
        host_mtu: 1500,
    };
    let start = std::time::Instant::now();
    let mut g =
        CalcGraph::from_snapshot(facts, store.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    eprintln!(
        "5,000 blocks + 100 pods from scratch: {:?}",
        start.elapsed()
    );
    assert_eq!(g.state().routes.len(), 5000 + 100);
    assert_eq!(g.state().neighbours.len(), 999);

    // A new pod: one route.
    let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": "new", "namespace": "ns"},
        "spec": {"node": "node0", "interfaceName": "calinew", "ipNetworks": ["10.100.1.1/32"]}});
    let key = keys::resource_key(calico_api::Kind::WorkloadEndpoint, Some("ns"), "new");
    let start = std::time::Instant::now();
    let out = g.apply(&put(&key, &v.to_string().into_bytes(), 1));
    eprintln!("one pod: {:?}", start.elapsed());
    assert!(
        matches!(out.changes.as_slice(), [Change::RouteSet(r)] if r.dst.to_string() == "10.100.1.1/32")
    );

    // node7 moves its VTEP: its blocks' routes, one neighbour out, one in; its FDB entry (keyed by
    // its unchanged MAC) stays.
    let blocks_of_7 = g
        .state()
        .routes
        .values()
        .filter(|r| r.node.as_deref() == Some("node7"))
        .count();
    let (k, v) = node(7, "10.250.0.1");
    let start = std::time::Instant::now();
    let out = g.apply(&put(&k, &v, 2));
    eprintln!(
        "one remote node ({blocks_of_7} blocks): {:?}",
        start.elapsed()
    );
    let routes = out
        .changes
        .iter()
        .filter(|c| matches!(c, Change::RouteSet(_)))
        .count();
    assert_eq!(routes, blocks_of_7);
    assert_eq!(out.changes.len(), blocks_of_7 + 2, "{:?}", out.changes);

    // A pool mode switch recomputes everything: every remote block route changes.
    let pool = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/8", "vxlanMode": "Never"}});
    let key = keys::resource_key(calico_api::Kind::IPPool, None, "p");
    let start = std::time::Instant::now();
    let out = g.apply(&put(&key, &pool.to_string().into_bytes(), 3));
    eprintln!(
        "pool switch to Never: {:?}, {} changes",
        start.elapsed(),
        out.changes.len()
    );
    assert_eq!(g.state().routes.len(), 101, "only the pods' routes remain");
    assert_eq!(g.state().bgp_routes.len(), 5000);
    assert!(g.state().vxlan.is_none() && g.state().neighbours.is_empty());
}
