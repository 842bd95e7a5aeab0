//! The dataplane side of Felix against the recording fakes: nothing stale is deleted before
//! the first in-sync, the first pass programs the whole state, later passes only the
//! difference, workload and host sysctls, and the refresh interval's precedence.

use calico_dataplane::fake::{Call, RecordingNft, RecordingRtnl, RecordingSysctl};
use calico_dataplane::{Link, RouteChange};
use calico_datastore::KeyValue;
use serde_json::json;

use super::*;

struct Fakes {
    rtnl: RecordingRtnl,
    sysctl: RecordingSysctl,
    nft: RecordingNft,
}

impl Fakes {
    fn new() -> Fakes {
        let rtnl = RecordingRtnl::with_links(&[(1, "lo"), (2, "eth1"), (3, "cali1234")]);
        Fakes {
            rtnl,
            sysctl: RecordingSysctl::default(),
            nft: RecordingNft::default(),
        }
    }

    fn reconcile(&mut self, felix: &mut Felix, full: bool) -> Report {
        let mut dp = Dataplane {
            rtnl: &mut self.rtnl,
            sysctl: &mut self.sysctl,
            nft: &mut self.nft,
        };
        match felix.reconcile(&mut dp, full) {
            Ok(r) => r,
            Err(e) => panic!("reconcile: {e}"),
        }
    }

    fn route_changes(&self) -> Vec<String> {
        self.rtnl
            .batches
            .iter()
            .flatten()
            .map(|c| match c {
                RouteChange::Add(r) | RouteChange::Replace(r) => format!("set {}", r.dst),
                RouteChange::Delete(r) => format!("del {}", r.dst),
            })
            .collect()
    }
}

fn put(kind: Kind, ns: Option<&str>, name: &str, v: serde_json::Value) -> SyncUpdate {
    SyncUpdate::Put(KeyValue {
        key: keys::resource_key(kind, ns, name),
        value: v.to_string().into_bytes(),
        create_revision: 1,
        mod_revision: 1,
        lease: None,
    })
}

fn pool(vxlan: &str) -> SyncUpdate {
    put(
        Kind::IPPool,
        None,
        "p",
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": "10.65.0.0/16", "vxlanMode": vxlan, "natOutgoing": true}}),
    )
}

fn node(name: &str, addr: &str, vtep: &str) -> SyncUpdate {
    put(
        Kind::Node,
        None,
        name,
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name},
            "spec": {"bgp": {"ipv4Address": addr}, "ipv4VXLANTunnelAddr": vtep}}),
    )
}

fn block(cidr: &str, host: &str) -> SyncUpdate {
    let net = cidr.parse().expect("literal");
    let b = calico_ipam::AllocationBlock::new(net, Some(format!("host:{host}")), 1)
        .expect("literal block");
    SyncUpdate::Put(KeyValue {
        key: keys::block_key(cidr),
        value: b.to_json(),
        create_revision: 1,
        mod_revision: 1,
        lease: None,
    })
}

fn wep(ip: &str) -> SyncUpdate {
    put(
        Kind::WorkloadEndpoint,
        Some("default"),
        "a-k8s-p-eth0",
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "a-k8s-p-eth0", "namespace": "default"},
            "spec": {"node": "a", "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                "interfaceName": "cali1234", "ipNetworks": [format!("{ip}/32")]}}),
    )
}

fn felix_config(name: &str, refresh: &str) -> SyncUpdate {
    put(
        Kind::FelixConfiguration,
        None,
        name,
        json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": name}, "spec": {"routeRefreshInterval": refresh}}),
    )
}

fn felix(refresh_env: Option<Duration>) -> Felix {
    Felix::new(
        LocalFacts {
            node_name: "a".into(),
            uplink: Some("eth1".into()),
            host_mtu: 1500,
        },
        refresh_env,
    )
}

