//! The conformance suite against the embedded (SQLite) backend, plus the behaviour only it has:
//! the file and its directory are created, data survives reopening, and a process that did not
//! grant a lease still enforces its expiry.

#[macro_use]
mod conformance;

use calico_datastore::config::EmbeddedConfig;
use calico_datastore::embedded::EmbeddedDatastore;
use calico_datastore::{Datastore, DatastoreConfig, EventKind, connect};
use conformance::Fixture;
use std::sync::Arc;
use std::time::Duration;

/// A fresh file in a directory that does not exist yet.
async fn fixture() -> Fixture {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    };
    let config = DatastoreConfig::Embedded(EmbeddedConfig {
        path: dir.path().join("not/yet/there/calico.db"),
    });
    let store = match connect(&config).await {
        Ok(s) => s,
        Err(e) => panic!("cannot open the embedded store: {e}"),
    };
    Fixture {
        store,
        config,
        prefix: "/calico/test/".into(),
        guard: Box::new(dir),
    }
}

conformance_suite!(fixture);

fn open(path: &std::path::Path) -> anyhow::Result<Arc<dyn Datastore>> {
    Ok(Arc::new(EmbeddedDatastore::open(&EmbeddedConfig {
        path: path.to_path_buf(),
    })?))
}

#[tokio::test]
async fn data_survives_reopening() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.db");
    let rev = {
        let s = open(&path)?;
        s.create("/k", b"v".to_vec(), None).await?
    };
    let s = open(&path)?;
    let kv = s.get("/k").await?;
    anyhow::ensure!(kv.map(|kv| (kv.value, kv.mod_revision)) == Some((b"v".to_vec(), rev)));
    anyhow::ensure!(s.revision().await? == rev, "revision not persisted");
    let next = s.create("/k2", b"v".to_vec(), None).await?;
    anyhow::ensure!(
        next == rev + 1,
        "revisions continue after reopening: {next}"
    );
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn inline_handle_shares_the_file_with_a_pooled_one() -> anyhow::Result<()> {
    // `open_inline` (one-request processes) runs SQLite on the caller's thread: same data,
    // same revisions, same CAS checks as a pooled handle on the same file.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.db");
    let pooled = open(&path)?;
    let inline: Arc<dyn Datastore> = Arc::new(EmbeddedDatastore::open_inline(&EmbeddedConfig {
        path: path.clone(),
    })?);
    let rev = pooled.create("/k", b"v".to_vec(), None).await?;
    let kv = inline.get("/k").await?;
    anyhow::ensure!(kv.map(|kv| (kv.value, kv.mod_revision)) == Some((b"v".to_vec(), rev)));
    let next = inline.update("/k", b"w".to_vec(), rev).await?;
    anyhow::ensure!(next == rev + 1, "inline update got revision {next}");
    anyhow::ensure!(
        inline.update("/k", b"x".to_vec(), rev).await.is_err(),
        "a stale revision must not update"
    );
    let kv = pooled.get("/k").await?;
    anyhow::ensure!(kv.map(|kv| kv.value) == Some(b"w".to_vec()));
    anyhow::ensure!(inline.revision().await? == next);
    // Inline means on the caller's thread: on a thread with no tokio runtime at all (where the
    // blocking pool cannot be reached), one poll completes the read.
    let reader = Arc::clone(&inline);
    let polled = std::thread::spawn(move || {
        use std::task::{Context, Poll, Waker};
        let mut read = reader.get("/k");
        match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.map(|kv| kv.map(|kv| kv.value)).map_err(|e| e.to_string()),
            Poll::Pending => Err("still pending after one poll".to_string()),
        }
    })
    .join()
    .map_err(|_| anyhow::anyhow!("an inline read outside a tokio runtime panicked"))?;
    anyhow::ensure!(
        polled == Ok(Some(b"w".to_vec())),
        "inline read without a runtime: {polled:?}"
    );
    Ok(())
}

