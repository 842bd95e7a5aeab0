//! Real-kernel tests of the layer-2 calls (VXLAN device, permanent neighbours, FDB entries) in
//! a throwaway namespace, compared with what iproute2 (`ip -d link`, `ip neigh`, `bridge fdb`)
//! prints. Root is required; without it `TestNetns::new` fails the test loudly.

use std::net::{IpAddr, Ipv4Addr};

use calico_dataplane::testns::TestNetns;
use calico_dataplane::{
    Address, Family, FdbEntry, LinkChange, Neighbour, Netlink, Route, RouteFilter, Rtnl, VxlanSpec,
    parse_mac,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal")
}

/// A node namespace whose uplink `eth1` (10.0.0.2/24) is a veth to a peer namespace, and a
/// client in it. The peer namespace is returned so it lives as long as the test.
fn node() -> ((TestNetns, TestNetns), Netlink, u32) {
    let (ns, peer) = TestNetns::with_uplink("10.0.0.2/24", None);
    let mut nl = Netlink::open_in(&ns.open()).expect("netlink in test ns");
    let eth1 = nl
        .link_by_name("eth1")
        .expect("list")
        .expect("eth1 exists")
        .index;
    ((ns, peer), nl, eth1)
}

/// Creates `vxlan.calico` on `parent` and returns its index.
fn vxlan_calico(nl: &mut Netlink, parent: u32) -> u32 {
    nl.create_vxlan(&spec(parent)).expect("create");
    nl.vxlan_by_name("vxlan.calico")
        .expect("get")
        .expect("vxlan")
        .link
        .index
}

fn spec(parent: u32) -> VxlanSpec {
    VxlanSpec {
        name: "vxlan.calico".into(),
        vni: 4096,
        port: 4789,
        local: Some(Ipv4Addr::new(10, 0, 0, 2).into()),
        parent: Some(parent),
        learning: false,
        mtu: Some(1450),
        mac: parse_mac("66:aa:bb:cc:dd:01"),
        up: true,
    }
}

#[test]
fn vxlan_device_is_created_as_ip_shows_it_and_reads_back() {
    let ((ns, _peer), mut nl, eth1) = node();
    let spec = spec(eth1);
    nl.create_vxlan(&spec).expect("create vxlan.calico");
    let shown = ns.ip(&["-d", "link", "show", "vxlan.calico"]);
    for want in [
        "mtu 1450",
        "link/ether 66:aa:bb:cc:dd:01",
        "vxlan id 4096",
        "local 10.0.0.2",
        "dev eth1",
        "dstport 4789",
        "nolearning",
        "UP",
    ] {
        assert!(shown.contains(want), "`{want}` missing in:\n{shown}");
    }
    let read = nl
        .vxlan_by_name("vxlan.calico")
        .expect("get")
        .expect("it is a vxlan device");
    assert_eq!(read.vni, Some(4096));
    assert_eq!(read.port, Some(4789));
    assert_eq!(read.local, Some(Ipv4Addr::new(10, 0, 0, 2).into()));
    assert_eq!(read.parent, Some(eth1));
    assert_eq!(read.learning, Some(false));
    assert_eq!(read.link.mtu, Some(1450));
    assert!(read.immutable_drift(&spec).is_empty());
    assert!(
        nl.vxlan_by_name("eth1").expect("get").is_none(),
        "a veth is not vxlan"
    );
    assert!(nl.vxlan_by_name("nope").expect("get").is_none());
    let err = nl.create_vxlan(&spec).expect_err("second create");
    assert!(err.is_exists(), "{err}");

    // Drift made by hand is visible.
    ns.ip(&["link", "set", "vxlan.calico", "mtu", "1400"]);
    let read = nl
        .vxlan_by_name("vxlan.calico")
        .expect("get")
        .expect("vxlan");
    assert_eq!(read.link.mtu, Some(1400));
    nl.set_link(
        read.link.index,
        &LinkChange {
            mtu: Some(1450),
            ..Default::default()
        },
    )
    .expect("fix mtu");
    ns.ip(&["link", "del", "vxlan.calico"]);
    ns.ip(&[
        "link",
        "add",
        "vxlan.calico",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "4789",
        "local",
        "10.0.0.2",
        "dev",
        "eth1",
    ]);
    let read = nl
        .vxlan_by_name("vxlan.calico")
        .expect("get")
        .expect("vxlan");
    assert_eq!(read.immutable_drift(&spec), vec!["vni", "learning"]);
}

