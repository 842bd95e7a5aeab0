//! `calico-lab node del`: a node leaves the cluster the way upstream's node controller cleans
//! up after a deleted Kubernetes node, so the other nodes' Felix removes its routes.
//!
//! ```text
//! its pods: CNI DEL + namespace ─▶ its calico-node stopped ─▶ IPAM: tunnel address handles
//! released, every block affinity of the host released (empty blocks deleted) ─▶ Node
//! resource deleted ─▶ its namespace (and with it its switch port) deleted ─▶ state updated
//! ```

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use calico_api::Kind;
use calico_datastore::resources::{ResourceStore, StoreError};
use calico_ipam::Ipam;

use crate::lab::load;
use crate::state::Root;
use crate::sys;

/// What was removed, for the command's output.
#[derive(Debug, Default)]
pub struct Removed {
    pub pods: usize,
    pub processes: usize,
    pub blocks: Vec<String>,
}

pub fn del(root: &Root, lab: &str, node: &str) -> Result<Removed> {
    let mut st = load(root, lab)?;
    let member = st
        .nodes()
        .find(|m| m.name == node)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = st.nodes().map(|m| m.name.as_str()).collect();
            anyhow!(
                "lab {lab} has no node {node:?} (nodes: {})",
                known.join(", ")
            )
        })?;
    let mut removed = Removed::default();

    let pods: Vec<_> = st.pods.iter().filter(|p| p.node == node).cloned().collect();
    for p in &pods {
        crate::pods::del_record(root, &st, p)?;
        removed.pods += 1;
    }
    st.pods.retain(|p| p.node != node);
    root.save(&st)?;

    let mut pids: Vec<i32> = st
        .processes
        .iter()
        .filter(|p| p.netns == member.netns)
        .filter(|p| p.start_time.is_some() && sys::start_time(p.pid) == p.start_time)
        .map(|p| p.pid)
        .collect();
    pids.extend(sys::netns_pids(&member.netns)?);
    pids.sort_unstable();
    pids.dedup();
    sys::stop(&pids, Duration::from_secs(5));
    removed.processes = pids.len();
    st.processes.retain(|p| p.netns != member.netns);
    root.save(&st)?;

    let host = node.to_string();
    removed.blocks = crate::datastore::with_store(&st, |ds| async move {
        let ipam = Ipam::new(ds.clone());
        for handle in [
            format!("vxlan-tunnel-addr-{host}"),
            format!("ipip-tunnel-addr-{host}"),
        ] {
            ipam.release_by_handle(&handle)
                .await
                .with_context(|| format!("releasing IPAM handle {handle}"))?;
        }
        let prefix = calico_datastore::keys::host_affinity_prefix(&host);
        let mut blocks = Vec::new();
        for kv in ds.list(&prefix).await?.kvs {
            let Some(cidr) = kv
                .key
                .rsplit('/')
                .next()
                .and_then(|s| s.rsplit_once('-'))
                .and_then(|(ip, len)| format!("{ip}/{len}").parse().ok())
            else {
                continue;
            };
            ipam.release_block_affinity(&host, &cidr, false, None)
                .await
                .with_context(|| format!("releasing block {cidr} of {host}"))?;
            blocks.push(cidr.to_string());
        }
        match ResourceStore::new(ds)
            .delete(Kind::Node, None, &host, None)
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(anyhow!("deleting Node {host}: {e}")),
        }
        Ok(blocks)
    })?;

    if sys::list_netns()?.contains(&member.netns) {
        sys::del_netns(&member.netns)?;
    }
    st.members.retain(|m| m.name != node);
    st.netns.retain(|n| *n != member.netns);
    root.save(&st)?;
    Ok(removed)
}
