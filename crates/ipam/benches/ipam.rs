//! IPAM benchmark: `auto_assign` (one IPv4 address per call, a distinct handle each) with 1, 8
//! and 32 concurrent allocators, all on one node or spread over 8 nodes, on the embedded store
//! and on etcd; then `release_by_handle` of the same handles. In the same run, the two yardsticks
//! at the same concurrency levels:
//! - the ceiling: raw etcd-client transactions (compare create_revision = 0, put of 200 B) on
//!   distinct keys, against the same etcd server, right before and right after our etcd rows
//!   (the ratio uses their mean), and once more with values as large as a full /26 block;
//! - the peer: the reference `host-local` IPAM plugin (containernetworking-plugins,
//!   `/usr/lib/cni/host-local`), one process per allocation as a container runtime runs it
//!   (CNI_COMMAND=ADD, then DEL), with its dataDir in a temp dir.
//!
//! On etcd, the reads and transactions per allocation are counted by etcd itself
//! (`grpc_server_handled_total` on its /metrics), with the size of the blocks written.
//!
//! `cargo bench -p calico-ipam --bench ipam [-- --ops N] [--only etcd-8x8]` prints a Markdown
//! table (and writes it to $BENCH_OUT when set); `-- --help` lists the options. Each
//! configuration uses its own nodes (created first) in one /16 pool with /26 blocks, so every
//! configuration starts by claiming its blocks, as a fresh node does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use calico_api::Resource;
use calico_api::resources::ippool::IPPool;
use calico_api::resources::node::Node;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::testutil::EtcdServer;
use calico_datastore::testutil::etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use calico_datastore::{Datastore, DatastoreConfig, connect};
use calico_ipam::{AutoAssignArgs, Ipam};

const CONCURRENCY: [usize; 3] = [1, 8, 32];
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
/// Bytes of padding that make a raw value as large as a full /26 block here (measured: see the
/// block sizes the run prints).
const BLOCK_SIZED: usize = 8 * 1024;

/// Latencies of one phase and its wall-clock time.
#[derive(Default, Clone)]
struct Sample {
    lat: Vec<Duration>,
    wall: Duration,
    errors: usize,
    first_error: Option<String>,
}

impl Sample {
    fn pct(&self, p: f64) -> Duration {
        calico_datastore::testutil::percentile(&self.lat, p)
    }
    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn merge(&mut self, r: Result<Duration>) {
        match r {
            Ok(d) => self.lat.push(d),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
}

/// When the process started (for `mark`).
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Prints when a phase starts or ends, in seconds since the process started, so a profile of the
/// whole run (`perf record`) can be cut to one phase (`perf report --time`).
fn mark(what: &str) {
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("phase: {what} at {:.3} s", t.as_secs_f64());
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Runs `per` operations in each of `workers` tasks; `op(worker, i)` is one timed operation.
async fn phase<F, Fut>(workers: usize, per: usize, op: F) -> Result<Sample>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per);
            for i in 0..per {
                let t0 = Instant::now();
                out.push(op(w, i).await.map(|()| t0.elapsed()));
            }
            out
        }));
    }
    let mut s = Sample::default();
    for t in tasks {
        for r in t.await? {
            s.merge(r);
        }
    }
    s.wall = start.elapsed();
    Ok(s)
}

/// One table row: assignment and release samples of one configuration.
struct Row {
    target: String,
    layout: &'static str,
    workers: usize,
    assign: Sample,
    release: Option<Sample>,
}

/// The rows as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| target | layout | allocators | allocations | errors | p50 ms | p99 ms | allocs/s \
         | release p50 ms | releases/s |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&r.line());
    }
    out
}

impl Row {
    fn line(&self) -> String {
        let (rel_p50, rel_rate) = match &self.release {
            Some(r) => (ms(r.pct(0.5)), format!("{:.0}", r.rate())),
            None => ("–".into(), "–".into()),
        };
        let errors =
            self.assign.errors + self.release.as_ref().map(|r| r.errors).unwrap_or_default();
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            self.target,
            self.layout,
            self.workers,
            self.assign.lat.len(),
            errors,
            ms(self.assign.pct(0.5)),
            ms(self.assign.pct(0.99)),
            self.assign.rate(),
            rel_p50,
            rel_rate
        )
    }
}

async fn setup_pool(ds: &Arc<dyn Datastore>) -> Result<()> {
    let mut p = IPPool::new("bench-pool");
    p.spec.cidr = "10.0.0.0/16".into();
    p.spec.block_size = Some(26);
    ResourceStore::new(ds.clone())
        .create(Resource::IPPool(p))
        .await?;
    Ok(())
}

