//! Reconciler against the real kernel in throwaway namespaces (root required: `TestNetns::new`
//! fails the test loudly otherwise). A node namespace has the uplink `eth1` (a veth to a peer
//! namespace) and a workload interface `cali1234`; the desired state is seed 000's k01-worker.
//! The checks read the kernel with iproute2 and nft, as an operator would.

use calico_dataplane::testns::TestNetns;
use calico_dataplane::{NetNs, Netlink, NftCommand, ProcSys, Sysctl, SysctlKey};

use super::fixture::*;
use super::*;

/// Sysctls of a node namespace (each access on a thread inside it); also used by `kernel_tests_v6`.
pub(super) struct NsSysctl(pub(super) NetNs);

impl Sysctl for NsSysctl {
    fn set(&mut self, key: &SysctlKey, value: &str) -> calico_dataplane::Result<()> {
        self.0.run(|| ProcSys::default().set(key, value))?
    }

    fn get(&mut self, key: &SysctlKey) -> calico_dataplane::Result<String> {
        self.0.run(|| ProcSys::default().get(key))?
    }
}

struct Node {
    ns: TestNetns,
    _peer: TestNetns,
    rtnl: Netlink,
    sysctl: NsSysctl,
    nft: NftCommand,
}

impl Node {
    fn new() -> Node {
        let (ns, peer) = TestNetns::with_uplink("10.10.10.11/24", Some("10.10.10.10/24"));
        ns.ip(&[
            "link", "add", "cali1234", "type", "veth", "peer", "name", "pod1234",
        ]);
        ns.ip(&["link", "set", "cali1234", "up"]);
        ns.ip(&["link", "set", "pod1234", "up"]);
        let rtnl = Netlink::open_in(&ns.open()).expect("netlink in node namespace");
        Node {
            sysctl: NsSysctl(ns.open()),
            nft: NftCommand::in_netns(ns.open()),
            ns,
            _peer: peer,
            rtnl,
        }
    }

    fn run(&mut self, r: &mut Reconciler, s: &DesiredState, resync: bool) -> Report {
        let mut dp = Dataplane {
            rtnl: &mut self.rtnl,
            sysctl: &mut self.sysctl,
            nft: &mut self.nft,
        };
        let report = if resync {
            r.resync(&mut dp, s)
        } else {
            r.apply(&mut dp, s)
        }
        .expect("reconcile");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report
    }

    /// `apply` whose final report must be clean, whatever failed on the way.
    fn run_allowing_errors(&mut self, r: &mut Reconciler, s: &DesiredState) -> Report {
        let mut dp = Dataplane {
            rtnl: &mut self.rtnl,
            sysctl: &mut self.sysctl,
            nft: &mut self.nft,
        };
        r.apply(&mut dp, s).expect("reconcile")
    }

