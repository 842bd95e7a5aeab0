//! Felix end to end, issue 5 (d): from the syncer updates of a cluster with 5,000 remote /26
//! blocks (100 remote nodes in the local node's subnet, a CrossSubnet pool, so every block is
//! `<block> via <node ip> dev eth1 proto 80 onlink`) to those routes in the kernel:
//! `CalcGraph::apply` of every update + `InSync`, then one `Reconciler::apply` (kernel read,
//! one netlink batch). In the same round, in a second fresh namespace, `ip -batch` adds the very
//! routes Felix computed (rendered by `render::route_line`): the peer.
//!
//! `cargo bench -p calico-felix --bench felix_routes [-- --blocks N --rounds R]` prints a
//! Markdown table (and writes it to $BENCH_OUT when set). Needs root and iproute2.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use calico_dataplane::testns::TestNetns;
use calico_dataplane::{Family, Netlink, NftCommand, ProcSys, RouteFilter, Rtnl};
use calico_datastore::KeyValue;
use calico_datastore::keys;
use calico_datastore::syncer::SyncUpdate;
use calico_felix::reconcile::{Dataplane, Reconciler};
use calico_felix::render::route_line;
use calico_felix::{CalcGraph, DesiredState, LocalFacts};
use calico_ipam::AllocationBlock;
use serde_json::json;

type Result<T> = std::result::Result<T, String>;

const REMOTE_NODES: usize = 100;
const LOCAL: &str = "bench-a";

fn put(key: String, value: Vec<u8>, rev: i64) -> SyncUpdate {
    SyncUpdate::Put(KeyValue {
        key,
        value,
        create_revision: rev,
        mod_revision: rev,
        lease: None,
    })
}

/// What a syncer delivers for the cluster: pool, local node, remote nodes, `blocks` blocks
/// (round-robin over the remote nodes), then `InSync`.
fn updates(blocks: usize) -> Result<Vec<SyncUpdate>> {
    let mut out = Vec::new();
    let mut rev = 0;
    let mut next = || {
        rev += 1;
        rev
    };
    let pool = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "bench"},
        "spec": {"cidr": "10.128.0.0/12", "blockSize": 26, "vxlanMode": "CrossSubnet"}});
    out.push(put(
        keys::resource_key(calico_api::Kind::IPPool, None, "bench"),
        pool.to_string().into_bytes(),
        next(),
    ));
    let node = |name: &str, ip: String| {
        let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": name}, "spec": {"bgp": {"ipv4Address": ip}}});
        (
            keys::resource_key(calico_api::Kind::Node, None, name),
            v.to_string().into_bytes(),
        )
    };
    let (k, v) = node(LOCAL, "10.0.0.2/24".into());
    out.push(put(k, v, next()));
    for i in 0..REMOTE_NODES {
        let (k, v) = node(&format!("bench-n{i}"), format!("10.0.0.{}/24", 10 + i));
        out.push(put(k, v, next()));
    }
    for (i, cidr) in calico_dataplane::bench::remote_blocks(blocks)
        .into_iter()
        .enumerate()
    {
        let b = AllocationBlock::new(cidr, Some(format!("host:bench-n{}", i % REMOTE_NODES)), 1)
            .map_err(|e| format!("block {cidr}: {e}"))?;
        out.push(put(keys::block_key(&cidr.to_string()), b.to_json(), next()));
    }
    out.push(SyncUpdate::InSync);
    Ok(out)
}

struct Round {
    calc: Duration,
    reconcile: Duration,
    ip_batch: Duration,
    routes: usize,
}

