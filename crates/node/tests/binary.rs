//! The `calico-node` binary in a throwaway namespace with an embedded datastore in a temp dir:
//! readiness 503 → 200, metrics, VXLAN tunnel address and MTU file, the runtime reaction to a
//! pool's vxlanMode switch, and clean exits on SIGTERM/SIGINT. Needs root (fails loudly).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_api::Resource;
use calico_api::naming::vxlan_tunnel_mac;
use calico_api::resources::{EncapMode, Node};
use calico_dataplane::testns::TestNetns;
use calico_datastore::Datastore;
use calico_datastore::resources::ResourceStore;
use calico_node::startup;
use common::{NodeProc, eventually, get};

async fn open_store(dir: &Path) -> Result<(Arc<dyn Datastore>, ResourceStore)> {
    common::open_store(&dir.join("datastore.db")).await
}

async fn node(store: &ResourceStore) -> Result<Node> {
    common::node(store, "node-a").await
}

fn state(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("state").join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_vxlan_runtime_switch_and_sigterm() -> Result<()> {
    let ns = common::uplink_ns(&["10.77.0.2/24"], 1500);
    let dir = tempfile::tempdir()?;
    let (_ds, store) = open_store(dir.path()).await?;

    // Hold the store's write lock: startup cannot register the Node, so readiness stays 503.
    let lock = rusqlite::Connection::open(dir.path().join("datastore.db"))?;
    lock.execute_batch("BEGIN IMMEDIATE")?;
    let mut proc = NodeProc::spawn(
        &ns,
        dir.path(),
        &[
            ("CALICO_IPV4POOL_CIDR", "10.80.0.0/16"),
            ("CALICO_IPV4POOL_VXLAN", "Always"),
        ],
    )?;
    let (code, body) = eventually(Duration::from_secs(10), "health listener", || {
        get(&ns, 9099, "/readiness")
    })?;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: startup not finished\n")
    );
    assert_eq!(get(&ns, 9099, "/liveness")?.map(|r| r.0), Some(200));
    lock.execute_batch("ROLLBACK")?;
    drop(lock);

    eventually(Duration::from_secs(20), "readiness 200", || {
        Ok(get(&ns, 9099, "/readiness")?.filter(|r| r.0 == 200))
    })
    .with_context(|| proc.log())?;
    let n = node(&store).await?;
    assert_eq!(
        n.spec.bgp.as_ref().map(|b| b.ipv4_address.as_str()),
        Some("10.77.0.2/24")
    );
    let tunnel: std::net::IpAddr = n.spec.ipv4_vxlan_tunnel_addr.parse()?;
    assert!("10.80.0.0/16".parse::<ipnet::IpNet>()?.contains(&tunnel));
    assert_eq!(n.spec.vxlan_tunnel_mac_addr, vxlan_tunnel_mac("node-a"));
    assert_eq!(state(dir.path(), "mtu"), "1450");
    assert_eq!(state(dir.path(), "nodename"), "node-a");
    // Felix created the device (readiness waits for its first pass).
    let link = ns.ip(&["-d", "link", "show", "vxlan.calico"]);
    assert!(
        link.contains("mtu 1450")
            && link.contains("vxlan id 4096")
            && link.contains("dstport 4789"),
        "{link}"
    );
    assert!(
        ns.ip(&["-4", "addr", "show", "dev", "vxlan.calico"])
            .contains(&format!("{tunnel}/32"))
    );

    let (code, metrics) = get(&ns, 9091, "/metrics")?.context("metrics endpoint")?;
    assert_eq!(code, 200);
    assert!(metrics.contains("\nfelix_resync_state 3\n"), "{metrics}");
    assert!(
        metrics.contains("process_resident_memory_bytes "),
        "{metrics}"
    );

    // Runtime switch to Never: the address is released and the MTU file follows.
    let set_mode = |mode: EncapMode| {
        let store = &store;
        async move {
            let mut p = startup::list_pools(store).await?.remove(0);
            p.spec.vxlan_mode = Some(mode);
            store.update(Resource::IPPool(p)).await?;
            anyhow::Ok(())
        }
    };
    set_mode(EncapMode::Never).await?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let n = node(&store).await?;
        if n.spec.ipv4_vxlan_tunnel_addr.is_empty() && state(dir.path(), "mtu") == "1500" {
            assert!(n.spec.vxlan_tunnel_mac_addr.is_empty());
            eventually(Duration::from_secs(5), "vxlan.calico removed", || {
                Ok((!ns.ip(&["link", "show"]).contains("vxlan.calico")).then_some(()))
            })?;
            break;
        }
        if Instant::now() > end {
            bail!(
                "tunnel address not released after the switch to Never:\n{}",
                proc.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ipam = calico_ipam::Ipam::new(_ds.clone());
    assert!(
        ipam.ips_by_handle("vxlan-tunnel-addr-node-a")
            .await?
            .is_empty()
    );

    // And back to Always: a tunnel address again.
    set_mode(EncapMode::Always).await?;
    let end = Instant::now() + Duration::from_secs(10);
    while node(&store).await?.spec.ipv4_vxlan_tunnel_addr.is_empty()
        || state(dir.path(), "mtu") != "1450"
    {
        if Instant::now() > end {
            bail!(
                "no tunnel address after the switch back to Always:\n{}",
                proc.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ipam.ips_by_handle("vxlan-tunnel-addr-node-a").await?.len(),
        1
    );

    proc.signal("-TERM")?;
    let st = proc.wait(Duration::from_secs(5))?;
    assert!(st.success(), "exit {st:?}; log:\n{}", proc.log());
    assert!(proc.log().contains("SIGTERM received"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumbo_uplink_gives_8950_and_sigint_exits_cleanly() -> Result<()> {
    let ns = common::uplink_ns(&["10.78.0.2/24"], 9000);
    let dir = tempfile::tempdir()?;
    let mut proc = NodeProc::spawn(
        &ns,
        dir.path(),
        &[
            ("IP", "10.78.0.2"),
            ("CALICO_IPV4POOL_VXLAN", "CrossSubnet"),
            ("FELIX_HEALTHPORT", "19099"),
            ("FELIX_PROMETHEUSMETRICSENABLED", "false"),
        ],
    )?;
    eventually(
        Duration::from_secs(20),
        "readiness 200 on port 19099",
        || Ok(get(&ns, 19099, "/readiness")?.filter(|r| r.0 == 200)),
    )
    .with_context(|| proc.log())?;
    assert_eq!(state(dir.path(), "mtu"), "8950");
    assert_eq!(get(&ns, 9091, "/metrics")?, None, "metrics were disabled");
    let (_ds, store) = open_store(dir.path()).await?;
    let n = node(&store).await?;
    assert_eq!(
        n.spec.bgp.as_ref().map(|b| b.ipv4_address.as_str()),
        Some("10.78.0.2/24")
    );
    proc.signal("-INT")?;
    let st = proc.wait(Duration::from_secs(5))?;
    assert!(st.success(), "exit {st:?}; log:\n{}", proc.log());
    Ok(())
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_variable() -> Result<()> {
    let ns = TestNetns::new();
    let dir = tempfile::tempdir()?;
    let mut proc = NodeProc::spawn(&ns, dir.path(), &[("IP_AUTODETECTION_METHOD", "guess")])?;
    let st = proc.wait(Duration::from_secs(5))?;
    assert!(!st.success());
    assert!(
        proc.log().contains("IP_AUTODETECTION_METHOD"),
        "{}",
        proc.log()
    );
    Ok(())
}
