//! The running node: follows the datastore through the syncer, hands every update to the
//! registered consumers (the seam where Felix's calculation graph and reconcilers plug in), and
//! keeps the node's own state in line with the pools (tunnel addresses, pod MTU file).
//!
//! ```text
//!  Syncer(prefixes) ──SyncUpdate──▶ Agent::step ──▶ every SyncConsumer::on_update (felix::FelixConsumer)
//!                                       │ pool / own Node changed (after first InSync)
//!                                       ▼
//!                      tunnels::reconcile + pod MTU file   (retried every RETRY on failure)
//! ```
//!
//! Shutdown is a future the caller supplies (SIGTERM/SIGINT in `main`); the loop returns when
//! it completes, dropping the syncer.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use calico_api::Kind;
use calico_datastore::Datastore;
use calico_datastore::keys;
use calico_datastore::resources::ResourceStore;
use calico_datastore::syncer::{SyncUpdate, Syncer, SyncerConfig};
use calico_ipam::Ipam;

use crate::config::NodeConfig;
use crate::health::{RESYNC_IN_PROGRESS, RESYNC_IN_SYNC, Status};
use crate::startup::{self, StartupError};
use crate::tunnels;

/// How long to wait before retrying a failed reconcile.
pub const RETRY: Duration = Duration::from_secs(2);

/// The seam for Felix (and later BGP): receives every syncer update in order. Called on the
/// agent's task, so implementations must not block for long; heavy work belongs on their own
/// task behind a channel.
pub trait SyncConsumer: Send {
    fn on_update(&mut self, update: &SyncUpdate);
}

/// A consumer that forwards updates into a channel (for consumers living on another task).
pub struct ChannelConsumer(pub tokio::sync::mpsc::UnboundedSender<SyncUpdate>);

impl SyncConsumer for ChannelConsumer {
    fn on_update(&mut self, update: &SyncUpdate) {
        let _ = self.0.send(update.clone());
    }
}

/// The key prefixes the node follows: Felix's inputs (pools, nodes, endpoints, Felix
/// configuration, IPAM blocks and affinities).
pub fn watched_prefixes() -> Vec<String> {
    vec![
        keys::resource_prefix(Kind::IPPool, None),
        keys::resource_prefix(Kind::Node, None),
        keys::resource_prefix(Kind::WorkloadEndpoint, None),
        keys::resource_prefix(Kind::FelixConfiguration, None),
        keys::block_prefix(false),
        keys::all_affinities_prefix(),
    ]
}

pub struct Agent {
    cfg: NodeConfig,
    ds: Arc<dyn Datastore>,
    store: ResourceStore,
    ipam: Ipam,
    status: Arc<Status>,
    host_mtu: u32,
    consumers: Vec<Box<dyn SyncConsumer>>,
    pool_prefix: String,
    own_node_key: String,
    dirty: bool,
    in_sync: bool,
}

impl Agent {
    pub fn new(
        cfg: NodeConfig,
        ds: Arc<dyn Datastore>,
        status: Arc<Status>,
        host_mtu: u32,
    ) -> Agent {
        let own_node_key = keys::resource_key(Kind::Node, None, &cfg.nodename);
        Agent {
            store: ResourceStore::new(ds.clone()),
            ipam: Ipam::new(ds.clone()),
            ds,
            status,
            host_mtu,
            consumers: Vec::new(),
            pool_prefix: keys::resource_prefix(Kind::IPPool, None),
            own_node_key,
            cfg,
            dirty: false,
            in_sync: false,
        }
    }

    /// Registers a consumer of syncer updates (Felix's calculation graph, BGP, tests).
    pub fn add_consumer(&mut self, c: Box<dyn SyncConsumer>) {
        self.consumers.push(c);
    }

    /// Runs until `shutdown` completes. Errors only when the syncer stops by itself.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        let (_syncer, mut rx) =
            Syncer::start(self.ds.clone(), SyncerConfig::new(watched_prefixes()));
        self.status
            .resync_state
            .store(RESYNC_IN_PROGRESS, Ordering::Relaxed);
        tokio::pin!(shutdown);
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                update = rx.recv() => {
                    let Some(update) = update else {
                        return Err(StartupError::SyncerStopped);
                    };
                    self.step(&update);
                    // Drain what is already queued before reconciling once.
                    while let Ok(more) = rx.try_recv() {
                        self.step(&more);
                    }
                    self.reconcile_if_dirty().await;
                }
                _ = retry.tick() => self.reconcile_if_dirty().await,
            }
        }
    }

    fn step(&mut self, update: &SyncUpdate) {
        self.status.syncer_updates.fetch_add(1, Ordering::Relaxed);
        for c in &mut self.consumers {
            c.on_update(update);
        }
        let key = match update {
            SyncUpdate::InSync => {
                if !self.in_sync {
                    tracing::info!("datastore in sync");
                }
                self.in_sync = true;
                self.dirty = true;
                self.status.in_sync.store(true, Ordering::Relaxed);
                self.status
                    .resync_state
                    .store(RESYNC_IN_SYNC, Ordering::Relaxed);
                return;
            }
            SyncUpdate::Put(kv) => kv.key.as_str(),
            SyncUpdate::Delete { key, .. } => key.as_str(),
        };
        if key.starts_with(&self.pool_prefix) || key == self.own_node_key {
            self.dirty = true;
        }
    }

    async fn reconcile_if_dirty(&mut self) {
        if !(self.dirty && self.in_sync) {
            return;
        }
        match self.reconcile().await {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::warn!("node reconcile failed (retrying in {RETRY:?}): {e}"),
        }
    }

    /// Tunnel addresses and the pod MTU file from the current pools.
    async fn reconcile(&mut self) -> Result<(), StartupError> {
        let pools = startup::list_pools(&self.store).await?;
        let t = tunnels::reconcile(&self.store, &self.ipam, &self.cfg.nodename, &pools).await?;
        self.status
            .tunnel_reconciles
            .fetch_add(1, Ordering::Relaxed);
        let mtu = startup::pod_mtu(self.host_mtu, &pools);
        if u64::from(mtu) != self.status.pod_mtu.load(Ordering::Relaxed) {
            startup::write_state_file(&self.cfg.state_dir, "mtu", &mtu.to_string())?;
            self.status.pod_mtu.store(mtu.into(), Ordering::Relaxed);
            tracing::info!(pod_mtu = mtu, "pod MTU changed");
        }
        tracing::debug!(vxlan = ?t.vxlan, ipip = ?t.ipip, "tunnel addresses reconciled");
        Ok(())
    }
}
