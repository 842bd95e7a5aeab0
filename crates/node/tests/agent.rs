//! The agent loop as a library: every syncer update reaches the registered consumers (the seam
//! Felix plugs into), readiness follows the first in-sync, and the loop stops on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use calico_api::Resource;
use calico_api::resources::IPPool;
use calico_datastore::DatastoreConfig;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::syncer::SyncUpdate;
use calico_node::agent::{Agent, ChannelConsumer};
use calico_node::config::NodeConfig;
use calico_node::health::Status;

async fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<SyncUpdate>) -> Result<SyncUpdate> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no update within 10 s")?
        .context("consumer channel closed")
}

#[tokio::test]
async fn consumers_see_snapshot_in_sync_and_changes_then_shutdown() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ds = calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: dir.path().join("db"),
    }))
    .await?;
    let store = ResourceStore::new(ds.clone());
    let mut p = IPPool::new("p1");
    p.spec.cidr = "10.1.0.0/16".into();
    store.create(Resource::IPPool(p)).await?;

    let vars: HashMap<String, String> = [
        ("NODENAME", "n1"),
        (
            "CALICO_STATE_DIR",
            &dir.path().join("state").display().to_string(),
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = NodeConfig::from_vars(&vars, || Ok("n1".into()))?;
    let status = Status::new();
    status.startup_done.store(true, Ordering::Relaxed);
    let mut agent = Agent::new(cfg, ds.clone(), Arc::clone(&status), 1500);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    agent.add_consumer(Box::new(ChannelConsumer(tx)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stop_rx.await;
    }));

    let first = recv(&mut rx).await?;
    assert!(
        matches!(&first, SyncUpdate::Put(kv) if kv.key.ends_with("/ippools/p1")),
        "{first:?}"
    );
    assert_eq!(recv(&mut rx).await?, SyncUpdate::InSync);
    assert!(status.ready());

    let mut p = IPPool::new("p2");
    p.spec.cidr = "10.2.0.0/16".into();
    store.create(Resource::IPPool(p)).await?;
    let next = recv(&mut rx).await?;
    assert!(
        matches!(&next, SyncUpdate::Put(kv) if kv.key.ends_with("/ippools/p2")),
        "{next:?}"
    );
    assert!(status.syncer_updates.load(Ordering::Relaxed) >= 3);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task).await???;
    Ok(())
}
