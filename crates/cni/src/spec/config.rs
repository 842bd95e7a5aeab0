//! The network configuration on stdin, compatible with upstream Calico's conflist entries.
//!
//! Bytes → `RawConf` (serde; unknown fields ignored, as CNI requires) → `NetConf` (validated
//! domain type). JSON syntax and type errors are code 6 (decode); values that parse but make no
//! sense are code 7 (invalid network config) and name the field. The raw JSON is kept because
//! delegated IPAM plugins get our stdin unchanged.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::error::{CniError, ErrorCode};
use super::result::CniResult;
use super::version::CniVersion;

/// `true`/`false` as JSON booleans or as the strings upstream's `assign_ipv4` uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    String(String),
}

#[derive(Debug, Default, Deserialize)]
struct RawIpam {
    #[serde(rename = "type", default)]
    kind: String,
    subnet: Option<String>,
    assign_ipv4: Option<BoolOrString>,
    assign_ipv6: Option<BoolOrString>,
    #[serde(default)]
    ipv4_pools: Vec<String>,
    #[serde(default)]
    ipv6_pools: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawContainerSettings {
    #[serde(default)]
    allow_ip_forwarding: bool,
}

#[derive(Debug, Default, Deserialize)]
struct RawPolicy {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Kubernetes {
    pub kubeconfig: Option<String>,
    pub k8s_api_root: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FeatureControl {
    #[serde(default)]
    pub ip_addrs_no_ipam: bool,
    #[serde(default)]
    pub floating_ips: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    #[serde(default)]
    pub protocol: String,
    #[serde(rename = "hostIP", default)]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Bandwidth {
    #[serde(rename = "ingressRate", default)]
    pub ingress_rate: u64,
    #[serde(rename = "ingressBurst", default)]
    pub ingress_burst: u64,
    #[serde(rename = "egressRate", default)]
    pub egress_rate: u64,
    #[serde(rename = "egressBurst", default)]
    pub egress_burst: u64,
}

#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(rename = "portMappings", default)]
    port_mappings: Vec<PortMapping>,
    bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Label {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
struct RawCniArgs {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Debug, Default, Deserialize)]
struct RawArgs {
    #[serde(default)]
    cni: RawCniArgs,
}

/// One live attachment listed in a GC request (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    datastore_type: Option<String>,
    etcd_endpoints: Option<String>,
    etcd_discovery_srv: Option<String>,
    etcd_scheme: Option<String>,
    etcd_authority: Option<String>,
    etcd_key_file: Option<String>,
    etcd_cert_file: Option<String>,
    etcd_ca_cert_file: Option<String>,
    embedded_datastore_path: Option<String>,
    nodename: Option<String>,
    nodename_file: Option<String>,
    #[serde(default)]
    nodename_file_optional: bool,
    #[serde(default)]
    mtu: u32,
    ipam: Option<RawIpam>,
    #[serde(default)]
    container_settings: RawContainerSettings,
    log_level: Option<String>,
    log_file_path: Option<String>,
    policy: Option<RawPolicy>,
    #[serde(default)]
    kubernetes: Kubernetes,
    #[serde(default)]
    feature_control: FeatureControl,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: RawArgs,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Vec<Attachment>,
}

/// etcd access (upstream's `etcd_*` fields, kept as given; the datastore crate interprets them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConf {
    pub endpoints: Option<String>,
    pub discovery_srv: Option<String>,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    pub key_file: Option<String>,
    pub cert_file: Option<String>,
    pub ca_cert_file: Option<String>,
}

/// The `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    /// The IPAM plugin binary (`calico-ipam`, `host-local`, …).
    pub plugin_type: String,
    pub subnet: Option<String>,
    /// Upstream defaults: IPv4 on, IPv6 off.
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    /// Pool CIDRs or names, as upstream accepts both.
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
}

/// Capabilities passed by the runtime (`runtimeConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub ips: Vec<IpAddr>,
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<Bandwidth>,
}

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    pub plugin_type: String,
    /// `etcdv3` (upstream's default), `embedded` or `kubernetes`; `None` when not given.
    pub datastore_type: Option<String>,
    pub etcd: EtcdConf,
    pub embedded_datastore_path: Option<String>,
    pub nodename: Option<String>,
    pub nodename_file: Option<String>,
    pub nodename_file_optional: bool,
    /// 0 = not configured (use the file Felix writes).
    pub mtu: u32,
    pub ipam: Option<IpamConf>,
    pub allow_ip_forwarding: bool,
    pub log_level: Option<String>,
    pub log_file_path: Option<String>,
    pub policy_type: Option<String>,
    pub kubernetes: Kubernetes,
    pub feature_control: FeatureControl,
    pub runtime: RuntimeConfig,
    /// `args.cni.ips`.
    pub args_ips: Vec<IpAddr>,
    /// `args.cni.labels`.
    pub args_labels: Vec<Label>,
    pub prev_result: Option<CniResult>,
    /// GC only: the attachments still in use.
    pub valid_attachments: Vec<Attachment>,
    /// The whole object as received.
    pub raw: Value,
}

fn invalid(field: &str, detail: String) -> CniError {
    CniError::new(
        ErrorCode::InvalidNetworkConfig,
        format!("invalid network configuration field {field}"),
        detail,
    )
}

fn parse_bool(field: &str, v: Option<BoolOrString>, default: bool) -> Result<bool, CniError> {
    match v {
        None => Ok(default),
        Some(BoolOrString::Bool(b)) => Ok(b),
        Some(BoolOrString::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(
                field,
                format!("{s:?} is not \"true\" or \"false\""),
            )),
        },
    }
}

