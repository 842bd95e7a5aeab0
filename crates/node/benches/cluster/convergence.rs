//! (a) Convergence: from the datastore writes that create a pod on node A (IPAM assignment, then
//! its WorkloadEndpoint, as the CNI plugin writes them) to node B's kernel holding a route that
//! covers the pod's address, for 1 pod at a time and for 100 pods created at once, in two pools:
//!
//! - default `/26` blocks (the realistic case): B routes A's block once (`<block>/26 via <A>`),
//!   so most pods are covered before their WorkloadEndpoint appears; only the first pod of a
//!   block waits for a route. Per pod: route covering it − WorkloadEndpoint seen by the raw
//!   watcher (0 when already covered), and route − t0.
//! - `/32` blocks (worst case: one block per pod): every pod is a new block and B must program
//!   `<pod ip>/32 via <A>` for it, as for borrowed addresses. Per pod: route − block key seen by
//!   the raw watcher ("calico-node share") and route − t0.
//!
//! - t0: just before the pod's IPAM call (for a burst: before the first of the 100).
//! - Route: the first instant B's kernel holds a proto-80 route covering the pod, seen by a
//!   netlink route dump every 1 ms on a thread inside B's namespace.
//! - Raw watcher, same writes, same run: a process (this executable, `--watch-child`) in B's
//!   namespace watching the IPAM block prefix and the WorkloadEndpoint prefix of the embedded
//!   store; the instant it prints a key is the datastore's cross-process watch latency.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_api::Kind;
use calico_api::codec::parse_documents;
use calico_api::naming::WorkloadEndpointIdentifiers;
use calico_dataplane::{Family, NetNs, Netlink, RouteFilter, Rtnl};
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::{Datastore, DatastoreConfig, keys};
use calico_ipam::{AutoAssignArgs, Ipam};
use ipnet::IpNet;

use crate::stats::{Dist, Table};

/// A pool the bench allocates from: (name, CIDR, block size).
struct Pool {
    name: &'static str,
    cidr: &'static str,
    block: u8,
}

const POOL_26: Pool = Pool {
    name: "bench-conv26",
    cidr: "10.251.0.0/16",
    block: 26,
};
const POOL_32: Pool = Pool {
    name: "bench-conv",
    cidr: "10.250.0.0/16",
    block: 32,
};
const NODE_A: &str = "k01-worker";
const NODE_B: &str = "k01-worker2";
const WEP_NS: &str = "bench";
const ROUTE_WAIT: Duration = Duration::from_secs(10);

/// First instant each route (by destination) was seen in B's kernel.
type Seen = Arc<Mutex<HashMap<IpNet, Instant>>>;

