//! CNI benchmark: ADD and DEL latency of `calico` (IPAM `calico-ipam`, embedded datastore) as a
//! runtime runs it — one process per call, spawned directly from a thread inside the node
//! namespace — serially and with 30 ADDs (then 30 DELs) started at once on one node. In the same
//! run and the same way: the reference `ptp` + `host-local` plugins (containernetworking-plugins),
//! the peer, and `calico` delegating to `host-local`, which separates our wiring and endpoint
//! cost from calico-ipam's.
//!
//! `cargo bench -p calico-cni --bench cni [-- --rounds R]` prints a Markdown table (and writes it
//! to $BENCH_OUT when set). Each round uses 30 pods (network namespaces created beforehand, not
//! timed): serially ADD all 30 then DEL all 30, then the concurrent ADD and DEL bursts. As on a
//! node running calico-node, the bench keeps the embedded store open during the run. Needs
//! root, iproute2 and containernetworking-plugins. `BENCH_CNI_LOG=FILE` makes our plugins log
//! at debug level to FILE, each line with the milliseconds since the plugin started.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use calico_dataplane::NetNs;
use calico_dataplane::testns::TestNetns;
use common::{Fixture, Pod};
use serde_json::{Value, json};

const PODS: usize = 30;

/// One way of wiring a pod: the binary a runtime runs and its configuration.
struct Target {
    label: &'static str,
    binary: PathBuf,
    conf: Value,
}

/// Latencies of one phase.
#[derive(Default)]
struct Sample {
    lat: Vec<Duration>,
    /// CPU time of the plugin processes (and what they ran) over the phase.
    cpu: Duration,
    errors: usize,
    first_error: Option<String>,
}

