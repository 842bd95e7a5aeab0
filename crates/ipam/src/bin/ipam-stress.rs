//! `ipam-stress`: one node's worth of IPAM load, for the multi-process tests and benchmarks.
//!
//! Acts as node `--node`: assigns one address per operation (handle `<prefix>.<node>.<i>`),
//! keeps at most `--hold` addresses, and releases the oldest beyond that (alternately by handle
//! and by address). Every completed step is appended to `--out` as one line, written before the
//! next step starts, so a process killed at any point leaves an exact record of what it knew:
//!
//! ```text
//! A <handle> <ip>     assigned
//! R <handle> <ip>     released
//! E <message>         an operation failed (the process then exits 1)
//! D                   finished
//! ```
//!
//! The datastore comes from the environment (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`,
//! `EMBEDDED_DATASTORE_PATH`, ...).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use calico_datastore::DatastoreConfig;
use calico_ipam::{AutoAssignArgs, Ipam, ReleaseRequest};

struct Args {
    node: String,
    ops: usize,
    hold: usize,
    out: String,
    prefix: String,
    v6: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        node: String::new(),
        ops: 100,
        hold: 10,
        out: String::new(),
        prefix: "stress".into(),
        v6: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--node" => a.node = value()?,
            "--ops" => a.ops = value()?.parse().context("--ops")?,
            "--hold" => a.hold = value()?.parse().context("--hold")?,
            "--out" => a.out = value()?,
            "--prefix" => a.prefix = value()?,
            "--v6" => a.v6 = true,
            other => bail!(
                "unknown flag {other}; usage: ipam-stress --node N --ops N --hold N --out FILE [--prefix P] [--v6]"
            ),
        }
    }
    if a.node.is_empty() || a.out.is_empty() {
        bail!("--node and --out are required");
    }
    Ok(a)
}

/// The record file: each line goes out in one `write` call, so a kill never splits a line
/// mid-way unless the kernel does (the reader ignores an unterminated last line).
struct Record(std::fs::File);

impl Record {
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        self.0.write_all(std::fmt::format(args).as_bytes())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let vars: HashMap<String, String> = std::env::vars().collect();
    let config =
        DatastoreConfig::from_vars(&vars)?.context("set DATASTORE_TYPE (etcdv3 or embedded)")?;
    let ds = calico_datastore::connect(&config).await?;
    let ipam = Ipam::new(ds);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .with_context(|| args.out.clone())?;
    let mut out = Record(file);
    let mut held: VecDeque<(String, IpAddr)> = VecDeque::new();
    let mut latencies = Vec::with_capacity(args.ops);
    for i in 0..args.ops {
        let handle = format!("{}.{}.{i}", args.prefix, args.node);
        let mut req = AutoAssignArgs::new(args.node.clone(), handle.clone());
        if args.v6 {
            req.num_v4 = 0;
            req.num_v6 = 1;
        }
        req.attrs.node = Some(args.node.clone());
        req.attrs.pod = Some(format!("pod-{i}"));
        req.attrs.namespace = Some("stress".into());
        let start = Instant::now();
        let got = match ipam.auto_assign(&req).await {
            Ok(a) => a,
            Err(e) => {
                writeln!(out, "E assign {handle}: {e}")?;
                std::process::exit(1);
            }
        };
        latencies.push(start.elapsed());
        for net in got.v4.iter().chain(got.v6.iter()) {
            writeln!(out, "A {handle} {}", net.addr())?;
            held.push_back((handle.clone(), net.addr()));
        }
        while held.len() > args.hold {
            let Some((h, ip)) = held.pop_front() else {
                break;
            };
            let r = if i % 2 == 0 {
                ipam.release_by_handle(&h).await.map(|_| ())
            } else {
                ipam.release_ips(&[ReleaseRequest {
                    ip,
                    handle: Some(h.clone()),
                    sequence_number: None,
                }])
                .await
                .map(|_| ())
            };
            if let Err(e) = r {
                writeln!(out, "E release {h} {ip}: {e}")?;
                std::process::exit(1);
            }
            writeln!(out, "R {h} {ip}")?;
        }
    }
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * p / 100)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    };
    writeln!(out, "D p50_us={} p99_us={}", pct(50), pct(99))?;
    Ok(())
}
