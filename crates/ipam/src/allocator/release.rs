//! Release (by address, by handle), handle bookkeeping, and release of a block affinity.
//!
//! A release writes the block and the handles it touches in one transaction (each checked at the
//! revision read), so a crash never leaves a handle that disagrees with its block. Releasing the
//! last address of
//! a block keeps the block and its affinity (the node will reuse it); only a block that is empty
//! *and* has no affinity (a borrowed-from block whose owner let go) is deleted, as upstream.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_datastore::{Check, Error, Op, keys};
use ipnet::IpNet;

use super::store::{Versioned, is_race};
use super::{Ipam, IpamError, RETRIES, Result};
use crate::block::{AllocationBlock, ReleaseRequest};
use crate::model::{AffinityState, HandleValue};
use crate::pools::Pool;

/// What a release by address did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseResult {
    pub released: Vec<IpAddr>,
    /// Addresses that were not allocated (not an error: releasing twice is harmless).
    pub not_allocated: Vec<IpAddr>,
}

impl Ipam {
    /// Releases addresses, each optionally guarded by the handle and sequence number the caller
    /// holds (a stale release fails rather than freeing an address handed out again).
    pub async fn release_ips(&self, requests: &[ReleaseRequest]) -> Result<ReleaseResult> {
        let pools: Vec<Pool> = self
            .pools()
            .await?
            .iter()
            .filter_map(Pool::from_resource)
            .collect();
        let mut by_block: BTreeMap<IpNet, Vec<ReleaseRequest>> = BTreeMap::new();
        let mut result = ReleaseResult::default();
        let mut scanned: Option<Vec<IpNet>> = None;
        for req in requests {
            let block = match pools.iter().find_map(|p| p.block_for(req.ip)) {
                Some(b) => Some(b),
                None => {
                    // Not in any pool (deleted since): find the block by a full scan.
                    if scanned.is_none() {
                        let all = self.list_blocks(None).await?;
                        scanned = Some(all.into_iter().map(|b| b.value.cidr).collect());
                    }
                    scanned
                        .as_ref()
                        .and_then(|s| s.iter().find(|c| c.contains(&req.ip)).copied())
                }
            };
            match block {
                Some(b) => by_block.entry(b).or_default().push(req.clone()),
                None => result.not_allocated.push(req.ip),
            }
        }
        for (cidr, reqs) in by_block {
            let (released, not_allocated) = self.release_from_block(&cidr, &reqs).await?;
            result.released.extend(released);
            result.not_allocated.extend(not_allocated);
        }
        Ok(result)
    }

