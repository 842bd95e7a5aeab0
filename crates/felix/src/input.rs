//! The boundary: syncer updates (datastore keys + stored JSON) become typed facts the graph
//! indexes. Only the fields Felix's routing needs are kept, so the graph's state stays small
//! (5,000 blocks of a few bytes each, not 5,000 copies of upstream's block JSON).
//!
//! ```text
//!  SyncUpdate::Put(kv) ──decode_put──▶ Fact::{Pool, Node, Workload, Block, Affinity, FelixConfig}
//!  SyncUpdate::Delete{key} ──decode_key──▶ FactKey (what to forget)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use calico_api::resources::ippool::EncapMode;
use calico_api::{Kind, Resource};
use calico_datastore::keys;
use calico_ipam::AllocationBlock;
use calico_ipam::model::{AffinityState, AffinityValue, parse_affinity_key, parse_block_key};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::{parse_node_address, parse_node_address_v6};

/// What is wrong with one stored value. The graph treats the key as absent and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{key}: stored value is not a valid {what}: {reason}; fix or delete the object")]
    BadValue {
        key: String,
        what: &'static str,
        reason: String,
    },
    #[error("{key}: {field} {value:?} is not a valid {expected}; fix the {kind} resource")]
    BadField {
        key: String,
        kind: &'static str,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Identity of one fact: what a delete names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactKey {
    Pool(String),
    Node(String),
    /// `<namespace>/<name>`.
    Workload(String),
    Block(IpNet),
    Affinity {
        host: String,
        cidr: IpNet,
    },
    FelixConfig(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFact {
    pub cidr: IpNet,
    pub vxlan: EncapMode,
    pub ipip: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
    pub disable_bgp_export: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFact {
    /// From `spec.bgp.ipv4Address`.
    pub ip: Option<Ipv4Addr>,
    pub subnet: Option<Ipv4Net>,
    pub vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.bgp.ipv4IPIPTunnelAddr`.
    pub ipip_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`, or the MAC derived from the node name.
    pub vxlan_mac: String,
    /// From `spec.bgp.ipv6Address`.
    pub ip6: Option<Ipv6Addr>,
    pub subnet6: Option<Ipv6Net>,
    /// `spec.ipv6VXLANTunnelAddr`.
    pub vxlan_tunnel_addr6: Option<Ipv6Addr>,
    /// `spec.vxlanTunnelMACAddrV6`, or the MAC derived from `<node>-v6`.
    pub vxlan_mac6: String,
}

impl NodeFact {
    /// The node's VTEP addresses (IPv4 and IPv6 tunnel addresses it has).
    pub fn vteps(&self) -> impl Iterator<Item = IpAddr> + use<> {
        let v4 = self.vxlan_tunnel_addr.map(IpAddr::V4);
        let v6 = self.vxlan_tunnel_addr6.map(IpAddr::V6);
        v4.into_iter().chain(v6)
    }

    /// The node's address of `d`'s family.
    pub fn addr_for(&self, d: &IpNet) -> Option<IpAddr> {
        match d {
            IpNet::V4(_) => self.ip.map(IpAddr::V4),
            IpNet::V6(_) => self.ip6.map(IpAddr::V6),
        }
    }

    /// (device, MAC) of both VXLAN devices of the node.
    pub fn mac_keys(&self) -> [(String, String); 2] {
        [
            (
                crate::model::VXLAN_DEVICE.to_string(),
                self.vxlan_mac.clone(),
            ),
            (
                crate::model::VXLAN_V6_DEVICE.to_string(),
                self.vxlan_mac6.clone(),
            ),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadFact {
    pub node: String,
    pub iface: String,
    /// Addresses as host routes (`/32`, `/128`).
    pub ips: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFact {
    /// `host:<node>` affinity; virtual and absent affinities are `None`.
    pub host: Option<String>,
    /// Addresses held for another node than the block's host (attribute `node`), ascending.
    pub borrowed: Vec<(IpAddr, String)>,
}

/// The FelixConfiguration fields the routing calculation uses (`None`: default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FelixConfigFact {
    pub vxlan_vni: Option<u32>,
    pub vxlan_port: Option<u16>,
    pub vxlan_mtu: Option<u32>,
    /// `vxlanMTUV6`: MTU of `vxlan-v6.calico`.
    pub vxlan_mtu_v6: Option<u32>,
    pub ipip_mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Pool(PoolFact),
    Node(NodeFact),
    Workload(WorkloadFact),
    Block(BlockFact),
    /// Only confirmed affinities; pending ones count as absent (as upstream).
    Affinity(bool),
    FelixConfig(FelixConfigFact),
}

/// The key prefixes Felix follows (give them to `SyncerConfig::new`).
pub fn watched_prefixes() -> Vec<String> {
    vec![
        keys::resource_prefix(Kind::IPPool, None),
        keys::resource_prefix(Kind::Node, None),
        keys::resource_prefix(Kind::WorkloadEndpoint, None),
        keys::resource_prefix(Kind::FelixConfiguration, None),
        keys::block_prefix(false),
        keys::all_affinities_prefix(),
    ]
}

/// Which fact a key names; `None` for keys Felix ignores.
pub fn decode_key(key: &str) -> Option<FactKey> {
    if let Some((kind, ns, name)) = keys::parse_resource_key(key) {
        return match kind {
            Kind::IPPool => Some(FactKey::Pool(name)),
            Kind::Node => Some(FactKey::Node(name)),
            Kind::WorkloadEndpoint => Some(FactKey::Workload(format!(
                "{}/{name}",
                ns.unwrap_or_default()
            ))),
            Kind::FelixConfiguration => Some(FactKey::FelixConfig(name)),
            _ => None,
        };
    }
    if let Some(cidr) = parse_block_key(key) {
        return Some(FactKey::Block(cidr));
    }
    parse_affinity_key(key).map(|(host, cidr)| FactKey::Affinity { host, cidr })
}

fn bad(key: &str, what: &'static str, reason: impl ToString) -> InputError {
    InputError::BadValue {
        key: key.to_string(),
        what,
        reason: reason.to_string(),
    }
}

/// Decodes a stored value under a key [`decode_key`] accepted.
pub fn decode_value(key: &str, fk: &FactKey, value: &[u8]) -> Result<Fact, InputError> {
    let resource =
        |kind: Kind, what| Resource::from_json(kind, value).map_err(|e| bad(key, what, e));
    Ok(match fk {
        FactKey::Pool(_) => match resource(Kind::IPPool, "IPPool")? {
            Resource::IPPool(p) => {
                let cidr = p.spec.network().ok_or_else(|| InputError::BadField {
                    key: key.to_string(),
                    kind: "IPPool",
                    field: "spec.cidr",
                    value: p.spec.cidr.clone(),
                    expected: "CIDR",
                })?;
                Fact::Pool(PoolFact {
                    cidr: cidr.trunc(),
                    vxlan: p.spec.vxlan_mode.unwrap_or_default(),
                    ipip: p.spec.ipip_mode.unwrap_or_default(),
                    nat_outgoing: p.spec.nat_outgoing.unwrap_or(false),
                    disabled: p.spec.disabled.unwrap_or(false),
                    disable_bgp_export: p.spec.disable_bgp_export.unwrap_or(false),
                })
            }
            _ => return Err(bad(key, "IPPool", "wrong kind")),
        },
        FactKey::Node(name) => match resource(Kind::Node, "Node")? {
            Resource::Node(n) => node_fact(key, name, &n)?,
            _ => return Err(bad(key, "Node", "wrong kind")),
        },
        FactKey::Workload(_) => match resource(Kind::WorkloadEndpoint, "WorkloadEndpoint")? {
            Resource::WorkloadEndpoint(w) => {
                let mut ips = Vec::new();
                for s in &w.spec.ip_networks {
                    let net = s
                        .parse::<IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| InputError::BadField {
                            key: key.to_string(),
                            kind: "WorkloadEndpoint",
                            field: "spec.ipNetworks",
                            value: s.clone(),
                            expected: "address or CIDR",
                        })?;
                    // A workload's addresses are host routes whatever mask was written.
                    ips.push(IpNet::from(net.addr()));
                }
                ips.sort();
                ips.dedup();
                if w.spec.interface_name.is_empty() && !ips.is_empty() {
                    return Err(InputError::BadField {
                        key: key.to_string(),
                        kind: "WorkloadEndpoint",
                        field: "spec.interfaceName",
                        value: String::new(),
                        expected: "host interface name (cali…)",
                    });
                }
                Fact::Workload(WorkloadFact {
                    node: w.spec.node.clone(),
                    iface: w.spec.interface_name.clone(),
                    ips,
                })
            }
            _ => return Err(bad(key, "WorkloadEndpoint", "wrong kind")),
        },
        FactKey::FelixConfig(_) => {
            match resource(Kind::FelixConfiguration, "FelixConfiguration")? {
                Resource::FelixConfiguration(f) => {
                    let s = &f.spec;
                    Fact::FelixConfig(FelixConfigFact {
                        vxlan_vni: s.vxlan_vni.and_then(|v| u32::try_from(v).ok()),
                        vxlan_port: s.vxlan_port.and_then(|v| u16::try_from(v).ok()),
                        vxlan_mtu: s
                            .vxlan_mtu
                            .and_then(|v| u32::try_from(v).ok())
                            .filter(|&v| v > 0),
                        vxlan_mtu_v6: s
                            .vxlan_mtuv6
                            .and_then(|v| u32::try_from(v).ok())
                            .filter(|&v| v > 0),
                        ipip_mtu: s
                            .ipip_mtu
                            .and_then(|v| u32::try_from(v).ok())
                            .filter(|&v| v > 0),
                    })
                }
                _ => return Err(bad(key, "FelixConfiguration", "wrong kind")),
            }
        }
        FactKey::Block(_) => {
            let b = AllocationBlock::from_json(value).map_err(|e| bad(key, "IPAM block", e))?;
            Fact::Block(block_fact(&b))
        }
        FactKey::Affinity { .. } => {
            let a = AffinityValue::from_json(value).map_err(|e| bad(key, "block affinity", e))?;
            Fact::Affinity(a.state == AffinityState::Confirmed && !a.deleted)
        }
    })
}

fn node_fact(
    key: &str,
    name: &str,
    n: &calico_api::resources::node::Node,
) -> Result<Fact, InputError> {
    let addr = n
        .spec
        .bgp
        .as_ref()
        .map(|b| b.ipv4_address.as_str())
        .unwrap_or_default();
    let (ip, subnet) = node_cidr(
        key,
        "spec.bgp.ipv4Address",
        addr,
        parse_node_address,
        "IPv4 CIDR",
    )?;
    let vxlan_tunnel_addr = optional_addr(
        key,
        "spec.ipv4VXLANTunnelAddr",
        &n.spec.ipv4_vxlan_tunnel_addr,
        "IPv4 address",
    )?;
    let ipip = n
        .spec
        .bgp
        .as_ref()
        .map(|b| b.ipv4_ipip_tunnel_addr.as_str())
        .unwrap_or_default();
    let ipip_tunnel_addr = optional_addr(key, "spec.bgp.ipv4IPIPTunnelAddr", ipip, "IPv4 address")?;
    let vxlan_mac = if n.spec.vxlan_tunnel_mac_addr.is_empty() {
        calico_api::naming::vxlan_tunnel_mac(name)
    } else {
        n.spec.vxlan_tunnel_mac_addr.to_ascii_lowercase()
    };
    let addr6 = n
        .spec
        .bgp
        .as_ref()
        .map(|b| b.ipv6_address.as_str())
        .unwrap_or_default();
    let (ip6, subnet6) = node_cidr(
        key,
        "spec.bgp.ipv6Address",
        addr6,
        parse_node_address_v6,
        "IPv6 CIDR",
    )?;
    let vxlan_tunnel_addr6 = optional_addr(
        key,
        "spec.ipv6VXLANTunnelAddr",
        &n.spec.ipv6_vxlan_tunnel_addr,
        "IPv6 address",
    )?;
    let vxlan_mac6 = if n.spec.vxlan_tunnel_mac_addr_v6.is_empty() {
        calico_api::naming::vxlan_v6_tunnel_mac(name)
    } else {
        n.spec.vxlan_tunnel_mac_addr_v6.to_ascii_lowercase()
    };
    Ok(Fact::Node(NodeFact {
        ip,
        subnet,
        vxlan_tunnel_addr,
        ipip_tunnel_addr,
        vxlan_mac,
        ip6,
        subnet6,
        vxlan_tunnel_addr6,
        vxlan_mac6,
    }))
}

/// A node's `address/prefix` field: both parts, or neither when the field is empty.
fn node_cidr<A, N>(
    key: &str,
    field: &'static str,
    value: &str,
    parse: fn(&str) -> Option<(A, N)>,
    expected: &'static str,
) -> Result<(Option<A>, Option<N>), InputError> {
    match parse(value) {
        Some((ip, net)) => Ok((Some(ip), Some(net))),
        None if value.is_empty() => Ok((None, None)),
        None => Err(InputError::BadField {
            key: key.to_string(),
            kind: "Node",
            field,
            value: value.to_string(),
            expected,
        }),
    }
}

/// An optional address field of a node: `None` when empty.
fn optional_addr<T: std::str::FromStr>(
    key: &str,
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<Option<T>, InputError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| InputError::BadField {
        key: key.to_string(),
        kind: "Node",
        field,
        value: value.to_string(),
        expected,
    })
}

/// The routing-relevant part of a block.
pub fn block_fact(b: &AllocationBlock) -> BlockFact {
    let host = b
        .affinity
        .as_deref()
        .and_then(|a| a.strip_prefix("host:"))
        .map(str::to_string);
    let mut borrowed = Vec::new();
    for (ordinal, slot) in b.allocations.iter().enumerate() {
        let Some(attr) = slot.and_then(|i| b.attributes.get(i)) else {
            continue;
        };
        let Some(node) = attr.secondary.get("node").filter(|n| !n.is_empty()) else {
            continue;
        };
        if host.as_deref() == Some(node.as_str()) {
            continue;
        }
        if let Some(ip) = b.ip_at(ordinal) {
            borrowed.push((ip, node.clone()));
        }
    }
    BlockFact { host, borrowed }
}
