//! Several OS processes (the `ipam-stress` binary), each acting as one node, allocate and
//! release at once from one small pool, on both backends:
//! - run to completion: every address handed out once, stored state = the workers' records,
//!   per-pool totals exact, borrowing happened, `check` clean;
//! - killed with SIGKILL at random points: no duplicate address, the state `check` reports is
//!   repairable, and after repair it is clean and allocation works again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use calico_ipam::{AllocationBlock, Ipam, ProblemKind, check, repair};
use common::{Fixture, add_node, add_pool};

const POOL: &str = "10.20.0.0/22";
const BLOCK: u8 = 27;

struct Worker {
    node: String,
    out: PathBuf,
    child: Child,
}

fn spawn(
    f: &Fixture,
    dir: &Path,
    node: &str,
    prefix: &str,
    ops: usize,
    hold: usize,
) -> Result<Worker> {
    let out = dir.join(format!("{prefix}-{node}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_ipam-stress"))
        .args([
            "--node",
            node,
            "--ops",
            &ops.to_string(),
            "--hold",
            &hold.to_string(),
        ])
        .args(["--prefix", prefix, "--out"])
        .arg(&out)
        .envs(f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ipam-stress")?;
    Ok(Worker {
        node: node.to_string(),
        out,
        child,
    })
}

/// Waits for every worker, killing all of them if `limit` passes.
fn wait_all(workers: &mut [Worker], limit: Duration) -> Result<Vec<bool>> {
    let deadline = Instant::now() + limit;
    let mut ok = vec![false; workers.len()];
    let mut done = vec![false; workers.len()];
    while done.iter().any(|d| !d) {
        if Instant::now() > deadline {
            for w in workers.iter_mut() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            bail!("workers did not finish within {limit:?}");
        }
        for (i, w) in workers.iter_mut().enumerate() {
            if !done[i]
                && let Some(status) = w.child.try_wait()?
            {
                done[i] = true;
                ok[i] = status.success();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ok)
}

/// One worker's record, replayed.
#[derive(Debug, Default)]
struct Log {
    /// Currently held: ip → handle, in assignment order (front = next to release).
    held: BTreeMap<IpAddr, String>,
    order: Vec<IpAddr>,
    assigned: usize,
    last_handle: Option<String>,
    errors: Vec<String>,
    done: bool,
}

fn read_log(path: &Path) -> Result<Log> {
    // A worker killed before it opened its record recorded nothing.
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    let mut log = Log::default();
    // A line cut short by SIGKILL (no newline yet) was never completed: ignore it.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["A", handle, ip] => {
                let ip: IpAddr = ip.parse()?;
                ensure!(
                    !log.held.contains_key(&ip),
                    "{}: {ip} handed out while still held: {line}",
                    path.display()
                );
                log.held.insert(ip, handle.to_string());
                log.order.push(ip);
                log.assigned += 1;
                log.last_handle = Some(handle.to_string());
            }
            ["R", handle, ip] => {
                let ip: IpAddr = ip.parse()?;
                ensure!(
                    log.held.remove(&ip).as_deref() == Some(*handle),
                    "{}: release of unheld {line}",
                    path.display()
                );
                log.order.retain(|o| *o != ip);
            }
            ["E", ..] => log.errors.push(line.to_string()),
            ["D", ..] => log.done = true,
            _ => bail!("{}: unexpected line {line:?}", path.display()),
        }
    }
    Ok(log)
}

/// Union of the logs' held addresses; an address held in two logs is a duplicate.
fn union_held(logs: &[Log]) -> Result<BTreeMap<IpAddr, String>> {
    let mut all = BTreeMap::new();
    for log in logs {
        for (ip, h) in &log.held {
            if let Some(other) = all.insert(*ip, h.clone()) {
                bail!("duplicate: {ip} held by {other} and {h}");
            }
        }
    }
    Ok(all)
}

async fn setup(f: &Fixture, nodes: usize) -> Result<()> {
    add_pool(&f.ds, "stress", POOL, BLOCK, |_| {}).await?;
    for i in 0..nodes {
        add_node(&f.ds, &format!("node-{i}"), &[]).await?;
    }
    Ok(())
}

