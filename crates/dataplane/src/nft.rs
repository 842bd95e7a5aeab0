//! nftables, applied the way netavark does it (CONVENTIONS 8): a caller renders a whole script
//! (pure, snapshot-tested elsewhere) and `Nft::apply` hands it to `nft -f -` once, so the kernel
//! commits it as one transaction or not at all. `NftCommand` runs the `nft` binary, optionally
//! inside a network namespace; `RecordingNft` (in `fake`) records scripts for unit tests.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::netns::NetNs;

pub trait Nft {
    /// Apply `script` as one transaction (`nft -f -`).
    fn apply(&mut self, script: &str) -> Result<()>;
    /// Whether table `family name` exists (`nft list table`).
    fn table_exists(&mut self, family: &str, name: &str) -> Result<bool>;
}

/// The `nft` binary, in the calling thread's namespace or in `netns`.
#[derive(Debug, Default)]
pub struct NftCommand {
    netns: Option<NetNs>,
}

impl NftCommand {
    pub fn new() -> Self {
        NftCommand::default()
    }

    /// Run `nft` inside `ns` (the child is forked from a thread that entered it).
    pub fn in_netns(ns: NetNs) -> Self {
        NftCommand { netns: Some(ns) }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output> {
        let go = || -> std::io::Result<std::process::Output> {
            let mut child = Command::new("nft")
                .args(args)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        };
        let out = match &self.netns {
            None => go(),
            Some(ns) => ns.run(go)?,
        };
        out.map_err(|source| Error::Command {
            program: "nft",
            action: "run (is nftables installed?)",
            detail: source.to_string(),
        })
    }
}

impl Nft for NftCommand {
    fn apply(&mut self, script: &str) -> Result<()> {
        let out = self.run(&["-f", "-"], Some(script))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Command {
            program: "nft",
            action: "apply script (nft -f -)",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    fn table_exists(&mut self, family: &str, name: &str) -> Result<bool> {
        let out = self.run(&["list", "table", family, name], None)?;
        Ok(out.status.success())
    }
}
