//! The allocator's read cache: what every auto-assignment needs besides blocks — the IPAM
//! configuration, the IP pools, the IPReservations, the Node's labels — read once and reused,
//! and the block a host last allocated from.
//!
//! Staleness, and why it is safe:
//! - Every block write of an auto-assignment is one transaction that also checks the revisions
//!   of the pool the block is in, the Node, and both IPAM configuration keys (the v2 key and the
//!   v3 `IPAMConfiguration default`, each "absent" when missing). A pool disabled or deleted, a
//!   Node relabelled or a configuration changed in the store makes that write fail with
//!   `IpamError::Stale`; `auto_assign` then drops the cache and starts again from fresh reads.
//!   So a disabled pool is never written to after it was disabled, with no delay at all.
//! - What no check can cover is something *new*: a pool created, an IPReservation created or
//!   changed. Those are seen when the cache is reloaded: after `CACHE_TTL`, at once when an
//!   auto-assignment fails (no pool, exhausted, block limit: the request is retried with fresh
//!   reads before the error is returned), and on `Ipam::invalidate_cache`.
//! - The last-block hint (per host and family) is the block as this process last wrote it. Using
//!   it costs no read; if another writer changed the block since, the block's own revision check
//!   fails and the block is read again. The host's lock is held while it is used, so it is taken
//!   out of the cache and put back after the write instead of being copied.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use calico_api::resources::ipam::IPAMConfiguration;
use calico_api::resources::ippool::IPPool;
use calico_api::{Kind, Resource};
use calico_datastore::resources::StoreError;
use calico_datastore::{Check, Revision, keys};
use ipnet::IpNet;

use super::store::Versioned;
use super::{Ipam, IpamError, Result};
use crate::block::AllocationBlock;
use crate::model::{IpamConfig, IpamConfigValue};
use crate::pools::{Pool, Reservations};

/// How long pools, reservations, configuration and Node labels are reused before a reload.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// The cluster-wide inputs of an auto-assignment, as of one load.
pub(crate) struct Shared {
    pub config: IpamConfig,
    /// The two configuration keys as read (absent or at a revision).
    pub config_checks: Vec<Check>,
    pub pools: Vec<IPPool>,
    /// Each usable pool's CIDR (parsed once per load, not per write) and the check of its key
    /// and revision.
    pool_checks: Vec<(IpNet, Check)>,
    pub reservations: Reservations,
    loaded: Instant,
}

/// One Node's labels and the check of its revision.
#[derive(Clone)]
pub(crate) struct NodeInfo {
    pub labels: BTreeMap<String, String>,
    /// `None` for a virtual owner (no Node resource).
    pub check: Option<Check>,
    loaded: Instant,
}

#[derive(Default)]
pub(crate) struct Cache {
    shared: Mutex<Option<Arc<Shared>>>,
    nodes: Mutex<HashMap<String, NodeInfo>>,
    /// Per (host, IPv6?): the affine block this process last allocated from, as written.
    last_block: Mutex<HashMap<(String, bool), Versioned<AllocationBlock>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The check that a resource is still at the revision it was read at.
fn resource_check(kind: Kind, name: &str, r: &Resource) -> Check {
    version_check(kind, name, r.metadata().resource_version.as_deref())
}

fn pool_check(name: &str, p: &IPPool) -> Check {
    version_check(Kind::IPPool, name, p.metadata.resource_version.as_deref())
}

fn version_check(kind: Kind, name: &str, version: Option<&str>) -> Check {
    let key = keys::resource_key(kind, None, name);
    match version.and_then(|v| v.parse::<Revision>().ok()) {
        Some(rev) => Check::revision(key, rev),
        // Not expected (the store always sets it): a check that fails, forcing a reload.
        None => Check::revision(key, -1),
    }
}

impl Shared {
    /// The checks guarding a write to `block`: configuration, and the pool holding the block.
    pub fn checks_for(&self, block: &IpNet) -> Vec<Check> {
        let mut out = Vec::with_capacity(self.config_checks.len() + 4);
        out.extend_from_slice(&self.config_checks);
        if let Some((_, check)) = self.pool_checks.iter().find(|(c, _)| c.contains(block)) {
            out.push(check.clone());
        }
        out
    }
}

impl Ipam {
    /// Drops every cached read: the next assignment reads pools, reservations, configuration
    /// and Nodes again.
    pub fn invalidate_cache(&self) {
        *lock(&self.cache.shared) = None;
        lock(&self.cache.nodes).clear();
        lock(&self.cache.last_block).clear();
    }