async fn blocks(f: &Fixture) -> Result<Vec<AllocationBlock>> {
    let mut out = Vec::new();
    for kv in
        f.ds.list(&calico_datastore::keys::block_prefix(false))
            .await?
            .kvs
    {
        out.push(AllocationBlock::from_json(&kv.value)?);
    }
    Ok(out)
}

/// 8 nodes × 250 assignments in a /22 of /27 blocks (32 blocks). Four nodes hold up to 240
/// addresses (8 blocks' worth each), four hold 5: 36 blocks' worth of demand for 32 blocks, so
/// some node must borrow; peak use 988 of 1024 addresses, so nothing runs out.
async fn concurrent_nodes_hand_out_each_address_once(f: &Fixture) -> Result<()> {
    setup(f, 8).await?;
    let dir = tempfile::tempdir()?;
    let mut workers = Vec::new();
    for i in 0..8 {
        let hold = if i < 4 { 240 } else { 5 };
        workers.push(spawn(
            f,
            dir.path(),
            &format!("node-{i}"),
            "run",
            250,
            hold,
        )?);
    }
    let ok = wait_all(&mut workers, Duration::from_secs(600))?;
    let logs: Vec<Log> = workers
        .iter()
        .map(|w| read_log(&w.out))
        .collect::<Result<_>>()?;
    for (w, (log, ok)) in workers.iter_mut().zip(logs.iter().zip(&ok)) {
        let mut stderr = String::new();
        if let Some(mut e) = w.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        ensure!(
            *ok && log.done && log.errors.is_empty(),
            "{}: {:?} {stderr}",
            w.node,
            log.errors
        );
        ensure!(log.assigned == 250);
    }
    let held = union_held(&logs)?;
    ensure!(held.len() == 4 * 240 + 4 * 5, "{}", held.len());

    // The store holds exactly what the workers hold, under the same handles.
    let report = check(f.ds.as_ref()).await?;
    ensure!(report.is_clean(), "{:#?}", report.problems);
    let stored: BTreeMap<IpAddr, String> = report
        .allocations
        .iter()
        .map(|(ip, (_, h))| (*ip, h.clone().unwrap_or_default()))
        .collect();
    ensure!(stored == held, "store and workers disagree");
    ensure!(report.handles == held.len(), "one handle per held address");

    // Per-pool totals (what `ipam show` prints).
    let usage = Ipam::new(f.ds.clone()).usage().await?;
    ensure!(usage.len() == 1, "{usage:?}");
    ensure!(
        usage[0].total == 1024
            && usage[0].in_use == held.len() as u128
            && usage[0].free() == 1024 - held.len() as u128
    );
    ensure!(usage[0].blocks.iter().map(|b| b.in_use).sum::<u128>() == held.len() as u128);

    // Borrowing happened: some address sits in a block affine to another node.
    let mut borrowed = 0;
    for b in blocks(f).await? {
        for ip in b.in_use_ips() {
            let node = b
                .attribute_of(ip)?
                .and_then(|a| a.secondary.get("node").cloned())
                .unwrap_or_default();
            if b.affinity.as_deref() != Some(format!("host:{node}").as_str()) {
                borrowed += 1;
            }
        }
    }
    ensure!(
        borrowed > 0,
        "demand exceeded the blocks but no node borrowed"
    );
    Ok(())
}

