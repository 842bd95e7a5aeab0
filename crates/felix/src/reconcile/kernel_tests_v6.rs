//! `vxlan-v6.calico` against the real kernel: two node namespaces joined by a veth with IPv6
//! addresses (node A `eth1` fd00:10::10, node B `eth0` fd00:10::11), each reconciled to a
//! IPv6-only desired state (device, block routes, neighbour, FDB), then one node's
//! tunnel address pings the other's through the VXLAN encapsulation, and removing the IPv6
//! pool's state deletes the device and its routes.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use calico_dataplane::testns::TestNetns;
use calico_dataplane::{Netlink, NftCommand};

use super::kernel_tests::NsSysctl;
use super::*;
use crate::model::*;

struct V6Node {
    ns: TestNetns,
    rtnl: Netlink,
    sysctl: NsSysctl,
    nft: NftCommand,
}

impl V6Node {
    fn new(ns: TestNetns, uplink: &str, addr: &str) -> V6Node {
        ns.ip(&["-6", "addr", "add", addr, "dev", uplink, "nodad"]);
        V6Node {
            rtnl: Netlink::open_in(&ns.open()).expect("netlink in node namespace"),
            sysctl: NsSysctl(ns.open()),
            nft: NftCommand::in_netns(ns.open()),
            ns,
        }
    }

    fn reconcile(&mut self, r: &mut Reconciler, s: &DesiredState) -> Report {
        let mut dp = Dataplane {
            rtnl: &mut self.rtnl,
            sysctl: &mut self.sysctl,
            nft: &mut self.nft,
        };
        let report = r.resync(&mut dp, s).expect("reconcile");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report
    }
}

struct Side {
    uplink: &'static str,
    ip: &'static str,
    vtep: &'static str,
    block: &'static str,
    mac: &'static str,
}

const A: Side = Side {
    uplink: "eth1",
    ip: "fd00:10::10",
    vtep: "fd5a:5a5a:0:1::",
    block: "fd5a:5a5a:0:1::/122",
    mac: "66:0a:00:00:00:0a",
};
const B: Side = Side {
    uplink: "eth0",
    ip: "fd00:10::11",
    vtep: "fd5a:5a5a:0:2::",
    block: "fd5a:5a5a:0:2::/122",
    mac: "66:0a:00:00:00:0b",
};

