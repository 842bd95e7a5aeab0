//! The commands: `up`, `down`, `status`, `check`, `exec`.
//!
//! ```text
//! up:   topology ─▶ state file (complete=false) ─▶ datastore + resources ─▶ plan steps, each
//!       namespace recorded before it is created ─▶ node env files ─▶ complete=true ─▶ summary
//! down: state file ∪ `ip netns list` by prefix ∪ root links by tag ─▶ stop processes in them
//!       ─▶ delete ─▶ verify nothing of the lab is left ─▶ remove the state directory
//! ```
//!
//! Node agents (calico-node) and pods plug in later between "node env files" and "complete":
//! each node's `<state>/<node>/calico-node.env` already holds the environment its agent gets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::agents::{self, NodeAgent};
use crate::names::{self, LabNames};
use crate::plan::{Step, plan};
use crate::state::{self, Member, Process, Root, State};
use crate::sys;
use crate::topology::Topology;

/// Test hook: SIGKILL ourselves after this many steps of `up` (simulates a crash mid-way).
pub const CRASH_AFTER_ENV: &str = "CALICO_LAB_CRASH_AFTER_STEPS";

/// `writeln!` into a String (cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn members(topo: &Topology, names: &LabNames) -> Vec<Member> {
    let ifaces = |ifs: &[crate::topology::Interface]| {
        ifs.iter()
            .map(|i| {
                let s = topo.subnet_of(i);
                (
                    i.name.clone(),
                    s.name.clone(),
                    format!("{}/{}", i.address, s.cidr.prefix_len()),
                )
            })
            .collect()
    };
    let nodes = topo.nodes.iter().map(|n| Member {
        name: n.name.clone(),
        netns: names.netns(&n.name),
        role: "node".into(),
        interfaces: ifaces(&n.interfaces),
    });
    let routers = topo.routers.iter().map(|r| Member {
        name: r.name.clone(),
        netns: names.netns(&r.name),
        role: format!("router ({:?}, AS {})", r.kind, r.asn).to_lowercase(),
        interfaces: ifaces(&r.interfaces),
    });
    let etcd = match &topo.datastore {
        crate::topology::Datastore::Etcd { interface } => Some(Member {
            name: names::ETCD.into(),
            netns: names.netns(names::ETCD),
            role: "datastore (etcd)".into(),
            interfaces: ifaces(std::slice::from_ref(interface)),
        }),
        crate::topology::Datastore::Embedded => None,
    };
    nodes.chain(routers).chain(etcd).collect()
}

fn execute(step: &Step) -> Result<()> {
    match step {
        Step::Netns(n) => sys::add_netns(n)?,
        Step::Ip { netns, args } => {
            sys::ip_in(netns, args)?;
        }
        Step::Sysctl { netns, key, value } => sys::sysctl_in(netns, key, value)?,
    }
    Ok(())
}

