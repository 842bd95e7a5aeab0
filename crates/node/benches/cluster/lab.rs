//! The cluster under test: a 4-node lab (seed 000's shape: two subnets behind one switch, a
//! VXLAN CrossSubnet pool with /26 blocks, natOutgoing) brought up with the `calico-lab` binary
//! as a user runs it, in a state directory of its own, with real `calico-node` processes in the
//! node namespaces on the embedded datastore. Pods are made with `calico-lab pod add` (the real
//! `calico` and `calico-ipam` CNI plugins). `down` runs on drop, also when the bench fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Nodes of the bench topology: (name, subnet, address).
pub const NODES: [(&str, &str, &str); 4] = [
    ("k01-control-plane", "vlan10", "10.10.10.10"),
    ("k01-worker", "vlan10", "10.10.10.11"),
    ("k01-worker2", "vlan10", "10.10.10.12"),
    ("k01-worker3", "vlan20", "10.10.20.10"),
];

pub const POD_POOL: &str = "10.244.0.0/16";

fn topology(name: &str) -> String {
    let mut nodes = String::new();
    for (n, subnet, addr) in NODES {
        nodes.push_str(&format!(
            "  - {{name: {n}, subnet: {subnet}, address: {addr}}}\n"
        ));
    }
    format!(
        "name: {name}
datastore: embedded
subnets:
  - {{name: vlan10, cidr: 10.10.10.0/24, gateway: 10.10.10.1}}
  - {{name: vlan20, cidr: 10.10.20.0/24, gateway: 10.10.20.1}}
nodes:
{nodes}resources:
  - inline: {{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {{name: bench-pods}},
      spec: {{cidr: {POD_POOL}, blockSize: 26, vxlanMode: CrossSubnet, natOutgoing: true}}}}
nodeEnv:
  CALICO_NETWORKING_BACKEND: vxlan
  IP: autodetect
  IP_AUTODETECTION_METHOD: interface=eth1
  NO_DEFAULT_POOLS: \"true\"
"
    )
}

/// Where the binaries are: the directory of this bench's profile (`target/release`), where
/// `cargo bench` also puts `calico-node`; `calico-lab` and the CNI plugins must be built into it.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the bench executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("bench executable has no profile directory")?
        .to_path_buf();
    for bin in ["calico-lab", "calico-node", "calico", "calico-ipam"] {
        if !dir.join(bin).is_file() {
            bail!(
                "{} is missing; build it first: cargo build --release -p calico-lab -p calico-node \
                 -p calico-cni (scripts/bench.sh cluster does)",
                dir.join(bin).display()
            );
        }
    }
    Ok(dir)
}

/// A lab that is up; `down` on drop.
pub struct Lab {
    pub name: String,
    bin: PathBuf,
    state_dir: tempfile::TempDir,
    state: Value,
}

/// Runs a command with a time bound; stdout on success, an error with stderr otherwise.
pub fn run(cmd: &mut Command, limit: Duration, what: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let end = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    pub fn up() -> Result<Lab> {
        let bin = bin_dir()?;
        let state_dir = tempfile::Builder::new()
            .prefix("calico-bench-lab")
            .tempdir()?;
        let name = format!("bench-{}", std::process::id());
        let file = state_dir.path().join("topology.yaml");
        std::fs::write(&file, topology(&name))?;
        let mut lab = Lab {
            name,
            bin,
            state_dir,
            state: Value::Null,
        };
        let node_bin = lab.bin.join("calico-node");
        lab.cli(
            &[
                "up",
                &file.to_string_lossy(),
                "--node-bin",
                &node_bin.to_string_lossy(),
            ],
            Duration::from_secs(120),
        )?;
        lab.reload()?;
        Ok(lab)
    }

    fn cli(&self, args: &[&str], limit: Duration) -> Result<String> {
        let mut cmd = Command::new(self.bin.join("calico-lab"));
        cmd.arg("--state-dir").arg(self.state_dir.path()).args(args);
        run(&mut cmd, limit, &format!("calico-lab {}", args.join(" ")))
    }

    /// Re-read `state.json` (pods and processes change).
    pub fn reload(&mut self) -> Result<()> {
        let path = self.state_dir.path().join(&self.name).join("state.json");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        self.state =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        Ok(())
    }

    pub fn datastore(&self) -> Result<PathBuf> {
        self.state["datastore"]
            .as_str()
            .map(PathBuf::from)
            .context("state.json has no datastore path")
    }

    /// The network namespace of a node.
    pub fn netns(&self, node: &str) -> Result<String> {
        self.state["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == node))
            .and_then(|m| m["netns"].as_str())
            .map(str::to_string)
            .with_context(|| format!("state.json has no member {node}"))
    }

    /// (node, pid) of every calico-node the lab started.
    pub fn agents(&self) -> Result<Vec<(String, i32)>> {
        let procs = self.state["processes"]
            .as_array()
            .context("state.json has no processes")?;
        let out: Vec<(String, i32)> = procs
            .iter()
            .filter_map(|p| {
                let node = p["name"].as_str()?.strip_prefix("calico-node ")?;
                Some((node.to_string(), i32::try_from(p["pid"].as_i64()?).ok()?))
            })
            .collect();
        if out.len() != NODES.len() {
            bail!(
                "expected {} calico-node processes, state.json lists {out:?}",
                NODES.len()
            );
        }
        Ok(out)
    }

    /// Create pod `default/NAME` on `node`; returns (pod netns, address without prefix).
    pub fn pod_add(&mut self, node: &str, pod: &str) -> Result<(String, String)> {
        self.cli(
            &["pod", "add", &self.name.clone(), node, pod],
            Duration::from_secs(60),
        )?;
        self.reload()?;
        self.pod(pod)
    }

    pub fn pod(&self, pod: &str) -> Result<(String, String)> {
        let rec = self.state["pods"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == pod))
            .with_context(|| format!("state.json has no pod {pod}"))?;
        let netns = rec["netns"].as_str().context("pod without netns")?;
        let addr = rec["address"].as_str().context("pod without address")?;
        let addr = addr.split('/').next().unwrap_or(addr);
        Ok((netns.to_string(), addr.to_string()))
    }

    pub fn pods_on(&self, node: &str) -> usize {
        self.state["pods"]
            .as_array()
            .map_or(0, |ps| ps.iter().filter(|p| p["node"] == node).count())
    }

    pub fn pod_count(&self) -> usize {
        self.state["pods"].as_array().map_or(0, Vec::len)
    }

    /// Log of a node's calico-node (for error messages).
    pub fn node_log(&self, node: &str) -> String {
        let path = self
            .state_dir
            .path()
            .join(&self.name)
            .join(node)
            .join("calico-node.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.cli(&["down", &self.name.clone()], Duration::from_secs(60)) {
            eprintln!("calico-lab down {} failed: {e:#}", self.name);
        }
    }
}

/// `ip netns exec NS CMD…` with a time bound.
pub fn exec(netns: &str, cmd: &[&str], limit: Duration) -> Result<String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns]).args(cmd);
    run(&mut c, limit, &format!("{} in {netns}", cmd.join(" ")))
}

/// Polls `f` every 20 ms until it returns true, at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}