/// Workers killed with SIGKILL at random moments, in two rounds (the first while blocks are
/// being claimed, the second in steady state with claims, borrowing and releases going on).
async fn sigkill_leaves_no_duplicate_and_a_repairable_state(f: &Fixture) -> Result<()> {
    setup(f, 8).await?;
    let dir = tempfile::tempdir()?;
    let rng = calico_ipam::clock::seeded_random(0x5eed);
    for (round, (min_ms, max_ms)) in [(20u64, 400u64), (300, 2500)].into_iter().enumerate() {
        let prefix = format!("r{round}");
        let mut workers = Vec::new();
        for i in 0..8 {
            let hold = if i < 4 { 200 } else { 20 };
            workers.push(spawn(
                f,
                dir.path(),
                &format!("node-{i}"),
                &prefix,
                100_000,
                hold,
            )?);
        }
        let start = Instant::now();
        let mut kill_at: Vec<Duration> = (0..8)
            .map(|_| Duration::from_millis(min_ms + rng() % (max_ms - min_ms)))
            .collect();
        kill_at.sort();
        for (w, at) in workers.iter_mut().zip(&kill_at) {
            if let Some(wait) = at.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            w.child.kill().context("SIGKILL")?;
            let _ = w.child.wait();
        }
        let logs: Vec<Log> = workers
            .iter()
            .map(|w| read_log(&w.out))
            .collect::<Result<_>>()?;
        for (w, log) in workers.iter().zip(&logs) {
            ensure!(log.errors.is_empty(), "{}: {:?}", w.node, log.errors);
        }
        let held = union_held(&logs)?;

        let report = check(f.ds.as_ref()).await?;
        ensure!(
            !report.problems.iter().any(|p| matches!(
                p.kind,
                ProblemKind::OverlappingBlocks | ProblemKind::CorruptBlock
            )),
            "{:#?}",
            report.problems
        );
        ensure!(report.repairable(), "round {round}: {:#?}", report.problems);
        // Everything a worker recorded as held is stored under its handle, except at most the
        // one release it was in the middle of (the front of its queue).
        for (w, log) in workers.iter().zip(&logs) {
            let missing: Vec<&IpAddr> = log
                .held
                .iter()
                .filter(|(ip, h)| {
                    report.allocations.get(*ip).and_then(|(_, sh)| sh.as_ref()) != Some(*h)
                })
                .map(|(ip, _)| ip)
                .collect();
            ensure!(
                missing.is_empty()
                    || (missing.len() == 1 && log.order.first() == missing.first().copied()),
                "round {round} {}: recorded as held but not stored: {missing:?}",
                w.node
            );
        }
        // Anything stored but not recorded is the assignment a worker was in the middle of.
        for (ip, (_, h)) in &report.allocations {
            let h = h.clone().unwrap_or_default();
            if held.get(ip) == Some(&h) || !h.starts_with(&format!("{prefix}.")) {
                continue;
            }
            let node = h.split('.').nth(1).unwrap_or_default();
            let log = workers
                .iter()
                .zip(&logs)
                .find(|(w, _)| w.node == node)
                .map(|(_, l)| l);
            let next = log.map(|l| l.assigned).unwrap_or_default();
            ensure!(
                h == format!("{prefix}.{node}.{next}"),
                "round {round}: {ip} stored for {h}, which no worker recorded"
            );
        }

        let kinds: BTreeSet<String> = report
            .problems
            .iter()
            .map(|p| format!("{:?}", p.kind))
            .collect();
        eprintln!(
            "round {round}: {} addresses recorded, {} stored, {} problems {kinds:?}",
            held.len(),
            report.in_use(),
            report.problems.len()
        );

        // Repair, then clean up the dead workers' addresses as a garbage collector would.
        let fixed = repair(f.ds.as_ref(), &report).await?;
        ensure!(
            fixed == report.problems.len(),
            "applied {fixed} of {} fixes",
            report.problems.len()
        );
        let after = check(f.ds.as_ref()).await?;
        ensure!(
            after.is_clean(),
            "round {round} after repair: {:#?}",
            after.problems
        );
        let ipam = Ipam::new(f.ds.clone());
        let handles: BTreeSet<String> = after
            .allocations
            .values()
            .filter_map(|(_, h)| h.clone())
            .collect();
        for h in handles {
            ipam.release_by_handle(&h).await?;
        }
        let empty = check(f.ds.as_ref()).await?;
        ensure!(
            empty.is_clean() && empty.in_use() == 0 && empty.handles == 0,
            "{empty:#?}"
        );
    }

    // The store still works: a fresh run completes and checks clean.
    let mut workers = vec![
        spawn(f, dir.path(), "node-0", "after", 60, 30)?,
        spawn(f, dir.path(), "node-5", "after", 60, 30)?,
    ];
    ensure!(
        wait_all(&mut workers, Duration::from_secs(300))?
            .iter()
            .all(|ok| *ok)
    );
    let report = check(f.ds.as_ref()).await?;
    ensure!(report.is_clean() && report.in_use() == 60, "{report:#?}");
    Ok(())
}

both_backends!(
    concurrent_nodes_hand_out_each_address_once,
    sigkill_leaves_no_duplicate_and_a_repairable_state
);
