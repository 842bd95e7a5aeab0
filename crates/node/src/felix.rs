//! Felix inside calico-node: every syncer update goes into Felix's calculation graph, and once
//! the datastore is in sync the desired state is moved into the kernel by
//! `calico_felix::reconcile` — only the difference, routes in one batch.
//!
//! ```text
//!  Agent ─SyncConsumer::on_update─▶ channel ─▶ dataplane thread ("felix-dataplane"):
//!     Felix::feed (CalcGraph::apply, every update)
//!       └▶ coalesce: more updates until 2 ms pass quietly (at most 20 ms)
//!           └▶ Felix::reconcile ─▶ Reconciler::apply (cached kernel view) or ::resync
//!     timers: refresh every routeRefreshInterval (90 s: re-read the kernel, repair damage);
//!             retry with backoff while a route waits for its caliX or an object failed
//! ```
//!
//! The thread owns the netlink socket (synchronous calls), so the agent's single-threaded
//! runtime never waits on the kernel. Nothing is applied before the first InSync: after a
//! restart the whole desired state is known before the kernel is touched, so routes that are
//! still right are left alone (no delete and re-add) and only stale objects Felix owns go.
//! The thread ends when the agent drops its consumer (shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use calico_api::resources::common::parse_duration;
use calico_api::{Kind, Resource};
use calico_dataplane::{Netlink, NftCommand, ProcSys};
use calico_datastore::keys;
use calico_datastore::syncer::SyncUpdate;
use calico_felix::reconcile::{self, Dataplane, ReconcileError, Reconciler, Report, sysctls};
use calico_felix::{CalcGraph, LocalFacts, RouteKind, RouteSource};

use crate::agent::SyncConsumer;
use crate::health::Status;

/// After an update, wait until no other one came for this long before applying...
pub const COALESCE_QUIET: Duration = Duration::from_millis(2);
/// ...but never longer than this after the first one.
pub const COALESCE_MAX: Duration = Duration::from_millis(20);
/// First retry after a route was left pending (its `caliX` not there yet) or an object failed;
/// doubles up to [`RETRY_MAX_PENDING`] while only routes wait for their interface, up to
/// [`RETRY_MAX`] when something failed (each such retry re-reads the kernel).
pub const RETRY_MIN: Duration = Duration::from_millis(10);
pub const RETRY_MAX_PENDING: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Felix's state on the dataplane thread: the graph, the reconciler, the refresh setting.
/// Pure apart from [`Felix::reconcile`], which goes through the `Dataplane` traits (so it is
/// tested with the recording fakes).
pub struct Felix {
    graph: CalcGraph,
    reconciler: Reconciler,
    /// `FELIX_ROUTEREFRESHINTERVAL`, which wins over FelixConfiguration.
    refresh_env: Option<Duration>,
    /// `routeRefreshInterval` of FelixConfiguration `default` and `node.<name>`.
    refresh_cfg: BTreeMap<String, Duration>,
    felix_config_prefix: String,
    dirty: bool,
    applied_once: bool,
    /// Workload interfaces whose sysctls were checked since the last full pass.
    workload_ifaces: BTreeSet<String>,
}

impl Felix {
    pub fn new(local: LocalFacts, refresh_env: Option<Duration>) -> Felix {
        let mut reconciler = Reconciler::new();
        // Belt and braces: `reconcile` is only called in sync, but a partial view must never
        // delete anything.
        reconciler.hold_deletes(true);
        Felix {
            graph: CalcGraph::new(local),
            reconciler,
            refresh_env,
            refresh_cfg: BTreeMap::new(),
            felix_config_prefix: keys::resource_prefix(Kind::FelixConfiguration, None),
            dirty: false,
            applied_once: false,
            workload_ifaces: BTreeSet::new(),
        }
    }

    /// One syncer update into the graph.
    pub fn feed(&mut self, update: &SyncUpdate) {
        let out = self.graph.apply(update);
        if let Some(e) = out.error {
            tracing::warn!("felix: {e}");
        }
        match update {
            SyncUpdate::InSync => self.dirty = true,
            SyncUpdate::Put(kv) if kv.key.starts_with(&self.felix_config_prefix) => {
                self.felix_config(&kv.key, Some(&kv.value));
            }
            SyncUpdate::Delete { key, .. } if key.starts_with(&self.felix_config_prefix) => {
                self.felix_config(key, None);
            }
            _ => {}
        }
        if !out.changes.is_empty() {
            self.dirty = true;
        }
    }

