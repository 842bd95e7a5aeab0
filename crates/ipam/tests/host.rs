//! Against both backends: the allocator's cache (a pool disabled, a Node relabelled or the IPAM
//! configuration changed in the store is honoured at once by an `Ipam` that cached them), group
//! commit of concurrent requests of one node, LoadBalancer addresses in blocks of the virtual
//! owner, removal of a node (`release_host`), and upstream's affinity consistency check on
//! release.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use calico_api::resources::ippool::AllowedUse;
use calico_api::{Kind, Resource};
use calico_datastore::keys;
use calico_ipam::model::IpamConfig;
use calico_ipam::{AutoAssignArgs, Ipam, ReleaseRequest, check};
use common::{Fixture, add_node, add_pool, add_wep, edit_resource};
use ipnet::IpNet;

fn args(node: &str, handle: &str) -> AutoAssignArgs {
    let mut a = AutoAssignArgs::new(node, handle);
    a.attrs.node = Some(node.into());
    a
}

fn within(cidr: &str, ip: IpAddr) -> bool {
    cidr.parse::<IpNet>().is_ok_and(|n| n.contains(&ip))
}

async fn disabled_pool_is_never_used_after_disabling(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "a-first", "10.1.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "n", &[]).await?;
    // A long TTL: only the checks in the block writes can notice the change.
    let ipam = Ipam::new(f.ds.clone()).with_cache_ttl(Duration::from_secs(3600));
    let first = ipam.auto_assign(&args("n", "h0")).await?;
    ensure!(within("10.1.0.0/24", first.v4[0].addr()), "{first:?}");

    add_pool(&f.ds, "b-second", "10.2.0.0/24", 26, |_| {}).await?;
    edit_resource(&f.ds, Kind::IPPool, "a-first", |r| {
        if let Resource::IPPool(p) = r {
            p.spec.disabled = Some(true);
        }
    })
    .await?;
    for i in 1..5 {
        let got = ipam.auto_assign(&args("n", &format!("h{i}"))).await?;
        ensure!(
            within("10.2.0.0/24", got.v4[0].addr()),
            "allocation {i} after disabling a-first came from {got:?}"
        );
    }
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn cached_config_change_is_honoured(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.3.0.0/28", 30, |_| {}).await?;
    add_node(&f.ds, "a", &[]).await?;
    add_node(&f.ds, "b", &[]).await?;
    let long = Duration::from_secs(3600);
    let ipam_a = Ipam::new(f.ds.clone()).with_cache_ttl(long);
    let ipam_b = Ipam::new(f.ds.clone()).with_cache_ttl(long);
    // b caches strictAffinity off; then another client turns it on.
    ipam_b.auto_assign(&args("b", "b0")).await?;
    Ipam::new(f.ds.clone())
        .set_config(IpamConfig {
            strict_affinity: true,
            auto_allocate_blocks: true,
            max_blocks_per_host: 1,
        })
        .await?;
    // a fills its one block (4 addresses); b's cached config must not let it borrow from a's.
    for i in 0..4 {
        ipam_a.auto_assign(&args("a", &format!("a{i}"))).await?;
    }
    for i in 1..4 {
        ipam_b.auto_assign(&args("b", &format!("b{i}"))).await?;
    }
    let err = ipam_b.auto_assign(&args("b", "b4")).await;
    ensure!(err.is_err(), "b borrowed under strictAffinity: {err:?}");
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn release_host_removes_the_node(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.4.0.0/26", 29, |_| {}).await?;
    add_node(&f.ds, "gone", &[]).await?;
    add_node(&f.ds, "stays", &[]).await?;
    let ipam = Ipam::new(f.ds.clone());
    // 10 addresses: two blocks of 8 for "gone".
    let mut ips = Vec::new();
    for i in 0..10 {
        ips.push(ipam.auto_assign(&args("gone", &format!("g{i}"))).await?.v4[0]);
    }
    let kept = ipam.auto_assign(&args("stays", "s0")).await?.v4[0];
    let blocks: std::collections::BTreeSet<IpNet> = ips.iter().map(|n| n.trunc()).collect();
    ensure!(blocks.len() == 2, "two blocks: {blocks:?}");
    // Pods of "gone" hold 9 of them; the 10th is the node's VXLAN tunnel address.
    for (i, ip) in ips.iter().take(9).enumerate() {
        add_wep(
            &f.ds,
            "gone",
            &format!("pod{i}"),
            &[format!("{}/32", ip.addr())],
        )
        .await?;
    }
    edit_resource(&f.ds, Kind::Node, "gone", |r| {
        if let Resource::Node(n) = r {
            n.spec.ipv4_vxlan_tunnel_addr = ips[9].addr().to_string();
        }
    })
    .await?;

    let out = ipam.release_host("gone").await?;
    ensure!(out.addresses.len() == 10, "{out:?}");
    ensure!(out.blocks.len() == 2, "{out:?}");
    let left = f.ds.list(&keys::host_affinity_prefix("gone")).await?.kvs;
    ensure!(left.is_empty(), "affinities left: {left:?}");
    for b in &blocks {
        ensure!(
            f.ds.get(&keys::block_key(&b.to_string())).await?.is_none(),
            "empty block {b} deleted"
        );
    }
    // The other node is untouched; repeating is harmless.
    ensure!(ipam.ips_by_handle("s0").await? == vec![kept.addr()]);
    ensure!(ipam.release_host("gone").await?.addresses.is_empty());
    ensure!(ipam.auto_assign(&args("stays", "s1")).await?.v4.len() == 1);
    Ok(())
}

async fn release_host_keeps_busy_blocks_without_affinity(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.5.0.0/26", 29, |_| {}).await?;
    add_node(&f.ds, "gone", &[]).await?;
    let ipam = Ipam::new(f.ds.clone());
    let ip = ipam.auto_assign(&args("gone", "orphan")).await?.v4[0];
    // No WorkloadEndpoint names the address: it stays allocated, its block loses the affinity.
    let out = ipam.release_host("gone").await?;
    ensure!(
        out.addresses.is_empty() && out.blocks == vec![ip.trunc()],
        "{out:?}"
    );
    let kv =
        f.ds.get(&keys::block_key(&ip.trunc().to_string()))
            .await?
            .ok_or_else(|| anyhow::anyhow!("busy block kept"))?;
    let block = calico_ipam::AllocationBlock::from_json(&kv.value)?;
    ensure!(block.affinity.is_none(), "{:?}", block.affinity);
    ensure!(ipam.ips_by_handle("orphan").await? == vec![ip.addr()]);
    Ok(())
}

async fn emptied_block_of_a_pool_that_no_longer_selects_the_node_is_released(
    f: &Fixture,
) -> Result<()> {
    add_pool(&f.ds, "rack-x", "10.6.0.0/24", 26, |p| {
        p.spec.node_selector = Some("rack == 'x'".into())
    })
    .await?;
    add_node(&f.ds, "n", &[("rack", "x")]).await?;
    let ip = Ipam::new(f.ds.clone())
        .auto_assign(&args("n", "h"))
        .await?
        .v4[0];
    let aff = keys::affinity_key("n", &ip.trunc().to_string());
    edit_resource(&f.ds, Kind::Node, "n", |r| {
        r.metadata_mut().labels = Some([("rack".to_string(), "y".to_string())].into());
    })
    .await?;
    // Released by address (as `calicoctl ipam release` does), from a fresh client.
    let released = Ipam::new(f.ds.clone())
        .release_ips(&[ReleaseRequest {
            ip: ip.addr(),
            handle: None,
            sequence_number: None,
        }])
        .await?;
    ensure!(released.released == vec![ip.addr()], "{released:?}");
    ensure!(f.ds.get(&aff).await?.is_none(), "affinity released");
    ensure!(
        f.ds.get(&keys::block_key(&ip.trunc().to_string()))
            .await?
            .is_none(),
        "empty block deleted"
    );
    Ok(())
}

/// 32 concurrent requests for one node in one process: unique addresses, handles and blocks
/// agree, and (on etcd, where one transaction is one revision) they share transactions.
async fn concurrent_requests_of_one_node_share_transactions(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.7.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "n", &[]).await?;
    let ipam = Ipam::new(f.ds.clone());
    ipam.auto_assign(&args("n", "warm-up")).await?;
    let before = f.ds.revision().await?;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let ipam = ipam.clone();
            tokio::spawn(async move { ipam.auto_assign(&args("n", &format!("c{i}"))).await })
        })
        .collect();
    let mut ips = std::collections::BTreeSet::new();
    for t in tasks {
        let got = t.await??;
        ensure!(got.v4.len() == 1, "{got:?}");
        ips.insert(got.v4[0].addr());
    }
    ensure!(ips.len() == 32, "every address once: {ips:?}");
    for i in 0..32 {
        let held = ipam.ips_by_handle(&format!("c{i}")).await?;
        ensure!(held.len() == 1 && ips.contains(&held[0]), "c{i}: {held:?}");
    }
    let revisions = f.ds.revision().await? - before;
    let etcd = f
        .env
        .iter()
        .any(|(k, v)| k == "DATASTORE_TYPE" && v == "etcdv3");
    ensure!(
        !etcd || revisions < 32,
        "32 allocations took {revisions} transactions: no batching"
    );
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

