//! The cases that need several OS processes. The parent re-executes the current test binary with
//! `--exact <suite>::conformance_child --ignored`; the child reads its role from the environment,
//! connects through `calico_datastore::connect` with the fixture's configuration, does its part,
//! prints `REV n` for each of its writes and a final `CHILD-DONE` marker (so a mistyped test
//! name, which would run zero tests and exit 0, is caught).

use super::{Fixture, config_env, expect_quiet, next_event};
use anyhow::{Context, bail, ensure};
use calico_datastore::{DatastoreConfig, Error, connect};
use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ROLE_ENV: &str = "CALICO_CONFORMANCE_ROLE";
const PREFIX_ENV: &str = "CALICO_CONFORMANCE_PREFIX";
const ID_ENV: &str = "CALICO_CONFORMANCE_ID";
const COUNT_ENV: &str = "CALICO_CONFORMANCE_COUNT";
const DONE: &str = "CHILD-DONE";
/// Shared counters the writers increment.
const COUNTERS: usize = 3;
const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

/// The libtest name of the child entry point generated in `module_path`.
pub fn child_test_name(module_path: &str) -> String {
    match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::conformance_child"),
        None => "conformance_child".to_string(),
    }
}

/// Body of the `conformance_child` test: a no-op unless a parent case started this process.
pub fn child_main() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("conformance child: cannot build a runtime: {e}"),
    };
    // Which network namespace this child ran in (for the namespace test).
    if let Ok(ns) = std::fs::read_link("/proc/self/ns/net") {
        println!("\nNETNS {}", ns.display());
    }
    if let Err(e) = rt.block_on(child(&role)) {
        panic!("conformance child ({role}) failed: {e:#}");
    }
    println!("{DONE}");
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

