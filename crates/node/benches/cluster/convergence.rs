//! (a) Convergence: from the datastore writes that create a pod on node A (IPAM assignment, then
//! its WorkloadEndpoint, as the CNI plugin writes them) to node B's route for the pod being in
//! B's kernel, for 1 pod at a time and for 100 pods created at once.
//!
//! A pod in an already-routed block needs nothing new on B, so the pods are allocated from a
//! pool with `/32` blocks (`blockSize: 32`, CrossSubnet, A and B in one subnet): every pod is a
//! new block and B must program `<pod ip> via <A> dev eth1 proto 80 onlink` for it — the worst
//! case, one route per pod, as for borrowed addresses.
//!
//! - t0: just before the pod's IPAM call (for a burst: before the first of the 100).
//! - Ours: the first instant B's kernel holds the route, seen by a netlink route dump every
//!   1 ms on a thread inside B's namespace.
//! - Limit, same writes, same run: a raw watcher process (this executable, `--watch-child`) in
//!   B's namespace watching the IPAM block prefix of the embedded store; the instant it prints
//!   the pod's block key is the datastore's cross-process watch latency. calico-node's own
//!   share is the difference (route − block seen) per pod.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_api::codec::parse_documents;
use calico_api::naming::WorkloadEndpointIdentifiers;
use calico_dataplane::{Family, NetNs, Netlink, RouteFilter, Rtnl};
use calico_datastore::config::EmbeddedConfig;
use calico_datastore::resources::ResourceStore;
use calico_datastore::{Datastore, DatastoreConfig, keys};
use calico_ipam::{AutoAssignArgs, Ipam};
use ipnet::IpNet;

use crate::stats::{Dist, Table};

pub const CONV_POOL: &str = "10.250.0.0/16";
const NODE_A: &str = "k01-worker";
const NODE_B: &str = "k01-worker2";
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

    fn seen(&self, dst: &IpNet) -> Option<Instant> {
        self.seen.lock().ok()?.get(dst).copied()
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

/// The raw watcher: a child process in B's namespace printing each block key it is told of.
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

/// `--watch-child DB`: watch the IPAM block prefix from now on, print each key on a line.
pub async fn watch_child(db: &Path) -> Result<()> {
    let ds = calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
        path: db.to_path_buf(),
    }))
    .await?;
    let prefix = keys::block_prefix(false);
    let rev = ds.revision().await?;
    let mut w = ds.watch(&prefix, rev + 1).await?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    while let Some(ev) = w.recv().await {
        let ev = ev?;
        writeln!(out, "{}", ev.kv.key)?;
        out.flush()?;
    }
    Ok(())
}

/// A pod's datastore side, as the CNI plugin writes it: IPAM, then the WorkloadEndpoint.
async fn create_pod(ipam: &Ipam, store: &ResourceStore, name: &str) -> Result<IpNet> {
    let mut args = AutoAssignArgs::new(NODE_A, format!("k8s-pod-network.{name}"));
    args.ipv4_pools = vec![CONV_POOL.to_string()];
    let got = ipam.auto_assign(&args).await?;
    let ip = match got.v4.first() {
        Some(n) => n.addr(),
        None => bail!("IPAM gave pod {name} no address"),
    };
    let wep_name = WorkloadEndpointIdentifiers::k8s(NODE_A, name, "eth0").name()?;
    let yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {wep_name}, namespace: bench}}
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
    Ok(IpNet::from(ip))
}

struct Sample {
    route: Duration,
    watch: Duration,
}

