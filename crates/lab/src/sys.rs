//! The lab's edge to the host: `ip` (iproute2) for namespaces and links, as a user would type
//! it, `/proc/sys` writes inside a namespace through calico-dataplane, and signals to processes
//! living in the lab's namespaces. Everything here is bounded in time.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use calico_dataplane::{NetNs, ProcSys, Sysctl, SysctlKey};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("cannot run `{command}`: {source} (is iproute2 installed?)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("sysctl {key} in namespace {netns}: {message}")]
    Sysctl {
        netns: String,
        key: String,
        message: String,
    },
}

fn run(program: &str, args: &[String]) -> Result<Output, SysError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SysError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(SysError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip ARGS…`, returning stdout.
pub fn ip(args: &[String]) -> Result<String, SysError> {
    run("ip", args).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `ip -n NETNS ARGS…`, returning stdout.
pub fn ip_in(netns: &str, args: &[String]) -> Result<String, SysError> {
    let mut full = vec!["-n".to_string(), netns.to_string()];
    full.extend(args.iter().cloned());
    ip(&full)
}

pub fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn add_netns(name: &str) -> Result<(), SysError> {
    ip(&strs(&["netns", "add", name])).map(|_| ())
}

/// Delete a named namespace; one that is already gone is fine.
pub fn del_netns(name: &str) -> Result<(), SysError> {
    if !list_netns()?.iter().any(|n| n == name) {
        return Ok(());
    }
    ip(&strs(&["netns", "del", name])).map(|_| ())
}

/// Names of every named namespace (`ip netns list` prints `NAME (id: N)`).
pub fn list_netns() -> Result<Vec<String>, SysError> {
    let out = ip(&strs(&["netns", "list"]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Link names in the root namespace (`ip -o link` lines are `N: NAME[@PEER]: …`).
pub fn root_links() -> Result<Vec<String>, SysError> {
    let out = ip(&strs(&["-o", "link", "show"]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

/// Pids of the processes whose network namespace is NETNS.
pub fn netns_pids(netns: &str) -> Result<Vec<i32>, SysError> {
    let out = ip(&strs(&["netns", "pids", netns]))?;
    Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// The command name of a process (for `status`).
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Is `pid` a running (not zombie) process? PID 1 of a container may never reap the agents
/// it inherits, so a signal-0 probe alone would call a dead agent alive.
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns the pids that had to be killed.
pub fn stop(pids: &[i32], grace: Duration) -> Vec<i32> {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stubborn: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &stubborn {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    stubborn
}

/// The start time of `pid` (clock ticks after boot), `None` when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may itself hold spaces: state is field 3, starttime 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Wait for `child` (stdout/stderr piped) at most `timeout`, collecting its output; a child
/// still running then is killed and reported.
pub fn wait_output(
    mut child: std::process::Child,
    timeout: Duration,
) -> Result<Output, std::io::Error> {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("killed after {timeout:?} without exiting"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Write `/proc/sys/KEY` (slash form) from inside NETNS.
pub fn sysctl_in(netns: &str, key: &str, value: &str) -> Result<(), SysError> {
    let err = |message: String| SysError::Sysctl {
        netns: netns.to_string(),
        key: key.to_string(),
        message,
    };
    let k = SysctlKey::parse(key).map_err(|e| err(e.to_string()))?;
    let ns = NetNs::named(netns).map_err(|e| err(e.to_string()))?;
    ns.run(|| ProcSys::default().set(&k, value))
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_a_live_process_and_not_a_dead_one() {
        let me = std::process::id() as i32;
        let t = start_time(me);
        assert!(t.is_some_and(|t| t > 0), "{t:?}");
        assert_eq!(start_time(me), t, "stable for the same process");
        assert!(alive(me));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        let _ = child.wait();
        assert_eq!(start_time(pid), None, "a reaped child has no start time");
        assert!(!alive(pid));
    }
}
