//! Per-pool and per-block utilisation (upstream's `GetUtilization`), the numbers behind
//! `calicoctl ipam show`: a pool's total is its size, its use the held addresses of its blocks.

use ipnet::IpNet;

use crate::allocator::{Ipam, Result};
use crate::pools::Pool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUsage {
    pub cidr: IpNet,
    pub affinity: Option<String>,
    pub capacity: u128,
    pub in_use: u128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// The pool's name; `orphaned allocation blocks` for blocks in no pool.
    pub name: String,
    pub cidr: Option<IpNet>,
    pub total: u128,
    pub in_use: u128,
    pub blocks: Vec<BlockUsage>,
}

impl PoolUsage {
    pub fn free(&self) -> u128 {
        self.total.saturating_sub(self.in_use)
    }
}

fn size(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

impl Ipam {
    /// Utilisation of every pool (disabled ones too), then of blocks no pool contains.
    pub async fn usage(&self) -> Result<Vec<PoolUsage>> {
        let pools: Vec<Pool> = self
            .pools()
            .await?
            .iter()
            .filter_map(Pool::from_resource)
            .collect();
        let mut out: Vec<PoolUsage> = pools
            .iter()
            .map(|p| PoolUsage {
                name: p.name.clone(),
                cidr: Some(p.cidr),
                total: size(&p.cidr),
                in_use: 0,
                blocks: Vec::new(),
            })
            .collect();
        let mut orphans = PoolUsage {
            name: "orphaned allocation blocks".into(),
            cidr: None,
            total: 0,
            in_use: 0,
            blocks: Vec::new(),
        };
        for b in self.list_blocks(None).await? {
            let b = b.value;
            let usage = BlockUsage {
                cidr: b.cidr,
                affinity: b.affinity.clone(),
                capacity: b.size() as u128,
                in_use: b.in_use() as u128,
            };
            let target = out
                .iter_mut()
                .find(|p| p.cidr.is_some_and(|c| c.contains(&b.cidr.network())));
            let target = match target {
                Some(t) => t,
                None => {
                    orphans.total += usage.capacity;
                    &mut orphans
                }
            };
            target.in_use += usage.in_use;
            target.blocks.push(usage);
        }
        if !orphans.blocks.is_empty() {
            out.push(orphans);
        }
        Ok(out)
    }
}
