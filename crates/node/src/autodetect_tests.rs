//! Pure selection tests: one host with the usual mix of interfaces.

use super::*;

fn iface(index: u32, name: &str, up: bool, addrs: &[&str]) -> Iface {
    Iface {
        index,
        name: name.into(),
        up,
        mtu: Some(1500),
        addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
    }
}

/// Kernel order: lo, eth0, eth1, docker0, cali…, vxlan.calico, ens5 (down), eth2 (link-local only,
/// in both families). Every interface also carries IPv6 addresses, link-local ones listed first
/// as the kernel does for an address added later.
fn host() -> Vec<Iface> {
    vec![
        iface(1, "lo", true, &["127.0.0.1/8", "::1/128"]),
        iface(
            2,
            "eth0",
            true,
            &["10.0.0.5/24", "fe80::5/64", "2001:db8:0:1::5/64"],
        ),
        iface(
            3,
            "eth1",
            true,
            &[
                "172.16.1.9/16",
                "172.16.2.9/16",
                "fe80::9/64",
                "2001:db8:0:2::9/64",
                "fd00:2::9/64",
            ],
        ),
        iface(4, "docker0", true, &["172.17.0.1/16", "fd00:17::1/64"]),
        iface(
            5,
            "cali1234567890a",
            true,
            &["169.254.1.1/32", "fe80::ecee:eeff:feee:eeee/64"],
        ),
        iface(6, "vxlan.calico", true, &["192.168.7.0/32", "fd00:7::/128"]),
        iface(7, "ens5", false, &["10.9.9.9/24", "2001:db8:9::9/64"]),
        iface(8, "eth2", true, &["169.254.3.3/16", "fe80::3/64"]),
    ]
}

fn pick(method: &str) -> Result<Detected, DetectError> {
    pick_family(Family::V4, method)
}

fn pick6(method: &str) -> Result<Detected, DetectError> {
    pick_family(Family::V6, method)
}

fn pick_family(family: Family, method: &str) -> Result<Detected, DetectError> {
    let m = Method::parse(method).map_err(DetectError::Invalid)?;
    detect(family, &m, &host(), None)
}

