//! The datastore-backed allocator: upstream's `ipamClient` (AutoAssign, AssignIP, ReleaseIPs,
//! ReleaseByHandle, IPAM config). The only module of this crate that does I/O.
//!
//! ```text
//!  auto_assign ─▶ cache: config, pools, reservations, Node (TTL; every write checks them)
//!      ─▶ the host's last-used block (no read) ─▶ the host's affinities (one listing)
//!      ─▶ claim a new block (pending affinity → create block host:<node> → confirmed)
//!      ─▶ borrow (strictAffinity off)
//!      each block write: block::auto_assign in memory → ONE transaction: block (CAS) + handle
//!      (+n) checked with pool, Node and config revisions; a lost race re-reads and retries
//!  release ─▶ ONE transaction: block (freed ordinals, sequence-guarded) + handles (−n)
//! ```
//!
//! Steady state on one host: one transaction and no read per allocation. Because the block and
//! its handle are written together, a crash never leaves a handle count without its address or
//! an address without its handle count.

mod assign;
mod assign_ip;
mod batch;
mod borrow;
mod cache;
mod claim;
mod host;
mod node;
mod release;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use calico_api::resources::ippool::AllowedUse;
use calico_datastore::Datastore;
use calico_datastore::resources::{ResourceStore, StoreError};
use ipnet::IpNet;

use crate::block::BlockError;
use crate::clock::{Clock, Random, SystemClock, system_random};
use crate::pools::PoolError;

pub use cache::CACHE_TTL;
pub use host::HostRelease;
pub use node::{NodeDeleteError, NodeDeletion, node_config_name};
pub use release::ReleaseResult;

/// How often a compare-and-swap is retried before giving up (upstream's `datastoreRetries`).
pub const RETRIES: usize = 100;

/// How long an empty block must have been claimed before another node may take it over.
pub const EMPTY_BLOCK_MIN_RECLAIM_AGE: Duration = Duration::from_secs(60);

/// Attribute keys upstream stores with every allocation.
pub const ATTR_NODE: &str = "node";
pub const ATTR_POD: &str = "pod";
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_TIMESTAMP: &str = "timestamp";
pub const ATTR_TYPE: &str = "type";

/// Errors of IPAM operations. Messages say what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Datastore(#[from] calico_datastore::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(
        "node {0:?} does not exist: IPAM needs the Node resource (its labels pick the IP pools); \
         start calico-node on it or create the Node first"
    )]
    NodeMissing(String),
    #[error(
        "IPv{family} pools exhausted for node {node}: assigned {assigned} of {requested} \
         addresses; pools {pools} have no free address{detail}. Add an IPPool, or release \
         addresses (`calicoctl ipam check`, `calicoctl ipam release`)"
    )]
    Exhausted {
        family: u8,
        node: String,
        requested: usize,
        assigned: usize,
        pools: String,
        detail: String,
    },
    #[error(
        "node {node} already has {owned} IPv{family} blocks, the limit (maxBlocksPerHost {limit}), \
         and they are full (pools {pools}); raise maxBlocksPerHost with `calicoctl ipam \
         configure --max-blocks-per-host`, or add an IPPool with a larger blockSize"
    )]
    BlockLimit {
        node: String,
        family: u8,
        owned: usize,
        limit: u32,
        pools: String,
    },
    #[error(
        "IP address {ip} is already in use by handle {handle} (block {block}); release it first or pick another address"
    )]
    Taken {
        ip: IpAddr,
        handle: String,
        block: IpNet,
    },
    #[error(
        "IP address {0} is not in any enabled IP pool; add or enable an IPPool that contains it"
    )]
    NotInPool(IpAddr),
    #[error(
        "IP address {ip} is in block {block}, which is affine to {owner}, and strictAffinity is \
         on; pick an address from a block of node {node} or turn strictAffinity off"
    )]
    StrictAffinity {
        ip: IpAddr,
        block: IpNet,
        owner: String,
        node: String,
    },
    #[error(
        "gave up after {RETRIES} conflicting writes to {0}: too many concurrent IPAM requests; retry"
    )]
    TooManyRetries(String),
    #[error("stored IPAM value at {key} is not valid: {reason}; run `calicoctl ipam check`")]
    Corrupt { key: String, reason: String },
    #[error("invalid IPAM request: {0}")]
    Invalid(String),
    /// A pool, the Node or the IPAM configuration changed since it was read (the block write
    /// checking it failed): `auto_assign` reads them again and retries.
    #[error(
        "{0} changed while addresses were being assigned; retry (the next attempt reads it again)"
    )]
    Stale(String),
}