    fn felix_config(&mut self, key: &str, value: Option<&[u8]>) {
        let Some((_, _, name)) = keys::parse_resource_key(key) else {
            return;
        };
        let interval = value
            .and_then(|v| Resource::from_json(Kind::FelixConfiguration, v).ok())
            .and_then(|r| match r {
                Resource::FelixConfiguration(f) => f.spec.route_refresh_interval,
                _ => None,
            })
            .and_then(|s| {
                let secs = parse_duration(&s);
                if secs.is_none() {
                    tracing::warn!(
                        "FelixConfiguration {name}: routeRefreshInterval {s:?} is not a duration; \
                         ignored (write e.g. 90s)"
                    );
                }
                secs
            })
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        match interval {
            Some(d) => self.refresh_cfg.insert(name, d),
            None => self.refresh_cfg.remove(&name),
        };
    }

    pub fn in_sync(&self) -> bool {
        self.graph.in_sync()
    }

    /// Something changed since the last reconcile.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn applied_once(&self) -> bool {
        self.applied_once
    }

    pub fn graph(&self) -> &CalcGraph {
        &self.graph
    }

    /// How often to re-read the kernel; `None`: never (interval 0).
    pub fn refresh_interval(&self) -> Option<Duration> {
        let node_key = format!("node.{}", self.graph.local().node_name);
        let d = self
            .refresh_env
            .or_else(|| self.refresh_cfg.get(&node_key).copied())
            .or_else(|| self.refresh_cfg.get("default").copied())
            .unwrap_or(reconcile::DEFAULT_RESYNC_INTERVAL);
        (!d.is_zero()).then_some(d)
    }

    /// Moves the kernel to the desired state: `full` re-reads the kernel first (the first pass,
    /// the periodic refresh). Object failures and pending routes are in the report.
    pub fn reconcile(
        &mut self,
        dp: &mut Dataplane<'_>,
        full: bool,
    ) -> Result<Report, ReconcileError> {
        let full = full || !self.applied_once;
        self.reconciler.hold_deletes(!self.graph.in_sync());
        let state = self.graph.state();
        let mut report = if full {
            self.reconciler.resync(dp, state)?
        } else {
            self.reconciler.apply(dp, state)?
        };
        self.dirty = false;
        self.applied_once = true;
        if full {
            self.workload_ifaces.clear();
            match sysctls::host_settings().and_then(|s| sysctls::ensure(dp.sysctl, &s)) {
                Ok(n) => report.sysctls_written += n,
                Err(e) => report.errors.push(e),
            }
        }
        // Workload interfaces that exist now (their route is not pending) get their sysctls.
        let pending: BTreeSet<_> = report.pending.iter().collect();
        for r in self.graph.state().routes.values() {
            let RouteKind::Device { iface } = &r.kind else {
                continue;
            };
            if r.source != RouteSource::LocalWorkload
                || pending.contains(&r.dst)
                || self.workload_ifaces.contains(iface)
            {
                continue;
            }
            match sysctls::workload_settings(iface).and_then(|s| sysctls::ensure(dp.sysctl, &s)) {
                Ok(n) => {
                    report.sysctls_written += n;
                    self.workload_ifaces.insert(iface.clone());
                }
                Err(e) => report.errors.push(e),
            }
        }
        Ok(report)
    }
}

/// The agent side: forwards updates to the dataplane thread.
pub struct FelixConsumer(Sender<SyncUpdate>);

impl SyncConsumer for FelixConsumer {
    fn on_update(&mut self, update: &SyncUpdate) {
        // A send error means the thread is gone; it logged why.
        let _ = self.0.send(update.clone());
    }
}

/// Starts the dataplane thread in the current network namespace. Returns the consumer to give
/// to `Agent::add_consumer` and the thread's handle (it ends when the consumer is dropped).
pub fn spawn(
    felix: Felix,
    status: Arc<Status>,
) -> Result<(FelixConsumer, std::thread::JoinHandle<()>), SpawnError> {
    let rtnl = Netlink::open().map_err(SpawnError::Netlink)?;
    let (tx, rx) = mpsc::channel();
    status.felix_enabled.store(true, Ordering::Relaxed);
    status.dataplane_alive.store(true, Ordering::Relaxed);
    let handle = std::thread::Builder::new()
        .name("felix-dataplane".into())
        .spawn(move || {
            let _alive = AliveGuard(Arc::clone(&status));
            let mut rtnl = rtnl;
            let mut sysctl = ProcSys::default();
            let mut nft = NftCommand::new();
            let mut dp = Dataplane {
                rtnl: &mut rtnl,
                sysctl: &mut sysctl,
                nft: &mut nft,
            };
            run(felix, &rx, &mut dp, &status);
        })
        .map_err(SpawnError::Thread)?;
    Ok((FelixConsumer(tx), handle))
}

/// Clears `dataplane_alive` when the thread ends, however it ends (liveness then fails).
struct AliveGuard(Arc<Status>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.dataplane_alive.store(false, Ordering::Relaxed);
        if std::thread::panicking() {
            tracing::error!("felix: the dataplane thread panicked; liveness now fails");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("felix: opening the netlink socket failed: {0}; calico-node needs CAP_NET_ADMIN")]
    Netlink(calico_dataplane::Error),
    #[error("felix: starting the dataplane thread failed: {0}")]
    Thread(std::io::Error),
}