/// Dumps B's proto-80 routes every millisecond on a thread inside B's namespace.
struct RoutePoller {
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RoutePoller {
    fn start(netns: &str) -> Result<RoutePoller> {
        let ns = NetNs::named(netns)?;
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let r = ns.run(move || -> calico_dataplane::Result<()> {
                let mut nl = Netlink::open()?;
                let filter = RouteFilter {
                    protocol: Some(80),
                    ..RouteFilter::main(Family::V4)
                };
                let _ = ready_tx.send(());
                while !st.load(Ordering::Relaxed) {
                    let routes = nl.routes(&filter)?;
                    let now = Instant::now();
                    if let Ok(mut m) = s.lock() {
                        for r in routes {
                            m.entry(r.dst).or_insert(now);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            });
            if let Err(e) | Ok(Err(e)) = r {
                eprintln!("route poller stopped: {e}");
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("route poller did not start in B's namespace")?;
        Ok(RoutePoller {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// First instant a route covering `ip` was in B's kernel.
    fn covering(&self, ip: IpAddr) -> Option<Instant> {
        let m = self.seen.lock().ok()?;
        m.iter()
            .filter(|(d, _)| d.contains(&ip))
            .map(|(_, t)| *t)
            .min()
    }

    /// How many routes inside `pool` B has had.
    fn routes_in(&self, pool: &IpNet) -> usize {
        self.seen
            .lock()
            .map_or(0, |m| m.keys().filter(|d| pool.contains(*d)).count())
    }
}

impl Drop for RoutePoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The raw watcher: a child process in B's namespace printing each block and WorkloadEndpoint
/// key it is told of.
struct Watcher {
    child: Child,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Watcher {
    fn start(netns: &str, db: &Path) -> Result<Watcher> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(exe)
            .arg("--watch-child")
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the raw watcher")?;
        let out = child.stdout.take().context("watcher stdout")?;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (s, (tx, rx)) = (seen.clone(), std::sync::mpsc::channel());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                if line == "ready" {
                    let _ = tx.send(());
                } else if let Ok(mut m) = s.lock() {
                    m.entry(line).or_insert(now);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .context("raw watcher did not get ready")?;
        Ok(Watcher { child, seen })
    }

    fn seen(&self, key: &str) -> Option<Instant> {
        self.seen.lock().ok()?.get(key).copied()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--watch-child DB`: watch the IPAM block prefix and the bench's WorkloadEndpoint prefix from
/// now on, print each key on a line.
pub async fn watch_child(db: &Path) -> Result<()> {
    let ds = calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: db.to_path_buf(),
    }))
    .await?;
    let rev = ds.revision().await?;
    let mut tasks = Vec::new();
    for prefix in [
        keys::block_prefix(false),
        keys::resource_prefix(Kind::WorkloadEndpoint, Some(WEP_NS)),
    ] {
        let mut w = ds.watch(&prefix, rev + 1).await?;
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = w.recv().await {
                let ev = ev?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", ev.kv.key)?;
                out.flush()?;
            }
            anyhow::Ok(())
        }));
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    for t in tasks {
        t.await.context("watch task")??;
    }
    Ok(())
}

/// A bench pod: its address and its WorkloadEndpoint's datastore key.
struct Pod {
    ip: IpAddr,
    wep_key: String,
}

/// A pod's datastore side, as the CNI plugin writes it: IPAM, then the WorkloadEndpoint.
async fn create_pod(ipam: &Ipam, store: &ResourceStore, pool: &str, name: &str) -> Result<Pod> {
    let mut args = AutoAssignArgs::new(NODE_A, format!("k8s-pod-network.{name}"));
    args.ipv4_pools = vec![pool.to_string()];
    let got = ipam.auto_assign(&args).await?;
    let ip = match got.v4.first() {
        Some(n) => n.addr(),
        None => bail!("IPAM gave pod {name} no address"),
    };
    let wep_name = WorkloadEndpointIdentifiers::k8s(NODE_A, name, "eth0").name()?;
    let yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {wep_name}, namespace: {WEP_NS}}}
spec: {{orchestrator: k8s, node: {NODE_A}, pod: {name}, endpoint: eth0,
  interfaceName: cali{:011x}, ipNetworks: ['{ip}/32'], profiles: [kns.bench]}}
",
        u64::from(match ip {
            IpAddr::V4(v4) => u32::from(v4),
            IpAddr::V6(_) => 0,
        })
    );
    let wep = parse_documents(&yaml)?
        .pop()
        .context("WorkloadEndpoint document")?;
    store.create(wep).await?;
    Ok(Pod {
        ip,
        wep_key: keys::resource_key(Kind::WorkloadEndpoint, Some(WEP_NS), &wep_name),
    })
}

/// One pod's latencies; `route` and the watcher's instants from t0.
struct Sample {
    route: Duration,
    block: Duration,
    wep: Duration,
    /// Route covering the pod − WorkloadEndpoint seen (0 when it was covered before).
    after_wep: Duration,
}

/// Waits until B has a route covering every pod and the watcher saw its block and endpoint.
fn collect(
    poller: &RoutePoller,
    watcher: &Watcher,
    pool: &Pool,
    pods: &[Pod],
    t0: Instant,
    lab: &crate::lab::Lab,
) -> Result<Vec<Sample>> {
    let end = Instant::now() + ROUTE_WAIT;
    let mut out = Vec::new();
    for pod in pods {
        let block = IpNet::new(pod.ip, pool.block)?.trunc();
        let key = keys::block_key(&block.to_string());
        loop {
            let seen = (
                poller.covering(pod.ip),
                watcher.seen(&key),
                watcher.seen(&pod.wep_key),
            );
            if let (Some(r), Some(b), Some(w)) = seen {
                out.push(Sample {
                    route: r.saturating_duration_since(t0),
                    block: b.saturating_duration_since(t0),
                    wep: w.saturating_duration_since(t0),
                    after_wep: r.saturating_duration_since(w),
                });
                break;
            }
            if Instant::now() > end {
                bail!(
                    "no route covering {} on {NODE_B} (watcher saw block: {}, endpoint: {}) \
                     within {ROUTE_WAIT:?}; {NODE_B}'s calico-node log:\n{}",
                    pod.ip,
                    seen.1.is_some(),
                    seen.2.is_some(),
                    lab.node_log(NODE_B)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(out)
}

/// Latency distributions of one case (1 pod at a time, or bursts of 100).
#[derive(Default)]
struct Case {
    route: Dist,
    block: Dist,
    wep: Dist,
    after_wep: Dist,
    /// Route − block key seen, per pod (calico-node's share when every pod is a new block).
    share: Dist,
    covered_before: usize,
    /// Per burst: when the last pod was covered.
    last: Dist,
}

impl Case {
    fn add(&mut self, samples: Vec<Sample>) {
        let mut worst = Duration::ZERO;
        for x in samples {
            worst = worst.max(x.route);
            self.route.push(x.route);
            self.block.push(x.block);
            self.wep.push(x.wep);
            self.after_wep.push(x.after_wep);
            self.share.push(x.route.saturating_sub(x.block));
            if x.after_wep.is_zero() {
                self.covered_before += 1;
            }
        }
        self.last.push(worst);
    }
}

async fn add_pool(store: &ResourceStore, pool: &Pool) -> Result<()> {
    let doc = parse_documents(&format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {}}}\n\
         spec: {{cidr: {}, blockSize: {}, vxlanMode: CrossSubnet}}\n",
        pool.name, pool.cidr, pool.block
    ))?
    .pop()
    .context("pool document")?;
    store.create(doc).await?;
    // Let every calico-node take the new pool in before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// `singles` pods one at a time, then `bursts` of 100 at once, from `pool`.
async fn measure(
    env: &Env<'_>,
    pool: &Pool,
    singles: usize,
    bursts: usize,
) -> Result<(Case, Case)> {
    let mut single = Case::default();
    for i in 0..singles {
        let t0 = Instant::now();
        let name = format!("conv{}-1-{i}", pool.block);
        let pod = create_pod(&env.ipam, &env.store, pool.cidr, &name).await?;
        single.add(tokio::task::block_in_place(|| {
            collect(&env.poller, &env.watcher, pool, &[pod], t0, env.lab)
        })?);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut burst = Case::default();
    for b in 0..bursts {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (ipam, store) = (
                Ipam::new(env.ds.clone()),
                ResourceStore::new(env.ds.clone()),
            );
            let (name, cidr) = (format!("conv{}-100-{b}-{i}", pool.block), pool.cidr);
            tasks.push(tokio::spawn(async move {
                create_pod(&ipam, &store, cidr, &name).await
            }));
        }
        let mut pods = Vec::new();
        for t in tasks {
            pods.push(t.await.context("pod task")??);
        }
        burst.add(tokio::task::block_in_place(|| {
            collect(&env.poller, &env.watcher, pool, &pods, t0, env.lab)
        })?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((single, burst))
}

struct Env<'a> {
    lab: &'a crate::lab::Lab,
    ds: Arc<dyn Datastore>,
    store: ResourceStore,
    ipam: Ipam,
    poller: RoutePoller,
    watcher: Watcher,
}

fn ratio(a: &Dist, b: &Dist) -> String {
    format!(
        "{:.2}",
        a.p(0.99).as_secs_f64() / b.p(0.99).as_secs_f64().max(1e-9)
    )
}

pub async fn run(lab: &crate::lab::Lab, singles: usize, bursts: usize) -> Result<Vec<Table>> {
    let db = lab.datastore()?;
    let ds: Arc<dyn Datastore> =
        calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
            path: db.clone(),
        }))
        .await?;
    let b_ns = lab.netns(NODE_B)?;
    let env = Env {
        lab,
        store: ResourceStore::new(ds.clone()),
        ipam: Ipam::new(ds.clone()),
        ds,
        poller: RoutePoller::start(&b_ns)?,
        watcher: Watcher::start(&b_ns, &db)?,
    };

    // The realistic case first, on the default IPAM configuration and a node not yet loaded
    // with the worst case's hundreds of blocks.
    add_pool(&env.store, &POOL_26).await?;
    let (s26, b26) = measure(&env, &POOL_26, singles, bursts).await?;
    let routes26 = env.poller.routes_in(&POOL_26.cidr.parse()?);

    // Worst case: every pod is a block of its own: lift the default cap of 20 blocks per host
    // (a configured cap requires strict affinity, which the bench's pools do not mind).
    let mut config = env.ipam.config().await?;
    config.max_blocks_per_host = 100_000;
    config.strict_affinity = true;
    env.ipam.set_config(config).await?;
    add_pool(&env.store, &POOL_32).await?;
    let (s32, b32) = measure(&env, &POOL_32, singles, bursts).await?;

    let mut t26 = Table::new(&[
        "case",
        "samples",
        "route after WEP seen p50 ms",
        "route after WEP seen p99 ms",
        "pods already covered when their WEP appeared",
        "route after start p50 ms",
        "route after start p99 ms",
        "raw watch of WEP after start p50 ms",
        "raw watch of WEP after start p99 ms",
    ]);
    for (case, d) in [
        ("default /26 blocks: 1 pod at a time", &s26),
        (
            "default /26 blocks: 100 pods at once (start = burst start)",
            &b26,
        ),
    ] {
        t26.row(vec![
            case.to_string(),
            d.route.len().to_string(),
            d.after_wep.ms(0.50),
            d.after_wep.ms(0.99),
            d.covered_before.to_string(),
            d.route.ms(0.50),
            d.route.ms(0.99),
            d.wep.ms(0.50),
            d.wep.ms(0.99),
        ]);
    }
    t26.note(format!(
        "{} pods in {routes26} blocks of /26 on {NODE_A}: {routes26} block routes on {NODE_B}. \
         100-pod bursts: {bursts}; last pod of a burst covered on {NODE_B} after (median) {} ms \
         from the burst start; last WEP seen by the raw watcher after (median of the bursts' \
         p100) {} ms.",
        singles + 100 * bursts,
        b26.last.ms(0.50),
        b26.wep.ms(1.0),
    ));

    let mut t32 = Table::new(&[
        "case",
        "samples",
        "ours p50 ms",
        "ours p99 ms",
        "raw watch p50 ms",
        "raw watch p99 ms",
        "p99 ratio ours / raw watch",
        "calico-node share p50 ms",
        "calico-node share p99 ms",
        "route after WEP seen p99 ms",
    ]);
    for (case, d) in [
        ("worst case, one block per pod: 1 pod at a time", &s32),
        (
            "worst case, one block per pod: 100 pods at once (from the burst start)",
            &b32,
        ),
    ] {
        t32.row(vec![
            case.to_string(),
            d.route.len().to_string(),
            d.route.ms(0.50),
            d.route.ms(0.99),
            d.block.ms(0.50),
            d.block.ms(0.99),
            ratio(&d.route, &d.block),
            d.share.ms(0.50),
            d.share.ms(0.99),
            d.after_wep.ms(0.99),
        ]);
    }
    t32.note(format!(
        "100-pod bursts: {bursts}; last route of a burst in {NODE_B}'s kernel after (median) {} ms.",
        b32.last.ms(0.50)
    ));
    Ok(vec![t26, t32])
}
