//! A cluster under test: a switch namespace, node namespaces on it (one or two subnets), the
//! real calico-node in each sharing one embedded datastore, and what the tests read back
//! (expected route shapes, `ip monitor route`, metrics).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use calico_api::Resource;
use calico_api::resources::EncapMode;
use calico_dataplane::testns::TestNetns;
use calico_datastore::resources::ResourceStore;
use calico_ipam::Ipam;
use ipnet::IpNet;

use super::*;

/// One node of a cluster under test.
pub struct TestNode {
    pub name: String,
    pub ns: TestNetns,
    pub addr: IpAddr,
    pub subnet: IpNet,
    pub proc: NodeProc,
    pub dir: std::path::PathBuf,
}

/// A switch, nodes on it, and the datastore they share.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub store: ResourceStore,
    pub ipam: Ipam,
    pub db: std::path::PathBuf,
    pub _sw: TestNetns,
    pub _dir: tempfile::TempDir,
}

pub const ENV: [(&str, &str); 3] = [
    ("NO_DEFAULT_POOLS", "true"),
    ("IP_AUTODETECTION_METHOD", "interface=eth1"),
    ("FELIX_ROUTEREFRESHINTERVAL", "30"),
];

impl Cluster {
    /// `nodes`: (name, address/24); the switch gets `.1` of every subnet. `pools` are created
    /// before any node starts.
    pub async fn start(
        net: u8,
        nodes: &[(&str, &str)],
        pools: Vec<calico_api::resources::IPPool>,
    ) -> Result<Cluster> {
        Cluster::start_with(net, nodes, pools, &ENV).await
    }

    pub async fn start_with(
        net: u8,
        nodes: &[(&str, &str)],
        pools: Vec<calico_api::resources::IPPool>,
        env: &[(&str, &str)],
    ) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("datastore.db");
        let (ds, store) = open_store(&db).await?;
        for p in pools {
            store.create(Resource::IPPool(p)).await?;
        }
        let mut gws: Vec<String> = nodes
            .iter()
            .map(|(_, a)| {
                let n: IpNet = a.parse().expect("literal");
                format!("{}/{}", gw_of(&n), n.prefix_len())
            })
            .collect();
        gws.sort();
        gws.dedup();
        let sw = switch(&gws.iter().map(String::as_str).collect::<Vec<_>>());
        let mut out = Vec::new();
        for (i, (name, cidr)) in nodes.iter().enumerate() {
            let n: IpNet = cidr.parse()?;
            let ns = attach(&sw, &format!("p{net}-{i}"), cidr, &gw_of(&n).to_string());
            let ndir = dir.path().join(name);
            let proc = NodeProc::spawn_node(&ns, name, &db, &ndir, env)?;
            out.push(TestNode {
                name: name.to_string(),
                ns,
                addr: n.addr(),
                subnet: n.trunc(),
                proc,
                dir: ndir,
            });
        }
        for n in &out {
            wait_ready(&n.ns, &n.proc)?;
        }
        Ok(Cluster {
            nodes: out,
            ipam: Ipam::new(ds),
            store,
            db,
            _sw: sw,
            _dir: dir,
        })
    }

    pub fn node(&self, name: &str) -> &TestNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("node of the test")
    }

    pub async fn vtep(&self, name: &str) -> Result<String> {
        let n = node(&self.store, name).await?;
        if n.spec.ipv4_vxlan_tunnel_addr.is_empty() {
            bail!("{name} has no VXLAN tunnel address");
        }
        Ok(n.spec.ipv4_vxlan_tunnel_addr)
    }

    /// The routes node `at` should have for the pool, given one workload per node
    /// (`pods`: node → (address, interface)), per calico-behaviour.md for `mode`.
    pub async fn expected(
        &self,
        at: &str,
        pods: &BTreeMap<String, (IpAddr, String)>,
        mode: EncapMode,
    ) -> Result<Vec<String>> {
        let me = self.node(at);
        let mut want = Vec::new();
        for (name, (ip, iface)) in pods {
            let block = block_of(*ip, 26)?;
            let other = self.node(name);
            if name == at {
                want.push(format!("{ip} dev {iface} scope link"));
                if mode != EncapMode::Never {
                    want.push(format!("blackhole {block} proto 80"));
                }
                continue;
            }
            match mode {
                EncapMode::Never => {}
                EncapMode::CrossSubnet if me.subnet.contains(&other.addr) => want.push(format!(
                    "{block} via {} dev eth1 proto 80 onlink",
                    other.addr
                )),
                _ => want.push(format!(
                    "{block} via {} dev vxlan.calico onlink",
                    self.vtep(name).await?
                )),
            }
        }
        Ok(want)
    }
}

pub fn gw_of(n: &IpNet) -> IpAddr {
    let base = match n.trunc().addr() {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(_) => 0,
    };
    IpAddr::V4((base + 1).into())
}

pub async fn one_pod_each(
    c: &Cluster,
    pool: Option<&str>,
) -> Result<BTreeMap<String, (IpAddr, String)>> {
    let mut pods = BTreeMap::new();
    for n in &c.nodes {
        let pod = format!("pod-{}", n.name);
        let got = add_workload(&c.store, &c.ipam, &n.ns, &n.name, &pod, pool).await?;
        pods.insert(n.name.clone(), got);
    }
    Ok(pods)
}

/// `ip -4 monitor route` in a namespace (Felix programs IPv4 here; the kernel's own IPv6
/// link-local routes come and go with address configuration), writing to a file until dropped.
pub struct Monitor {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Monitor {
    pub fn start(ns: &TestNetns, out: std::path::PathBuf) -> Result<Monitor> {
        let file = std::fs::File::create(&out)?;
        let child = Command::new("ip")
            .args(["-4", "-n", ns.name(), "monitor", "route"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("spawn ip monitor route")?;
        // Let it subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Monitor { child, out })
    }

    pub fn stop(mut self) -> Result<Vec<String>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(std::fs::read_to_string(&self.out)?
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a future to completion from a synchronous closure inside a multi-threaded test.
pub fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

pub fn metric(ns: &TestNetns, name: &str) -> Result<u64> {
    let (_, body) = get(ns, 9091, "/metrics")?.context("metrics endpoint")?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{name} missing in {body}"))
}
