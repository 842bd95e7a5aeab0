//! The backend-independent conformance suite for `Datastore`: every backend must pass it
//! unchanged.
//!
//! Entry point for a backend's test file (see `conformance_embedded.rs`):
//!
//! ```ignore
//! #[macro_use]
//! mod conformance;                      // at the test crate's root
//! use conformance::Fixture;
//! async fn fixture() -> Fixture { … }    // a fresh, isolated store per call
//! conformance_suite!(fixture);          // expands to one #[tokio::test] per case
//! ```
//!
//! A `Fixture` carries the store, the `DatastoreConfig` a child process uses to reach the same
//! store (the multi-process cases re-exec this test binary, which runs the ignored
//! `conformance_child` test in a "child" role), a key prefix every case writes under (so cases
//! can share one etcd), and a guard kept alive for the case (temp dirs, servers). Cases run in
//! parallel, except the heavy ones, which hold `HEAVY` exclusively (fixture start included) so
//! load and timing stay meaningful. Note for
//! shared servers: `compaction_then_relist` compacts the whole store, which ends other cases'
//! watches that started below the compaction point; give it its own store or prefix-isolated
//! revisions accordingly.

#![allow(dead_code)]

mod cases;
mod multiprocess;
mod txn;

pub use cases::*;
pub use multiprocess::{
    child_main, child_stdout, child_test_name, cross_process_watch_latency, finish_child,
    multi_process_writers, spawn_child, spawn_child_wrapped,
};
pub use txn::*;

use anyhow::{Context, bail};
use calico_datastore::{Datastore, DatastoreConfig, WatchEvent, WatchStream};
use std::sync::Arc;
use std::time::Duration;

/// One isolated store for one case.
pub struct Fixture {
    pub store: Arc<dyn Datastore>,
    /// How another OS process reaches the same store (passed as DATASTORE_TYPE etc.).
    pub config: DatastoreConfig,
    /// Every key a case writes starts with this (ends with '/').
    pub prefix: String,
    /// Dropped after the case: temp dirs, servers.
    pub guard: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
}

/// Serialises the cases whose timing or load would disturb the others.
/// Ordinary cases hold it shared; heavy ones (and their fixture's start) hold it exclusively.
pub static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Longest wait for any single expected event.
pub const EVENT_WAIT: Duration = Duration::from_secs(15);

/// The next event; fails when the stream errors, ends, or stays silent for `EVENT_WAIT`.
pub async fn next_event(rx: &mut WatchStream, what: &str) -> anyhow::Result<WatchEvent> {
    match tokio::time::timeout(EVENT_WAIT, rx.recv()).await {
        Err(_) => bail!("no watch event within {EVENT_WAIT:?} while waiting for {what}"),
        Ok(None) => bail!("watch stream ended while waiting for {what}"),
        Ok(Some(r)) => r.with_context(|| format!("watch error while waiting for {what}")),
    }
}

/// Asserts nothing more arrives for a short while (no duplicates, no foreign keys).
pub async fn expect_quiet(rx: &mut WatchStream, what: &str) -> anyhow::Result<()> {
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        bail!("unexpected watch item after {what}: {ev:?}");
    }
    Ok(())
}

/// The datastore variables that make `DatastoreConfig::from_vars` produce `config`.
pub fn config_env(config: &DatastoreConfig) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut set = |k: &str, val: String| v.push((k.to_string(), val));
    match config {
        DatastoreConfig::Embedded(c) => {
            set("DATASTORE_TYPE", "embedded".into());
            set("EMBEDDED_DATASTORE_PATH", c.path.display().to_string());
        }
        DatastoreConfig::Etcd(c) => {
            set("DATASTORE_TYPE", "etcdv3".into());
            set("ETCD_ENDPOINTS", c.endpoints.join(","));
            let files = [
                ("ETCD_CA_CERT_FILE", &c.ca_cert_file),
                ("ETCD_CERT_FILE", &c.cert_file),
                ("ETCD_KEY_FILE", &c.key_file),
            ];
            for (k, f) in files {
                if let Some(f) = f {
                    set(k, f.display().to_string());
                }
            }
            if let Some(u) = &c.username {
                set("ETCD_USERNAME", u.clone());
            }
            if let Some(p) = &c.password {
                set("ETCD_PASSWORD", p.clone());
            }
        }
        DatastoreConfig::Kubernetes => set("DATASTORE_TYPE", "kubernetes".into()),
    }
    v
}

/// Expands to one test per case for the fixture function `$fixture` (an `async fn() -> Fixture`).
macro_rules! conformance_suite {
    ($fixture:path) => {
        conformance_suite!(@cases $fixture; read;
            crud, cas_conflicts, revisions_increase, list_consistency, watch_order_and_resume,
            watch_prefix_filtering, compaction_then_relist, lease_expiry, lease_revoke, txn_all_or_nothing, txn_racing_writers);
        conformance_suite!(@cases $fixture; write; ten_thousand_keys, one_mib_values);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn multi_process_writers() -> anyhow::Result<()> {
            let _alone = crate::conformance::HEAVY.write().await;
            let child = crate::conformance::child_test_name(module_path!());
            crate::conformance::multi_process_writers($fixture().await, &child).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn cross_process_watch_latency() -> anyhow::Result<()> {
            let _alone = crate::conformance::HEAVY.write().await;
            let child = crate::conformance::child_test_name(module_path!());
            crate::conformance::cross_process_watch_latency($fixture().await, &child).await
        }

        /// Not a test: the entry point of the child processes the multi-process cases start.
        /// It does nothing unless started by them.
        #[test]
        #[ignore = "child-process entry point of the multi-process cases; they run it"]
        fn conformance_child() {
            crate::conformance::child_main()
        }
    };
    (@cases $fixture:path; $lock:ident; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> anyhow::Result<()> {
                let _guard = crate::conformance::HEAVY.$lock().await;
                crate::conformance::$name($fixture().await).await
            }
        )*
    };
}
