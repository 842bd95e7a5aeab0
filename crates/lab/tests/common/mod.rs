//! Shared by the lab's kernel tests: a lab per test (unique name, own state directory, `down`
//! on drop), running the built `calico-lab`; root and iproute2 are required, never skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use calico_lab::names::LabNames;

pub const BIN: &str = env!("CARGO_BIN_EXE_calico-lab");
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and need root; run them as root (CI does)"
    );
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests need iproute2 (`ip`); install it (scripts/install-deps.sh)"
    );
}

pub fn unique_name(prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(0);
    format!(
        "{prefix}{}-{}-{secs}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn netns_of_lab(names: &LabNames) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| names.owns_netns(n) || n.contains(names.tag()))
        .map(str::to_string)
        .collect()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One lab of one test: its name, state directory and topology file; `down` on drop.
pub struct Lab {
    pub name: String,
    pub names: LabNames,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(prefix: &str) -> Lab {
        require_root();
        let name = unique_name(prefix);
        let dir = tempfile::tempdir().expect("temp dir");
        Lab {
            names: LabNames::new(&name),
            name,
            dir,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env("CALICO_LAB_STATE_DIR", self.state_dir())
            .env_remove("CALICO_LAB")
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run calico-lab")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "calico-lab {args:?} failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn write_topology(&self, body: &str) -> PathBuf {
        let path = self.dir.path().join("topology.yaml");
        std::fs::write(&path, format!("name: {}\n{body}", self.name)).expect("write topology");
        path
    }

    pub fn netns(&self) -> Vec<String> {
        netns_of_lab(&self.names)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down", &self.name]);
        // Last resort if `down` itself is broken: remove by name, so no test leaves debris.
        for n in self.netns() {
            let _ = Command::new("ip").args(["netns", "del", &n]).status();
        }
    }
}

/// The repository's examples/ directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

impl Lab {
    /// An example topology under this lab's name: its `name:` line dropped and `file:`
    /// resources made absolute (the copy lives in the test's temp dir).
    pub fn example(&self, file: &str) -> PathBuf {
        let text = std::fs::read_to_string(examples_dir().join(file)).expect("read example");
        let body: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("name:"))
            .map(|l| match l.split_once("- file: ") {
                Some((indent, f)) => format!(
                    "{indent}- file: {}",
                    examples_dir().join(f.trim()).display()
                ),
                None => l.to_string(),
            })
            .collect();
        self.write_topology(&body.join("\n"))
    }

    /// `up` with the real calico-node and CNI plugins (they must be built next to calico-lab).
    pub fn up_with_agents(&self, topo: &Path) -> String {
        let dir = Path::new(BIN).parent().expect("binary dir");
        for bin in ["calico-node", "calico", "calico-ipam"] {
            assert!(
                dir.join(bin).is_file(),
                "{} is missing: build it first (cargo build -p calico-node -p calico-cni; \
                 `cargo test --workspace` does)",
                dir.join(bin).display()
            );
        }
        self.ok(&["up", topo.to_str().expect("utf-8 path"), "--wait", "30"])
    }

    /// (name, node, cidr) rows of the block affinity table in `out`.
    pub fn affinities(out: &str) -> Vec<(String, String, String)> {
        out.lines()
            .skip_while(|l| !l.starts_with("block affinities"))
            .skip(2)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
            })
            .collect()
    }

    /// `ip route` lines of `node` whose destination is in `pool` with prefix length `len`
    /// (what `ip route | grep /26` shows in the seeds), trailing spaces trimmed, sorted.
    pub fn block_routes(&self, node: &str, pool: &str, len: u8) -> Vec<String> {
        let pool: ipnet::Ipv4Net = pool.parse().expect("pool CIDR");
        let out = self.ok(&["exec", node, "--", "ip", "route", "show"]);
        let mut v: Vec<String> = out
            .lines()
            .map(str::trim_end)
            .filter(|l| {
                let dst = l.trim_start_matches("blackhole ").split(' ').next();
                dst.and_then(|d| d.parse::<ipnet::Ipv4Net>().ok())
                    .is_some_and(|n| n.prefix_len() == len && pool.contains(&n))
            })
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// `ip -4 -o addr show dev IF` inside a node or pod (NAMESPACE/POD).
    pub fn addr4(&self, target: &str, ifname: &str) -> String {
        self.ok(&[
            "exec", target, "--", "ip", "-4", "-o", "addr", "show", "dev", ifname,
        ])
    }

    /// `ip -o link show dev IF` inside a node or pod (NAMESPACE/POD).
    pub fn link(&self, target: &str, ifname: &str) -> String {
        self.ok(&[
            "exec", target, "--", "ip", "-o", "link", "show", "dev", ifname,
        ])
    }
}
