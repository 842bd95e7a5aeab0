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
