//! Assignment of one specific address (upstream's AssignIP): it must be in an enabled pool; its
//! block is claimed for the host when it does not exist yet. The block and the handle are written
//! in one transaction that also checks the pool and the configuration as read.

use calico_datastore::keys;

use super::assign::host_affinity;
use super::store::{Versioned, is_race, race_key};
use super::{AssignIpArgs, Ipam, IpamError, RETRIES, Result};
use crate::block::BlockError;
use crate::model::HandleValue;
use crate::pools::Pool;

impl Ipam {
    /// Assigns `args.ip` to `args.handle` on `args.hostname`. Fails with `Taken` (naming the
    /// holder), `NotInPool`, or `StrictAffinity` when the block belongs to another node.
    pub async fn assign_ip(&self, args: &AssignIpArgs) -> Result<()> {
        for _ in 0..RETRIES {
            match self.assign_ip_once(args).await {
                Err(IpamError::Stale(_)) => continue,
                other => return other,
            }
        }
        Err(IpamError::TooManyRetries(format!(
            "pools and IPAM configuration while assigning {}",
            args.ip
        )))
    }

    async fn assign_ip_once(&self, args: &AssignIpArgs) -> Result<()> {
        let (shared, _) = self.shared(true).await?;
        let pool = shared
            .pools
            .iter()
            .filter(|p| !p.spec.is_disabled())
            .filter_map(Pool::from_resource)
            .find(|p| p.cidr.contains(&args.ip))
            .ok_or(IpamError::NotInPool(args.ip))?;
        let Some(cidr) = pool.block_for(args.ip) else {
            return Err(IpamError::NotInPool(args.ip));
        };
        let host = args.hostname.as_str();
        let attrs = args.attrs.to_map();
        let handle_key = args.handle.as_deref().map(keys::handle_key);
        let mut handle: Option<Versioned<HandleValue>> = None;
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
            if shared.config.strict_affinity
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
            let counted = args.handle.as_deref().map(|h| (h, &handle));
            let e = match self
                .commit_assignment(shared.checks_for(&cidr), &value, b.rev, counted, 1)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match race_key(&e) {
                Some(k) if Some(k) == handle_key.as_deref() => {
                    if let Some(h) = args.handle.as_deref() {
                        handle = self.get_handle(h).await?;
                    }
                }
                Some(k) if k == keys::block_key(&cidr.to_string()) => self.backoff(attempt).await,
                Some(k) => return Err(IpamError::Stale(k.to_string())),
                None => return Err(e.into()),
            }
        }
        Err(IpamError::TooManyRetries(format!("block {cidr}")))
    }
}
