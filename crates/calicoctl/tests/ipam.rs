//! `calicoctl ipam` end to end on an embedded datastore: show (pools, blocks, borrowed,
//! configuration, one address), configure, check with a report, release by address and from the
//! report, including the repair of what a crashed allocator leaves.

mod common;

use std::sync::Arc;

use calico_datastore::{Datastore, keys};
use calico_ipam::{AutoAssignArgs, Ipam};
use common::{Ctl, pool};

fn node(name: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n")
}

async fn assign(ipam: &Ipam, node: &str, handle: &str, n: usize) {
    let mut a = AutoAssignArgs::new(node, handle);
    a.num_v4 = n;
    a.attrs.node = Some(node.into());
    a.attrs.pod = Some(format!("pod-{handle}"));
    a.attrs.namespace = Some("default".into());
    if let Err(e) = ipam.auto_assign(&a).await {
        panic!("assign {handle}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_configure_check_release() {
    let ctl = Ctl::embedded();
    let p = ctl.file(
        "pool.yaml",
        &pool("tiny", "10.0.0.0/29", "  blockSize: 30\n"),
    );
    ctl.apply(&p).ok();
    for n in ["node-a", "node-b"] {
        let f = ctl.file(&format!("{n}.yaml"), &node(n));
        ctl.apply(&f).ok();
    }
    let ds = ctl.datastore().await;
    let ipam = Ipam::new(ds.clone());
    assign(&ipam, "node-a", "ha", 6).await;
    assign(&ipam, "node-b", "hb", 1).await;

    let out = ctl.run(&["ipam", "show"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "+----------+-------------+-----------+------------+----------+\n\
         | GROUPING |    CIDR     | IPS TOTAL | IPS IN USE | IPS FREE |\n\
         +----------+-------------+-----------+------------+----------+\n\
         | IP Pool  | 10.0.0.0/29 |         8 | 7 (88%)    | 1 (12%)  |\n\
         +----------+-------------+-----------+------------+----------+\n"
    );
    let out = ctl.run(&["ipam", "show", "--show-blocks"]);
    out.ok();
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("| Block"))
        .collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    assert!(
        rows.iter()
            .any(|r| r.ends_with("|         4 | 4 (100%)   | 0 (0%)   |")),
        "{}",
        out.stdout
    );
    assert!(
        rows.iter()
            .any(|r| r.ends_with("|         4 | 3 (75%)    | 1 (25%)  |")),
        "{}",
        out.stdout
    );

    let out = ctl.run(&["ipam", "show", "--show-borrowed"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one borrowed address: {}", out.stdout);
    assert_eq!(
        lines[1],
        "|    IP    | BORROWING-NODE |    BLOCK    | BLOCK OWNER | TYPE |  ALLOCATED-TO  |"
    );
    assert!(
        lines[3].contains(" | node-b         | 10.0.0."),
        "{}",
        out.stdout
    );
    assert!(
        lines[3].ends_with(" | node-a      | pod  | default/pod-hb |"),
        "{}",
        out.stdout
    );

    let ip = ipam.ips_by_handle("hb").await.unwrap_or_default()[0];
    let out = ctl.run(&["ipam", "show", "--ip", &ip.to_string()]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "IP {ip} is in use\nHandle ID: hb\nActive Owner Attributes:\n  namespace: default\n  node: node-b\n  pod: pod-hb\n"
        )
    );
    assert_eq!(
        ctl.run(&["ipam", "show", "--ip", "10.9.9.9"]).ok().stdout,
        "10.9.9.9 is not assigned\n"
    );

    // configure: upstream's rules and messages.
    let bad = ctl.run(&["ipam", "configure", "--max-blocks-per-host", "3"]);
    bad.failed();
    assert!(
        bad.stderr
            .contains("maxBlocksPerHost requires strictAffinity"),
        "{}",
        bad.stderr
    );
    ctl.run(&[
        "ipam",
        "configure",
        "--strictaffinity=true",
        "--max-blocks-per-host",
        "3",
    ])
    .ok();
    let out = ctl.run(&["ipam", "show", "--show-configuration"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "+--------------------+-------+\n\
         |      PROPERTY      | VALUE |\n\
         +--------------------+-------+\n\
         | StrictAffinity     | true  |\n\
         | AutoAllocateBlocks | true  |\n\
         | MaxBlocksPerHost   | 3     |\n\
         +--------------------+-------+\n"
    );

    // release --ip
    let out = ctl.run(&["ipam", "release", "--ip", &ip.to_string()]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!("Successfully released IP address {ip}\n")
    );
    let again = ctl.run(&["ipam", "release", "--ip", &ip.to_string()]);
    again.failed();
    assert!(
        again
            .stderr
            .contains(&format!("IP address {ip} is not assigned"))
    );

    // A crashed allocator's leftovers: a handle counted up for a block write that never came,
    // and a pending affinity whose block was never created.
    ds.create(
        &keys::handle_key("crashed"),
        br#"{"block":{"10.0.0.0/30":1},"deleted":false}"#.to_vec(),
        None,
    )
    .await
    .unwrap_or_default();
    ds.create(
        &keys::affinity_key("node-b", "10.0.0.4/30"),
        br#"{"state":"pending","deleted":false}"#.to_vec(),
        None,
    )
    .await
    .unwrap_or_default();

    // check: no WorkloadEndpoints exist, so all 6 addresses are leaked; plus the leaked handle
    // and the stale pending affinity.
    let report = ctl.dir.path().join("report.json");
    let report_s = report.display().to_string();
    let out = ctl.run(&["ipam", "check", "-o", &report_s]);
    out.ok();
    assert!(out.stdout.starts_with("Checking IPAM for inconsistencies...\n\nLoading all IPAM blocks...\nFound 2 IPAM blocks.\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Found 6 IPs that are allocated in IPAM but not actually in use.\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Found 1 handles with no matching IPs (and 1 handles with matches).\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("StaleAffinity at /calico/ipam/v2/host/node-b/ipv4/block/10.0.0.4-30"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("Check complete; found 8 problems.\n"),
        "{}",
        out.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(
        json["allocations"].as_object().map(|m| m.len()),
        Some(6),
        "{json}"
    );
    assert_eq!(json["leakedHandles"][0]["ID"], "crashed");

    // release --from-report: refused while the datastore is not locked, unless --force.
    let refused = ctl.run(&["ipam", "release", "--from-report", &report_s]);
    refused.failed();
    assert!(
        refused.stderr.contains("data store is not locked"),
        "{}",
        refused.stderr
    );
    let out = ctl.run(&["ipam", "release", "--from-report", &report_s, "--force"]);
    out.ok();
    assert!(
        out.stdout
            .contains("Releasing 6 old IPs...\nReleased 6 IPs successfully\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Released 1 handles; 0 skipped; 0 errors.\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("You may now unlock the data store.\n"),
        "{}",
        out.stdout
    );

    ctl.ipam_check_clean();
    let report = calico_ipam::check(ds.as_ref()).await.unwrap_or_default();
    assert!(report.is_clean() && report.in_use() == 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_needs_a_lock_and_replaces_the_pool() {
    let ctl = Ctl::embedded();
    let p = ctl.file(
        "pool.yaml",
        &pool(
            "big",
            "10.1.0.0/24",
            "  blockSize: 28\n  natOutgoing: true\n",
        ),
    );
    ctl.apply(&p).ok();
    let refused = ctl.run(&["ipam", "split", "2", "--name", "big"]);
    refused.failed();
    assert!(
        refused.stderr.contains("datastore is not locked"),
        "{}",
        refused.stderr
    );

    let ds = ctl.datastore().await;
    let mut ci = calico_api::resources::cluster::ClusterInformation::new("default");
    ci.spec.datastore_ready = Some(false);
    let rs = calico_datastore::resources::ResourceStore::new(ds.clone());
    if let Err(e) = rs
        .create(calico_api::Resource::ClusterInformation(ci))
        .await
    {
        panic!("lock: {e}");
    }
    let bad = ctl.run(&["ipam", "split", "3", "--cidr", "10.1.0.0/24"]);
    bad.failed();
    assert!(
        bad.stderr.contains("not a valid power of 2"),
        "{}",
        bad.stderr
    );

    let out = ctl.run(&["ipam", "split", "2", "--cidr", "10.1.0.0/24"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "IP Pool big was successfully split into 2 smaller pools.Created split-big-0 with CIDR 10.1.0.0/25.\n\
         Created split-big-1 with CIDR 10.1.0.128/25.\n\
         Please refer to the documentation for final steps."
    );
    let pools = ctl.run(&["get", "ippools", "-o", "wide"]);
    pools.ok();
    assert!(!pools.stdout.contains("big "), "{}", pools.stdout);
    assert!(
        pools.stdout.contains("split-big-0   10.1.0.0/25"),
        "{}",
        pools.stdout
    );
    assert!(
        pools.stdout.contains("split-big-1   10.1.0.128/25"),
        "{}",
        pools.stdout
    );
}

/// The issue's proof through the binary: concurrent allocators for 8 nodes fill a small pool
/// (borrowing included), every address gets a WorkloadEndpoint, then `ipam show` totals are
/// exact and `ipam check` finds no problem. Both backends.
async fn concurrent_allocations_show_exact_totals_and_check_clean(
    ctl: &Ctl,
    ds: Arc<dyn Datastore>,
) {
    let p = ctl.file("pool.yaml", &pool("p", "10.30.0.0/24", "  blockSize: 28\n"));
    ctl.apply(&p).ok();
    for i in 0..8 {
        let f = ctl.file(&format!("n{i}.yaml"), &node(&format!("node-{i}")));
        ctl.apply(&f).ok();
    }
    // 240 of 256 addresses in 16 blocks of 16: four nodes want 40 (3 blocks each), four want 20
    // (2 blocks each): 20 blocks' worth for 16 blocks, so some node must borrow.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ipam = Ipam::new(ds.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for j in 0..(if i < 4 { 40 } else { 20 }) {
                let node = format!("node-{i}");
                let mut a = AutoAssignArgs::new(node.clone(), format!("k8s-pod-network.c{i}-{j}"));
                a.attrs.node = Some(node);
                a.attrs.pod = Some(format!("pod-{i}-{j}"));
                a.attrs.namespace = Some("default".into());
                match ipam.auto_assign(&a).await {
                    Ok(r) => got.push((i, j, r.v4[0].addr())),
                    Err(e) => panic!("node-{i} #{j}: {e}"),
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(v) => all.extend(v),
            Err(e) => panic!("allocator task: {e}"),
        }
    }
    let unique: std::collections::BTreeSet<_> = all.iter().map(|(_, _, ip)| *ip).collect();
    assert_eq!(unique.len(), 240, "every address handed out once");

    let rs = calico_datastore::resources::ResourceStore::new(ds.clone());
    for (i, j, ip) in &all {
        let mut w = calico_api::resources::endpoint::WorkloadEndpoint::new("");
        w.metadata.namespace = Some("default".into());
        w.spec.orchestrator = "k8s".into();
        w.spec.node = format!("node-{i}");
        w.spec.pod = format!("pod-{i}-{j}");
        w.spec.endpoint = "eth0".into();
        w.spec.ip_networks = vec![format!("{ip}/32")];
        if let Err(e) = rs.create(calico_api::Resource::WorkloadEndpoint(w)).await {
            panic!("WEP for {ip}: {e}");
        }
    }

    let out = ctl.run(&["ipam", "show"]);
    out.ok();
    assert!(
        out.stdout
            .contains("| IP Pool  | 10.30.0.0/24 |       256 | 240 (94%)  | 16 (6%)  |"),
        "{}",
        out.stdout
    );
    let borrowed = ctl.run(&["ipam", "show", "--show-borrowed"]);
    borrowed.ok();
    assert!(
        borrowed.stdout.lines().count() > 4,
        "some node borrowed: {}",
        borrowed.stdout
    );
    let check = ctl.ipam_check_clean();
    assert!(
        check.stdout.contains("Found 240 workload IPs.\n"),
        "{}",
        check.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_embedded() {
    let ctl = Ctl::embedded();
    let ds = ctl.datastore().await;
    concurrent_allocations_show_exact_totals_and_check_clean(&ctl, ds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_etcd() {
    let etcd = match calico_datastore::testutil::EtcdServer::start() {
        Ok(e) => e,
        Err(e) => panic!("etcd is needed for this test (apt package etcd-server): {e}"),
    };
    let ctl = Ctl::etcd(&etcd.endpoint());
    let ds = ctl.datastore().await;
    concurrent_allocations_show_exact_totals_and_check_clean(&ctl, ds).await;
}

/// `delete node` releases the node from IPAM as upstream's node deletion does: its
/// WorkloadEndpoints' addresses are freed and the endpoints deleted, its empty blocks and
/// affinities go, other nodes keep theirs, and `ipam check` stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_node_releases_its_ipam() {
    let ctl = Ctl::embedded();
    let p = ctl.file("pool.yaml", &pool("p", "10.40.0.0/26", "  blockSize: 29\n"));
    ctl.apply(&p).ok();
    for n in ["node-x", "node-y"] {
        let f = ctl.file(&format!("{n}.yaml"), &node(n));
        ctl.apply(&f).ok();
    }
    let ds = ctl.datastore().await;
    let ipam = Ipam::new(ds.clone());
    let rs = calico_datastore::resources::ResourceStore::new(ds.clone());
    for (i, n) in ["node-y", "node-x", "node-x"].into_iter().enumerate() {
        let handle = format!("h{i}");
        assign(&ipam, n, &handle, 1).await;
        let ip = match ipam.ips_by_handle(&handle).await {
            Ok(ips) if ips.len() == 1 => ips[0],
            other => panic!("{handle}: {other:?}"),
        };
        let mut w = calico_api::resources::endpoint::WorkloadEndpoint::new("");
        w.metadata.namespace = Some("default".into());
        w.spec.orchestrator = "k8s".into();
        w.spec.node = n.into();
        w.spec.pod = format!("pod-{i}");
        w.spec.endpoint = "eth0".into();
        w.spec.ip_networks = vec![format!("{ip}/32")];
        if let Err(e) = rs.create(calico_api::Resource::WorkloadEndpoint(w)).await {
            panic!("WEP for {ip}: {e}");
        }
    }

    ctl.run(&["delete", "node", "node-x"]).ok();
    let weps = ctl.run(&["get", "workloadendpoints", "-A", "-o", "name"]);
    weps.ok();
    assert!(!weps.stdout.contains("node--x"), "{}", weps.stdout);
    match ds.list(&keys::host_affinity_prefix("node-x")).await {
        Ok(l) => assert!(l.kvs.is_empty(), "affinities left: {:?}", l.kvs),
        Err(e) => panic!("{e}"),
    }
    let out = ctl.run(&["ipam", "show"]);
    out.ok();
    assert!(
        out.stdout
            .contains("| IP Pool  | 10.40.0.0/26 |        64 | 1 (2%)     | 63 (98%) |"),
        "{}",
        out.stdout
    );
    ctl.ipam_check_clean();
}
