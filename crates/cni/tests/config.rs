//! The network configuration: upstream Calico's conflist entry with every field we read,
//! unknown fields tolerated, errors with the spec's codes naming the field.

use calico_cni::spec::{CniVersion, ErrorCode, NetConf};

const FULL: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "k8s-pod-network",
  "type": "calico",
  "datastore_type": "etcdv3",
  "etcd_endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
  "etcd_key_file": "/etc/calico/key.pem",
  "etcd_cert_file": "/etc/calico/cert.pem",
  "etcd_ca_cert_file": "/etc/calico/ca.pem",
  "embedded_datastore_path": "/var/lib/calico/store.db",
  "nodename": "worker-1",
  "nodename_file": "/var/lib/calico/nodename",
  "nodename_file_optional": true,
  "mtu": 1440,
  "ipam": {
    "type": "calico-ipam",
    "assign_ipv4": "true",
    "assign_ipv6": "true",
    "ipv4_pools": ["10.65.0.0/16", "default-ipv4-ippool"],
    "ipv6_pools": ["fd00:65::/48"]
  },
  "container_settings": {"allow_ip_forwarding": true},
  "log_level": "Debug",
  "log_file_path": "/var/log/calico/cni/cni.log",
  "log_file_max_size": 100,
  "policy": {"type": "k8s"},
  "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
  "feature_control": {"ip_addrs_no_ipam": true, "floating_ips": false},
  "runtimeConfig": {
    "ips": ["10.65.1.7/24", "fd00:65::7"],
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "bandwidth": {"ingressRate": 1000000, "ingressBurst": 2000, "egressRate": 500000, "egressBurst": 1000}
  },
  "args": {"cni": {"ips": ["10.65.1.7", "10.65.1.8"], "labels": [{"key": "app", "value": "web"}]}},
  "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.65.1.7/32"}], "dns": {}},
  "some_future_field": {"nested": [1, 2, 3]},
  "capabilities": {"portMappings": true}
}"#;

#[test]
fn upstream_conflist_entry_parses_completely() {
    let c = NetConf::parse(FULL.as_bytes()).expect("valid");
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    assert_eq!(c.name, "k8s-pod-network");
    assert_eq!(c.plugin_type, "calico");
    assert_eq!(c.datastore_type.as_deref(), Some("etcdv3"));
    assert_eq!(
        c.etcd.endpoints.as_deref(),
        Some("https://10.0.0.1:2379,https://10.0.0.2:2379")
    );
    assert_eq!(c.etcd.key_file.as_deref(), Some("/etc/calico/key.pem"));
    assert_eq!(c.etcd.cert_file.as_deref(), Some("/etc/calico/cert.pem"));
    assert_eq!(c.etcd.ca_cert_file.as_deref(), Some("/etc/calico/ca.pem"));
    assert_eq!(
        c.embedded_datastore_path.as_deref(),
        Some("/var/lib/calico/store.db")
    );
    assert_eq!(c.nodename.as_deref(), Some("worker-1"));
    assert_eq!(c.nodename_file.as_deref(), Some("/var/lib/calico/nodename"));
    assert!(c.nodename_file_optional);
    assert_eq!(c.mtu, 1440);
    let ipam = c.ipam.as_ref().expect("ipam");
    assert_eq!(ipam.plugin_type, "calico-ipam");
    assert!(ipam.assign_ipv4 && ipam.assign_ipv6);
    assert_eq!(ipam.ipv4_pools, vec!["10.65.0.0/16", "default-ipv4-ippool"]);
    assert_eq!(ipam.ipv6_pools, vec!["fd00:65::/48"]);
    assert!(c.allow_ip_forwarding);
    assert_eq!(c.log_level.as_deref(), Some("Debug"));
    assert_eq!(
        c.log_file_path.as_deref(),
        Some("/var/log/calico/cni/cni.log")
    );
    assert_eq!(c.policy_type.as_deref(), Some("k8s"));
    assert_eq!(
        c.kubernetes.kubeconfig.as_deref(),
        Some("/etc/cni/net.d/calico-kubeconfig")
    );
    assert!(c.feature_control.ip_addrs_no_ipam && !c.feature_control.floating_ips);
    assert_eq!(c.runtime.port_mappings[0].host_port, 8080);
    assert_eq!(
        c.runtime.bandwidth.as_ref().map(|b| b.egress_rate),
        Some(500000)
    );
    assert_eq!(c.args_labels[0].key, "app");
    let requested: Vec<String> = c.requested_ips().iter().map(|i| i.to_string()).collect();
    assert_eq!(requested, vec!["10.65.1.7", "fd00:65::7", "10.65.1.8"]);
    let prev = c.prev_result.as_ref().expect("prevResult");
    assert_eq!(prev.ips[0].address.to_string(), "10.65.1.7/32");
    assert_eq!(c.raw["some_future_field"]["nested"][2], 3);
}