    /// `ip route` lines, trailing blanks trimmed.
    fn routes(&self) -> Vec<String> {
        self.ns
            .ip(&["route", "show"])
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    fn block_routes(&self) -> Vec<String> {
        self.routes()
            .into_iter()
            .filter(|l| l.contains("/26"))
            .collect()
    }

    fn fdb(&self) -> String {
        self.ns
            .exec(&["bridge", "fdb", "show", "dev", VXLAN_DEVICE])
    }
}

const SEED_WORKER_BLOCKS: [&str; 4] = [
    "192.168.23.64/26 via 10.10.10.10 dev eth1 proto 80 onlink",
    "blackhole 192.168.81.64/26 proto 80",
    "192.168.164.128/26 via 10.10.10.12 dev eth1 proto 80 onlink",
    "192.168.209.64/26 via 192.168.209.64 dev vxlan.calico onlink",
];
const FDB_LINE: &str = "66:0a:0a:14:0a:04 dst 10.10.20.10 self permanent";

#[test]
fn seed_000_worker_is_programmed_repaired_and_cleaned_after_restart() {
    let mut node = Node::new();
    node.ns.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        "10.10.10.1",
        "proto",
        "static",
    ]);
    // Left over by an earlier run: ours by protocol, not desired.
    node.ns
        .ip(&["route", "add", "blackhole", "10.99.0.0/26", "proto", "80"]);

    let mut r = Reconciler::new();
    let report = node.run(&mut r, &worker(), true);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(node.block_routes(), SEED_WORKER_BLOCKS);
    let routes = node.routes();
    for line in [
        "192.168.209.64 dev vxlan.calico scope link",
        "192.168.81.65 dev cali1234 scope link",
        "172.16.0.0/16 via 10.10.10.1 dev eth1 proto static",
    ] {
        assert!(
            routes.iter().any(|l| l == line),
            "`{line}` missing: {routes:#?}"
        );
    }
    assert!(
        !routes.iter().any(|l| l.contains("10.99.0.0")),
        "stale route stays: {routes:#?}"
    );
    let link = node.ns.ip(&["-d", "link", "show", VXLAN_DEVICE]);
    for want in [
        "mtu 1450",
        "vxlan id 4096",
        "local 10.10.10.11",
        "dev eth1",
        "dstport 4789",
        "nolearning",
        "66:0a:0a:0a:0b:01",
    ] {
        assert!(link.contains(want), "`{want}` missing: {link}");
    }
    let addr = node.ns.ip(&["-4", "addr", "show", "dev", VXLAN_DEVICE]);
    assert!(addr.contains("inet 192.168.81.64/32"), "{addr}");
    assert_eq!(
        node.ns.ip(&["neigh", "show", "dev", VXLAN_DEVICE]).trim(),
        "192.168.209.64 lladdr 66:0a:0a:14:0a:04 PERMANENT"
    );
    assert!(
        node.fdb().lines().any(|l| l.trim() == FDB_LINE),
        "{}",
        node.fdb()
    );
    let rp = node
        .ns
        .exec(&["cat", "/proc/sys/net/ipv4/conf/vxlan.calico/rp_filter"]);
    assert_eq!(rp.trim(), VXLAN_RP_FILTER);
    let table = node.ns.exec(&["nft", "list", "table", "ip", "calico-nat"]);
    assert!(table.contains("masquerade"), "{table}");

    // Nothing to do the second time.
    assert!(!node.run(&mut r, &worker(), true).changed());

    // Manual damage; the periodic resync repairs it, the foreign route is untouched.
    node.ns.ip(&["route", "del", "192.168.23.64/26"]);
    node.ns.exec(&[
        "bridge",
        "fdb",
        "del",
        "66:0a:0a:14:0a:04",
        "dev",
        VXLAN_DEVICE,
        "dst",
        "10.10.20.10",
    ]);
    node.ns
        .exec(&["nft", "delete", "table", "ip", "calico-nat"]);
    assert!(!node.fdb().contains("10.10.20.10"));
    let report = node.run(&mut r, &worker(), true);
    assert_eq!(
        (report.routes_replaced, report.fdb_set),
        (1, 1),
        "{report:?}"
    );
    assert!(report.nat_applied);
    assert_eq!(node.block_routes(), SEED_WORKER_BLOCKS);
    assert!(node.fdb().lines().any(|l| l.trim() == FDB_LINE));
    assert!(node.routes().iter().any(|l| l.contains("172.16.0.0/16")));

    // Restart with a changed desired state: worker2's block is gone, worker3 has a new MAC.
    let mut changed = worker();
    changed.routes.remove(&net("192.168.164.128/26"));
    for f in changed.fdb.values_mut() {
        f.mac = "66:0a:0a:14:0a:05".into();
    }
    changed.fdb = changed
        .fdb
        .into_values()
        .map(|f| ((f.dev.clone(), f.mac.clone()), f))
        .collect();
    for n in changed.neighbours.values_mut() {
        n.mac = "66:0a:0a:14:0a:05".into();
    }
    let report = node.run(&mut Reconciler::new(), &changed, true);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        node.block_routes(),
        [
            SEED_WORKER_BLOCKS[0],
            SEED_WORKER_BLOCKS[1],
            SEED_WORKER_BLOCKS[3]
        ]
    );
    let fdb = node.fdb();
    assert!(!fdb.contains("66:0a:0a:14:0a:04"), "{fdb}");
    assert!(
        fdb.lines()
            .any(|l| l.trim() == "66:0a:0a:14:0a:05 dst 10.10.20.10 self permanent"),
        "{fdb}"
    );
    assert_eq!(
        node.ns.ip(&["neigh", "show", "dev", VXLAN_DEVICE]).trim(),
        "192.168.209.64 lladdr 66:0a:0a:14:0a:05 PERMANENT"
    );
    assert!(node.routes().iter().any(|l| l.contains("172.16.0.0/16")));
    assert!(
        !report.device_created,
        "the device is reused across a restart"
    );
}

