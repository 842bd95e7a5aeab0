//! More `calico` binary cases in real namespaces: dual stack (IPv6 default route via the host
//! side's link-local address, pod-to-pod ping6), an unreachable datastore (ADD and DEL change
//! nothing), MTU and node name from calico-node's files, DEL after the pod namespace is gone, and
//! a failed WorkloadEndpoint write (the last step of ADD) rolling back the veth and the address.

mod common;

use calico_api::naming::host_interface_name;
use calico_dataplane::testns::TestNetns;
use common::{Fixture, NODE, Pod, cni};
use serde_json::json;

fn pod<'a>(netns: &'a TestNetns, name: &str, id: &str) -> Pod<'a> {
    Pod {
        container_id: id.to_string(),
        netns,
        namespace: "default",
        name: name.to_string(),
    }
}

fn add_v6_pool(fx: &Fixture) {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool6\nspec:\n  \
                cidr: fd00:10::/64\n  blockSize: 122\n";
    let docs = calico_api::codec::parse_documents(yaml).expect("pool6 parses");
    common::rt().block_on(async {
        let store = fx.store().await;
        for d in docs {
            store.create(d).await.expect("create pool6");
        }
    });
}

#[test]
fn dual_stack_pods_reach_each_other_over_v4_and_v6() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    add_v6_pool(&fx);
    // Felix enables IPv6 forwarding on a real node; do it for our node namespace.
    fx.node
        .exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    let conf =
        fx.conf(json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}));
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = pod(&ns_a, "six-a", "ctr-6a");
    let b = pod(&ns_b, "six-b", "ctr-6b");
    let ra = cni(&fx, "calico", "ADD", &a, &conf).ok();
    let rb = cni(&fx, "calico", "ADD", &b, &conf).ok();
    let ips_a = ra.ips();
    let ips_b = rb.ips();
    assert_eq!(ips_a.len(), 2, "{ips_a:?}");
    let v6_a = ips_a.iter().find(|i| i.contains(':')).expect("v6 for a");
    let v6_b = ips_b.iter().find(|i| i.contains(':')).expect("v6 for b");
    assert!(
        v6_a.ends_with("/128") && v6_a.starts_with("fd00:10:"),
        "{v6_a}"
    );
    let routes6 = ns_a.ip(&["-6", "route", "show"]);
    assert!(
        routes6.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{routes6}"
    );
    let veth = host_interface_name("default", "six-a");
    let host6 = fx.node.ip(&["-6", "route", "show", "dev", &veth]);
    assert!(host6.contains(v6_a.trim_end_matches("/128")), "{host6}");
    for (k, want) in [("proxy_ndp", "1"), ("accept_ra", "0"), ("forwarding", "1")] {
        let path = format!("/proc/sys/net/ipv6/conf/{veth}/{k}");
        assert_eq!(fx.node.exec(&["cat", &path]).trim(), want, "{path}");
    }
    let w = fx
        .endpoints()
        .into_iter()
        .find(|w| w.spec.pod == "six-a")
        .expect("endpoint a");
    assert_eq!(w.spec.ip_networks.len(), 2);
    let to_b6 = v6_b.trim_end_matches("/128");
    let out = ns_a.exec(&["ping", "-6", "-c", "2", "-W", "2", to_b6]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    let v4_b = ips_b.iter().find(|i| !i.contains(':')).expect("v4 for b");
    let out = ns_a.exec(&["ping", "-c", "1", "-W", "2", v4_b.trim_end_matches("/32")]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    cni(&fx, "calico", "DEL", &a, &conf).ok();
    cni(&fx, "calico", "DEL", &b, &conf).ok();
    assert!(fx.handle_ips("ctr-6a").is_empty());
    assert!(fx.cali_links().is_empty());
}

fn unreachable(conf: &serde_json::Value) -> serde_json::Value {
    let mut c = conf.clone();
    c["datastore_type"] = json!("etcdv3");
    c["etcd_endpoints"] = json!("http://127.0.0.1:1");
    c
}

#[test]
fn unreachable_datastore_fails_add_and_del_without_changes() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    // host-local would leave a file behind if IPAM had run.
    let good = fx.host_local_conf("10.78.0.0/24");
    let bad = unreachable(&good);
    let ns = TestNetns::new();
    let p = pod(&ns, "lost", "ctr-lost");
    let start = std::time::Instant::now();
    let r = cni(&fx, "calico", "ADD", &p, &bad);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("datastore"), "{}", r.stdout);
    assert!(start.elapsed().as_secs() < 30, "bounded");
    assert!(fx.cali_links().is_empty());
    let hl = fx.dir.path().join("host-local").join(common::NETWORK);
    let files: Vec<_> = std::fs::read_dir(&hl)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !files
            .iter()
            .any(|f| f.to_string_lossy().starts_with("10.78.")),
        "no address taken: {files:?}"
    );

    // A wired pod: DEL against an unreachable store fails and leaves everything in place.
    cni(&fx, "calico", "ADD", &p, &good).ok();
    let r = cni(&fx, "calico", "DEL", &p, &bad);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(fx.cali_links().len(), 1, "veth kept");
    assert_eq!(fx.endpoints().len(), 1, "endpoint kept");
    cni(&fx, "calico", "DEL", &p, &good).ok();
    assert!(fx.cali_links().is_empty());
    assert!(fx.endpoints().is_empty());
}

