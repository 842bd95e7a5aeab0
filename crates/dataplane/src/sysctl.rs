//! Sysctls by path under `/proc/sys`, never by dotted name: interface names may contain dots
//! (`vxlan.calico`), which makes `net.ipv4.conf.vxlan.calico.rp_filter` ambiguous. A key is a
//! list of path components; writes land in the network namespace of the calling thread (run
//! them inside `NetNs::run` for a pod).

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// A sysctl key as path components (`["net", "ipv4", "conf", "vxlan.calico", "rp_filter"]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlKey(Vec<String>);

impl SysctlKey {
    /// Build from components; each must be a non-empty single path component.
    pub fn new<I, S>(components: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = components.into_iter().map(Into::into).collect();
        if parts.is_empty() {
            return Err(Error::Invalid {
                what: "sysctl key",
                detail: "empty".into(),
            });
        }
        for p in &parts {
            if p.is_empty() || p.contains('/') || p == "." || p == ".." || p.contains('\0') {
                return Err(Error::Invalid {
                    what: "sysctl key",
                    detail: format!("component {p:?} of {parts:?} is not a single path component"),
                });
            }
        }
        Ok(SysctlKey(parts))
    }

    /// Parse the slash form (`net/ipv4/conf/vxlan.calico/rp_filter`).
    pub fn parse(slashed: &str) -> Result<Self> {
        SysctlKey::new(slashed.trim_matches('/').split('/'))
    }

    /// `net/ipv4/conf/IFACE/NAME`.
    pub fn ipv4_conf(iface: &str, name: &str) -> Result<Self> {
        SysctlKey::new(["net", "ipv4", "conf", iface, name])
    }

    /// `net/ipv6/conf/IFACE/NAME`.
    pub fn ipv6_conf(iface: &str, name: &str) -> Result<Self> {
        SysctlKey::new(["net", "ipv6", "conf", iface, name])
    }

    /// `net/ipv4/neigh/IFACE/NAME` (e.g. `proxy_delay`).
    pub fn ipv4_neigh(iface: &str, name: &str) -> Result<Self> {
        SysctlKey::new(["net", "ipv4", "neigh", iface, name])
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

pub trait Sysctl {
    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<()>;
    fn get(&mut self, key: &SysctlKey) -> Result<String>;
}

/// The real thing: files under a root (`/proc/sys`).
#[derive(Debug, Clone)]
pub struct ProcSys {
    root: PathBuf,
}

impl Default for ProcSys {
    fn default() -> Self {
        ProcSys {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl ProcSys {
    /// Files under another root (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        ProcSys { root: root.into() }
    }

    pub fn path_of(&self, key: &SysctlKey) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.components());
        p
    }
}

impl Sysctl for ProcSys {
    fn set(&mut self, key: &SysctlKey, value: &str) -> Result<()> {
        let path = self.path_of(key);
        std::fs::write(&path, value).map_err(|source| Error::Sysctl {
            path,
            action: "write",
            source,
        })
    }

    fn get(&mut self, key: &SysctlKey) -> Result<String> {
        let path = self.path_of(key);
        std::fs::read_to_string(&path)
            .map(|s| s.trim_end().to_string())
            .map_err(|source| Error::Sysctl {
                path,
                action: "read",
                source,
            })
    }
}