    async fn release_from_block(
        &self,
        cidr: &IpNet,
        reqs: &[ReleaseRequest],
    ) -> Result<(Vec<IpAddr>, Vec<IpAddr>)> {
        for attempt in 0..RETRIES {
            let Some(b) = self.get_block(cidr).await? else {
                return Ok((Vec::new(), reqs.iter().map(|r| r.ip).collect()));
            };
            let mut value = b.value;
            let outcome = value.release(reqs)?;
            if outcome.released == 0 {
                return Ok((Vec::new(), outcome.not_allocated));
            }
            let (mut checks, mut ops) = block_write(&value, b.rev);
            for (id, n) in &outcome.released_by_handle {
                if let Some(h) = self.get_handle(id).await? {
                    let mut v = h.value;
                    v.decrement(cidr, *n);
                    handle_write(id, h.rev, &v, &mut checks, &mut ops);
                }
            }
            if let Err(e) = self.ds.txn(checks, ops).await {
                let e = IpamError::from(e);
                if !is_race(&e) {
                    return Err(e);
                }
                self.backoff(attempt).await;
                continue;
            }
            // As upstream: an emptied block whose pool no longer selects its node is given up
            // (best effort: the addresses are released whatever happens here).
            let _ = self.ensure_consistent_affinity(&value).await;
            let released = reqs
                .iter()
                .map(|r| r.ip)
                .filter(|ip| !outcome.not_allocated.contains(ip))
                .collect();
            return Ok((released, outcome.not_allocated));
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }

    /// Releases every address held by `handle` (upstream's ReleaseByHandle) and deletes the
    /// handle. Returns how many addresses were freed; an unknown handle frees nothing.
    pub async fn release_by_handle(&self, handle: &str) -> Result<usize> {
        let Some(h) = self.get_handle(handle).await? else {
            return Ok(0);
        };
        let blocks: Vec<String> = h.value.block.keys().cloned().collect();
        let mut known = Some(h);
        let mut total = 0;
        for block in blocks {
            let Ok(cidr) = block.parse::<IpNet>() else {
                self.adjust_handle(handle, |v| {
                    v.block.remove(&block);
                })
                .await?;
                known = self.get_handle(handle).await?;
                continue;
            };
            total += self
                .release_handle_in_block(handle, &cidr, &mut known)
                .await?;
        }
        Ok(total)
    }

    /// Frees the handle's addresses in one block and drops the block from the handle, in one
    /// transaction. `known`: the handle as last read or written (kept up to date).
    async fn release_handle_in_block(
        &self,
        handle: &str,
        cidr: &IpNet,
        known: &mut Option<Versioned<HandleValue>>,
    ) -> Result<usize> {
        let key = cidr.to_string();
        for attempt in 0..RETRIES {
            let (mut checks, mut ops) = (Vec::new(), Vec::new());
            let mut n = 0;
            if let Some(b) = self.get_block(cidr).await? {
                let mut value = b.value;
                n = value.release_by_handle(handle, None);
                if n > 0 {
                    (checks, ops) = block_write(&value, b.rev);
                }
            }
            // The handle holds nothing in this block any more: drop the entry whatever it
            // counted (this also heals a count left behind by an interrupted assignment).
            let mut new_handle = None;
            if let Some(h) = known.as_ref() {
                let mut v = h.value.clone();
                v.block.remove(&key);
                handle_write(handle, h.rev, &v, &mut checks, &mut ops);
                new_handle = (!v.is_empty()).then_some(v);
            }
            if ops.is_empty() {
                return Ok(n);
            }
            match self.ds.txn(checks, ops).await {
                Ok(r) => {
                    *known = new_handle.map(|value| Versioned {
                        value,
                        rev: r.revisions.last().copied().unwrap_or(r.revision),
                    });
                    return Ok(n);
                }
                Err(e) => {
                    let e = IpamError::from(e);
                    if !is_race(&e) {
                        return Err(e);
                    }
                    *known = self.get_handle(handle).await?;
                    self.backoff(attempt).await;
                }
            }
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }

    /// Applies `change` to a handle with CAS; deletes the handle when it ends up empty. A missing
    /// handle is left missing.
    async fn adjust_handle(&self, handle: &str, change: impl Fn(&mut HandleValue)) -> Result<()> {
        let key = keys::handle_key(handle);
        for attempt in 0..RETRIES {
            let Some(h) = self.get_handle(handle).await? else {
                return Ok(());
            };
            let mut v = h.value;
            change(&mut v);
            let r = if v.is_empty() {
                self.ds.delete(&key, Some(h.rev)).await.map(|_| 0)
            } else {
                self.ds.update(&key, v.to_json(), h.rev).await
            };
            match r {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. } | Error::NotFound { .. }) => self.backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::TooManyRetries(key))
    }

    /// Releases `host`'s affinity for a block (upstream's releaseBlockAffinity): pendingDeletion,
    /// then the block is deleted (empty) or loses its affinity (not empty), then the affinity
    /// goes. `Ok(false)`: refused (not empty when `require_empty`, changed since the caller read
    /// sequence number `required_seq`, or owned by someone else).
    pub async fn release_block_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        require_empty: bool,
        required_seq: Option<u64>,
    ) -> Result<bool> {
        let Some(aff) = self.get_affinity(host, cidr).await? else {
            return Ok(false);
        };
        let Some(b) = self.get_block(cidr).await? else {
            self.delete_affinity(host, cidr, Some(aff.rev)).await?;
            return Ok(true);
        };
        if required_seq.is_some_and(|s| s != b.value.sequence_number) {
            return Ok(false);
        }
        if b.value.affinity.is_some()
            && b.value.affinity.as_deref() != Some(super::assign::host_affinity(host).as_str())
        {
            self.delete_affinity(host, cidr, Some(aff.rev)).await?;
            return Ok(false);
        }
        if require_empty && !b.value.is_empty() {
            return Ok(false);
        }
        let aff_rev = self
            .update_affinity(host, cidr, AffinityState::PendingDeletion, aff.rev)
            .await?;
        if b.value.is_empty() {
            match self.delete_block(cidr, b.rev).await {
                Ok(()) | Err(IpamError::Datastore(Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        } else {
            let mut value = b.value;
            value.affinity = None;
            value.affinity_claim_time = None;
            value.touch();
            self.update_block(&value, b.rev).await?;
        }
        self.delete_affinity(host, cidr, Some(aff_rev)).await?;
        Ok(true)
    }

    /// The addresses a handle holds, from the blocks its handle object names.
    pub async fn ips_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        let Some(h) = self.get_handle(handle).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for block in h.value.block.keys() {
            if let Ok(cidr) = block.parse::<IpNet>()
                && let Some(b) = self.get_block(&cidr).await?
            {
                out.extend(b.value.ips_by_handle(handle));
            }
        }
        Ok(out)
    }

    /// Who holds `ip`: its handle and attributes, `None` when it is free or in no block.
    pub async fn assignment_of(
        &self,
        ip: IpAddr,
    ) -> Result<Option<(Option<String>, BTreeMap<String, String>)>> {
        for b in self.list_blocks(Some(ip.is_ipv6())).await? {
            if b.value.cidr.contains(&ip) {
                return Ok(b
                    .value
                    .attribute_of(ip)
                    .ok()
                    .flatten()
                    .map(|a| (a.handle_id.clone(), a.secondary.clone())));
            }
        }
        Ok(None)
    }
}

/// The checked write of a block after a release: deleted when empty and owned by nobody (as
/// upstream), else updated.
fn block_write(block: &AllocationBlock, rev: i64) -> (Vec<Check>, Vec<Op>) {
    let key = keys::block_key(&block.cidr.to_string());
    let op = if block.is_empty() && block.affinity.is_none() {
        Op::delete(&key)
    } else {
        Op::put(&key, block.to_json())
    };
    (vec![Check::revision(key, rev)], vec![op])
}

/// Adds the checked write of a handle (deleted when it holds nothing) to a transaction.
fn handle_write(
    id: &str,
    rev: i64,
    value: &HandleValue,
    checks: &mut Vec<Check>,
    ops: &mut Vec<Op>,
) {
    let key = keys::handle_key(id);
    checks.push(Check::revision(&key, rev));
    ops.push(if value.is_empty() {
        Op::delete(key)
    } else {
        Op::put(key, value.to_json())
    });
}
