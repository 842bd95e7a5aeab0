use super::*;
use std::collections::BTreeSet;

fn pool(name: &str, cidr: &str) -> IPPool {
    let mut p = IPPool::new(name);
    p.spec.cidr = cidr.into();
    p
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn req<'a>(requested: &'a [String], node_labels: &'a BTreeMap<String, String>) -> PoolRequest<'a> {
    PoolRequest {
        v6: false,
        usage: AllowedUse::Workload,
        requested,
        node_labels,
        node: "n1",
        namespace_labels: None,
    }
}

#[test]
fn automatic_selection_applies_every_rule() {
    let mut disabled = pool("disabled", "10.1.0.0/16");
    disabled.spec.disabled = Some(true);
    let mut manual = pool("manual", "10.2.0.0/16");
    manual.spec.assignment_mode = Some(AssignmentMode::Manual);
    let mut rack = pool("rack", "10.3.0.0/16");
    rack.spec.node_selector = Some("rack == 'a'".into());
    let mut tunnel = pool("tunnel-only", "10.4.0.0/16");
    tunnel.spec.allowed_uses = Some(vec![AllowedUse::Tunnel]);
    let mut ns = pool("ns", "10.5.0.0/16");
    ns.spec.namespace_selector = Some("team == 'x'".into());
    let all = vec![
        pool("v6", "fd00::/64"),
        disabled,
        manual,
        rack,
        tunnel,
        ns,
        pool("default", "10.0.0.0/16"),
    ];
    let none = labels(&[]);
    let got: Vec<String> = select_pools(&all, &req(&[], &none))
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(got, ["default"]);

    let rack_a = labels(&[("rack", "a")]);
    let team = labels(&[("team", "x")]);
    let mut r = req(&[], &rack_a);
    r.namespace_labels = Some(&team);
    let got: BTreeSet<String> = select_pools(&all, &r)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        got,
        ["default", "ns", "rack"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );

    let mut t = req(&[], &none);
    t.usage = AllowedUse::Tunnel;
    let got: BTreeSet<String> = select_pools(&all, &t)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(got.contains("tunnel-only") && got.contains("default"));

    let mut v6 = req(&[], &none);
    v6.v6 = true;
    let got = select_pools(&all, &v6).unwrap();
    assert_eq!(got[0].block_size, 122);
}

#[test]
fn requested_pools_are_used_as_given_but_checked() {
    let mut rack = pool("rack", "10.3.0.0/16");
    rack.spec.node_selector = Some("rack == 'a'".into());
    let mut disabled = pool("off", "10.9.0.0/16");
    disabled.spec.disabled = Some(true);
    let all = vec![rack, disabled, pool("v6", "fd00::/64")];
    let none = labels(&[]);
    let by_cidr = vec!["10.3.0.0/16".to_string()];
    assert_eq!(
        select_pools(&all, &req(&by_cidr, &none)).unwrap()[0].name,
        "rack"
    );
    let by_name = vec!["rack".to_string()];
    assert_eq!(
        select_pools(&all, &req(&by_name, &none)).unwrap()[0].name,
        "rack"
    );
    let off = vec!["off".to_string()];
    assert!(matches!(
        select_pools(&all, &req(&off, &none)),
        Err(PoolError::RequestedDisabled(_))
    ));
    let missing = vec!["nope".to_string()];
    let err = select_pools(&all, &req(&missing, &none)).unwrap_err();
    assert!(err.to_string().contains("calicoctl get ippools"), "{err}");
    let v6 = vec!["v6".to_string()];
    assert!(matches!(
        select_pools(&all, &req(&v6, &none)),
        Err(PoolError::RequestedWrongFamily { .. })
    ));
}

#[test]
fn no_pool_error_names_the_reasons() {
    let mut rack = pool("rack", "10.3.0.0/16");
    rack.spec.node_selector = Some("rack == 'a'".into());
    let none = labels(&[]);
    let err = select_pools(&[rack], &req(&[], &none))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rack: nodeSelector") && err.contains("create an IPPool"),
        "{err}"
    );
}

#[test]
fn fnv32_matches_go() {
    // Values of Go's hash/fnv New32 (FNV-1).
    assert_eq!(fnv32(b""), 0x811c_9dc5);
    assert_eq!(fnv32(b"a"), 0x050c_5d7e);
    assert_eq!(fnv32(b"foobar"), 0x31f0_b262);
}

#[test]
fn walk_visits_every_block_once_from_a_host_seeded_start() {
    let p = Pool {
        name: "p".into(),
        cidr: "10.0.0.0/22".parse().unwrap(),
        block_size: 27,
    };
    assert_eq!(p.block_count(), 32);
    let seed = walk_seed(&p, "node-1", 99);
    let walk: Vec<IpNet> = block_walk(&p, seed).collect();
    assert_eq!(walk.len(), 32);
    let set: BTreeSet<IpNet> = walk.iter().copied().collect();
    assert_eq!(set.len(), 32);
    assert!(
        walk.iter()
            .all(|b| p.cidr.contains(b) && b.prefix_len() == 27)
    );
    // Linear wrap: each next block follows the previous one (mod the pool).
    for w in walk.windows(2) {
        let (a, b) = (w[0].network(), w[1].network());
        let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
            unreachable!()
        };
        let step = u32::from(b).wrapping_sub(u32::from(a));
        assert!(step == 32 || u32::from(b) == u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)));
    }
    // Same host, same order; different hosts usually start elsewhere.
    assert_eq!(
        walk,
        block_walk(&p, walk_seed(&p, "node-1", 5)).collect::<Vec<_>>()
    );
    let starts: BTreeSet<IpNet> = (0..8)
        .filter_map(|i| block_walk(&p, walk_seed(&p, &format!("node-{i}"), 0)).next())
        .collect();
    assert!(starts.len() > 3, "{starts:?}");
}

#[test]
fn huge_v6_pool_walk_is_lazy() {
    let p = Pool {
        name: "v6".into(),
        cidr: "fd00::/48".parse().unwrap(),
        block_size: 122,
    };
    let first: Vec<IpNet> = block_walk(&p, 1).take(3).collect();
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .all(|b| p.cidr.contains(b) && b.prefix_len() == 122)
    );
    assert_eq!(
        p.block_for("fd00::1:45".parse().unwrap()),
        Some("fd00::1:40/122".parse().unwrap())
    );
}

#[test]
fn reservations() {
    let r = Reservations::new(["10.0.0.0/30", "10.0.1.5", " bogus "]);
    assert!(r.contains("10.0.0.3".parse().unwrap()));
    assert!(r.contains("10.0.1.5".parse().unwrap()));
    assert!(!r.contains("10.0.1.6".parse().unwrap()));
    assert!(r.covers(&"10.0.0.0/31".parse().unwrap()));
    assert!(!r.covers(&"10.0.0.0/29".parse().unwrap()));
}
