//! calico-node cluster benchmarks, issue 5 (a)–(c), on one 4-node `calico-lab` cluster (seed
//! 000's shape) with real calico-node processes on the embedded datastore:
//! - (b) `throughput`: pod→pod TCP inside a subnet and over VXLAN vs node→node (iperf3);
//! - (c) `footprint`: calico-node RSS and idle CPU with 100 pods;
//! - (a) `convergence`: WorkloadEndpoint on node A → route in node B's kernel, 1 and 100 pods,
//!   with /26 blocks and with /32 (one block per pod), against the datastore's raw cross-process watch latency.
//!
//! They run in that order (the 100 pods of (c) are the background of (a)).
//! `cargo build --release -p calico-lab -p calico-cni && cargo bench -p calico-node --bench
//! cluster [-- --only a,b,c --singles N --bursts N --secs S --rounds R --idle S]` prints Markdown
//! (and writes it to $BENCH_OUT when set). Needs root, iproute2 and iperf3.

mod convergence;
mod footprint;
mod lab;
mod stats;
mod throughput;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

struct Args {
    only: String,
    singles: usize,
    bursts: usize,
    secs: u64,
    rounds: usize,
    idle: u64,
}

fn args() -> Result<Option<Args>> {
    let mut a = Args {
        only: "a,b,c".into(),
        singles: 50,
        bursts: 3,
        secs: 5,
        rounds: 7,
        idle: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--watch-child" => {
                let db = val("--watch-child")?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(convergence::watch_child(std::path::Path::new(&db)))?;
                return Ok(None);
            }
            "--only" => a.only = val("--only")?,
            "--singles" => a.singles = val("--singles")?.parse()?,
            "--bursts" => a.bursts = val("--bursts")?.parse()?,
            "--secs" => a.secs = val("--secs")?.parse()?,
            "--rounds" => a.rounds = val("--rounds")?.parse::<usize>()?.max(1),
            "--idle" => a.idle = val("--idle")?.parse()?,
            "--bench" => {}
            other => bail!(
                "unknown argument {other}; use --only a,b,c --singles N --bursts N --secs S \
                 --rounds R --idle S"
            ),
        }
    }
    Ok(Some(a))
}

fn main() -> Result<()> {
    let Some(a) = args()? else { return Ok(()) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let want = |c: &str| a.only.split(',').any(|x| x.trim() == c);
    let mut lab = lab::Lab::up()?;
    let mut out = String::new();
    if want("b") {
        let t = throughput::run(&mut lab, a.secs, a.rounds)?;
        let _ = writeln!(out, "#### (b) Pod→pod TCP throughput\n\n{}", t.markdown());
    }
    if want("c") {
        let t = footprint::run(&mut lab, Duration::from_secs(a.idle))?;
        let _ = writeln!(
            out,
            "#### (c) calico-node footprint, 4 nodes, 100 pods\n\n{}",
            t.markdown()
        );
    }
    if want("a") {
        let t = rt.block_on(convergence::run(&lab, a.singles, a.bursts))?;
        let _ = writeln!(
            out,
            "#### (a) Convergence: WorkloadEndpoint on node A → route in node B's kernel\n"
        );
        for t in t {
            let _ = writeln!(out, "{}", t.markdown());
        }
    }
    drop(lab);
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    Ok(())
}