/// LoadBalancer addresses come from LoadBalancer pools, in blocks affine to upstream's virtual
/// owner (`virtual:load-balancer`, affinity key under `/calico/ipam/v2/virtual/`), with no Node;
/// workloads never get them.
async fn load_balancer_addresses_use_the_virtual_owner(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "lb", "10.8.0.0/28", 30, |p| {
        p.spec.allowed_uses = Some(vec![AllowedUse::LoadBalancer]);
    })
    .await?;
    add_pool(&f.ds, "pods", "10.9.0.0/28", 30, |_| {}).await?;
    add_node(&f.ds, "n", &[]).await?;
    let ipam = Ipam::new(f.ds.clone());
    let mut lb = AutoAssignArgs::new("", "svc-a");
    lb.usage = AllowedUse::LoadBalancer;
    lb.attrs.namespace = Some("default".into());
    let mut lb_ips = Vec::new();
    for i in 0..6 {
        lb.handle = Some(format!("svc-{i}"));
        lb_ips.push(ipam.auto_assign(&lb).await?.v4[0]);
    }
    ensure!(
        lb_ips.iter().all(|n| within("10.8.0.0/28", n.addr())),
        "{lb_ips:?}"
    );
    let pod = ipam.auto_assign(&args("n", "pod")).await?.v4[0];
    ensure!(within("10.9.0.0/28", pod.addr()), "{pod:?}");

    for b in lb_ips
        .iter()
        .map(|n| n.trunc())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let kv =
            f.ds.get(&keys::block_key(&b.to_string()))
                .await?
                .ok_or_else(|| anyhow::anyhow!("block {b}"))?;
        let block = calico_ipam::AllocationBlock::from_json(&kv.value)?;
        ensure!(
            block.affinity.as_deref() == Some("virtual:load-balancer"),
            "{:?}",
            block.affinity
        );
        let key = keys::typed_affinity_key("virtual", "load-balancer", &b.to_string());
        ensure!(f.ds.get(&key).await?.is_some(), "affinity {key}");
    }
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    ensure!(ipam.release_by_handle("svc-0").await? == 1);
    ensure!(ipam.ips_by_handle("svc-0").await?.is_empty());
    Ok(())
}