#[tokio::test]
async fn another_handle_enforces_lease_expiry() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.db");
    {
        let granter = open(&path)?;
        let lease = granter.grant_lease(Duration::from_millis(300)).await?;
        granter.create("/eph", b"x".to_vec(), Some(lease)).await?;
    } // the granter (and its sweeping thread) is gone
    let reader = open(&path)?;
    anyhow::ensure!(
        reader.get("/eph").await?.is_some(),
        "leased key gone too early"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = reader.revision().await?;
    anyhow::ensure!(
        reader.get("/eph").await?.is_none(),
        "an expired key is still readable"
    );
    let mut rx = reader.watch("/", from + 1).await?;
    let ev = conformance::next_event(&mut rx, "the expiry delete").await?;
    anyhow::ensure!(
        ev.kind == EventKind::Delete && ev.kv.key == "/eph",
        "{ev:?}"
    );
    Ok(())
}

#[tokio::test]
async fn watch_survives_a_slow_consumer() -> anyhow::Result<()> {
    // More events than a channel holds: delivery falls back to reading the log, in order.
    let dir = tempfile::tempdir()?;
    let s = open(&dir.path().join("a.db"))?;
    let mut rx = s.watch("/slow/", 1).await?;
    let mut rev = s.create("/slow/k", vec![0], None).await?;
    for i in 1..3000u32 {
        rev = s.update("/slow/k", i.to_be_bytes().to_vec(), rev).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3000u32 {
        let ev = conformance::next_event(&mut rx, &format!("event {i}")).await?;
        anyhow::ensure!(ev.kv.mod_revision == i64::from(i) + 1, "event {i}: {ev:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_create_a_fresh_file_together() -> anyhow::Result<()> {
    // Several processes race to create the file, switch it to WAL and create the schema.
    let _heavy = conformance::HEAVY.write().await;
    const PROCS: usize = 6;
    const K: usize = 20;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fresh/calico.db");
    let config = DatastoreConfig::Embedded(EmbeddedConfig { path: path.clone() });
    let child = conformance::child_test_name(module_path!());
    let mut children = Vec::new();
    for id in 0..PROCS {
        children.push(conformance::spawn_child(
            &config, "/", &child, "creator", id, K,
        )?);
    }
    let mut revs = Vec::new();
    for (id, c) in children.into_iter().enumerate() {
        revs.extend(conformance::finish_child(c, format!("creator {id}")).await?);
    }
    revs.sort();
    revs.dedup();
    anyhow::ensure!(revs.len() == PROCS * K, "{} distinct revisions", revs.len());
    let s = open(&path)?;
    let l = s.list("/open/").await?;
    anyhow::ensure!(l.kvs.len() == PROCS * K, "{} keys listed", l.kvs.len());
    anyhow::ensure!(l.revision == (PROCS * K) as i64, "revision {}", l.revision);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_in_other_network_namespaces_share_the_store() -> anyhow::Result<()> {
    // Needs root for `unshare --net`; fails (never skips) without it.
    let _heavy = conformance::HEAVY.write().await;
    const PROCS: usize = 3;
    const K: usize = 10;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("calico.db");
    let config = DatastoreConfig::Embedded(EmbeddedConfig { path: path.clone() });
    let s = open(&path)?;
    let mut rx = s.watch("/netns/", 1).await?;
    let child = conformance::child_test_name(module_path!());
    let wrapper = ["unshare", "--net", "--"];
    let mut children = Vec::new();
    for id in 0..PROCS {
        let c = conformance::spawn_child_wrapped(
            &wrapper, &config, "/netns/", &child, "creator", id, K,
        )?;
        children.push(c);
    }
    let ours = std::fs::read_link("/proc/self/ns/net")?
        .display()
        .to_string();
    let mut namespaces = std::collections::BTreeSet::new();
    for (id, c) in children.into_iter().enumerate() {
        let out = conformance::child_stdout(c, &format!("creator {id} (unshare --net)")).await?;
        let ns = out
            .lines()
            .find_map(|l| l.strip_prefix("NETNS "))
            .ok_or_else(|| anyhow::anyhow!("creator {id} did not report its namespace"))?;
        anyhow::ensure!(
            ns != ours,
            "creator {id} ran in this test's namespace {ours}"
        );
        namespaces.insert(ns.to_string());
    }
    anyhow::ensure!(namespaces.len() == PROCS, "namespaces: {namespaces:?}");
    for i in 0..PROCS * K {
        let ev = conformance::next_event(&mut rx, &format!("namespaced write {i}")).await?;
        anyhow::ensure!(ev.kind == EventKind::Put, "{ev:?}");
    }
    let l = s.list("/netns/").await?;
    anyhow::ensure!(l.kvs.len() == PROCS * K, "{} keys listed", l.kvs.len());
    Ok(())
}
