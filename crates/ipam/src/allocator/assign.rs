//! Assignment: auto-assign (affine blocks → claim → borrow) and assignment of one address, with
//! upstream's block-claim protocol and its crash recovery.
//!
//! Claim protocol: write a *pending* affinity, create the block with `affinity: host:<node>`,
//! then *confirm* the affinity. Recovery, whenever a host looks at one of its affinities:
//! - affinity (any state) but no block ⇒ mark pending and create the block (finish the claim);
//! - block owned by someone else ⇒ the affinity is stale: delete it;
//! - block ours but affinity not confirmed ⇒ pending, rewrite the block (invalidates anyone
//!   working from an older copy, e.g. a half-done release), confirm.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use calico_datastore::{Check, Revision, keys};
use ipnet::IpNet;

use super::cache::{NodeInfo, Shared};
use super::store::{VIRTUAL_LOAD_BALANCER, VIRTUAL_PREFIX};
use super::store::{Versioned, is_race, race_key};
use super::{Assignments, AutoAssignArgs, Ipam, IpamError, RETRIES, Result, family};
use crate::block::{AFFINITY_HOST, AllocationBlock, ReleaseRequest};
use crate::model::{AffinityValue, HandleValue, IpamConfig};
use crate::pools::{Pool, PoolRequest, Reservations, select_pools, selects_node};
use calico_api::resources::ippool::{AllowedUse, IPPool};

/// The host's affinities of one family, as listed.
type Affinities = Vec<(IpNet, Versioned<AffinityValue>)>;

/// Which blocks `assign_from_block` may take addresses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// One of the host's blocks (under strictAffinity: only while it is still the host's).
    Affine,
    /// The host's last-used block from the cache: a lost race gives up instead of re-reading,
    /// and the caller falls back to the affinity listing.
    Cached,
    /// Any block (borrowing).
    Borrow,
}

/// Outcome of looking for a block to allocate from.
enum Found {
    /// `block`: the copy just read (saves `assign_from_block` a read; its CAS still guards it).
    Block {
        cidr: IpNet,
        newly_claimed: bool,
        block: Box<Versioned<AllocationBlock>>,
    },
    NoFreeBlocks,
    Limit,
}

/// One family's request, resolved.
pub(super) struct Request<'a> {
    pub(super) host: &'a str,
    pub(super) handle: Option<&'a str>,
    pub(super) attrs: BTreeMap<String, String>,
    pub(super) pools: Vec<Pool>,
    pub(super) reservations: &'a Reservations,
    pub(super) config: IpamConfig,
    /// What the block writes check: pools and configuration as read, and the Node.
    pub(super) shared: Arc<Shared>,
    pub(super) node_check: Option<Check>,
}

impl Request<'_> {
    fn checks_for(&self, block: &IpNet) -> Vec<Check> {
        let mut out = self.shared.checks_for(block);
        out.extend(self.node_check.clone());
        out
    }
}

/// The block `affinity` of an owner: `host:<node>`, or the virtual owner as is.
pub(super) fn host_affinity(host: &str) -> String {
    if host.starts_with(VIRTUAL_PREFIX) {
        host.to_string()
    } else {
        format!("{AFFINITY_HOST}:{host}")
    }
}

/// The owner (as the allocator names it: a node, or `virtual:<name>`) a block is affine to.
pub(super) fn owner_of(block: &AllocationBlock) -> Option<String> {
    let affinity = block.affinity.as_deref()?;
    if affinity.starts_with(VIRTUAL_PREFIX) {
        return Some(affinity.to_string());
    }
    block.host().map(str::to_string)
}

