//! Node: one Calico host — its addresses, BGP identity, tunnel addresses and orchestrator refs.
//! calico-node writes it at startup; users edit `spec.bgp` (AS number, route reflector).

use super::common::{AsNumber, check_cidr, check_interface, check_ip, check_mac};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};

super::common::resource_struct!(
    /// `kind: Node`. Unlike most kinds it carries a `status`.
    Node,
    NodeSpec,
    status: NodeStatus
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr: String,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr_v6: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBGPSpec {
    /// Unset: the cluster's BGPConfiguration asNumber (64512 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Address and subnet, e.g. `192.168.56.11/24`; the subnet decides CrossSubnet.
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_ipip_tunnel_addr: String,
    /// Set ⇒ this node is a route reflector for that cluster ID (an IPv4-formatted ID).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "String::is_empty"
    )]
    pub route_reflector_cluster_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv4_address: String,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv6_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(default)]
    pub address: String,
    /// `CalicoNodeIP`, `InternalIP` or `ExternalIP`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub address_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeInterface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wireguard_public_key: String,
    #[serde(
        default,
        rename = "wireguardPublicKeyV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub wireguard_public_key_v6: String,
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl Node {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if let Some(b) = &s.bgp {
            if *b == NodeBGPSpec::default() {
                errs.push(
                    "spec.bgp",
                    "spec.bgp is empty; remove it or set ipv4Address/ipv6Address",
                );
            }
            if !b.ipv4_address.is_empty() {
                check_family_cidr(&b.ipv4_address, 4, "spec.bgp.ipv4Address", &mut errs);
            }
            if !b.ipv6_address.is_empty() {
                check_family_cidr(&b.ipv6_address, 6, "spec.bgp.ipv6Address", &mut errs);
            }
            if !b.ipv4_ipip_tunnel_addr.is_empty() {
                check_ip(
                    &b.ipv4_ipip_tunnel_addr,
                    4,
                    "spec.bgp.ipv4IPIPTunnelAddr",
                    &mut errs,
                );
            }
            if !b.route_reflector_cluster_id.is_empty() {
                check_ip(
                    &b.route_reflector_cluster_id,
                    4,
                    "spec.bgp.routeReflectorClusterID",
                    &mut errs,
                );
            }
        }
        if !s.ipv4_vxlan_tunnel_addr.is_empty() {
            check_ip(
                &s.ipv4_vxlan_tunnel_addr,
                4,
                "spec.ipv4VXLANTunnelAddr",
                &mut errs,
            );
        }
        if !s.ipv6_vxlan_tunnel_addr.is_empty() {
            check_ip(
                &s.ipv6_vxlan_tunnel_addr,
                6,
                "spec.ipv6VXLANTunnelAddr",
                &mut errs,
            );
        }
        if !s.vxlan_tunnel_mac_addr.is_empty() {
            check_mac(
                &s.vxlan_tunnel_mac_addr,
                "spec.vxlanTunnelMACAddr",
                &mut errs,
            );
        }
        if !s.vxlan_tunnel_mac_addr_v6.is_empty() {
            check_mac(
                &s.vxlan_tunnel_mac_addr_v6,
                "spec.vxlanTunnelMACAddrV6",
                &mut errs,
            );
        }
        if let Some(w) = &s.wireguard {
            if !w.interface_ipv4_address.is_empty() {
                check_ip(
                    &w.interface_ipv4_address,
                    4,
                    "spec.wireguard.interfaceIPv4Address",
                    &mut errs,
                );
            }
            if !w.interface_ipv6_address.is_empty() {
                check_ip(
                    &w.interface_ipv6_address,
                    6,
                    "spec.wireguard.interfaceIPv6Address",
                    &mut errs,
                );
            }
        }
        for (i, a) in s.addresses.iter().enumerate() {
            check_cidr(
                &a.address,
                &format!("spec.addresses[{i}].address"),
                &mut errs,
            );
            if !a.address_type.is_empty() {
                super::common::check_one_of(
                    &a.address_type,
                    &["CalicoNodeIP", "InternalIP", "ExternalIP"],
                    &format!("spec.addresses[{i}].type"),
                    &mut errs,
                );
            }
        }
        for (i, r) in s.orch_refs.iter().enumerate() {
            if r.orchestrator.is_empty() {
                errs.push(
                    format!("spec.orchRefs[{i}].orchestrator"),
                    "set the orchestrator, e.g. k8s",
                );
            }
        }
        for (i, ifc) in s.interfaces.iter().enumerate() {
            if !ifc.name.is_empty() {
                check_interface(
                    &ifc.name,
                    false,
                    &format!("spec.interfaces[{i}].name"),
                    &mut errs,
                );
            }
            for (j, a) in ifc.addresses.iter().enumerate() {
                check_cidr(
                    a,
                    &format!("spec.interfaces[{i}].addresses[{j}]"),
                    &mut errs,
                );
            }
        }
        for (i, c) in self.status.pod_cidrs.iter().enumerate() {
            check_cidr(c, &format!("status.podCIDRs[{i}]"), &mut errs);
        }
        errs.into_result()
    }
}

fn check_family_cidr(s: &str, family: u8, field: &str, errs: &mut ValidationErrors) {
    if let Some(n) = super::common::parse_cidr_or_ip(s) {
        let is_v4 = matches!(n, ipnet::IpNet::V4(_));
        if (family == 4) != is_v4 {
            errs.push(
                field,
                format!(
                    "{s} is not an IPv{family} address; write e.g. {}",
                    if family == 4 {
                        "192.168.1.10/24"
                    } else {
                        "fd00::10/64"
                    }
                ),
            );
        }
    } else {
        errs.push(
            field,
            format!(
                "{s:?} is not an address with prefix; write e.g. {}",
                if family == 4 {
                    "192.168.1.10/24"
                } else {
                    "fd00::10/64"
                }
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rules() {
        let mut n = Node::new("master1");
        n.spec.bgp = Some(NodeBGPSpec {
            ipv4_address: "192.168.56.11/24".into(),
            ..Default::default()
        });
        n.spec.ipv4_vxlan_tunnel_addr = "10.233.104.64".into();
        assert!(n.validate().is_ok());
        n.spec.bgp = Some(NodeBGPSpec {
            ipv4_address: "fd00::1/64".into(),
            ..Default::default()
        });
        assert_eq!(n.validate().unwrap_err().0[0].field, "spec.bgp.ipv4Address");
        n.spec.bgp = Some(NodeBGPSpec::default());
        assert_eq!(n.validate().unwrap_err().0[0].field, "spec.bgp");
        n.spec.bgp = None;
        n.spec.vxlan_tunnel_mac_addr = "66:zz".into();
        n.spec.ipv4_vxlan_tunnel_addr = "10.0.0.1/32".into();
        let f: Vec<_> = n
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(f, ["spec.ipv4VXLANTunnelAddr", "spec.vxlanTunnelMACAddr"]);
    }
}
