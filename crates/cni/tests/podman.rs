//! podman 4.3 with its CNI backend runs two containers on a network whose conflist names our
//! `calico` plugin (IPAM `calico-ipam`, embedded datastore), with our binaries first on its
//! CNI plugin path. podman itself runs inside a test node namespace (`nsenter --net`), so the
//! host sides of the veths land there. The containers (`--rootfs` of busybox-static, runc, no
//! image pulled) reach each other over ICMP and TCP; removing them runs our DEL.
//!
//! podman's state (containers.conf, storage.conf with the vfs driver, runroot, tmp dir, network
//! config dir) lives in a temp dir per run; the guard removes containers and any mount left
//! under it, also when the test fails. Needs root, podman, runc and busybox-static
//! (scripts/install-deps.sh); fails loudly when any is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Fixture, NODE};
use serde_json::json;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Busybox applets the containers use.
const APPLETS: &[&str] = &["sh", "ping", "nc", "ip", "sleep", "cat", "echo"];

/// podman with private configuration and storage, run inside the node namespace.
struct Podman<'a> {
    fx: &'a Fixture,
    root: PathBuf,
    rootfs: PathBuf,
    network: String,
    prefix: String,
}

fn need(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(binary).is_file();
    assert!(
        found,
        "this test needs `{binary}` (Debian package {package}); run scripts/install-deps.sh"
    );
}

impl<'a> Podman<'a> {
    fn new(fx: &'a Fixture) -> Podman<'a> {
        need("podman", "podman");
        need("runc", "runc");
        need("nsenter", "util-linux");
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.is_file(),
            "this test needs a static /bin/busybox (Debian package busybox-static); run \
             scripts/install-deps.sh"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("calico-pm-{}-{n}", std::process::id());
        let root = fx.dir.path().join("podman");
        let rootfs = root.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet");
        }
        let net_dir = root.join("net.d");
        std::fs::create_dir_all(&net_dir).expect("net.d");
        let network = format!("{prefix}-net");
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "calico",
                "datastore_type": "embedded",
                "embedded_datastore_path": fx.db,
                "nodename": NODE,
                "mtu": 1440,
                "log_level": "debug",
                "log_file_path": fx.log_path(),
                "ipam": {"type": "calico-ipam"},
                // Upstream's conflists carry it; it must be accepted.
                "feature_control": {"ip_addrs_no_ipam": false, "floating_ips": false},
            }],
        });
        std::fs::write(
            net_dir.join(format!("{network}.conflist")),
            serde_json::to_vec_pretty(&conflist).expect("conflist JSON"),
        )
        .expect("write conflist");
        let ours = common::bin("calico");
        let ours = ours.parent().expect("binary dir");
        let containers_conf = format!(
            "[containers]\nlog_driver = \"k8s-file\"\n\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{}\"\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{}\"\nruntime = \"runc\"\n\
             tmp_dir = \"{}\"\n",
            ours.display(),
            net_dir.display(),
            root.join("events.log").display(),
            root.join("tmp").display(),
        );
        let storage_conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.join("storage").display(),
            root.join("run").display(),
        );
        std::fs::write(root.join("containers.conf"), containers_conf).expect("containers.conf");
        std::fs::write(root.join("storage.conf"), storage_conf).expect("storage.conf");
        Podman {
            fx,
            root,
            rootfs,
            network,
            prefix,
        }
    }

    /// `podman ARGS` inside the node namespace (nsenter: `ip netns exec` would remount /sys).
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.fx.node.name()))
            .arg("podman")
            .args(["--runtime", "runc"])
            .args(args)
            .env("CONTAINERS_CONF", self.root.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.root.join("storage.conf"));
        cmd.output().expect("spawn nsenter podman")
    }

    /// `run`, asserting success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): stdout {} stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn name(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// `podman run` of a container on our network with the busybox rootfs.
    fn container(&self, which: &str, detach: bool, script: &str) -> String {
        let name = self.name(which);
        let rootfs = self.rootfs.display().to_string();
        let mut args = vec!["run"];
        args.push(if detach { "-d" } else { "--rm" });
        args.extend([
            "--name",
            &name,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "--network",
            &self.network,
            "--rootfs",
            &rootfs,
            "/bin/sh",
            "-c",
            script,
        ]);
        self.ok(&args)
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // Everything in this private storage is ours.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        // Anything podman left mounted under our root (shm, overlay of a crashed run) goes
        // before the temp dir is deleted.
        let root = self.root.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

/// The address of a container's endpoint, from its WorkloadEndpoint (written by our plugin).
fn endpoint_ip(fx: &Fixture, container_id: &str) -> Option<String> {
    fx.endpoints()
        .into_iter()
        .find(|w| w.spec.container_id == container_id)
        .and_then(|w| w.spec.ip_networks.first().cloned())
        .map(|n| n.split('/').next().unwrap_or_default().to_string())
}

#[test]
fn podman_containers_on_our_network_reach_each_other() {
    let fx = Fixture::new("10.71.0.0/16", 26);
    let pm = Podman::new(&fx);

    // A: answers one TCP connection on 7777 with a greeting and prints what it was sent. Both
    // sides keep their stdin open a while: busybox nc may close the connection at stdin EOF,
    // before the other side's line has arrived.
    let a_id = pm
        .container(
            "a",
            true,
            "(echo hello-from-a; sleep 5) | nc -l -p 7777; sleep 30",
        )
        .trim()
        .to_string();
    assert_eq!(
        a_id.len(),
        64,
        "podman run -d prints the container ID: {a_id:?}"
    );
    let a_ip = endpoint_ip(&fx, &a_id).unwrap_or_else(|| {
        panic!(
            "no WorkloadEndpoint for container {a_id}; endpoints: {:?}; log: {}",
            fx.endpoints(),
            std::fs::read_to_string(fx.log_path()).unwrap_or_default()
        )
    });
    assert!(a_ip.starts_with("10.71."), "{a_ip}");
    let veth_a = format!("cali{}", &a_id[..11]);
    assert!(fx.cali_links().contains(&veth_a), "{:?}", fx.cali_links());

    // B: pings A, then talks to it over TCP (retrying while A's listener comes up).
    let script = format!(
        "ping -c 2 -W 2 {a_ip} || exit 11; i=0; while [ $i -lt 50 ]; do \
         r=$( (echo hello-from-b; sleep 1) | nc -w 2 {a_ip} 7777) && [ -n \"$r\" ] && echo \"got $r\" && \
         exit 0; i=$((i+1)); sleep 0.1; done; exit 12"
    );
    let out = pm.container("b", false, &script);
    assert!(out.contains(" 0% packet loss"), "{out}");
    assert!(out.contains("got hello-from-a"), "{out}");

    // A received B's line (its stdout is the container log).
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = pm.ok(&["logs", &pm.name("a")]);
        if logs.contains("hello-from-b") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(logs.contains("hello-from-b"), "{logs}");

    // B was removed (--rm): its endpoint and veth are gone; A's stay until it is removed.
    assert_eq!(fx.endpoints().len(), 1, "{:?}", fx.endpoints());
    pm.ok(&["rm", "--force", "--time", "0", &pm.name("a")]);
    assert!(fx.endpoints().is_empty(), "{:?}", fx.endpoints());
    assert!(fx.cali_links().is_empty(), "{:?}", fx.cali_links());
    assert!(fx.handle_ips_in(&pm.network, &a_id).is_empty());
}
