//! Calico's datastore: a revisioned key/value store with compare-and-swap and ordered watches.
//!
//! ```text
//!  calicoctl / ipam / cni / node
//!        │  typed: ResourceStore (Resource ⇄ key + JSON, resourceVersion = mod revision)
//!        ▼
//!   dyn Datastore  ── get/list/create/update/delete (CAS)/txn (multi-key)/watch/leases/compact
//!        ├── etcd::EtcdDatastore       (etcd v3, TLS, reconnects)
//!        └── embedded::EmbeddedDatastore (one SQLite file in WAL mode, many processes)
//!        ▲
//!   syncer: list + watch → cache + ordered updates + in-sync marker, relists on "compacted"
//! ```
//!
//! Keys follow upstream's etcd layout (`keys`), so an etcd written by us reads like upstream's.

pub mod config;
pub mod embedded;
pub mod error;
pub mod etcd;
pub mod keys;
pub mod resources;
pub mod syncer;
#[cfg(feature = "test-util")]
pub mod testutil;
pub mod txn;

pub use config::DatastoreConfig;
pub use error::{Error, Result};
pub use txn::{Check, Expect, Op, TxnResult};

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A datastore revision: strictly increasing across the whole store, like etcd's.
pub type Revision = i64;

/// A lease handle; keys attached to a lease disappear when it expires or is revoked.
pub type LeaseId = i64;

/// One stored key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last write to the key; the CAS token and the resourceVersion.
    pub mod_revision: Revision,
    pub lease: Option<LeaseId>,
}

/// A consistent listing: the keys under a prefix as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// The store revision the listing reflects; watch from `revision + 1` to continue.
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put`: the new value. For `Delete`: the key, empty value, and `mod_revision` = the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The value before this event, when the backend knows it.
    pub prev: Option<KeyValue>,
}

/// A stream of watch events. Ends with `Err(Error::Compacted{..})` when the requested revision
/// is gone (the caller relists), or another error when the backend fails.
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<WatchEvent>>;

/// The operations every backend provides. All writes are atomic; `update`/`delete` with an
/// expected revision are compare-and-swap and fail with `Error::Conflict` when the key moved on.
#[async_trait]
pub trait Datastore: Send + Sync {
    /// A short description for error messages, e.g. `etcd http://10.0.0.1:2379`.
    fn describe(&self) -> String;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Every key starting with `prefix`, sorted by key, as of one revision.
    async fn list(&self, prefix: &str) -> Result<ListResult>;

    /// Like `list`, with every `value` left empty: for callers that only need to know which keys
    /// exist (etcd sends no values: `keys_only`).
    async fn list_keys(&self, prefix: &str) -> Result<ListResult> {
        let mut r = self.list(prefix).await?;
        for kv in &mut r.kvs {
            kv.value = Vec::new();
        }
        Ok(r)
    }

    /// Creates `key`; `Error::AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;

    /// Replaces `key` if its mod revision is `expected`; `Error::NotFound` if absent,
    /// `Error::Conflict` if it moved on. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes `key` (only if its mod revision is `expected`, when given). Returns the deleted
    /// value; `Error::NotFound` if absent.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// One atomic multi-key transaction: when every check holds, applies every op (in order) and
    /// returns their revisions; otherwise writes nothing and fails with the first failing check's
    /// error — `AlreadyExists` (expected absent), `NotFound` (expected present) or `Conflict`
    /// (another revision), naming its key. Empty `ops` and duplicate keys are refused.
    async fn txn(&self, checks: Vec<Check>, ops: Vec<Op>) -> Result<TxnResult>;

    /// Events for keys under `prefix` with revision ≥ `from`, in order, without gaps.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// The current store revision.
    async fn revision(&self) -> Result<Revision>;

    /// Discards history before `revision`; watches from earlier revisions then fail `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
}

/// Connects to the backend the configuration names (the one factory for backends).
pub async fn connect(config: &DatastoreConfig) -> Result<Arc<dyn Datastore>> {
    match config {
        DatastoreConfig::Etcd(c) => Ok(Arc::new(etcd::EtcdDatastore::connect(c).await?)),
        DatastoreConfig::Embedded(c) => {
            Ok(Arc::new(embedded::EmbeddedDatastore::open_async(c).await?))
        }
        DatastoreConfig::Kubernetes => Err(Error::Unsupported(
            "DATASTORE_TYPE=kubernetes is not implemented yet; use etcdv3 or embedded".into(),
        )),
    }
}