#[test]
fn minimal_config_gets_upstream_defaults() {
    let c = NetConf::parse(
        br#"{"cniVersion":"0.3.1","name":"net","type":"calico","ipam":{"type":"calico-ipam"}}"#,
    )
    .expect("valid");
    let ipam = c.ipam.expect("ipam");
    assert!(ipam.assign_ipv4, "IPv4 defaults on");
    assert!(!ipam.assign_ipv6, "IPv6 defaults off");
    assert_eq!(c.mtu, 0);
    assert!(!c.allow_ip_forwarding);
    assert_eq!(c.datastore_type, None);
    // JSON booleans are accepted as well as upstream's strings.
    let c = NetConf::parse(
        br#"{"cniVersion":"1.1.0","name":"n","type":"calico","ipam":{"type":"x","assign_ipv4":false}}"#,
    )
    .expect("valid");
    assert!(!c.ipam.expect("ipam").assign_ipv4);
}

#[test]
fn errors_carry_spec_codes_and_name_the_field() {
    let cases: &[(&str, u32, &str)] = &[
        ("not json", 6, "decode"),
        ("[1,2]", 6, "JSON object"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","mtu":"1500"}"#,
            6,
            "mtu",
        ),
        (
            r#"{"cniVersion":"0.2.0","name":"n","type":"calico"}"#,
            1,
            "0.2.0",
        ),
        (r#"{"name":"n","type":"calico"}"#, 1, "cniVersion"),
        (r#"{"cniVersion":"1.0.0","type":"calico"}"#, 7, "name"),
        (r#"{"cniVersion":"1.0.0","name":"n"}"#, 7, "type"),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","mtu":70000}"#,
            7,
            "mtu",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","datastore_type":"etcdv2"}"#,
            7,
            "datastore_type",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","log_level":"loud"}"#,
            7,
            "log_level",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","ipam":{}}"#,
            7,
            "ipam.type",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","ipam":{"type":"../x"}}"#,
            7,
            "ipam.type",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","ipam":{"type":"x","assign_ipv6":"yes"}}"#,
            7,
            "assign_ipv6",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","runtimeConfig":{"ips":["nope"]}}"#,
            7,
            "runtimeConfig.ips",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","args":{"cni":{"ips":["1.2.3"]}}}"#,
            7,
            "args.cni.ips",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","type":"calico","prevResult":{"ips":[{"address":"x"}]}}"#,
            6,
            "prevResult",
        ),
    ];
    for (input, code, needle) in cases {
        let err = NetConf::parse(input.as_bytes()).expect_err(input);
        assert_eq!(err.code.code(), *code, "{input}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(needle),
            "{input}: {text:?} should mention {needle:?}"
        );
    }
    assert_eq!(ErrorCode::from_code(7), ErrorCode::InvalidNetworkConfig);
}

#[test]
fn version_is_sniffed_for_error_replies() {
    assert_eq!(
        NetConf::sniff_version(br#"{"cniVersion":"0.4.0","name":1}"#).as_deref(),
        Some("0.4.0")
    );
    assert_eq!(NetConf::sniff_version(b"garbage"), None);
    assert_eq!(NetConf::sniff_version(br#"{"cniVersion":"9.9.9"}"#), None);
}