/// The environment a node's calico-node will get (the datastore plus the topology's env).
fn node_env(topo: &Topology, node: &crate::topology::Node, embedded: &Path) -> String {
    let mut env = vec![("NODENAME".to_string(), node.name.clone())];
    env.extend(crate::datastore::node_vars(topo, embedded));
    env.extend(node.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

pub fn up(root: &Root, file: &Path, agent: &NodeAgent) -> Result<()> {
    let topo = Topology::load(file)?;
    let names = LabNames::new(&topo.name);
    if root.load(&topo.name)?.is_some() {
        bail!(
            "lab {:?} is already up (state in {}); run `calico-lab down {}` first",
            topo.name,
            root.lab_dir(&topo.name).display(),
            topo.name
        );
    }
    let leftovers: Vec<String> = sys::list_netns()?
        .into_iter()
        .filter(|n| names.owns_netns(n))
        .collect();
    if !leftovers.is_empty() {
        bail!(
            "namespaces of lab {:?} already exist ({}); run `calico-lab down {}` first",
            topo.name,
            leftovers.join(", "),
            topo.name
        );
    }
    let dir = root.lab_dir(&topo.name);
    let datastore = dir.join(state::DATASTORE_FILE);
    let mut st = State {
        lab: topo.name.clone(),
        tag: names.tag().to_string(),
        topology: std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()),
        complete: false,
        netns: Vec::new(),
        members: members(&topo, &names),
        datastore: datastore.clone(),
        etcd_endpoint: topo.datastore.etcd_endpoint(),
        processes: Vec::new(),
    };
    root.save(&st)?;
    match build(root, &topo, &names, &mut st, file, agent) {
        Ok(applied) => {
            print_summary(&topo, &names, &st, &applied);
            if *agent == NodeAgent::None {
                println!(
                    "\nno node agent started (calico-node not found next to calico-lab; \
                     pass --node-bin PATH to start one)"
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("calico-lab: up failed, removing what was created: {e:#}");
            if let Err(d) = down(root, &topo.name) {
                eprintln!("calico-lab: cleanup failed too: {d:#}");
            }
            Err(e)
        }
    }
}

fn build(
    root: &Root,
    topo: &Topology,
    names: &LabNames,
    st: &mut State,
    file: &Path,
    agent: &NodeAgent,
) -> Result<Vec<String>> {
    let dir = root.lab_dir(&topo.name);
    let text = std::fs::read_to_string(file)?;
    std::fs::write(dir.join(state::TOPOLOGY_COPY), text)?;
    let crash_after: Option<usize> = std::env::var(CRASH_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    for (i, step) in plan(topo, names).iter().enumerate() {
        if crash_after == Some(i) {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        if let Step::Netns(n) = step {
            st.netns.push(n.clone());
            root.save(st)?;
        }
        execute(step).with_context(|| format!("step {}: {step}", i + 1))?;
    }
    if let Some(pid) = crate::datastore::start_etcd(topo, names, &dir)? {
        st.processes.push(Process {
            name: "etcd".into(),
            netns: names.netns(names::ETCD),
            pid,
            start_time: sys::start_time(pid),
        });
        root.save(st)?;
    }
    let applied = crate::datastore::apply(topo, names, &st.datastore)?;
    for n in &topo.nodes {
        let ndir = dir.join(&n.name);
        std::fs::create_dir_all(&ndir)?;
        std::fs::write(
            ndir.join("calico-node.env"),
            node_env(topo, n, &st.datastore),
        )?;
    }
    if let NodeAgent::Binary(bin) = agent {
        let argv = vec![bin.display().to_string()];
        for n in &topo.nodes {
            let ndir = dir.join(&n.name);
            let env_text = std::fs::read_to_string(ndir.join("calico-node.env"))?;
            let env = agents::read_env_file(&env_text);
            let netns = names.netns(&n.name);
            let pid = agents::start("calico-node", &netns, &argv, &env, &ndir)?;
            st.processes.push(Process {
                name: format!("calico-node {}", n.name),
                netns,
                pid,
                start_time: sys::start_time(pid),
            });
            root.save(st)?;
        }
    }
    st.complete = true;
    root.save(st)?;
    Ok(applied)
}

fn print_summary(topo: &Topology, names: &LabNames, st: &State, applied: &[String]) {
    let datastore = match &st.etcd_endpoint {
        Some(ep) => format!("etcd {ep} in {}", names.netns(names::ETCD)),
        None => format!("embedded {}", st.datastore.display()),
    };
    println!(
        "lab {} is up (tag {}; state {}; datastore {datastore})\n",
        topo.name,
        names.tag(),
        st.datastore.parent().unwrap_or(Path::new("")).display(),
    );
    let mut rows = vec![vec![
        "NODE".into(),
        "SUBNET".into(),
        "ADDRESS".into(),
        "INTERFACE".into(),
        "NAMESPACE".into(),
        "AGENT".into(),
    ]];
    for m in &st.members {
        let agent = st
            .processes
            .iter()
            .find(|p| p.netns == m.netns)
            .map(|p| format!("pid {}", p.pid))
            .unwrap_or_else(|| "-".into());
        for (k, (ifname, subnet, addr)) in m.interfaces.iter().enumerate() {
            let name = if k == 0 {
                m.name.clone()
            } else {
                String::new()
            };
            let ns = if k == 0 {
                m.netns.clone()
            } else {
                String::new()
            };
            let agent = if k == 0 { agent.clone() } else { String::new() };
            rows.push(vec![
                name,
                subnet.clone(),
                addr.clone(),
                ifname.clone(),
                ns,
                agent,
            ]);
        }
    }
    print!("{}", table(&rows));
    let mut rows = vec![vec![
        "SUBNET".into(),
        "CIDR".into(),
        "GATEWAY".into(),
        "BRIDGE".into(),
    ]];
    for (i, s) in topo.subnets.iter().enumerate() {
        rows.push(vec![
            s.name.clone(),
            s.cidr.to_string(),
            s.gateway.to_string(),
            format!("{} in {}", names.bridge(i), names.switch_netns()),
        ]);
    }
    println!();
    print!("{}", table(&rows));
    if !applied.is_empty() {
        println!(
            "\napplied {} resource(s): {}",
            applied.len(),
            applied.join(", ")
        );
    }
}

/// The lab a command without a name refers to: the only one with a state directory.
pub fn pick(root: &Root, lab: Option<&str>) -> Result<String> {
    if let Some(l) = lab {
        return Ok(l.to_string());
    }
    let labs = root.labs()?;
    match labs.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no lab is up (nothing under {})", root.0.display()),
        many => bail!(
            "several labs are up ({}); name one with --lab NAME",
            many.join(", ")
        ),
    }
}

fn load(root: &Root, lab: &str) -> Result<State> {
    root.load(lab)?.ok_or_else(|| {
        anyhow!(
            "lab {lab:?} has no state file {}; is it up?",
            root.state_file(lab).display()
        )
    })
}

pub fn down(root: &Root, lab: &str) -> Result<()> {
    crate::names::check_lab_name(lab).map_err(|e| anyhow!("lab name: {e}"))?;
    let names = LabNames::new(lab);
    let st = match root.load(lab) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("calico-lab: {e}; cleaning up by name only");
            None
        }
    };
    let existing = sys::list_netns()?;
    // Reverse creation order (nodes before the switch), then anything found only by name.
    let mut netns: Vec<String> = st
        .as_ref()
        .map(|s| s.netns.iter().rev().cloned().collect())
        .unwrap_or_default();
    for n in &existing {
        if names.owns_netns(n) && !netns.contains(n) {
            netns.push(n.clone());
        }
    }
    let netns: Vec<String> = netns.into_iter().filter(|n| existing.contains(n)).collect();

    // Processes first: a namespace held by a process outlives `ip netns del`.
    // Recorded agents count only while their pid still names the process we started (one
    // whose namespace lost its name would not show in `ip netns pids`).
    let mut pids: BTreeSet<i32> = st
        .iter()
        .flat_map(|s| s.processes.iter())
        .filter(|p| p.start_time.is_some() && sys::start_time(p.pid) == p.start_time)
        .map(|p| p.pid)
        .collect();
    for n in &netns {
        pids.extend(sys::netns_pids(n)?);
    }
    let pids: Vec<i32> = pids.into_iter().collect();
    if !pids.is_empty() {
        let killed = sys::stop(&pids, Duration::from_secs(5));
        if !killed.is_empty() {
            eprintln!("calico-lab: killed {killed:?} after 5 s without exiting on SIGTERM");
        }
    }
    let mut errors = Vec::new();
    for n in &netns {
        if let Err(e) = sys::del_netns(n) {
            errors.push(e.to_string());
        }
    }
    for l in sys::root_links()? {
        if names.owns_link(&l)
            && let Err(e) = sys::ip(&sys::strs(&["link", "del", &l]))
        {
            errors.push(e.to_string());
        }
    }
    let left: Vec<String> = sys::list_netns()?
        .into_iter()
        .filter(|n| names.owns_netns(n))
        .collect();
    if !left.is_empty() {
        errors.push(format!("namespaces still present: {}", left.join(", ")));
    }
    if !errors.is_empty() {
        bail!(
            "lab {lab:?} was not removed completely (state kept in {}):\n  {}",
            root.lab_dir(lab).display(),
            errors.join("\n  ")
        );
    }
    root.remove(lab)?;
    println!(
        "lab {lab} is down ({} namespace(s), {} process(es) removed)",
        netns.len(),
        pids.len()
    );
    Ok(())
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

/// Run CMD inside a node's namespace; returns its exit code.
pub fn exec(root: &Root, lab: &str, target: &str, cmd: &[String]) -> Result<i32> {
    if target.contains('/') {
        bail!("{target}: pods (NAMESPACE/POD) are not created by calico-lab yet; name a node");
    }
    let st = load(root, lab)?;
    let m = st.member(target).ok_or_else(|| {
        let known: Vec<&str> = st.members.iter().map(|m| m.name.as_str()).collect();
        anyhow!(
            "lab {lab} has no node or router {target:?} (it has: {})",
            known.join(", ")
        )
    })?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &m.netns])
        .args(cmd)
        .status()
        .with_context(|| format!("running ip netns exec {} …", m.netns))?;
    Ok(status.code().unwrap_or(128))
}

/// Ping every node from every other node; prints the matrix; true when all pairs answered.
/// Pods join the endpoint list once the lab creates them.
pub fn check(root: &Root, lab: &str) -> Result<bool> {
    let st = load(root, lab)?;
    let mut endpoints = Vec::new();
    for m in st.nodes() {
        let a = m
            .address()
            .ok_or_else(|| anyhow!("node {} has no address in the state file", m.name))?;
        endpoints.push(crate::check::Endpoint {
            name: m.name.clone(),
            netns: m.netns.clone(),
            address: a.to_string(),
        });
    }
    let m = crate::check::Matrix::probe(&endpoints, crate::check::ping);
    print!("{}", m.render());
    Ok(m.all_ok())
}