/// etcd's own count of the requests it handled, by method (`grpc_server_handled_total` from
/// its /metrics endpoint on the client port): (Range, Txn).
async fn etcd_requests(addr: &str) -> Result<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let (mut range, mut txn) = (0.0, 0.0);
    for line in body
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
    {
        let value: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("grpc_method=\"Range\"") {
            range += value;
        } else if line.contains("grpc_method=\"Txn\"") {
            txn += value;
        }
    }
    ensure!(
        range > 0.0,
        "no request counts in etcd's /metrics at {addr}"
    );
    Ok((range, txn))
}

/// What one configuration measured: assignment and release samples and, on etcd, the reads and
/// transactions per allocation of the assignment phase.
struct Measured {
    assign: Sample,
    release: Sample,
    per_alloc: Option<(f64, f64)>,
    /// On etcd: total and largest size of this configuration's blocks, and how many.
    block_bytes: (usize, usize, usize),
    /// With etcd's pid: CPU µs per allocation of the assignment phase (this process, etcd).
    assign_cpu: Option<(f64, f64)>,
}

/// Our allocator on one backend: one configuration (layout × allocators). `metrics`: etcd's
/// client address (host:port) when the backend is etcd; `etcd_pid`: measure CPU per allocation.
async fn ours(
    ds: &Arc<dyn Datastore>,
    tag: &str,
    nodes: usize,
    workers: usize,
    per: usize,
    metrics: Option<&str>,
    etcd_pid: Option<u32>,
) -> Result<Measured> {
    let store = ResourceStore::new(ds.clone());
    let names: Vec<String> = (0..nodes).map(|n| format!("{tag}-node-{n}")).collect();
    for n in &names {
        store.create(Resource::Node(Node::new(n))).await?;
    }
    let ipam = Ipam::new(ds.clone());
    let names = Arc::new(names);
    let handle = |tag: &str, w: usize, i: usize| format!("{tag}.w{w}.{i}");
    let (ip2, names2, tag2) = (ipam.clone(), names.clone(), tag.to_string());
    let before = match metrics {
        Some(m) => Some(etcd_requests(m).await?),
        None => None,
    };
    mark(&format!("{tag} assign start"));
    let assign_phase = phase(workers, per, move |w, i| {
        let (ipam, names, tag) = (ip2.clone(), names2.clone(), tag2.clone());
        async move {
            let node = &names[w % names.len()];
            let mut req = AutoAssignArgs::new(node.clone(), handle(&tag, w, i));
            req.attrs.node = Some(node.clone());
            req.attrs.pod = Some(format!("pod-{w}-{i}"));
            req.attrs.namespace = Some("bench".into());
            let got = ipam.auto_assign(&req).await?;
            ensure!(got.v4.len() == 1, "expected 1 address, got {:?}", got.v4);
            Ok(())
        }
    });
    let (assign, assign_cpu) = match etcd_pid {
        Some(pid) => {
            let (s, client, etcd) = cpu_per_op(pid, workers * per, assign_phase).await?;
            (s, Some((client, etcd)))
        }
        None => (assign_phase.await?, None),
    };
    mark(&format!("{tag} assign end"));
    let per_alloc = match (metrics, before) {
        (Some(m), Some((r0, t0))) => {
            let (r1, t1) = etcd_requests(m).await?;
            let n = assign.lat.len().max(1) as f64;
            // The metrics request itself is no Range/Txn; nothing else talks to this etcd.
            Some(((r1 - r0) / n, (t1 - t0) / n))
        }
        _ => None,
    };
    let block_bytes = if metrics.is_some() {
        let blocks = ds
            .list(&calico_datastore::keys::block_prefix(false))
            .await?
            .kvs;
        let mine: Vec<usize> = blocks
            .iter()
            .filter(|kv| kv.value.windows(tag.len()).any(|w| w == tag.as_bytes()))
            .map(|kv| kv.value.len())
            .collect();
        (
            mine.iter().sum::<usize>(),
            mine.iter().max().copied().unwrap_or(0),
            mine.len(),
        )
    } else {
        (0, 0, 0)
    };
    let tag2 = tag.to_string();
    mark(&format!("{tag} release start"));
    let release = phase(workers, per, move |w, i| {
        let (ipam, tag) = (ipam.clone(), tag2.clone());
        async move {
            ipam.release_by_handle(&handle(&tag, w, i)).await?;
            Ok(())
        }
    })
    .await?;
    Ok(Measured {
        assign,
        release,
        per_alloc,
        block_bytes,
        assign_cpu,
    })
}

