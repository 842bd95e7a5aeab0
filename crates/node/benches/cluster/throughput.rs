//! (b) Pod→pod TCP throughput (iperf3, one stream) inside a subnet (CrossSubnet: direct routing
//! via the node, no encapsulation) and across subnets (VXLAN), each as a ratio of node→node
//! throughput between the same nodes' uplinks, measured in the same run, rounds interleaved.
//! Every case runs twice: with the scheduler placing iperf3's client and server (on a 2-core VM
//! they often share a core, so the whole path is serial on one CPU and every extra hop shows),
//! and pinned (`-A`: client on CPU 0, server on CPU 1, as sender and receiver on separate
//! machines). A reference row runs beside them: two pods wired by hand exactly as Calico wires
//! one (veth, /32, the 169.254.1.1 gateway answered by proxy ARP, a host /32 route, a route to
//! the other node's pod via its address) with no Calico component involved, i.e. what the
//! routed-veth design itself costs against node→node. Only between namespaces of the bench's own
//! lab; every run is bounded in time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{Lab, exec, wait_until};
use crate::stats::Table;

const PORT: &str = "5301";
/// The hand-wired reference pods' addresses: outside the lab's pools and subnets.
const REF_A: &str = "10.244.1.1";
const REF_B: &str = "10.244.2.1";

/// A one-shot iperf3 server in a namespace; killed on drop.
struct Server(Child);

/// Where iperf3 runs: left to the scheduler, or client and server pinned to separate CPUs.
#[derive(Clone, Copy)]
enum Placement {
    Scheduler,
    Pinned,
}

impl Placement {
    fn label(self) -> &'static str {
        match self {
            Placement::Scheduler => "scheduler's placement",
            Placement::Pinned => "pinned: client CPU 0, server CPU 1",
        }
    }

    /// iperf3's `-A` argument for the client or the server.
    fn affinity(self, server: bool) -> Option<&'static str> {
        match (self, server) {
            (Placement::Scheduler, _) => None,
            (Placement::Pinned, false) => Some("0"),
            (Placement::Pinned, true) => Some("1"),
        }
    }
}

