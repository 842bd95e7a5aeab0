//! The allocator against both datastore backends: stored layout and JSON, pool selection,
//! claims, borrowing, limits, reclaim, crash recovery, specific addresses, release.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Result, bail, ensure};
use calico_datastore::keys;
use calico_ipam::clock::{ManualClock, seeded_random};
use calico_ipam::model::IpamConfig;
use calico_ipam::{
    AllocationBlock, AssignIpArgs, Attrs, AutoAssignArgs, Ipam, IpamError, ProblemKind,
    ReleaseRequest, check, repair,
};
use common::{Fixture, add_node, add_pool, add_reservation};
use ipnet::IpNet;

fn ipam(f: &Fixture) -> (Ipam, Arc<ManualClock>) {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_750_000_000));
    (
        Ipam::with_clock(f.ds.clone(), clock.clone(), seeded_random(7)),
        clock,
    )
}

fn args(node: &str, handle: &str, n: usize) -> AutoAssignArgs {
    let mut a = AutoAssignArgs::new(node, handle);
    a.num_v4 = n;
    a.attrs = Attrs {
        node: Some(node.into()),
        pod: Some("p".into()),
        namespace: Some("ns".into()),
        ..Default::default()
    };
    a
}

async fn raw(f: &Fixture, key: &str) -> Result<Option<String>> {
    Ok(f.ds
        .get(key)
        .await?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

async fn block(f: &Fixture, cidr: &str) -> Result<AllocationBlock> {
    let Some(kv) = f.ds.get(&keys::block_key(cidr)).await? else {
        bail!("no block {cidr}")
    };
    Ok(AllocationBlock::from_json(&kv.value)?)
}

async fn stored_layout_and_release(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "pool1", "10.0.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "node-1", &[]).await?;
    let (ipam, _) = ipam(f);
    let got = ipam
        .auto_assign(&args("node-1", "k8s-pod-network.c1", 2))
        .await?;
    ensure!(got.v4.len() == 2 && got.v6.is_empty(), "{got:?}");
    let net = got.v4[0];
    ensure!(
        net.prefix_len() == 26,
        "address carries its block's prefix: {net}"
    );
    let cidr = net.trunc().to_string();
    let b = block(f, &cidr).await?;
    ensure!(
        b.affinity.as_deref() == Some("host:node-1"),
        "{:?}",
        b.affinity
    );
    ensure!(
        b.affinity_claim_time.as_deref() == Some("2025-06-15T15:06:40Z"),
        "{:?}",
        b.affinity_claim_time
    );
    let attr = b.attribute_of(net.addr())?.cloned().unwrap_or_default();
    ensure!(attr.handle_id.as_deref() == Some("k8s-pod-network.c1"));
    ensure!(
        attr.secondary.get("node").map(String::as_str) == Some("node-1"),
        "{attr:?}"
    );
    ensure!(
        raw(f, &keys::affinity_key("node-1", &cidr))
            .await?
            .as_deref()
            == Some(r#"{"state":"confirmed","deleted":false}"#)
    );
    let handle = raw(f, &keys::handle_key("k8s-pod-network.c1")).await?;
    ensure!(
        handle == Some(format!(r#"{{"block":{{"{cidr}":2}},"deleted":false}}"#)),
        "{handle:?}"
    );
    ensure!(check(f.ds.as_ref()).await?.is_clean());

    // Release by handle: addresses free, handle gone, block and affinity kept.
    ensure!(ipam.release_by_handle("k8s-pod-network.c1").await? == 2);
    ensure!(
        raw(f, &keys::handle_key("k8s-pod-network.c1"))
            .await?
            .is_none()
    );
    let b = block(f, &cidr).await?;
    ensure!(b.is_empty() && b.affinity.as_deref() == Some("host:node-1"));
    ensure!(
        raw(f, &keys::affinity_key("node-1", &cidr))
            .await?
            .is_some()
    );
    ensure!(
        ipam.release_by_handle("k8s-pod-network.c1").await? == 0,
        "unknown handle frees nothing"
    );

    // The next assignment reuses the host's block.
    let again = ipam.auto_assign(&args("node-1", "h2", 1)).await?;
    ensure!(again.v4[0].trunc() == net.trunc());
    // Release by address: stale sequence numbers are refused.
    let ip = again.v4[0].addr();
    let seq = block(f, &cidr).await?.sequence_number_of(ip)?;
    let stale = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: None,
            sequence_number: Some(seq + 1),
        }])
        .await;
    ensure!(matches!(stale, Err(IpamError::Block(_))), "{stale:?}");
    let r = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: Some("h2".into()),
            sequence_number: Some(seq),
        }])
        .await?;
    ensure!(r.released == vec![ip] && r.not_allocated.is_empty());
    let r = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: None,
            sequence_number: None,
        }])
        .await?;
    ensure!(r.not_allocated == vec![ip]);
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn pool_selection(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "off", "10.9.0.0/24", 26, |p| {
        p.spec.disabled = Some(true)
    })
    .await?;
    add_pool(&f.ds, "rack-a", "10.1.0.0/24", 26, |p| {
        p.spec.node_selector = Some("rack == 'a'".into())
    })
    .await?;
    add_pool(&f.ds, "rack-b", "10.2.0.0/24", 26, |p| {
        p.spec.node_selector = Some("rack == 'b'".into())
    })
    .await?;
    add_node(&f.ds, "a1", &[("rack", "a")]).await?;
    add_node(&f.ds, "b1", &[("rack", "b")]).await?;
    add_node(&f.ds, "c1", &[("rack", "c")]).await?;
    let (ipam, _) = ipam(f);
    let a = ipam.auto_assign(&args("a1", "ha", 1)).await?;
    ensure!(
        "10.1.0.0/24".parse::<IpNet>()?.contains(&a.v4[0].addr()),
        "{a:?}"
    );
    let b = ipam.auto_assign(&args("b1", "hb", 1)).await?;
    ensure!(
        "10.2.0.0/24".parse::<IpNet>()?.contains(&b.v4[0].addr()),
        "{b:?}"
    );
    let err = ipam
        .auto_assign(&args("c1", "hc", 1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        err.contains("rack-a: nodeSelector") && err.contains("create an IPPool"),
        "{err}"
    );
    // Requested pools are used as given (node selectors aside), disabled ones refused.
    let mut req = args("c1", "hc", 1);
    req.ipv4_pools = vec!["10.1.0.0/24".into()];
    ensure!(ipam.auto_assign(&req).await?.v4.len() == 1);
    req.ipv4_pools = vec!["off".into()];
    let err = ipam
        .auto_assign(&req)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("disabled"), "{err}");
    let err = ipam
        .auto_assign(&args("ghost", "hg", 1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("\"ghost\" does not exist"), "{err}");
    Ok(())
}