/// The ceiling: one etcd transaction (create-if-absent) per operation, distinct keys.
async fn raw_etcd(
    client: &Client,
    tag: &str,
    workers: usize,
    per: usize,
    pad: usize,
) -> Result<Sample> {
    let client = client.clone();
    let tag = tag.to_string();
    let value = format!("{{\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes();
    phase(workers, per, move |w, i| {
        let mut c = client.clone();
        let key = format!("/bench/raw/{tag}/{w}/{i}");
        let value = value.clone();
        async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value, None)]);
            let r = c.txn(txn).await?;
            ensure!(r.succeeded(), "{key} exists");
            Ok(())
        }
    })
    .await
}

/// Runs host-local once (a blocking child process, on tokio's blocking pool); `ADD` must print a
/// result with one address.
async fn host_local(conf: Arc<Vec<u8>>, command: &'static str, id: String) -> Result<()> {
    tokio::task::spawn_blocking(move || host_local_blocking(&conf, command, &id)).await?
}

fn host_local_blocking(conf: &[u8], command: &str, id: &str) -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(HOST_LOCAL)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("running {HOST_LOCAL} (apt package containernetworking-plugins)")
        })?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(conf)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "host-local {command} {id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if command == "ADD" {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let n = v["ips"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(n == 1, "host-local ADD {id}: expected 1 address, got {v}");
    }
    Ok(())
}

async fn peer(dir: &Path, tag: &str, workers: usize, per: usize) -> Result<(Sample, Sample)> {
    let data: PathBuf = dir.join(format!("host-local-{tag}"));
    let body = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("bench-{tag}"),
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.1.0.0/16"}]],
            "dataDir": data,
        }
    });
    let conf = Arc::new(serde_json::to_vec(&body)?);
    let tag = tag.to_string();
    let (c2, t2) = (conf.clone(), tag.clone());
    let add = phase(workers, per, move |w, i| {
        let (conf, id) = (c2.clone(), format!("{t2}-{w}-{i}"));
        host_local(conf, "ADD", id)
    })
    .await?;
    let del = phase(workers, per, move |w, i| {
        let (conf, id) = (conf.clone(), format!("{tag}-{w}-{i}"));
        host_local(conf, "DEL", id)
    })
    .await?;
    Ok((add, del))
}

const USAGE: &str = "\
usage: cargo bench -p calico-ipam --bench ipam -- [--ops N] [--only BACKEND-NODESxALLOCATORS]
  --ops N       allocations per configuration (default 1000)
  --only CONF   run one configuration of ours and its raw etcd ceiling (before and after) and
                nothing else (no host-local, no block-sized raw row), e.g. --only etcd-8x8 for
                the goal's row, or embedded-1x32; BACKEND is etcd or embedded, NODES 1 or 8,
                ALLOCATORS 1, 8 or 32. Meant for profiling and quick before/after comparisons.
  --help        this text
";

/// `--only BACKEND-NODESxALLOCATORS`: (embedded?, nodes, allocators).
fn parse_only(s: &str) -> Result<(bool, usize, usize)> {
    let bad =
        || anyhow::anyhow!("--only {s}: expected BACKEND-NODESxALLOCATORS, e.g. etcd-8x8\n{USAGE}");
    let (backend, conf) = s.split_once('-').ok_or_else(bad)?;
    let (nodes, workers) = conf.split_once('x').ok_or_else(bad)?;
    let embedded = match backend {
        "etcd" => false,
        "embedded" => true,
        _ => return Err(bad()),
    };
    let nodes: usize = nodes.parse().map_err(|_| bad())?;
    let workers: usize = workers.parse().map_err(|_| bad())?;
    ensure!(
        [1, 8].contains(&nodes) && CONCURRENCY.contains(&workers),
        "--only {s}: NODES must be 1 or 8 and ALLOCATORS one of {CONCURRENCY:?}"
    );
    Ok((embedded, nodes, workers))
}

