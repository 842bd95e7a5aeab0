//! Typed reads and writes of IPAM keys (single CAS writes, and the block + handle transaction of
//! an assignment) and the resources IPAM reads. No retry loops here: callers decide what a lost
//! compare-and-swap means.

use calico_api::resources::ippool::IPPool;
use calico_api::{Kind, Resource};
use calico_datastore::{Check, Error, KeyValue, Op, Revision, keys};
use ipnet::IpNet;

use super::{Ipam, IpamError, Result};
use crate::block::AllocationBlock;
use crate::model::{AffinityState, AffinityValue, HandleValue, IpamConfig, IpamConfigValue};
use crate::pools::Reservations;

/// A value with the revision it was read at (the CAS token).
#[derive(Debug, Clone)]
pub(crate) struct Versioned<T> {
    pub value: T,
    pub rev: Revision,
}

fn corrupt(key: &str, reason: impl ToString) -> IpamError {
    IpamError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// A listed block, parsed; a corrupt value is an error naming its key.
pub(crate) fn parse_block(kv: &KeyValue) -> Result<Versioned<AllocationBlock>> {
    let value = AllocationBlock::from_json(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
    Ok(Versioned {
        value,
        rev: kv.mod_revision,
    })
}

/// Whether an error means "someone else wrote first": re-read and retry.
pub(crate) fn is_race(e: &IpamError) -> bool {
    matches!(
        e,
        IpamError::Datastore(
            Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. }
        )
    )
}

impl Ipam {
    pub(crate) async fn get_block(
        &self,
        cidr: &IpNet,
    ) -> Result<Option<Versioned<AllocationBlock>>> {
        let key = keys::block_key(&cidr.to_string());
        let Some(kv) = self.ds.get(&key).await? else {
            return Ok(None);
        };
        let value = AllocationBlock::from_json(&kv.value).map_err(|e| corrupt(&key, e))?;
        Ok(Some(Versioned {
            value,
            rev: kv.mod_revision,
        }))
    }

    pub(crate) async fn create_block(&self, block: &AllocationBlock) -> Result<Revision> {
        let key = keys::block_key(&block.cidr.to_string());
        Ok(self.ds.create(&key, block.to_json(), None).await?)
    }

    pub(crate) async fn update_block(
        &self,
        block: &AllocationBlock,
        rev: Revision,
    ) -> Result<Revision> {
        let key = keys::block_key(&block.cidr.to_string());
        Ok(self.ds.update(&key, block.to_json(), rev).await?)
    }

    pub(crate) async fn delete_block(&self, cidr: &IpNet, rev: Revision) -> Result<()> {
        self.ds
            .delete(&keys::block_key(&cidr.to_string()), Some(rev))
            .await?;
        Ok(())
    }

    /// Every block of one family (or both), parsed; a corrupt block is an error naming its key.
    pub(crate) async fn list_blocks(
        &self,
        v6: Option<bool>,
    ) -> Result<Vec<Versioned<AllocationBlock>>> {
        let prefixes: Vec<String> = match v6 {
            Some(v6) => vec![keys::block_prefix(v6)],
            None => vec![keys::block_prefix(false), keys::block_prefix(true)],
        };
        let mut out = Vec::new();
        for prefix in prefixes {
            for kv in self.ds.list(&prefix).await?.kvs {
                out.push(parse_block(&kv)?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn get_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
    ) -> Result<Option<Versioned<AffinityValue>>> {
        let key = affinity_key(host, cidr);
        let Some(kv) = self.ds.get(&key).await? else {
            return Ok(None);
        };
        let value = AffinityValue::from_json(&kv.value).map_err(|e| corrupt(&key, e))?;
        Ok(Some(Versioned {
            value,
            rev: kv.mod_revision,
        }))
    }

    pub(crate) async fn create_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        state: AffinityState,
    ) -> Result<Revision> {
        let key = affinity_key(host, cidr);
        Ok(self
            .ds
            .create(&key, AffinityValue::new(state).to_json(), None)
            .await?)
    }

    pub(crate) async fn update_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        state: AffinityState,
        rev: Revision,
    ) -> Result<Revision> {
        let key = affinity_key(host, cidr);
        Ok(self
            .ds
            .update(&key, AffinityValue::new(state).to_json(), rev)
            .await?)
    }

    pub(crate) async fn delete_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        rev: Option<Revision>,
    ) -> Result<()> {
        match self.ds.delete(&affinity_key(host, cidr), rev).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The host's affinities (any state) in one family, with their values: one listing instead
    /// of one read per block. A corrupt value is an error naming its key.
    pub(crate) async fn affine_blocks(
        &self,
        host: &str,
        v6: bool,
    ) -> Result<Vec<(IpNet, Versioned<AffinityValue>)>> {
        let prefix = format!(
            "{}{}/block/",
            affinity_prefix(host),
            if v6 { "ipv6" } else { "ipv4" }
        );
        let mut out = Vec::new();
        for kv in self.ds.list(&prefix).await?.kvs {
            // `<ip>-<prefix length>` after the prefix; anything else is not an affinity.
            let Some(cidr) = kv
                .key
                .strip_prefix(&prefix)
                .and_then(|seg| seg.rsplit_once('-'))
                .and_then(|(ip, len)| format!("{ip}/{len}").parse::<IpNet>().ok())
            else {
                continue;
            };
            let value = AffinityValue::from_json(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
            out.push((
                cidr,
                Versioned {
                    value,
                    rev: kv.mod_revision,
                },
            ));
        }
        Ok(out)
    }

    pub(crate) async fn get_handle(&self, id: &str) -> Result<Option<Versioned<HandleValue>>> {
        let key = keys::handle_key(id);
        let Some(kv) = self.ds.get(&key).await? else {
            return Ok(None);
        };
        let value = HandleValue::from_json(&kv.value).map_err(|e| corrupt(&key, e))?;
        Ok(Some(Versioned {
            value,
            rev: kv.mod_revision,
        }))
    }

    /// Writes the IPAM settings (upstream's `SetIPAMConfig`: validated, then stored at
    /// `/calico/ipam/v2/config`).
    pub async fn set_config(&self, config: IpamConfig) -> Result<()> {
        config.validate().map_err(IpamError::Invalid)?;
        let key = keys::ipam_config_key();
        let value = serde_json::to_vec(&IpamConfigValue::from(&config)).unwrap_or_default();
        for _ in 0..super::RETRIES {
            let r = match self.ds.get(&key).await? {
                Some(kv) => self.ds.update(&key, value.clone(), kv.mod_revision).await,
                None => self.ds.create(&key, value.clone(), None).await,
            };
            match r {
                Ok(_) => {
                    self.invalidate_cache();
                    return Ok(());
                }
                Err(
                    Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. },
                ) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::TooManyRetries(key))
    }

    /// Every IP pool (enabled or not).
    pub async fn pools(&self) -> Result<Vec<IPPool>> {
        Ok(self
            .resources
            .list(Kind::IPPool, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPPool(p) => Some(p),
                _ => None,
            })
            .collect())
    }

    pub(crate) async fn reservations(&self) -> Result<Reservations> {
        let list = self.resources.list(Kind::IPReservation, None).await?;
        let cidrs: Vec<String> = list
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPReservation(r) => Some(r.spec.reserved_cidrs),
                _ => None,
            })
            .flatten()
            .collect();
        Ok(Reservations::new(cidrs.iter().map(String::as_str)))
    }

    /// A new block's first sequence number: the clock in nanoseconds (as upstream), so a deleted
    /// and re-created block never repeats sequence numbers.
    pub(crate) fn initial_sequence(&self) -> u64 {
        let now = self.clock.now();
        let nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX) | ((self.random)() & 0xffff)
    }
}

