//! What both plugins derive from one request before doing anything: the node name, the pod
//! MTU, the datastore to use, who the workload is (Kubernetes pod or plain container), the
//! IPAM handle, and the log file. Nothing here changes the system except appending to the log.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use calico_api::naming::{WorkloadEndpointIdentifiers, host_interface_name};
use calico_datastore::Datastore;
use calico_datastore::config::{DatastoreConfig, EmbeddedConfig};

use crate::spec::{CniError, ErrorCode, Request};

/// Where calico-node writes the node name and the pod MTU.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";
pub const DEFAULT_MTU_FILE: &str = "/var/lib/calico/mtu";
/// Upstream's default log file.
pub const DEFAULT_LOG_FILE: &str = "/var/log/calico/cni/cni.log";
/// MTU when neither the configuration nor calico-node says otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// Appends lines to the configured log file; never writes stdout (stdout is the CNI reply).
/// The file is opened once, at the first line. At debug level every line carries the
/// milliseconds since the log was created, so a slow step shows in the log.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    debug: bool,
    tag: String,
    started: Instant,
    file: OnceLock<Option<std::fs::File>>,
}

impl Log {
    pub fn new(req: &Request, plugin: &str) -> Log {
        let level = req
            .conf
            .log_level
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Log {
            path: PathBuf::from(
                req.conf
                    .log_file_path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LOG_FILE.to_string()),
            ),
            debug: matches!(level.as_str(), "debug" | "trace"),
            tag: format!(
                "{plugin} {} {}",
                req.env.command.as_str(),
                req.env.container_id
            ),
            started: Instant::now(),
            file: OnceLock::new(),
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let file = self.file.get_or_init(|| {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok()
        });
        let Some(mut f) = file.as_ref() else {
            return;
        };
        let ts = calico_ipam::clock::format_rfc3339(SystemTime::now());
        // One write per line so concurrent plugins' lines never interleave.
        let line = if self.debug {
            let ms = self.started.elapsed().as_secs_f64() * 1000.0;
            format!("{ts} [{level}] {} (+{ms:.2} ms): {msg}\n", self.tag)
        } else {
            format!("{ts} [{level}] {}: {msg}\n", self.tag)
        };
        let _ = f.write_all(line.as_bytes());
    }

    pub fn info(&self, msg: &str) {
        self.write("INFO", msg);
    }

    pub fn warn(&self, msg: &str) {
        self.write("WARNING", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("DEBUG", msg);
        }
    }
}

/// The node name: conf `nodename`, else the file calico-node writes (`nodename_file`), else
/// the hostname.
pub fn nodename(req: &Request) -> Result<String, CniError> {
    if let Some(n) = req.conf.nodename.as_deref().filter(|n| !n.is_empty()) {
        return Ok(n.to_string());
    }
    let file = req
        .conf
        .nodename_file
        .clone()
        .unwrap_or_else(|| DEFAULT_NODENAME_FILE.to_string());
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) | Err(_) if req.conf.nodename_file.is_some() && !req.conf.nodename_file_optional => {
            return Err(CniError::plugin(
                format!("cannot read the node name from nodename_file {file}"),
                "the file is missing or empty; start calico-node on this host, or set \
                 nodename in the network configuration",
            ));
        }
        _ => {}
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if host.is_empty() {
        return Err(CniError::plugin(
            "cannot determine the node name",
            "set nodename in the network configuration",
        ));
    }
    Ok(host.to_string())
}

/// The pod MTU: conf `mtu` when non-zero, else the file calico-node writes (`mtu_file`, default
/// /var/lib/calico/mtu), else 1500.
pub fn mtu(req: &Request) -> Result<u32, CniError> {
    if req.conf.mtu != 0 {
        return Ok(req.conf.mtu);
    }
    let file = req
        .conf
        .raw
        .get("mtu_file")
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_MTU_FILE);
    match std::fs::read_to_string(file) {
        Ok(s) => match s.trim().parse::<u32>() {
            Ok(m) if (68..=65535).contains(&m) => Ok(m),
            _ => Err(CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!("MTU file {file} does not hold an MTU"),
                format!("read {:?}; expected a number in 68..65535", s.trim()),
            )),
        },
        Err(_) => Ok(DEFAULT_MTU),
    }
}