async fn borrowing_and_exhaustion(f: &Fixture) -> Result<()> {
    // Two blocks of four.
    add_pool(&f.ds, "tiny", "10.0.0.0/29", 30, |_| {}).await?;
    add_node(&f.ds, "a", &[]).await?;
    add_node(&f.ds, "b", &[]).await?;
    let (ipam, _) = ipam(f);
    let a = ipam.auto_assign(&args("a", "ha", 6)).await?;
    ensure!(a.v4.len() == 6);
    // b finds no free block and borrows from a's.
    let b = ipam.auto_assign(&args("b", "hb", 2)).await?;
    ensure!(b.v4.len() == 2);
    let report = check(f.ds.as_ref()).await?;
    ensure!(report.is_clean() && report.in_use() == 8, "{report:?}");
    for net in &b.v4 {
        let blk = block(f, &net.trunc().to_string()).await?;
        ensure!(
            blk.affinity.as_deref() == Some("host:a"),
            "borrowed from a's block"
        );
    }
    // Nothing left: a clear error, and nothing half-written.
    let before = check(f.ds.as_ref()).await?;
    let err = ipam
        .auto_assign(&args("b", "hb2", 1))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("assigned from a full pool"))?;
    let text = err.to_string();
    ensure!(matches!(err, IpamError::Exhausted { .. }), "{err:?}");
    ensure!(
        text.contains("tiny (10.0.0.0/29)") && text.contains("Add an IPPool"),
        "{text}"
    );
    let after = check(f.ds.as_ref()).await?;
    ensure!(
        after.is_clean()
            && after.allocations == before.allocations
            && after.handles == before.handles
    );
    ensure!(raw(f, &keys::handle_key("hb2")).await?.is_none());

    // A request larger than what is left is refused whole: the addresses it took go back.
    ipam.release_by_handle("hb").await?;
    let err = ipam
        .auto_assign(&args("b", "hb3", 3))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("assigned 2 of 3"), "{err}");
    let after = check(f.ds.as_ref()).await?;
    ensure!(after.is_clean() && after.in_use() == 6, "{after:?}");
    ensure!(raw(f, &keys::handle_key("hb3")).await?.is_none());

    // strictAffinity: no borrowing.
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        ..IpamConfig::default()
    })
    .await?;
    let err = ipam
        .auto_assign(&args("b", "hb4", 1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("strictAffinity forbids borrowing"), "{err}");
    ensure!(
        raw(f, &keys::ipam_config_key()).await?.as_deref()
            == Some(r#"{"strict_affinity":true,"auto_allocate_blocks":true}"#)
    );
    Ok(())
}

async fn block_limit(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.0.0.0/24", 30, |_| {}).await?;
    add_node(&f.ds, "a", &[]).await?;
    let (ipam, _) = ipam(f);
    let bad = ipam
        .set_config(IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 1,
        })
        .await;
    ensure!(matches!(bad, Err(IpamError::Invalid(_))), "{bad:?}");
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        max_blocks_per_host: 1,
    })
    .await?;
    ensure!(ipam.auto_assign(&args("a", "h", 4)).await?.v4.len() == 4);
    let err = ipam
        .auto_assign(&args("a", "h2", 1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        err.contains("maxBlocksPerHost 1") && err.contains("--max-blocks-per-host"),
        "{err}"
    );
    ensure!(raw(f, &keys::handle_key("h2")).await?.is_none());
    Ok(())
}

