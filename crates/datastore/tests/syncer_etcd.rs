//! The syncer against a real etcd (and, for the relist case, the embedded store): SIGKILL and
//! restart mid-stream loses and duplicates nothing; a compaction while the syncer is cut off
//! leads to a relist that emits only the difference.
//!
//! What "nothing lost, nothing duplicated" means here, per key: the updates the consumer gets are
//! exactly the key's state at the snapshot revision (one `Put`, if it existed) followed by every
//! committed change after it, in revision order — compared against etcd's own history, read back
//! with a watch from revision 1 at the end. Across a relist (test 2) the changes between the last
//! applied revision and the listing revision `L` are replaced by one `Put` (value at `L`) or one
//! `Delete { revision: L }`, and keys that did not change get nothing.

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use calico_datastore::etcd::{EtcdDatastore, Timeouts};
use calico_datastore::syncer::{SyncUpdate, Syncer, SyncerConfig};
use calico_datastore::testutil::EtcdServer;
use calico_datastore::{
    Datastore, Error, EventKind, KeyValue, LeaseId, ListResult, Revision, WatchStream,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const PREFIXES: [&str; 2] = ["/s/a/", "/s/b/"];

/// (kind, revision, value) of one change, for comparing sequences.
type Change = (EventKind, Revision, Vec<u8>);

fn key_of(i: usize) -> String {
    format!("{}k{:02}", PREFIXES[i % 2], i % 12)
}

/// Collects the syncer's updates per key until `stop` fires.
fn collect(mut rx: mpsc::Receiver<SyncUpdate>) -> tokio::task::JoinHandle<Vec<SyncUpdate>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(u) = rx.recv().await {
            all.push(u);
        }
        all
    })
}

