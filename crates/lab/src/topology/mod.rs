//! The topology file: its YAML schema (`raw`), and the validated `Topology` the rest of the lab
//! works from (parse, don't validate).
//!
//! ```text
//! YAML ──serde (unknown fields refused)──▶ raw::File ──validate()──▶ Topology
//!                                                    └─ errors name the field: nodes[2].subnet
//! ```
//!
//! Addresses are read as strings and parsed here, so a bad one is reported with its field path
//! rather than as a serde position. Resources (inline or from a file next to the topology) are
//! parsed with calico-api's codec at load time, so a typo fails `up` before anything is created.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use calico_api::Resource;
use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("reading topology {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("topology {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// One or more fields are invalid; each line names the field.
    #[error("topology {path} is invalid:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// What an external BGP router runs (started by a later issue; parsed and validated now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    Bird,
    Frr,
    Gobgp,
}

pub mod raw;
mod validate;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subnet {
    pub name: String,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// One link of a node or router into a subnet's bridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interface {
    /// Name inside the node's namespace (`eth1` for a node's primary link).
    pub name: String,
    /// Index into `Topology::subnets`.
    pub subnet: usize,
    pub address: Ipv4Addr,
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub name: String,
    /// `interfaces[0]` is the primary link `eth1`, carrying the default route.
    pub interfaces: Vec<Interface>,
    /// `nodeEnv` overlaid with the node's own `env`.
    pub env: BTreeMap<String, String>,
}

impl Node {
    pub fn primary(&self) -> &Interface {
        // Invariant: validate() always creates the primary interface first.
        &self.interfaces[0]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Router {
    pub name: String,
    pub kind: RouterKind,
    pub asn: u32,
    pub interfaces: Vec<Interface>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
}

/// Where the lab's datastore lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// One file in the lab's state directory, shared by every namespace.
    Embedded,
    /// A single etcd member in the lab's `etcd` namespace, on `interface` (named `eth1`).
    Etcd { interface: Interface },
}

/// Client port of the lab's etcd.
pub const ETCD_CLIENT_PORT: u16 = 2379;

impl Datastore {
    /// `http://ADDR:2379` for etcd.
    pub fn etcd_endpoint(&self) -> Option<String> {
        match self {
            Datastore::Embedded => None,
            Datastore::Etcd { interface } => {
                Some(format!("http://{}:{ETCD_CLIENT_PORT}", interface.address))
            }
        }
    }
}

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub datastore: Datastore,
    pub subnets: Vec<Subnet>,
    pub nodes: Vec<Node>,
    pub routers: Vec<Router>,
    /// Every resource, in file order, already parsed; with where each came from.
    pub resources: Vec<(String, Resource)>,
    pub pods: Vec<Pod>,
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Topology::parse(&text, path, base)
    }

    /// Parse `text` (named `origin` in errors); resource files are relative to `base`.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Topology, TopologyError> {
        let file: raw::File = serde_saphyr::from_str(text).map_err(|e| TopologyError::Syntax {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        validate::validate(file, base).map_err(|problems| TopologyError::Invalid {
            path: origin.to_path_buf(),
            problems,
        })
    }

    pub fn subnet_of(&self, iface: &Interface) -> &Subnet {
        &self.subnets[iface.subnet]
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