#[test]
fn workload_route_appears_once_its_interface_exists_and_vxlan_goes_when_unwanted() {
    let mut node = Node::new();
    let mut s = worker();
    let pod = net("192.168.81.66/32");
    s.routes.insert(
        pod,
        crate::model::Route {
            dst: pod,
            kind: crate::model::RouteKind::Device {
                iface: "cali5678".into(),
            },
            proto: crate::model::BOOT_ROUTE_PROTO,
            scope_link: true,
            onlink: false,
            source: crate::model::RouteSource::LocalWorkload,
            node: None,
        },
    );
    let mut r = Reconciler::new();
    let report = node.run(&mut r, &s, true);
    assert_eq!(report.pending, vec![pod]);
    node.ns.ip(&[
        "link", "add", "cali5678", "type", "veth", "peer", "name", "pod5678",
    ]);
    node.ns.ip(&["link", "set", "cali5678", "up"]);
    node.ns.ip(&["link", "set", "pod5678", "up"]);
    let report = node.run(&mut r, &s, false);
    assert!(report.is_clean(), "{report:?}");
    assert!(
        node.routes()
            .iter()
            .any(|l| l == "192.168.81.66 dev cali5678 scope link")
    );

    // The pod is recreated: same interface name, new index, new address. The cached index is
    // stale; `apply` notices the failure, re-reads the kernel and programs it in the same call.
    node.ns.ip(&["link", "del", "cali5678"]);
    node.ns.ip(&[
        "link", "add", "cali5678", "type", "veth", "peer", "name", "pod5678",
    ]);
    node.ns.ip(&["link", "set", "cali5678", "up"]);
    node.ns.ip(&["link", "set", "pod5678", "up"]);
    let moved = net("192.168.81.67/32");
    let mut route = s.routes.remove(&pod).expect("pod route");
    route.dst = moved;
    s.routes.insert(moved, route);
    let report = node.run_allowing_errors(&mut r, &s);
    assert!(report.is_clean(), "{report:?}");
    let routes = node.routes();
    assert!(
        routes
            .iter()
            .any(|l| l == "192.168.81.67 dev cali5678 scope link"),
        "{routes:#?}"
    );
    assert!(
        !routes.iter().any(|l| l.contains("192.168.81.66")),
        "{routes:#?}"
    );

    // Pool switched away from VXLAN: routes through the device, then the device, go.
    s.vxlan = None;
    s.neighbours.clear();
    s.fdb.clear();
    s.routes.retain(|_, x| {
        !matches!(&x.kind, crate::model::RouteKind::ViaVxlan { .. })
            && !matches!(&x.kind, crate::model::RouteKind::Device { iface } if iface == VXLAN_DEVICE)
    });
    let report = node.run(&mut r, &s, false);
    assert!(report.device_deleted && report.is_clean(), "{report:?}");
    assert!(!node.ns.ip(&["link", "show"]).contains(VXLAN_DEVICE));
    assert!(!node.routes().iter().any(|l| l.contains("vxlan.calico")));
}

/// IPIP in a namespace: where the kernel has ipip support, `tunl0` ends up up with the tunnel
/// address and the IPIP route is programmed; where it has none (this project's test VMs), the
/// reconciler says so clearly, names the fix, and keeps the IPIP route pending.
#[test]
fn ipip_device_configured_or_missing_support_reported_clearly() {
    let mut node = Node::new();
    let mut s = DesiredState::empty(1500);
    s.ipip = Some(crate::model::IpipDevice {
        name: crate::model::IPIP_DEVICE.into(),
        tunnel_addr: "192.168.81.66".parse().expect("literal"),
        mtu: 1480,
    });
    let dst = net("192.168.23.64/26");
    s.routes.insert(
        dst,
        crate::model::Route {
            dst,
            kind: crate::model::RouteKind::ViaIpip {
                gw: "10.10.10.10".parse().expect("literal"),
            },
            proto: crate::model::FELIX_ROUTE_PROTO,
            scope_link: false,
            onlink: true,
            source: crate::model::RouteSource::RemoteBlock,
            node: None,
        },
    );
    let mut r = Reconciler::new();
    let report = node.run_allowing_errors(&mut r, &s);
    let has_tunl0 = node
        .ns
        .ip(&["-o", "link", "show"])
        .lines()
        .any(|l| l.contains(" tunl0@"));
    if has_tunl0 {
        assert!(report.is_clean(), "{report:?}");
        let addr = node.ns.ip(&["-o", "-4", "addr", "show", "dev", "tunl0"]);
        assert!(addr.contains("192.168.81.66/32"), "{addr}");
        assert!(
            node.routes()
                .iter()
                .any(|l| l == "192.168.23.64/26 via 10.10.10.10 dev tunl0 proto 80 onlink"),
            "{:#?}",
            node.routes()
        );
    } else {
        let text: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("tunl0") && e.contains("modprobe ipip")),
            "{text:?}"
        );
        assert_eq!(report.pending, vec![dst]);
    }
}
