//! Which IP pools a request may use, which addresses are reserved, and in which order a host
//! walks a pool's blocks. Pure: the allocator reads the resources and passes them in.
//!
//! Pool selection (upstream's `determinePools` + `filterPoolsByUse`): requested pools (by name
//! or CIDR) are used as given, but must exist, be enabled and be of the requested family;
//! otherwise every enabled `Automatic` pool whose nodeSelector matches the node's labels and
//! whose namespaceSelector matches the namespace. Either way the pool must allow the use.
//!
//! Block order (upstream's `randomBlockGenerator`): the blocks of a pool are visited once each,
//! starting at a pseudo-random index and wrapping linearly. The generator is seeded with FNV-32
//! of the hostname, so one host keeps coming back to the same area of the pool and concurrent
//! requests on one host tend to pick the same block rather than claiming several. (The index
//! drawn from the seed is ours, not Go's math/rand, so the exact start differs from upstream.)

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::resources::ippool::{AllowedUse, AssignmentMode, IPPool};
use ipnet::IpNet;

/// One usable pool, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
}

impl Pool {
    pub fn from_resource(p: &IPPool) -> Option<Pool> {
        let cidr = p.spec.network()?.trunc();
        let block_size = p.spec.effective_block_size();
        (block_size >= cidr.prefix_len() && block_size <= cidr.max_prefix_len()).then(|| Pool {
            name: p.metadata.name.clone(),
            cidr,
            block_size,
        })
    }

    /// Number of blocks in the pool (saturating for huge IPv6 pools).
    pub fn block_count(&self) -> u128 {
        let bits = u32::from(self.block_size - self.cidr.prefix_len());
        1u128.checked_shl(bits).unwrap_or(u128::MAX)
    }

    /// The block at `index` (< `block_count`).
    pub fn block_at(&self, index: u128) -> Option<IpNet> {
        let host_bits = u32::from(self.cidr.max_prefix_len() - self.block_size);
        let offset = index.checked_shl(host_bits)?;
        match self.cidr {
            IpNet::V4(n) => {
                let base = u32::from(n.network()).checked_add(u32::try_from(offset).ok()?)?;
                ipnet::Ipv4Net::new(base.into(), self.block_size)
                    .ok()
                    .map(IpNet::V4)
            }
            IpNet::V6(n) => {
                let base = u128::from(n.network()).checked_add(offset)?;
                ipnet::Ipv6Net::new(base.into(), self.block_size)
                    .ok()
                    .map(IpNet::V6)
            }
        }
    }

    /// The block of this pool that holds `ip`.
    pub fn block_for(&self, ip: IpAddr) -> Option<IpNet> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        IpNet::new(ip, self.block_size).ok().map(|n| n.trunc())
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }
}

/// Why no pool could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "the requested IP pool {0:?} does not exist (by name or CIDR); list pools with \
         `calicoctl get ippools`"
    )]
    RequestedMissing(String),
    #[error("the requested IP pool {0} is disabled; enable it or request another pool")]
    RequestedDisabled(String),
    #[error(
        "the requested IP pool {pool} is IPv{pool_family}, but IPv{wanted} addresses were requested"
    )]
    RequestedWrongFamily {
        pool: String,
        pool_family: u8,
        wanted: u8,
    },
    #[error("the requested IP pool {pool} does not allow use {usage:?} (allowedUses: {allowed:?})")]
    RequestedWrongUse {
        pool: String,
        usage: AllowedUse,
        allowed: Vec<AllowedUse>,
    },
    #[error(
        "no enabled IPv{family} IP pool allows {usage:?} addresses for node {node}{why}; create an \
         IPPool (or adjust nodeSelector/namespaceSelector/allowedUses/assignmentMode of an \
         existing one)"
    )]
    NoneMatch {
        family: u8,
        usage: AllowedUse,
        node: String,
        why: String,
    },
}

/// What a request asks of the pools.
#[derive(Debug, Clone)]
pub struct PoolRequest<'a> {
    pub v6: bool,
    pub usage: AllowedUse,
    /// Pool names or CIDRs; empty = choose automatically.
    pub requested: &'a [String],
    pub node_labels: &'a BTreeMap<String, String>,
    pub node: &'a str,
    /// The namespace's labels, when the request is for a namespaced workload.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

fn is_v6(p: &IPPool) -> bool {
    matches!(p.spec.network(), Some(IpNet::V6(_)))
}