/// Felix into one fresh namespace, `ip -batch` of the same routes into another.
fn round(updates: &[SyncUpdate], expected: usize) -> Result<Round> {
    let (ns, _peer) = TestNetns::with_uplink("10.0.0.2/24", Some("10.0.0.1/24"));
    let start = Instant::now();
    let mut graph = CalcGraph::new(LocalFacts {
        node_name: LOCAL.into(),
        uplink: Some("eth1".into()),
        host_mtu: 1500,
    });
    for u in updates {
        if let Some(e) = graph.apply(u).error {
            return Err(format!("calc graph refused an update: {e}"));
        }
    }
    let calc = start.elapsed();
    let state: &DesiredState = graph.state();
    // The reconciler runs inside the namespace, as calico-node runs inside its node's.
    let report = ns
        .open()
        .run(|| {
            let mut rtnl = Netlink::open().map_err(|e| e.to_string())?;
            let mut sysctl = ProcSys::default();
            let mut nft = NftCommand::new();
            let mut dp = Dataplane {
                rtnl: &mut rtnl,
                sysctl: &mut sysctl,
                nft: &mut nft,
            };
            Reconciler::new()
                .apply(&mut dp, state)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??;
    let reconcile = start.elapsed() - calc;
    if !report.is_clean() {
        return Err(format!("reconcile not clean: {report:?}"));
    }
    let routes = count_proto80(&ns)?;
    if routes != expected {
        return Err(format!(
            "Felix programmed {routes} routes, expected {expected}"
        ));
    }

    let (peer_ns, _peer2) = TestNetns::with_uplink("10.0.0.2/24", Some("10.0.0.1/24"));
    let mut script = String::new();
    for r in state.routes.values() {
        let _ = writeln!(script, "route add {}", route_line(r));
    }
    let path = std::env::temp_dir().join(format!(
        "calico-felix-bench-{}-{}.batch",
        std::process::id(),
        peer_ns.name()
    ));
    std::fs::write(&path, &script).map_err(|e| format!("write {}: {e}", path.display()))?;
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["-n", peer_ns.name(), "-batch"])
        .arg(&path)
        .output();
    let ip_batch = start.elapsed();
    let _ = std::fs::remove_file(&path);
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("ip -batch: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => return Err(format!("run ip: {e}")),
    }
    let peer_routes = count_proto80(&peer_ns)?;
    if peer_routes != expected {
        return Err(format!("ip -batch left {peer_routes} of {expected} routes"));
    }
    Ok(Round {
        calc,
        reconcile,
        ip_batch,
        routes,
    })
}

fn count_proto80(ns: &TestNetns) -> Result<usize> {
    let mut nl = Netlink::open_in(&ns.open()).map_err(|e| e.to_string())?;
    let routes = nl
        .routes(&RouteFilter {
            protocol: Some(80),
            ..RouteFilter::main(Family::V4)
        })
        .map_err(|e| e.to_string())?;
    Ok(routes.len())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    let (mut blocks, mut rounds) = (5000usize, 5usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok());
        match a.as_str() {
            "--blocks" => blocks = num().ok_or("--blocks needs a number")?,
            "--rounds" => rounds = num().ok_or("--rounds needs a number")?.max(1),
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other}; use --blocks N --rounds R"
                ));
            }
        }
    }
    let ups = updates(blocks)?;
    let mut rs = Vec::new();
    for i in 0..rounds {
        let r = round(&ups, blocks).map_err(|e| format!("round {i}: {e}"))?;
        eprintln!(
            "round {i}: calc {:?}, reconcile {:?}, ip -batch {:?}",
            r.calc, r.reconcile, r.ip_batch
        );
        rs.push(r);
    }
    let calc = median(rs.iter().map(|r| r.calc).collect());
    let rec = median(rs.iter().map(|r| r.reconcile).collect());
    let total = median(rs.iter().map(|r| r.calc + r.reconcile).collect());
    let ip = median(rs.iter().map(|r| r.ip_batch).collect());
    let rate = |d: Duration| rs[0].routes as f64 / d.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Felix end to end: {} syncer updates ({blocks} blocks of {REMOTE_NODES} remote nodes) → \
         {} routes in the kernel; {rounds} rounds in fresh namespaces, median.\n",
        ups.len(),
        rs[0].routes
    );
    out.push_str("| step | time ms | routes/s | speed vs ip -batch |\n|---|---|---|---|\n");
    let ratio = |d: Duration| ip.as_secs_f64() / d.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "| Felix calc graph (all updates + InSync) | {} | – | – |",
        ms(calc)
    );
    let _ = writeln!(
        out,
        "| Felix reconciler (kernel read + one netlink batch) | {} | {:.0} | {:.2} |",
        ms(rec),
        rate(rec),
        ratio(rec)
    );
    let _ = writeln!(
        out,
        "| Felix total (updates → routes in the kernel) | {} | {:.0} | {:.2} |",
        ms(total),
        rate(total),
        ratio(total)
    );
    let _ = writeln!(
        out,
        "| `ip -batch` of the same routes (peer) | {} | {:.0} | 1.00 |",
        ms(ip),
        rate(ip)
    );
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(&path, &out).map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(())
}
