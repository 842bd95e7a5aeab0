//! Client tests against the byte-level fake: what goes on the wire and how replies map back.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use nix::errno::Errno;

use super::Netlink;
use super::types::{Route, RouteChange, VethEnd, VethSpec};
use crate::fake::RecordingTransport;
use crate::netns::NetNs;
use crate::rtnl::Rtnl;

fn client() -> Netlink<RecordingTransport> {
    Netlink::with_transport(RecordingTransport::default())
}

#[test]
fn veth_peer_carries_the_namespace_fd_and_host_side_does_not() {
    let ns = NetNs::current().expect("own namespace is always readable");
    let mut nl = client();
    let spec = VethSpec {
        host: VethEnd {
            name: "cali0123456789a".into(),
            mac: Some([0xee; 6]),
            mtu: Some(1440),
            up: false,
        },
        peer: VethEnd {
            name: "eth0".into(),
            mac: None,
            mtu: Some(1440),
            up: false,
        },
        peer_netns: Some(&ns),
    };
    nl.create_veth(&spec).expect("fake acks");
    let sent = nl.transport().sent_messages();
    assert_eq!(sent.len(), 1, "one request, no create-then-move");
    assert_eq!(
        sent[0].header.flags,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    );
    let netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) =
        &sent[0].payload
    else {
        panic!("expected RTM_NEWLINK, got {:?}", sent[0].payload);
    };
    assert!(
        link.attributes
            .contains(&LinkAttribute::IfName("cali0123456789a".into()))
    );
    assert!(
        link.attributes
            .contains(&LinkAttribute::Address(vec![0xee; 6]))
    );
    assert!(
        !link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::NetNsFd(_)))
    );
    let peer = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("veth peer info");
    assert!(
        peer.attributes
            .contains(&LinkAttribute::IfName("eth0".into()))
    );
    assert!(
        peer.attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::NetNsFd(_)))
    );
}

#[test]
fn batch_errors_map_to_their_index_and_only_the_last_message_asks_for_an_ack() {
    let mut nl = client();
    nl.transport_mut().errors.insert(1, Errno::EEXIST);
    let changes: Vec<RouteChange> = ["10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"]
        .iter()
        .map(|d| RouteChange::Add(Route::blackhole(d.parse().expect("literal")).with_protocol(80)))
        .collect();
    let failures = nl.apply_routes(&changes).expect("socket ok");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 1);
    let text = failures[0].error.to_string();
    assert_eq!(
        text,
        "add route blackhole 10.0.0.2/32 proto 80: EEXIST: File exists"
    );
    assert_eq!(nl.transport().sent.len(), 1, "one sendmsg for the batch");
    let acks: Vec<bool> = nl
        .transport()
        .sent_messages()
        .iter()
        .map(|m| m.header.flags & NLM_F_ACK != 0)
        .collect();
    assert_eq!(acks, vec![false, false, true]);
}

#[test]
fn kernel_errors_name_the_object_and_errno() {
    let mut nl = client();
    nl.transport_mut().errors.insert(0, Errno::ENODEV);
    let err = nl
        .delete_link("cali0123456789a")
        .expect_err("scripted failure");
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "delete link cali0123456789a: ENODEV: No such device"
    );
}

#[test]
fn extended_ack_text_is_read_from_capped_errors() {
    // outer header (16) | errno (4) | echoed header (16) | TLV type 1 "bad gw\0"
    let mut raw = vec![0u8; 36];
    raw[20..24].copy_from_slice(&60u32.to_ne_bytes());
    let text = b"bad gw\0";
    raw.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
    raw.extend_from_slice(&1u16.to_ne_bytes());
    raw.extend_from_slice(text);
    let flags = netlink_packet_core::NLM_F_CAPPED | netlink_packet_core::NLM_F_ACK_TLVS;
    assert_eq!(
        super::extack_message(&raw, flags).as_deref(),
        Some("bad gw")
    );
    assert_eq!(super::extack_message(&raw, 0), None);
}

