//! The read-side commands of a lab that is up: `status`, `exec`, `check`, `report`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::lab::load;
use crate::report;
use crate::state::Root;
use crate::sys;

/// `writeln!` into a String (cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// The status report (returned, so the caller decides how to print it).
pub fn status(root: &Root, lab: &str) -> Result<String> {
    let mut out = String::new();
    let st = load(root, lab)?;
    let existing = sys::list_netns()?;
    outln!(
        out,
        "lab {} (tag {}): {}; topology {}; datastore {}",
        st.lab,
        st.tag,
        if st.complete {
            "up"
        } else {
            "INCOMPLETE (up did not finish; run down)"
        },
        st.topology.display(),
        st.etcd_endpoint
            .clone()
            .unwrap_or_else(|| st.datastore.display().to_string())
    );
    for n in &st.netns {
        let role = st
            .members
            .iter()
            .find(|m| &m.netns == n)
            .map(|m| format!("{} {}", m.role, m.name))
            .unwrap_or_else(|| "switch".into());
        if !existing.contains(n) {
            outln!(out, "\n{n} ({role}): MISSING");
            continue;
        }
        outln!(out, "\n{n} ({role})");
        let addrs = sys::ip_in(n, &sys::strs(&["-br", "addr", "show"]))?;
        for l in addrs.lines() {
            outln!(out, "  {l}");
        }
        let pids = sys::netns_pids(n)?;
        if pids.is_empty() {
            outln!(out, "  processes: none");
        } else {
            let ps: Vec<String> = pids
                .iter()
                .map(|p| format!("{} ({p})", sys::comm(*p)))
                .collect();
            outln!(out, "  processes: {}", ps.join(", "));
        }
    }
    Ok(out)
}

/// The namespace `exec` runs in: a node or router by name, or a pod as NAMESPACE/POD.
fn target_netns(st: &crate::state::State, target: &str) -> Result<String> {
    if let Some((ns, pod)) = target.split_once('/') {
        return st.pod(ns, pod).map(|p| p.netns.clone()).ok_or_else(|| {
            let known: Vec<String> = st.pods.iter().map(|p| p.key()).collect();
            anyhow!(
                "lab {} has no pod {target:?} (pods: {})",
                st.lab,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        });
    }
    st.member(target).map(|m| m.netns.clone()).ok_or_else(|| {
        let known: Vec<&str> = st.members.iter().map(|m| m.name.as_str()).collect();
        anyhow!(
            "lab {} has no node or router {target:?} (it has: {}; pods are NAMESPACE/POD)",
            st.lab,
            known.join(", ")
        )
    })
}

/// Run CMD inside a node's, router's or pod's namespace; returns its exit code.
pub fn exec(root: &Root, lab: &str, target: &str, cmd: &[String]) -> Result<i32> {
    let st = load(root, lab)?;
    let netns = target_netns(&st, target)?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(cmd)
        .status()
        .with_context(|| format!("running ip netns exec {netns} …"))?;
    Ok(status.code().unwrap_or(128))
}

/// The node matrix (ICMP), then the pod matrix (ICMP + TCP); true when every pair answered.
pub fn check(root: &Root, lab: &str) -> Result<bool> {
    let st = load(root, lab)?;
    let nodes = report::node_matrix(&st)?;
    println!("node reachability (ping -c1 -W1):");
    print!("{}", nodes.render());
    let mut ok = nodes.all_ok();
    if let Some(pods) = report::pod_matrix(&st)? {
        println!("\npod reachability (ping -c1 -W1, TCP echo; 1 s bounds):");
        print!("{}", pods.render());
        ok &= pods.all_ok();
    }
    Ok(ok)
}

/// What `up` prints after the lab summary: wait (bounded) for the seed-shaped routes, then the
/// block affinities, each node's block routes, the pods and (with `matrix`) the pod matrix.
/// Returns whether the routes converged and every pod pair answered.
pub fn report(root: &Root, lab: &str, timeout: Duration, matrix: bool) -> Result<bool> {
    let st = load(root, lab)?;
    let diffs = report::wait_converged(&st, timeout)?;
    let snap = report::snapshot(&st)?;
    print!("{}", report::render_state(&st, &snap)?);
    let mut ok = diffs.is_empty();
    if !ok {
        println!(
            "\nroutes differ from the seed shapes after {timeout:?}:\n  {}",
            diffs.join("\n  ")
        );
    }
    if matrix && let Some(m) = report::pod_matrix(&st)? {
        println!("\npod reachability (ping -c1 -W1, TCP echo; 1 s bounds):");
        print!("{}", m.render());
        ok &= m.all_ok();
    }
    Ok(ok)
}
