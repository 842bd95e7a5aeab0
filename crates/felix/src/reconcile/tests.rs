//! Reconciler against the recording fakes: desired vs actual → the exact calls.

use std::net::IpAddr;

use calico_dataplane::fake::{Call, RecordingNft, RecordingRtnl, RecordingSysctl};
use calico_dataplane::{
    FdbEntry, Link, Neighbour, Route, RouteChange, Scope, VxlanSpec, parse_mac,
};

use super::fixture::*;
use super::*;

const ETH1: u32 = 2;
const CALI: u32 = 3;

struct Env {
    rtnl: RecordingRtnl,
    sysctl: RecordingSysctl,
    nft: RecordingNft,
}

impl Env {
    fn new() -> Self {
        let rtnl = RecordingRtnl::with_links(&[(1, "lo"), (ETH1, "eth1"), (CALI, "cali1234")]);
        Env {
            rtnl,
            sysctl: RecordingSysctl::default(),
            nft: RecordingNft::default(),
        }
    }

    fn run(&mut self, r: &mut Reconciler, s: &DesiredState, resync: bool) -> Report {
        let mut dp = Dataplane {
            rtnl: &mut self.rtnl,
            sysctl: &mut self.sysctl,
            nft: &mut self.nft,
        };
        let out = if resync {
            r.resync(&mut dp, s)
        } else {
            r.apply(&mut dp, s)
        };
        out.expect("reconcile")
    }

    fn vx(&self) -> u32 {
        self.rtnl
            .links
            .iter()
            .find(|l| l.name == VXLAN_DEVICE)
            .expect("vxlan.calico exists")
            .index
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal")
}

fn mac(s: &str) -> [u8; 6] {
    parse_mac(s).expect("literal")
}

fn expected_routes(vx: u32) -> Vec<Route> {
    vec![
        Route::via(net("192.168.23.64/26"), ip("10.10.10.10"), ETH1)
            .with_protocol(80)
            .with_onlink(),
        Route::via(net("192.168.164.128/26"), ip("10.10.10.12"), ETH1)
            .with_protocol(80)
            .with_onlink(),
        Route::via(net("192.168.209.64/26"), ip("192.168.209.64"), vx).with_onlink(),
        Route::link(net("192.168.209.64/32"), vx),
        Route::blackhole(net("192.168.81.64/26")).with_protocol(80),
        Route::link(net("192.168.81.65/32"), CALI),
    ]
}

#[test]
fn fresh_node_gets_device_then_l2_then_one_route_batch_then_nft() {
    let mut env = Env::new();
    let mut r = Reconciler::new();
    let report = env.run(&mut r, &worker(), false);
    assert!(report.is_clean(), "{report:?}");
    let vx = env.vx();
    let mut sorted = expected_routes(vx);
    sorted.sort_by_key(|r| r.dst);
    let want_calls: Vec<Call> = [
        Call::CreateVxlan(VxlanSpec {
            name: VXLAN_DEVICE.into(),
            vni: 4096,
            port: 4789,
            local: Some(WORKER_IP.into()),
            parent: Some(ETH1),
            learning: false,
            mtu: Some(1450),
            mac: Some(mac(WORKER_MAC)),
            up: true,
        }),
        Call::AddAddress(calico_dataplane::Address::new(vx, net("192.168.81.64/32"))),
        Call::ReplaceNeighbour(Neighbour::permanent(
            vx,
            ip("192.168.209.64"),
            mac(REMOTE_MAC),
        )),
        Call::ReplaceFdb(FdbEntry::permanent(vx, mac(REMOTE_MAC), ip("10.10.20.10"))),
    ]
    .into_iter()
    .chain(sorted.iter().cloned().map(Call::ReplaceRoute))
    .collect();
    assert_eq!(env.rtnl.calls, want_calls);
    assert_eq!(env.rtnl.batches.len(), 1, "all routes in one batch");
    assert_eq!(
        env.sysctl.writes,
        vec![("net/ipv4/conf/vxlan.calico/rp_filter".into(), "2".into())]
    );
    assert_eq!(env.nft.scripts, vec![crate::nat::nft_script(&worker().nat)]);
    assert_eq!(report.routes_replaced, 6);

    // Nothing changed: nothing is sent, not even on a resync.
    env.rtnl.calls.clear();
    let again = env.run(&mut r, &worker(), false);
    assert!(!again.changed(), "{again:?}");
    let again = env.run(&mut r, &worker(), true);
    assert!(!again.changed(), "{again:?}");
    assert!(env.rtnl.calls.is_empty(), "{:?}", env.rtnl.calls);
    assert_eq!(env.rtnl.batches.len(), 1);
    assert_eq!(env.nft.scripts.len(), 1);
}

#[test]
fn restart_removes_stale_owned_routes_and_leaves_foreign_ones() {
    let mut env = Env::new();
    Reconciler::new();
    env.run(&mut Reconciler::new(), &worker(), false);
    let stale_bh = Route::blackhole(net("10.99.0.0/26")).with_protocol(80);
    let stale_cali = Route::link(net("192.168.81.70/32"), CALI);
    let foreign = Route::via(net("172.16.0.0/16"), ip("10.10.10.1"), ETH1).with_protocol(4);
    let bird = Route::via(net("192.168.50.0/26"), ip("10.10.10.9"), ETH1).with_protocol(12);
    let kernel = Route {
        scope: Scope::Link,
        ..Route::link(net("10.10.10.0/24"), ETH1).with_protocol(2)
    };
    for x in [&stale_bh, &stale_cali, &foreign, &bird, &kernel] {
        env.rtnl.routes.push(x.clone());
    }
    env.rtnl.calls.clear();

    // A new process: a new reconciler, one resync.
    let report = env.run(&mut Reconciler::new(), &worker(), true);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.routes_deleted, 2);
    assert_eq!(
        env.rtnl.calls,
        vec![Call::DeleteRoute(stale_bh), Call::DeleteRoute(stale_cali),]
    );
    for x in [&foreign, &bird, &kernel] {
        assert!(env.rtnl.routes.contains(x), "{x} must stay");
    }
    assert_eq!(
        env.nft.scripts.len(),
        2,
        "a new process re-applies its table once"
    );
}

