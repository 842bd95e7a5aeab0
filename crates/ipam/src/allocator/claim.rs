//! The block-claim protocol and its crash recovery (see `assign` for the overview): pending
//! affinity → create the block `host:<node>` → confirmed affinity; finishing or undoing a claim
//! a crash interrupted; choosing a block to claim, including the reclaim of another node's block
//! that has stayed empty for the minimum age.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use calico_datastore::{KeyValue, keys};
use ipnet::IpNet;

use super::assign::{Request, host_affinity, owner_of};
use super::store::{Versioned, parse_block};
use super::{EMPTY_BLOCK_MIN_RECLAIM_AGE, Ipam, IpamError, Result};
use crate::block::AllocationBlock;
use crate::clock::{format_rfc3339, parse_rfc3339};
use crate::model::{AffinityState, AffinityValue};
use crate::pools::{block_walk, walk_seed};

/// Blocks a claim's walk reads one by one before it lists them all with their values instead.
const BLOCK_READS_BEFORE_LISTING: usize = 8;

impl Ipam {
    /// Writes a pending affinity for (host, subnet); an existing unconfirmed one becomes pending,
    /// a confirmed one is returned as is.
    pub(crate) async fn pending_affinity(
        &self,
        host: &str,
        subnet: &IpNet,
    ) -> Result<Versioned<AffinityValue>> {
        match self
            .create_affinity(host, subnet, AffinityState::Pending)
            .await
        {
            Ok(rev) => Ok(Versioned {
                value: AffinityValue::new(AffinityState::Pending),
                rev,
            }),
            Err(IpamError::Datastore(calico_datastore::Error::AlreadyExists { .. })) => {
                let Some(existing) = self.get_affinity(host, subnet).await? else {
                    return Err(calico_datastore::Error::NotFound {
                        key: subnet.to_string(),
                    }
                    .into());
                };
                if existing.value.state == AffinityState::Confirmed {
                    return Ok(existing);
                }
                let rev = self
                    .update_affinity(host, subnet, AffinityState::Pending, existing.rev)
                    .await?;
                Ok(Versioned {
                    value: AffinityValue::new(AffinityState::Pending),
                    rev,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The block an affinity refers to, finishing or undoing a half-done claim (see the module
    /// comment). `Ok(None)`: the block belongs to someone else (the affinity was stale).
    pub(crate) async fn block_from_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        aff: Versioned<AffinityValue>,
    ) -> Result<Option<Versioned<AllocationBlock>>> {
        let Some(block) = self.get_block(cidr).await? else {
            let rev = if aff.value.state == AffinityState::Pending {
                aff.rev
            } else {
                self.update_affinity(host, cidr, AffinityState::Pending, aff.rev)
                    .await?
            };
            return self.claim_affine_block(host, cidr, rev).await;
        };
        if block.value.affinity.as_deref() != Some(host_affinity(host).as_str()) {
            self.delete_affinity(host, cidr, Some(aff.rev)).await?;
            return Ok(None);
        }
        if aff.value.state == AffinityState::Confirmed {
            return Ok(Some(block));
        }
        let rev = match aff.value.state {
            AffinityState::Pending => aff.rev,
            _ => {
                self.update_affinity(host, cidr, AffinityState::Pending, aff.rev)
                    .await?
            }
        };
        let mut value = block.value;
        value.touch();
        let block_rev = self.update_block(&value, block.rev).await?;
        self.update_affinity(host, cidr, AffinityState::Confirmed, rev)
            .await?;
        Ok(Some(Versioned {
            value,
            rev: block_rev,
        }))
    }

    /// Creates the block for a pending affinity and confirms the affinity. `Ok(None)`: another
    /// host owns the block; our pending affinity is removed.
    pub(crate) async fn claim_affine_block(
        &self,
        host: &str,
        cidr: &IpNet,
        aff_rev: i64,
    ) -> Result<Option<Versioned<AllocationBlock>>> {
        let mut block =
            AllocationBlock::new(*cidr, Some(host_affinity(host)), self.initial_sequence())?;
        block.affinity_claim_time = Some(format_rfc3339(self.clock.now()));
        match self.create_block(&block).await {
            Ok(rev) => {
                self.confirm_affinity(host, cidr, aff_rev).await?;
                Ok(Some(Versioned { value: block, rev }))
            }
            Err(IpamError::Datastore(calico_datastore::Error::AlreadyExists { .. })) => {
                let Some(existing) = self.get_block(cidr).await? else {
                    return Err(calico_datastore::Error::NotFound {
                        key: cidr.to_string(),
                    }
                    .into());
                };
                if existing.value.affinity.as_deref() == Some(host_affinity(host).as_str()) {
                    self.confirm_affinity(host, cidr, aff_rev).await?;
                    return Ok(Some(existing));
                }
                // Someone else's block: drop our claim (a lost race here leaves a pending
                // affinity, which counts as absent and is cleaned up next time).
                let _ = self.delete_affinity(host, cidr, Some(aff_rev)).await;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn confirm_affinity(&self, host: &str, cidr: &IpNet, rev: i64) -> Result<()> {
        match self
            .update_affinity(host, cidr, AffinityState::Confirmed, rev)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.get_affinity(host, cidr).await? {
                Some(a) if a.value.state == AffinityState::Confirmed => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// A block to claim: a free CIDR in the host's walk order, or one of the host's own blocks
    /// with space, or (last) another node's block that has been empty for the minimum age.
    pub(super) async fn find_usable_block(
        &self,
        req: &Request<'_>,
        v6: bool,
    ) -> Result<Option<IpNet>> {
        // Which blocks exist, from a keys-only listing (a full block is ~9 KiB of JSON); a block
        // the walk passes is read when reached: one by one for the first few, then all from one
        // listing. A block deleted meanwhile counts as free (its claim's create decides).
        let prefix = keys::block_prefix(v6);
        let existing: HashSet<String> = self
            .ds
            .list_keys(&prefix)
            .await?
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        let mut listed: Option<HashMap<String, KeyValue>> = None;
        let mut reads = 0;
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        let mine = host_affinity(req.host);
        let mut empty = Vec::new();
        for pool in &req.pools {
            let seed = walk_seed(pool, req.host, (self.random)());
            for subnet in block_walk(pool, seed) {
                if req.reservations.covers(&subnet) {
                    continue;
                }
                let key = keys::block_key(&subnet.to_string());
                if !existing.contains(&key) {
                    return Ok(Some(subnet));
                }
                if listed.is_none() && reads >= BLOCK_READS_BEFORE_LISTING {
                    let all = self.ds.list(&prefix).await?.kvs;
                    listed = Some(all.into_iter().map(|kv| (kv.key.clone(), kv)).collect());
                }
                let found = match &listed {
                    Some(all) => all.get(&key).map(parse_block).transpose()?,
                    None => {
                        reads += 1;
                        self.get_block(&subnet).await?
                    }
                };
                let Some(b) = found else {
                    return Ok(Some(subnet));
                };
                let free = b.value.assignable_count(reserved);
                if b.value.affinity.as_deref() == Some(mine.as_str()) && free > 0 {
                    return Ok(Some(subnet));
                }
                if b.value.is_empty() && free > 0 {
                    empty.push(b);
                }
            }
        }
        let now = self.clock.now();
        for b in empty {
            let claimed = b
                .value
                .affinity_claim_time
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(UNIX_EPOCH);
            if now.duration_since(claimed).unwrap_or_default() < EMPTY_BLOCK_MIN_RECLAIM_AGE {
                continue;
            }
            let cidr = b.value.cidr;
            let reclaimed = match owner_of(&b.value) {
                Some(owner) => {
                    self.release_block_affinity(&owner, &cidr, true, Some(b.value.sequence_number))
                        .await
                }
                // An empty block with no owner (left by an interrupted release): delete it.
                None => self.delete_block(&cidr, b.rev).await.map(|_| true),
            };
            if matches!(reclaimed, Ok(true)) {
                return Ok(Some(cidr));
            }
        }
        Ok(None)
    }
}