fn addr(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// The desired state of `me` with `other` as the only remote node (what the calc graph gives
/// for an IPv6 VXLAN Always pool).
fn desired(me: &Side, other: &Side) -> DesiredState {
    let mut s = DesiredState::empty(1500);
    s.vxlan_v6 = Some(VxlanDevice {
        name: VXLAN_V6_DEVICE.into(),
        vni: DEFAULT_VXLAN_VNI,
        port: DEFAULT_VXLAN_PORT,
        local_ip: addr(me.ip),
        tunnel_addr: addr(me.vtep),
        mac: me.mac.into(),
        mtu: 1500 - VXLAN_V6_OVERHEAD,
        parent: Some(me.uplink.into()),
    });
    for (dst, kind, proto, onlink) in [
        (me.block, RouteKind::Blackhole, FELIX_ROUTE_PROTO, false),
        (
            other.block,
            RouteKind::ViaVxlan {
                gw: addr(other.vtep),
            },
            BOOT_ROUTE_PROTO,
            true,
        ),
    ] {
        let dst = dst.parse().expect("block");
        s.routes.insert(
            dst,
            Route {
                dst,
                kind,
                proto,
                scope_link: false,
                onlink,
                source: RouteSource::RemoteBlock,
                node: None,
            },
        );
    }
    s.neighbours.insert(
        addr(other.vtep),
        Neighbour {
            ip: addr(other.vtep),
            mac: other.mac.into(),
            dev: VXLAN_V6_DEVICE.into(),
        },
    );
    s.fdb.insert(
        (VXLAN_V6_DEVICE.into(), other.mac.into()),
        Fdb {
            mac: other.mac.into(),
            dst: addr(other.ip),
            dev: VXLAN_V6_DEVICE.into(),
        },
    );
    s
}

/// One ping every 200 ms for at most 5 s (the tunnel address may still be in DAD).
fn ping_until_ok(from: &TestNetns, to: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..25 {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                from.name(),
                "ping",
                "-6",
                "-c",
                "1",
                "-W",
                "1",
                to,
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return true;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn ipv6_vxlan_carries_traffic_between_two_nodes_and_goes_away_with_its_pool() {
    let (na, nb) = TestNetns::with_uplink("10.10.10.10/24", Some("10.10.10.11/24"));
    let mut a = V6Node::new(na, A.uplink, &format!("{}/64", A.ip));
    let mut b = V6Node::new(nb, B.uplink, &format!("{}/64", B.ip));
    let (mut ra, mut rb) = (Reconciler::new(), Reconciler::new());
    let report = a.reconcile(&mut ra, &desired(&A, &B));
    assert!(report.device_created && report.neighbours_set == 1 && report.fdb_set == 1);
    b.reconcile(&mut rb, &desired(&B, &A));

    let link = a.ns.ip(&["-d", "link", "show", VXLAN_V6_DEVICE]);
    for want in [
        "mtu 1430",
        "vxlan id 4096",
        "local fd00:10::10",
        "dev eth1",
        "dstport 4789",
        "nolearning",
        "link/ether 66:0a:00:00:00:0a",
    ] {
        assert!(link.contains(want), "{want:?} missing in:\n{link}");
    }
    let addrs = a.ns.ip(&["-6", "addr", "show", "dev", VXLAN_V6_DEVICE]);
    assert!(
        addrs.contains("inet6 fd5a:5a5a:0:1::/128 scope global"),
        "{addrs}"
    );
    let routes = a.ns.ip(&["-6", "route", "show"]);
    let line = |prefix: &str| {
        routes
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no route {prefix} in:\n{routes}"))
            .to_string()
    };
    let via = line("fd5a:5a5a:0:2::/122");
    assert!(
        via.starts_with("fd5a:5a5a:0:2::/122 via fd5a:5a5a:0:2:: dev vxlan-v6.calico")
            && via.contains("onlink")
            && !via.contains("proto"),
        "{via}"
    );
    assert!(
        line("blackhole fd5a:5a5a:0:1::/122").contains("proto 80"),
        "{routes}"
    );
    let neigh = a.ns.ip(&["-6", "neigh", "show", "dev", VXLAN_V6_DEVICE]);
    assert!(
        neigh.contains("fd5a:5a5a:0:2:: lladdr 66:0a:00:00:00:0b PERMANENT"),
        "{neigh}"
    );
    let fdb =
        a.ns.exec(&["bridge", "fdb", "show", "dev", VXLAN_V6_DEVICE]);
    assert!(
        fdb.contains("66:0a:00:00:00:0b dst fd00:10::11 self permanent"),
        "{fdb}"
    );

    assert!(
        ping_until_ok(&a.ns, B.vtep),
        "node A's tunnel address cannot reach node B's through vxlan-v6.calico"
    );

    // A second pass changes nothing.
    let again = a.reconcile(&mut ra, &desired(&A, &B));
    assert!(!again.changed(), "{again:?}");

    // The IPv6 pool is gone: device, routes, neighbours and FDB entries go with it.
    let report = a.reconcile(&mut ra, &DesiredState::empty(1500));
    assert!(report.device_deleted, "{report:?}");
    let links = a.ns.ip(&["-o", "link", "show"]);
    assert!(!links.contains(VXLAN_V6_DEVICE), "{links}");
    let routes = a.ns.ip(&["-6", "route", "show"]);
    assert!(!routes.contains("fd5a:5a5a"), "{routes}");
}