#[test]
fn resync_repairs_a_deleted_route_fdb_entry_and_neighbour() {
    let mut env = Env::new();
    let mut r = Reconciler::new();
    env.run(&mut r, &worker(), false);
    let vx = env.vx();
    let gone = Route::via(net("192.168.23.64/26"), ip("10.10.10.10"), ETH1)
        .with_protocol(80)
        .with_onlink();
    env.rtnl.routes.retain(|x| *x != gone);
    env.rtnl.fdb.clear();
    env.rtnl.neighbours.clear();
    env.nft.table_present = false;
    env.rtnl.calls.clear();

    // `apply` trusts its cached route view (neighbours and FDB entries are listed every time,
    // so it repairs those); `resync` re-reads the routes and the nft table.
    let report = env.run(&mut r, &worker(), false);
    assert_eq!((report.neighbours_set, report.fdb_set), (1, 1));
    assert_eq!(report.routes_replaced, 0);
    assert!(!report.nat_applied);
    let report = env.run(&mut r, &worker(), true);
    assert_eq!(
        env.rtnl.calls,
        vec![
            Call::ReplaceNeighbour(Neighbour::permanent(
                vx,
                ip("192.168.209.64"),
                mac(REMOTE_MAC)
            )),
            Call::ReplaceFdb(FdbEntry::permanent(vx, mac(REMOTE_MAC), ip("10.10.20.10"))),
            Call::ReplaceRoute(gone),
        ]
    );
    assert_eq!(report.routes_replaced, 1);
    assert!(report.nat_applied, "table deleted by hand comes back");
}

#[test]
fn workload_route_waits_for_its_interface() {
    let mut env = Env::new();
    env.rtnl.links.retain(|l| l.name != "cali1234");
    let mut r = Reconciler::new();
    let report = env.run(&mut r, &worker(), false);
    assert_eq!(report.pending, vec![net("192.168.81.65/32")]);
    assert_eq!(env.rtnl.batches[0].len(), 5);
    env.rtnl.links.push(Link {
        index: 40,
        name: "cali1234".into(),
        mtu: Some(1450),
        mac: None,
        up: true,
        kind: Some("veth".into()),
    });
    let report = env.run(&mut r, &worker(), false);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        env.rtnl.batches[1],
        vec![RouteChange::Replace(Route::link(
            net("192.168.81.65/32"),
            40
        ))]
    );
}

#[test]
fn held_deletes_keep_stale_objects_until_in_sync() {
    let mut env = Env::new();
    env.run(&mut Reconciler::new(), &worker(), false);
    let mut smaller = worker();
    smaller.routes.remove(&net("192.168.164.128/26"));
    smaller.fdb.clear();
    let mut r = Reconciler::new();
    r.hold_deletes(true);
    let report = env.run(&mut r, &smaller, true);
    assert_eq!((report.routes_deleted, report.fdb_deleted), (0, 0));
    r.hold_deletes(false);
    let report = env.run(&mut r, &smaller, false);
    assert_eq!((report.routes_deleted, report.fdb_deleted), (1, 1));
    assert!(env.rtnl.fdb.is_empty());
}