fn cidr(d: Result<Detected, DetectError>) -> String {
    match d {
        Ok(d) => format!("{} {}", d.iface, d.cidr),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn first_found_walks_interfaces_in_reverse_and_skips_excluded_down_and_link_local() {
    // eth2 (only link-local) is skipped, ens5 is down, vxlan.calico/cali/docker excluded: eth1.
    assert_eq!(cidr(pick("first-found")), "eth1 172.16.1.9/16");
    assert_eq!(cidr(pick("")), "eth1 172.16.1.9/16");
}

#[test]
fn interface_regex_is_unanchored_and_has_no_default_exclusions() {
    assert_eq!(cidr(pick("interface=eth0")), "eth0 10.0.0.5/24");
    assert_eq!(cidr(pick("interface=th0")), "eth0 10.0.0.5/24");
    assert_eq!(cidr(pick("interface=docker.*")), "docker0 172.17.0.1/16");
    // Several patterns are alternatives; the reverse walk decides between them.
    assert_eq!(cidr(pick("interface=eth0, eth1")), "eth1 172.16.1.9/16");
    assert!(cidr(pick("interface=nothing.*")).contains("no usable interface"));
    assert!(cidr(pick("interface=ens5")).contains("no usable interface"));
    assert!(cidr(pick("interface=eth2")).contains("no global unicast"));
}

#[test]
fn skip_interface_adds_to_the_default_exclusions() {
    assert_eq!(cidr(pick("skip-interface=eth1")), "eth0 10.0.0.5/24");
    assert_eq!(cidr(pick("skip-interface=eth[12],foo")), "eth0 10.0.0.5/24");
    assert!(cidr(pick("skip-interface=eth.*")).contains("no usable interface"));
}

#[test]
fn cidr_picks_the_first_address_inside_any_range() {
    assert_eq!(cidr(pick("cidr=10.0.0.0/8")), "eth0 10.0.0.5/24");
    assert_eq!(cidr(pick("cidr=172.16.2.0/24")), "eth1 172.16.2.9/16");
    // cidr= has no default exclusions: docker0 qualifies.
    assert_eq!(cidr(pick("cidr=172.17.0.0/16")), "docker0 172.17.0.1/16");
    assert_eq!(
        cidr(pick("cidr=192.0.2.0/24, 10.0.0.0/30")),
        "error: IP autodetection (cidr=192.0.2.0/24,10.0.0.0/30): no global unicast IPv4 address on the candidate interfaces [\"eth2\", \"vxlan.calico\", \"cali1234567890a\", \"docker0\", \"eth1\", \"eth0\", \"lo\"]; set IP=ADDRESS/PREFIX or choose another IP_AUTODETECTION_METHOD"
    );
}

#[test]
fn can_reach_maps_the_source_address_to_its_interface() -> anyhow::Result<()> {
    let m = Method::parse("can-reach=8.8.8.8").map_err(anyhow::Error::msg)?;
    let d = detect(Family::V4, &m, &host(), Some("10.0.0.5".parse()?))?;
    assert_eq!(
        (d.iface.as_str(), d.cidr.to_string()),
        ("eth0", "10.0.0.5/24".into())
    );
    assert_eq!(
        detect(Family::V4, &m, &host(), Some("10.1.1.1".parse()?)),
        Err(DetectError::ReachMismatch {
            dest: "8.8.8.8".into(),
            source_ip: "10.1.1.1".parse()?
        })
    );
    Ok(())
}

#[test]
fn ipv6_first_found_skips_link_local_loopback_excluded_and_down() {
    // eth2 has only fe80::, ens5 is down, vxlan.calico/cali/docker0 are excluded; eth1's
    // fe80::9 comes first but is link-local.
    assert_eq!(cidr(pick6("first-found")), "eth1 2001:db8:0:2::9/64");
    assert_eq!(cidr(pick6("")), "eth1 2001:db8:0:2::9/64");
}

#[test]
fn ipv6_interface_and_skip_interface() {
    assert_eq!(cidr(pick6("interface=eth0")), "eth0 2001:db8:0:1::5/64");
    assert_eq!(cidr(pick6("interface=docker.*")), "docker0 fd00:17::1/64");
    assert_eq!(
        cidr(pick6("interface=eth0,eth1")),
        "eth1 2001:db8:0:2::9/64"
    );
    assert!(cidr(pick6("interface=ens5")).contains("no usable interface"));
    // Only link-local (eth2, cali…) or loopback (lo): nothing global.
    for only_local in ["interface=eth2", "interface=^cali", "interface=^lo$"] {
        assert!(
            cidr(pick6(only_local)).contains("no global unicast IPv6 address"),
            "{only_local}"
        );
    }
    assert_eq!(
        cidr(pick6("skip-interface=eth1")),
        "eth0 2001:db8:0:1::5/64"
    );
    assert!(cidr(pick6("skip-interface=eth.*")).contains("no usable interface"));
}

#[test]
fn ipv6_cidr_matches_only_v6_ranges() {
    assert_eq!(cidr(pick6("cidr=2001:db8::/32")), "eth1 2001:db8:0:2::9/64");
    assert_eq!(
        cidr(pick6("cidr=2001:db8:0:1::/64")),
        "eth0 2001:db8:0:1::5/64"
    );
    assert_eq!(cidr(pick6("cidr=fd00:2::/32")), "eth1 fd00:2::9/64");
    // No default exclusions: the reverse walk reaches vxlan.calico's fd00:7:: first.
    assert_eq!(cidr(pick6("cidr=fd00::/8")), "vxlan.calico fd00:7::/128");
    // An IPv4 range never matches an IPv6 address, nor the reverse.
    assert_eq!(
        cidr(pick6("cidr=10.0.0.0/8")),
        "error: IP autodetection (cidr=10.0.0.0/8): no global unicast IPv6 address on the candidate interfaces [\"eth2\", \"vxlan.calico\", \"cali1234567890a\", \"docker0\", \"eth1\", \"eth0\", \"lo\"]; set IP6=ADDRESS/PREFIX or choose another IP6_AUTODETECTION_METHOD"
    );
    assert!(cidr(pick("cidr=2001:db8::/32")).contains("no global unicast IPv4 address"));
}

#[test]
fn ipv6_can_reach_maps_the_source_address_to_its_interface() -> anyhow::Result<()> {
    let m = Method::parse("can-reach=2001:4860:4860::8888").map_err(anyhow::Error::msg)?;
    let d = detect(Family::V6, &m, &host(), Some("2001:db8:0:1::5".parse()?))?;
    assert_eq!(
        (d.iface.as_str(), d.cidr.to_string()),
        ("eth0", "2001:db8:0:1::5/64".into())
    );
    assert!(matches!(
        detect(Family::V6, &m, &host(), Some("2001:db8:ffff::1".parse()?)),
        Err(DetectError::ReachMismatch { .. })
    ));
    Ok(())
}

#[test]
fn reach_source_rejects_a_destination_of_the_other_family() {
    for (family, dest) in [(Family::V4, "2001:db8::1"), (Family::V6, "192.0.2.1")] {
        let err = reach_source(family, dest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not an IPv"), "{dest}: {err}");
    }
}

#[test]
fn default_exclusions_cover_upstreams_names() {
    let exc: Vec<String> = DEFAULT_INTERFACES_TO_EXCLUDE
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names = [
        "docker0",
        "cbr0",
        "dummy0",
        "virbr0",
        "lxcbr0",
        "veth1234",
        "lo",
        "cali0",
        "tunl0",
        "flannel.1",
        "kube-ipvs0",
        "cni0",
        "vxlan.calico",
        "vxlan-v6.calico",
        "wireguard.cali",
        "wg-v6.cali",
        "nodelocaldns",
    ];
    let ifaces: Vec<Iface> = names
        .iter()
        .enumerate()
        .map(|(i, n)| iface(i as u32 + 1, n, true, &["10.0.0.1/24"]))
        .collect();
    let left = candidates(&ifaces, &[], &exc)
        .map(|c| c.len())
        .unwrap_or(usize::MAX);
    assert_eq!(left, 0);
    // `^lo` is unanchored at the end, as upstream's: `loopy0` is excluded too; `eth-lo` is not.
    let more = [iface(1, "loopy0", true, &[]), iface(2, "eth-lo", true, &[])];
    let names: Vec<String> = candidates(&more, &[], &exc)
        .map(|c| c.iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["eth-lo".to_string()]);
}

#[test]
fn parse_rejects_bad_methods() {
    for bad in [
        "interface=",
        "interface=(",
        "cidr=10.0.0.0/33",
        "can-reach=",
        "magic",
    ] {
        assert!(Method::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Method::parse("cidr=10.0.0.7/24"),
        Ok(Method::Cidr(vec![
            "10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!())
        ]))
    );
}