/// An address as `10.1.2.3` or `10.1.2.3/24` (the prefix is ignored: a request is for one IP).
fn parse_ip(field: &str, s: &str) -> Result<IpAddr, CniError> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<IpNet>().map(|n| n.addr()))
        .map_err(|_| invalid(field, format!("{s:?} is not an IP address")))
}

const LOG_LEVELS: [&str; 9] = [
    "panic", "fatal", "error", "warn", "warning", "info", "debug", "trace", "none",
];

impl NetConf {
    /// Parse and validate stdin.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw_value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        if !raw_value.is_object() {
            return Err(CniError::new(
                ErrorCode::Decode,
                "cannot decode the network configuration",
                "expected a JSON object",
            ));
        }
        // The path names the field at fault ("ipam.assign_ipv4: invalid type …").
        let raw: RawConf = serde_path_to_error::deserialize(&raw_value).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                "cannot decode the network configuration",
                format!("{}: {}", e.path(), e.inner()),
            )
        })?;
        let cni_version = if raw.cni_version.is_empty() {
            // libcni treats a missing version as 0.1.0, which we do not speak.
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                "incompatible CNI version \"\" (cniVersion missing, read as 0.1.0)",
                "set cniVersion to one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
            ));
        } else {
            raw.cni_version.parse::<CniVersion>()?
        };
        if raw.name.is_empty() {
            return Err(invalid("name", "the network name is required".into()));
        }
        if raw.kind.is_empty() {
            return Err(invalid("type", "the plugin type is required".into()));
        }
        if raw.mtu != 0 && !(68..=65535).contains(&raw.mtu) {
            return Err(invalid(
                "mtu",
                format!("{} is outside 68..65535 (0 = automatic)", raw.mtu),
            ));
        }
        if let Some(dt) = &raw.datastore_type
            && !matches!(dt.as_str(), "etcdv3" | "etcd" | "embedded" | "kubernetes")
        {
            return Err(invalid(
                "datastore_type",
                format!("{dt:?}; use etcdv3, embedded or kubernetes"),
            ));
        }
        if let Some(level) = &raw.log_level
            && !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(invalid(
                "log_level",
                format!("{level:?}; use one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        let ipam = match raw.ipam {
            None => None,
            Some(i) => {
                if i.kind.is_empty() {
                    return Err(invalid(
                        "ipam.type",
                        "the IPAM plugin type is required".into(),
                    ));
                }
                if i.kind.contains('/') {
                    return Err(invalid(
                        "ipam.type",
                        format!("{:?} must be a plugin name, not a path", i.kind),
                    ));
                }
                Some(IpamConf {
                    plugin_type: i.kind,
                    subnet: i.subnet,
                    assign_ipv4: parse_bool("ipam.assign_ipv4", i.assign_ipv4, true)?,
                    assign_ipv6: parse_bool("ipam.assign_ipv6", i.assign_ipv6, false)?,
                    ipv4_pools: i.ipv4_pools,
                    ipv6_pools: i.ipv6_pools,
                })
            }
        };
        let runtime = RuntimeConfig {
            ips: raw
                .runtime_config
                .ips
                .iter()
                .map(|s| parse_ip("runtimeConfig.ips", s))
                .collect::<Result<_, _>>()?,
            port_mappings: raw.runtime_config.port_mappings,
            bandwidth: raw.runtime_config.bandwidth,
        };
        let args_ips = raw
            .args
            .cni
            .ips
            .iter()
            .map(|s| parse_ip("args.cni.ips", s))
            .collect::<Result<_, _>>()?;
        let prev_result = match &raw.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::from_value(v).map_err(|e| {
                CniError::new(ErrorCode::Decode, "cannot decode prevResult", e.details)
            })?),
        };
        Ok(NetConf {
            cni_version,
            name: raw.name,
            plugin_type: raw.kind,
            datastore_type: raw.datastore_type,
            etcd: EtcdConf {
                endpoints: raw.etcd_endpoints,
                discovery_srv: raw.etcd_discovery_srv,
                scheme: raw.etcd_scheme,
                authority: raw.etcd_authority,
                key_file: raw.etcd_key_file,
                cert_file: raw.etcd_cert_file,
                ca_cert_file: raw.etcd_ca_cert_file,
            },
            embedded_datastore_path: raw.embedded_datastore_path,
            nodename: raw.nodename,
            nodename_file: raw.nodename_file,
            nodename_file_optional: raw.nodename_file_optional,
            mtu: raw.mtu,
            ipam,
            allow_ip_forwarding: raw.container_settings.allow_ip_forwarding,
            log_level: raw.log_level,
            log_file_path: raw.log_file_path,
            policy_type: raw.policy.map(|p| p.kind).filter(|k| !k.is_empty()),
            kubernetes: raw.kubernetes,
            feature_control: raw.feature_control,
            runtime,
            args_ips,
            args_labels: raw.args.cni.labels,
            prev_result,
            valid_attachments: raw.valid_attachments,
            raw: raw_value,
        })
    }

    /// Addresses the runtime asked for (runtimeConfig.ips, then args.cni.ips), without repeats.
    pub fn requested_ips(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in self.runtime.ips.iter().chain(&self.args_ips) {
            if !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }

    /// Best-effort `cniVersion` of stdin that may not even parse, for error replies.
    pub fn sniff_version(stdin: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(stdin).ok()?;
        let s = v.get("cniVersion")?.as_str()?;
        s.parse::<CniVersion>().ok().map(|v| v.as_str().to_string())
    }
}
