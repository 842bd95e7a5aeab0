//! Unit tests of the codec: shapes of input, error positions, printing and round trips.

use super::*;
use crate::resources::{AllowedUse, EncapMode, IPPool};
use proptest::prelude::*;

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.48.0.0/24
  ipipMode: Never
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: Always
";

fn pool(r: &Resource) -> &IPPool {
    match r {
        Resource::IPPool(p) => p,
        other => panic!("expected an IPPool, got {other:?}"),
    }
}

#[test]
fn one_yaml_document() {
    let rs = parse_documents(POOL).unwrap();
    assert_eq!(rs.len(), 1);
    let p = pool(&rs[0]);
    assert_eq!(p.spec.vxlan_mode, Some(EncapMode::Always));
    assert_eq!(p.spec.nat_outgoing, Some(true));
}

#[test]
fn multi_document_yaml_with_comments_and_empty_documents() {
    let text = format!(
        "# pools\n---\n{POOL}---\n\n---\n{}...\n",
        POOL.replace("default-ipv4-ippool", "second")
    );
    let rs = parse_documents(&text).unwrap();
    assert_eq!(
        rs.iter().map(Resource::name).collect::<Vec<_>>(),
        ["default-ipv4-ippool", "second"]
    );
}

#[test]
fn lists_of_both_forms_and_bare_sequences() {
    let list = "apiVersion: projectcalico.org/v3
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata:
    name: leaf1
  spec:
    asNumber: 65102
    peerIP: 192.168.100.1
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata:
    name: p
  spec:
    cidr: 10.0.0.0/16
metadata:
  resourceVersion: \"12\"
";
    let rs = parse_documents(list).unwrap();
    assert_eq!(
        rs.iter().map(Resource::kind).collect::<Vec<_>>(),
        [Kind::BGPPeer, Kind::IPPool]
    );

    let typed = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata:\n    name: a\n  spec:\n    cidr: 10.1.0.0/16\n";
    let rs = parse_documents(typed).unwrap();
    assert_eq!(rs[0].kind(), Kind::IPPool);
    assert_eq!(rs[0].name(), "a");

    let seq = format!("- {}", POOL.replace('\n', "\n  "));
    assert_eq!(parse_documents(&seq).unwrap().len(), 1);
    let empty = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems: null\n";
    assert!(parse_documents(empty).unwrap().is_empty());
}

