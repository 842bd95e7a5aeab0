//! The `calico` and `calico-ipam` binaries end to end, as a runtime runs them: real network
//! namespaces (a node namespace where the plugin runs, one per pod), the embedded datastore in a
//! temp dir, CNI_PATH = our binaries + /usr/lib/cni. Needs root and iproute2; fails otherwise.

mod common;

use calico_api::naming::host_interface_name;
use calico_dataplane::testns::TestNetns;
use common::{Fixture, NODE, Pod, cni, run_in, with_prev};
use serde_json::json;

fn pod<'a>(netns: &'a TestNetns, name: &str, id: &str) -> Pod<'a> {
    Pod {
        container_id: id.to_string(),
        netns,
        namespace: "default",
        name: name.to_string(),
    }
}

fn add_check_del(fx: &Fixture, conf: &serde_json::Value, expect_prefix: &str) {
    let pod_ns = TestNetns::new();
    let p = pod(&pod_ns, "nginx-abc", "ctr-0001");
    let add = cni(fx, "calico", "ADD", &p, conf).ok();
    let result = add.json();
    let ips = add.ips();
    assert_eq!(ips.len(), 1, "{result}");
    let ip = ips[0].clone();
    assert!(ip.starts_with(expect_prefix) && ip.ends_with("/32"), "{ip}");
    let bare = ip.trim_end_matches("/32");
    let veth = host_interface_name("default", "nginx-abc");
    assert_eq!(result["interfaces"][0]["name"], veth);
    assert_eq!(result["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(result["interfaces"][1]["name"], "eth0");

    // Host side: name, MAC, MTU, sysctls, route.
    let link = fx.node.ip(&["link", "show", &veth]);
    assert!(link.contains("ee:ee:ee:ee:ee:ee"), "{link}");
    assert!(link.contains("mtu 1440"), "{link}");
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    for (path, want) in [
        (format!("/proc/sys/net/ipv4/conf/{veth}/proxy_arp"), "1"),
        (format!("/proc/sys/net/ipv4/neigh/{veth}/proxy_delay"), "0"),
        (format!("/proc/sys/net/ipv4/conf/{veth}/forwarding"), "1"),
        (
            format!("/proc/sys/net/ipv4/conf/{veth}/route_localnet"),
            "1",
        ),
    ] {
        assert_eq!(fx.node.exec(&["cat", &path]).trim(), want, "{path}");
    }
    let host_routes = fx.node.ip(&["route", "show", "dev", &veth]);
    assert!(
        host_routes.contains(&format!("{bare} scope link")),
        "{host_routes}"
    );
    // Pod side: address, link route to the gateway, default route.
    let addrs = pod_ns.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {ip}")), "{addrs}");
    assert!(addrs.contains("mtu 1440"), "{addrs}");
    let routes = pod_ns.ip(&["route", "show"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("169.254.1.1 dev eth0 scope link"),
        "{routes}"
    );

    // The WorkloadEndpoint, upstream's name and spec.
    let weps = fx.endpoints();
    assert_eq!(weps.len(), 1);
    let w = &weps[0];
    assert_eq!(w.metadata.name, format!("{NODE}-k8s-nginx--abc-eth0"));
    assert_eq!(w.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(w.spec.orchestrator, "k8s");
    assert_eq!(w.spec.node, NODE);
    assert_eq!(w.spec.pod, "nginx-abc");
    assert_eq!(w.spec.endpoint, "eth0");
    assert_eq!(w.spec.container_id, "ctr-0001");
    assert_eq!(w.spec.interface_name, veth);
    assert_eq!(w.spec.ip_networks, vec![ip.clone()]);
    assert_eq!(w.spec.profiles, vec!["kns.default", "ksa.default.default"]);
    let pod_mac = result["interfaces"][1]["mac"].as_str().unwrap_or_default();
    assert_eq!(w.spec.mac, pod_mac);
    let labels = w.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["projectcalico.org/namespace"], "default");
    assert_eq!(labels["projectcalico.org/orchestrator"], "k8s");
    assert_eq!(labels["projectcalico.org/serviceaccount"], "default");

    // CHECK with the prevResult, then a repeated ADD returns the same address.
    cni(fx, "calico", "CHECK", &p, &with_prev(conf, &result)).ok();
    let again = cni(fx, "calico", "ADD", &p, conf).ok();
    assert_eq!(again.ips(), vec![ip.clone()]);
    assert_eq!(fx.cali_links(), vec![veth.clone()]);

    // DEL removes everything; a second DEL is fine.
    cni(fx, "calico", "DEL", &p, conf).ok();
    assert!(fx.cali_links().is_empty());
    assert!(fx.endpoints().is_empty());
    cni(fx, "calico", "DEL", &p, conf).ok();
    // CHECK now fails.
    let chk = cni(fx, "calico", "CHECK", &p, &with_prev(conf, &result));
    assert_ne!(chk.code, 0);
    assert!(chk.json()["code"].as_u64().is_some());
}

#[test]
fn add_check_del_with_calico_ipam() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    add_check_del(&fx, &fx.calico_ipam_conf(), "10.65.");
    assert!(fx.handle_ips("ctr-0001").is_empty(), "DEL released");
    let log = std::fs::read_to_string(fx.log_path()).expect("log file written");
    assert!(log.contains("calico ADD ctr-0001"), "{log}");
}

#[test]
fn add_check_del_with_host_local() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    add_check_del(&fx, &fx.host_local_conf("10.77.0.0/24"), "10.77.0.");
    // host-local's own record is gone too.
    let dir = fx.dir.path().join("host-local").join(common::NETWORK);
    let leftover: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10.77."))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftover.is_empty(), "{leftover:?}");
}

#[test]
fn two_pods_on_one_node_ping_each_other() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let conf = fx.calico_ipam_conf();
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = pod(&ns_a, "pod-a", "ctr-a");
    let b = pod(&ns_b, "pod-b", "ctr-b");
    let ip_a = cni(&fx, "calico", "ADD", &a, &conf).ok().ips()[0].clone();
    let ip_b = cni(&fx, "calico", "ADD", &b, &conf).ok().ips()[0].clone();
    assert_ne!(ip_a, ip_b);
    let to_b = ip_b.trim_end_matches("/32");
    let to_a = ip_a.trim_end_matches("/32");
    let out = ns_a.exec(&["ping", "-c", "2", "-W", "2", to_b]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    let out = ns_b.exec(&["ping", "-c", "2", "-W", "2", to_a]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    cni(&fx, "calico", "DEL", &a, &conf).ok();
    cni(&fx, "calico", "DEL", &b, &conf).ok();
    assert!(fx.cali_links().is_empty());
}

#[test]
fn failed_add_rolls_back_on_conflicting_interface() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let conf = fx.calico_ipam_conf();
    let pod_ns = TestNetns::new();
    // The pod already has an eth0: creating the veth's peer there fails after IPAM assigned.
    pod_ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let p = pod(&pod_ns, "clash", "ctr-clash");
    let r = cni(&fx, "calico", "ADD", &p, &conf);
    assert_ne!(r.code, 0, "{r:?}");
    let err = r.json();
    assert!(err["msg"].as_str().unwrap_or("").contains("veth"), "{err}");
    assert!(fx.cali_links().is_empty(), "no veth left");
    assert!(fx.endpoints().is_empty(), "no endpoint left");
    assert!(fx.handle_ips("ctr-clash").is_empty(), "address released");
}

#[test]
fn failed_add_rolls_back_on_ipam_exhaustion() {
    // A /30 pool: four addresses.
    let fx = Fixture::new("10.66.0.0/30", 30);
    let conf = fx.calico_ipam_conf();
    let netns: Vec<TestNetns> = (0..5).map(|_| TestNetns::new()).collect();
    let mut last = None;
    for (i, ns) in netns.iter().enumerate() {
        let p = pod(ns, &format!("p{i}"), &format!("ctr-x{i}"));
        let r = cni(&fx, "calico", "ADD", &p, &conf);
        if i < 4 {
            r.ok();
        } else {
            last = Some(r);
        }
    }
    let r = last.expect("fifth ADD ran");
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("exhausted"), "{}", r.stdout);
    assert_eq!(fx.cali_links().len(), 4, "only the four wired pods");
    assert_eq!(fx.endpoints().len(), 4);
    assert!(fx.handle_ips("ctr-x4").is_empty());
    let veth = host_interface_name("default", "p4");
    assert!(!fx.cali_links().contains(&veth));
}