/// Chooses the pools for a request, in the order they will be tried.
pub fn select_pools(all: &[IPPool], req: &PoolRequest<'_>) -> Result<Vec<Pool>, PoolError> {
    let family = if req.v6 { 6 } else { 4 };
    if !req.requested.is_empty() {
        let mut out = Vec::new();
        for want in req.requested {
            let found = all.iter().find(|p| {
                p.metadata.name == *want
                    || p.spec.network().map(|n| n.trunc().to_string())
                        == want.parse::<IpNet>().ok().map(|n| n.trunc().to_string())
            });
            let Some(p) = found else {
                return Err(PoolError::RequestedMissing(want.clone()));
            };
            let Some(pool) = Pool::from_resource(p) else {
                return Err(PoolError::RequestedMissing(want.clone()));
            };
            if p.spec.is_disabled() {
                return Err(PoolError::RequestedDisabled(pool.name));
            }
            if is_v6(p) != req.v6 {
                return Err(PoolError::RequestedWrongFamily {
                    pool: pool.name,
                    pool_family: if req.v6 { 4 } else { 6 },
                    wanted: family,
                });
            }
            if !p.spec.uses().contains(&req.usage) {
                return Err(PoolError::RequestedWrongUse {
                    pool: pool.name,
                    usage: req.usage,
                    allowed: p.spec.uses(),
                });
            }
            out.push(pool);
        }
        return Ok(out);
    }
    let mut skipped = Vec::new();
    let mut out = Vec::new();
    for p in all
        .iter()
        .filter(|p| is_v6(p) == req.v6 && !p.spec.is_disabled())
    {
        let name = &p.metadata.name;
        if p.spec.assignment_mode.unwrap_or_default() != AssignmentMode::Automatic {
            skipped.push(format!("{name}: assignmentMode Manual"));
            continue;
        }
        if !p.spec.uses().contains(&req.usage) {
            skipped.push(format!("{name}: allowedUses"));
            continue;
        }
        if !selects(p.spec.node_selector.as_deref(), Some(req.node_labels)) {
            skipped.push(format!("{name}: nodeSelector"));
            continue;
        }
        if !selects(p.spec.namespace_selector.as_deref(), req.namespace_labels) {
            skipped.push(format!("{name}: namespaceSelector"));
            continue;
        }
        if let Some(pool) = Pool::from_resource(p) {
            out.push(pool);
        }
    }
    if out.is_empty() {
        let why = if skipped.is_empty() {
            String::new()
        } else {
            format!(" (not matching: {})", skipped.join(", "))
        };
        return Err(PoolError::NoneMatch {
            family,
            usage: req.usage,
            node: req.node.to_string(),
            why,
        });
    }
    Ok(out)
}

/// Whether a pool's nodeSelector selects a node with these labels.
pub fn selects_node(pool: &IPPool, node_labels: &BTreeMap<String, String>) -> bool {
    selects(pool.spec.node_selector.as_deref(), Some(node_labels))
}

/// A blank selector selects everything; a set selector needs labels to match (a request with no
/// namespace never matches a namespaceSelector).
fn selects(selector: Option<&str>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let text = selector.unwrap_or("").trim();
    if text.is_empty() {
        return true;
    }
    let Some(labels) = labels else { return false };
    // Upstream's default nodeSelector, on every auto-assignment: no need to parse it.
    if text == "all()" {
        return true;
    }
    calico_api::selector::parse(text).is_ok_and(|s| s.matches(labels))
}

/// IPReservations: addresses never handed out by auto-assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    cidrs: Vec<IpNet>,
}

impl Reservations {
    /// From the `reservedCIDRs` of every IPReservation (bare addresses count as /32 or /128;
    /// unparsable entries are skipped, validation keeps them out).
    pub fn new<'a>(cidrs: impl IntoIterator<Item = &'a str>) -> Self {
        let cidrs = cidrs
            .into_iter()
            .filter_map(|c| {
                let c = c.trim();
                c.parse::<IpNet>()
                    .map(|n| n.trunc())
                    .ok()
                    .or_else(|| c.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Reservations { cidrs }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(&ip))
    }

    /// Whether every address of `block` is reserved (such blocks are never claimed).
    pub fn covers(&self, block: &IpNet) -> bool {
        self.cidrs.iter().any(|c| c.contains(block))
    }
}

/// FNV-1 32-bit hash (Go's `hash/fnv` New32), upstream's seed for a host's block order.
pub fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// SplitMix64: a small, well-mixed generator for the start index.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of a host's walk: FNV-32 of the hostname, or `random` for /32 (/128) blocks, where
/// upstream seeds from the clock because one host reusing one block does not matter.
pub fn walk_seed(pool: &Pool, hostname: &str, random: u64) -> u64 {
    if pool.block_size == pool.cidr.max_prefix_len() {
        random
    } else {
        u64::from(fnv32(hostname.as_bytes()))
    }
}

/// The blocks of `pool`, each once: from a seeded start index, wrapping linearly.
pub fn block_walk(pool: &Pool, seed: u64) -> impl Iterator<Item = IpNet> + '_ {
    let n = pool.block_count();
    let r = (u128::from(splitmix(seed)) << 64) | u128::from(splitmix(seed ^ 0x5555));
    let start = if n == 0 { 0 } else { r % n };
    // Huge IPv6 pools: the walk is lazy, and callers stop early.
    (0..n).filter_map(move |i| pool.block_at((start + i) % n))
}

#[cfg(test)]
mod tests;