#[test]
fn json_single_and_list() {
    let j = r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16","blockSize":24}}"#;
    let rs = parse_documents(j).unwrap();
    assert_eq!(pool(&rs[0]).spec.block_size, Some(24));
    let l =
        format!(r#"{{"apiVersion":"projectcalico.org/v3","kind":"IPPoolList","items":[{j},{j}]}}"#);
    assert_eq!(parse_documents(&l).unwrap().len(), 2);
}

#[test]
fn unknown_fields_are_refused_with_line_and_column() {
    let text = format!("{POOL}  blockSiz: 26\n");
    match parse_documents(&text).unwrap_err() {
        CodecError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!((line, column), (11, 3));
            assert!(message.contains("unknown field `blockSiz`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The line is counted from the start of the file, also in a later document.
    let text = format!("{POOL}---\n{}", POOL.replace("natOutgoing", "natOutgoin"));
    match parse_documents(&text).unwrap_err() {
        CodecError::Syntax { line, .. } => assert_eq!(line, 19),
        other => panic!("{other:?}"),
    }
    // Inside a list item.
    let text = "apiVersion: projectcalico.org/v3\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata:\n    name: a\n  spec:\n    cidr: 10.1.0.0/16\n    colour: red\n";
    match parse_documents(text).unwrap_err() {
        CodecError::Syntax { line, column, .. } => assert_eq!((line, column), (10, 5)),
        other => panic!("{other:?}"),
    }
    let j = "{\"apiVersion\":\"projectcalico.org/v3\",\"kind\":\"IPPool\",\n\"metadata\":{\"name\":\"p\"},\"spec\":{\"cidr\":\"10.0.0.0/16\",\"bogus\":1}}";
    match parse_documents(j).unwrap_err() {
        CodecError::Syntax { line, message, .. } => {
            assert_eq!(line, 2);
            assert!(message.contains("bogus"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_values_are_refused_with_positions() {
    let text = POOL.replace("vxlanMode: Always", "vxlanMode: always");
    let e = parse_documents(&text).unwrap_err();
    assert!(matches!(e, CodecError::Syntax { line: 10, .. }), "{e}");
    assert!(e.to_string().contains("CrossSubnet"), "{e}");
}

#[test]
fn unknown_kind_and_wrong_api_version_are_named() {
    let e = parse_documents(&POOL.replace("kind: IPPool", "kind: IPPol")).unwrap_err();
    assert!(e.to_string().contains("unknown kind \"IPPol\""), "{e}");
    let e = parse_documents(&POOL.replace("kind: IPPool", "kind: ippool")).unwrap_err();
    assert!(e.to_string().contains("did you mean IPPool?"), "{e}");
    let e = parse_documents(&POOL.replace("projectcalico.org/v3", "crd.projectcalico.org/v1"))
        .unwrap_err();
    assert!(e.to_string().contains("crd.projectcalico.org/v1"), "{e}");
    assert!(
        e.to_string()
            .contains("use apiVersion: projectcalico.org/v3"),
        "{e}"
    );
    let e = parse_documents(&format!("{POOL}---\nkind: Service\napiVersion: v1\n")).unwrap_err();
    assert_eq!(
        e,
        CodecError::Document {
            document: 2,
            line: 12,
            item: None,
            message: e_msg(&e)
        }
    );
    let e = parse_documents("just a string\n").unwrap_err();
    assert!(matches!(e, CodecError::Document { .. }), "{e}");
    let e = parse_documents("apiVersion: projectcalico.org/v3\nmetadata: {name: x}\n").unwrap_err();
    assert!(e.to_string().contains("kind is missing"), "{e}");
}

fn e_msg(e: &CodecError) -> String {
    match e {
        CodecError::Document { message, .. } => message.clone(),
        CodecError::Syntax { message, .. } => message.clone(),
    }
}

#[test]
fn malformed_yaml_is_a_syntax_error() {
    let e = parse_documents("apiVersion: [\n").unwrap_err();
    assert!(matches!(e, CodecError::Syntax { .. }), "{e}");
}

#[test]
fn printing_matches_upstream_shape() {
    let mut p = IPPool::new("default-ipv4-ippool");
    p.spec.cidr = "10.48.0.0/24".into();
    let mut r = Resource::from(p);
    r.apply_defaults();
    r.metadata_mut().resource_version = Some("1722".into());
    r.metadata_mut().creation_timestamp = Some("2022-12-29T22:21:11Z".into());
    let y = to_yaml(std::slice::from_ref(&r));
    assert_eq!(
        y,
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  creationTimestamp: \"2022-12-29T22:21:11Z\"
  name: default-ipv4-ippool
  resourceVersion: \"1722\"
spec:
  allowedUses:
  - Workload
  - Tunnel
  assignmentMode: Automatic
  blockSize: 26
  cidr: 10.48.0.0/24
  ipipMode: Never
  nodeSelector: all()
  vxlanMode: Never
"
    );
    let two = [r.clone(), r.clone()];
    let l = to_yaml(&two);
    assert!(
        l.starts_with("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion"),
        "{l}"
    );
    assert!(l.contains("\nkind: IPPoolList\nmetadata: {}\n"), "{l}");
    let listed = list_to_yaml(Some(Kind::IPPool), std::slice::from_ref(&r), Some("99"));
    assert!(
        listed.contains("kind: IPPoolList\nmetadata:\n  resourceVersion: \"99\"\n"),
        "{listed}"
    );
    assert_eq!(parse_documents(&listed).unwrap(), vec![r.clone()]);
    let mixed = [r.clone(), Resource::from(crate::resources::Tier::new("t"))];
    assert!(to_yaml(&mixed).contains("\nkind: List\n"));
    let j = to_json(std::slice::from_ref(&r));
    assert!(
        j.starts_with("{\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"kind\": \"IPPool\""),
        "{j}"
    );
    assert_eq!(parse_documents(&j).unwrap(), vec![r.clone()]);
    assert_eq!(
        parse_documents(&list_to_json(None, &mixed, None)).unwrap(),
        mixed.to_vec()
    );
}

#[test]
fn policy_order_prints_as_an_integer_and_reads_back() {
    let mut p = crate::resources::GlobalNetworkPolicy::new("g");
    p.spec.order = Some(100.0);
    let y = to_yaml(&[Resource::from(p.clone())]);
    assert!(y.contains("order: 100\n"), "{y}");
    assert_eq!(parse_documents(&y).unwrap(), vec![Resource::from(p)]);
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("yes".to_string()),
        Just("null".to_string()),
        Just("1722".to_string()),
        Just("0x1F".to_string()),
        Just("- a".to_string()),
        Just("a: b".to_string()),
        Just("#c".to_string()),
        Just("".to_string()),
        Just("2022-12-29T22:21:11Z".to_string()),
        "[ -~]{0,20}",
        "\\PC{0,12}",
    ]
}

fn arb_pool() -> impl Strategy<Value = Resource> {
    (
        "[a-z][a-z0-9-]{0,20}",
        proptest::option::of(tricky_string()),
        proptest::collection::btree_map("[a-z]{1,8}", tricky_string(), 0..3),
        (any::<[u8; 2]>(), 16u8..=28),
        proptest::option::of(20u8..=32),
        proptest::option::of(prop_oneof![
            Just(EncapMode::Never),
            Just(EncapMode::Always),
            Just(EncapMode::CrossSubnet)
        ]),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                Just(AllowedUse::Workload),
                Just(AllowedUse::Tunnel),
                Just(AllowedUse::LoadBalancer)
            ],
            0..3,
        )),
        proptest::option::of(tricky_string()),
    )
        .prop_map(|(name, rv, ann, (net, prefix), bs, mode, nat, uses, sel)| {
            let mut p = IPPool::new(name);
            p.metadata.resource_version = rv;
            if !ann.is_empty() {
                p.metadata.annotations = Some(ann);
            }
            p.spec.cidr = format!("10.{}.{}.0/{prefix}", net[0], net[1]);
            p.spec.block_size = bs;
            p.spec.vxlan_mode = mode;
            p.spec.nat_outgoing = nat;
            p.spec.allowed_uses = uses;
            p.spec.node_selector = sel;
            Resource::from(p)
        })
}

fn arb_rule() -> impl Strategy<Value = crate::resources::Rule> {
    use crate::resources::{Action, Port, Protocol, Rule};
    let port = prop_oneof![
        (1u16..).prop_map(Port::single),
        (1u16..1000, 0u16..1000).prop_map(|(a, d)| Port::Range { min: a, max: a + d }),
        "[a-z]{1,10}".prop_map(Port::Named),
    ];
    (
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::Log),
            Just(Action::Pass)
        ],
        proptest::option::of(prop_oneof![
            "(TCP|UDP|ICMP|SCTP)".prop_map(Protocol::Name),
            any::<u8>().prop_map(Protocol::Number)
        ]),
        proptest::collection::vec(port, 0..3),
        tricky_string(),
    )
        .prop_map(|(action, protocol, ports, sel)| {
            let mut r = Rule::new(action);
            r.protocol = protocol;
            r.destination.ports = ports;
            r.source.selector = sel;
            r
        })
}

fn arb_policy() -> impl Strategy<Value = Resource> {
    use crate::resources::GlobalNetworkPolicy;
    (
        "[a-z]{1,10}",
        proptest::option::of(-1.0e6f64..1.0e6),
        proptest::collection::vec(arb_rule(), 0..3),
        proptest::collection::vec(arb_rule(), 0..2),
    )
        .prop_map(|(name, order, ingress, egress)| {
            let mut g = GlobalNetworkPolicy::new(name);
            g.spec.order = order;
            g.spec.ingress = ingress;
            g.spec.egress = egress;
            Resource::from(g)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn printed_resources_parse_back_equal(rs in proptest::collection::vec(prop_oneof![arb_pool(), arb_policy()], 1..4)) {
        let y = to_yaml(&rs);
        let back = parse_documents(&y);
        prop_assert!(back.is_ok(), "{:?}\n{}", back, y);
        prop_assert_eq!(back.unwrap_or_default(), rs.clone());
        let j = to_json(&rs);
        let back = parse_documents(&j);
        prop_assert!(back.is_ok(), "{:?}\n{}", back, j);
        prop_assert_eq!(back.unwrap_or_default(), rs);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse_documents(&s);
    }
}
