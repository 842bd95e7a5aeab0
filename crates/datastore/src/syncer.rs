//! The syncer: list + watch → an in-memory cache plus an ordered stream of updates.
//!
//! ```text
//!  Datastore ──list(prefix)──▶ snapshot: Put… ─▶ InSync ──▶ watch(prefix, rev+1): Put/Delete…
//!      ▲                                                         │ stream broke
//!      │        relist only on Compacted (or a watch that cannot resume): emit the difference
//!      └──────── between cache and listing (Put changed/new, Delete gone) ─▶ InSync ─▶ watch
//! ```
//!
//! One task owns the cache; it applies an update to the cache before sending it, so a consumer
//! that reads `Syncer::snapshot()` after receiving an update sees at least that update.
//!
//! Guarantees, per key: updates arrive in revision order and no revision is delivered twice (a
//! watermark per prefix — the last applied revision and the keys applied at it — drops replays).
//! Every committed change of a watched key is delivered once, except across a relist, where the
//! changes between the last applied revision and the listing revision `L` are summarised by the
//! relist difference: one `Put` with the key's value at `L`, or one `Delete` with revision `L`.
//! Across prefixes there is no global order (each prefix has its own watch), like upstream's
//! watchersyncer.

use crate::error::Error;
use crate::{Datastore, EventKind, KeyValue, Revision, WatchEvent, WatchStream};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// One change seen by the syncer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncUpdate {
    /// A key exists with this value (snapshot entry, watch event, or relist difference).
    Put(KeyValue),
    /// A key is gone: at `revision` (a watch event), or at or before `revision` (a relist).
    Delete { key: String, revision: Revision },
    /// The cache reflects the store: sent once after the initial snapshot of all prefixes, and
    /// again after each later relist of one prefix (its difference is complete).
    InSync,
}

