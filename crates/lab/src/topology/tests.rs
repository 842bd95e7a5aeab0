//! Topology parsing and validation: every error names its field.

use super::*;

fn parse(text: &str) -> Result<Topology, TopologyError> {
    Topology::parse(text, Path::new("t.yaml"), Path::new("."))
}

/// The validation problems of `text`, which must be invalid.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(TopologyError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("expected validation problems, got {e}"),
        Ok(_) => panic!("expected {text} to be invalid"),
    }
}

const GOOD: &str = "
name: lab1
subnets:
  - {name: sub1, cidr: 10.10.10.0/24, gateway: 10.10.10.1}
  - {name: sub2, cidr: 10.10.20.0/24, gateway: 10.10.20.1, mtu: 9000}
nodes:
  - {name: n1, subnet: sub1, address: 10.10.10.10}
  - name: n2
    subnet: sub2
    address: 10.10.20.10
    mtu: 1400
    env: {IP_AUTODETECTION_METHOD: interface=eth2, AS: '64512'}
    interfaces: [{subnet: sub1, address: 10.10.10.11}]
routers:
  - {name: tor, kind: frr, as: 65001, interfaces: [{subnet: sub1, address: 10.10.10.254}]}
nodeEnv: {CALICO_NETWORKING_BACKEND: vxlan, AS: '64500'}
resources:
  - inline:
      apiVersion: projectcalico.org/v3
      kind: IPPool
      metadata: {name: p}
      spec: {cidr: 192.168.0.0/16, vxlanMode: Always}
  - inline: |
      apiVersion: projectcalico.org/v3
      kind: BGPConfiguration
      metadata: {name: default}
      spec: {asNumber: 64512}
pods:
  - {name: a, node: n1, labels: {app: x}}
  - {namespace: ns1, name: a, node: n2}
";

#[test]
fn a_full_topology_parses_with_defaults_and_overrides() {
    let t = parse(GOOD).expect("valid");
    assert_eq!(t.name, "lab1");
    assert_eq!(t.subnets[1].mtu, 9000);
    assert_eq!(t.subnets[0].mtu, 1500);
    let n2 = &t.nodes[1];
    assert_eq!(n2.primary().name, "eth1");
    assert_eq!(n2.primary().mtu, 1400);
    assert_eq!(n2.interfaces[1].name, "eth2");
    assert_eq!(
        n2.interfaces[1].mtu, 1500,
        "extra interfaces take their subnet's MTU"
    );
    assert_eq!(n2.env["AS"], "64512", "a node's env overrides nodeEnv");
    assert_eq!(n2.env["CALICO_NETWORKING_BACKEND"], "vxlan");
    assert_eq!(t.routers[0].kind, RouterKind::Frr);
    assert_eq!(t.routers[0].interfaces[0].name, "eth1");
    assert_eq!(t.resources.len(), 2);
    assert_eq!(t.pods[0].namespace, "default");
}

#[test]
fn a_node_in_an_unknown_subnet_is_named_by_index() {
    let text = GOOD.replace("{name: n1, subnet: sub1", "{name: n1, subnet: sub3");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|m| m.starts_with("nodes[0].subnet: no subnet named \"sub3\"")),
        "{p:?}"
    );
}

#[test]
fn every_bad_field_is_reported_with_its_path() {
    let text = "
name: Bad_Name
subnets:
  - {name: s, cidr: 10.0.0.1/24, gateway: 10.0.0.1}
nodes: []
";
    let p = problems(text);
    assert!(p.iter().any(|m| m.starts_with("name: ")), "{p:?}");
    assert!(
        p.iter().any(|m| m
            .contains("subnets[0].cidr: 10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?")),
        "{p:?}"
    );

    let text = "
name: x
subnets:
  - {name: s, cidr: 10.0.0.0/24, gateway: 10.0.1.1}
  - {name: s, cidr: 10.0.0.0/25, gateway: 10.0.0.2, mtu: 10}
nodes: [{name: n, subnet: s, address: 10.0.0.5}]
";
    let p = problems(text);
    for want in [
        "subnets[0].gateway: 10.0.1.1 is outside subnet",
        "subnets[1].name: subnet \"s\" is defined twice",
        "subnets[1].cidr: 10.0.0.0/25 overlaps subnet \"s\"",
        "subnets[1].mtu: 10 is out of range",
    ] {
        assert!(
            p.iter().any(|m| m.starts_with(want)),
            "missing {want:?} in {p:?}"
        );
    }
}

