//! Shared by the namespace tests: the real `calico-node` binary run inside a test namespace
//! (killed on drop), polling helpers, an embedded datastore in a temp dir, a "switch" namespace
//! with one bridge that node namespaces plug into (the seeds' topology), and workloads as
//! IPAM allocation + `caliX` veth + WorkloadEndpoint. Needs root (fails loudly otherwise).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_api::naming::{WorkloadEndpointIdentifiers, host_interface_name};
use calico_api::resources::{EncapMode, IPPool, Node};
use calico_api::{Kind, Resource};
use calico_dataplane::testns::TestNetns;
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::{Datastore, DatastoreConfig};
use calico_ipam::{Attrs, AutoAssignArgs, Ipam};
use ipnet::IpNet;

pub mod cluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_calico-node");

/// The running binary; killed on drop so a failing test leaves nothing behind.
pub struct NodeProc {
    child: Child,
    log: PathBuf,
}

impl NodeProc {
    /// `node-a` with its datastore and state under `dir` (one-node tests).
    pub fn spawn(ns: &TestNetns, dir: &Path, env: &[(&str, &str)]) -> Result<NodeProc> {
        NodeProc::spawn_node(ns, "node-a", &dir.join("datastore.db"), dir, env)
    }

    /// Node `name` sharing the embedded datastore `db`; its log and state go under `dir`
    /// (appended to across restarts).
    pub fn spawn_node(
        ns: &TestNetns,
        name: &str,
        db: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<NodeProc> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("calico-node.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), BIN])
            .env_clear()
            // As the lab does: PATH (calico-node runs `nft`) and nothing else of ours.
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("RUST_LOG", "info")
            .env("NODENAME", name)
            .env("DATASTORE_TYPE", "embedded")
            .env("EMBEDDED_DATASTORE_PATH", db)
            .env("CALICO_STATE_DIR", dir.join("state"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .context("spawn calico-node")?;
        Ok(NodeProc { child, log })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) -> Result<()> {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} failed");
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "calico-node did not exit within {limit:?}; log:\n{}",
            self.log()
        )
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET inside the namespace: status code and body; `None` when nothing answers.
pub fn get(ns: &TestNetns, port: u16, path: &str) -> Result<Option<(u16, String)>> {
    let path = path.to_string();
    Ok(ns.open().run(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|b| b.1.to_string())?;
        Some((code, body))
    })?)
}

/// Waits for `/readiness` 200 on port 9099 (startup done, in sync, dataplane programmed).
pub fn wait_ready(ns: &TestNetns, proc: &NodeProc) -> Result<()> {
    eventually(Duration::from_secs(20), "readiness 200", || {
        Ok(get(ns, 9099, "/readiness")?.filter(|r| r.0 == 200))
    })
    .with_context(|| proc.log())
    .map(|_| ())
}

/// Polls `f` every 20 ms until it returns Some, at most `limit`.
pub fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn open_store(db: &Path) -> Result<(Arc<dyn Datastore>, ResourceStore)> {
    let ds = calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: db.to_path_buf(),
    }))
    .await?;
    Ok((ds.clone(), ResourceStore::new(ds)))
}

pub async fn node(store: &ResourceStore, name: &str) -> Result<Node> {
    match store.get(Kind::Node, None, name).await? {
        Resource::Node(n) => Ok(n),
        other => bail!("not a node: {other:?}"),
    }
}

/// An IPv4 pool with /26 blocks (or `block_size`), natOutgoing on.
pub fn pool(name: &str, cidr: &str, vxlan: EncapMode, block_size: u8) -> IPPool {
    let mut p = IPPool::new(name);
    p.spec.cidr = cidr.into();
    p.spec.block_size = Some(block_size);
    p.spec.vxlan_mode = Some(vxlan);
    p.spec.nat_outgoing = Some(true);
    p
}

pub async fn set_vxlan_mode(store: &ResourceStore, name: &str, mode: EncapMode) -> Result<()> {
    let Resource::IPPool(mut p) = store.get(Kind::IPPool, None, name).await? else {
        bail!("{name} is not a pool");
    };
    p.spec.vxlan_mode = Some(mode);
    store.update(Resource::IPPool(p)).await?;
    Ok(())
}