#[tokio::main]
async fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let ops: usize = value("--ops").and_then(|s| s.parse().ok()).unwrap_or(1000);
    let only = value("--only").map(|s| parse_only(s)).transpose()?;
    if let Some(conf) = only {
        return only_one(conf, ops).await;
    }
    ensure!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} missing: install the apt package containernetworking-plugins"
    );

    let dir = tempfile::tempdir()?;
    let etcd = EtcdServer::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let embedded = connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: dir.path().join("bench.db"),
    }))
    .await?;
    let ours_etcd = connect(&DatastoreConfig::Etcd(etcd.config())).await?;
    let raw = Client::connect([etcd.endpoint()], None).await?;
    let backends: [(&str, &Arc<dyn Datastore>); 2] =
        [("embedded (SQLite WAL)", &embedded), ("etcd", &ours_etcd)];
    for (_, ds) in backends {
        setup_pool(ds).await?;
    }

    let metrics_addr = etcd.endpoint().trim_start_matches("http://").to_string();
    let mut rows: Vec<Row> = Vec::new();
    // (layout, allocators, (reads, transactions) per allocation, block bytes) on etcd.
    let mut counts = Vec::new();
    // (target, layout, workers) → allocations per second.
    let mut rates: HashMap<(String, &str, usize), f64> = HashMap::new();
    for workers in CONCURRENCY {
        let per = ops.div_ceil(workers);
        // The ceiling right before and right after our etcd runs (the machine may be shared:
        // the ratio uses the mean of the two), then the same with block-sized values.
        let before = raw_etcd(&raw, &format!("w{workers}-a"), workers, per, 200).await?;
        for (bi, (name, ds)) in backends.iter().enumerate().rev() {
            for (layout, nodes) in [("1 node", 1usize), ("8 nodes", 8)] {
                let tag = format!("b{bi}-n{nodes}-w{workers}");
                let metrics = (*name == "etcd").then_some(metrics_addr.as_str());
                let m = ours(ds, &tag, nodes, workers, per, metrics, None).await?;
                rates.insert((name.to_string(), layout, workers), m.assign.rate());
                if let Some(per_alloc) = m.per_alloc {
                    counts.push((layout, workers, per_alloc, m.block_bytes));
                }
                rows.push(Row {
                    target: format!("calico-ipam, {name}"),
                    layout,
                    workers,
                    assign: m.assign,
                    release: Some(m.release),
                });
                eprintln!("done: {name}, {layout}, {workers} allocator(s)");
            }
            if *name != "etcd" {
                continue;
            }
            let after = raw_etcd(&raw, &format!("w{workers}-b"), workers, per, 200).await?;
            let big = raw_etcd(&raw, &format!("w{workers}-c"), workers, per, BLOCK_SIZED).await?;
            rates.insert(
                ("raw".into(), "", workers),
                (before.rate() + after.rate()) / 2.0,
            );
            for (target, s) in [
                ("raw etcd txn (ceiling), before".to_string(), before.clone()),
                ("raw etcd txn (ceiling), after".to_string(), after),
                (
                    format!("raw etcd txn, {} KiB values", BLOCK_SIZED / 1024),
                    big,
                ),
            ] {
                rows.push(Row {
                    target,
                    layout: "distinct keys",
                    workers,
                    assign: s,
                    release: None,
                });
            }
        }
        let (a, r) = peer(dir.path(), &format!("w{workers}"), workers, per).await?;
        rates.insert(("host-local".into(), "", workers), a.rate());
        rows.push(Row {
            target: "host-local (peer)".into(),
            layout: "1 node",
            workers,
            assign: a,
            release: Some(r),
        });
        eprintln!("done: raw etcd and host-local, {workers} allocator(s)");
    }

    let mut out = table(&rows);
    out.push_str(
        "\nRatios (allocations per second, same run; raw etcd = mean of the ceiling measured \
         right before and right after our etcd rows). Goal: calico-ipam over 8 nodes on etcd \
         ≥ 0.50 of the raw etcd transaction rate.\n\n",
    );
    out.push_str(
        "| allocators | etcd 8 nodes / raw etcd txn | etcd 1 node / raw etcd txn \
         | etcd 8 nodes / host-local | embedded 8 nodes / host-local |\n|---|---|---|---|---|\n",
    );
    for w in CONCURRENCY {
        let r = |t: &str, l: &'static str| rates[&(t.to_string(), l, w)];
        let raw = r("raw", "");
        let hl = r("host-local", "");
        out.push_str(&format!(
            "| {w} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r("etcd", "8 nodes") / raw,
            r("etcd", "1 node") / raw,
            r("etcd", "8 nodes") / hl,
            r("embedded (SQLite WAL)", "8 nodes") / hl,
        ));
    }
    out.push_str(
        "\netcd requests per allocation (assignment phase, block claims included; counted by \
         etcd: grpc_server_handled_total), and the size of the blocks each transaction \
         rewrites.\n\n| layout | allocators | reads (Range) | transactions (Txn) | blocks | \
         mean block bytes | largest block bytes |\n|---|---|---|---|---|---|---|\n",
    );
    for &(layout, w, (reads, txns), (total, max, n)) in &counts {
        let mean = total / n.max(1);
        out.push_str(&format!(
            "| {layout} | {w} | {reads:.2} | {txns:.2} | {n} | {mean} | {max} |\n"
        ));
    }
    emit(out, &rows, "\n")?;
    drop(etcd);
    Ok(())
}