/// The prefix of virtual owners' names (`virtual:<name>`); node names cannot contain ':'.
pub(crate) const VIRTUAL_PREFIX: &str = "virtual:";
/// The owner of LoadBalancer blocks (upstream's `virtual:load-balancer` affinity).
pub(crate) const VIRTUAL_LOAD_BALANCER: &str = "virtual:load-balancer";

/// The affinity key of an owner (a node, or `virtual:<name>`) for a block.
pub(crate) fn affinity_key(host: &str, cidr: &IpNet) -> String {
    match host.strip_prefix(VIRTUAL_PREFIX) {
        Some(name) => keys::typed_affinity_key("virtual", name, &cidr.to_string()),
        None => keys::affinity_key(host, &cidr.to_string()),
    }
}

/// Where an owner's affinities live.
pub(crate) fn affinity_prefix(host: &str) -> String {
    match host.strip_prefix(VIRTUAL_PREFIX) {
        Some(name) => keys::typed_affinity_prefix("virtual", name),
        None => keys::host_affinity_prefix(host),
    }
}

/// The key a lost race was about (a failed check of a transaction or a CAS), if it was a race.
pub(crate) fn race_key(e: &Error) -> Option<&str> {
    match e {
        Error::Conflict { key, .. } | Error::AlreadyExists { key } | Error::NotFound { key } => {
            Some(key)
        }
        _ => None,
    }
}

impl Ipam {
    /// Writes `block` (read at `rev`) and counts `n` of its addresses into `handle`, in one
    /// transaction that also checks `guards`. `known`: the handle as last read (`None` = assumed
    /// absent, the usual case: one handle per workload). The datastore's error is returned as is
    /// so the caller can tell which key moved (`race_key`). Returns the block's new revision.
    pub(crate) async fn commit_assignment(
        &self,
        mut guards: Vec<Check>,
        block: &AllocationBlock,
        rev: Revision,
        handle: Option<(&str, &Option<Versioned<HandleValue>>)>,
        n: usize,
    ) -> std::result::Result<Revision, Error> {
        let block_key = keys::block_key(&block.cidr.to_string());
        guards.push(Check::revision(&block_key, rev));
        let mut ops = vec![Op::put(block_key, block.to_json())];
        if let Some((id, known)) = handle {
            let key = keys::handle_key(id);
            let mut value = match known {
                Some(h) => {
                    guards.push(Check::revision(&key, h.rev));
                    h.value.clone()
                }
                None => {
                    guards.push(Check::absent(&key));
                    HandleValue::default()
                }
            };
            value.increment(&block.cidr, n);
            ops.push(Op::put(key, value.to_json()));
        }
        let r = self.ds.txn(guards, ops).await?;
        Ok(r.revisions.first().copied().unwrap_or(r.revision))
    }
}