#[test]
fn drifted_device_is_recreated_and_mtu_fixed_in_place() {
    let mut env = Env::new();
    let mut r = Reconciler::new();
    env.run(&mut r, &worker(), false);
    let vx = env.vx();
    env.rtnl.links.iter_mut().for_each(|l| {
        if l.index == vx {
            l.mtu = Some(1400);
        }
    });
    env.rtnl.calls.clear();
    let report = env.run(&mut r, &worker(), true);
    assert!(report.device_fixed);
    assert_eq!(
        env.rtnl.calls,
        vec![Call::SetLink {
            index: vx,
            change: calico_dataplane::LinkChange {
                mtu: Some(1450),
                ..Default::default()
            }
        }]
    );

    let mut other = worker();
    if let Some(d) = other.vxlan.as_mut() {
        d.vni = 4097;
    }
    let report = env.run(&mut r, &other, false);
    assert_eq!(report.device_recreated_for, vec!["vni".to_string()]);
    assert!(report.is_clean(), "{report:?}");
    let new_vx = env.vx();
    assert_ne!(new_vx, vx);
    assert_eq!(env.rtnl.fdb.len(), 1, "FDB reprogrammed on the new device");
    assert!(env.rtnl.routes.iter().any(|x| x.oif == Some(new_vx)));
}

#[test]
fn device_goes_after_the_routes_through_it() {
    let mut env = Env::new();
    let mut r = Reconciler::new();
    env.run(&mut r, &worker(), false);
    let mut no_vxlan = worker();
    no_vxlan.vxlan = None;
    no_vxlan.neighbours.clear();
    no_vxlan.fdb.clear();
    no_vxlan
        .routes
        .retain(|_, x| !matches!(x.kind, crate::model::RouteKind::ViaVxlan { .. }));
    no_vxlan.routes.remove(&net("192.168.209.64/32"));
    env.rtnl.calls.clear();
    let report = env.run(&mut r, &no_vxlan, false);
    assert!(report.device_deleted && report.is_clean(), "{report:?}");
    let last = env.rtnl.calls.last().cloned();
    assert_eq!(last, Some(Call::DeleteLink(VXLAN_DEVICE.into())));
    assert_eq!(
        env.rtnl.calls.len(),
        3,
        "two route deletes, then the device"
    );
}

#[test]
fn bad_mac_names_the_field() {
    let mut env = Env::new();
    let mut s = worker();
    if let Some(d) = s.vxlan.as_mut() {
        d.mac = "not-a-mac".into();
    }
    let mut dp = Dataplane {
        rtnl: &mut env.rtnl,
        sysctl: &mut env.sysctl,
        nft: &mut env.nft,
    };
    let err = Reconciler::new().apply(&mut dp, &s).expect_err("bad mac");
    assert!(
        err.to_string().contains("vxlan device MAC of vxlan.calico"),
        "{err}"
    );
}

fn with_ipip(mut s: DesiredState) -> DesiredState {
    s.ipip = Some(crate::model::IpipDevice {
        name: crate::model::IPIP_DEVICE.into(),
        tunnel_addr: "192.168.81.66".parse().expect("literal"),
        mtu: 1480,
    });
    s
}

#[test]
fn ipip_device_is_created_configured_and_its_address_released() {
    let mut env = Env::new();
    let mut r = Reconciler::new();
    let report = env.run(&mut r, &with_ipip(worker()), false);
    assert!(report.is_clean(), "{report:?}");
    let tunl = env
        .rtnl
        .links
        .iter()
        .find(|l| l.name == "tunl0")
        .map(|l| (l.index, l.up, l.mtu))
        .expect("tunl0 created");
    assert_eq!((tunl.1, tunl.2), (true, Some(1480)));
    assert!(env.rtnl.calls.contains(&Call::CreateIpip("tunl0".into())));
    assert!(
        env.rtnl
            .calls
            .contains(&Call::AddAddress(calico_dataplane::Address::new(
                tunl.0,
                net("192.168.81.66/32")
            )))
    );

    // Unchanged: nothing sent.
    env.rtnl.calls.clear();
    let again = env.run(&mut r, &with_ipip(worker()), false);
    assert!(!again.changed() && env.rtnl.calls.is_empty(), "{again:?}");

    // IPIP no longer used: the device stays, our address goes.
    let report = env.run(&mut r, &worker(), false);
    assert!(report.is_clean(), "{report:?}");
    assert!(env.rtnl.links.iter().any(|l| l.name == "tunl0"));
    assert_eq!(
        env.rtnl.calls,
        vec![Call::DeleteAddress(calico_dataplane::Address::new(
            tunl.0,
            net("192.168.81.66/32")
        ))]
    );
}