#[test]
fn neighbours_and_fdb_entries_match_ip_neigh_and_bridge_fdb() {
    let ((ns, _peer), mut nl, eth1) = node();
    let vx = vxlan_calico(&mut nl, eth1);
    let mac = parse_mac("66:00:00:00:00:03").expect("mac");
    let neigh = Neighbour::permanent(vx, ip("10.65.3.0"), mac);
    nl.add_neighbour(&neigh).expect("add neighbour");
    assert!(nl.add_neighbour(&neigh).expect_err("twice").is_exists());
    let fdb = FdbEntry::permanent(vx, mac, ip("10.0.0.3"));
    nl.replace_fdb(&fdb).expect("add fdb");
    nl.replace_fdb(&fdb).expect("replace is idempotent");

    let shown = ns.ip(&["neigh", "show", "dev", "vxlan.calico"]);
    assert_eq!(shown.trim(), "10.65.3.0 lladdr 66:00:00:00:00:03 PERMANENT");
    let fdb_text = ns.exec(&["bridge", "fdb", "show", "dev", "vxlan.calico"]);
    assert!(
        fdb_text
            .lines()
            .any(|l| l.trim() == "66:00:00:00:00:03 dst 10.0.0.3 self permanent"),
        "{fdb_text}"
    );

    assert_eq!(
        nl.neighbours(Family::V4, Some(vx)).expect("list"),
        vec![neigh.clone()]
    );
    assert_eq!(nl.fdb(vx).expect("list"), vec![fdb.clone()]);

    // Replace moves the neighbour to another MAC; the FDB entry to another VTEP.
    let mac2 = parse_mac("66:00:00:00:00:04").expect("mac");
    let neigh2 = Neighbour::permanent(vx, ip("10.65.3.0"), mac2);
    nl.replace_neighbour(&neigh2).expect("replace");
    let fdb2 = FdbEntry::permanent(vx, mac, ip("10.0.0.4"));
    nl.replace_fdb(&fdb2).expect("replace fdb");
    assert_eq!(
        nl.neighbours(Family::V4, Some(vx)).expect("list"),
        vec![neigh2.clone()]
    );
    assert_eq!(nl.fdb(vx).expect("list"), vec![fdb2.clone()]);

    nl.delete_neighbour(&neigh2).expect("delete neighbour");
    nl.delete_fdb(&fdb2).expect("delete fdb");
    assert!(
        nl.neighbours(Family::V4, Some(vx))
            .expect("list")
            .is_empty()
    );
    assert!(nl.fdb(vx).expect("list").is_empty());
    assert!(
        ns.ip(&["neigh", "show", "dev", "vxlan.calico"])
            .trim()
            .is_empty()
    );
    let err = nl.delete_fdb(&fdb2).expect_err("already gone");
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn routes_filter_by_protocol_and_onlink_via_vxlan() {
    let ((ns, _peer), mut nl, eth1) = node();
    let vx = vxlan_calico(&mut nl, eth1);
    nl.add_address(&Address::new(vx, "10.65.0.0/32".parse().expect("net")))
        .expect("tunnel address");
    let via = Route::via("10.65.3.0/26".parse().expect("net"), ip("10.65.3.0"), vx).with_onlink();
    nl.add_route(&via).expect("route via vtep");
    let bh = Route::blackhole("10.65.0.0/26".parse().expect("net")).with_protocol(80);
    nl.add_route(&bh).expect("blackhole");
    ns.ip(&[
        "route",
        "add",
        "192.168.9.0/24",
        "via",
        "10.0.0.1",
        "proto",
        "static",
    ]);

    let felix = RouteFilter {
        protocol: Some(80),
        ..RouteFilter::main(Family::V4)
    };
    assert_eq!(nl.routes(&felix).expect("list"), vec![bh]);
    let all = nl.routes(&RouteFilter::main(Family::V4)).expect("list");
    assert!(all.contains(&via), "{all:?}");
    let text = ns.ip(&["route", "show", "10.65.3.0/26"]);
    assert_eq!(
        text.trim(),
        "10.65.3.0/26 via 10.65.3.0 dev vxlan.calico onlink"
    );
}

#[test]
fn route_programming_hook_adds_and_removes_5000_routes_both_ways() {
    let ((ns, _peer), _nl, eth1) = node();
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let result = calico_dataplane::bench::route_programming(ns.name(), "eth1", eth1, gw, 5000)
        .expect("both methods program every route");
    assert_eq!(result.routes, 5000);
    assert!(result.netlink_routes_per_sec() > 0.0 && result.ip_batch_routes_per_sec() > 0.0);
    eprintln!(
        "5000 routes: netlink {:?} ({:.0}/s), ip -batch {:?} ({:.0}/s)",
        result.netlink,
        result.netlink_routes_per_sec(),
        result.ip_batch,
        result.ip_batch_routes_per_sec()
    );
    let left = ns.ip(&["route", "show", "proto", "80"]);
    assert!(left.trim().is_empty(), "routes left behind: {left}");
}
