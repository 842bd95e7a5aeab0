//! Every autodetection method on a real namespace with several interfaces, read through our
//! netlink client. Needs root (fails loudly otherwise). No packet leaves the namespace:
//! can-reach only connects a UDP socket.

use anyhow::{Result, anyhow};
use calico_dataplane::Netlink;
use calico_dataplane::testns::TestNetns;
use calico_node::autodetect::{self, Family, Iface, Method};

/// Interfaces: eth0 + veth-a, eth1 + ens7, dummy0 + eth9 (down), docker0, each with an IPv4 and
/// an IPv6 address (added `nodad` so none stays tentative; the kernel adds fe80:: link-locals
/// itself) and a default route of each family out of eth0. Upstream walks the kernel's order in
/// reverse.
fn node_namespace() -> TestNetns {
    let ns = TestNetns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "veth-a",
    ]);
    ns.ip(&[
        "link", "add", "eth1", "type", "veth", "peer", "name", "ens7",
    ]);
    // No dummy module on every kernel: a veth pair stands in for dummy0 and the down eth9.
    ns.ip(&[
        "link", "add", "dummy0", "type", "veth", "peer", "name", "eth9",
    ]);
    ns.ip(&["link", "add", "docker0", "type", "bridge"]);
    for (dev, addr, addr6) in [
        ("eth0", "10.10.0.2/24", "2001:db8:10::2/64"),
        ("veth-a", "10.10.9.1/24", "2001:db8:19::1/64"),
        ("eth1", "192.168.50.3/24", "2001:db8:50::3/64"),
        ("ens7", "172.20.0.5/16", "fd00:20::5/64"),
        ("dummy0", "10.99.0.1/24", "2001:db8:99::1/64"),
        ("docker0", "172.17.0.1/16", "fd00:17::1/64"),
        ("eth9", "10.55.0.1/24", "2001:db8:55::1/64"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["-6", "addr", "add", addr6, "dev", dev, "nodad"]);
        if dev != "eth9" {
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
    ns.ip(&["route", "add", "default", "via", "10.10.0.1", "dev", "eth0"]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:10::1",
        "dev",
        "eth0",
    ]);
    ns
}

fn interfaces(ns: &TestNetns) -> Result<Vec<Iface>> {
    let mut nl = Netlink::open_in(&ns.open())?;
    Ok(autodetect::read_interfaces(&mut nl)?)
}

fn run(ns: &TestNetns, ifaces: &[Iface], method: &str) -> Result<String> {
    run_family(ns, ifaces, Family::V4, method)
}

fn run6(ns: &TestNetns, ifaces: &[Iface], method: &str) -> Result<String> {
    run_family(ns, ifaces, Family::V6, method)
}

fn run_family(ns: &TestNetns, ifaces: &[Iface], family: Family, method: &str) -> Result<String> {
    let m = Method::parse(method).map_err(|e| anyhow!("{method}: {e}"))?;
    let source = match &m {
        Method::CanReach(dest) => {
            let dest = dest.clone();
            Some(
                ns.open()
                    .run(move || autodetect::reach_source(family, &dest))??,
            )
        }
        _ => None,
    };
    let d = autodetect::detect(family, &m, ifaces, source)?;
    Ok(format!("{} {}", d.iface, d.cidr))
}

