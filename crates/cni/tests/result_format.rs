//! Byte-exact result formats per spec version, and parsing them back.

use calico_cni::spec::{CniResult, CniVersion, Dns, Interface, IpConfig, RouteResult};

fn pod_result() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "cali12345678901".into(),
                mac: Some("ee:ee:ee:ee:ee:ee".into()),
                mtu: Some(1450),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("0a:58:0a:41:00:05".into()),
                mtu: Some(1450),
                sandbox: Some("/run/netns/pod1".into()),
                ..Default::default()
            },
        ],
        ips: vec![
            IpConfig {
                address: "10.65.0.5/32".parse().expect("literal"),
                gateway: None,
                interface: Some(1),
            },
            IpConfig {
                address: "fd00:65::5/128".parse().expect("literal"),
                gateway: None,
                interface: Some(1),
            },
        ],
        routes: vec![
            RouteResult::new("0.0.0.0/0".parse().expect("literal"), None),
            RouteResult {
                priority: Some(100),
                ..RouteResult::new(
                    "::/0".parse().expect("literal"),
                    Some("fe80::ecee:eeff:feee:eeee".parse().expect("literal")),
                )
            },
        ],
        dns: Dns::default(),
    }
}

const V0: &str = r#"{
    "cniVersion": "VERSION",
    "interfaces": [
        {
            "name": "cali12345678901",
            "mac": "ee:ee:ee:ee:ee:ee"
        },
        {
            "name": "eth0",
            "mac": "0a:58:0a:41:00:05",
            "sandbox": "/run/netns/pod1"
        }
    ],
    "ips": [
        {
            "version": "4",
            "interface": 1,
            "address": "10.65.0.5/32"
        },
        {
            "version": "6",
            "interface": 1,
            "address": "fd00:65::5/128"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        },
        {
            "dst": "::/0",
            "gw": "fe80::ecee:eeff:feee:eeee"
        }
    ],
    "dns": {}
}"#;

#[test]
fn zero_three_and_zero_four_carry_ip_versions() {
    for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
        assert_eq!(
            pod_result().to_json(v),
            V0.replace("VERSION", v.as_str()),
            "{v}"
        );
    }
}

#[test]
fn one_zero_drops_ip_versions() {
    let expected = r#"{
    "cniVersion": "1.0.0",
    "interfaces": [
        {
            "name": "cali12345678901",
            "mac": "ee:ee:ee:ee:ee:ee"
        },
        {
            "name": "eth0",
            "mac": "0a:58:0a:41:00:05",
            "sandbox": "/run/netns/pod1"
        }
    ],
    "ips": [
        {
            "interface": 1,
            "address": "10.65.0.5/32"
        },
        {
            "interface": 1,
            "address": "fd00:65::5/128"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        },
        {
            "dst": "::/0",
            "gw": "fe80::ecee:eeff:feee:eeee"
        }
    ],
    "dns": {}
}"#;
    assert_eq!(pod_result().to_json(CniVersion::V1_0_0), expected);
}

#[test]
fn one_one_adds_interface_mtu_and_route_attributes() {
    let expected = r#"{
    "cniVersion": "1.1.0",
    "interfaces": [
        {
            "name": "cali12345678901",
            "mac": "ee:ee:ee:ee:ee:ee",
            "mtu": 1450
        },
        {
            "name": "eth0",
            "mac": "0a:58:0a:41:00:05",
            "mtu": 1450,
            "sandbox": "/run/netns/pod1"
        }
    ],
    "ips": [
        {
            "interface": 1,
            "address": "10.65.0.5/32"
        },
        {
            "interface": 1,
            "address": "fd00:65::5/128"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        },
        {
            "dst": "::/0",
            "gw": "fe80::ecee:eeff:feee:eeee",
            "priority": 100
        }
    ],
    "dns": {}
}"#;
    assert_eq!(pod_result().to_json(CniVersion::V1_1_0), expected);
}

#[test]
fn ipam_only_result_with_gateway_and_dns() {
    let r = CniResult {
        ips: vec![IpConfig {
            address: "10.22.0.2/24".parse().expect("literal"),
            gateway: Some("10.22.0.1".parse().expect("literal")),
            interface: None,
        }],
        dns: Dns {
            nameservers: vec!["10.96.0.10".into()],
            search: vec!["svc.cluster.local".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let expected = r#"{
    "cniVersion": "0.4.0",
    "ips": [
        {
            "version": "4",
            "address": "10.22.0.2/24",
            "gateway": "10.22.0.1"
        }
    ],
    "dns": {
        "nameservers": [
            "10.96.0.10"
        ],
        "search": [
            "svc.cluster.local"
        ]
    }
}"#;
    assert_eq!(r.to_json(CniVersion::V0_4_0), expected);
}

#[test]
fn every_format_parses_back_to_the_same_model() {
    for v in CniVersion::ALL {
        let printed = pod_result().to_json(v);
        let parsed = CniResult::parse(printed.as_bytes()).expect("own output parses");
        let mut expected = pod_result();
        if v < CniVersion::V1_1_0 {
            for i in &mut expected.interfaces {
                i.mtu = None;
            }
            expected.routes[1].priority = None;
        }
        assert_eq!(parsed, expected, "{v}");
    }
}

#[test]
fn inconsistent_results_are_decode_errors() {
    let bad = [
        r#"{"ips":[{"version":"6","address":"10.0.0.1/32"}]}"#,
        r#"{"ips":[{"interface":0,"address":"10.0.0.1/32"}]}"#,
        r#"{"ips":[{"address":"10.0.0.1"}]}"#,
        r#"{"routes":[{"dst":"0.0.0.0/0","gw":"nope"}]}"#,
        r#"[]"#,
    ];
    for b in bad {
        let err = CniResult::parse(b.as_bytes()).expect_err(b);
        assert_eq!(err.code.code(), 6, "{b}: {err}");
    }
}
