//! Single rules of the graph, through its public interface: IPIP and MTU, the VXLAN device's
//! preconditions, uplink detection, /32 blocks, unreadable values, ignored keys, and the order of
//! changes a reconciler relies on.

mod common;

use calico_api::Kind;
use calico_datastore::keys;
use calico_datastore::syncer::SyncUpdate;
use calico_felix::render::{render_state, route_lines};
use calico_felix::{CalcGraph, Change, InputError, LocalFacts, Mtu, watched_prefixes};
use common::{AllocSpec, BlockSpec, block_json, put};
use serde_json::json;

fn facts(uplink: Option<&str>, mtu: u32) -> LocalFacts {
    LocalFacts {
        node_name: "a".into(),
        uplink: uplink.map(str::to_string),
        host_mtu: mtu,
    }
}

fn pool(name: &str, cidr: &str, vxlan: &str, ipip: &str) -> (String, Vec<u8>) {
    let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
        "spec": {"cidr": cidr, "vxlanMode": vxlan, "ipipMode": ipip}});
    (
        keys::resource_key(Kind::IPPool, None, name),
        v.to_string().into_bytes(),
    )
}

fn node(name: &str, addr: &str, vtep: Option<&str>) -> (String, Vec<u8>) {
    let mut spec = json!({"bgp": {"ipv4Address": addr}});
    if let Some(v) = vtep {
        spec["ipv4VXLANTunnelAddr"] = json!(v);
    }
    let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name}, "spec": spec});
    (
        keys::resource_key(Kind::Node, None, name),
        v.to_string().into_bytes(),
    )
}

fn block(cidr: &str, host: &str) -> (String, Vec<u8>) {
    block_json(&BlockSpec {
        cidr: cidr.into(),
        affinity: Some(format!("host:{host}")),
        allocations: vec![],
    })
}

fn graph(local: LocalFacts, kvs: &[(String, Vec<u8>)]) -> CalcGraph {
    let mut g = CalcGraph::new(local);
    for (i, (k, v)) in kvs.iter().enumerate() {
        let out = g.apply(&put(k, v, i as i64 + 1));
        assert_eq!(out.error, None, "{k}");
    }
    g
}

fn routes(g: &CalcGraph) -> Vec<String> {
    route_lines(g.state())
}

#[test]
fn ipip_routes_and_mtu() {
    let kvs = [
        pool("p", "10.0.0.0/16", "Never", "CrossSubnet"),
        node("a", "192.168.0.1/24", None),
        node("b", "192.168.0.2/24", None),
        node("c", "192.168.1.3/24", None),
        block("10.0.0.0/26", "a"),
        block("10.0.0.64/26", "b"),
        block("10.0.0.128/26", "c"),
    ];
    let g = graph(facts(Some("eth0"), 9000), &kvs);
    assert_eq!(
        routes(&g),
        [
            "blackhole 10.0.0.0/26 proto 80",
            "10.0.0.64/26 via 192.168.0.2 dev eth0 proto 80 onlink",
            "10.0.0.128/26 via 192.168.1.3 dev tunl0 proto 80 onlink",
        ]
    );
    assert_eq!(
        g.state().mtu,
        Mtu {
            host: 9000,
            pod: 8980
        }
    );
    assert!(g.state().vxlan.is_none(), "no VXLAN pool, no vxlan.calico");
    assert!(g.state().ipip.is_none(), "node a has no ipv4IPIPTunnelAddr");
    assert!(g.state().ipip_enabled && !g.state().vxlan_enabled);
}