/// The datastore the configuration names; fields missing there come from the environment
/// (upstream's variable names), then the embedded store at its default path.
pub fn datastore_config(req: &Request) -> Result<DatastoreConfig, CniError> {
    let c = &req.conf;
    let mut vars: HashMap<String, String> = HashMap::new();
    for k in [
        "DATASTORE_TYPE",
        "ETCD_ENDPOINTS",
        "ETCD_CA_CERT_FILE",
        "ETCD_CERT_FILE",
        "ETCD_KEY_FILE",
        "EMBEDDED_DATASTORE_PATH",
    ] {
        if let Ok(v) = std::env::var(k) {
            vars.insert(k.to_string(), v);
        }
    }
    let mut set = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            vars.insert(k.to_string(), v.clone());
        }
    };
    set("DATASTORE_TYPE", &c.datastore_type);
    set("ETCD_ENDPOINTS", &c.etcd.endpoints);
    set("ETCD_CA_CERT_FILE", &c.etcd.ca_cert_file);
    set("ETCD_CERT_FILE", &c.etcd.cert_file);
    set("ETCD_KEY_FILE", &c.etcd.key_file);
    set("EMBEDDED_DATASTORE_PATH", &c.embedded_datastore_path);
    let bad = |e: calico_datastore::Error| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "invalid datastore settings in the network configuration",
            e.to_string(),
        )
    };
    match DatastoreConfig::from_vars(&vars).map_err(bad)? {
        Some(cfg) => Ok(cfg),
        None => Ok(DatastoreConfig::Embedded(EmbeddedConfig {
            path: calico_datastore::config::DEFAULT_EMBEDDED_PATH.into(),
        })),
    }
}

/// Connect to the datastore (bounded: an unreachable store is an error, not a hang). The
/// embedded store runs on this (the process's only) thread: a CNI call is one request, and a
/// blocking-pool thread plus a cross-thread wake-up per operation cost more CPU than the
/// SQLite work itself; a lock held by another process is bounded by the store's busy timeout.
pub async fn connect(req: &Request) -> Result<Arc<dyn Datastore>, CniError> {
    let cfg = datastore_config(req)?;
    if let DatastoreConfig::Embedded(c) = &cfg {
        return match calico_datastore::embedded::EmbeddedDatastore::open_inline(c) {
            Ok(ds) => Ok(Arc::new(ds)),
            Err(e) => Err(unreachable_store(e)),
        };
    }
    let fut = calico_datastore::connect(&cfg);
    match tokio::time::timeout(std::time::Duration::from_secs(20), fut).await {
        Ok(Ok(ds)) => Ok(ds),
        Ok(Err(e)) => Err(unreachable_store(e)),
        Err(_) => Err(CniError::new(
            ErrorCode::TryAgainLater,
            "cannot reach the Calico datastore",
            "no answer within 20 s; check datastore_type / etcd_endpoints",
        )),
    }
}

fn unreachable_store(e: calico_datastore::Error) -> CniError {
    CniError::new(
        ErrorCode::TryAgainLater,
        "cannot reach the Calico datastore",
        format!("{e}; check datastore_type / etcd_endpoints in the network configuration"),
    )
}

/// A datastore failure after connecting.
pub fn datastore_error(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        ErrorCode::TryAgainLater,
        format!("datastore error while {what}"),
        e.to_string(),
    )
}

/// Who the workload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Some((namespace, pod))` for Kubernetes pods (K8S_POD_NAMESPACE and K8S_POD_NAME set).
    pub pod: Option<(String, String)>,
    pub container_id: String,
    pub node: String,
    pub ifname: String,
}

impl Workload {
    pub fn new(req: &Request, node: String) -> Workload {
        let a = &req.env.args;
        let pod = match (&a.k8s_pod_namespace, &a.k8s_pod_name) {
            (Some(ns), Some(p)) if !ns.is_empty() && !p.is_empty() => Some((ns.clone(), p.clone())),
            _ => None,
        };
        Workload {
            pod,
            container_id: req.env.container_id.clone(),
            node,
            ifname: req.env.ifname.clone(),
        }
    }

    /// Host-side veth: `cali` + 11 hex of sha1("<ns>.<pod>"), or, without Kubernetes
    /// arguments, `cali` + the first 11 characters of the container ID (as upstream).
    pub fn host_veth(&self) -> String {
        match &self.pod {
            Some((ns, pod)) => host_interface_name(ns, pod),
            None => {
                let id: String = self.container_id.chars().take(11).collect();
                format!("cali{id}")
            }
        }
    }

    pub fn identifiers(&self) -> WorkloadEndpointIdentifiers {
        match &self.pod {
            Some((_, pod)) => WorkloadEndpointIdentifiers::k8s(&self.node, pod, &self.ifname),
            None => WorkloadEndpointIdentifiers {
                node: self.node.clone(),
                orchestrator: calico_api::naming::ORCHESTRATOR_CNI.into(),
                container_id: self.container_id.clone(),
                endpoint: self.ifname.clone(),
                ..Default::default()
            },
        }
    }

    /// The WorkloadEndpoint's name and namespace.
    pub fn endpoint_name(&self) -> Result<(String, String), CniError> {
        let name = self.identifiers().name().map_err(|e| {
            CniError::plugin("cannot build the WorkloadEndpoint name", e.to_string())
        })?;
        let ns = match &self.pod {
            Some((ns, _)) => ns.clone(),
            None => "default".to_string(),
        };
        Ok((name, ns))
    }
}

/// A runtime for the one request this process serves.
pub fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::plugin("cannot start the async runtime", e.to_string()))
}
