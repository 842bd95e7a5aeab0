//! The one error type of the dataplane crate. Every variant names the kernel object it was
//! about (link name, route, address, namespace path, sysctl path) and carries the errno, so a
//! CNI error or an agent log line says what failed on which object without a debugger.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket itself failed (open, send, receive).
    #[error("netlink socket: {action}: {source}")]
    Socket {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request (NLMSG_ERROR with a negative errno).
    #[error("{action} {object}: {errno}{}", ext_suffix(.ext.as_deref()))]
    Kernel {
        action: &'static str,
        object: String,
        errno: Errno,
        /// The kernel's extended-ack message, when it sent one.
        ext: Option<String>,
    },
    /// The kernel's reply could not be decoded.
    #[error("{action} {object}: cannot decode the kernel's reply: {detail}")]
    Decode {
        action: &'static str,
        object: String,
        detail: String,
    },
    /// Opening or entering a network namespace failed.
    #[error("network namespace {}: {action}: {source}", .path.display())]
    Netns {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading or writing a sysctl under /proc/sys failed.
    #[error("sysctl {}: {action}: {source}", .path.display())]
    Sysctl {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// An external program (`nft`) failed or could not be started.
    #[error("{program}: {action}: {detail}")]
    Command {
        program: &'static str,
        action: &'static str,
        detail: String,
    },
    /// An argument cannot be expressed (bad interface name, sysctl key, …).
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

fn ext_suffix(ext: Option<&str>) -> String {
    ext.map(|m| format!(" (kernel: {m})")).unwrap_or_default()
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Socket { source, .. }
            | Error::Netns { source, .. }
            | Error::Sysctl { source, .. } => source.raw_os_error().map(Errno::from_raw),
            Error::Decode { .. } | Error::Invalid { .. } | Error::Command { .. } => None,
        }
    }

    /// The object does not exist (link, route, address, namespace, sysctl). DEL paths treat
    /// this as success.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
        )
    }

    /// The object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }
}
