//! Throwaway named network namespaces for tests (feature `test-util`). Names are unique per
//! process and counter (`calico-test-<pid>-<n>`), and the guard deletes the namespace on drop,
//! also when the test panics. Needs root: creation fails loudly otherwise.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::netns::NetNs;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named namespace created with `ip netns add`, deleted on drop.
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Create `calico-test-<pid>-<n>`; panics (test failure) when it cannot, e.g. without root.
    pub fn new() -> TestNetns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("calico-test-{}-{n}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => TestNetns { name },
            Ok(o) => panic!(
                "this test needs root to create network namespace {name}: `ip netns add` said: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test needs iproute2 (`ip`) to create namespaces: {e}"),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn open(&self) -> NetNs {
        match NetNs::named(&self.name) {
            Ok(ns) => ns,
            Err(e) => panic!("open test namespace {}: {e}", self.name),
        }
    }

    /// Run `ip -n NAME ARGS…` and return stdout; panics with stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Run a command inside the namespace (`ip netns exec`); panics on failure.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(cmd);
        run("ip", &full)
    }

    /// A veth pair: `name` here, `peer_name` created directly in `peer` (both down).
    pub fn veth_to(&self, name: &str, peer: &TestNetns, peer_name: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ]);
    }

    /// A node namespace whose uplink `eth1` (address `node_cidr`, up) is a veth to `eth0` of a
    /// second namespace (address `peer_cidr` when given, up). Returns (node, peer); keep both
    /// alive for the test.
    pub fn with_uplink(node_cidr: &str, peer_cidr: Option<&str>) -> (TestNetns, TestNetns) {
        let ns = TestNetns::new();
        let peer = TestNetns::new();
        ns.veth_to("eth1", &peer, "eth0");
        ns.ip(&["addr", "add", node_cidr, "dev", "eth1"]);
        ns.ip(&["link", "set", "eth1", "up"]);
        if let Some(cidr) = peer_cidr {
            peer.ip(&["addr", "add", cidr, "dev", "eth0"]);
        }
        peer.ip(&["link", "set", "eth0", "up"]);
        (ns, peer)
    }
}

impl Default for TestNetns {
    fn default() -> Self {
        TestNetns::new()
    }
}

fn run(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