async fn reclaim_empty_block_after_min_age(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "one", "10.0.0.0/30", 30, |_| {}).await?;
    add_node(&f.ds, "a", &[]).await?;
    add_node(&f.ds, "b", &[]).await?;
    let (ipam, clock) = ipam(f);
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        ..IpamConfig::default()
    })
    .await?;
    ipam.auto_assign(&args("a", "ha", 1)).await?;
    ipam.release_by_handle("ha").await?;
    clock.advance(Duration::from_secs(30));
    ensure!(
        ipam.auto_assign(&args("b", "hb", 1)).await.is_err(),
        "a's block is too young to reclaim"
    );
    clock.advance(Duration::from_secs(31));
    let got = ipam.auto_assign(&args("b", "hb", 1)).await?;
    ensure!(got.v4.len() == 1);
    let blk = block(f, "10.0.0.0/30").await?;
    ensure!(
        blk.affinity.as_deref() == Some("host:b"),
        "{:?}",
        blk.affinity
    );
    ensure!(
        raw(f, &keys::affinity_key("a", "10.0.0.0/30"))
            .await?
            .is_none()
    );
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn crash_recovery(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.0.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "a", &[]).await?;
    let (ipam, _) = ipam(f);
    // A claim that stopped after writing the pending affinity.
    f.ds.create(
        &keys::affinity_key("a", "10.0.0.128/26"),
        br#"{"state":"pending","deleted":false}"#.to_vec(),
        None,
    )
    .await?;
    let report = check(f.ds.as_ref()).await?;
    ensure!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::AffinityWithoutBlock)
            && report.repairable()
    );
    // The host finishes it on its next assignment (affine blocks first).
    let got = ipam.auto_assign(&args("a", "h1", 1)).await?;
    ensure!(got.v4[0].trunc().to_string() == "10.0.0.128/26", "{got:?}");
    ensure!(check(f.ds.as_ref()).await?.is_clean());

    // A block whose affinity key is gone (crash between block write and affinity write).
    f.ds.delete(&keys::affinity_key("a", "10.0.0.128/26"), None)
        .await?;
    // A handle counted up for a block write that never happened.
    let h =
        f.ds.get(&keys::handle_key("h1"))
            .await?
            .map(|kv| kv.mod_revision)
            .unwrap_or_default();
    f.ds.update(
        &keys::handle_key("h1"),
        br#"{"block":{"10.0.0.128/26":3},"deleted":false}"#.to_vec(),
        h,
    )
    .await?;
    f.ds.create(
        &keys::handle_key("ghost"),
        br#"{"block":{"10.0.0.0/26":1},"deleted":false}"#.to_vec(),
        None,
    )
    .await?;
    let report = check(f.ds.as_ref()).await?;
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind).collect();
    ensure!(
        kinds
            == vec![
                ProblemKind::BlockWithoutAffinity,
                ProblemKind::HandleCountWrong,
                ProblemKind::HandleCountWrong
            ],
        "{report:#?}"
    );
    ensure!(report.repairable());
    ensure!(repair(f.ds.as_ref(), &report).await? == 3);
    let report = check(f.ds.as_ref()).await?;
    ensure!(report.is_clean(), "{report:#?}");
    ensure!(report.in_use() == 1);
    Ok(())
}