/// One write of step `i`, retried across the outage until its outcome is known; the value
/// `v<i>` is unique, so a write that committed before the connection broke is recognised.
/// `outage` counts the errors met while etcd was down (proof that the kill hit mid-stream).
async fn write_step(ds: &dyn Datastore, i: usize, outage: &AtomicUsize) -> Result<()> {
    let key = key_of(i);
    let value = format!("v{i}").into_bytes();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delete_sent = false;
    loop {
        if Instant::now() > deadline {
            bail!("step {i} on {key} did not complete within 60 s");
        }
        let current = match ds.get(&key).await {
            Ok(c) => c,
            Err(_) => {
                outage.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let res = match current {
            Some(kv) if kv.value == value => return Ok(()),
            None if delete_sent => return Ok(()),
            Some(kv) if i.is_multiple_of(5) => {
                delete_sent = true;
                ds.delete(&key, Some(kv.mod_revision)).await.map(|_| ())
            }
            Some(kv) => ds
                .update(&key, value.clone(), kv.mod_revision)
                .await
                .map(|_| ()),
            None => ds.create(&key, value.clone(), None).await.map(|_| ()),
        };
        match res {
            Ok(()) => return Ok(()),
            Err(Error::Unavailable { .. }) => {
                outage.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(Error::Conflict { .. } | Error::NotFound { .. } | Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every committed change under `prefix`, from etcd's history (no compaction in this test).
async fn history(ds: &dyn Datastore, prefix: &str) -> Result<BTreeMap<String, Vec<Change>>> {
    let end = ds
        .create(&format!("{prefix}~end"), b"end".to_vec(), None)
        .await?;
    let mut rx = ds.watch(prefix, 1).await?;
    let mut out: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("history watch silent")?
            .context("history watch ended")??;
        if ev.kv.mod_revision == end {
            return Ok(out);
        }
        out.entry(ev.kv.key.clone())
            .or_default()
            .push((ev.kind, ev.kv.mod_revision, ev.kv.value));
    }
}

fn per_key(updates: &[SyncUpdate]) -> BTreeMap<String, Vec<Change>> {
    let mut out: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for u in updates {
        match u {
            SyncUpdate::Put(kv) => out.entry(kv.key.clone()).or_default().push((
                EventKind::Put,
                kv.mod_revision,
                kv.value.clone(),
            )),
            SyncUpdate::Delete { key, revision } => {
                out.entry(key.clone())
                    .or_default()
                    .push((EventKind::Delete, *revision, vec![]))
            }
            SyncUpdate::InSync => {}
        }
    }
    out
}

async fn store_state(ds: &dyn Datastore) -> Result<BTreeMap<String, KeyValue>> {
    let mut m = BTreeMap::new();
    for p in PREFIXES {
        for kv in ds.list(p).await?.kvs {
            m.insert(kv.key.clone(), kv);
        }
    }
    Ok(m)
}

async fn wait_converged(syncer: &Syncer, ds: &dyn Datastore) -> Result<BTreeMap<String, KeyValue>> {
    let want = store_state(ds).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while syncer.snapshot() != want {
        if Instant::now() > deadline {
            bail!(
                "syncer cache did not converge:\n cache {:?}\n etcd  {want:?}",
                syncer.snapshot()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(want)
}

/// The etcd watch resumes by itself (default timeouts): the syncer never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_mid_stream_loses_and_duplicates_nothing() -> Result<()> {
    let rewatches = kill_and_restart(Timeouts::default()).await?;
    assert_eq!(rewatches, 0);
    Ok(())
}

/// The etcd watch gives up at once: the syncer itself re-watches from its watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_with_syncer_level_rewatch() -> Result<()> {
    let t = Timeouts {
        watch_resume: Duration::ZERO,
        ..Timeouts::default()
    };
    let rewatches = kill_and_restart(t).await?;
    assert!(rewatches > 0, "the syncer never re-watched");
    Ok(())
}

async fn kill_and_restart(timeouts: Timeouts) -> Result<u64> {
    const STEPS: usize = 400;
    const KILL_AT: usize = 150;
    let mut etcd = EtcdServer::start()?;
    let ds: Arc<dyn Datastore> =
        Arc::new(EtcdDatastore::connect_with(&etcd.config(), timeouts).await?);
    let outage = Arc::new(AtomicUsize::new(0));
    // State before the syncer starts, summarised by its snapshot; a key outside the prefixes.
    for i in 0..8 {
        write_step(ds.as_ref(), i, &outage).await?;
    }
    ds.create("/s/c/outside", b"x".to_vec(), None).await?;
    let snapshot_rev = ds.revision().await?;
    let before = store_state(ds.as_ref()).await?;

    let (syncer, mut rx) = Syncer::start(ds.clone(), SyncerConfig::new(PREFIXES));
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await? {
            Some(SyncUpdate::InSync) => break,
            Some(u) => initial.push(u),
            None => bail!("syncer stopped"),
        }
    }
    assert!(syncer.in_sync());
    let collector = collect(rx);

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (ds, progress, outage) = (ds.clone(), progress.clone(), outage.clone());
        tokio::spawn(async move {
            for i in 8..STEPS {
                write_step(ds.as_ref(), i, &outage).await?;
                progress.store(i, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < KILL_AT {
        if Instant::now() > deadline || writer.is_finished() {
            bail!("writer stalled before the kill");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    etcd.kill(); // SIGKILL mid-stream
    tokio::time::sleep(Duration::from_millis(800)).await;
    etcd.start_again()?; // same data dir, same ports
    tokio::time::timeout(Duration::from_secs(120), writer).await???;

    let final_state = wait_converged(&syncer, ds.as_ref()).await?;
    let mut expected: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for (k, kv) in &before {
        expected.insert(
            k.clone(),
            vec![(EventKind::Put, kv.mod_revision, kv.value.clone())],
        );
    }
    for p in PREFIXES {
        for (k, changes) in history(ds.as_ref(), p).await? {
            let e = expected.entry(k).or_default();
            e.extend(changes.into_iter().filter(|c| c.1 > snapshot_rev));
        }
    }
    let relists = syncer.relists();
    let rewatches = syncer.rewatches();
    drop(syncer);
    let mut updates = initial;
    updates.extend(collector.await?);
    let mut got = per_key(&updates);
    got.retain(|k, _| !k.ends_with("~end")); // history's own end markers
    assert_eq!(
        relists, 0,
        "no compaction happened, so no relist is expected"
    );
    assert!(
        updates.iter().all(|u| !matches!(u, SyncUpdate::InSync)),
        "InSync only once"
    );
    for (k, want) in &expected {
        let have = got.get(k).cloned().unwrap_or_default();
        assert_eq!(&have, want, "updates of {k}");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(final_state.len() > 5 && !final_state.contains_key("/s/c/outside"));
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total >= STEPS - 8, "history too short: {total}");
    Ok(rewatches)
}

/// A `Datastore` whose watches the test can cut, and whose new watches wait behind a gate.
struct Cuttable {
    inner: Arc<dyn Datastore>,
    cut: watch::Sender<u64>,
    gate: watch::Sender<bool>,
    /// Watches handed out so far.
    opened: AtomicUsize,
}

#[async_trait]
impl Datastore for Cuttable {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, key: &str) -> calico_datastore::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> calico_datastore::Result<ListResult> {
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        k: &str,
        v: Vec<u8>,
        l: Option<LeaseId>,
    ) -> calico_datastore::Result<Revision> {
        self.inner.create(k, v, l).await
    }
    async fn update(&self, k: &str, v: Vec<u8>, e: Revision) -> calico_datastore::Result<Revision> {
        self.inner.update(k, v, e).await
    }
    async fn delete(&self, k: &str, e: Option<Revision>) -> calico_datastore::Result<KeyValue> {
        self.inner.delete(k, e).await
    }
    async fn txn(
        &self,
        checks: Vec<calico_datastore::Check>,
        ops: Vec<calico_datastore::Op>,
    ) -> calico_datastore::Result<calico_datastore::TxnResult> {
        self.inner.txn(checks, ops).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> calico_datastore::Result<WatchStream> {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let mut inner = self.inner.watch(prefix, from).await?;
        let mut cut = self.cut.subscribe();
        cut.borrow_and_update();
        self.opened.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cut.changed() => return, // the stream ends, like a broken connection
                    item = inner.recv() => match item {
                        Some(i) => if tx.send(i).await.is_err() { return },
                        None => return,
                    },
                }
            }
        });
        Ok(rx)
    }
    async fn revision(&self) -> calico_datastore::Result<Revision> {
        self.inner.revision().await
    }
    async fn compact(&self, r: Revision) -> calico_datastore::Result<()> {
        self.inner.compact(r).await
    }
    async fn grant_lease(&self, ttl: Duration) -> calico_datastore::Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, l: LeaseId) -> calico_datastore::Result<()> {
        self.inner.keep_alive(l).await
    }
    async fn revoke_lease(&self, l: LeaseId) -> calico_datastore::Result<()> {
        self.inner.revoke_lease(l).await
    }
}

async fn next(rx: &mut mpsc::Receiver<SyncUpdate>) -> Result<SyncUpdate> {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .context("no syncer update within 15 s")?
        .context("syncer stopped")
}

/// The relist scenario, for any backend.
pub async fn compaction_relists_and_emits_only_the_difference(
    inner: Arc<dyn Datastore>,
) -> Result<()> {
    let ds = Arc::new(Cuttable {
        inner,
        cut: watch::Sender::new(0),
        gate: watch::Sender::new(true),
        opened: AtomicUsize::new(0),
    });
    let (a, b, c, d) = (
        "/s/a/same",
        "/s/a/changed",
        "/s/b/deleted",
        "/s/b/recreated",
    );
    let ra = ds.create(a, b"1".to_vec(), None).await?;
    let rb = ds.create(b, b"1".to_vec(), None).await?;
    ds.create(c, b"1".to_vec(), None).await?;
    let rd = ds.create(d, b"1".to_vec(), None).await?;
    let (syncer, mut rx) = Syncer::start(ds.clone(), SyncerConfig::new(PREFIXES));
    let mut snap = Vec::new();
    loop {
        match next(&mut rx).await? {
            SyncUpdate::InSync => break,
            u => snap.push(u),
        }
    }
    assert_eq!(snap.len(), 4);

    // Once both prefixes' watches run: cut the syncer off, change things, compact past its position, let it back in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ds.opened.load(Ordering::SeqCst) < 2 {
        if Instant::now() > deadline {
            bail!("the syncer did not open its two watches");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ds.gate.send_replace(false);
    ds.cut.send_modify(|n| *n += 1);
    let rb2 = ds.update(b, b"2".to_vec(), rb).await?;
    let rb3 = ds.update(b, b"3".to_vec(), rb2).await?;
    ds.delete(c, None).await?;
    ds.delete(d, Some(rd)).await?;
    let rd2 = ds.create(d, b"2".to_vec(), None).await?;
    let e = "/s/b/new";
    let re = ds.create(e, b"1".to_vec(), None).await?;
    let now = ds.revision().await?;
    ds.compact(now).await?;
    ds.gate.send_replace(true);

    // Both prefixes were watched from below the compaction: each relists and ends with InSync.
    let mut diff = Vec::new();
    let mut in_sync = 0;
    while in_sync < 2 {
        match next(&mut rx).await? {
            SyncUpdate::InSync => in_sync += 1,
            u => diff.push(u),
        }
    }
    let mut got = per_key(&diff);
    assert_eq!(
        got.remove(b),
        Some(vec![(EventKind::Put, rb3, b"3".to_vec())])
    );
    assert_eq!(
        got.remove(d),
        Some(vec![(EventKind::Put, rd2, b"2".to_vec())])
    );
    assert_eq!(
        got.remove(e),
        Some(vec![(EventKind::Put, re, b"1".to_vec())])
    );
    let Some(del) = got.remove(c) else {
        bail!("no Delete for {c}: {diff:?}")
    };
    assert!(
        matches!(del.as_slice(), [(EventKind::Delete, r, _)] if *r >= now),
        "{del:?}"
    );
    assert!(got.is_empty(), "unchanged keys re-sent: {got:?}");
    assert_eq!(syncer.relists(), 2);

    // The watch after the relist continues exactly once per change.
    let ra2 = ds.update(a, b"2".to_vec(), ra).await?;
    match next(&mut rx).await? {
        SyncUpdate::Put(kv) => assert_eq!((kv.key.as_str(), kv.mod_revision), (a, ra2)),
        u => bail!("unexpected {u:?}"),
    }
    if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(400), rx.recv()).await {
        bail!("duplicate or stray update {u:?}");
    }
    let want = store_state(ds.as_ref()).await?;
    assert_eq!(syncer.snapshot(), want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_relists_and_emits_only_the_difference() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let ds: Arc<dyn Datastore> = Arc::new(EtcdDatastore::connect(&etcd.config()).await?);
    compaction_relists_and_emits_only_the_difference(ds).await
}

/// The same relist scenario on the embedded backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_compaction_relists_and_emits_only_the_difference() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = calico_datastore::config::EmbeddedConfig {
        path: dir.path().join("s.db"),
    };
    let ds: Arc<dyn Datastore> = Arc::new(calico_datastore::embedded::EmbeddedDatastore::open(
        &config,
    )?);
    compaction_relists_and_emits_only_the_difference(ds).await
}
