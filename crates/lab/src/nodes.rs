//! `calico-lab node restart`: its calico-node stopped (SIGTERM, or SIGKILL as a crash) and
//! started again with the same binary and environment.
//!
//! `calico-lab node del`: a node leaves the cluster the way upstream's node controller cleans
//! up after a deleted Kubernetes node, so the other nodes' Felix removes its routes.
//!
//! ```text
//! its pods: CNI DEL + namespace ─▶ its calico-node stopped ─▶ `Ipam::delete_node` (upstream's
//! node deletion, as kube-controllers runs it in etcd mode): addresses released, WEPs deleted,
//! every block affinity released (empty blocks deleted), its BGPPeers, node.<name> Felix/BGP
//! configurations and HostEndpoints deleted, the Node last ─▶ its namespace (and with it its
//! switch port) deleted ─▶ state updated
//! ```

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
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
    let member = st.node(node)?.clone();
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
        let done = Ipam::new(ds)
            .delete_node(&host, None)
            .await
            .with_context(|| format!("deleting node {host} from the datastore"))?;
        Ok(done.ipam.blocks.iter().map(ToString::to_string).collect())
    })?;

    if sys::list_netns()?.contains(&member.netns) {
        sys::del_netns(&member.netns)?;
    }
    st.members.retain(|m| m.name != node);
    st.netns.retain(|n| *n != member.netns);
    root.save(&st)?;
    Ok(removed)
}

/// How `node restart` stops the running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWith {
    /// SIGTERM, SIGKILL after 5 s.
    Term,
    /// SIGKILL at once (a crash).
    Kill,
}

/// Stop NODE's calico-node and start the same binary again with the same environment; the
/// dataplane it programmed stays in place meanwhile. Returns (old pid, new pid).
pub fn restart(root: &Root, lab: &str, node: &str, how: StopWith) -> Result<(i32, i32)> {
    let mut st = load(root, lab)?;
    let netns = st.node(node)?.netns.clone();
    let name = format!("calico-node {node}");
    let idx = st
        .processes
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| {
            anyhow!("node {node} has no calico-node recorded (was `up` run with --no-node?)")
        })?;
    let old = st.processes[idx].clone();
    if old.start_time.is_none() || sys::start_time(old.pid) != old.start_time {
        return Err(anyhow!(
            "calico-node of {node} (pid {}) is not running; its log is {}",
            old.pid,
            root.node_dir(lab, node).join("calico-node.log").display()
        ));
    }
    let exe = std::fs::read_link(format!("/proc/{}/exe", old.pid))
        .with_context(|| format!("finding the binary of pid {}", old.pid))?;
    let exe = exe
        .to_string_lossy()
        .trim_end_matches(" (deleted)")
        .to_string();
    match how {
        StopWith::Term => {
            sys::stop(&[old.pid], Duration::from_secs(5));
        }
        StopWith::Kill => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(old.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            sys::stop(&[old.pid], Duration::from_secs(5));
        }
    }
    let dir = root.node_dir(lab, node);
    let env_text = std::fs::read_to_string(dir.join("calico-node.env"))
        .with_context(|| format!("reading {}", dir.join("calico-node.env").display()))?;
    let env = crate::agents::read_env_file(&env_text);
    let pid = crate::agents::start("calico-node", &netns, &[exe], &env, &dir)?;
    st.processes[idx] = crate::state::Process {
        name,
        netns,
        pid,
        start_time: sys::start_time(pid),
    };
    root.save(&st)?;
    Ok((old.pid, pid))
}