#[test]
fn every_method_on_a_node_with_several_interfaces() -> Result<()> {
    let ns = node_namespace();
    let ifaces = interfaces(&ns)?;
    // The kernel creates a veth's peer first.
    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lo", "veth-a", "eth0", "ens7", "eth1", "eth9", "dummy0", "docker0"
        ]
    );
    let eth9 = ifaces.iter().find(|i| i.name == "eth9");
    assert_eq!(eth9.map(|i| i.up), Some(false));

    // first-found walks backwards: docker0/dummy0 excluded, eth9 down, so eth1.
    assert_eq!(run(&ns, &ifaces, "first-found")?, "eth1 192.168.50.3/24");
    assert_eq!(
        run(&ns, &ifaces, "interface=eth.*")?,
        "eth1 192.168.50.3/24"
    );
    assert_eq!(run(&ns, &ifaces, "interface=eth0")?, "eth0 10.10.0.2/24");
    assert_eq!(
        run(&ns, &ifaces, "interface=docker0")?,
        "docker0 172.17.0.1/16"
    );
    assert_eq!(
        run(&ns, &ifaces, "skip-interface=eth1")?,
        "ens7 172.20.0.5/16"
    );
    // veth-a stays excluded by the default list.
    assert_eq!(
        run(&ns, &ifaces, "skip-interface=ens7, eth1")?,
        "eth0 10.10.0.2/24"
    );
    assert_eq!(run(&ns, &ifaces, "cidr=10.10.0.0/16")?, "eth0 10.10.0.2/24");
    assert_eq!(
        run(&ns, &ifaces, "cidr=192.168.0.0/16")?,
        "eth1 192.168.50.3/24"
    );
    // cidr= has no default exclusions (upstream): the reverse walk reaches dummy0 first.
    assert_eq!(
        run(&ns, &ifaces, "cidr=192.168.0.0/16,10.0.0.0/8")?,
        "dummy0 10.99.0.1/24"
    );
    // can-reach: the kernel's source address; the default route goes out of eth0.
    assert_eq!(run(&ns, &ifaces, "can-reach=8.8.8.8")?, "eth0 10.10.0.2/24");
    assert_eq!(
        run(&ns, &ifaces, "can-reach=192.168.50.77")?,
        "eth1 192.168.50.3/24"
    );
    // Like upstream, can-reach trusts the route even onto an otherwise excluded interface.
    assert_eq!(
        run(&ns, &ifaces, "can-reach=10.10.9.200")?,
        "veth-a 10.10.9.1/24"
    );

    // Failures say why.
    let err = run(&ns, &ifaces, "interface=eth9")
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("no usable interface")),
        "{err:?}"
    );
    let err = run(&ns, &ifaces, "cidr=203.0.113.0/24")
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("no global unicast")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn every_ipv6_method_on_the_same_node() -> Result<()> {
    let ns = node_namespace();
    let ifaces = interfaces(&ns)?;
    // Netlink reports the IPv6 addresses too, link-local ones included (they must be skipped).
    let eth1: Vec<String> = ifaces
        .iter()
        .filter(|i| i.name == "eth1")
        .flat_map(|i| i.addrs.iter().map(|a| a.to_string()))
        .collect();
    assert!(eth1.iter().any(|a| a == "2001:db8:50::3/64"), "{eth1:?}");
    assert!(eth1.iter().any(|a| a.starts_with("fe80:")), "{eth1:?}");

    for (method, want) in [
        ("first-found", "eth1 2001:db8:50::3/64"),
        ("interface=eth0", "eth0 2001:db8:10::2/64"),
        ("interface=docker0", "docker0 fd00:17::1/64"),
        ("skip-interface=eth1", "ens7 fd00:20::5/64"),
        ("skip-interface=ens7,eth1", "eth0 2001:db8:10::2/64"),
        // cidr= has no default exclusions: dummy0 comes before eth1 in the reverse walk.
        ("cidr=2001:db8::/32", "dummy0 2001:db8:99::1/64"),
        ("cidr=2001:db8:50::/48", "eth1 2001:db8:50::3/64"),
        ("can-reach=2001:4860:4860::8888", "eth0 2001:db8:10::2/64"),
        ("can-reach=2001:db8:50::77", "eth1 2001:db8:50::3/64"),
    ] {
        assert_eq!(run6(&ns, &ifaces, method)?, want, "{method}");
    }
    // lo has only ::1; eth9 is down.
    for (method, why) in [
        ("interface=^lo$", "no global unicast IPv6"),
        ("interface=eth9", "no usable interface"),
        ("cidr=10.0.0.0/8", "no global unicast IPv6"),
    ] {
        let err = run6(&ns, &ifaces, method).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(why)),
            "{method}: {err:?}"
        );
    }
    // The IPv4 answers are unchanged by the IPv6 addresses.
    assert_eq!(run(&ns, &ifaces, "first-found")?, "eth1 192.168.50.3/24");
    Ok(())
}

#[test]
fn can_reach_without_a_route_fails_with_the_destination_named() -> Result<()> {
    let ns = TestNetns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    let r = ns
        .open()
        .run(|| autodetect::reach_source(Family::V4, "198.51.100.1"))?;
    let err = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("can-reach=198.51.100.1") && err.contains("no route"),
        "{err}"
    );
    Ok(())
}
