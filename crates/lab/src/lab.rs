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
fn node_env(
    topo: &Topology,
    node: &crate::topology::Node,
    embedded: &Path,
    state_dir: &Path,
) -> String {
    let mut env = vec![
        ("NODENAME".to_string(), node.name.clone()),
        (
            "CALICO_STATE_DIR".to_string(),
            state_dir.display().to_string(),
        ),
    ];
    env.extend(crate::datastore::node_vars(topo, embedded));
    env.extend(node.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// What `up` does after building the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpOptions {
    /// How long to wait for Felix to program the seed-shaped block routes before printing.
    pub converge_timeout: Duration,
    /// Print the reachability matrices.
    pub matrix: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            converge_timeout: Duration::from_secs(20),
            matrix: true,
        }
    }
}

pub fn up(root: &Root, file: &Path, agent: &NodeAgent, opts: UpOptions) -> Result<()> {
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
        pods: Vec::new(),
    };
    root.save(&st)?;
    match build(root, &topo, &names, &mut st, file, agent) {
        Ok(applied) => {
            print_summary(&topo, &names, &st, &applied);
            if *agent == NodeAgent::None {
                println!(
                    "\nno node agent started (--no-node, or no calico-node next to calico-lab; \
                     pass --node-bin PATH to start one){}",
                    if topo.pods.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; the {} declared pod(s) need calico-node and were not created",
                            topo.pods.len()
                        )
                    }
                );
                return Ok(());
            }
            println!();
            crate::inspect::report(root, &topo.name, opts.converge_timeout, opts.matrix)?;
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
            node_env(
                topo,
                n,
                &st.datastore,
                &root.node_state_dir(&topo.name, &n.name),
            ),
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
    // Pods need calico-node: IPAM reads the Node it registers (and Felix routes them).
    if !topo.pods.is_empty() && matches!(agent, NodeAgent::Binary(_)) {
        wait_started(root, topo, st)?;
        for p in &topo.pods {
            crate::pods::add(root, &topo.name, &p.node, &p.namespace, &p.name, &p.labels)?;
        }
        // pods::add saved the records; keep ours in step.
        if let Some(saved) = root.load(&topo.name)? {
            st.pods = saved.pods;
        }
    }
    st.complete = true;
    root.save(st)?;
    Ok(applied)
}

/// How long `up` waits for every calico-node to finish its startup.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until every node's calico-node wrote its `nodename` file (registration, tunnel
/// addresses and MTU done), so pods get the node's MTU and the tunnel address comes first in
/// the node's block, as in the seeds.
fn wait_started(root: &Root, topo: &Topology, st: &State) -> Result<()> {
    let deadline = std::time::Instant::now() + NODE_START_TIMEOUT;
    for n in &topo.nodes {
        let file = root.node_state_dir(&topo.name, &n.name).join("nodename");
        while !file.is_file() {
            let proc = st
                .processes
                .iter()
                .find(|p| p.name == format!("calico-node {}", n.name));
            if proc.is_some_and(|p| !sys::alive(p.pid)) {
                bail!(
                    "calico-node of {} exited during startup; see {}",
                    n.name,
                    root.node_dir(&topo.name, &n.name)
                        .join("calico-node.log")
                        .display()
                );
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "calico-node of {} did not finish startup within {NODE_START_TIMEOUT:?}                      (no {}); see its log {}",
                    n.name,
                    file.display(),
                    root.node_dir(&topo.name, &n.name)
                        .join("calico-node.log")
                        .display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
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

pub(crate) fn load(root: &Root, lab: &str) -> Result<State> {
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
    // Pods first, while the datastore and the nodes still exist: CNI DEL releases their
    // addresses and removes the host-side veths; their namespaces go below in any case.
    if let Some(st) = &st {
        for p in st.pods.iter().rev() {
            if let Err(e) = crate::pods::del_record(root, st, p) {
                eprintln!("calico-lab: {e:#} (continuing)");
            }
        }
    }
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