pub type Result<T, E = IpamError> = std::result::Result<T, E>;

/// Who an allocation is for. Converted into upstream's attribute map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub node: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub timestamp: Option<String>,
    /// e.g. `ipipTunnelAddress`, `vxlanTunnelAddress`.
    pub kind: Option<String>,
    pub extra: BTreeMap<String, String>,
}

impl Attrs {
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = self.extra.clone();
        for (k, v) in [
            (ATTR_NODE, &self.node),
            (ATTR_POD, &self.pod),
            (ATTR_NAMESPACE, &self.namespace),
            (ATTR_TIMESTAMP, &self.timestamp),
            (ATTR_TYPE, &self.kind),
        ] {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        }
        m
    }
}

/// An auto-assignment request (upstream's `AutoAssignArgs`).
#[derive(Debug, Clone)]
pub struct AutoAssignArgs {
    pub num_v4: usize,
    pub num_v6: usize,
    pub handle: Option<String>,
    pub attrs: Attrs,
    pub hostname: String,
    /// Pool names or CIDRs; empty = automatic selection.
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
    /// Labels of the workload's namespace (for pools' namespaceSelector).
    pub namespace_labels: Option<BTreeMap<String, String>>,
    pub usage: AllowedUse,
    /// Per-request block cap; 0 = the configured one (the smaller of the two wins).
    pub max_blocks_per_host: u32,
}

impl AutoAssignArgs {
    pub fn new(hostname: impl Into<String>, handle: impl Into<String>) -> Self {
        AutoAssignArgs {
            num_v4: 1,
            num_v6: 0,
            handle: Some(handle.into()),
            attrs: Attrs::default(),
            hostname: hostname.into(),
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            namespace_labels: None,
            usage: AllowedUse::Workload,
            max_blocks_per_host: 0,
        }
    }
}

/// The addresses an auto-assignment handed out, each with its block's prefix length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

/// A request for one specific address (upstream's `AssignIPArgs`).
#[derive(Debug, Clone)]
pub struct AssignIpArgs {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub attrs: Attrs,
    pub hostname: String,
}

/// Calico IPAM over a datastore.
#[derive(Clone)]
pub struct Ipam {
    ds: Arc<dyn Datastore>,
    resources: Arc<ResourceStore>,
    clock: Arc<dyn Clock>,
    random: Random,
    /// One lock per host, held for the whole of an auto-assignment (as upstream's CNI plugin
    /// holds a host-wide file lock): allocators of one node in this process take turns instead
    /// of losing compare-and-swaps on the same block to each other. Other processes are still
    /// kept apart by the CAS writes alone.
    host_locks: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Pools, reservations, configuration, Nodes and last-used blocks (see `cache`).
    cache: Arc<cache::Cache>,
    cache_ttl: Duration,
    /// Requests waiting for their host's lock (see `batch`).
    queues: Arc<batch::Queues>,
}

impl Ipam {
    pub fn new(ds: Arc<dyn Datastore>) -> Self {
        Self::with_clock(ds, Arc::new(SystemClock), system_random())
    }

    /// With an injected clock and randomness (tests).
    pub fn with_clock(ds: Arc<dyn Datastore>, clock: Arc<dyn Clock>, random: Random) -> Self {
        Ipam {
            resources: Arc::new(ResourceStore::new(ds.clone())),
            ds,
            clock,
            random,
            host_locks: Arc::default(),
            cache: Arc::default(),
            cache_ttl: CACHE_TTL,
            queues: Arc::default(),
        }
    }

    /// How long pools, reservations, configuration and Nodes are reused (default `CACHE_TTL`;
    /// `Duration::ZERO` reads them for every request).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// The in-process lock of `host` (see `host_locks`).
    fn host_lock(&self, host: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .host_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(host.to_string()).or_default().clone()
    }

    pub fn datastore(&self) -> &Arc<dyn Datastore> {
        &self.ds
    }

    /// A short pause after a lost compare-and-swap, growing with the attempt, jittered so
    /// competing writers spread out (at most ~20 ms).
    async fn backoff(&self, attempt: usize) {
        let cap = (attempt.min(20) as u64 + 1) * 1000;
        let micros = (self.random)() % cap;
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

fn family(v6: bool) -> u8 {
    if v6 { 6 } else { 4 }
}