/// Waits until B has the route and the watcher saw the block; latencies from `t0`.
fn collect(
    poller: &RoutePoller,
    watcher: &Watcher,
    pods: &[IpNet],
    t0: Instant,
    lab: &crate::lab::Lab,
) -> Result<Vec<Sample>> {
    let end = Instant::now() + ROUTE_WAIT;
    let mut out = Vec::new();
    for dst in pods {
        let key = keys::block_key(&dst.to_string());
        loop {
            if let (Some(r), Some(w)) = (poller.seen(dst), watcher.seen(&key)) {
                out.push(Sample {
                    route: r.saturating_duration_since(t0),
                    watch: w.saturating_duration_since(t0),
                });
                break;
            }
            if Instant::now() > end {
                bail!(
                    "no route for {dst} on {NODE_B} (watcher saw block: {}) within {ROUTE_WAIT:?}; \
                     {NODE_B}'s calico-node log:\n{}",
                    watcher.seen(&key).is_some(),
                    lab.node_log(NODE_B)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(out)
}

pub async fn run(lab: &crate::lab::Lab, singles: usize, bursts: usize) -> Result<Table> {
    let db = lab.datastore()?;
    let ds: Arc<dyn Datastore> =
        calico_datastore::connect(&DatastoreConfig::Embedded(EmbeddedConfig {
            path: db.clone(),
        }))
        .await?;
    let store = ResourceStore::new(ds.clone());
    let ipam = Ipam::new(ds.clone());
    let pool = parse_documents(&format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: bench-conv}}\n\
         spec: {{cidr: {CONV_POOL}, blockSize: 32, vxlanMode: CrossSubnet}}\n"
    ))?
    .pop()
    .context("pool document")?;
    store.create(pool).await?;
    // Every bench pod is a block of its own: lift the default cap of 20 blocks per host (a
    // configured cap requires strict affinity, which the bench's pools do not mind).
    let mut config = ipam.config().await?;
    config.max_blocks_per_host = 100_000;
    config.strict_affinity = true;
    ipam.set_config(config).await?;
    // Let every calico-node take the new pool in before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let b_ns = lab.netns(NODE_B)?;
    let poller = RoutePoller::start(&b_ns)?;
    let watcher = Watcher::start(&b_ns, &db)?;

    let mut single = (Dist::default(), Dist::default(), Dist::default());
    for i in 0..singles {
        let t0 = Instant::now();
        let ip = create_pod(&ipam, &store, &format!("conv-1-{i}")).await?;
        let s = tokio::task::block_in_place(|| collect(&poller, &watcher, &[ip], t0, lab))?;
        for x in s {
            single.0.push(x.route);
            single.1.push(x.watch);
            single.2.push(x.route.saturating_sub(x.watch));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    let mut burst = (Dist::default(), Dist::default(), Dist::default());
    let mut last = Dist::default();
    for b in 0..bursts {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let (ipam, store) = (Ipam::new(ds.clone()), ResourceStore::new(ds.clone()));
            let name = format!("conv-100-{b}-{i}");
            tasks.push(tokio::spawn(async move {
                create_pod(&ipam, &store, &name).await
            }));
        }
        let mut ips = Vec::new();
        for t in tasks {
            ips.push(t.await.context("pod task")??);
        }
        let s = tokio::task::block_in_place(|| collect(&poller, &watcher, &ips, t0, lab))?;
        let mut worst = Duration::ZERO;
        for x in s {
            worst = worst.max(x.route);
            burst.0.push(x.route);
            burst.1.push(x.watch);
            burst.2.push(x.route.saturating_sub(x.watch));
        }
        last.push(worst);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut t = Table::new(&[
        "case",
        "samples",
        "ours p50 ms",
        "ours p99 ms",
        "raw watch p50 ms",
        "raw watch p99 ms",
        "p99 ratio ours / raw watch",
        "calico-node share p50 ms",
        "calico-node share p99 ms",
    ]);
    for (case, d) in [
        ("1 pod at a time", &single),
        ("100 pods at once (from the burst start)", &burst),
    ] {
        t.row(vec![
            case.to_string(),
            d.0.len().to_string(),
            d.0.ms(0.50),
            d.0.ms(0.99),
            d.1.ms(0.50),
            d.1.ms(0.99),
            format!(
                "{:.2}",
                d.0.p(0.99).as_secs_f64() / d.1.p(0.99).as_secs_f64().max(1e-9)
            ),
            d.2.ms(0.50),
            d.2.ms(0.99),
        ]);
    }
    t.note(format!(
        "100-pod bursts: {bursts}; last route of a burst in B's kernel after (median) {} ms.",
        last.ms(0.50)
    ));
    Ok(t)
}