#[test]
fn uplink_mtu_9000_gives_pods_8950_with_vxlan_and_the_configured_mtu_wins() {
    let mut kvs = vec![
        pool("v", "10.0.0.0/16", "Always", "Never"),
        pool("i", "10.1.0.0/16", "Never", "Always"),
        node("a", "192.168.0.1/24", Some("10.0.0.1")),
    ];
    let g = graph(facts(Some("eth0"), 9000), &kvs);
    assert_eq!(
        g.state().mtu.pod,
        8950,
        "largest enabled overhead (VXLAN 50) counts"
    );
    assert_eq!(g.state().vxlan.as_ref().map(|v| v.mtu), Some(8950));
    let fc = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
        "metadata": {"name": "default"}, "spec": {"vxlanMTU": 8000}});
    kvs.push((
        keys::resource_key(Kind::FelixConfiguration, None, "default"),
        fc.to_string().into_bytes(),
    ));
    let g = graph(facts(Some("eth0"), 9000), &kvs);
    assert_eq!(g.state().mtu.pod, 8000);
    assert_eq!(g.state().vxlan.as_ref().map(|v| v.mtu), Some(8000));
}

#[test]
fn vxlan_device_needs_a_local_tunnel_address_and_comes_before_its_neighbours() {
    let kvs = [
        pool("p", "10.0.0.0/16", "Always", "Never"),
        node("a", "192.168.0.1/24", None),
        node("b", "192.168.0.2/24", Some("10.0.0.64")),
        block("10.0.0.64/26", "b"),
    ];
    let mut g = graph(facts(Some("eth0"), 1500), &kvs);
    assert!(g.state().vxlan.is_none());
    assert!(
        routes(&g).is_empty(),
        "no VXLAN route without the local device"
    );
    assert!(g.state().neighbours.is_empty() && g.state().fdb.is_empty());

    let (k, v) = node("a", "192.168.0.1/24", Some("10.0.0.1"));
    let out = g.apply(&put(&k, &v, 10));
    assert!(
        matches!(out.changes.first(), Some(Change::VxlanDevice(Some(d))) if d.vni == 4096 && d.port == 4789 && d.parent.as_deref() == Some("eth0")),
        "{:?}",
        out.changes
    );
    assert_eq!(
        routes(&g),
        ["10.0.0.64/26 via 10.0.0.64 dev vxlan.calico onlink"]
    );
    assert_eq!(g.state().neighbours.len(), 1);

    // The pool stops using VXLAN: routes, neighbour and FDB entry go, then the device.
    let (k, v) = pool("p", "10.0.0.0/16", "Never", "Never");
    let out = g.apply(&put(&k, &v, 11));
    assert!(
        matches!(out.changes.last(), Some(Change::VxlanDevice(None))),
        "{:?}",
        out.changes
    );
    assert!(
        out.changes
            .iter()
            .any(|c| matches!(c, Change::NeighbourRemoved(_)))
    );
    assert!(
        out.changes
            .iter()
            .any(|c| matches!(c, Change::FdbRemoved(_)))
    );
    assert!(routes(&g).is_empty());
    assert_eq!(g.state().bgp_routes.len(), 1, "the block is now BGP's");
}

#[test]
fn cross_subnet_falls_back_to_vxlan_until_the_uplink_is_known() {
    let kvs = [
        pool("p", "10.0.0.0/16", "CrossSubnet", "Never"),
        node("a", "192.168.0.1/24", Some("10.0.0.1")),
        node("b", "192.168.0.2/24", Some("10.0.0.64")),
        block("10.0.0.64/26", "b"),
    ];
    let mut g = graph(facts(None, 1500), &kvs);
    assert_eq!(
        routes(&g),
        ["10.0.0.64/26 via 10.0.0.64 dev vxlan.calico onlink"]
    );
    let out = g.set_uplink(Some("eth1".into()), 1500);
    assert!(
        out.iter()
            .any(|c| matches!(c, Change::VxlanDevice(Some(_))))
    );
    assert_eq!(
        routes(&g),
        ["10.0.0.64/26 via 192.168.0.2 dev eth1 proto 80 onlink"]
    );
    assert!(g.set_uplink(Some("eth1".into()), 1500).is_empty());
}

#[test]
fn a_local_slash_32_block_gets_no_blackhole() {
    let kvs = [
        pool("p", "10.0.0.0/16", "Always", "Never"),
        node("a", "192.168.0.1/24", Some("10.0.0.1")),
        block("10.0.0.9/32", "a"),
        block("10.0.0.0/26", "a"),
    ];
    let g = graph(facts(Some("eth0"), 1500), &kvs);
    assert_eq!(routes(&g), ["blackhole 10.0.0.0/26 proto 80"]);
}

