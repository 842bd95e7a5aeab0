//! `wiring` over the dataplane's recording fakes (no root): the veth request (peer created in
//! the pod namespace, host MAC and MTU), the host sysctls per family, the order of steps, and
//! that a failing step is reported (the caller then unwires).

use calico_cni::wiring::{self, HOST_MAC, Wiring, host_link_local};
use calico_dataplane::fake::{Call, RecordingRtnl, RecordingSysctl};
use calico_dataplane::{NetNs, RouteKind, Scope};
use nix::errno::Errno;

fn wiring(ips: &[&str]) -> Wiring {
    Wiring {
        host_veth: "cali1234567890a".into(),
        pod_ifname: "eth0".into(),
        mtu: 1450,
        ips: ips.iter().map(|s| s.parse().expect("net")).collect(),
        allow_ip_forwarding: false,
    }
}

fn ns() -> NetNs {
    NetNs::current().expect("own namespace")
}

#[test]
fn veth_sysctls_up_pod_then_routes() {
    let mut rtnl = RecordingRtnl::new();
    let mut sys = RecordingSysctl::default();
    let w = wiring(&["10.65.0.5/32", "fd00:10::5/128"]);
    let pod_ns = ns();
    let mut pod_calls = 0;
    let wired = wiring::wire_with(&mut rtnl, &mut sys, &w, &pod_ns, &mut |_| {
        pod_calls += 1;
        Ok("0a:58:0a:41:00:05".into())
    })
    .expect("wired");
    assert_eq!(pod_calls, 1);
    assert_eq!(wired.pod_mac, "0a:58:0a:41:00:05");
    match &rtnl.calls[0] {
        Call::CreateVeth {
            host,
            peer,
            peer_netns,
        } => {
            assert_eq!(host.name, "cali1234567890a");
            assert_eq!(host.mac, Some(HOST_MAC));
            assert_eq!(host.mtu, Some(1450));
            assert!(!host.up, "host end comes up after its sysctls");
            assert_eq!(peer.name, "eth0");
            assert_eq!(peer.mtu, Some(1450));
            assert!(peer.up);
            assert_eq!(peer_netns.as_deref(), Some(pod_ns.path()));
        }
        other => panic!("first call {other:?}"),
    }
    assert!(matches!(&rtnl.calls[1], Call::SetLink { change, .. } if change.up == Some(true)));
    let routes: Vec<_> = rtnl
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::ReplaceRoute(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(routes.len(), 2);
    for r in &routes {
        assert_eq!(r.scope, Scope::Link);
        assert_eq!(r.kind, RouteKind::Unicast);
        assert!(r.gateway.is_none());
    }
    let writes: Vec<String> = sys.writes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for want in [
        "net/ipv4/conf/cali1234567890a/proxy_arp=1",
        "net/ipv4/neigh/cali1234567890a/proxy_delay=0",
        "net/ipv4/conf/cali1234567890a/forwarding=1",
        "net/ipv4/conf/cali1234567890a/route_localnet=1",
        "net/ipv6/conf/cali1234567890a/proxy_ndp=1",
        "net/ipv6/conf/cali1234567890a/accept_ra=0",
        "net/ipv6/conf/cali1234567890a/accept_dad=0",
    ] {
        assert!(writes.iter().any(|w| w == want), "{want} in {writes:?}");
    }
}

#[test]
fn ipv4_only_writes_no_ipv6_sysctls() {
    let mut rtnl = RecordingRtnl::new();
    let mut sys = RecordingSysctl::default();
    let w = wiring(&["10.65.0.5/32"]);
    wiring::wire_with(&mut rtnl, &mut sys, &w, &ns(), &mut |_| Ok(String::new())).expect("ok");
    assert!(sys.writes.iter().all(|(k, _)| k.starts_with("net/ipv4/")));
}

#[test]
fn a_failing_step_is_reported_with_its_object() {
    let mut rtnl = RecordingRtnl::new();
    rtnl.fail_when(|c| matches!(c, Call::ReplaceRoute(_)), Errno::ENETUNREACH);
    let mut sys = RecordingSysctl::default();
    let w = wiring(&["10.65.0.5/32"]);
    let err = wiring::wire_with(&mut rtnl, &mut sys, &w, &ns(), &mut |_| Ok(String::new()))
        .expect_err("route fails");
    assert!(err.msg.contains("host route 10.65.0.5/32"), "{err}");
    // A failing pod side stops before the host routes.
    let mut rtnl = RecordingRtnl::new();
    let err = wiring::wire_with(&mut rtnl, &mut sys, &w, &ns(), &mut |_| {
        Err(calico_cni::spec::CniError::plugin("pod side broke", ""))
    })
    .expect_err("pod fails");
    assert_eq!(err.msg, "pod side broke");
    assert!(
        !rtnl
            .calls
            .iter()
            .any(|c| matches!(c, Call::ReplaceRoute(_)))
    );
    // Undo: delete the host end; a missing one is fine.
    wiring::unwire_with(&mut rtnl, "cali1234567890a").expect("unwire");
    wiring::unwire_with(&mut rtnl, "cali1234567890a").expect("missing is fine");
}

#[test]
fn link_local_gateway_is_the_eui64_of_the_host_mac() {
    assert_eq!(host_link_local().to_string(), "fe80::ecee:eeff:feee:eeee");
}
