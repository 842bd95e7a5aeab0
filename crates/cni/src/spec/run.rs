//! One plugin invocation from end to end: environment and stdin in, exactly one JSON document
//! (or nothing, for a successful DEL/CHECK/STATUS/GC) and an exit code out. The binary's `main`
//! prints `Outcome::stdout` and exits with `Outcome::exit_code`; nothing else may write stdout.
//!
//! Garbage in never panics: parsing returns CNI errors, and a panic inside the plugin's own
//! handlers is caught and reported as a code-999 error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::config::NetConf;
use super::env::{Command, Environment};
use super::error::{CniError, ErrorCode};
use super::result::CniResult;
use super::version::CniVersion;

/// A parsed request handed to the plugin.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Environment,
    pub conf: NetConf,
    /// Stdin exactly as received (delegated plugins get the same bytes).
    pub stdin: Vec<u8>,
}

/// The commands a plugin implements. STATUS and GC default to success.
pub trait Plugin {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&mut self, req: &Request) -> Result<(), CniError>;
    fn check(&mut self, req: &Request) -> Result<(), CniError>;
    fn status(&mut self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(&mut self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Outcome {
            stdout,
            exit_code: 0,
        }
    }

    fn error(err: &CniError, version: &str) -> Self {
        Outcome {
            stdout: err.to_json(version),
            exit_code: 1,
        }
    }
}

fn gate(command: Command, version: CniVersion) -> Result<(), CniError> {
    let allowed = match command {
        Command::Check => version.supports_check(),
        Command::Status | Command::Gc => version.supports_status_and_gc(),
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!(
                "configuration version {version} does not allow {}",
                command.as_str()
            ),
            match command {
                Command::Check => "CHECK needs cniVersion 0.4.0 or later",
                _ => "STATUS and GC need cniVersion 1.1.0 or later",
            },
        ))
    }
}

/// Run one invocation.
pub fn dispatch(
    stdin: &[u8],
    get_env: impl Fn(&str) -> Option<String>,
    plugin: &mut dyn Plugin,
) -> Outcome {
    let sniffed =
        NetConf::sniff_version(stdin).unwrap_or_else(|| CniVersion::LATEST.as_str().to_string());
    let env = match Environment::from_lookup(get_env) {
        Ok(env) => env,
        Err(e) => return Outcome::error(&e, &sniffed),
    };
    if env.command == Command::Version {
        return Outcome::ok(CniVersion::version_info_json());
    }
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err(e) => return Outcome::error(&e, &sniffed),
    };
    let version = conf.cni_version;
    if let Err(e) = gate(env.command, version) {
        return Outcome::error(&e, version.as_str());
    }
    let command = env.command;
    let req = Request {
        env,
        conf,
        stdin: stdin.to_vec(),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| match command {
        Command::Add => plugin.add(&req).map(|r| r.to_json(version)),
        Command::Del => plugin.del(&req).map(|()| String::new()),
        Command::Check => plugin.check(&req).map(|()| String::new()),
        Command::Status => plugin.status(&req).map(|()| String::new()),
        Command::Gc => plugin.gc(&req).map(|()| String::new()),
        Command::Version => Ok(CniVersion::version_info_json()),
    }));
    match outcome {
        Ok(Ok(stdout)) => Outcome::ok(stdout),
        Ok(Err(e)) => Outcome::error(&e, version.as_str()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let e = CniError::plugin(format!("internal error in {}", command.as_str()), what);
            Outcome::error(&e, version.as_str())
        }
    }
}

/// Stdin larger than this is refused (a network configuration is a few KiB).
pub const MAX_STDIN: u64 = 16 << 20;

/// A plugin binary's whole `main`: `run_io` on the process's stdin, stdout and environment,
/// then exit with its code.
pub fn run_process(plugin: &mut dyn Plugin) -> ! {
    let code = run_io(
        std::io::stdin(),
        std::io::stdout(),
        |k| std::env::var(k).ok(),
        plugin,
    );
    std::process::exit(code)
}

/// The whole life of a plugin binary minus `exit`: read stdin (bounded), dispatch, write the
/// one JSON document to `stdout`, return the exit code (`run_process` is that for a binary).
pub fn run_io(
    stdin: impl std::io::Read,
    mut stdout: impl std::io::Write,
    get_env: impl Fn(&str) -> Option<String>,
    plugin: &mut dyn Plugin,
) -> i32 {
    let mut input = Vec::new();
    let outcome = match std::io::Read::read_to_end(&mut stdin.take(MAX_STDIN + 1), &mut input) {
        Ok(n) if n as u64 > MAX_STDIN => Outcome::error(
            &CniError::new(
                ErrorCode::Io,
                "network configuration on stdin is too large",
                format!("more than {MAX_STDIN} bytes"),
            ),
            CniVersion::LATEST.as_str(),
        ),
        Ok(_) => dispatch(&input, get_env, plugin),
        Err(e) => Outcome::error(
            &CniError::new(ErrorCode::Io, "cannot read stdin", e.to_string()),
            CniVersion::LATEST.as_str(),
        ),
    };
    if !outcome.stdout.is_empty() {
        // Nothing else can be reported if stdout is gone; the exit code still says it.
        let _ = stdout
            .write_all(outcome.stdout.as_bytes())
            .and_then(|()| stdout.flush());
    }
    outcome.exit_code
}
