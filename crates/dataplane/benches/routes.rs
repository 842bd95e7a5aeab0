//! Route-programming benchmark, issue 5 (d): N remote /26 block routes
//! (`<block> via 10.0.0.1 dev eth1 proto 80 onlink`, as Felix programs CrossSubnet blocks) added
//! through our batched netlink (`Netlink::apply_routes`) and, in the same round, through
//! `ip -n NS -batch FILE` (the peer: iproute2, one process, one request and ACK per route).
//! Every round runs in a fresh pair of namespaces made for it (`TestNetns::with_uplink`) and
//! checks that both methods installed every route (`bench::route_programming`).
//!
//! `cargo bench -p calico-dataplane --features test-util --bench routes [-- --routes N --rounds R]`
//! prints a Markdown table (and writes it to $BENCH_OUT when set). Needs root and iproute2.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use calico_dataplane::bench::{RouteProgramming, route_programming};
use calico_dataplane::testns::TestNetns;
use calico_dataplane::{Netlink, Rtnl};

struct Args {
    routes: usize,
    rounds: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        routes: 5000,
        rounds: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--routes" => a.routes = num("--routes")?,
            "--rounds" => a.rounds = num("--rounds")?.max(1),
            // cargo bench passes --bench to every target.
            "--bench" => {}
            other => bail!("unknown argument {other}; use --routes N --rounds R"),
        }
    }
    Ok(a)
}

/// One round in fresh namespaces.
fn round(routes: usize) -> Result<RouteProgramming> {
    let (ns, _peer) = TestNetns::with_uplink("10.0.0.2/24", Some("10.0.0.1/24"));
    let eth1 = Netlink::open_in(&ns.open())?
        .link_by_name("eth1")?
        .context("eth1 missing in the bench namespace")?
        .index;
    Ok(route_programming(
        ns.name(),
        "eth1",
        eth1,
        Ipv4Addr::new(10, 0, 0, 1),
        routes,
    )?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    let a = args()?;
    let mut results = Vec::new();
    for i in 0..a.rounds {
        let r = round(a.routes).with_context(|| format!("round {i}"))?;
        eprintln!(
            "round {i}: netlink {:?}, ip -batch {:?}",
            r.netlink, r.ip_batch
        );
        results.push(r);
    }
    let nl = median(results.iter().map(|r| r.netlink).collect());
    let ip = median(results.iter().map(|r| r.ip_batch).collect());
    let nl_min = results.iter().map(|r| r.netlink).min().unwrap_or_default();
    let ip_min = results.iter().map(|r| r.ip_batch).min().unwrap_or_default();
    let rate = |d: Duration| a.routes as f64 / d.as_secs_f64().max(1e-9);
    let mut out = String::new();
    out.push_str(&format!(
        "{} routes per round, {} rounds, each round in fresh namespaces; median (best).\n\n",
        a.routes, a.rounds
    ));
    out.push_str("| method | time ms | routes/s | speed vs ip -batch |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| calico-dataplane `apply_routes` (batched netlink) | {} ({}) | {:.0} ({:.0}) | {:.2} |\n",
        ms(nl),
        ms(nl_min),
        rate(nl),
        rate(nl_min),
        ip.as_secs_f64() / nl.as_secs_f64().max(1e-9)
    ));
    out.push_str(&format!(
        "| `ip -batch` (peer, process start included) | {} ({}) | {:.0} ({:.0}) | 1.00 |\n",
        ms(ip),
        ms(ip_min),
        rate(ip),
        rate(ip_min)
    ));
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, &out)?;
    }
    Ok(())
}
