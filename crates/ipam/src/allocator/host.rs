//! A node's place in IPAM as a whole: removing a node (upstream's node deletion: its workloads'
//! and tunnels' addresses, then `RemoveIPAMHost`; `node` runs these steps as part of deleting
//! the Node), and upstream's `ensureConsistentAffinity`, which gives up an emptied block whose
//! pool no longer selects its node.

use std::net::IpAddr;

use calico_api::resources::endpoint::WorkloadEndpoint;
use calico_api::{Kind, Resource};
use calico_datastore::keys;
use calico_datastore::resources::StoreError;
use ipnet::IpNet;

use super::{Ipam, Result};
use crate::block::{AFFINITY_HOST, AllocationBlock, ReleaseRequest};
use crate::pools::{Pool, selects_node};

/// What `release_host` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRelease {
    /// Addresses of the node's WorkloadEndpoints and tunnels that were released.
    pub addresses: Vec<IpAddr>,
    /// Blocks whose affinity to the node was released (empty ones are deleted, the others stay
    /// with their addresses and no affinity).
    pub blocks: Vec<IpNet>,
}

impl Ipam {
    /// Removes `node` from IPAM, as upstream does when a Node is deleted: releases the addresses
    /// of its WorkloadEndpoints (those whose `spec.node` is the node) and of its tunnels (IPIP,
    /// VXLAN, WireGuard addresses in the Node, when it still exists), then releases every block
    /// affinity of the node — empty blocks are deleted, blocks still holding addresses lose their
    /// affinity so any node may use them — and removes what is left under the node's affinity
    /// prefix. Safe to repeat; a node IPAM never saw frees nothing. `delete_node` runs the same
    /// two steps with the WorkloadEndpoints' deletion between them, as upstream does.
    pub async fn release_host(&self, node: &str) -> Result<HostRelease> {
        let weps = self.node_workload_endpoints(node).await?;
        let addresses = self.release_node_addresses(node, &weps).await?;
        let blocks = self.remove_ipam_host(node).await?;
        Ok(HostRelease { addresses, blocks })
    }

    /// The WorkloadEndpoints whose `spec.node` is `node`, in every namespace.
    pub(crate) async fn node_workload_endpoints(
        &self,
        node: &str,
    ) -> Result<Vec<WorkloadEndpoint>> {
        Ok(self
            .resources
            .list(Kind::WorkloadEndpoint, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(w) if w.spec.node == node => Some(w),
                _ => None,
            })
            .collect())
    }

    /// Releases the addresses of `weps` and of the tunnels recorded in the Node (when it still
    /// exists); returns those that were allocated.
    pub(crate) async fn release_node_addresses(
        &self,
        node: &str,
        weps: &[WorkloadEndpoint],
    ) -> Result<Vec<IpAddr>> {
        let mut ips: Vec<IpAddr> = weps
            .iter()
            .flat_map(|w| w.spec.ip_networks.iter().filter_map(|n| parse_addr(n)))
            .collect();
        match self.resources.get(Kind::Node, None, node).await {
            Ok(Resource::Node(n)) => {
                let bgp_ipip = n
                    .spec
                    .bgp
                    .as_ref()
                    .map(|b| b.ipv4_ipip_tunnel_addr.as_str());
                let wg = n.spec.wireguard.as_ref();
                let tunnels = [
                    bgp_ipip,
                    Some(n.spec.ipv4_vxlan_tunnel_addr.as_str()),
                    Some(n.spec.ipv6_vxlan_tunnel_addr.as_str()),
                    wg.map(|w| w.interface_ipv4_address.as_str()),
                    wg.map(|w| w.interface_ipv6_address.as_str()),
                ];
                ips.extend(tunnels.into_iter().flatten().filter_map(parse_addr));
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let reqs: Vec<ReleaseRequest> = ips
            .iter()
            .map(|ip| ReleaseRequest {
                ip: *ip,
                handle: None,
                sequence_number: None,
            })
            .collect();
        Ok(self.release_ips(&reqs).await?.released)
    }

    /// Upstream's `RemoveIPAMHost`: releases every block affinity of `node` (empty blocks are
    /// deleted, busy ones kept without affinity) and deletes whatever else is left under its
    /// affinity prefix. Returns the blocks whose affinity was released.
    pub(crate) async fn remove_ipam_host(&self, node: &str) -> Result<Vec<IpNet>> {
        let mut blocks = Vec::new();
        for v6 in [false, true] {
            for (cidr, _) in self.affine_blocks(node, v6).await? {
                if self
                    .release_block_affinity(node, &cidr, false, None)
                    .await?
                {
                    blocks.push(cidr);
                }
            }
        }
        // Whatever is left (affinities of blocks owned by others, unparsable keys) goes too.
        for kv in self.ds.list(&keys::host_affinity_prefix(node)).await?.kvs {
            match self.ds.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) | Err(calico_datastore::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for v6 in [false, true] {
            self.forget_last_block(node, v6);
        }
        Ok(blocks)
    }

    /// Upstream's `ensureConsistentAffinity`, run after addresses were released from `block`:
    /// when the block is empty, affine to a node that exists, and the pool holding it no longer
    /// selects that node, the block's affinity is released (and the empty block deleted) so the
    /// node stops holding address space it may not use. Best effort: a block that changes
    /// meanwhile stays.
    pub(crate) async fn ensure_consistent_affinity(&self, block: &AllocationBlock) -> Result<()> {
        if !block.is_empty() {
            return Ok(());
        }
        let Some(host) = block.affinity.as_deref().and_then(|a| {
            a.strip_prefix(AFFINITY_HOST)
                .and_then(|h| h.strip_prefix(':'))
        }) else {
            return Ok(());
        };
        let (shared, _) = self.shared(false).await?;
        let node = match self.node_info(host, false).await {
            Ok((n, _)) => n,
            Err(super::IpamError::NodeMissing(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let pool = shared
            .pools
            .iter()
            .find(|p| Pool::from_resource(p).is_some_and(|pool| pool.cidr.contains(&block.cidr)));
        match pool {
            Some(p) if !selects_node(p, &node.labels) => {
                self.release_block_affinity(host, &block.cidr, true, Some(block.sequence_number))
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// An address from `10.0.0.1/32`, `10.0.0.1` or an empty string (none).
fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.addr())
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok())
}