/// CPU time used so far by every live thread of process `pid` (/proc/PID/task/*/schedstat, in
/// nanoseconds: precise where /proc/PID/stat counts clock ticks).
fn cpu_time(pid: u32) -> Result<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("{}: {text:?}", path.display()))?;
    }
    Ok(Duration::from_nanos(ns))
}

/// CPU time of this process and of etcd, in microseconds per operation, over `f`.
async fn cpu_per_op<T, Fut>(etcd: u32, ops: usize, f: Fut) -> Result<(T, f64, f64)>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let me = std::process::id();
    let (c0, e0) = (cpu_time(me)?, cpu_time(etcd)?);
    let out = f.await?;
    let (c1, e1) = (cpu_time(me)?, cpu_time(etcd)?);
    let per = |a: Duration, b: Duration| (b - a).as_secs_f64() * 1e6 / ops.max(1) as f64;
    Ok((out, per(c0, c1), per(e0, e1)))
}

/// `--only`: one configuration of ours between two raw etcd ceilings, and their ratio.
async fn only_one((embedded, nodes, workers): (bool, usize, usize), ops: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = EtcdServer::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (name, ds) = if embedded {
        let cfg = DatastoreConfig::Embedded(EmbeddedConfig {
            path: dir.path().join("bench.db"),
        });
        ("embedded (SQLite WAL)", connect(&cfg).await?)
    } else {
        (
            "etcd",
            connect(&DatastoreConfig::Etcd(etcd.config())).await?,
        )
    };
    setup_pool(&ds).await?;
    let raw = Client::connect([etcd.endpoint()], None).await?;
    let metrics_addr = etcd.endpoint().trim_start_matches("http://").to_string();
    let per = ops.div_ceil(workers);
    let n = per * workers;
    let etcd_pid = etcd.pid().context("etcd is not running")?;
    let (before, rc0, re0) =
        cpu_per_op(etcd_pid, n, raw_etcd(&raw, "only-a", workers, per, 200)).await?;
    let metrics = (!embedded).then_some(metrics_addr.as_str());
    let m = ours(&ds, "only", nodes, workers, per, metrics, Some(etcd_pid)).await?;
    let (oc, oe) = m.assign_cpu.unwrap_or_default();
    let (after, rc1, re1) =
        cpu_per_op(etcd_pid, n, raw_etcd(&raw, "only-b", workers, per, 200)).await?;
    let layout = if nodes == 1 { "1 node" } else { "8 nodes" };
    let ceiling = (before.rate() + after.rate()) / 2.0;
    let ratio = m.assign.rate() / ceiling;
    let rows = [
        Row {
            target: "raw etcd txn (ceiling), before".into(),
            layout: "distinct keys",
            workers,
            assign: before,
            release: None,
        },
        Row {
            target: format!("calico-ipam, {name}"),
            layout,
            workers,
            assign: m.assign,
            release: Some(m.release),
        },
        Row {
            target: "raw etcd txn (ceiling), after".into(),
            layout: "distinct keys",
            workers,
            assign: after,
            release: None,
        },
    ];
    let mut out = table(&rows);
    out.push_str(&format!(
        "\n{name} {layout} × {workers} / raw etcd txn (mean of before and after): {ratio:.2}\n"
    ));
    out.push_str(&format!(
        "CPU µs per operation (this process / etcd): raw txn before {rc0:.0} / {re0:.0}, \
         after {rc1:.0} / {re1:.0}; calico-ipam allocation {oc:.0} / {oe:.0}\n"
    ));
    if let Some((reads, txns)) = m.per_alloc {
        out.push_str(&format!(
            "etcd requests per allocation: {reads:.2} reads, {txns:.2} transactions\n"
        ));
    }
    emit(out, &rows, "")?;
    drop(etcd);
    Ok(())
}

/// Appends the rows' first errors (after `sep`) to a report, prints it, and writes it to
/// `BENCH_OUT` when that is set.
fn emit(mut out: String, rows: &[Row], sep: &str) -> Result<()> {
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| [Some(&r.assign), r.release.as_ref()])
        .flatten()
        .filter_map(|s| s.first_error.clone())
        .collect();
    if !errors.is_empty() {
        out.push_str(&format!("{sep}First errors: {}\n", errors.join("; ")));
    }
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    Ok(())
}
