//! Request-derived values without root: veth and endpoint names for Kubernetes and plain CNI
//! workloads, node name and MTU precedence, the datastore choice, and the WorkloadEndpoint body.

use calico_cni::calico_plugin::build_endpoint;
use calico_cni::context::{self, Workload};
use calico_cni::ipam_plugin::handle_id;
use calico_cni::spec::{Environment, NetConf, Request};
use calico_datastore::DatastoreConfig;
use serde_json::{Value, json};

fn request(conf: Value, args: &str) -> Request {
    let env = Environment::from_lookup(|k| match k {
        "CNI_COMMAND" => Some("ADD".into()),
        "CNI_CONTAINERID" => Some("0123456789abcdef".into()),
        "CNI_NETNS" => Some("/var/run/netns/x".into()),
        "CNI_IFNAME" => Some("eth0".into()),
        "CNI_ARGS" => Some(args.into()),
        "CNI_PATH" => Some("/opt/cni/bin".into()),
        _ => None,
    })
    .expect("env");
    let stdin = conf.to_string().into_bytes();
    Request {
        env,
        conf: NetConf::parse(&stdin).expect("conf"),
        stdin,
    }
}

fn base() -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "calico", "nodename": "worker-1",
           "ipam": {"type": "calico-ipam"}})
}

const K8S: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=nginx-abc";

#[test]
fn kubernetes_names() {
    let req = request(base(), K8S);
    let wl = Workload::new(&req, context::nodename(&req).expect("node"));
    assert_eq!(wl.host_veth().len(), 15);
    assert_eq!(
        wl.host_veth(),
        calico_api::naming::host_interface_name("prod", "nginx-abc")
    );
    assert_eq!(
        wl.endpoint_name().expect("name"),
        ("worker--1-k8s-nginx--abc-eth0".into(), "prod".into())
    );
    assert_eq!(
        handle_id("net1", "0123456789abcdef"),
        "net1.0123456789abcdef"
    );
    let wep = build_endpoint(
        &req,
        &wl,
        &["10.0.0.5/32".parse().expect("net")],
        "aa:bb:cc:dd:ee:ff",
    )
    .expect("wep");
    assert_eq!(wep.spec.orchestrator, "k8s");
    assert_eq!(wep.spec.pod, "nginx-abc");
    assert_eq!(wep.spec.service_account_name, "default");
    assert_eq!(wep.spec.profiles, vec!["kns.prod", "ksa.prod.default"]);
    assert_eq!(wep.spec.mac, "aa:bb:cc:dd:ee:ff");
    let body = serde_json::to_value(&wep).expect("json");
    assert_eq!(body["spec"]["containerID"], "0123456789abcdef");
    assert_eq!(body["spec"]["ipNetworks"], json!(["10.0.0.5/32"]));
    assert_eq!(body["spec"]["interfaceName"], wl.host_veth());
}

#[test]
fn plain_cni_names_follow_the_container_id() {
    let req = request(base(), "");
    let wl = Workload::new(&req, "worker-1".into());
    assert_eq!(wl.host_veth(), "cali0123456789a");
    let (name, ns) = wl.endpoint_name().expect("name");
    assert_eq!(name, "worker--1-cni-0123456789abcdef-eth0");
    assert_eq!(ns, "default");
    let wep = build_endpoint(&req, &wl, &[], "").expect("wep");
    assert_eq!(wep.spec.orchestrator, "cni");
    assert_eq!(wep.spec.profiles, vec!["net1"]);
    let labels = wep.metadata.labels.unwrap_or_default();
    assert_eq!(labels["projectcalico.org/orchestrator"], "cni");
    assert!(!labels.contains_key("projectcalico.org/serviceaccount"));
}

#[test]
fn nodename_and_mtu_precedence() {
    let dir = tempfile::tempdir().expect("tmp");
    let node_file = dir.path().join("nodename");
    let mtu_file = dir.path().join("mtu");
    std::fs::write(&node_file, "from-file\n").expect("write");
    std::fs::write(&mtu_file, "1410").expect("write");
    let mut c = base();
    c["nodename_file"] = json!(node_file);
    c["mtu_file"] = json!(mtu_file);
    assert_eq!(
        context::nodename(&request(c.clone(), "")).expect("n"),
        "worker-1"
    );
    assert_eq!(context::mtu(&request(c.clone(), "")).expect("m"), 1410);
    c["mtu"] = json!(9000);
    assert_eq!(context::mtu(&request(c.clone(), "")).expect("m"), 9000);
    c.as_object_mut().expect("obj").remove("nodename");
    assert_eq!(
        context::nodename(&request(c.clone(), "")).expect("n"),
        "from-file"
    );
    // A configured nodename_file that is missing is an error naming the file.
    c["nodename_file"] = json!(dir.path().join("absent"));
    let err = context::nodename(&request(c.clone(), "")).expect_err("missing");
    assert!(err.msg.contains("absent"), "{err}");
    // Garbage in the MTU file is an error, a missing file means 1500.
    std::fs::write(&mtu_file, "lots").expect("write");
    c["mtu"] = json!(0);
    assert!(context::mtu(&request(c.clone(), "")).is_err());
    c["mtu_file"] = json!(dir.path().join("none"));
    assert_eq!(context::mtu(&request(c, "")).expect("m"), 1500);
}

#[test]
fn datastore_from_the_configuration() {
    let mut c = base();
    c["datastore_type"] = json!("embedded");
    c["embedded_datastore_path"] = json!("/tmp/x.db");
    match context::datastore_config(&request(c, "")).expect("cfg") {
        DatastoreConfig::Embedded(e) => assert_eq!(e.path.to_str(), Some("/tmp/x.db")),
        other => panic!("{other:?}"),
    }
    let mut c = base();
    c["etcd_endpoints"] = json!("http://10.0.0.1:2379");
    match context::datastore_config(&request(c, "")).expect("cfg") {
        DatastoreConfig::Etcd(e) => assert_eq!(e.endpoints, vec!["http://10.0.0.1:2379"]),
        other => panic!("{other:?}"),
    }
}
