//! (b) Pod→pod TCP throughput (iperf3, one stream) inside a subnet (CrossSubnet: direct routing
//! via the node, no encapsulation) and across subnets (VXLAN), each as a ratio of node→node
//! throughput between the same nodes' uplinks, measured in the same run, rounds interleaved.
//! Only between namespaces of the bench's own lab; every run is bounded in time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{Lab, exec, wait_until};
use crate::stats::Table;

const PORT: &str = "5301";

/// A one-shot iperf3 server in a namespace; killed on drop.
struct Server(Child);

impl Server {
    fn start(netns: &str) -> Result<Server> {
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "iperf3", "-s", "-1", "-p", PORT])
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

/// Gbit/s received by `to_ns` from a client in `from_ns` sending to `addr` for `secs`.
fn iperf(from_ns: &str, to_ns: &str, addr: &str, secs: u64) -> Result<f64> {
    let _server = Server::start(to_ns)?;
    let t = secs.to_string();
    let mut last = None;
    // The server needs a moment to listen; retry the client a few times.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        match exec(
            from_ns,
            &["iperf3", "-c", addr, "-p", PORT, "-t", &t, "-J"],
            Duration::from_secs(secs + 15),
        ) {
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
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "node→node, same subnet (k01-worker → k01-worker2)",
            &w1,
            &w2,
            "10.10.10.12",
        ),
        ("pod→pod, same subnet (direct routing)", &a_ns, &b_ns, &b_ip),
        (
            "node→node, across subnets (k01-worker → k01-worker3, routed)",
            &w1,
            &w3,
            "10.10.20.10",
        ),
        ("pod→pod, across subnets (VXLAN)", &a_ns, &c_ns, &c_ip),
    ];
    let mut gbps = vec![Vec::new(); cases.len()];
    for r in 0..rounds {
        for (i, (what, from, to, addr)) in cases.iter().enumerate() {
            let g = iperf(from, to, addr, secs).with_context(|| format!("{what}, round {r}"))?;
            eprintln!("throughput {what} round {r}: {g:.2} Gbit/s");
            gbps[i].push(g);
        }
    }
    let med: Vec<f64> = gbps.into_iter().map(median).collect();
    let mut t = Table::new(&[
        "path",
        "Gbit/s (median)",
        "ratio to node→node, same subnet",
        "ratio to node→node, same path",
    ]);
    let same = med[0];
    for (i, (what, ..)) in cases.iter().enumerate() {
        let base = if i < 2 { med[0] } else { med[2] };
        t.row(vec![
            what.to_string(),
            format!("{:.2}", med[i]),
            format!("{:.2}", med[i] / same.max(1e-9)),
            format!("{:.2}", med[i] / base.max(1e-9)),
        ]);
    }
    t.note(format!(
        "iperf3, one TCP stream, {secs} s per run, {rounds} interleaved rounds, median. Goal: \
         pod→pod inside a subnet ≥ 0.90 of node→node (here {:.2}).",
        med[1] / same.max(1e-9)
    ));
    Ok(t)
}
