//! Benchmark hook (feature `test-util`): program N remote-block routes into one namespace
//! through our batched netlink (`apply_routes`) and through `ip -batch`, the same routes in the
//! same run, each followed by removal so both start from the same table. Issue benchmark (d):
//! route programming should be at least as fast as `ip -batch`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::netlink::types::{Route, RouteChange};
use crate::netns::NetNs;
use crate::rtnl::Rtnl;

/// Timings of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteProgramming {
    pub routes: usize,
    /// Adding all routes with `apply_routes` (one batch of 64 KiB datagrams).
    pub netlink: Duration,
    /// Adding the same routes with `ip -n NS -batch FILE` (process start included).
    pub ip_batch: Duration,
}

impl RouteProgramming {
    pub fn netlink_routes_per_sec(&self) -> f64 {
        self.routes as f64 / self.netlink.as_secs_f64().max(1e-9)
    }

    pub fn ip_batch_routes_per_sec(&self) -> f64 {
        self.routes as f64 / self.ip_batch.as_secs_f64().max(1e-9)
    }
}

/// `count` /26 blocks from 10.128.0.0 upwards (at most 2^16 of them).
pub fn remote_blocks(count: usize) -> Vec<IpNet> {
    (0..count.min(1 << 16))
        .filter_map(|i| {
            let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i as u32) * 64;
            Ipv4Net::new(Ipv4Addr::from(base), 26).ok().map(IpNet::V4)
        })
        .collect()
}

/// In the named namespace `ns_name`, whose interface `dev` (index `oif`) reaches `gw`: add
/// `count` routes `<block> via gw dev DEV proto 80 onlink` with netlink, delete them, then the
/// same with `ip -batch`, delete them. Fails when either method leaves a route out.
pub fn route_programming(
    ns_name: &str,
    dev: &str,
    oif: u32,
    gw: Ipv4Addr,
    count: usize,
) -> Result<RouteProgramming> {
    let ns = NetNs::named(ns_name)?;
    let mut nl = Netlink::open_in(&ns)?;
    let blocks = remote_blocks(count);
    let routes: Vec<Route> = blocks
        .iter()
        .map(|b| {
            Route::via(*b, IpAddr::V4(gw), oif)
                .with_protocol(80)
                .with_onlink()
        })
        .collect();
    let adds: Vec<RouteChange> = routes.iter().cloned().map(RouteChange::Add).collect();
    let start = Instant::now();
    let failures = nl.apply_routes(&adds)?;
    let netlink = start.elapsed();
    if let Some(f) = failures.into_iter().next() {
        return Err(f.error);
    }
    let dels: Vec<RouteChange> = routes.into_iter().map(RouteChange::Delete).collect();
    if let Some(f) = nl.apply_routes(&dels)?.into_iter().next() {
        return Err(f.error);
    }

    let mut script = String::new();
    for b in &blocks {
        let _ = writeln!(script, "route add {b} via {gw} dev {dev} proto 80 onlink");
    }
    let path = std::env::temp_dir().join(format!(
        "calico-route-bench-{}-{ns_name}.batch",
        std::process::id()
    ));
    let io = |action| {
        move |e: std::io::Error| Error::Command {
            program: "ip",
            action,
            detail: e.to_string(),
        }
    };
    std::fs::write(&path, &script).map_err(io("write batch file"))?;
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["-n", ns_name, "-batch"])
        .arg(&path)
        .output()
        .map_err(io("run ip -batch"));
    let ip_batch = start.elapsed();
    let _ = std::fs::remove_file(&path);
    let out = out?;
    if !out.status.success() {
        return Err(Error::Command {
            program: "ip",
            action: "route add -batch",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let listed = nl.routes(&crate::netlink::types::RouteFilter {
        protocol: Some(80),
        ..crate::netlink::types::RouteFilter::main(crate::netlink::types::Family::V4)
    })?;
    if listed.len() != blocks.len() {
        return Err(Error::Command {
            program: "ip",
            action: "route add -batch",
            detail: format!("{} of {} routes present", listed.len(), blocks.len()),
        });
    }
    let dels: Vec<RouteChange> = listed.into_iter().map(RouteChange::Delete).collect();
    if let Some(f) = nl.apply_routes(&dels)?.into_iter().next() {
        return Err(f.error);
    }
    Ok(RouteProgramming {
        routes: blocks.len(),
        netlink,
        ip_batch,
    })
}
