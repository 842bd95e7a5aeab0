//! Environment → default pool settings: upstream's defaults per family, `none`,
//! `NO_DEFAULT_POOLS`, and every refused value naming its variable and the fix.

use std::collections::HashMap;

use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<DefaultPools, ConfigError> {
    let vars: HashMap<&str, &str> = pairs.iter().copied().collect();
    DefaultPools::from_vars(|k| vars.get(k).copied())
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn defaults_per_family_match_upstream() -> Result<(), ConfigError> {
    let p = parse(&[])?;
    assert_eq!(
        p.v4,
        Some(PoolSettings {
            family: Family::V4,
            cidr: PoolCidr::Given(net("192.168.0.0/16")),
            block_size: 26,
            vxlan: EncapMode::Never,
            ipip: EncapMode::Never,
            nat_outgoing: true,
            node_selector: None,
            disable_bgp_export: false,
        })
    );
    // IPv6: random ULA, /122 blocks, no NAT, never IPIP.
    assert_eq!(
        p.v6,
        Some(PoolSettings {
            family: Family::V6,
            cidr: PoolCidr::RandomUla,
            block_size: 122,
            vxlan: EncapMode::Never,
            ipip: EncapMode::Never,
            nat_outgoing: false,
            node_selector: None,
            disable_bgp_export: false,
        })
    );
    assert_eq!(
        p.get(Family::V6).map(PoolSettings::name),
        Some("default-ipv6-ippool")
    );
    Ok(())
}

#[test]
fn explicit_ipv6_values_parse() -> anyhow::Result<()> {
    let p = parse(&[
        // Host bits are dropped, as upstream's CIDR parser does.
        ("CALICO_IPV6POOL_CIDR", "fd00:10::1/48"),
        ("CALICO_IPV6POOL_BLOCK_SIZE", "120"),
        ("CALICO_IPV6POOL_VXLAN", "cross-subnet"),
        ("CALICO_IPV6POOL_NAT_OUTGOING", "true"),
        ("CALICO_IPV6POOL_NODE_SELECTOR", "has(ipv6)"),
        ("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", "y"),
        ("CALICO_IPV6POOL_IPIP", "Never"),
    ])?;
    let v6 = anyhow::Context::context(p.v6, "no IPv6 pool")?;
    assert_eq!(v6.cidr, PoolCidr::Given(net("fd00:10::/48")));
    assert_eq!(v6.block_size, 120);
    assert_eq!(v6.vxlan, EncapMode::CrossSubnet);
    assert!(v6.nat_outgoing && v6.disable_bgp_export);
    assert_eq!(v6.node_selector.as_deref(), Some("has(ipv6)"));
    let pool = v6.pool(net("fd00:10::/48"));
    assert_eq!(pool.metadata.name, "default-ipv6-ippool");
    assert_eq!(
        (
            pool.spec.cidr.as_str(),
            pool.spec.ipip(),
            pool.spec.disable_bgp_export
        ),
        ("fd00:10::/48", EncapMode::Never, Some(true))
    );
    // The IPv4 pool is untouched by the IPv6 variables.
    assert_eq!(p.v4.map(|v| v.vxlan), Some(EncapMode::Never));
    Ok(())
}

#[test]
fn none_skips_one_family_and_no_default_pools_both() -> Result<(), ConfigError> {
    let p = parse(&[("CALICO_IPV6POOL_CIDR", "none")])?;
    assert!(p.v4.is_some() && p.v6.is_none());
    let p = parse(&[("CALICO_IPV4POOL_CIDR", "none")])?;
    assert!(p.v4.is_none() && p.v6.is_some());
    let p = parse(&[("NO_DEFAULT_POOLS", "true")])?;
    assert_eq!(p, DefaultPools { v4: None, v6: None });
    // Only the CIDRs conflict with NO_DEFAULT_POOLS (upstream), other variables are ignored.
    let p = parse(&[
        ("NO_DEFAULT_POOLS", "true"),
        ("CALICO_IPV6POOL_BLOCK_SIZE", "999"),
    ])?;
    assert_eq!(p, DefaultPools { v4: None, v6: None });
    Ok(())
}

fn error(pairs: &[(&str, &str)]) -> String {
    match parse(pairs) {
        Ok(p) => panic!("{pairs:?} accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_values_name_the_variable_and_the_fix() {
    for (pairs, wants) in [
        (
            &[
                ("NO_DEFAULT_POOLS", "true"),
                ("CALICO_IPV6POOL_CIDR", "fd00::/48"),
            ][..],
            &["NO_DEFAULT_POOLS", "CALICO_IPV6POOL_CIDR", "unset"][..],
        ),
        (
            &[
                ("NO_DEFAULT_POOLS", "true"),
                ("CALICO_IPV4POOL_CIDR", "10.0.0.0/16"),
            ],
            &["NO_DEFAULT_POOLS", "CALICO_IPV4POOL_CIDR"],
        ),
        (
            &[("CALICO_IPV6POOL_CIDR", "fd00::zz/48")],
            &["CALICO_IPV6POOL_CIDR", "IPv6 CIDR"],
        ),
        (
            &[("CALICO_IPV6POOL_CIDR", "172.16.0.0/24")],
            &["CALICO_IPV6POOL_CIDR", "IPv6 CIDR"],
        ),
        (
            &[("CALICO_IPV4POOL_CIDR", "fd00::/48")],
            &["CALICO_IPV4POOL_CIDR", "IPv4 CIDR"],
        ),
        (
            &[("CALICO_IPV4POOL_CIDR", "172.16.0.0a/24")],
            &["CALICO_IPV4POOL_CIDR"],
        ),
        (
            &[("CALICO_IPV6POOL_BLOCK_SIZE", "115")],
            &["CALICO_IPV6POOL_BLOCK_SIZE", "116-128"],
        ),
        (
            &[("CALICO_IPV6POOL_BLOCK_SIZE", "129")],
            &["CALICO_IPV6POOL_BLOCK_SIZE", "122"],
        ),
        (
            &[("CALICO_IPV6POOL_BLOCK_SIZE", "big")],
            &["CALICO_IPV6POOL_BLOCK_SIZE"],
        ),
        (
            &[("CALICO_IPV4POOL_BLOCK_SIZE", "19")],
            &["CALICO_IPV4POOL_BLOCK_SIZE", "20-32"],
        ),
        (
            &[("CALICO_IPV4POOL_BLOCK_SIZE", "33")],
            &["CALICO_IPV4POOL_BLOCK_SIZE"],
        ),
        (
            &[("CALICO_IPV6POOL_VXLAN", "sometimes")],
            &["CALICO_IPV6POOL_VXLAN", "Never, Always or CrossSubnet"],
        ),
        (
            &[("CALICO_IPV6POOL_NAT_OUTGOING", "maybe")],
            &["CALICO_IPV6POOL_NAT_OUTGOING"],
        ),
        (
            &[("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", "maybe")],
            &["CALICO_IPV6POOL_DISABLE_BGP_EXPORT"],
        ),
        (
            &[("CALICO_IPV6POOL_IPIP", "Always")],
            &[
                "CALICO_IPV6POOL_IPIP",
                "not supported",
                "CALICO_IPV6POOL_VXLAN",
            ],
        ),
        // The pool must hold at least one block: both variables are named.
        (
            &[("CALICO_IPV6POOL_CIDR", "fd00::/123")],
            &[
                "CALICO_IPV6POOL_CIDR=fd00::/123",
                "CALICO_IPV6POOL_BLOCK_SIZE=122",
                "larger",
            ],
        ),
        (
            &[("CALICO_IPV4POOL_CIDR", "172.16.0.0/27")],
            &[
                "CALICO_IPV4POOL_CIDR=172.16.0.0/27",
                "CALICO_IPV4POOL_BLOCK_SIZE=26",
            ],
        ),
        (
            &[("CALICO_IPV4POOL_CIDR", "10.0.0.0/32")],
            &["CALICO_IPV4POOL_CIDR"],
        ),
        (
            &[("CALICO_IPV6POOL_CIDR", "fe80::/64")],
            &["CALICO_IPV6POOL_CIDR", "link-local"],
        ),
        (
            &[("CALICO_IPV6POOL_NODE_SELECTOR", "all(nothing)")],
            &[
                "CALICO_IPV6POOL_NODE_SELECTOR",
                "spec.nodeSelector",
                "all()",
            ],
        ),
        (
            &[("CALICO_IPV4POOL_NODE_SELECTOR", "all(nothing)")],
            &["CALICO_IPV4POOL_NODE_SELECTOR"],
        ),
        (
            &[
                ("CALICO_IPV4POOL_IPIP", "Always"),
                ("CALICO_IPV4POOL_VXLAN", "Always"),
            ],
            &["CALICO_IPV4POOL_IPIP", "CALICO_IPV4POOL_VXLAN", "Never"],
        ),
        (
            &[("CALICO_IPV4POOL_IPIP", "badVal")],
            &["CALICO_IPV4POOL_IPIP"],
        ),
    ] {
        let err = error(pairs);
        for want in wants {
            assert!(err.contains(want), "{pairs:?}: {want:?} not in {err:?}");
        }
    }
}

#[test]
fn ula_prefix_is_a_fd_slash_48_with_the_random_id() -> std::io::Result<()> {
    assert_eq!(ula_prefix([1, 2, 3, 4, 5]).to_string(), "fd01:203:405::/48");
    assert_eq!(ula_prefix([0xff; 5]).to_string(), "fdff:ffff:ffff::/48");
    let (a, b) = (random_ula_id()?, random_ula_id()?);
    // 40 random bits: two equal draws would mean the source is not random.
    assert_ne!(a, b);
    let fd00: Ipv6Net = "fd00::/8".parse().unwrap_or_default();
    assert!(fd00.contains(&ula_prefix(a)));
    Ok(())
}