impl Server {
    fn start(netns: &str, placement: Placement) -> Result<Server> {
        let mut args = vec!["netns", "exec", netns, "iperf3", "-s", "-1", "-p", PORT];
        if let Some(cpu) = placement.affinity(true) {
            args.extend(["-A", cpu]);
        }
        let child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 -s (install iperf3: scripts/install-deps.sh)")?;
        Ok(Server(child))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pod wired by hand the way the calico CNI plugin wires one, in a namespace of its own; the
/// namespace (and with it the veth pair and the host route) and the route on the other node are
/// removed on drop.
struct HandWiredPod {
    ns: String,
    peer_route: Option<(String, String)>,
}

impl HandWiredPod {
    /// `ip` (a /32 outside every pool) behind `host_if` in `node_ns`, MTU `mtu`; `peer_ns` gets
    /// `ip via node_ip dev eth1 onlink`, the CrossSubnet route shape.
    fn wire(
        node_ns: &str,
        host_if: &str,
        ip: &str,
        mtu: &str,
        node_ip: &str,
        peer_ns: &str,
    ) -> Result<HandWiredPod> {
        let ns = format!("{node_ns}-{host_if}");
        let limit = Duration::from_secs(10);
        // One `ip` command line (no argument here contains a space).
        let ip_cmd = |line: String| -> Result<()> {
            let args: Vec<&str> = line.split_whitespace().collect();
            crate::lab::run(Command::new("ip").args(&args), limit, &format!("ip {line}"))
                .map(|_| ())
        };
        ip_cmd(format!("netns add {ns}"))?;
        let mut pod = HandWiredPod {
            ns: ns.clone(),
            peer_route: None,
        };
        ip_cmd(format!(
            "-n {node_ns} link add {host_if} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {ns}"
        ))?;
        let sysctls = [
            format!("net.ipv4.conf.{host_if}.proxy_arp=1"),
            format!("net.ipv4.conf.{host_if}.rp_filter=1"),
            format!("net.ipv4.conf.{host_if}.forwarding=1"),
            format!("net.ipv4.neigh.{host_if}.proxy_delay=0"),
        ];
        for kv in &sysctls {
            exec(node_ns, &["sysctl", "-qw", kv], limit)?;
        }
        ip_cmd(format!("-n {node_ns} link set {host_if} up"))?;
        ip_cmd(format!("-n {ns} link set lo up"))?;
        ip_cmd(format!("-n {ns} link set eth0 up"))?;
        ip_cmd(format!("-n {ns} addr add {ip}/32 dev eth0"))?;
        ip_cmd(format!("-n {ns} route add 169.254.1.1 dev eth0 scope link"))?;
        ip_cmd(format!(
            "-n {ns} route add default via 169.254.1.1 dev eth0"
        ))?;
        ip_cmd(format!(
            "-n {node_ns} route add {ip}/32 dev {host_if} scope link"
        ))?;
        let dst = format!("{ip}/32");
        ip_cmd(format!(
            "-n {peer_ns} route add {dst} via {node_ip} dev eth1 onlink"
        ))?;
        pod.peer_route = Some((peer_ns.to_string(), dst));
        Ok(pod)
    }
}

impl Drop for HandWiredPod {
    fn drop(&mut self) {
        if let Some((peer_ns, dst)) = &self.peer_route {
            let _ = Command::new("ip")
                .args(["-n", peer_ns, "route", "del", dst])
                .status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Gbit/s received by `to_ns` from a client in `from_ns` sending to `addr` for `secs`.
fn iperf(from_ns: &str, to_ns: &str, addr: &str, secs: u64, placement: Placement) -> Result<f64> {
    let _server = Server::start(to_ns, placement)?;
    let t = secs.to_string();
    let mut args = vec!["iperf3", "-c", addr, "-p", PORT, "-t", &t, "-J"];
    if let Some(cpu) = placement.affinity(false) {
        args.extend(["-A", cpu]);
    }
    let mut last = None;
    // The server needs a moment to listen; retry the client a few times.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        match exec(from_ns, &args, Duration::from_secs(secs + 15)) {
            Ok(out) => {
                let v: serde_json::Value = serde_json::from_str(&out)?;
                let bps = v["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .context("iperf3 JSON without end.sum_received")?;
                return Ok(bps / 1e9);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.context(format!("iperf3 {from_ns} → {addr}"))),
        None => bail!("iperf3 {from_ns} → {addr} never ran"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(lab: &mut Lab, secs: u64, rounds: usize) -> Result<Table> {
    let (a_ns, a_ip) = lab.pod_add("k01-worker", "tp-a")?;
    let (b_ns, b_ip) = lab.pod_add("k01-worker2", "tp-b")?;
    let (c_ns, c_ip) = lab.pod_add("k01-worker3", "tp-c")?;
    for ip in [&b_ip, &c_ip] {
        wait_until(
            Duration::from_secs(30),
            &format!("{a_ip} → {ip} ping"),
            || exec(&a_ns, &["ping", "-c1", "-W1", ip], Duration::from_secs(3)).is_ok(),
        )?;
    }
    let (w1, w2, w3) = (
        lab.netns("k01-worker")?,
        lab.netns("k01-worker2")?,
        lab.netns("k01-worker3")?,
    );
    // The reference pair, with the Calico pods' MTU, in addresses no pool holds.
    let mtu = exec(
        &a_ns,
        &["cat", "/sys/class/net/eth0/mtu"],
        Duration::from_secs(5),
    )?;
    let mtu = mtu.trim();
    let ref_a = HandWiredPod::wire(&w1, "tpref-a", REF_A, mtu, "10.10.10.11", &w2)?;
    let ref_b = HandWiredPod::wire(&w2, "tpref-b", REF_B, mtu, "10.10.10.12", &w1)?;
    wait_until(
        Duration::from_secs(10),
        &format!("{REF_A} → {REF_B} ping"),
        || {
            exec(
                &ref_a.ns,
                &["ping", "-c1", "-W1", REF_B],
                Duration::from_secs(3),
            )
            .is_ok()
        },
    )?;
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "node→node, same subnet (k01-worker → k01-worker2)",
            &w1,
            &w2,
            "10.10.10.12",
        ),
        ("pod→pod, same subnet (direct routing)", &a_ns, &b_ns, &b_ip),
        (
            "reference: hand-wired pod→pod, same subnet (no Calico)",
            &ref_a.ns,
            &ref_b.ns,
            REF_B,
        ),
        (
            "node→node, across subnets (k01-worker → k01-worker3, routed)",
            &w1,
            &w3,
            "10.10.20.10",
        ),
        ("pod→pod, across subnets (VXLAN)", &a_ns, &c_ns, &c_ip),
    ];
    let mut t = Table::new(&[
        "placement",
        "path",
        "Gbit/s (median)",
        "ratio to node→node, same subnet",
        "ratio to node→node, same path",
        "same-path ratio per round (min–max)",
    ]);
    let mut goal = Vec::new();
    for placement in [Placement::Scheduler, Placement::Pinned] {
        // gbps[case][round]
        let mut gbps = vec![Vec::new(); cases.len()];
        for r in 0..rounds {
            for (i, (what, from, to, addr)) in cases.iter().enumerate() {
                let g = iperf(from, to, addr, secs, placement)
                    .with_context(|| format!("{what}, {}, round {r}", placement.label()))?;
                eprintln!(
                    "throughput {what}, {}, round {r}: {g:.2} Gbit/s",
                    placement.label()
                );
                gbps[i].push(g);
            }
        }
        let med: Vec<f64> = gbps.iter().cloned().map(median).collect();
        let same = med[0];
        for (i, (what, ..)) in cases.iter().enumerate() {
            let base = if i < 3 { 0 } else { 3 };
            // A pod row's ratio to the node row of the same path, round by round (each pair
            // ran back to back).
            let per_round: Vec<f64> = gbps[i]
                .iter()
                .zip(&gbps[base])
                .map(|(p, n)| p / n.max(1e-9))
                .collect();
            let lo = per_round.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = per_round.iter().cloned().fold(0.0, f64::max);
            t.row(vec![
                placement.label().to_string(),
                what.to_string(),
                format!("{:.2}", med[i]),
                format!("{:.2}", med[i] / same.max(1e-9)),
                format!("{:.2}", med[i] / med[base].max(1e-9)),
                if i == base {
                    "–".into()
                } else {
                    format!("{lo:.2}–{hi:.2}")
                },
            ]);
        }
        goal.push(format!(
            "{:.2} ({})",
            med[1] / same.max(1e-9),
            placement.label()
        ));
    }
    t.note(format!(
        "iperf3, one TCP stream, {secs} s per run, {rounds} interleaved rounds per placement, \
         median. Goal: pod→pod inside a subnet ≥ 0.90 of node→node (here {}).",
        goal.join(", ")
    ));
    Ok(t)
}
