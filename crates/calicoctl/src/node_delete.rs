//! `delete node` in calicoctl's words. The deletion itself is `Ipam::delete_node` (shared with
//! `calico-lab node del`): upstream's node deletion, which releases the node's addresses and
//! block affinities and deletes its WorkloadEndpoints, BGPPeers (`spec.node`), `node.<name>`
//! FelixConfiguration and BGPConfiguration and HostEndpoints before the Node itself, so an
//! interrupted deletion is finished by running `calicoctl delete node` again.

use calico_datastore::Revision;
use calico_datastore::resources::{ResourceStore, StoreError};
use calico_ipam::{Ipam, IpamError};

/// How one node deletion ended, sorted the way `delete` reports results.
pub enum Ended {
    /// The Node and what belongs to it are gone.
    Deleted,
    /// Its resources were cleaned up, but there was no Node to delete.
    NodeMissing,
    /// A per-resource failure (the Node changed since it was read): reported, others go on.
    Refused(String),
    /// Anything else stops the command.
    Failed(String),
}

pub async fn delete_node(store: &ResourceStore, node: &str, expected: Option<Revision>) -> Ended {
    match Ipam::new(store.datastore().clone())
        .delete_node(node, expected)
        .await
    {
        Ok(d) if d.node.is_some() => Ended::Deleted,
        Ok(_) => Ended::NodeMissing,
        Err(e) => match &e.error {
            IpamError::Store(s @ StoreError::Conflict { .. }) => {
                Ended::Refused(crate::client::store_error(s))
            }
            _ => Ended::Failed(e.to_string()),
        },
    }
}