async fn assign_specific_address(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "p", "10.0.0.0/24", 26, |_| {}).await?;
    add_pool(&f.ds, "off", "10.9.0.0/24", 26, |p| {
        p.spec.disabled = Some(true)
    })
    .await?;
    add_node(&f.ds, "a", &[]).await?;
    add_node(&f.ds, "b", &[]).await?;
    let (ipam, _) = ipam(f);
    let ip: IpAddr = "10.0.0.70".parse()?;
    let req = |host: &str, handle: &str| AssignIpArgs {
        ip,
        handle: Some(handle.into()),
        attrs: Attrs::default(),
        hostname: host.into(),
    };
    ipam.assign_ip(&req("a", "h1")).await?;
    let blk = block(f, "10.0.0.64/26").await?;
    ensure!(
        blk.affinity.as_deref() == Some("host:a"),
        "the block is claimed for the host"
    );
    let err = ipam
        .assign_ip(&req("a", "h2"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("already in use by handle h1"), "{err}");
    let outside = AssignIpArgs {
        ip: "192.168.1.1".parse()?,
        ..req("a", "h3")
    };
    let err = ipam
        .assign_ip(&outside)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("not in any enabled IP pool"), "{err}");
    let disabled = AssignIpArgs {
        ip: "10.9.0.1".parse()?,
        ..req("a", "h3")
    };
    ensure!(matches!(
        ipam.assign_ip(&disabled).await,
        Err(IpamError::NotInPool(_))
    ));
    // Another node may assign in a's block unless strictAffinity is on.
    ipam.assign_ip(&AssignIpArgs {
        ip: "10.0.0.71".parse()?,
        ..req("b", "h4")
    })
    .await?;
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        ..IpamConfig::default()
    })
    .await?;
    let err = ipam
        .assign_ip(&AssignIpArgs {
            ip: "10.0.0.72".parse()?,
            ..req("b", "h5")
        })
        .await;
    ensure!(
        matches!(err, Err(IpamError::StrictAffinity { .. })),
        "{err:?}"
    );
    ensure!(ipam.ips_by_handle("h1").await? == vec![ip]);
    let (handle, _) = ipam.assignment_of(ip).await?.unwrap_or_default();
    ensure!(handle.as_deref() == Some("h1"));
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn ipv6_and_reservations(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "v6", "fd00::/120", 122, |_| {}).await?;
    add_pool(&f.ds, "v4", "10.0.0.0/28", 28, |_| {}).await?;
    add_reservation(&f.ds, "r", &["10.0.0.0/30"]).await?;
    add_node(&f.ds, "a", &[]).await?;
    let (ipam, _) = ipam(f);
    let mut req = args("a", "dual", 3);
    req.num_v6 = 2;
    let got = ipam.auto_assign(&req).await?;
    ensure!(
        got.v6.len() == 2 && got.v6.iter().all(|n| n.prefix_len() == 122),
        "{got:?}"
    );
    for n in &got.v4 {
        let IpAddr::V4(a) = n.addr() else {
            bail!("IPv4 expected: {n}")
        };
        ensure!(a.octets()[3] >= 4, "reserved addresses skipped: {got:?}");
    }
    let v6block = got.v6[0].trunc().to_string();
    ensure!(f.ds.get(&keys::block_key(&v6block)).await?.is_some());
    ensure!(raw(f, &keys::affinity_key("a", &v6block)).await?.is_some());
    // 12 assignable v4 addresses in total: asking for 10 more fails whole (v6 too is rolled back).
    let mut big = args("a", "big", 10);
    big.num_v6 = 1;
    ensure!(ipam.auto_assign(&big).await.is_err());
    ensure!(raw(f, &keys::handle_key("big")).await?.is_none());
    ensure!(ipam.release_by_handle("dual").await? == 5);
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

