//! Borrowing: without strictAffinity, the last resort of auto-assign takes free addresses from
//! any existing block of the selected pools — other nodes' blocks included — visiting them in
//! the host's walk order (upstream's pseudo-random order from the hostname), so that nodes
//! borrowing at once spread over different blocks.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::assign::{Mode, Request, push_ips};
use super::store::Versioned;
use super::{Ipam, Result};
use crate::block::AllocationBlock;
use crate::pools::{block_walk, walk_seed};

impl Ipam {
    /// Last resort without strictAffinity: free addresses in any existing block of the pools,
    /// visited in the host's walk order.
    pub(super) async fn borrow(
        &self,
        req: &Request<'_>,
        v6: bool,
        num: usize,
        got: &mut Vec<IpNet>,
    ) -> Result<()> {
        let reserved = |ip: IpAddr| req.reservations.contains(ip);
        // Each block is in at most one pool: it is moved out when visited, never copied.
        let mut blocks: Vec<Option<Versioned<AllocationBlock>>> = self
            .list_blocks(Some(v6))
            .await?
            .into_iter()
            .map(Some)
            .collect();
        for pool in &req.pools {
            let order: BTreeMap<IpNet, usize> =
                block_walk(pool, walk_seed(pool, req.host, (self.random)()))
                    .take(1 << 16)
                    .enumerate()
                    .map(|(i, b)| (b, i))
                    .collect();
            let mut candidates: Vec<(usize, usize)> = blocks
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let b = b.as_ref()?;
                    (pool.cidr.contains(&b.value.cidr) && b.value.assignable_count(reserved) > 0)
                        .then(|| (order.get(&b.value.cidr).copied().unwrap_or(usize::MAX), i))
                })
                .collect();
            candidates.sort_unstable();
            for (_, i) in candidates {
                if got.len() >= num {
                    return Ok(());
                }
                let Some(b) = blocks.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                let cidr = b.value.cidr;
                let ips = self
                    .assign_from_block(req, &cidr, num - got.len(), Mode::Borrow, Some(b))
                    .await?;
                push_ips(got, ips, &cidr);
            }
        }
        Ok(())
    }
}
