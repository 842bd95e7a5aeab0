//! Network namespaces: open one by name (`/run/netns/NAME`) or path (`CNI_NETNS`, often
//! `/proc/PID/ns/net`), and run a closure inside it.
//!
//! `setns(2)` switches only the calling thread, so `run` does it on a dedicated, short-lived
//! thread (scoped, so the closure may borrow) and never on the caller's thread — in particular
//! never on a tokio worker, which would then run unrelated tasks in the wrong namespace. Sockets
//! opened inside stay bound to the namespace after the thread ends (`Netlink::open_in`).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::stat::fstat;

use crate::error::{Error, Result};

/// Where `ip netns add NAME` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace (holds an fd, so it outlives its name being deleted).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Open the namespace at `path` and check it is a network namespace.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |action, source| Error::Netns {
            path: path.clone(),
            action,
            source,
        };
        let file = File::open(&path).map_err(|e| err("open", e))?;
        // Namespace files live on nsfs; compare with our own namespace's device so a regular
        // file or another namespace type is refused here, not as EINVAL deep in a request.
        let ours =
            fstat(File::open("/proc/self/ns/net").map_err(|e| err("open /proc/self/ns/net", e))?)
                .map_err(|e| err("stat /proc/self/ns/net", e.into()))?;
        let st = fstat(&file).map_err(|e| err("stat", e.into()))?;
        if st.st_dev != ours.st_dev {
            return Err(err(
                "check",
                std::io::Error::other(
                    "not a namespace file (expected /run/netns/NAME or /proc/PID/ns/net)",
                ),
            ));
        }
        Ok(NetNs { file, path })
    }

    /// Open `/run/netns/NAME`.
    pub fn named(name: &str) -> Result<Self> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::Invalid {
                what: "network namespace name",
                detail: format!("{name:?}: must be a single path component"),
            });
        }
        NetNs::open(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// The calling thread's namespace.
    pub fn current() -> Result<Self> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on a dedicated thread inside this namespace and return its result. A panic in
    /// `f` is propagated to the caller. The caller blocks until `f` returns: from async code,
    /// call this inside `spawn_blocking`.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                    path: self.path.clone(),
                    action: "enter (setns)",
                    source: e.into(),
                })?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