impl Ipam {
    /// Assigns `num_v4` IPv4 and `num_v6` IPv6 addresses for `hostname` (upstream's AutoAssign).
    /// All or nothing: when fewer addresses than requested can be found, the ones taken are
    /// released again and the error names the pools and what to do. Works from cached pools,
    /// configuration and Node (see `cache`): a write that finds them changed, or a failure that
    /// fresh reads might avoid, is retried with fresh reads.
    pub async fn auto_assign(&self, args: &AutoAssignArgs) -> Result<Assignments> {
        if args.usage == AllowedUse::LoadBalancer && args.hostname != VIRTUAL_LOAD_BALANCER {
            // LoadBalancer addresses belong to no node: upstream keeps their blocks affine to
            // the virtual owner `load-balancer`.
            let mut lb = args.clone();
            lb.hostname = VIRTUAL_LOAD_BALANCER.to_string();
            return Box::pin(self.auto_assign(&lb)).await;
        }
        if args.hostname.is_empty() {
            return Err(IpamError::Invalid(
                "hostname is empty; name the node to assign for".into(),
            ));
        }
        if Self::batchable(args) {
            return self.auto_assign_queued(args).await;
        }
        let lock = self.host_lock(&args.hostname);
        let _turn = lock.lock().await;
        self.auto_assign_locked(args).await
    }

    /// `auto_assign` for a caller that holds the host's lock.
    pub(super) async fn auto_assign_locked(&self, args: &AutoAssignArgs) -> Result<Assignments> {
        let mut fresh = false;
        let mut stale = 0;
        loop {
            let (result, cached) = self.auto_assign_once(args, fresh).await;
            let retry = match &result {
                Ok(_) => false,
                Err(IpamError::Stale(_)) => {
                    stale += 1;
                    stale <= RETRIES
                }
                Err(
                    IpamError::Pool(_)
                    | IpamError::Exhausted { .. }
                    | IpamError::BlockLimit { .. }
                    | IpamError::NodeMissing(_),
                ) => cached,
                Err(_) => false,
            };
            if !retry {
                return result;
            }
            self.invalidate_cache();
            fresh = true;
        }
    }

