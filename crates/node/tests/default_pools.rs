//! The default IPv6 pool as the real `calico-node` binary makes it, in a throwaway namespace
//! whose uplink has an IPv4 and a global IPv6 address, on an embedded datastore in a temp dir:
//! made with `IP6=autodetect` (random ULA /48, or the environment's values with VXLAN and its
//! tunnel address), kept across a restart, not made with `NO_DEFAULT_POOLS` nor when an IPv6
//! pool exists, and a bad value stops the binary before it writes anything. Needs root (fails
//! loudly otherwise).

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use calico_api::resources::{EncapMode, IPPool};
use calico_api::{Kind, Resource};
use calico_dataplane::testns::TestNetns;
use calico_datastore::resources::ResourceStore;
use calico_node::startup;
use common::{NodeProc, eventually, wait_ready};
use ipnet::IpNet;

/// The node's uplink addresses (IPv4, IPv6) for a test numbered `n`.
fn node_ns(n: u8) -> (TestNetns, String) {
    let v6 = format!("2001:db8:9{n}::2/64");
    let ns = common::uplink_ns(&[&format!("10.9{n}.0.2/24"), &v6], 1500);
    (ns, v6)
}

/// Starts `node-a` with `IP6=autodetect` plus `env` and waits until it is ready.
fn start(ns: &TestNetns, dir: &Path, env: &[(&str, &str)]) -> Result<NodeProc> {
    let mut all = vec![("IP6", "autodetect")];
    all.extend_from_slice(env);
    let proc = NodeProc::spawn(ns, dir, &all)?;
    wait_ready(ns, &proc)?;
    Ok(proc)
}

async fn store(dir: &Path) -> Result<ResourceStore> {
    Ok(common::open_store(&dir.join("datastore.db")).await?.1)
}

async fn pools(dir: &Path) -> Result<Vec<IPPool>> {
    Ok(startup::list_pools(&store(dir).await?).await?)
}

fn names(pools: &[IPPool]) -> Vec<&str> {
    pools.iter().map(|p| p.metadata.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip6_autodetect_node_gets_a_ula_pool_kept_across_a_restart() -> Result<()> {
    let (ns, v6) = node_ns(1);
    let dir = tempfile::tempdir()?;
    let mut proc = start(&ns, dir.path(), &[])?;
    let n = common::node(&store(dir.path()).await?, "node-a").await?;
    assert_eq!(n.spec.bgp.map(|b| b.ipv6_address), Some(v6));

    let before = pools(dir.path()).await?;
    assert_eq!(
        names(&before),
        ["default-ipv4-ippool", "default-ipv6-ippool"]
    );
    let p6 = &before[1].spec;
    let ula = p6.network().context("IPv6 pool CIDR")?;
    assert_eq!(ula.prefix_len(), 48, "{ula}");
    assert!("fd00::/8".parse::<IpNet>()?.contains(&ula), "{ula}");
    assert_eq!(p6.block_size, Some(122));
    assert_eq!(
        (p6.vxlan(), p6.ipip()),
        (EncapMode::Never, EncapMode::Never)
    );
    assert_eq!(p6.nat_outgoing, Some(false));
    assert_eq!(p6.node_selector.as_deref(), Some("all()"));
    assert_eq!(p6.disable_bgp_export, Some(false));

    // A restart finds both families' pools: nothing new, the ULA stays.
    proc.signal("-TERM")?;
    let st = proc.wait(Duration::from_secs(5))?;
    assert!(st.success(), "exit {st:?}; log:\n{}", proc.log());
    let _proc = start(&ns, dir.path(), &[])?;
    assert_eq!(pools(dir.path()).await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pool_from_the_environment_with_vxlan() -> Result<()> {
    let (ns, _) = node_ns(2);
    let dir = tempfile::tempdir()?;
    let proc = start(
        &ns,
        dir.path(),
        &[
            ("CALICO_IPV6POOL_CIDR", "fd92:1::/56"),
            ("CALICO_IPV6POOL_BLOCK_SIZE", "120"),
            ("CALICO_IPV6POOL_VXLAN", "Always"),
            ("CALICO_IPV6POOL_NAT_OUTGOING", "true"),
            ("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", "true"),
        ],
    )?;
    let p = pools(dir.path()).await?;
    let p6 = &p.get(1).context("no IPv6 pool")?.spec;
    assert_eq!(
        (p6.cidr.as_str(), p6.block_size, p6.vxlan()),
        ("fd92:1::/56", Some(120), EncapMode::Always)
    );
    assert_eq!(
        (p6.nat_outgoing, p6.disable_bgp_export),
        (Some(true), Some(true))
    );

    // The pool's VXLAN gives the node its IPv6 tunnel address and Felix its device.
    let n = common::node(&store(dir.path()).await?, "node-a").await?;
    let tunnel: std::net::IpAddr = n
        .spec
        .ipv6_vxlan_tunnel_addr
        .parse()
        .with_context(|| proc.log())?;
    assert!(
        "fd92:1::/56".parse::<IpNet>()?.contains(&tunnel),
        "{tunnel}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state/mtu"))?,
        "1430"
    );
    eventually(Duration::from_secs(10), "vxlan-v6.calico", || {
        Ok(ns
            .ip(&["link", "show"])
            .contains("vxlan-v6.calico")
            .then_some(()))
    })
    .with_context(|| proc.log())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ipv6_default_with_no_default_pools_or_an_existing_ipv6_pool() -> Result<()> {
    let (ns, _) = node_ns(3);
    let dir = tempfile::tempdir()?;
    let _proc = start(&ns, dir.path(), &[("NO_DEFAULT_POOLS", "true")])?;
    assert!(pools(dir.path()).await?.is_empty());

    let (ns, _) = node_ns(4);
    let dir = tempfile::tempdir()?;
    let mut mine = IPPool::new("mine6");
    mine.spec.cidr = "fd94::/64".into();
    store(dir.path())
        .await?
        .create(Resource::IPPool(mine))
        .await?;
    let _proc = start(&ns, dir.path(), &[])?;
    let p = pools(dir.path()).await?;
    // The IPv4 default is still made: only the family with a pool is skipped.
    assert_eq!(names(&p), ["default-ipv4-ippool", "mine6"]);
    Ok(())
}

#[test]
fn bad_ipv6_pool_value_exits_and_writes_nothing() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    for (k, v, says) in [
        ("CALICO_IPV6POOL_BLOCK_SIZE", "115", "116-128"),
        (
            "CALICO_IPV6POOL_CIDR",
            "fd00::/123",
            "CALICO_IPV6POOL_BLOCK_SIZE=122",
        ),
        ("CALICO_IPV6POOL_IPIP", "Always", "CALICO_IPV6POOL_VXLAN"),
    ] {
        let (ns, _) = node_ns(5);
        let dir = tempfile::tempdir()?;
        let mut proc = NodeProc::spawn(&ns, dir.path(), &[("IP6", "autodetect"), (k, v)])?;
        let st = proc.wait(Duration::from_secs(5))?;
        let log = proc.log();
        assert!(!st.success(), "{k}={v} accepted; log:\n{log}");
        assert!(log.contains(k) && log.contains(says), "{k}={v}: {log}");
        let s = rt.block_on(store(dir.path()))?;
        for kind in [Kind::IPPool, Kind::Node] {
            let left = rt.block_on(s.list(kind, None))?;
            assert!(left.is_empty(), "{k}={v} wrote {left:?}");
        }
    }
    Ok(())
}
