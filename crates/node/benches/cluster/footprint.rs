//! (c) Footprint: every calico-node's resident memory (VmRSS, and its peak VmHWM, from
//! /proc/PID/status) and CPU while idle (utime + stime from /proc/PID/stat over a quiet window),
//! with 4 nodes and 100 pods made by the real CNI plugins. The peers cannot run here (no
//! Kubernetes), so their published figures are the anchors: upstream calico-node ~250 MiB, kube-router
//! 9–18 MiB (shared/reference/performance-anchors.md).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::lab::{Lab, NODES};
use crate::stats::Table;

fn status_kib(pid: i32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("calico-node pid {pid} is gone"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("/proc/{pid}/status has no {field}"))
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("calico-node pid {pid} is gone"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = text.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat field {}", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Adds pods round-robin over the nodes until the lab has `total`; returns the CPU seconds all
/// calico-nodes used meanwhile and the wall time.
pub fn fill(lab: &mut Lab, total: usize) -> Result<(f64, Duration)> {
    let agents = lab.agents()?;
    let before: u64 = agents
        .iter()
        .map(|(_, p)| cpu_ticks(*p))
        .sum::<Result<u64>>()?;
    let start = Instant::now();
    let mut i = 0;
    while lab.pod_count() < total {
        let node = NODES[i % NODES.len()].0;
        lab.pod_add(node, &format!("fill-{i}"))?;
        i += 1;
    }
    let wall = start.elapsed();
    let after: u64 = agents
        .iter()
        .map(|(_, p)| cpu_ticks(*p))
        .sum::<Result<u64>>()?;
    Ok(((after - before) as f64 / clk_tck(), wall))
}

pub fn run(lab: &mut Lab, idle: Duration) -> Result<Table> {
    let (busy_cpu, busy_wall) = fill(lab, 100)?;
    // Let pending workload routes and the last coalesced passes finish before the idle window.
    std::thread::sleep(Duration::from_secs(3));
    let agents = lab.agents()?;
    let before: Vec<u64> = agents
        .iter()
        .map(|(_, p)| cpu_ticks(*p))
        .collect::<Result<_>>()?;
    let t = Instant::now();
    std::thread::sleep(idle);
    let secs = t.elapsed().as_secs_f64();
    let hz = clk_tck();
    let mut table = Table::new(&[
        "node",
        "pods",
        "VmRSS MiB",
        "VmHWM (peak) MiB",
        "idle CPU % of a core",
        "RSS vs upstream calico-node (~250 MiB)",
        "RSS vs kube-router (9–18 MiB)",
    ]);
    let pods_on = |node: &str| lab.pods_on(node);
    let mut rss_max = 0.0f64;
    for ((node, pid), b) in agents.iter().zip(before) {
        let rss = status_kib(*pid, "VmRSS:")? as f64 / 1024.0;
        let hwm = status_kib(*pid, "VmHWM:")? as f64 / 1024.0;
        let cpu = (cpu_ticks(*pid)? - b) as f64 / hz / secs * 100.0;
        rss_max = rss_max.max(rss);
        table.row(vec![
            node.clone(),
            pods_on(node).to_string(),
            format!("{rss:.1}"),
            format!("{hwm:.1}"),
            format!("{cpu:.2}"),
            format!("{:.3}", rss / 250.0),
            format!("{:.2}–{:.2}", rss / 18.0, rss / 9.0),
        ]);
    }
    table.note(format!(
        "Idle window {secs:.0} s after {} pods were up (clock tick {hz:.0} Hz, so one tick in the \
         window is {:.2} %). Creating the pods took {:.1} s and all four calico-nodes used \
         {busy_cpu:.2} CPU-seconds meanwhile. Largest RSS {rss_max:.1} MiB; goal ≤ 30 MiB.",
        lab.pod_count(),
        100.0 / hz / secs,
        busy_wall.as_secs_f64()
    ));
    Ok(table)
}