async fn blocks_of_pools_that_stop_selecting_the_node_are_released(f: &Fixture) -> Result<()> {
    add_pool(&f.ds, "a-rack-x", "10.1.0.0/24", 26, |p| {
        p.spec.node_selector = Some("rack == 'x'".into())
    })
    .await?;
    add_pool(&f.ds, "b-everyone", "10.2.0.0/24", 26, |_| {}).await?;
    add_node(&f.ds, "n", &[("rack", "x")]).await?;
    let (ipam, _) = ipam(f);
    let mut req = args("n", "h1", 1);
    req.ipv4_pools = vec!["a-rack-x".into()];
    let first = ipam.auto_assign(&req).await?;
    let block_cidr = first.v4[0].trunc().to_string();
    ipam.release_by_handle("h1").await?;
    ensure!(
        raw(f, &keys::affinity_key("n", &block_cidr))
            .await?
            .is_some(),
        "kept while selected"
    );

    // The node moves racks: its empty block in the rack pool is given up on the next request.
    let rs = calico_datastore::resources::ResourceStore::new(f.ds.clone());
    let mut node = rs.get(calico_api::Kind::Node, None, "n").await?;
    node.metadata_mut().labels = Some([("rack".to_string(), "y".to_string())].into());
    rs.update(node).await?;
    let got = ipam.auto_assign(&args("n", "h2", 1)).await?;
    ensure!(
        "10.2.0.0/24".parse::<IpNet>()?.contains(&got.v4[0].addr()),
        "{got:?}"
    );
    ensure!(
        raw(f, &keys::affinity_key("n", &block_cidr))
            .await?
            .is_none()
    );
    ensure!(
        f.ds.get(&keys::block_key(&block_cidr)).await?.is_none(),
        "empty block deleted"
    );
    ensure!(check(f.ds.as_ref()).await?.is_clean());
    Ok(())
}

both_backends!(
    stored_layout_and_release,
    pool_selection,
    borrowing_and_exhaustion,
    block_limit,
    reclaim_empty_block_after_min_age,
    crash_recovery,
    assign_specific_address,
    ipv6_and_reservations,
    blocks_of_pools_that_stop_selecting_the_node_are_released,
);