#[test]
fn an_unreadable_value_names_key_and_field_and_counts_as_absent() {
    let kvs = [
        pool("p", "10.0.0.0/16", "Always", "Never"),
        node("a", "192.168.0.1/24", Some("10.0.0.1")),
        node("b", "192.168.0.2/24", Some("10.0.0.64")),
        block("10.0.0.64/26", "b"),
    ];
    let mut g = graph(facts(Some("eth0"), 1500), &kvs);
    assert_eq!(routes(&g).len(), 1);
    let (k, v) = node("b", "not-an-address", Some("10.0.0.64"));
    let out = g.apply(&put(&k, &v, 20));
    let err = out.error.expect("error");
    assert!(matches!(
        &err,
        InputError::BadField {
            field: "spec.bgp.ipv4Address",
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains(&k) && msg.contains("not-an-address"), "{msg}");
    assert!(routes(&g).is_empty(), "node b now counts as absent");
    assert!(g.state().neighbours.is_empty());

    let out = g.apply(&put(&keys::block_key("10.0.0.64/26"), b"[1,2]", 21));
    assert!(
        out.error
            .is_some_and(|e| e.to_string().contains("IPAM block"))
    );
}

#[test]
fn unrelated_keys_and_pending_affinities_change_nothing() {
    let mut g = graph(facts(Some("eth0"), 1500), &[]);
    let before = render_state(g.state());
    let out = g.apply(&put(
        &keys::resource_key(Kind::BGPPeer, None, "peer"),
        b"{}",
        1,
    ));
    assert_eq!(out, Default::default());
    let aff = keys::affinity_key("a", "10.0.0.0/26");
    assert!(
        g.apply(&put(&aff, br#"{"state":"pending"}"#, 2))
            .changes
            .is_empty()
    );
    assert!(g.confirmed_affinities("a").is_empty());
    g.apply(&put(&aff, br#"{"state":"confirmed"}"#, 3));
    assert_eq!(g.confirmed_affinities("a").len(), 1);
    assert!(!g.in_sync());
    g.apply(&SyncUpdate::InSync);
    assert!(g.in_sync());
    assert_eq!(render_state(g.state()), before);
}

#[test]
fn watched_prefixes_cover_what_felix_reads() {
    let p = watched_prefixes();
    for key in [
        keys::resource_key(Kind::IPPool, None, "x"),
        keys::resource_key(Kind::Node, None, "x"),
        keys::resource_key(Kind::WorkloadEndpoint, Some("ns"), "x"),
        keys::resource_key(Kind::FelixConfiguration, None, "default"),
        keys::block_key("10.0.0.0/26"),
        keys::affinity_key("n", "10.0.0.0/26"),
    ] {
        assert!(p.iter().any(|pre| key.starts_with(pre)), "{key}");
    }
}

#[test]
fn borrowed_address_of_a_deleted_workload_stays_routed_until_released() {
    // The block still lends 10.0.0.5 to b: a's route to it follows b, whatever b's WEPs say.
    let kvs = [
        pool("p", "10.0.0.0/16", "Always", "Never"),
        node("a", "192.168.0.1/24", Some("10.0.0.1")),
        node("b", "192.168.0.2/24", Some("10.0.0.64")),
        block_json(&BlockSpec {
            cidr: "10.0.0.0/26".into(),
            affinity: Some("host:a".into()),
            allocations: vec![AllocSpec {
                ip: "10.0.0.5".into(),
                node: "b".into(),
                handle: None,
            }],
        }),
    ];
    let g = graph(facts(Some("eth0"), 1500), &kvs);
    assert_eq!(
        routes(&g),
        [
            "blackhole 10.0.0.0/26 proto 80",
            "10.0.0.5 via 10.0.0.64 dev vxlan.calico onlink"
        ]
    );
}