    /// One attempt; also says whether any input came from the cache.
    async fn auto_assign_once(
        &self,
        args: &AutoAssignArgs,
        fresh: bool,
    ) -> (Result<Assignments>, bool) {
        let host = args.hostname.as_str();
        // A host without a last-used IPv4 block needs its affinities: read them together with
        // the (possibly cached) pools, configuration and Node.
        let list_v4 = args.num_v4 > 0 && !self.has_last_block(host, false);
        let affine_v4 = async {
            if list_v4 {
                self.affine_blocks(host, false).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let loaded = tokio::try_join!(self.shared(fresh), self.node_info(host, fresh), affine_v4);
        let ((shared, c1), (node, c2), affine_v4) = match loaded {
            Ok(l) => l,
            Err(e) => return (Err(e), false),
        };
        let cached = c1 || c2;
        let mut out = Assignments::default();
        if args.num_v4 > 0 {
            match self
                .auto_assign_family(args, false, &shared, &node, affine_v4)
                .await
            {
                Ok(v4) => out.v4 = v4,
                Err(e) => return (Err(e), cached),
            }
        }
        if args.num_v6 > 0 {
            match self
                .auto_assign_family(args, true, &shared, &node, None)
                .await
            {
                Ok(v6) => out.v6 = v6,
                Err(e) => {
                    let ips: Vec<IpAddr> = out.v4.iter().map(IpNet::addr).collect();
                    self.undo(&ips, args.handle.as_deref()).await;
                    return (Err(e), cached);
                }
            }
        }
        (Ok(out), cached)
    }

    /// Releases addresses this call took, guarded by the handle (best effort: a failure here
    /// leaves addresses that `check` reports and `release` frees).
    pub(super) async fn undo(&self, ips: &[IpAddr], handle: Option<&str>) {
        let reqs: Vec<ReleaseRequest> = ips
            .iter()
            .map(|ip| ReleaseRequest {
                ip: *ip,
                handle: handle.map(str::to_string),
                sequence_number: None,
            })
            .collect();
        if !reqs.is_empty() {
            let _ = self.release_ips(&reqs).await;
        }
    }

    /// One family's addresses, all or nothing (what was taken is given back on failure).
    async fn auto_assign_family(
        &self,
        args: &AutoAssignArgs,
        v6: bool,
        shared: &Arc<Shared>,
        node: &NodeInfo,
        affine: Option<Affinities>,
    ) -> Result<Vec<IpNet>> {
        let host = args.hostname.as_str();
        let pools = select_pools(
            &shared.pools,
            &PoolRequest {
                v6,
                usage: args.usage,
                requested: if v6 {
                    &args.ipv6_pools
                } else {
                    &args.ipv4_pools
                },
                node_labels: &node.labels,
                node: host,
                namespace_labels: args.namespace_labels.as_ref(),
            },
        )?;
        let req = Request {
            host,
            handle: args.handle.as_deref(),
            attrs: args.attrs.to_map(),
            reservations: &shared.reservations,
            config: shared.config,
            pools,
            shared: shared.clone(),
            node_check: node.check.clone(),
        };
        let mut got = Vec::new();
        match self
            .fill_family(args, &req, v6, node, affine, &mut got)
            .await
        {
            Ok(()) => Ok(got),
            Err(e) => {
                self.undo(&got.iter().map(IpNet::addr).collect::<Vec<_>>(), req.handle)
                    .await;
                Err(e)
            }
        }
    }

    async fn fill_family(
        &self,
        args: &AutoAssignArgs,
        req: &Request<'_>,
        v6: bool,
        node: &NodeInfo,
        affine: Option<Affinities>,
        got: &mut Vec<IpNet>,
    ) -> Result<()> {
        let num = if v6 { args.num_v6 } else { args.num_v4 };
        let host = req.host;
        let config = &req.config;
        let mine = host_affinity(host);
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        // Fast path: the block this process last allocated from for the host, as written. It is
        // taken out of the cache (no copy); a successful write puts the new version back.
        let hint = self.take_last_block(host, v6);
        let hint_cidr = hint.as_ref().map(|b| b.value.cidr);
        if let Some(b) = hint {
            let cidr = b.value.cidr;
            if b.value.affinity.as_deref() == Some(mine.as_str())
                && req.pools.iter().any(|p| p.cidr.contains(&cidr))
                && !req.reservations.covers(&cidr)
                && b.value.assignable_count(reserved) > 0
            {
                let ips = self
                    .assign_from_block(req, &cidr, num, Mode::Cached, Some(b))
                    .await?;
                push_ips(got, ips, &cidr);
                if got.len() >= num {
                    return Ok(());
                }
            } else {
                // Unusable now (full, or the pool no longer selected): still the host's last
                // block, as before this request.
                self.set_last_block(host, v6, b);
            }
        }
        let affine = match affine {
            Some(a) => a,
            None => self.affine_blocks(host, v6).await?,
        };
        let (usable, others): (Affinities, Affinities) = affine
            .into_iter()
            .partition(|(b, _)| req.pools.iter().any(|p| p.cidr.contains(b)));
        let others: Vec<IpNet> = others.into_iter().map(|(b, _)| b).collect();
        self.release_unselected(host, &others, &req.shared.pools, &node.labels)
            .await;
        let mut affine: VecDeque<(IpNet, Versioned<AffinityValue>)> = usable.into_iter().collect();
        if let Some(hint) = hint_cidr
            && let Some(i) = affine.iter().position(|(b, _)| *b == hint)
        {
            affine.rotate_left(i);
        }
        let mut owned = affine.len();
        let mut limit = config.effective_max_blocks();
        if args.max_blocks_per_host > 0
            && (config.max_blocks_per_host == 0 || args.max_blocks_per_host < limit)
        {
            limit = args.max_blocks_per_host;
        }

        let mut rounds = 0;
        while got.len() < num {
            rounds += 1;
            if rounds > RETRIES {
                return Err(IpamError::TooManyRetries(format!("blocks of node {host}")));
            }
            let allow_new = owned < limit as usize;
            match self.find_or_claim(req, &mut affine, allow_new, v6).await? {
                Found::Block {
                    cidr,
                    newly_claimed,
                    block,
                } => {
                    owned += usize::from(newly_claimed);
                    let ips = self
                        .assign_from_block(req, &cidr, num - got.len(), Mode::Affine, Some(*block))
                        .await?;
                    push_ips(got, ips, &cidr);
                }
                Found::NoFreeBlocks => break,
                Found::Limit => {
                    return Err(IpamError::BlockLimit {
                        node: host.to_string(),
                        family: family(v6),
                        owned,
                        limit,
                        pools: pool_names(&req.pools),
                    });
                }
            }
        }
        if got.len() < num && !config.strict_affinity {
            self.borrow(req, v6, num, got).await?;
        }
        if got.len() < num {
            let detail = if config.strict_affinity {
                " and strictAffinity forbids borrowing from other nodes' blocks".to_string()
            } else if !config.auto_allocate_blocks {
                " and autoAllocateBlocks is off".to_string()
            } else {
                String::new()
            };
            return Err(IpamError::Exhausted {
                family: family(v6),
                node: host.to_string(),
                requested: num,
                assigned: got.len(),
                pools: pool_names(&req.pools),
                detail,
            });
        }
        Ok(())
    }

    /// Gives up the host's empty blocks in pools whose nodeSelector no longer selects it (as
    /// upstream, best effort: a block that is not empty, or changes meanwhile, stays).
    async fn release_unselected(
        &self,
        host: &str,
        blocks: &[IpNet],
        all_pools: &[IPPool],
        node_labels: &BTreeMap<String, String>,
    ) {
        for cidr in blocks {
            let Some(pool) = all_pools
                .iter()
                .find(|p| Pool::from_resource(p).is_some_and(|pool| pool.cidr.contains(cidr)))
            else {
                continue;
            };
            if selects_node(pool, node_labels) {
                continue;
            }
            let _ = self.release_block_affinity(host, cidr, true, None).await;
        }
    }

    /// The host's affine blocks first (recovering half-done claims), then a new block.
    async fn find_or_claim(
        &self,
        req: &Request<'_>,
        affine: &mut VecDeque<(IpNet, Versioned<AffinityValue>)>,
        allow_new: bool,
        v6: bool,
    ) -> Result<Found> {
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        while let Some((cidr, listed)) = affine.pop_front() {
            if req.reservations.covers(&cidr) {
                continue;
            }
            // The listed affinity first; after a lost race, read it again.
            let mut listed = Some(listed);
            for attempt in 0..RETRIES {
                let aff = match listed.take() {
                    Some(a) => a,
                    None => match self.get_affinity(req.host, &cidr).await? {
                        Some(a) => a,
                        None => break,
                    },
                };
                match self.block_from_affinity(req.host, &cidr, aff).await {
                    Ok(Some(b)) if b.value.assignable_count(reserved) > 0 => {
                        return Ok(Found::Block {
                            cidr,
                            newly_claimed: false,
                            block: Box::new(b),
                        });
                    }
                    Ok(_) => break,
                    Err(e) if is_race(&e) => self.backoff(attempt).await,
                    Err(e) => return Err(e),
                }
            }
        }
        if !allow_new {
            return Ok(Found::Limit);
        }
        if !req.config.auto_allocate_blocks {
            return Ok(Found::NoFreeBlocks);
        }
        for _ in 0..RETRIES {
            let Some(subnet) = self.find_usable_block(req, v6).await? else {
                return Ok(Found::NoFreeBlocks);
            };
            for attempt in 0..RETRIES {
                let pending = match self.pending_affinity(req.host, &subnet).await {
                    Ok(p) => p,
                    Err(e) if is_race(&e) => {
                        self.backoff(attempt).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match self.block_from_affinity(req.host, &subnet, pending).await {
                    Ok(Some(b)) if b.value.assignable_count(reserved) > 0 => {
                        return Ok(Found::Block {
                            cidr: subnet,
                            newly_claimed: true,
                            block: Box::new(b),
                        });
                    }
                    Ok(_) => break,
                    Err(e) if is_race(&e) => self.backoff(attempt).await,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(IpamError::TooManyRetries(format!(
            "block claims of node {}",
            req.host
        )))
    }

    /// Takes up to `num` addresses from one block: one transaction writes the block and counts
    /// the addresses into the handle, checked against the block's, the handle's, the pool's, the
    /// Node's and the configuration's revisions; lost races are retried. `fresh`: a copy of the
    /// block the caller holds (moved in, never copied), used for the first attempt instead of
    /// reading it (a stale copy only costs a lost race and a read). A changed pool, Node or
    /// configuration ends with `IpamError::Stale`.
    pub(super) async fn assign_from_block(
        &self,
        req: &Request<'_>,
        cidr: &IpNet,
        num: usize,
        mode: Mode,
        mut fresh: Option<Versioned<AllocationBlock>>,
    ) -> Result<Vec<IpAddr>> {
        let mine = host_affinity(req.host);
        let v6 = matches!(cidr, IpNet::V6(_));
        let block_key = keys::block_key(&cidr.to_string());
        let handle_key = req.handle.map(keys::handle_key);
        let mut handle: Option<Versioned<HandleValue>> = None;
        // The block with the addresses assigned in memory, its revision as read, and the
        // addresses: kept across a lost race on the handle (the block did not move, so the same
        // write is tried again with the handle read afresh).
        let mut assigned: Option<(AllocationBlock, Revision, Vec<IpAddr>)> = None;
        for attempt in 0..RETRIES {
            let (value, rev, ips) = match assigned.take() {
                Some(a) => a,
                None => {
                    let read = match fresh.take() {
                        Some(b) if b.value.cidr == *cidr => Some(b),
                        _ => self.get_block(cidr).await?,
                    };
                    let Some(Versioned { mut value, rev }) = read else {
                        self.forget_last_block(req.host, v6);
                        return Ok(Vec::new());
                    };
                    if mode != Mode::Borrow
                        && req.config.strict_affinity
                        && value.affinity.as_deref() != Some(mine.as_str())
                    {
                        return Ok(Vec::new());
                    }
                    let ips = value.auto_assign(num, req.handle, &req.attrs, |ip| {
                        req.reservations.contains(ip)
                    });
                    if ips.is_empty() {
                        return Ok(ips);
                    }
                    (value, rev, ips)
                }
            };
            let counted = req.handle.map(|h| (h, &handle));
            let e = match self
                .commit_assignment(req.checks_for(cidr), &value, rev, counted, ips.len())
                .await
            {
                Ok(new_rev) => {
                    if value.affinity.as_deref() == Some(mine.as_str()) {
                        let written = Versioned {
                            value,
                            rev: new_rev,
                        };
                        self.set_last_block(req.host, v6, written);
                    }
                    return Ok(ips);
                }
                Err(e) => e,
            };
            match race_key(&e) {
                Some(k) if Some(k) == handle_key.as_deref() => {
                    // The handle exists (or went): read it and write the same block again.
                    if let Some(h) = req.handle {
                        handle = self.get_handle(h).await?;
                    }
                    assigned = Some((value, rev, ips));
                }
                Some(k) if k == block_key => {
                    self.forget_last_block(req.host, v6);
                    if mode == Mode::Cached {
                        return Ok(Vec::new());
                    }
                    self.backoff(attempt).await;
                }
                Some(k) => {
                    self.forget_last_block(req.host, v6);
                    return Err(IpamError::Stale(k.to_string()));
                }
                None => return Err(e.into()),
            }
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }
}

pub(super) fn push_ips(got: &mut Vec<IpNet>, ips: Vec<IpAddr>, cidr: &IpNet) {
    got.extend(
        ips.into_iter()
            .filter_map(|ip| IpNet::new(ip, cidr.prefix_len()).ok()),
    );
}

pub(super) fn pool_names(pools: &[Pool]) -> String {
    pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.cidr))
        .collect::<Vec<_>>()
        .join(", ")
}
