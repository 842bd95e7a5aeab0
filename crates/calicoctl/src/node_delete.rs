//! What `delete node` does besides deleting the Node, as upstream's node deletion does: the
//! node's addresses (its WorkloadEndpoints' and tunnels') and block affinities leave IPAM
//! (`Ipam::release_host`: empty blocks deleted, busy ones lose their affinity), and its
//! WorkloadEndpoints are deleted, so `calicoctl ipam check` stays clean afterwards.

use calico_api::{Kind, Resource};
use calico_datastore::resources::{ResourceStore, StoreError};
use calico_ipam::Ipam;

/// Releases `node` from IPAM and deletes its WorkloadEndpoints. Call before deleting the Node
/// (its tunnel addresses are read from it).
pub async fn release_node(store: &ResourceStore, node: &str) -> Result<(), String> {
    let ipam = Ipam::new(store.datastore().clone());
    ipam.release_host(node)
        .await
        .map_err(|e| format!("releasing the IPAM data of node {node}: {e}"))?;
    let weps = store
        .list(Kind::WorkloadEndpoint, None)
        .await
        .map_err(|e| format!("listing the WorkloadEndpoints of node {node}: {e}"))?;
    for r in weps {
        let Resource::WorkloadEndpoint(w) = r else {
            continue;
        };
        if w.spec.node != node {
            continue;
        }
        let ns = w.metadata.namespace.as_deref();
        match store
            .delete(Kind::WorkloadEndpoint, ns, &w.metadata.name, None)
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => {
                return Err(format!(
                    "deleting WorkloadEndpoint {} of node {node}: {e}",
                    w.metadata.name
                ));
            }
        }
    }
    Ok(())
}