impl Sample {
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        calico_datastore::testutil::percentile(&self.lat, p).as_secs_f64() * 1000.0
    }

    fn push(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.lat.push(d),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// Milliseconds of CPU per call.
    fn cpu_per_call(&self) -> f64 {
        let n = (self.lat.len() + self.errors).max(1) as f64;
        self.cpu.as_secs_f64() * 1000.0 / n
    }

    fn extend(&mut self, other: Sample) {
        self.lat.extend(other.lat);
        self.cpu += other.cpu;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Run one CNI command; the caller's thread is inside the node namespace, so the plugin is too.
fn call(t: &Target, command: &str, pod: &Pod) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = Command::new(&t.binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", pod.netns_path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", pod.args())
        .env("CNI_PATH", common::cni_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", t.binary.display()))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(t.conf.to_string().as_bytes())
            .map_err(|e| format!("stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} {command}: {} {}",
            t.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn pods<'a>(netns: &'a [TestNetns], round: usize, tag: &str) -> Vec<Pod<'a>> {
    netns
        .iter()
        .enumerate()
        .map(|(i, ns)| Pod {
            container_id: format!("bench-{tag}-{round}-{i:02}"),
            netns: ns,
            namespace: "bench",
            name: format!("pod-{tag}-{i:02}"),
        })
        .collect()
}

/// CPU time (user + system) of this process's waited-for children so far: the plugins and
/// everything they ran.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): cutime and cstime are the 14th and
    // 15th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Serial ADD of every pod, then serial DEL.
fn serial(node: &NetNs, t: &Target, pods: &[Pod]) -> (Sample, Sample) {
    node.run(|| {
        let mut add = Sample::default();
        let mut del = Sample::default();
        let cpu = children_cpu();
        for p in pods {
            add.push(call(t, "ADD", p));
        }
        add.cpu = children_cpu().saturating_sub(cpu);
        let cpu = children_cpu();
        for p in pods {
            del.push(call(t, "DEL", p));
        }
        del.cpu = children_cpu().saturating_sub(cpu);
        (add, del)
    })
    .expect("enter the node namespace")
}

/// `command` for every pod at once: one thread per pod inside the node namespace, released
/// together by a barrier.
fn burst(node: &NetNs, t: &Target, pods: &[Pod], command: &str) -> Sample {
    let barrier = Barrier::new(pods.len());
    let cpu = children_cpu();
    let parts: Vec<Sample> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|p| {
                let barrier = &barrier;
                s.spawn(move || {
                    node.run(|| {
                        barrier.wait();
                        let mut one = Sample::default();
                        one.push(call(t, command, p));
                        one
                    })
                    .expect("enter the node namespace")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("burst thread"))
            .collect()
    });
    let mut all = Sample::default();
    for p in parts {
        all.extend(p);
    }
    all.cpu = children_cpu().saturating_sub(cpu);
    all
}

struct Row {
    label: &'static str,
    mode: &'static str,
    add: Sample,
    del: Sample,
}

fn rounds_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn main() {
    let rounds = rounds_arg();
    let fx = Fixture::new("10.65.0.0/16", 26);
    // As on a node, where calico-node keeps the store open, one connection stays open for the
    // whole run (otherwise each plugin process, the only one with the file open, would first
    // rebuild SQLite's WAL index).
    let runtime = common::rt();
    let _held = runtime.block_on(fx.datastore());
    let node = fx.node.open();
    let netns: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new()).collect();
    // Production log level: debug lines are for diagnosis, not the steady state. With
    // $BENCH_CNI_LOG set, our plugins log at debug level (with per-step times) to that file.
    let debug_log = std::env::var("BENCH_CNI_LOG").ok();
    let info = |mut c: Value| {
        match &debug_log {
            Some(path) => {
                c["log_level"] = json!("debug");
                c["log_file_path"] = json!(path);
            }
            None => c["log_level"] = json!("info"),
        }
        c
    };
    let targets = [
        Target {
            label: "calico + calico-ipam (embedded)",
            binary: common::bin("calico"),
            conf: info(fx.calico_ipam_conf()),
        },
        Target {
            label: "calico + host-local",
            binary: common::bin("calico"),
            conf: info(fx.host_local_conf("10.81.0.0/16")),
        },
        Target {
            label: "ptp + host-local (peer)",
            binary: PathBuf::from("/usr/lib/cni/ptp"),
            conf: json!({
                "cniVersion": "1.0.0",
                "name": "bench-ptp",
                "type": "ptp",
                "ipMasq": false,
                "mtu": 1440,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.80.0.0/16",
                    "dataDir": fx.dir.path().join("ptp-host-local"),
                },
            }),
        },
    ];
    let mut rows = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        let mut s_add = Sample::default();
        let mut s_del = Sample::default();
        let mut c_add = Sample::default();
        let mut c_del = Sample::default();
        for r in 0..rounds {
            let ps = pods(&netns, r, &format!("s{ti}"));
            let (a, d) = serial(&node, t, &ps);
            s_add.extend(a);
            s_del.extend(d);
            let ps = pods(&netns, r, &format!("c{ti}"));
            c_add.extend(burst(&node, t, &ps, "ADD"));
            c_del.extend(burst(&node, t, &ps, "DEL"));
        }
        eprintln!("done: {}", t.label);
        rows.push(Row {
            label: t.label,
            mode: "serial",
            add: s_add,
            del: s_del,
        });
        rows.push(Row {
            label: t.label,
            mode: "30 at once",
            add: c_add,
            del: c_del,
        });
    }
    let leftovers = fx.cali_links();

    let mut out = String::from(
        "| plugins | calls | ADDs | errors | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms \
         | CPU ms per ADD | CPU ms per DEL |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |\n",
            r.label,
            r.mode,
            r.add.lat.len() + r.add.errors,
            r.add.errors + r.del.errors,
            r.add.pct(0.5),
            r.add.pct(0.99),
            r.del.pct(0.5),
            r.del.pct(0.99),
            r.add.cpu_per_call(),
            r.del.cpu_per_call(),
        ));
    }
    out.push_str(
        "\nRatios calico + calico-ipam / ptp + host-local (same run; below 1 = faster than the \
         peer):\n\n| calls | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n|---|---|---|---|---|\n",
    );
    for (ours, peer) in [(&rows[0], &rows[4]), (&rows[1], &rows[5])] {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            ours.mode,
            ours.add.pct(0.5) / peer.add.pct(0.5),
            ours.add.pct(0.99) / peer.add.pct(0.99),
            ours.del.pct(0.5) / peer.del.pct(0.5),
            ours.del.pct(0.99) / peer.del.pct(0.99),
        ));
    }
    let c = &rows[1];
    out.push_str(&format!(
        "\nGoal at 30 at once on the embedded store: ADD p50 ≤ 5 ms ({:.2}: {}), p99 ≤ 50 ms \
         ({:.2}: {}), not slower than ptp + host-local (p50 ratio {:.2}: {}).\n",
        c.add.pct(0.5),
        if c.add.pct(0.5) <= 5.0 {
            "met"
        } else {
            "not met"
        },
        c.add.pct(0.99),
        if c.add.pct(0.99) <= 50.0 {
            "met"
        } else {
            "not met"
        },
        c.add.pct(0.5) / rows[5].add.pct(0.5),
        if c.add.pct(0.5) <= rows[5].add.pct(0.5) {
            "met"
        } else {
            "not met"
        },
    ));
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| [&r.add.first_error, &r.del.first_error])
        .flatten()
        .cloned()
        .collect();
    if !errors.is_empty() {
        out.push_str(&format!("\nFirst errors: {}\n", errors.join("; ")));
    }
    if !leftovers.is_empty() {
        out.push_str(&format!("\nLeft behind after DEL: {leftovers:?}\n"));
    }
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &out).expect("write $BENCH_OUT");
    }
}
