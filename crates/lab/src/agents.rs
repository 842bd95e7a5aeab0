//! Long-lived per-node agents (calico-node; later BGP daemons): which binary, how it is started
//! inside a node's namespace, and how `up` learns its pid.
//!
//! An agent runs as `setsid -f ip netns exec NS sh -c 'echo $$ > PIDFILE; exec BIN'`, the way
//! the lab recipe starts agents: its own session (a Ctrl-C of `up` does not reach it), the
//! node's namespace with that namespace's /sys, stdout and stderr appended to
//! `<state>/<node>/<name>.log`, and an environment made only of PATH, a few debugging
//! variables and the node's env file — never the caller's DATASTORE_* by accident. Its pid goes
//! into the state file so `down` stops it (down also stops anything else living in the lab's
//! namespaces).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// Variables of the caller passed through to agents.
const PASSTHROUGH: &[&str] = &["PATH", "RUST_LOG", "RUST_BACKTRACE", "LOG_LEVEL", "TMPDIR"];
/// How long `up` waits for an agent to write its pid file.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// An agent still running this long after its start counts as started.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what} binary {path}: {reason}")]
    Binary {
        what: String,
        path: PathBuf,
        reason: String,
    },
    #[error("starting {what} in {netns}: {reason}; its log is {log}")]
    Start {
        what: String,
        netns: String,
        reason: String,
        log: PathBuf,
    },
}

/// Which node agent `up` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAgent {
    /// Start nothing (the lab's network only).
    None,
    /// Start this binary in every node.
    Binary(PathBuf),
}

/// `--node-bin` when given (it must exist); else `calico-node` next to our own executable
/// (the workspace's target directory); else none.
pub fn resolve_node_agent(
    explicit: Option<&Path>,
    disabled: bool,
) -> Result<NodeAgent, AgentError> {
    if disabled {
        return Ok(NodeAgent::None);
    }
    if let Some(p) = explicit {
        return match std::fs::metadata(p) {
            Ok(m) if m.is_file() => Ok(NodeAgent::Binary(p.to_path_buf())),
            Ok(_) => Err(AgentError::Binary {
                what: "node agent".into(),
                path: p.to_path_buf(),
                reason: "is not a file".into(),
            }),
            Err(e) => Err(AgentError::Binary {
                what: "node agent".into(),
                path: p.to_path_buf(),
                reason: format!("{e}; build it (cargo build -p calico-node) or pass --no-node"),
            }),
        };
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("calico-node")));
    Ok(match sibling {
        Some(p) if p.is_file() => NodeAgent::Binary(p),
        _ => NodeAgent::None,
    })
}

/// Parse a `KEY=VALUE` per line env file (as `up` writes them).
pub fn read_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Start `argv` as agent `what` in `netns`; returns its pid once it is running.
pub fn start(
    what: &str,
    netns: &str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<i32, AgentError> {
    let log = dir.join(format!("{what}.log"));
    let pidfile = dir.join(format!("{what}.pid"));
    let fail = |reason: String| AgentError::Start {
        what: what.to_string(),
        netns: netns.to_string(),
        reason,
        log: log.clone(),
    };
    let _ = std::fs::remove_file(&pidfile);
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| fail(format!("opening the log: {e}")))?;
    let err = out
        .try_clone()
        .map_err(|e| fail(format!("opening the log: {e}")))?;
    let mut cmd = Command::new("setsid");
    cmd.args(["-f", "ip", "netns", "exec", netns, "sh", "-c"])
        .arg(format!(
            "echo $$ > '{}' && exec \"$@\"",
            pidfile.display().to_string().replace('\'', "'\\''")
        ))
        .arg(what)
        .args(argv)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for k in PASSTHROUGH {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(env);
    let status = cmd
        .status()
        .map_err(|e| fail(format!("running setsid: {e} (util-linux)")))?;
    if !status.success() {
        return Err(fail(format!("setsid exited with {status}")));
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "no pid in {} after {START_TIMEOUT:?}",
                pidfile.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(SETTLE);
    if !sys::alive(pid) {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(format!(
            "it exited at once (pid {pid}); last lines:\n    {}",
            tail.join("\n    ")
        )));
    }
    Ok(pid)
}