/// Tunables; `Default` suits agents.
#[derive(Debug, Clone)]
pub struct SyncerConfig {
    /// Key prefixes to follow; overlapping ones are merged.
    pub prefixes: Vec<String>,
    /// Updates buffered for a slow consumer.
    pub buffer: usize,
    /// Retry delays while the datastore is unavailable (doubling from `min` to `max`).
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl SyncerConfig {
    pub fn new<S: Into<String>>(prefixes: impl IntoIterator<Item = S>) -> Self {
        SyncerConfig {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            buffer: 1024,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
struct Stats {
    in_sync: AtomicBool,
    relists: AtomicU64,
    rewatches: AtomicU64,
}

/// A running syncer; dropping it stops the task.
pub struct Syncer {
    cache: Arc<Mutex<BTreeMap<String, KeyValue>>>,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Syncer {
    /// Starts following `config.prefixes`; the receiver gets the snapshot, `InSync`, then
    /// changes. The syncer stops when the receiver or the `Syncer` is dropped.
    pub fn start(
        ds: Arc<dyn Datastore>,
        config: SyncerConfig,
    ) -> (Syncer, mpsc::Receiver<SyncUpdate>) {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let cache = Arc::new(Mutex::new(BTreeMap::new()));
        let stats = Arc::new(Stats::default());
        let prefixes = normalize(config.prefixes.clone());
        let run = Run {
            ds,
            config,
            tx,
            cache: cache.clone(),
            stats: stats.clone(),
            marks: prefixes.iter().map(|_| Mark::default()).collect(),
            prefixes,
        };
        let task = tokio::spawn(run.run());
        (Syncer { cache, stats, task }, rx)
    }

    /// A copy of the cache.
    pub fn snapshot(&self) -> BTreeMap<String, KeyValue> {
        lock(&self.cache).clone()
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        lock(&self.cache).get(key).cloned()
    }

    /// True once the initial snapshot is complete.
    pub fn in_sync(&self) -> bool {
        self.stats.in_sync.load(Ordering::Relaxed)
    }

    /// How many times the syncer relisted after the initial snapshot.
    pub fn relists(&self) -> u64 {
        self.stats.relists.load(Ordering::Relaxed)
    }

    /// How many times a broken watch was re-opened (without relisting).
    pub fn rewatches(&self) -> u64 {
        self.stats.rewatches.load(Ordering::Relaxed)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The cache holds plain data; a panic elsewhere cannot leave it half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sorted, without prefixes covered by a shorter one.
fn normalize(mut prefixes: Vec<String>) -> Vec<String> {
    prefixes.sort();
    prefixes.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in prefixes {
        if !out.iter().any(|q| p.starts_with(q.as_str())) {
            out.push(p);
        }
    }
    out
}

/// What has been applied for one prefix: everything below `rev`, and at `rev` the `keys` (or
/// everything, when `complete`, i.e. after a listing at `rev`).
#[derive(Debug, Default)]
struct Mark {
    rev: Revision,
    keys: HashSet<String>,
    complete: bool,
}

impl Mark {
    fn listed(rev: Revision) -> Mark {
        Mark {
            rev,
            keys: HashSet::new(),
            complete: true,
        }
    }

    fn seen(&self, rev: Revision, key: &str) -> bool {
        rev < self.rev || (rev == self.rev && (self.complete || self.keys.contains(key)))
    }

    fn record(&mut self, rev: Revision, key: &str) {
        if rev > self.rev {
            *self = Mark {
                rev,
                keys: HashSet::new(),
                complete: false,
            };
        }
        self.keys.insert(key.to_string());
    }
}

/// A message from a prefix's watch forwarder: `None` means the stream ended.
type Fed = (usize, u64, Option<crate::Result<WatchEvent>>);

/// The receiver is gone: stop.
struct Closed;

struct Run {
    ds: Arc<dyn Datastore>,
    config: SyncerConfig,
    tx: mpsc::Sender<SyncUpdate>,
    cache: Arc<Mutex<BTreeMap<String, KeyValue>>>,
    stats: Arc<Stats>,
    prefixes: Vec<String>,
    marks: Vec<Mark>,
}

impl Run {
    async fn run(mut self) {
        let _ = self.run_inner().await;
    }

    async fn run_inner(&mut self) -> Result<(), Closed> {
        for i in 0..self.prefixes.len() {
            self.relist(i).await?;
        }
        self.stats.in_sync.store(true, Ordering::Relaxed);
        self.send(SyncUpdate::InSync).await?;

        let (fed_tx, mut fed_rx) = mpsc::channel::<Fed>(self.config.buffer.max(1));
        let mut forwarders = JoinSet::new();
        let mut generation = vec![0u64; self.prefixes.len()];
        for (i, gen_) in generation.iter().enumerate() {
            let stream = self.watch_or_relist(i, false).await?;
            forwarders.spawn(forward(i, *gen_, stream, fed_tx.clone()));
        }
        loop {
            let (i, gen_, item) = tokio::select! {
                _ = self.tx.closed() => return Err(Closed),
                m = fed_rx.recv() => match m { Some(m) => m, None => return Err(Closed) },
            };
            if gen_ != generation[i] {
                continue; // from a stream already replaced
            }
            let err = match item {
                Some(Ok(ev)) => {
                    self.apply(i, ev).await?;
                    continue;
                }
                Some(Err(e)) => Some(e),
                None => None,
            };
            tracing::info!(prefix = %self.prefixes[i], error = ?err, "syncer watch ended; resuming");
            let compacted = matches!(err, Some(Error::Compacted { .. }));
            if !compacted {
                self.stats.rewatches.fetch_add(1, Ordering::Relaxed);
            }
            let stream = self.watch_or_relist(i, compacted).await?;
            generation[i] += 1;
            forwarders.spawn(forward(i, generation[i], stream, fed_tx.clone()));
        }
    }

    async fn send(&self, u: SyncUpdate) -> Result<(), Closed> {
        self.tx.send(u).await.map_err(|_| Closed)
    }

    async fn pause(&self, delay: &mut Duration) -> Result<(), Closed> {
        tokio::select! {
            _ = self.tx.closed() => return Err(Closed),
            _ = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(self.config.retry_max);
        Ok(())
    }

    /// A watch from just after the prefix's mark; relists first when `compacted` (or when the
    /// datastore says the mark is compacted). Retries while the datastore is unavailable.
    async fn watch_or_relist(
        &mut self,
        i: usize,
        mut compacted: bool,
    ) -> Result<WatchStream, Closed> {
        let mut delay = self.config.retry_min;
        loop {
            if compacted {
                self.relist(i).await?;
                self.stats.relists.fetch_add(1, Ordering::Relaxed);
                self.send(SyncUpdate::InSync).await?;
                compacted = false;
            }
            let from = self.marks[i].rev + 1;
            match self.ds.watch(&self.prefixes[i], from).await {
                Ok(s) => return Ok(s),
                Err(Error::Compacted { .. }) => compacted = true,
                Err(e) => {
                    tracing::warn!(prefix = %self.prefixes[i], error = %e, "syncer cannot watch; retrying");
                    self.pause(&mut delay).await?;
                }
            }
        }
    }

    /// Lists the prefix and emits the difference to the cache (everything, the first time).
    async fn relist(&mut self, i: usize) -> Result<(), Closed> {
        let prefix = self.prefixes[i].clone();
        let mut delay = self.config.retry_min;
        let list = loop {
            match self.ds.list(&prefix).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(prefix = %prefix, error = %e, "syncer cannot list; retrying");
                    self.pause(&mut delay).await?;
                }
            }
        };
        let rev = list.revision;
        let fresh: BTreeMap<String, KeyValue> = list
            .kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        let gone: Vec<String> = lock(&self.cache)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| !fresh.contains_key(k))
            .collect();
        for key in gone {
            lock(&self.cache).remove(&key);
            self.send(SyncUpdate::Delete { key, revision: rev }).await?;
        }
        for (key, kv) in fresh {
            let changed =
                lock(&self.cache).get(&key).map(|c| c.mod_revision) != Some(kv.mod_revision);
            if changed {
                lock(&self.cache).insert(key, kv.clone());
                self.send(SyncUpdate::Put(kv)).await?;
            }
        }
        self.marks[i] = Mark::listed(rev);
        Ok(())
    }

    async fn apply(&mut self, i: usize, ev: WatchEvent) -> Result<(), Closed> {
        let (rev, key) = (ev.kv.mod_revision, ev.kv.key.clone());
        if !key.starts_with(&self.prefixes[i]) || self.marks[i].seen(rev, &key) {
            return Ok(());
        }
        self.marks[i].record(rev, &key);
        match ev.kind {
            EventKind::Put => {
                lock(&self.cache).insert(key, ev.kv.clone());
                self.send(SyncUpdate::Put(ev.kv)).await
            }
            EventKind::Delete => {
                lock(&self.cache).remove(&key);
                self.send(SyncUpdate::Delete { key, revision: rev }).await
            }
        }
    }
}

/// Moves one watch stream's items into the syncer's single queue, tagged with the prefix index
/// and generation; stops after the first error or the end.
async fn forward(i: usize, gen_: u64, mut stream: WatchStream, fed: mpsc::Sender<Fed>) {
    loop {
        let item = stream.recv().await;
        let last = !matches!(item, Some(Ok(_)));
        if fed.send((i, gen_, item)).await.is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_merged() {
        let p = normalize(vec![
            "/a/b/".into(),
            "/a/".into(),
            "/c/".into(),
            "/a/".into(),
        ]);
        assert_eq!(p, vec!["/a/".to_string(), "/c/".to_string()]);
    }

    #[test]
    fn marks_drop_replays_but_not_same_revision_siblings() {
        let mut m = Mark::listed(10);
        assert!(m.seen(10, "/a") && m.seen(3, "/b") && !m.seen(11, "/a"));
        m.record(11, "/a");
        assert!(m.seen(11, "/a"));
        assert!(!m.seen(11, "/b"), "another key of the same transaction");
        m.record(11, "/b");
        assert!(m.seen(11, "/b") && !m.seen(12, "/a"));
    }
}