#[test]
fn node_router_and_pod_problems_name_their_fields() {
    let text = "
name: x
subnets: [{name: s, cidr: 10.0.0.0/24, gateway: 10.0.0.1}]
nodes:
  - {name: n, subnet: s, address: 10.0.0.1}
  - {name: n, subnet: s, address: 10.0.0.300}
  - {name: switch, subnet: s, address: 10.0.0.255}
  - name: m
    subnet: s
    address: 10.0.0.20
    interfaces: [{name: eth1, subnet: s, address: 10.0.0.20}]
routers:
  - {name: r, kind: bird, as: 0, interfaces: []}
pods:
  - {name: p, node: nowhere}
  - {name: p, node: n}
nodeEnv: {'A=B': x}
";
    let p = problems(text);
    for want in [
        "nodes[0].address: address 10.0.0.1 is already used by subnets[0].gateway",
        "nodes[1].name: \"n\" is already the name of nodes[0].name",
        "nodes[1].address: \"10.0.0.300\" is not an IPv4 address",
        "nodes[2].name: \"switch\" is reserved",
        "nodes[2].address: 10.0.0.255 is the network or broadcast address",
        "nodes[3].interfaces[0].name: \"eth1\" is used twice",
        "nodes[3].interfaces[0].address: address 10.0.0.20 is already used by nodes[3].address",
        "routers[0].as: 0 is not a valid AS number",
        "routers[0].interfaces: a router needs at least one interface",
        "pods[0].node: no node named \"nowhere\"",
        "pods[1]: pod default/p is defined twice",
        "nodeEnv.A=B: not a valid environment variable",
    ] {
        assert!(
            p.iter().any(|m| m.starts_with(want)),
            "missing {want:?} in {p:?}"
        );
    }
}

#[test]
fn unknown_fields_and_router_kinds_are_refused() {
    let text = GOOD.replace("nodeEnv:", "nodeEnvironment:");
    assert!(matches!(parse(&text), Err(TopologyError::Syntax { .. })));
    let text = GOOD.replace("kind: frr", "kind: quagga");
    let Err(TopologyError::Syntax { message, .. }) = parse(&text) else {
        panic!("quagga accepted")
    };
    assert!(message.contains("quagga"), "{message}");
}

#[test]
fn resources_are_parsed_at_load_time() {
    let text = GOOD.replace("vxlanMode: Always", "vxlanMode: Sometimes");
    let p = problems(&text);
    assert!(
        p.iter().any(|m| m.starts_with("resources[0].inline: ")),
        "{p:?}"
    );
    let text = GOOD.replace(
        "  - inline:\n      apiVersion",
        "  - file: no-such-file.yaml\n  - inline:\n      apiVersion",
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|m| m.starts_with("resources[0].file: cannot read")),
        "{p:?}"
    );
    let text = GOOD.replace(
        "  - inline:\n      apiVersion",
        "  - {}\n  - inline:\n      apiVersion",
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|m| m.starts_with("resources[0]: give exactly one")),
        "{p:?}"
    );
}

#[test]
fn the_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for f in [
        "seed000-crosssubnet.yaml",
        "seed001-vxlan.yaml",
        "seed003-vxlan.yaml",
    ] {
        let t = Topology::load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!t.resources.is_empty(), "{f} applies its pool");
    }
}

#[test]
fn the_datastore_is_embedded_or_an_etcd_on_a_subnet() {
    let t = parse(GOOD).expect("valid");
    assert_eq!(t.datastore, Datastore::Embedded);
    let etcd = format!("datastore: {{type: etcd, subnet: sub2, address: 10.10.20.2}}\n{GOOD}");
    let t = parse(&etcd).expect("valid");
    assert_eq!(
        t.datastore.etcd_endpoint().as_deref(),
        Some("http://10.10.20.2:2379")
    );
    for (ds, want) in [
        ("etcd", "datastore: etcd needs a place in the lab"),
        ("consul", "datastore: \"consul\" is not a datastore"),
        ("{type: etcd, subnet: sub2}", "datastore: etcd needs both"),
        (
            "{type: etcd, subnet: sub9, address: 10.10.20.2}",
            "datastore.subnet: no subnet named \"sub9\"",
        ),
        (
            "{type: etcd, subnet: sub1, address: 10.10.10.10}",
            "datastore.address: address 10.10.10.10 is already used by nodes[0].address",
        ),
    ] {
        let p = problems(&format!("datastore: {ds}\n{GOOD}"));
        assert!(
            p.iter().any(|m| m.starts_with(want)),
            "{ds}: missing {want:?} in {p:?}"
        );
    }
    let p = problems(&GOOD.replace("name: n1,", "name: etcd,"));
    assert!(
        p.iter()
            .any(|m| m.starts_with("nodes[0].name: \"etcd\" is reserved")),
        "{p:?}"
    );
}