#[test]
fn interrupted_dumps_are_repeated() {
    use crate::netlink::types::{Family, RouteFilter};
    let route = Route::blackhole("10.0.0.0/26".parse().expect("literal")).with_protocol(80);
    let msg = super::messages::route(&route, false);
    let mut nl = client();
    nl.transport_mut().dump_replies = vec![RouteNetlinkMessage::NewRoute(msg)];
    nl.transport_mut().interrupt_dumps = 2;
    let listed = nl.routes(&RouteFilter::main(Family::V4)).expect("listing");
    assert_eq!(listed, vec![route]);
    assert_eq!(
        nl.transport().dumps,
        3,
        "two interrupted dumps, then a clean one"
    );
}

#[test]
fn recording_rtnl_models_state_and_scripted_failures() {
    use crate::fake::{Call, RecordingRtnl};
    use crate::netlink::types::{Address, Family, RouteFilter};
    let mut f = RecordingRtnl::new();
    let spec = VethSpec {
        host: VethEnd {
            name: "caliX".into(),
            up: true,
            ..Default::default()
        },
        peer: VethEnd {
            name: "eth0".into(),
            ..Default::default()
        },
        peer_netns: None,
    };
    f.create_veth(&spec).expect("create");
    let cali = f.link_by_name("caliX").expect("lookup").expect("exists");
    assert!(
        f.link_by_name("eth0").expect("lookup").is_some(),
        "peer stays here without netns"
    );
    let r = Route::link("10.65.0.5/32".parse().expect("literal"), cali.index);
    f.add_route(&r).expect("add");
    assert!(f.add_route(&r).expect_err("dup").is_exists());
    f.add_address(&Address::new(
        cali.index,
        "10.65.0.1/32".parse().expect("literal"),
    ))
    .expect("addr");
    assert_eq!(
        f.addresses(Family::V4, Some(cali.index))
            .expect("list")
            .len(),
        1
    );
    f.fail_when(
        |c| matches!(c, Call::DeleteLink(n) if n == "caliX"),
        Errno::EBUSY,
    );
    let err = f.delete_link("caliX").expect_err("scripted");
    assert_eq!(err.errno(), Some(Errno::EBUSY));
    assert_eq!(
        f.routes(&RouteFilter::main(Family::V4)).expect("list"),
        vec![r.clone()]
    );
    assert!(
        matches!(f.calls.last(), Some(Call::DeleteLink(_))),
        "failed calls are recorded"
    );
    let mut other = RecordingRtnl::new();
    assert!(
        other
            .delete_link("nope")
            .expect_err("missing")
            .is_not_found()
    );
    assert!(other.delete_route(&r).expect_err("missing").is_not_found());
}

#[test]
fn sysctl_keys_are_path_components() {
    use crate::sysctl::{ProcSys, Sysctl, SysctlKey};
    let key = SysctlKey::ipv4_conf("vxlan.calico", "rp_filter").expect("valid");
    assert_eq!(key.to_string(), "net/ipv4/conf/vxlan.calico/rp_filter");
    assert_eq!(
        SysctlKey::parse("/net/ipv4/ip_forward/")
            .expect("valid")
            .components()
            .len(),
        3
    );
    assert!(SysctlKey::ipv4_conf("../../etc", "x").is_err());
    assert!(SysctlKey::ipv4_conf("a/b", "x").is_err());
    assert!(SysctlKey::parse("net//ipv4").is_err());
    let dir = std::env::temp_dir().join(format!("calico-sysctl-{}", std::process::id()));
    let leaf = dir.join("net/ipv4/conf/vxlan.calico");
    std::fs::create_dir_all(&leaf).expect("mkdir");
    let mut sys = ProcSys::with_root(&dir);
    sys.set(&key, "2").expect("write");
    assert_eq!(sys.get(&key).expect("read"), "2");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
