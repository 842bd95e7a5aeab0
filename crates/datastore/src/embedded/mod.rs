//! The embedded backend: one SQLite file in WAL mode that many OS processes (in any network
//! namespace) open at once, for single-host clusters without etcd.
//!
//! ```text
//!  async callers ──spawn_blocking──▶ pool of connections ──BEGIN IMMEDIATE──▶ file.db (+ -wal)
//!  watch() ──Registration──▶ poller thread (own connection, data_version every 10 ms) ──▶ mpsc
//! ```
//!
//! `store` owns the SQL (schema, CAS writes, leases, compaction); `watch` owns event delivery.
//! SQLite work never runs on a tokio worker, except in a handle opened with `open_inline` (a
//! one-request process such as a CNI plugin, where starting a blocking-pool thread and waking
//! across threads for each operation cost more than the operation). Revisions come from the log's AUTOINCREMENT id, so
//! they are strictly increasing across every process sharing the file.

mod sql;
mod store;
mod watch;

use crate::config::EmbeddedConfig;
use crate::error::{Error, Result};
use crate::txn::{Check, Op, TxnResult, validate};
use crate::{Datastore, KeyValue, LeaseId, ListResult, Revision, WatchStream};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use store::Store;
use watch::Registration;

/// Idle connections kept for reuse.
const POOL_IDLE: usize = 8;

/// A handle on the shared file. Cheap to share behind an `Arc`; dropping the last handle stops
/// its poller thread (open watch streams then end).
pub struct EmbeddedDatastore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    label: String,
    pool: Mutex<Vec<Store>>,
    poller: Mutex<Option<mpsc::Sender<Registration>>>,
    /// Operations run on the calling thread (see `open_inline`).
    inline: bool,
}

impl Inner {
    fn take(&self) -> Result<Store> {
        let idle = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        match idle {
            Some(s) => Ok(s),
            None => Store::open(&self.path, &self.label, false),
        }
    }

    fn give_back(&self, store: Store) {
        if let Ok(mut p) = self.pool.lock()
            && p.len() < POOL_IDLE
        {
            p.push(store);
        }
    }
}

impl EmbeddedDatastore {
    /// Opens (creating when missing) the store file and its directory.
    pub fn open(config: &EmbeddedConfig) -> Result<Self> {
        Self::open_with(config, false)
    }

    /// `open` for a process that serves one request and then exits (a CNI plugin): every
    /// operation runs on the calling thread, blocking it while SQLite works or waits for
    /// another process's lock (bounded by the busy timeout), instead of on tokio's blocking
    /// pool. Only for a runtime with nothing else to run meanwhile.
    pub fn open_inline(config: &EmbeddedConfig) -> Result<Self> {
        Self::open_with(config, true)
    }

    fn open_with(config: &EmbeddedConfig, inline: bool) -> Result<Self> {
        let label = format!("embedded datastore {}", config.path.display());
        let first = Store::open(&config.path, &label, true)?;
        Ok(EmbeddedDatastore {
            inner: Arc::new(Inner {
                path: config.path.clone(),
                label,
                pool: Mutex::new(vec![first]),
                poller: Mutex::new(None),
                inline,
            }),
        })
    }

    /// `open` on tokio's blocking pool: opening may wait for other processes' locks.
    pub async fn open_async(config: &EmbeddedConfig) -> Result<Self> {
        let config = config.clone();
        let label = config.path.display().to_string();
        tokio::task::spawn_blocking(move || Self::open(&config))
            .await
            .map_err(|e| Error::Backend(format!("opening embedded datastore {label}: {e}")))?
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool (inline: on this thread).
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let work = move || {
            let mut store = inner.take()?;
            let out = f(&mut store);
            inner.give_back(store);
            out
        };
        if self.inner.inline {
            return work();
        }
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Backend(format!("{}: worker task failed: {e}", self.inner.label)))?
    }

    /// Hands `reg` to the poller thread, starting it when needed (or again if it stopped).
    fn register(&self, reg: Option<Registration>) -> Result<()> {
        let mut poller =
            self.inner.poller.lock().map_err(|_| {
                Error::Backend(format!("{}: poller lock poisoned", self.inner.label))
            })?;
        let mut reg = reg;
        for _ in 0..2 {
            if poller.is_none() {
                let store = Store::open(&self.inner.path, &self.inner.label, false)?;
                let (tx, rx) = mpsc::channel();
                std::thread::Builder::new()
                    .name("calico-embedded-watch".into())
                    .spawn(move || watch::run(store, rx))
                    .map_err(|e| {
                        Error::Backend(format!(
                            "{}: cannot start the watch thread: {e}",
                            self.inner.label
                        ))
                    })?;
                *poller = Some(tx);
            }
            let Some(r) = reg.take() else { return Ok(()) };
            let sent = match poller.as_ref() {
                Some(tx) => tx.send(r),
                None => Err(mpsc::SendError(r)),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(r)) => {
                    // The thread stopped (an error ended it): start a fresh one.
                    reg = Some(r);
                    *poller = None;
                }
            }
        }
        Err(Error::Backend(format!(
            "{}: the watch thread keeps stopping",
            self.inner.label
        )))
    }
}

#[async_trait]
impl Datastore for EmbeddedDatastore {
    fn describe(&self) -> String {
        self.inner.label.clone()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.run(move |s| s.get(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let (kvs, revision) = self.run(move |s| s.list(&prefix)).await?;
        Ok(ListResult { kvs, revision })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let key = key.to_string();
        self.run(move |s| s.create(&key, &value, lease)).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let key = key.to_string();
        self.run(move |s| s.update(&key, &value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let key = key.to_string();
        self.run(move |s| s.delete(&key, expected)).await
    }

    async fn txn(&self, checks: Vec<Check>, ops: Vec<Op>) -> Result<TxnResult> {
        validate(&checks, &ops)?;
        self.run(move |s| s.txn(&checks, &ops)).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        // 0 (or less) means "from now", as in etcd.
        let from = if from <= 0 {
            self.revision().await? + 1
        } else {
            from
        };
        let (tx, rx) = tokio::sync::mpsc::channel(watch::CHANNEL);
        self.register(Some(Registration {
            prefix: prefix.to_string(),
            from,
            tx,
        }))?;
        Ok(rx)
    }

    async fn revision(&self) -> Result<Revision> {
        self.run(|s| s.revision()).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.run(move |s| s.compact(revision)).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // The poller's periodic sweep makes the keys vanish even when nobody else writes.
        self.register(None)?;
        self.run(move |s| s.grant_lease(ttl)).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.run(move |s| s.keep_alive(lease)).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.run(move |s| s.revoke_lease(lease)).await
    }
}
