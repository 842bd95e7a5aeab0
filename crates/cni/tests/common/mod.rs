//! Shared fixture for the plugin binary tests: a "node" namespace (where the plugin runs, so
//! host sides land there), an embedded datastore in a temp dir with a Node and an IPPool, and
//! a runner that executes the built binaries inside the node namespace via `ip netns exec`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use calico_api::{Kind, Resource};
use calico_dataplane::testns::TestNetns;
use calico_datastore::Datastore;
use calico_datastore::config::{DatastoreConfig, EmbeddedConfig};
use calico_datastore::resources::ResourceStore;
use serde_json::{Value, json};

pub const NODE: &str = "node1";
pub const NETWORK: &str = "k8s-pod-network";

pub struct Fixture {
    pub node: TestNetns,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Fixture {
    /// A node namespace with lo up and a default route out of an uplink (proxy ARP
    /// answers only for destinations the host can route), plus a datastore holding `node1` and
    /// one pool.
    pub fn new(pool_cidr: &str, block_size: u8) -> Fixture {
        let node = TestNetns::new();
        node.ip(&["link", "set", "lo", "up"]);
        // No dummy module here: a veth pair kept inside the namespace serves as the uplink.
        node.ip(&[
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ]);
        node.ip(&["link", "set", "uplink0", "up"]);
        node.ip(&["link", "set", "uplink1", "up"]);
        node.ip(&["route", "add", "default", "dev", "uplink0"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("datastore.db");
        let fx = Fixture { node, dir, db };
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool1\nspec:\n  \
             cidr: {pool_cidr}\n  blockSize: {block_size}\n  natOutgoing: true\n---\n\
             apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {NODE}\nspec: {{}}\n"
        );
        let docs = calico_api::codec::parse_documents(&yaml).expect("fixture YAML parses");
        rt().block_on(async {
            let store = fx.store().await;
            for d in docs {
                store.create(d).await.expect("create fixture resource");
            }
        });
        fx
    }

    pub async fn datastore(&self) -> Arc<dyn Datastore> {
        calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
            path: self.db.clone(),
        }))
        .await
        .expect("open embedded datastore")
    }

    pub async fn store(&self) -> ResourceStore {
        ResourceStore::new(self.datastore().await)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("cni.log")
    }

    /// The conflist entry for `calico` with the given ipam section.
    pub fn conf(&self, ipam: Value) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "calico",
            "datastore_type": "embedded",
            "embedded_datastore_path": self.db,
            "nodename": NODE,
            "mtu": 1440,
            "log_level": "debug",
            "log_file_path": self.log_path(),
            "ipam": ipam,
        })
    }

    pub fn calico_ipam_conf(&self) -> Value {
        self.conf(json!({"type": "calico-ipam"}))
    }

    pub fn host_local_conf(&self, subnet: &str) -> Value {
        self.conf(json!({
            "type": "host-local",
            "subnet": subnet,
            "dataDir": self.dir.path().join("host-local"),
        }))
    }

    /// WorkloadEndpoints in the datastore.
    pub fn endpoints(&self) -> Vec<calico_api::resources::endpoint::WorkloadEndpoint> {
        rt().block_on(async {
            let store = self.store().await;
            store
                .list(Kind::WorkloadEndpoint, None)
                .await
                .expect("list endpoints")
                .into_iter()
                .filter_map(|r| match r {
                    Resource::WorkloadEndpoint(w) => Some(w),
                    _ => None,
                })
                .collect()
        })
    }

    /// Addresses held by an IPAM handle.
    pub fn handle_ips(&self, container_id: &str) -> Vec<std::net::IpAddr> {
        self.handle_ips_in(NETWORK, container_id)
    }

    /// Addresses held by the IPAM handle of `container_id` on `network`.
    pub fn handle_ips_in(&self, network: &str, container_id: &str) -> Vec<std::net::IpAddr> {
        rt().block_on(async {
            let ipam = calico_ipam::Ipam::new(self.datastore().await);
            ipam.ips_by_handle(&format!("{network}.{container_id}"))
                .await
                .expect("read handle")
        })
    }

    /// Links in the node namespace whose name starts with `cali`.
    pub fn cali_links(&self) -> Vec<String> {
        self.node
            .ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| n.starts_with("cali"))
            .collect()
    }
}

/// One pod's invocation parameters.
pub struct Pod<'a> {
    pub container_id: String,
    pub netns: &'a TestNetns,
    pub namespace: &'a str,
    pub name: String,
}

impl Pod<'_> {
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(self.netns.name())
    }

    pub fn args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.namespace, self.name, self.container_id
        )
    }
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "calico" => PathBuf::from(env!("CARGO_BIN_EXE_calico")),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_calico-ipam")),
    }
}

pub fn cni_path() -> String {
    let ours = bin("calico");
    let dir = ours.parent().expect("binary dir");
    format!("{}:/usr/lib/cni", dir.display())
}

/// The result of one plugin run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {:?}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        self
    }

    /// The pod addresses of an ADD result.
    pub fn ips(&self) -> Vec<String> {
        self.json()["ips"]
            .as_array()
            .expect("ips in result")
            .iter()
            .map(|i| i["address"].as_str().expect("address").to_string())
            .collect()
    }
}

/// Run `plugin` inside the node namespace (`ip netns exec`), with the given env and stdin.
pub fn run_in(node: &TestNetns, plugin: &str, env: &[(&str, String)], stdin: &[u8]) -> Run {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node.name()])
        .arg(bin(plugin))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn plugin");
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait plugin");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run a CNI command of `plugin` for `pod` with `conf`.
pub fn cni(fx: &Fixture, plugin: &str, command: &str, pod: &Pod, conf: &Value) -> Run {
    let env = vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", pod.container_id.clone()),
        ("CNI_NETNS", pod.netns_path().display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", pod.args()),
        ("CNI_PATH", cni_path()),
    ];
    run_in(&fx.node, plugin, &env, conf.to_string().as_bytes())
}

/// `conf` with `prevResult` set (for CHECK).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
