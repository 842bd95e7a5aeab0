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

use ipnet::IpNet;

use super::store::{Versioned, is_race};
use super::{AssignIpArgs, Assignments, AutoAssignArgs, Ipam, IpamError, RETRIES, Result, family};
use crate::block::{AFFINITY_HOST, AllocationBlock, BlockError, ReleaseRequest};
use crate::model::IpamConfig;
use crate::pools::{
    Pool, PoolRequest, Reservations, block_walk, select_pools, selects_node, walk_seed,
};
use calico_api::resources::ippool::IPPool;

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
    pub(super) reservations: Reservations,
    pub(super) config: IpamConfig,
}

pub(super) fn host_affinity(host: &str) -> String {
    format!("{AFFINITY_HOST}:{host}")
}

impl Ipam {
    /// Assigns `num_v4` IPv4 and `num_v6` IPv6 addresses for `hostname` (upstream's AutoAssign).
    /// All or nothing: when fewer addresses than requested can be found, the ones taken are
    /// released again and the error names the pools and what to do.
    pub async fn auto_assign(&self, args: &AutoAssignArgs) -> Result<Assignments> {
        if args.hostname.is_empty() {
            return Err(IpamError::Invalid(
                "hostname is empty; name the node to assign for".into(),
            ));
        }
        let lock = self.host_lock(&args.hostname);
        let _turn = lock.lock().await;
        let config = self.config().await?;
        let mut out = Assignments::default();
        if args.num_v4 > 0 {
            out.v4 = self.auto_assign_family(args, false, &config).await?;
        }
        if args.num_v6 > 0 {
            match self.auto_assign_family(args, true, &config).await {
                Ok(v6) => out.v6 = v6,
                Err(e) => {
                    let ips: Vec<IpAddr> = out.v4.iter().map(IpNet::addr).collect();
                    self.undo(&ips, args.handle.as_deref()).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Releases addresses this call took, guarded by the handle (best effort: a failure here
    /// leaves addresses that `check` reports and `release` frees).
    async fn undo(&self, ips: &[IpAddr], handle: Option<&str>) {
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

    async fn auto_assign_family(
        &self,
        args: &AutoAssignArgs,
        v6: bool,
        config: &IpamConfig,
    ) -> Result<Vec<IpNet>> {
        let num = if v6 { args.num_v6 } else { args.num_v4 };
        let host = args.hostname.as_str();
        // Independent reads, issued together (one round-trip time instead of four).
        let (node_labels, all_pools, reservations, affine) = tokio::try_join!(
            self.node_labels(host),
            self.pools(),
            self.reservations(),
            self.affine_blocks(host, v6),
        )?;
        let pools = select_pools(
            &all_pools,
            &PoolRequest {
                v6,
                usage: args.usage,
                requested: if v6 {
                    &args.ipv6_pools
                } else {
                    &args.ipv4_pools
                },
                node_labels: &node_labels,
                node: host,
                namespace_labels: args.namespace_labels.as_ref(),
            },
        )?;
        let req = Request {
            host,
            handle: args.handle.as_deref(),
            attrs: args.attrs.to_map(),
            reservations,
            config: *config,
            pools,
        };
        let (usable, others): (Vec<IpNet>, Vec<IpNet>) = affine
            .into_iter()
            .partition(|b| req.pools.iter().any(|p| p.cidr.contains(b)));
        self.release_unselected(host, &others, &all_pools, &node_labels)
            .await;
        let mut affine: VecDeque<IpNet> = usable.into_iter().collect();
        if let Some(hint) = self.last_block(host, v6)
            && let Some(i) = affine.iter().position(|b| *b == hint)
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

        let mut got: Vec<IpNet> = Vec::new();
        let mut rounds = 0;
        while got.len() < num {
            rounds += 1;
            if rounds > RETRIES {
                self.undo(&got.iter().map(IpNet::addr).collect::<Vec<_>>(), req.handle)
                    .await;
                return Err(IpamError::TooManyRetries(format!("blocks of node {host}")));
            }
            let allow_new = owned < limit as usize;
            match self.find_or_claim(&req, &mut affine, allow_new, v6).await? {
                Found::Block {
                    cidr,
                    newly_claimed,
                    block,
                } => {
                    owned += usize::from(newly_claimed);
                    let ips = self
                        .assign_from_block(&req, &cidr, num - got.len(), true, Some(*block))
                        .await?;
                    if !ips.is_empty() {
                        self.set_last_block(host, v6, cidr);
                    }
                    got.extend(
                        ips.into_iter()
                            .filter_map(|ip| IpNet::new(ip, cidr.prefix_len()).ok()),
                    );
                }
                Found::NoFreeBlocks => break,
                Found::Limit => {
                    self.undo(&got.iter().map(IpNet::addr).collect::<Vec<_>>(), req.handle)
                        .await;
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
            self.borrow(&req, v6, num, &mut got).await?;
        }
        if got.len() < num {
            self.undo(&got.iter().map(IpNet::addr).collect::<Vec<_>>(), req.handle)
                .await;
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
        Ok(got)
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
        affine: &mut VecDeque<IpNet>,
        allow_new: bool,
        v6: bool,
    ) -> Result<Found> {
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        while let Some(cidr) = affine.pop_front() {
            if req.reservations.covers(&cidr) {
                continue;
            }
            for attempt in 0..RETRIES {
                let Some(aff) = self.get_affinity(req.host, &cidr).await? else {
                    break;
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

    /// Takes up to `num` addresses from one block (one CAS write, retried). With `affine_only`,
    /// a block that is not (or no longer) ours under strictAffinity yields nothing. `fresh`: a
    /// copy of the block the caller just read, used for the first attempt instead of reading it
    /// again (a stale copy only costs a lost CAS and a re-read).
    async fn assign_from_block(
        &self,
        req: &Request<'_>,
        cidr: &IpNet,
        num: usize,
        affine_only: bool,
        mut fresh: Option<Versioned<AllocationBlock>>,
    ) -> Result<Vec<IpAddr>> {
        let mine = host_affinity(req.host);
        for attempt in 0..RETRIES {
            let read = match fresh.take() {
                Some(b) if b.value.cidr == *cidr => Some(b),
                _ => self.get_block(cidr).await?,
            };
            let Some(b) = read else {
                return Ok(Vec::new());
            };
            if affine_only
                && req.config.strict_affinity
                && b.value.affinity.as_deref() != Some(mine.as_str())
            {
                return Ok(Vec::new());
            }
            let mut value = b.value;
            let ips = value.auto_assign(num, req.handle, &req.attrs, |ip| {
                req.reservations.contains(ip)
            });
            if ips.is_empty() {
                return Ok(ips);
            }
            if let Some(h) = req.handle {
                self.increment_handle(h, cidr, ips.len()).await?;
            }
            match self.update_block(&value, b.rev).await {
                Ok(_) => return Ok(ips),
                Err(e) => {
                    if let Some(h) = req.handle {
                        self.decrement_handle(h, cidr, ips.len()).await?;
                    }
                    if !is_race(&e) {
                        return Err(e);
                    }
                    self.backoff(attempt).await;
                }
            }
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }

    /// Last resort without strictAffinity: free addresses in any existing block of the pools,
    /// visited in the host's walk order.
    async fn borrow(
        &self,
        req: &Request<'_>,
        v6: bool,
        num: usize,
        got: &mut Vec<IpNet>,
    ) -> Result<()> {
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        let blocks = self.list_blocks(Some(v6)).await?;
        for pool in &req.pools {
            let order: BTreeMap<IpNet, usize> =
                block_walk(pool, walk_seed(pool, req.host, (self.random)()))
                    .take(1 << 16)
                    .enumerate()
                    .map(|(i, b)| (b, i))
                    .collect();
            let mut candidates: Vec<&Versioned<AllocationBlock>> = blocks
                .iter()
                .filter(|b| {
                    pool.cidr.contains(&b.value.cidr) && b.value.assignable_count(reserved) > 0
                })
                .collect();
            candidates.sort_by_key(|b| order.get(&b.value.cidr).copied().unwrap_or(usize::MAX));
            for b in candidates {
                if got.len() >= num {
                    return Ok(());
                }
                let cidr = b.value.cidr;
                let ips = self
                    .assign_from_block(req, &cidr, num - got.len(), false, Some(b.clone()))
                    .await?;
                got.extend(
                    ips.into_iter()
                        .filter_map(|ip| IpNet::new(ip, cidr.prefix_len()).ok()),
                );
            }
        }
        Ok(())
    }

    /// Assigns one specific address (upstream's AssignIP): it must be in an enabled pool; its
    /// block is claimed for the host when it does not exist yet.
    pub async fn assign_ip(&self, args: &AssignIpArgs) -> Result<()> {
        let all = self.pools().await?;
        let pool = all
            .iter()
            .filter(|p| !p.spec.is_disabled())
            .filter_map(Pool::from_resource)
            .find(|p| p.cidr.contains(&args.ip))
            .ok_or(IpamError::NotInPool(args.ip))?;
        let Some(cidr) = pool.block_for(args.ip) else {
            return Err(IpamError::NotInPool(args.ip));
        };
        let config = self.config().await?;
        let host = args.hostname.as_str();
        let attrs = args.attrs.to_map();
        for attempt in 0..RETRIES {
            let b = match self.get_block(&cidr).await? {
                Some(b) => b,
                None => {
                    let claimed = match self.pending_affinity(host, &cidr).await {
                        Ok(p) => self.claim_affine_block(host, &cidr, p.rev).await,
                        Err(e) => Err(e),
                    };
                    match claimed {
                        Ok(Some(b)) => b,
                        Ok(None) => continue,
                        Err(e) if is_race(&e) => {
                            self.backoff(attempt).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if config.strict_affinity
                && b.value.affinity.as_deref() != Some(host_affinity(host).as_str())
            {
                return Err(IpamError::StrictAffinity {
                    ip: args.ip,
                    block: cidr,
                    owner: b.value.affinity.clone().unwrap_or_else(|| "no node".into()),
                    node: host.to_string(),
                });
            }
            let mut value = b.value;
            match value.assign(args.ip, args.handle.as_deref(), &attrs) {
                Ok(()) => {}
                Err(BlockError::AlreadyAssigned { ip, cidr }) => {
                    let handle = value
                        .attribute_of(ip)
                        .ok()
                        .flatten()
                        .and_then(|a| a.handle_id.clone())
                        .unwrap_or_else(|| "(none)".into());
                    return Err(IpamError::Taken {
                        ip,
                        handle,
                        block: cidr,
                    });
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(h) = &args.handle {
                self.increment_handle(h, &cidr, 1).await?;
            }
            match self.update_block(&value, b.rev).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if let Some(h) = &args.handle {
                        self.decrement_handle(h, &cidr, 1).await?;
                    }
                    if !is_race(&e) {
                        return Err(e);
                    }
                    self.backoff(attempt).await;
                }
            }
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }
}

fn pool_names(pools: &[Pool]) -> String {
    pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.cidr))
        .collect::<Vec<_>>()
        .join(", ")
}