/// A one-node namespace with `lo` and an uplink `eth0` (a veth whose peer stays in the
/// namespace) carrying `addrs` (IPv6 ones added `nodad`, so none stays tentative).
pub fn uplink_ns(addrs: &[&str], mtu: u32) -> TestNetns {
    let ns = TestNetns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    let mtu = mtu.to_string();
    ns.ip(&[
        "link", "add", "eth0", "mtu", &mtu, "type", "veth", "peer", "name", "veth-up", "mtu", &mtu,
    ]);
    for addr in addrs {
        if addr.contains(':') {
            ns.ip(&["-6", "addr", "add", addr, "dev", "eth0", "nodad"]);
        } else {
            ns.ip(&["addr", "add", addr, "dev", "eth0"]);
        }
    }
    ns.ip(&["link", "set", "veth-up", "up"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    ns
}

/// The switch: a namespace with bridge `br0` holding the gateways (`10.x.y.1/24`), forwarding.
pub fn switch(gateways: &[&str]) -> TestNetns {
    let sw = TestNetns::new();
    sw.ip(&["link", "set", "lo", "up"]);
    sw.ip(&["link", "add", "br0", "type", "bridge"]);
    for gw in gateways {
        sw.ip(&["addr", "add", gw, "dev", "br0"]);
    }
    sw.ip(&["link", "set", "br0", "up"]);
    sw.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sw
}

/// A node namespace whose `eth1` (address `cidr`) is a veth into the switch's bridge (port
/// `port`), with a default route via `gw`. IP forwarding stays off: Felix turns it on.
pub fn attach(sw: &TestNetns, port: &str, cidr: &str, gw: &str) -> TestNetns {
    let ns = TestNetns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.veth_to("eth1", sw, port);
    sw.ip(&["link", "set", port, "master", "br0"]);
    sw.ip(&["link", "set", port, "up"]);
    ns.ip(&["addr", "add", cidr, "dev", "eth1"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    ns.ip(&["route", "add", "default", "via", gw]);
    ns
}

/// A pod on `node` without its endpoint yet: an address from IPAM (in `pool` when given) and
/// the host side `caliX` (a veth whose peer stays in the node namespace: routes only need the
/// host side). Returns the address and the interface name.
pub async fn prepare_workload(
    ipam: &Ipam,
    ns: &TestNetns,
    node: &str,
    pod: &str,
    pool: Option<&str>,
) -> Result<(IpAddr, String)> {
    let mut args = AutoAssignArgs::new(node, format!("k8s-pod-network.{pod}"));
    args.attrs = Attrs {
        node: Some(node.into()),
        ..Attrs::default()
    };
    args.ipv4_pools = pool.into_iter().map(String::from).collect();
    let got = ipam.auto_assign(&args).await?;
    let ip = got.v4.first().map(IpNet::addr).context("no address")?;
    let iface = host_interface_name("default", pod);
    let peer = format!("w{}", &iface[4..]);
    ns.ip(&["link", "add", &iface, "type", "veth", "peer", "name", &peer]);
    ns.ip(&["link", "set", &iface, "up"]);
    ns.ip(&["link", "set", &peer, "up"]);
    Ok((ip, iface))
}

/// A pod on `node`: [`prepare_workload`], then its WorkloadEndpoint.
pub async fn add_workload(
    store: &ResourceStore,
    ipam: &Ipam,
    ns: &TestNetns,
    node: &str,
    pod: &str,
    pool: Option<&str>,
) -> Result<(IpAddr, String)> {
    let (ip, iface) = prepare_workload(ipam, ns, node, pod, pool).await?;
    store
        .create(workload_endpoint(node, pod, &iface, ip)?)
        .await?;
    Ok((ip, iface))
}

/// The WorkloadEndpoint of a Kubernetes pod in namespace `default` (as the CNI plugin writes it).
pub fn workload_endpoint(node: &str, pod: &str, iface: &str, ip: IpAddr) -> Result<Resource> {
    let name = WorkloadEndpointIdentifiers::k8s(node, pod, "eth0").name()?;
    let wep = serde_json::json!({
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
            "interfaceName": iface, "ipNetworks": [format!("{ip}/32")],
            "profiles": ["kns.default"]}
    });
    Ok(Resource::from_json(
        Kind::WorkloadEndpoint,
        wep.to_string().as_bytes(),
    )?)
}

/// `ip route` lines of the main table whose destination starts with `prefix` (e.g. the pool's
/// `10.65.`), in kernel order, trailing blanks trimmed.
pub fn routes(ns: &TestNetns, prefix: &str) -> Vec<String> {
    ns.ip(&["route", "show"])
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| {
            let dst = l.strip_prefix("blackhole ").unwrap_or(l);
            dst.starts_with(prefix)
        })
        .collect()
}

/// Waits until `routes(ns, prefix)`, sorted, equals `want`, sorted; the error shows both.
pub fn wait_routes(ns: &TestNetns, prefix: &str, want: &[String], what: &str) -> Result<()> {
    let mut want = want.to_vec();
    want.sort();
    let mut last = Vec::new();
    let r = eventually(Duration::from_secs(10), what, || {
        let mut have = routes(ns, prefix);
        have.sort();
        last = have.clone();
        Ok((have == want).then_some(()))
    });
    r.with_context(|| format!("{what}: want {want:#?}\nhave {last:#?}"))
}

/// The /26 (or `prefix`-bit) block holding `ip`.
pub fn block_of(ip: IpAddr, prefix: u8) -> Result<IpNet> {
    Ok(IpNet::new(ip, prefix)?.trunc())
}