both_backends!(
    load_balancer_addresses_use_the_virtual_owner,
    concurrent_requests_of_one_node_share_transactions,
    disabled_pool_is_never_used_after_disabling,
    cached_config_change_is_honoured,
    release_host_removes_the_node,
    release_host_keeps_busy_blocks_without_affinity,
    emptied_block_of_a_pool_that_no_longer_selects_the_node_is_released,
);

/// Resumes a paused etcd when dropped, also when the test fails half-way.
struct Resume<'a>(&'a calico_datastore::testutil::EtcdServer);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let _ = self.0.resume();
    }
}

/// A queued request whose turn-holder is dropped before answering it (its caller's timeout,
/// here an abort while etcd hangs) is served by its own caller once the turn comes: it is
/// answered with an address, never a panic or a lost request. Needs a server that can hang:
/// etcd only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_request_is_served_when_its_holder_is_dropped() -> Result<()> {
    let f = common::etcd().await?;
    let common::Guard::Etcd(etcd) = &f.guard else {
        anyhow::bail!("the etcd fixture has no etcd server");
    };
    add_pool(&f.ds, "p", "10.6.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "n", &[]).await?;
    let ipam = Ipam::new(f.ds.clone());
    ipam.auto_assign(&args("n", "warm-up")).await?;
    let spawn = |handle: &str| {
        let (ipam, a) = (ipam.clone(), args("n", handle));
        tokio::spawn(async move { ipam.auto_assign(&a).await })
    };
    let settle = || tokio::time::sleep(Duration::from_millis(150));
    etcd.pause()?;
    let resume = Resume(etcd);
    // h1 holds the node's turn, stuck on etcd; h2 and h3 queue behind it.
    let h1 = spawn("h1");
    settle().await;
    let h2 = spawn("h2");
    settle().await;
    let h3 = spawn("h3");
    settle().await;
    // h1 is dropped: h2 takes the turn and the queue (h2 and h3), and is stuck in turn.
    h1.abort();
    settle().await;
    // h2 is dropped too, holding h3's request unanswered.
    h2.abort();
    settle().await;
    drop(resume);
    let got = tokio::time::timeout(Duration::from_secs(30), h3).await???;
    ensure!(got.v4.len() == 1, "h3: {got:?}");
    let held = ipam.ips_by_handle("h3").await?;
    ensure!(
        held == vec![got.v4[0].addr()],
        "h3 holds {held:?}, was told {got:?}"
    );
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}