#[test]
fn fifty_concurrent_adds_get_unique_addresses() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let conf = fx.calico_ipam_conf();
    let netns: Vec<TestNetns> = (0..50).map(|_| TestNetns::new()).collect();
    let pods: Vec<Pod> = netns
        .iter()
        .enumerate()
        .map(|(i, ns)| pod(ns, &format!("web-{i}"), &format!("ctr-c{i:03}")))
        .collect();
    let runs: Vec<common::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|p| s.spawn(|| cni(&fx, "calico", "ADD", p, &conf)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut ips: Vec<String> = runs.into_iter().flat_map(|r| r.ok().ips()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "unique addresses");
    assert_eq!(fx.cali_links().len(), 50);
    assert_eq!(fx.endpoints().len(), 50);
    for p in &pods {
        cni(&fx, "calico", "DEL", p, &conf).ok();
    }
    assert!(fx.cali_links().is_empty());
    assert!(fx.endpoints().is_empty());
}

#[test]
fn calico_ipam_alone_assigns_and_releases_by_handle() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let mut conf = fx.calico_ipam_conf();
    conf["type"] = json!("calico-ipam");
    let pod_ns = TestNetns::new();
    let p = pod(&pod_ns, "solo", "ctr-solo");
    // 0.4.0 results carry "version" on each IP.
    conf["cniVersion"] = json!("0.4.0");
    let r = common::cni(&fx, "calico-ipam", "ADD", &p, &conf).ok();
    let v = r.json();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["ips"][0]["version"], "4");
    let held = fx.handle_ips("ctr-solo");
    assert_eq!(held.len(), 1);
    assert_eq!(v["ips"][0]["address"], format!("{}/32", held[0]));
    // Upstream's handle and attributes on the allocation.
    let (handle, attrs) = common::rt()
        .block_on(async {
            calico_ipam::Ipam::new(fx.datastore().await)
                .assignment_of(held[0])
                .await
        })
        .expect("read block")
        .expect("allocated");
    assert_eq!(handle.as_deref(), Some("k8s-pod-network.ctr-solo"));
    assert_eq!(attrs["node"], NODE);
    assert_eq!(attrs["pod"], "solo");
    assert_eq!(attrs["namespace"], "default");
    assert!(attrs.contains_key("timestamp"), "{attrs:?}");
    // A repeated ADD returns what the handle holds.
    let again = common::cni(&fx, "calico-ipam", "ADD", &p, &conf).ok();
    assert_eq!(again.json()["ips"], v["ips"]);
    // ipv4_pools restricts the choice.
    let yaml = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool2\nspec:\n  \
                cidr: 10.99.0.0/24\n  blockSize: 28\n";
    common::rt().block_on(async {
        let store = fx.store().await;
        for d in calico_api::codec::parse_documents(yaml).expect("pool2") {
            store.create(d).await.expect("create pool2");
        }
    });
    let mut pooled = fx.calico_ipam_conf();
    pooled["type"] = json!("calico-ipam");
    pooled["ipam"]["ipv4_pools"] = json!(["pool2"]);
    let p3 = pod(&pod_ns, "pooled", "ctr-pooled");
    let r = common::cni(&fx, "calico-ipam", "ADD", &p3, &pooled).ok();
    assert!(r.ips()[0].starts_with("10.99.0."), "{:?}", r.ips());
    common::cni(&fx, "calico-ipam", "DEL", &p3, &pooled).ok();
    // Requested address through AssignIP.
    let mut req = fx.calico_ipam_conf();
    req["type"] = json!("calico-ipam");
    req["runtimeConfig"] = json!({"ips": ["10.65.200.7"]});
    let p2 = pod(&pod_ns, "fixed", "ctr-fixed");
    let r = common::cni(&fx, "calico-ipam", "ADD", &p2, &req).ok();
    assert_eq!(r.ips(), vec!["10.65.200.7/32".to_string()]);
    common::cni(&fx, "calico-ipam", "DEL", &p, &conf).ok();
    common::cni(&fx, "calico-ipam", "DEL", &p, &conf).ok();
    common::cni(&fx, "calico-ipam", "DEL", &p2, &req).ok();
    assert!(fx.handle_ips("ctr-solo").is_empty());
    assert!(fx.handle_ips("ctr-fixed").is_empty());
}

