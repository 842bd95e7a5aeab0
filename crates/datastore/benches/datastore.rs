//! Datastore benchmark: create / update / get / watch-notify latency (p50, p99) and throughput
//! with 1 and 16 concurrent writers, for the embedded store and for our etcd backend, with a raw
//! etcd-client loop doing the same operations in the same run as the ceiling.
//!
//! `cargo bench -p calico-datastore --features test-util --bench datastore [-- --ops N]`
//! prints a Markdown table (and writes it to $BENCH_OUT when set).

use async_trait::async_trait;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::embedded::EmbeddedDatastore;
use calico_datastore::etcd::EtcdDatastore;
use calico_datastore::testutil::EtcdServer;
use calico_datastore::{Datastore, Revision};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The four operations, as each target performs them.
#[async_trait]
trait Target: Send + Sync {
    async fn create(&self, key: &str, value: Vec<u8>) -> anyhow::Result<Revision>;
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> anyhow::Result<Revision>;
    async fn get(&self, key: &str) -> anyhow::Result<()>;
    /// Starts a watch on `prefix`; every event's key is sent to the returned channel with the
    /// instant it arrived.
    async fn watch(
        &self,
        prefix: &str,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<(String, Instant)>>;
}

struct Ours(Arc<dyn Datastore>);

#[async_trait]
impl Target for Ours {
    async fn create(&self, key: &str, value: Vec<u8>) -> anyhow::Result<Revision> {
        Ok(self.0.create(key, value, None).await?)
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> anyhow::Result<Revision> {
        Ok(self.0.update(key, value, expected).await?)
    }
    async fn get(&self, key: &str) -> anyhow::Result<()> {
        self.0
            .get(key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{key} missing"))?;
        Ok(())
    }
    async fn watch(
        &self,
        prefix: &str,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<(String, Instant)>> {
        let from = self.0.revision().await? + 1;
        let mut w = self.0.watch(prefix, from).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        tokio::spawn(async move {
            while let Some(Ok(ev)) = w.recv().await {
                if tx.send((ev.kv.key, Instant::now())).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// etcd-client used directly: the same compare-and-swap transactions, no layer of ours.
struct RawEtcd(Mutex<Client>);

#[async_trait]
impl Target for RawEtcd {
    async fn create(&self, key: &str, value: Vec<u8>) -> anyhow::Result<Revision> {
        let mut c = self.0.lock().await.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let r = c.txn(txn).await?;
        anyhow::ensure!(r.succeeded(), "{key} exists");
        Ok(r.header().map(|h| h.revision()).unwrap_or_default())
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> anyhow::Result<Revision> {
        let mut c = self.0.lock().await.clone();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)]);
        let r = c.txn(txn).await?;
        anyhow::ensure!(r.succeeded(), "{key} conflict");
        Ok(r.header().map(|h| h.revision()).unwrap_or_default())
    }
    async fn get(&self, key: &str) -> anyhow::Result<()> {
        let mut c = self.0.lock().await.clone();
        let r = c.get(key, None).await?;
        anyhow::ensure!(!r.kvs().is_empty(), "{key} missing");
        Ok(())
    }
    async fn watch(
        &self,
        prefix: &str,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<(String, Instant)>> {
        let mut c = self.0.lock().await.clone();
        let mut stream = c
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                for ev in resp.events() {
                    if let Some(kv) = ev.kv() {
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        if tx.send((key, now)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[derive(Default)]
struct Sample {
    lat: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn pct(&self, p: f64) -> Duration {
        calico_datastore::testutil::percentile(&self.lat, p)
    }
    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Runs `ops` operations split over `writers` tasks; each task owns its keys.
async fn phase(
    t: Arc<dyn Target>,
    prefix: &str,
    writers: usize,
    ops: usize,
    op: &'static str,
    revs: Arc<Mutex<Vec<Revision>>>,
) -> anyhow::Result<Sample> {
    let per = ops / writers;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let t = t.clone();
        let revs = revs.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let idx = w * per + i;
                let key = format!("{prefix}{idx:08}");
                let value =
                    format!("{{\"value\":{idx},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
                let t0 = Instant::now();
                match op {
                    "create" => {
                        let r = t.create(&key, value).await?;
                        revs.lock().await[idx] = r;
                    }
                    "update" => {
                        let expected = revs.lock().await[idx];
                        let r = t.update(&key, value, expected).await?;
                        revs.lock().await[idx] = r;
                    }
                    _ => t.get(&key).await?,
                }
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut s = Sample::default();
    for task in tasks {
        s.lat.extend(task.await??);
    }
    s.wall = start.elapsed();
    Ok(s)
}

/// Watch-notify: time from issuing a write to the watcher receiving its event.
async fn watch_phase(
    t: Arc<dyn Target>,
    prefix: &str,
    writers: usize,
    ops: usize,
) -> anyhow::Result<Sample> {
    let mut rx = t.watch(prefix).await?;
    let per = ops / writers;
    let sent = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let t = t.clone();
        let sent = sent.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let key = format!("{prefix}{w:02}-{i:06}");
                sent.lock().await.insert(key.clone(), Instant::now());
                t.create(&key, b"{}".to_vec()).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut s = Sample::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.lat.len() < per * writers && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some((key, at))) => {
                if let Some(t0) = sent.lock().await.get(&key) {
                    s.lat.push(at.saturating_duration_since(*t0));
                }
            }
            _ => break,
        }
    }
    for task in tasks {
        task.await??;
    }
    s.wall = start.elapsed();
    anyhow::ensure!(
        s.lat.len() == per * writers,
        "watch saw {} of {} events",
        s.lat.len(),
        per * writers
    );
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args
        .iter()
        .position(|a| a == "--ops")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);

    let dir = tempfile::tempdir()?;
    let etcd = EtcdServer::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let embedded: Arc<dyn Datastore> = Arc::new(EmbeddedDatastore::open(&EmbeddedConfig {
        path: dir.path().join("bench.db"),
    })?);
    let ours_etcd: Arc<dyn Datastore> = Arc::new(EtcdDatastore::connect(&etcd.config()).await?);
    let raw = Client::connect([etcd.endpoint()], None).await?;

    let targets: Vec<(&str, Arc<dyn Target>)> = vec![
        ("embedded (SQLite WAL)", Arc::new(Ours(embedded))),
        ("etcd backend (ours)", Arc::new(Ours(ours_etcd))),
        (
            "raw etcd-client (ceiling)",
            Arc::new(RawEtcd(Mutex::new(raw))),
        ),
    ];

    let mut out = String::new();
    out.push_str("| target | writers | op | ops | p50 ms | p99 ms | ops/s |\n|---|---|---|---|---|---|---|\n");
    let mut rates: std::collections::HashMap<(usize, &str, usize), f64> = Default::default();
    for (ti, (name, t)) in targets.iter().enumerate() {
        for writers in [1usize, 16] {
            let prefix = format!("/bench/{ti}/{writers}/");
            let revs = Arc::new(Mutex::new(vec![0; ops]));
            for op in ["create", "update", "get"] {
                let s = phase(t.clone(), &prefix, writers, ops, op, revs.clone()).await?;
                rates.insert((ti, op, writers), s.rate());
                out.push_str(&format!(
                    "| {name} | {writers} | {op} | {} | {} | {} | {:.0} |\n",
                    s.lat.len(),
                    ms(s.pct(0.5)),
                    ms(s.pct(0.99)),
                    s.rate()
                ));
            }
            let wprefix = format!("/benchw/{ti}/{writers}/");
            let s = watch_phase(t.clone(), &wprefix, writers, ops / 2).await?;
            out.push_str(&format!(
                "| {name} | {writers} | watch-notify | {} | {} | {} | {:.0} |\n",
                s.lat.len(),
                ms(s.pct(0.5)),
                ms(s.pct(0.99)),
                s.rate()
            ));
            eprintln!("done: {name}, {writers} writer(s)");
        }
    }
    out.push_str("\nThroughput as a ratio of the raw etcd-client ceiling (same run):\n\n");
    out.push_str("| target | writers | create | update | get |\n|---|---|---|---|---|\n");
    for (ti, (name, _)) in targets.iter().enumerate().take(2) {
        for writers in [1usize, 16] {
            let r = |op| rates[&(ti, op, writers)] / rates[&(2, op, writers)];
            out.push_str(&format!(
                "| {name} | {writers} | {:.2} | {:.2} | {:.2} |\n",
                r("create"),
                r("update"),
                r("get")
            ));
        }
    }
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    drop(etcd);
    Ok(())
}
