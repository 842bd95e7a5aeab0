//! The per-lab state directory (`<root>/<lab>/`, root `/run/calico-lab` by default) and the
//! state file inside it, `state.json`.
//!
//! `up` writes the file before it creates anything and again before every namespace it
//! creates, so the file always lists a superset of what exists; `down` reads it and also
//! searches by name pattern, so a lab whose `up` was killed, or whose file was lost, is still
//! removed completely. The directory also holds the embedded datastore file and a copy of the
//! topology, and later the node agents' pid and log files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_ROOT: &str = "/run/calico-lab";
pub const STATE_FILE: &str = "state.json";
pub const DATASTORE_FILE: &str = "datastore.db";
pub const TOPOLOGY_COPY: &str = "topology.yaml";
/// Under a node's directory: calico-node's state directory (upstream's /var/lib/calico).
pub const NODE_STATE_SUBDIR: &str = "calico";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not valid ({message}); run `calico-lab down <lab>` to clean up by name"
    )]
    Corrupt { path: PathBuf, message: String },
}

/// A node or router as `status`, `exec` and `check` need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub netns: String,
    /// `router` or `node`.
    pub role: String,
    /// (interface, subnet name, address with prefix length)
    pub interfaces: Vec<(String, String, String)>,
}

impl Member {
    /// The address (without prefix length) of the first interface.
    pub fn address(&self) -> Option<&str> {
        self.interfaces
            .first()
            .map(|(_, _, a)| a.split('/').next().unwrap_or(a))
    }
}

/// A long-lived process the lab started (calico-node, a BGP daemon); stopped by pid on `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    pub netns: String,
    pub pid: i32,
    /// Start time (clock ticks after boot, /proc/PID/stat field 22): `down` signals the pid
    /// only while it still names this process, never a later process that reused the number.
    #[serde(default)]
    pub start_time: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub lab: String,
    pub tag: String,
    pub topology: PathBuf,
    /// `false` until `up` finished every step.
    pub complete: bool,
    /// Every namespace `up` created or was about to create, in creation order.
    pub netns: Vec<String>,
    pub members: Vec<Member>,
    /// The embedded datastore file (created even when the lab runs etcd).
    pub datastore: PathBuf,
    /// `http://ADDR:2379` when the lab's datastore is its own etcd.
    #[serde(default)]
    pub etcd_endpoint: Option<String>,
    #[serde(default)]
    pub processes: Vec<Process>,
    /// Pods created through the CNI plugin, recorded before their namespace is created.
    #[serde(default)]
    pub pods: Vec<PodRecord>,
}

/// A pod: its namespace, where its CNI invocations ran, and what the plugin gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Kubernetes namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The pod's network namespace (`/run/netns/<netns>` is `CNI_NETNS`).
    pub netns: String,
    /// `CNI_CONTAINERID` (also the IPAM handle's suffix).
    pub container_id: String,
    /// The address from the ADD result, once the plugin returned it.
    #[serde(default)]
    pub address: Option<String>,
}

impl PodRecord {
    /// `NAMESPACE/NAME`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl State {
    pub fn nodes(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.role == "node")
    }

    /// The node NAME of this lab, or an error listing the nodes it has.
    pub fn node(&self, name: &str) -> anyhow::Result<&Member> {
        self.nodes().find(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.nodes().map(|m| m.name.as_str()).collect();
            anyhow::anyhow!(
                "lab {} has no node {name:?} (nodes: {})",
                self.lab,
                known.join(", ")
            )
        })
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodRecord> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }
}

/// The directory holding every lab's state directory.
#[derive(Debug, Clone)]
pub struct Root(pub PathBuf);

impl Root {
    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.0.join(lab)
    }

    /// A node's directory: its agent's env, log and pid files, the CNI configuration and log.
    pub fn node_dir(&self, lab: &str, node: &str) -> PathBuf {
        self.lab_dir(lab).join(node)
    }

    /// calico-node's `CALICO_STATE_DIR` for `node` (its `mtu` and `nodename` files).
    pub fn node_state_dir(&self, lab: &str, node: &str) -> PathBuf {
        self.node_dir(lab, node).join(NODE_STATE_SUBDIR)
    }

    pub fn state_file(&self, lab: &str) -> PathBuf {
        self.lab_dir(lab).join(STATE_FILE)
    }

    /// Names of labs with a state directory, sorted.
    pub fn labs(&self) -> Result<Vec<String>, StateError> {
        let rd = match std::fs::read_dir(&self.0) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    action: "list",
                    path: self.0.clone(),
                    source,
                });
            }
        };
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The lab's state, `None` when it has no state file.
    pub fn load(&self, lab: &str) -> Result<Option<State>, StateError> {
        let path = self.state_file(lab);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Write atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let dir = self.lab_dir(&state.lab);
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(state).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        Ok(())
    }

    pub fn remove(&self, lab: &str) -> Result<(), StateError> {
        let dir = self.lab_dir(lab);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "remove",
                path: dir,
                source,
            }),
        }
    }
}
