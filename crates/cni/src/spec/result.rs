//! CNI results: one model, printed in the format of the configuration's `cniVersion`.
//!
//! 0.3.0, 0.3.1 and 0.4.0 put `"version": "4"|"6"` on each IP; 1.0.0 drops it; 1.1.0 adds
//! interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/`table`/`scope`.
//! Key order and omissions follow the reference implementation (libcni's Go structs: empty
//! lists omitted, `dns` always present), printed with 4-space indentation like the reference
//! plugins. Parsing accepts any of these formats (IPAM plugin output, `prevResult`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{CniError, ErrorCode};
use super::version::CniVersion;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// 1.1.0 only.
    pub mtu: Option<u32>,
    /// The namespace path for interfaces inside the container; `None` for host interfaces.
    pub sandbox: Option<String>,
    /// 1.1.0 only.
    pub socket_path: Option<String>,
    /// 1.1.0 only.
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteResult {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    /// The remaining fields are 1.1.0 only.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

impl RouteResult {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        RouteResult {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A CNI result, independent of version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteResult>,
    pub dns: Dns,
}

// ---- output shapes (field order = the reference's) ----

#[derive(Serialize)]
struct IfaceOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
    #[serde(rename = "socketPath", skip_serializing_if = "Option::is_none")]
    socket_path: Option<&'a str>,
    #[serde(rename = "pciID", skip_serializing_if = "Option::is_none")]
    pci_id: Option<&'a str>,
}

#[derive(Serialize)]
struct IpOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
}

#[derive(Serialize)]
struct RouteOut {
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advmss: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<u32>,
}

#[derive(Serialize)]
struct ResultOut<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<IfaceOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteOut>,
    dns: &'a Dns,
}

// ---- input shapes (every version) ----

#[derive(Deserialize)]
struct IfaceIn {
    name: String,
    mac: Option<String>,
    mtu: Option<u32>,
    sandbox: Option<String>,
    #[serde(rename = "socketPath")]
    socket_path: Option<String>,
    #[serde(rename = "pciID")]
    pci_id: Option<String>,
}

#[derive(Deserialize)]
struct IpIn {
    version: Option<String>,
    interface: Option<usize>,
    address: String,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct RouteIn {
    dst: String,
    gw: Option<String>,
    mtu: Option<u32>,
    advmss: Option<u32>,
    priority: Option<u32>,
    table: Option<u32>,
    scope: Option<u32>,
}

#[derive(Deserialize)]
struct ResultIn {
    #[serde(default)]
    interfaces: Vec<IfaceIn>,
    #[serde(default)]
    ips: Vec<IpIn>,
    #[serde(default)]
    routes: Vec<RouteIn>,
    #[serde(default)]
    dns: Dns,
}

fn decode_err(detail: String) -> CniError {
    CniError::new(ErrorCode::Decode, "cannot decode a CNI result", detail)
}

/// Go prints an address with prefix as `10.0.0.5/32` (host bits kept).
fn parse_cidr(field: &str, s: &str) -> Result<IpNet, CniError> {
    s.parse::<IpNet>()
        .map_err(|_| decode_err(format!("{field}: {s:?} is not ADDRESS/PREFIX")))
}

fn parse_addr(field: &str, s: &str) -> Result<IpAddr, CniError> {
    s.parse::<IpAddr>()
        .map_err(|_| decode_err(format!("{field}: {s:?} is not an IP address")))
}

impl CniResult {
    /// The result as printed for `version`.
    pub fn to_json(&self, version: CniVersion) -> String {
        let v11 = version >= CniVersion::V1_1_0;
        let out = ResultOut {
            cni_version: version.as_str(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| IfaceOut {
                    name: &i.name,
                    mac: i.mac.as_deref(),
                    mtu: i.mtu.filter(|_| v11),
                    sandbox: i.sandbox.as_deref(),
                    socket_path: i.socket_path.as_deref().filter(|_| v11),
                    pci_id: i.pci_id.as_deref().filter(|_| v11),
                })
                .collect(),
            ips: self
                .ips
                .iter()
                .map(|ip| IpOut {
                    version: version
                        .ips_have_version()
                        .then_some(if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        }),
                    interface: ip.interface,
                    address: ip.address.to_string(),
                    gateway: ip.gateway.map(|g| g.to_string()),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| RouteOut {
                    dst: r.dst.to_string(),
                    gw: r.gw.map(|g| g.to_string()),
                    mtu: r.mtu.filter(|_| v11),
                    advmss: r.advmss.filter(|_| v11),
                    priority: r.priority.filter(|_| v11),
                    table: r.table.filter(|_| v11),
                    scope: r.scope.filter(|_| v11),
                })
                .collect(),
            dns: &self.dns,
        };
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        // Strings, numbers and plain structs always serialize.
        if out.serialize(&mut ser).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Parse a result of any supported version (IPAM plugin output, prevResult).
    pub fn parse(bytes: &[u8]) -> Result<CniResult, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| decode_err(e.to_string()))?;
        CniResult::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<CniResult, CniError> {
        // serde would read a struct from an array too; a result is an object.
        if !value.is_object() {
            return Err(decode_err("expected a JSON object".into()));
        }
        let raw: ResultIn = ResultIn::deserialize(value).map_err(|e| decode_err(e.to_string()))?;
        let interfaces = raw
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: i.mac,
                mtu: i.mtu,
                sandbox: i.sandbox,
                socket_path: i.socket_path,
                pci_id: i.pci_id,
            })
            .collect::<Vec<_>>();
        let mut ips = Vec::new();
        for ip in raw.ips {
            let address = parse_cidr("ips[].address", &ip.address)?;
            if let Some(v) = &ip.version {
                let want = if address.addr().is_ipv4() { "4" } else { "6" };
                if v != want {
                    return Err(decode_err(format!(
                        "ips[].version {v:?} does not match address {address}"
                    )));
                }
            }
            if let Some(i) = ip.interface
                && i >= interfaces.len()
            {
                return Err(decode_err(format!(
                    "ips[].interface {i} points past the {} interfaces",
                    interfaces.len()
                )));
            }
            let gateway = ip
                .gateway
                .as_deref()
                .map(|g| parse_addr("ips[].gateway", g))
                .transpose()?;
            ips.push(IpConfig {
                address,
                gateway,
                interface: ip.interface,
            });
        }
        let mut routes = Vec::new();
        for r in raw.routes {
            routes.push(RouteResult {
                dst: parse_cidr("routes[].dst", &r.dst)?,
                gw: r
                    .gw
                    .as_deref()
                    .map(|g| parse_addr("routes[].gw", g))
                    .transpose()?,
                mtu: r.mtu,
                advmss: r.advmss,
                priority: r.priority,
                table: r.table,
                scope: r.scope,
            });
        }
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns: raw.dns,
        })
    }
}