async fn child(role: &str) -> anyhow::Result<()> {
    let vars: HashMap<String, String> = std::env::vars().collect();
    let config = DatastoreConfig::from_vars(&vars)?.context("no datastore configured")?;
    let s = connect(&config).await?;
    let prefix = env(PREFIX_ENV)?;
    let id: usize = env(ID_ENV)?.parse()?;
    let count: usize = env(COUNT_ENV)?.parse()?;
    s.revision().await?; // warm up the connection before anything is timed
    match role {
        "writer" => {
            for i in 0..count {
                let key = format!("{prefix}mp/counter/{}", i % COUNTERS);
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    ensure!(
                        attempts < 100_000,
                        "{key}: no CAS success in 100000 attempts"
                    );
                    let kv = s
                        .get(&key)
                        .await?
                        .with_context(|| format!("{key} missing"))?;
                    let n: u64 = String::from_utf8(kv.value)?.parse()?;
                    match s
                        .update(&key, (n + 1).to_string().into_bytes(), kv.mod_revision)
                        .await
                    {
                        Ok(rev) => {
                            println!("REV {rev}");
                            break;
                        }
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                let rev = s
                    .create(&format!("{prefix}mp/keys/{id}/{i}"), vec![1], None)
                    .await?;
                println!("REV {rev}");
            }
        }
        "ticker" => {
            for i in 0..count {
                let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
                let key = format!("{prefix}lat/{i}");
                let rev = s.create(&key, sent.to_string().into_bytes(), None).await?;
                println!("REV {rev}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        "creator" => {
            for i in 0..count {
                let rev = s
                    .create(&format!("{prefix}open/{id}/{i}"), vec![1], None)
                    .await?;
                println!("REV {rev}");
            }
        }
        other => bail!("unknown role {other}"),
    }
    Ok(())
}

/// Starts this test binary as a child in `role`, reaching the store through `config`.
pub fn spawn_child(
    config: &DatastoreConfig,
    prefix: &str,
    child_test: &str,
    role: &str,
    id: usize,
    count: usize,
) -> anyhow::Result<tokio::process::Child> {
    spawn_child_wrapped(&[], config, prefix, child_test, role, id, count)
}

/// As `spawn_child`, run through `wrapper` (e.g. `["unshare", "--net", "--"]`).
pub fn spawn_child_wrapped(
    wrapper: &[&str],
    config: &DatastoreConfig,
    prefix: &str,
    child_test: &str,
    role: &str,
    id: usize,
    count: usize,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = match wrapper.split_first() {
        None => tokio::process::Command::new(&exe),
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(args).arg(&exe);
            c
        }
    };
    cmd.args([
        child_test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for k in [
        "DATASTORE_TYPE",
        "ETCD_ENDPOINTS",
        "ETCD_CA_CERT_FILE",
        "ETCD_CERT_FILE",
        "ETCD_KEY_FILE",
        "ETCD_USERNAME",
        "ETCD_PASSWORD",
        "EMBEDDED_DATASTORE_PATH",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(config_env(config))
        .env(ROLE_ENV, role)
        .env(PREFIX_ENV, prefix)
        .env(ID_ENV, id.to_string())
        .env(COUNT_ENV, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("cannot start child {role} {id}"))
}

/// Waits for a child; returns the revisions it reported.
pub async fn finish_child(child: tokio::process::Child, what: String) -> anyhow::Result<Vec<i64>> {
    let stdout = child_stdout(child, &what).await?;
    stdout
        .lines()
        .filter_map(|l| l.find("REV ").map(|at| &l[at + 4..]))
        .map(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse::<i64>()
                .with_context(|| format!("{what} printed REV {r}"))
        })
        .collect()
}

/// Waits for a child that must succeed; returns its standard output.
pub async fn child_stdout(child: tokio::process::Child, what: &str) -> anyhow::Result<String> {
    let out = tokio::time::timeout(CHILD_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("{what} did not finish within {CHILD_TIMEOUT:?} (killed)"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest may print its own text on the same line, so markers are searched, not matched.
    if !out.status.success() || !stdout.contains(DONE) {
        bail!(
            "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout.into_owned())
}

/// N processes each do K CAS increments on shared counters and K creates of their own keys.
pub async fn multi_process_writers(f: Fixture, child_test: &str) -> anyhow::Result<()> {
    const PROCS: usize = 4;
    const K: usize = 40;
    let s = &f.store;
    for c in 0..COUNTERS {
        s.create(&f.key(&format!("mp/counter/{c}")), b"0".to_vec(), None)
            .await?;
    }
    let base = s.revision().await?;
    let mut rx = s.watch(&f.key("mp/"), base + 1).await?;

    let mut children = Vec::new();
    for id in 0..PROCS {
        children.push(spawn_child(
            &f.config, &f.prefix, child_test, "writer", id, K,
        )?);
    }
    let results = futures::future::join_all(
        children
            .into_iter()
            .enumerate()
            .map(|(id, c)| finish_child(c, format!("writer {id}"))),
    )
    .await;
    let mut revs = Vec::new();
    for (id, r) in results.into_iter().enumerate() {
        let r = r?;
        ensure!(
            r.len() == 2 * K,
            "writer {id} reported {} writes, want {}",
            r.len(),
            2 * K
        );
        revs.extend(r);
    }
    let unique: BTreeSet<i64> = revs.iter().copied().collect();
    ensure!(
        unique.len() == revs.len(),
        "{} writes share revisions",
        revs.len() - unique.len()
    );

    for c in 0..COUNTERS {
        let want = PROCS * (0..K).filter(|i| i % COUNTERS == c).count();
        let kv = s
            .get(&f.key(&format!("mp/counter/{c}")))
            .await?
            .context("counter")?;
        let got: usize = String::from_utf8(kv.value)?.parse()?;
        ensure!(
            got == want,
            "counter {c} is {got}, want {want}: an update was lost"
        );
    }
    let l = s.list(&f.key("mp/keys/")).await?;
    let got: BTreeSet<String> = l.kvs.into_iter().map(|kv| kv.key).collect();
    let want: BTreeSet<String> = (0..PROCS)
        .flat_map(|id| (0..K).map(move |i| (id, i)))
        .map(|(id, i)| f.key(&format!("mp/keys/{id}/{i}")))
        .collect();
    ensure!(
        got == want,
        "created keys differ: {} listed, {} expected",
        got.len(),
        want.len()
    );

    // The watch saw every write exactly once, in revision order.
    let mut seen = Vec::new();
    for i in 0..revs.len() {
        let ev = next_event(&mut rx, &format!("multi-process event {i}")).await?;
        if let Some(last) = seen.last() {
            ensure!(
                ev.kv.mod_revision > *last,
                "event @{} after @{last}",
                ev.kv.mod_revision
            );
        }
        seen.push(ev.kv.mod_revision);
    }
    let seen: BTreeSet<i64> = seen.into_iter().collect();
    ensure!(
        seen == unique,
        "watched revisions differ from the writers' revisions"
    );
    expect_quiet(&mut rx, "the multi-process writes").await
}

/// A watcher here sees another process's writes within 50 ms: p99 (nearest rank) over 200
/// writes, measured from just before the writer's call, so the write's own latency counts too.
pub async fn cross_process_watch_latency(f: Fixture, child_test: &str) -> anyhow::Result<()> {
    const WRITES: usize = 200;
    let s = &f.store;
    let mut rx = s.watch(&f.key("lat/"), s.revision().await? + 1).await?;
    let child = spawn_child(&f.config, &f.prefix, child_test, "ticker", 0, WRITES)?;
    let mut lat = Vec::new();
    for i in 0..WRITES {
        let ev = next_event(&mut rx, &format!("timed write {i}")).await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let sent: u128 = String::from_utf8(ev.kv.value)?.parse()?;
        lat.push(Duration::from_nanos(u64::try_from(
            now.saturating_sub(sent),
        )?));
    }
    finish_child(child, "ticker".to_string()).await?;
    let slowest = (0..lat.len()).max_by_key(|i| lat[*i]).unwrap_or(0);
    lat.sort();
    let pct = |p: usize| lat[((lat.len() * p).div_ceil(100)).saturating_sub(1)];
    let (p50, p99) = (pct(50), pct(99));
    let max = lat[lat.len() - 1];
    eprintln!(
        "cross-process watch latency over {WRITES} writes: p50 {p50:?}, p99 {p99:?}, \
         max {max:?} (write {slowest})"
    );
    ensure!(
        p99 <= Duration::from_millis(50),
        "p99 {p99:?} > 50 ms (p50 {p50:?}, max {max:?} at write {slowest}): {lat:?}"
    );
    Ok(())
}
