//! Delegation to another CNI plugin (the IPAM plugin named by `ipam.type`), as libcni's
//! `invoke` does: find the binary on CNI_PATH, run it with our stdin and CNI_* variables (the
//! command may differ, e.g. DEL to release after a failed ADD), read its result or error.
//!
//! The child is bounded in time and killed when it overstays; its stderr is captured and
//! reported in error details, never copied to our stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::Deserialize;

use super::env::{Command, Environment};
use super::error::{CniError, ErrorCode};
use super::result::CniResult;

/// How long a delegated plugin may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Cap on captured stderr quoted in error details.
const STDERR_QUOTE: usize = 2048;

/// Find `plugin` in the CNI_PATH directories (first match wins, like libcni).
pub fn find_plugin(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(CniError::new(
            ErrorCode::InvalidNetworkConfig,
            format!("invalid plugin type {plugin:?}"),
            "a plugin type is a file name found on CNI_PATH",
        ));
    }
    for dir in path {
        let candidate = dir.join(plugin);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
    Err(CniError::new(
        ErrorCode::InvalidNetworkConfig,
        format!("failed to find plugin {plugin:?} in path {dirs:?}"),
        "install the plugin in one of the CNI_PATH directories or fix ipam.type",
    ))
}

#[derive(Deserialize)]
struct ErrorIn {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// What a plugin run produced.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub success: bool,
}

/// Run `binary` with `stdin` and exactly the CNI variables in `vars` overriding ours.
pub fn exec_plugin(
    binary: &Path,
    stdin: &[u8],
    vars: &[(&'static str, String)],
    timeout: Duration,
) -> Result<Output, CniError> {
    let name = binary.display().to_string();
    let io_err = |what: &str, e: std::io::Error| {
        CniError::new(
            ErrorCode::Io,
            format!("{what} plugin {name}"),
            e.to_string(),
        )
    };
    let mut child = Process::new(binary)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_err("cannot start", e))?;
    let mut stdin_pipe = child.stdin.take();
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    let (tx, rx) = mpsc::channel();
    let input = stdin.to_vec();
    let waiter = Arc::clone(&child);
    // The worker feeds stdin, drains both pipes and reaps the child; we only wait on the
    // channel, so a hung plugin can be killed from here. The child sits behind a mutex and is
    // polled with try_wait, so kill and reap never race (std's kill is a no-op once reaped).
    std::thread::spawn(move || {
        let writer = std::thread::spawn(move || {
            if let Some(mut p) = stdin_pipe.take() {
                // A plugin that exits without reading stdin closes the pipe: not our failure.
                let _ = p.write_all(&input);
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = stderr_pipe.take() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let mut out = Vec::new();
        if let Some(mut p) = stdout_pipe.take() {
            let _ = p.read_to_end(&mut out);
        }
        let _ = writer.join();
        let err = err_reader.join().unwrap_or_default();
        let mut pause = Duration::from_micros(50);
        let status = loop {
            let polled = match waiter.lock() {
                Ok(mut c) => c.try_wait(),
                Err(_) => Err(std::io::Error::other("child handle poisoned")),
            };
            match polled {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(e) => break Err(e),
            }
        };
        let _ = tx.send((status, out, err));
    });
    let received = match rx.recv_timeout(timeout) {
        Ok(r) => Ok(r),
        Err(_) => {
            if let Ok(mut c) = child.lock() {
                let _ = c.kill();
            }
            // Let the worker reap it; a plugin whose descendants keep our pipes open is left
            // behind rather than hanging us.
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Err(())
        }
    };
    let (status, stdout, stderr) = received.map_err(|()| {
        CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "plugin {name} did not finish within {}s",
                timeout.as_secs_f32()
            ),
            "it was killed; try again",
        )
    })?;
    let status = status.map_err(|e| io_err("cannot wait for", e))?;
    Ok(Output {
        stdout,
        stderr,
        success: status.success(),
    })
}

fn failure(plugin: &str, out: &Output) -> CniError {
    if let Ok(e) = serde_json::from_slice::<ErrorIn>(&out.stdout) {
        return CniError::new(ErrorCode::from_code(e.code), e.msg, e.details);
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.len() > STDERR_QUOTE {
        let mut cut = STDERR_QUOTE;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
    }
    CniError::plugin(
        format!("plugin {plugin} failed without a CNI error on stdout"),
        format!(
            "stdout: {:?}; stderr: {stderr:?}",
            String::from_utf8_lossy(&out.stdout)
        ),
    )
}

/// Run the IPAM (or any) plugin `plugin` for `command` with our environment and stdin.
pub fn delegate(
    plugin: &str,
    command: Command,
    stdin: &[u8],
    env: &Environment,
    timeout: Duration,
) -> Result<Output, CniError> {
    let binary = find_plugin(plugin, &env.path)?;
    let mut vars = env.to_vars();
    if let Some(v) = vars.iter_mut().find(|(k, _)| *k == "CNI_COMMAND") {
        v.1 = command.as_str().to_string();
    }
    let out = exec_plugin(&binary, stdin, &vars, timeout)?;
    if !out.success {
        return Err(failure(plugin, &out));
    }
    Ok(out)
}

/// ADD through `plugin`; its result parsed.
pub fn delegate_add(plugin: &str, stdin: &[u8], env: &Environment) -> Result<CniResult, CniError> {
    let out = delegate(plugin, Command::Add, stdin, env, DEFAULT_TIMEOUT)?;
    CniResult::parse(&out.stdout).map_err(|e| {
        CniError::new(
            ErrorCode::Decode,
            format!("cannot decode the result of plugin {plugin}"),
            e.details,
        )
    })
}

/// DEL through `plugin` (also used to release after a failed ADD).
pub fn delegate_del(plugin: &str, stdin: &[u8], env: &Environment) -> Result<(), CniError> {
    delegate(plugin, Command::Del, stdin, env, DEFAULT_TIMEOUT).map(|_| ())
}

/// CHECK through `plugin`.
pub fn delegate_check(plugin: &str, stdin: &[u8], env: &Environment) -> Result<(), CniError> {
    delegate(plugin, Command::Check, stdin, env, DEFAULT_TIMEOUT).map(|_| ())
}
