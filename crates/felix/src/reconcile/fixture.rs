//! Test fixture shared by the fake and kernel tests: the desired state of seed 000's
//! `k01-worker` (VXLAN CrossSubnet, /26 blocks, uplink `eth1` 10.10.10.11/24), plus one local
//! workload on `cali1234`.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::model::*;

pub(crate) const WORKER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 10, 11);
pub(crate) const WORKER_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 81, 64);
pub(crate) const WORKER_MAC: &str = "66:0a:0a:0a:0b:01";
/// The node in the other subnet (k01-worker3) and its VTEP.
pub(crate) const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 20, 10);
pub(crate) const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 209, 64);
pub(crate) const REMOTE_MAC: &str = "66:0a:0a:14:0a:04";

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().expect("fixture literal")
}

fn route(dst: &str, kind: RouteKind, proto: u8, scope_link: bool, onlink: bool) -> Route {
    Route {
        dst: net(dst),
        kind,
        proto,
        scope_link,
        onlink,
        source: RouteSource::RemoteBlock,
        node: None,
    }
}

pub(crate) fn worker() -> DesiredState {
    let mut s = DesiredState::empty(1500);
    let via_node = |gw: [u8; 4]| RouteKind::ViaNode {
        gw: Ipv4Addr::from(gw).into(),
        dev: "eth1".into(),
    };
    for r in [
        route(
            "192.168.23.64/26",
            via_node([10, 10, 10, 10]),
            80,
            false,
            true,
        ),
        route("192.168.81.64/26", RouteKind::Blackhole, 80, false, false),
        route(
            "192.168.164.128/26",
            via_node([10, 10, 10, 12]),
            80,
            false,
            true,
        ),
        route(
            "192.168.209.64/26",
            RouteKind::ViaVxlan {
                gw: REMOTE_VTEP.into(),
            },
            BOOT_ROUTE_PROTO,
            false,
            true,
        ),
        route(
            "192.168.209.64/32",
            RouteKind::Device {
                iface: VXLAN_DEVICE.into(),
            },
            BOOT_ROUTE_PROTO,
            true,
            false,
        ),
        route(
            "192.168.81.65/32",
            RouteKind::Device {
                iface: "cali1234".into(),
            },
            BOOT_ROUTE_PROTO,
            true,
            false,
        ),
    ] {
        s.routes.insert(r.dst, r);
    }
    s.vxlan = Some(VxlanDevice {
        name: VXLAN_DEVICE.into(),
        vni: DEFAULT_VXLAN_VNI,
        port: DEFAULT_VXLAN_PORT,
        local_ip: WORKER_IP.into(),
        tunnel_addr: WORKER_VTEP.into(),
        mac: WORKER_MAC.into(),
        mtu: 1450,
        parent: Some("eth1".into()),
    });
    s.neighbours.insert(
        REMOTE_VTEP.into(),
        Neighbour {
            ip: REMOTE_VTEP.into(),
            mac: REMOTE_MAC.into(),
            dev: VXLAN_DEVICE.into(),
        },
    );
    s.fdb.insert(
        (VXLAN_DEVICE.into(), REMOTE_MAC.into()),
        Fdb {
            mac: REMOTE_MAC.into(),
            dst: REMOTE_IP.into(),
            dev: VXLAN_DEVICE.into(),
        },
    );
    s.nat = NatOutgoing {
        nat_pools: vec![net("192.168.0.0/16")],
        all_pools: vec![net("192.168.0.0/16")],
    };
    s.vxlan_enabled = true;
    s.mtu = Mtu {
        host: 1500,
        pod: 1450,
    };
    s
}
