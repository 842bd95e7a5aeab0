//! Deleting a node as upstream's client does (libcalico-go `nodes.Delete`, which `calicoctl
//! delete node` calls, and which kube-controllers calls in etcd mode for a Kubernetes node that
//! is gone): the node's addresses and block affinities leave IPAM, and the resources that exist
//! only for that node are deleted, the Node itself last.
//!
//! ```text
//!  addresses of its WorkloadEndpoints (spec.node) and of the Node's tunnels ─▶ released
//!  ─▶ those WorkloadEndpoints deleted ─▶ RemoveIPAMHost (affinities; empty blocks deleted)
//!  ─▶ BGPPeers with spec.node ─▶ FelixConfiguration node.<name> ─▶ BGPConfiguration node.<name>
//!  ─▶ HostEndpoints with spec.node ─▶ the Node
//! ```
//!
//! The Node goes last, as upstream's: its tunnel addresses are read from it, and while it exists
//! the deletion can still be asked for by name. Every step tolerates what an earlier run already
//! removed, so after an interrupted run a second one finishes the job. Only what upstream deletes
//! is deleted: BGPPeers that pick the node by `nodeSelector`, policies, IPReservations and other
//! nodes' resources stay.

use calico_api::resources::endpoint::WorkloadEndpoint;
use calico_api::{Kind, Resource};
use calico_datastore::Revision;
use calico_datastore::resources::StoreError;

use super::{HostRelease, Ipam, IpamError};

/// The name of a node's own FelixConfiguration and BGPConfiguration (`node.<name>`).
pub fn node_config_name(node: &str) -> String {
    format!("node.{node}")
}

/// What `delete_node` removed.
#[derive(Debug, Clone, Default)]
pub struct NodeDeletion {
    /// What left IPAM (addresses of its workloads and tunnels, blocks that lost their affinity).
    pub ipam: HostRelease,
    /// Resources deleted before the Node, in deletion order: kind and `name` or `ns/name`.
    pub deleted: Vec<(Kind, String)>,
    /// The Node as it was deleted; `None` when it did not exist (the rest was still cleaned up,
    /// as upstream does).
    pub node: Option<Resource>,
}

/// A node deletion that stopped at one step. Everything before the step is done; the Node is
/// still there, so running the deletion again finishes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "deleting node {node} stopped while {step}: {error}; what was removed before stays removed \
     and the Node is kept, so running the node deletion again finishes it"
)]
pub struct NodeDeleteError {
    pub node: String,
    pub step: String,
    pub error: IpamError,
}

impl Ipam {
    /// Deletes `node` and what belongs to it, in upstream's order (see the module). The Node is
    /// deleted only at `expected` revision when given; a Node that no longer exists is not an
    /// error (`NodeDeletion::node` is `None`), so callers decide whether that matters.
    pub async fn delete_node(
        &self,
        node: &str,
        expected: Option<Revision>,
    ) -> Result<NodeDeletion, NodeDeleteError> {
        let failed = |step: String| {
            move |error: IpamError| NodeDeleteError {
                node: node.to_string(),
                step,
                error,
            }
        };
        let mut out = NodeDeletion::default();

        let weps = self
            .node_workload_endpoints(node)
            .await
            .map_err(failed("listing its WorkloadEndpoints".into()))?;
        out.ipam.addresses = self
            .release_node_addresses(node, &weps)
            .await
            .map_err(failed("releasing its addresses in IPAM".into()))?;
        for WorkloadEndpoint { metadata, .. } in &weps {
            let ns = metadata.namespace.as_deref();
            self.delete_present(&mut out, Kind::WorkloadEndpoint, ns, &metadata.name)
                .await
                .map_err(failed(format!(
                    "deleting WorkloadEndpoint({})",
                    metadata.name
                )))?;
        }
        out.ipam.blocks = self
            .remove_ipam_host(node)
            .await
            .map_err(failed("releasing its block affinities".into()))?;

        for kind in [
            Kind::BGPPeer,
            Kind::FelixConfiguration,
            Kind::BGPConfiguration,
            Kind::HostEndpoint,
        ] {
            let names = self
                .owned(kind, node)
                .await
                .map_err(failed(format!("listing {}s", kind.name())))?;
            for name in names {
                self.delete_present(&mut out, kind, None, &name)
                    .await
                    .map_err(failed(format!("deleting {kind}({name})")))?;
            }
        }

        match self
            .resources
            .delete(Kind::Node, None, node, expected)
            .await
        {
            Ok(n) => out.node = Some(n),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(failed("deleting the Node".into())(e.into())),
        }
        Ok(out)
    }

    /// Names of the resources of `kind` that upstream deletes with `node`: BGPPeers and
    /// HostEndpoints whose `spec.node` is the node; the FelixConfiguration or BGPConfiguration
    /// `node.<name>` (not listed: deleting a missing one is harmless).
    async fn owned(&self, kind: Kind, node: &str) -> Result<Vec<String>, IpamError> {
        if matches!(kind, Kind::FelixConfiguration | Kind::BGPConfiguration) {
            return Ok(vec![node_config_name(node)]);
        }
        Ok(self
            .resources
            .list(kind, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::BGPPeer(p) if p.spec.node == node => Some(p.metadata.name),
                Resource::HostEndpoint(h) if h.spec.node == node => Some(h.metadata.name),
                _ => None,
            })
            .collect())
    }

    /// Deletes one resource (any revision); one already gone is fine.
    async fn delete_present(
        &self,
        out: &mut NodeDeletion,
        kind: Kind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), IpamError> {
        match self.resources.delete(kind, ns, name, None).await {
            // Corrupt: deleted, only the returned copy could not be read.
            Ok(_) | Err(StoreError::Datastore(calico_datastore::Error::Corrupt { .. })) => {}
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let shown = match ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        out.deleted.push((kind, shown));
        Ok(())
    }
}