type Env = Vec<(&'static str, String)>;

#[test]
fn garbage_input_gives_cni_error_json() {
    let fx = Fixture::new("10.65.0.0/16", 26);
    let cases: Vec<(Env, &[u8])> = vec![
        (vec![], b"not json"),
        (vec![("CNI_COMMAND", "ADD".into())], b"{}"),
        (
            vec![
                ("CNI_COMMAND", "ADD".into()),
                ("CNI_CONTAINERID", "x".into()),
                ("CNI_NETNS", "/nonexistent".into()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_PATH", common::cni_path()),
            ],
            b"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"calico\",\"ipam\":{\"type\":\"calico-ipam\"},\"nodename\":\"node1\",\"datastore_type\":\"embedded\",\"embedded_datastore_path\":\"/nonexistent/dir/db\"}",
        ),
        (vec![("CNI_COMMAND", "BOGUS".into())], b"\xff\xfe\x00"),
    ];
    for plugin in ["calico", "calico-ipam"] {
        for (env, stdin) in &cases {
            let r = run_in(&fx.node, plugin, env, stdin);
            assert_ne!(r.code, 0, "{plugin} {env:?}: {r:?}");
            let v = r.json();
            assert!(v["code"].as_u64().is_some(), "{v}");
            assert!(v["msg"].as_str().is_some(), "{v}");
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        }
    }
}