#[test]
fn first_pass_programs_everything_then_only_differences() {
    let mut f = felix(None);
    let mut k = Fakes::new();
    for u in [
        pool("Always"),
        node("a", "10.0.0.1/24", "10.65.1.0"),
        node("b", "10.0.0.2/24", "10.65.2.0"),
        block("10.65.1.0/26", "a"),
        block("10.65.2.0/26", "b"),
        wep("10.65.1.5"),
    ] {
        f.feed(&u);
    }
    assert!(!f.in_sync());
    f.feed(&SyncUpdate::InSync);
    assert!(f.dirty());
    let r = k.reconcile(&mut f, false);
    assert!(r.is_clean(), "{r:?}");
    assert!(r.device_created);
    assert!(!f.dirty());
    assert_eq!(
        k.route_changes(),
        ["set 10.65.1.0/26", "set 10.65.1.5/32", "set 10.65.2.0/26"]
    );
    assert_eq!(k.nft.scripts.len(), 1, "natOutgoing table applied");
    let written: Vec<&str> = k.sysctl.writes.iter().map(|(p, _)| p.as_str()).collect();
    assert!(written.contains(&"net/ipv4/ip_forward"), "{written:?}");
    assert!(
        written.contains(&"net/ipv4/conf/cali1234/proxy_arp"),
        "{written:?}"
    );

    // A second remote block: one route, nothing else sent.
    k.rtnl.calls.clear();
    k.rtnl.batches.clear();
    f.feed(&block("10.65.2.64/26", "b"));
    let r = k.reconcile(&mut f, false);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(k.route_changes(), ["set 10.65.2.64/26"]);
    assert!(
        !k.rtnl
            .calls
            .iter()
            .any(|c| matches!(c, Call::CreateVxlan(_))),
        "{:?}",
        k.rtnl.calls
    );

    // Node b deleted: its routes go, in one batch.
    k.rtnl.batches.clear();
    f.feed(&SyncUpdate::Delete {
        key: keys::block_key("10.65.2.0/26"),
        revision: 9,
    });
    f.feed(&SyncUpdate::Delete {
        key: keys::block_key("10.65.2.64/26"),
        revision: 10,
    });
    f.feed(&SyncUpdate::Delete {
        key: keys::resource_key(Kind::Node, None, "b"),
        revision: 11,
    });
    let r = k.reconcile(&mut f, false);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(k.rtnl.batches.len(), 1);
    let mut gone = k.route_changes();
    gone.sort();
    assert_eq!(gone, ["del 10.65.2.0/26", "del 10.65.2.64/26"]);

    // Pool switched to Never: the device goes after its routes.
    f.feed(&pool("Never"));
    let r = k.reconcile(&mut f, false);
    assert!(r.device_deleted, "{r:?}");
    assert!(!k.rtnl.links.iter().any(|l| l.name == "vxlan.calico"));
}

#[test]
fn workload_route_waits_for_its_interface() {
    let mut f = felix(None);
    let mut k = Fakes::new();
    k.rtnl.links.retain(|l| l.name != "cali1234");
    for u in [
        pool("Never"),
        node("a", "10.0.0.1/24", ""),
        wep("10.65.1.5"),
        SyncUpdate::InSync,
    ] {
        f.feed(&u);
    }
    let r = k.reconcile(&mut f, false);
    assert_eq!(r.pending.len(), 1, "{r:?}");
    assert!(
        !k.sysctl.writes.iter().any(|(p, _)| p.contains("cali1234")),
        "no sysctls for an interface that does not exist"
    );
    k.rtnl.links.push(Link {
        index: 7,
        name: "cali1234".into(),
        mtu: Some(1500),
        mac: None,
        up: true,
        kind: None,
    });
    let r = k.reconcile(&mut f, false);
    assert!(r.is_clean(), "{r:?}");
    assert!(k.route_changes().contains(&"set 10.65.1.5/32".to_string()));
    assert!(
        k.sysctl
            .writes
            .iter()
            .any(|(p, _)| p == "net/ipv4/conf/cali1234/forwarding")
    );
}

#[test]
fn refresh_interval_env_then_node_config_then_default() {
    let mut f = felix(None);
    assert_eq!(f.refresh_interval(), Some(Duration::from_secs(90)));
    f.feed(&felix_config("default", "30s"));
    assert_eq!(f.refresh_interval(), Some(Duration::from_secs(30)));
    f.feed(&felix_config("node.a", "1m"));
    assert_eq!(f.refresh_interval(), Some(Duration::from_secs(60)));
    f.feed(&felix_config("node.other", "5s"));
    assert_eq!(f.refresh_interval(), Some(Duration::from_secs(60)));
    f.feed(&SyncUpdate::Delete {
        key: keys::resource_key(Kind::FelixConfiguration, None, "node.a"),
        revision: 3,
    });
    assert_eq!(f.refresh_interval(), Some(Duration::from_secs(30)));
    f.feed(&felix_config("default", "0"));
    assert_eq!(f.refresh_interval(), None, "0 turns the refresh off");

    let env = felix(Some(Duration::from_secs(5)));
    assert_eq!(env.refresh_interval(), Some(Duration::from_secs(5)));
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let (_, d) = backoff(None, RETRY_MAX);
    assert_eq!(d, RETRY_MIN);
    let mut prev = (Instant::now(), d);
    for _ in 0..20 {
        prev = backoff(Some(prev), RETRY_MAX);
    }
    assert_eq!(prev.1, RETRY_MAX);
}