#[test]
fn mtu_and_nodename_come_from_calico_node_files() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let mtu_file = fx.dir.path().join("mtu");
    let node_file = fx.dir.path().join("nodename");
    std::fs::write(&mtu_file, "1410\n").expect("write mtu");
    std::fs::write(&node_file, format!("{NODE}\n")).expect("write nodename");
    let mut conf = fx.calico_ipam_conf();
    let obj = conf.as_object_mut().expect("object");
    obj.remove("nodename");
    obj.insert("mtu".into(), json!(0));
    obj.insert("mtu_file".into(), json!(mtu_file));
    obj.insert("nodename_file".into(), json!(node_file));
    let ns = TestNetns::new();
    let p = pod(&ns, "files", "ctr-files");
    cni(&fx, "calico", "ADD", &p, &conf).ok();
    let link = ns.ip(&["link", "show", "eth0"]);
    assert!(link.contains("mtu 1410"), "{link}");
    let weps = fx.endpoints();
    assert_eq!(weps[0].spec.node, NODE);
    cni(&fx, "calico", "DEL", &p, &conf).ok();

    // Neither configured nor written: 1500.
    conf["mtu_file"] = json!(fx.dir.path().join("absent"));
    cni(&fx, "calico", "ADD", &p, &conf).ok();
    let link = ns.ip(&["link", "show", "eth0"]);
    assert!(link.contains("mtu 1500"), "{link}");
    cni(&fx, "calico", "DEL", &p, &conf).ok();
}

#[test]
fn del_after_the_pod_namespace_is_gone_still_cleans_up() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let conf = fx.calico_ipam_conf();
    let ns = TestNetns::new();
    let p = Pod {
        container_id: "ctr-gone".into(),
        netns: &ns,
        namespace: "team-a",
        name: "web-1".into(),
    };
    let mut labelled = conf.clone();
    labelled["args"] = json!({"cni": {"labels": [{"key": "app", "value": "web"}]}});
    cni(&fx, "calico", "ADD", &p, &labelled).ok();
    let w = &fx.endpoints()[0];
    assert_eq!(w.metadata.name, format!("{NODE}-k8s-web--1-eth0"));
    assert_eq!(w.metadata.namespace.as_deref(), Some("team-a"));
    let labels = w.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["projectcalico.org/namespace"], "team-a");
    assert_eq!(w.spec.profiles, vec!["kns.team-a", "ksa.team-a.default"]);
    let path = p.netns_path();
    drop(p);
    drop(ns); // deletes the namespace (and with it the veth)
    assert!(!path.exists());
    let ghost = TestNetns::new();
    let p = Pod {
        container_id: "ctr-gone".into(),
        netns: &ghost,
        namespace: "team-a",
        name: "web-1".into(),
    };
    let env = vec![
        ("CNI_COMMAND", "DEL".to_string()),
        ("CNI_CONTAINERID", p.container_id.clone()),
        ("CNI_NETNS", path.display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", p.args()),
        ("CNI_PATH", common::cni_path()),
    ];
    let r = common::run_in(&fx.node, "calico", &env, conf.to_string().as_bytes());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(fx.endpoints().is_empty());
    assert!(fx.handle_ips("ctr-gone").is_empty());
}

#[test]
fn failed_endpoint_write_rolls_back_wiring_and_address() {
    // A container ID the CNI spec allows but a WorkloadEndpoint does not (spec.containerID is
    // alphanumerics and '-', as upstream): IPAM and wiring succeed, the endpoint write fails.
    let fx = Fixture::new("10.65.0.0/16", 26);
    let conf = fx.calico_ipam_conf();
    let ns = TestNetns::new();
    let p = pod(&ns, "under", "ctr_under");
    let r = cni(&fx, "calico", "ADD", &p, &conf);
    assert_ne!(r.code, 0, "{r:?}");
    let err = r.json();
    let text = err.to_string();
    assert!(text.contains("WorkloadEndpoint"), "{err}");
    assert!(text.contains("containerID"), "{err}");
    let log = std::fs::read_to_string(fx.log_path()).unwrap_or_default();
    assert!(
        log.contains("wired cali"),
        "wiring ran before the write: {log}"
    );
    assert!(
        fx.cali_links().is_empty(),
        "no veth left: {:?}",
        fx.cali_links()
    );
    assert!(
        !ns.ip(&["link", "show"]).contains("eth0"),
        "no pod interface left"
    );
    assert!(fx.endpoints().is_empty(), "no endpoint left");
    assert!(fx.handle_ips("ctr_under").is_empty(), "address released");
    // The node is left in a state where the next ADD works normally.
    let ns2 = TestNetns::new();
    let p2 = pod(&ns2, "next", "ctr-next");
    let ip = cni(&fx, "calico", "ADD", &p2, &conf).ok().ips();
    assert_eq!(fx.endpoints().len(), 1);
    cni(&fx, "calico", "DEL", &p2, &conf).ok();
    assert!(ip[0].starts_with("10.65."), "{ip:?}");
}