    /// The cluster-wide inputs, from the cache when younger than the TTL (and `fresh` is off).
    /// Also returns whether they came from the cache.
    pub(crate) async fn shared(&self, fresh: bool) -> Result<(Arc<Shared>, bool)> {
        if !fresh
            && let Some(s) = lock(&self.cache.shared).as_ref()
            && s.loaded.elapsed() < self.cache_ttl
        {
            return Ok((s.clone(), true));
        }
        let (config, pools, reservations) =
            tokio::try_join!(self.config_checked(), self.pools(), self.reservations())?;
        let pool_checks = pools
            .iter()
            .filter_map(|p| {
                let cidr = Pool::from_resource(p)?.cidr;
                let name = &p.metadata.name;
                Some((cidr, pool_check(name, p)))
            })
            .collect();
        let s = Arc::new(Shared {
            config: config.0,
            config_checks: config.1,
            pools,
            pool_checks,
            reservations,
            loaded: Instant::now(),
        });
        *lock(&self.cache.shared) = Some(s.clone());
        Ok((s, false))
    }

    /// The Node's labels (upstream refuses to assign for a node it does not know), cached like
    /// `shared`.
    pub(crate) async fn node_info(&self, node: &str, fresh: bool) -> Result<(NodeInfo, bool)> {
        if !fresh
            && let Some(n) = lock(&self.cache.nodes).get(node)
            && n.loaded.elapsed() < self.cache_ttl
        {
            return Ok((n.clone(), true));
        }
        if node.starts_with(super::store::VIRTUAL_PREFIX) {
            let info = NodeInfo {
                labels: BTreeMap::new(),
                check: None,
                loaded: Instant::now(),
            };
            return Ok((info, true));
        }
        let r = match self.resources.get(Kind::Node, None, node).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(IpamError::NodeMissing(node.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let info = NodeInfo {
            labels: r.metadata().labels.clone().unwrap_or_default(),
            check: Some(resource_check(Kind::Node, node, &r)),
            loaded: Instant::now(),
        };
        lock(&self.cache.nodes).insert(node.to_string(), info.clone());
        Ok((info, false))
    }

    /// Takes the host's last-used block out of the cache (no copy of the ~9 KiB block): whoever
    /// takes it writes from it and puts the new version back with `set_last_block`, or puts it
    /// back unused. A write that fails leaves no hint: the next assignment lists the host's
    /// affinities, as it does when no hint exists.
    pub(crate) fn take_last_block(
        &self,
        host: &str,
        v6: bool,
    ) -> Option<Versioned<AllocationBlock>> {
        lock(&self.cache.last_block).remove(&(host.to_string(), v6))
    }

    /// Whether `last_block` has a block for (host, family), without copying it.
    pub(crate) fn has_last_block(&self, host: &str, v6: bool) -> bool {
        lock(&self.cache.last_block).contains_key(&(host.to_string(), v6))
    }

    pub(crate) fn set_last_block(&self, host: &str, v6: bool, block: Versioned<AllocationBlock>) {
        lock(&self.cache.last_block).insert((host.to_string(), v6), block);
    }

    pub(crate) fn forget_last_block(&self, host: &str, v6: bool) {
        lock(&self.cache.last_block).remove(&(host.to_string(), v6));
    }

    /// IPAM settings: `/calico/ipam/v2/config` when present (upstream's own key), else the v3
    /// `IPAMConfiguration` named `default`, else upstream's defaults.
    pub async fn config(&self) -> Result<IpamConfig> {
        Ok(self.config_checked().await?.0)
    }

    /// `config`, with checks that both keys are still as read.
    async fn config_checked(&self) -> Result<(IpamConfig, Vec<Check>)> {
        let key = keys::ipam_config_key();
        let v3_key = keys::resource_key(Kind::IPAMConfiguration, None, "default");
        // Both places read together: one round-trip time when the first is absent.
        let (own, v3) = tokio::join!(
            self.ds.get(&key),
            self.resources.get(Kind::IPAMConfiguration, None, "default")
        );
        let own = own?;
        let v3 = match v3 {
            Ok(r) => Some(r),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let checks = vec![
            match &own {
                Some(kv) => Check::revision(&key, kv.mod_revision),
                None => Check::absent(&key),
            },
            match &v3 {
                Some(r) => resource_check(Kind::IPAMConfiguration, "default", r),
                None => Check::absent(v3_key),
            },
        ];
        if let Some(kv) = own {
            let v: IpamConfigValue =
                serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            return Ok((IpamConfig::from(&v), checks));
        }
        let config = match v3 {
            Some(Resource::IPAMConfiguration(IPAMConfiguration { spec, .. })) => IpamConfig {
                strict_affinity: spec.strict_affinity,
                auto_allocate_blocks: spec.auto_allocate(),
                max_blocks_per_host: u32::try_from(spec.max_blocks_per_host.max(0)).unwrap_or(0),
            },
            _ => IpamConfig::default(),
        };
        Ok((config, checks))
    }
}