/// Feeds updates until `COALESCE_QUIET` passes without one (at most `COALESCE_MAX`). False
/// when the channel closed.
fn coalesce(felix: &mut Felix, rx: &Receiver<SyncUpdate>) -> bool {
    let start = Instant::now();
    loop {
        let left = COALESCE_MAX.saturating_sub(start.elapsed());
        if left.is_zero() {
            return true;
        }
        match rx.recv_timeout(COALESCE_QUIET.min(left)) {
            Ok(u) => felix.feed(&u),
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// The dataplane loop; returns when the channel closes.
pub fn run(mut felix: Felix, rx: &Receiver<SyncUpdate>, dp: &mut Dataplane<'_>, status: &Status) {
    let mut next_refresh: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    let mut refresh_used = felix.refresh_interval();
    let mut retry: Option<(Instant, Duration)> = None;
    let mut last_problems = String::new();
    loop {
        let wake = [next_refresh, retry.map(|r| r.0)]
            .into_iter()
            .flatten()
            .min();
        let got = match wake {
            Some(w) => rx.recv_timeout(w.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut open = true;
        match got {
            Ok(u) => {
                felix.feed(&u);
                open = coalesce(&mut felix, rx);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if !open {
            return;
        }
        if !felix.in_sync() {
            continue;
        }
        // routeRefreshInterval changed in a FelixConfiguration: reschedule from the last refresh.
        let interval = felix.refresh_interval();
        if interval != refresh_used {
            tracing::info!(?interval, "felix: route refresh interval changed");
            refresh_used = interval;
            next_refresh = last_full.and_then(|t| interval.map(|d| t + d));
        }
        let now = Instant::now();
        let full = !felix.applied_once() || next_refresh.is_some_and(|t| t <= now);
        let retry_due = retry.is_some_and(|(t, _)| t <= now);
        if !(full || retry_due || felix.dirty()) {
            continue;
        }
        let first = !felix.applied_once();
        let started = Instant::now();
        let result = felix.reconcile(dp, full);
        let took = started.elapsed();
        status.dataplane_applies.fetch_add(1, Ordering::Relaxed);
        if full {
            let now = Instant::now();
            last_full = Some(now);
            next_refresh = refresh_used.map(|d| now + d);
        }
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                status.dataplane_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("felix: dataplane update failed: {e}");
                retry = Some(backoff(retry, RETRY_MAX));
                continue;
            }
        };
        status.dataplane_synced.store(true, Ordering::Relaxed);
        if first {
            tracing::info!(
                routes = felix.graph().state().routes.len(),
                set = report.routes_replaced,
                deleted_stale = report.routes_deleted,
                device_created = report.device_created,
                ?took,
                "felix: dataplane programmed"
            );
        } else if report.changed() {
            tracing::debug!(
                full,
                routes_set = report.routes_replaced,
                routes_deleted = report.routes_deleted,
                device_created = report.device_created,
                device_deleted = report.device_deleted,
                ?took,
                "felix: dataplane updated"
            );
        }
        let problems = describe(&report);
        if problems != last_problems && !problems.is_empty() {
            if report.errors.is_empty() && report.conflicts.is_empty() {
                tracing::debug!("felix: {problems}");
            } else {
                tracing::warn!("felix: {problems}");
            }
        }
        last_problems = problems;
        retry = if !report.errors.is_empty() {
            status.dataplane_failures.fetch_add(1, Ordering::Relaxed);
            Some(backoff(retry, RETRY_MAX))
        } else if !report.pending.is_empty() {
            Some(backoff(retry, RETRY_MAX_PENDING))
        } else {
            None
        };
    }
}

/// The next retry: `RETRY_MIN`, doubling, capped.
fn backoff(prev: Option<(Instant, Duration)>, max: Duration) -> (Instant, Duration) {
    let d = prev.map_or(RETRY_MIN, |(_, d)| (d * 2).min(max));
    (Instant::now() + d, d)
}

/// Failures, conflicts and pending routes of a report as one line ("" when clean).
fn describe(r: &Report) -> String {
    let mut parts = Vec::new();
    if !r.errors.is_empty() {
        let errs: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        parts.push(format!("dataplane errors: {}", errs.join("; ")));
    }
    if !r.conflicts.is_empty() {
        parts.push(format!(
            "routes held by another program (left alone): {:?}",
            r.conflicts
        ));
    }
    if !r.pending.is_empty() {
        parts.push(format!(
            "routes waiting for their interface: {:?}",
            r.pending
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
#[path = "felix_tests.rs"]
mod tests;
