//! BGP resources: BGPConfiguration (cluster or per-node settings), BGPPeer (who peers with whom)
//! and BGPFilter (import/export rules).
//!
//! Upstream stores BGPConfiguration without filling defaults; the running values come from the
//! `effective_*` accessors (AS 64512, mesh on, port 179, mesh restart time 120 s), so a
//! resource printed by `get` applies again unchanged.

use super::common::{
    AsNumber, check_duration, check_ip, check_log_level, check_name_ref, check_net, check_one_of,
    check_selector, parse_cidr_or_ip, resource_struct,
};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The AS number nodes use when neither the Node nor BGPConfiguration names one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;

resource_struct!(
    /// `kind: BGPConfiguration`: `default` for the cluster, `node.<name>` per node.
    BGPConfiguration,
    BGPConfigurationSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<CidrBlock>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<CidrBlock>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<CidrBlock>,
    /// `Enabled` | `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// A Go duration such as `120s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// `None` | `NodeIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv4: Option<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv6: Option<String>,
}

/// `{cidr: …}` entries of the service advertisement lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CidrBlock {
    #[serde(default)]
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A password held in a Kubernetes secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl BGPConfigurationSpec {
    pub fn effective_as_number(&self) -> u32 {
        self.as_number.map_or(DEFAULT_AS_NUMBER, |a| a.0)
    }
    pub fn mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }
    pub fn effective_listen_port(&self) -> u16 {
        self.listen_port.unwrap_or(179)
    }
    /// Seconds; 120 when unset.
    pub fn mesh_max_restart_seconds(&self) -> f64 {
        self.node_mesh_max_restart_time
            .as_deref()
            .and_then(super::common::parse_duration)
            .unwrap_or(120.0)
    }
}

/// `aa:nn` (two 16-bit halves) or large `aa:nn:mm` (three 32-bit parts).
fn is_community(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

impl BGPConfiguration {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if let Some(l) = &s.log_severity_screen {
            check_log_level(l, "spec.logSeverityScreen", &mut errs);
        }
        for (list, name) in [
            (&s.service_load_balancer_ips, "serviceLoadBalancerIPs"),
            (&s.service_external_ips, "serviceExternalIPs"),
            (&s.service_cluster_ips, "serviceClusterIPs"),
        ] {
            for (i, b) in list.iter().enumerate() {
                check_net(&b.cidr, &format!("spec.{name}[{i}].cidr"), &mut errs);
            }
        }
        if let Some(a) = &s.service_load_balancer_aggregation {
            check_one_of(
                a,
                &["Enabled", "Disabled"],
                "spec.serviceLoadBalancerAggregation",
                &mut errs,
            );
        }
        for (i, c) in s.communities.iter().enumerate() {
            if c.name.is_empty() {
                errs.push(
                    format!("spec.communities[{i}].name"),
                    "give the community a name",
                );
            } else {
                check_name_ref(&c.name, &format!("spec.communities[{i}].name"), &mut errs);
            }
            if !is_community(&c.value) {
                errs.push(format!("spec.communities[{i}].value"), format!("{:?} is not a community; write aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)", c.value));
            }
        }
        if !s.communities.is_empty() && s.prefix_advertisements.is_empty() {
            errs.push("spec.communities", "communities are defined but no prefixAdvertisements use them; add prefixAdvertisements or remove communities");
        }
        for (i, pa) in s.prefix_advertisements.iter().enumerate() {
            super::common::check_cidr(
                &pa.cidr,
                &format!("spec.prefixAdvertisements[{i}].cidr"),
                &mut errs,
            );
            for (j, c) in pa.communities.iter().enumerate() {
                if !is_community(c) && !s.communities.iter().any(|d| &d.name == c) {
                    errs.push(format!("spec.prefixAdvertisements[{i}].communities[{j}]"), format!("{c:?} is neither a community value nor the name of one in spec.communities"));
                }
            }
        }
        if s.listen_port == Some(0) {
            errs.push(
                "spec.listenPort",
                "listenPort must be 1–65535 (default 179)",
            );
        }
        if let Some(d) = &s.node_mesh_max_restart_time {
            check_duration(d, "spec.nodeMeshMaxRestartTime", &mut errs);
        }
        let mesh_off = s.node_to_node_mesh_enabled == Some(false);
        if mesh_off && s.node_mesh_password.is_some() {
            errs.push(
                "spec.nodeMeshPassword",
                "nodeMeshPassword cannot be set while nodeToNodeMeshEnabled is false",
            );
        }
        if mesh_off && s.node_mesh_max_restart_time.is_some() {
            errs.push(
                "spec.nodeMeshMaxRestartTime",
                "nodeMeshMaxRestartTime cannot be set while nodeToNodeMeshEnabled is false",
            );
        }
        if let Some(p) = &s.node_mesh_password {
            check_password(p, "spec.nodeMeshPassword", &mut errs);
        }
        if let Some(b) = &s.bind_mode {
            check_one_of(b, &["None", "NodeIP"], "spec.bindMode", &mut errs);
        }
        for (i, ifc) in s.ignored_interfaces.iter().enumerate() {
            let f = format!("spec.ignoredInterfaces[{i}]");
            if ifc == "*" {
                errs.push(
                    f,
                    "\"*\" would ignore every interface; name interfaces or use a prefix like eth*",
                );
            } else {
                let ok = !ifc.is_empty()
                    && ifc.len() <= 15
                    && ifc
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.*-".contains(&b));
                if !ok {
                    errs.push(f, format!("{ifc:?} is not an interface name or pattern (at most 15 of letters, digits, '_', '.', '-', '*')"));
                }
            }
        }
        if let Some(a) = &s.local_workload_peering_ipv4 {
            check_ip(a, 4, "spec.localWorkloadPeeringIPV4", &mut errs);
        }
        if let Some(a) = &s.local_workload_peering_ipv6 {
            check_ip(a, 6, "spec.localWorkloadPeeringIPV6", &mut errs);
        }
        if self.metadata.name != "default" {
            // Cluster-wide settings live only in `default`; per-node configs (`node.<name>`)
            // cannot override them.
            let set = [
                (
                    "nodeToNodeMeshEnabled",
                    s.node_to_node_mesh_enabled.is_some(),
                ),
                ("asNumber", s.as_number.is_some()),
                ("serviceExternalIPs", !s.service_external_ips.is_empty()),
                ("serviceClusterIPs", !s.service_cluster_ips.is_empty()),
            ];
            for (field, is_set) in set {
                if is_set {
                    errs.push(format!("spec.{field}"), format!("{field} can only be set in the BGPConfiguration named default; move it there (set per-node AS numbers in Node spec.bgp.asNumber)"));
                }
            }
        }
        errs.into_result()
    }
}

fn check_password(p: &BGPPassword, field: &str, errs: &mut ValidationErrors) {
    match &p.secret_key_ref {
        None => errs.push(
            field,
            "set secretKeyRef {name, key} to the secret holding the password",
        ),
        Some(r) if r.key.is_empty() || r.name.is_empty() => errs.push(
            format!("{field}.secretKeyRef"),
            "set both name and key of the secret",
        ),
        Some(_) => {}
    }
}

resource_struct!(
    /// `kind: BGPPeer`.
    BGPPeer,
    BGPPeerSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// Only this node peers (empty and no nodeSelector: every node).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// `ip`, `ipv4:port` or `[ipv6]:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// `Auto` | `Self` | `Keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// `UseNodeIP` (default) | `None`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_allowed_local_as_numbers: Option<i32>,
    #[serde(
        default,
        rename = "ttlSecurity",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_security: Option<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reachable_by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_workload_selector: String,
    /// `Auto` | `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<String>,
}

/// Splits a peerIP (`ip`, `a.b.c.d:port`, `[v6]:port`) into address and optional port.
pub fn parse_peer_ip(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    if ip.is_ipv6() && !s.starts_with('[') {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p >= 1)?;
    Some((ip, Some(port)))
}

impl BGPPeer {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if !s.node.is_empty() {
            check_name_ref(&s.node, "spec.node", &mut errs);
        }
        if !s.node.is_empty() && !s.node_selector.is_empty() {
            errs.push(
                "spec.node",
                "node and nodeSelector are exclusive; keep one of them",
            );
        }
        if !s.node_selector.is_empty() {
            check_selector(&s.node_selector, "spec.nodeSelector", &mut errs);
        }
        if !s.peer_selector.is_empty() {
            check_selector(&s.peer_selector, "spec.peerSelector", &mut errs);
        }
        if !s.local_workload_selector.is_empty() {
            check_selector(
                &s.local_workload_selector,
                "spec.localWorkloadSelector",
                &mut errs,
            );
        }
        let peer = if s.peer_ip.is_empty() {
            None
        } else {
            let p = parse_peer_ip(&s.peer_ip);
            if p.is_none() {
                errs.push(
                    "spec.peerIP",
                    format!(
                        "{:?} is not a peer address; write an IP, a.b.c.d:port or [v6addr]:port",
                        s.peer_ip
                    ),
                );
            }
            p
        };
        if s.peer_ip.is_empty()
            && s.peer_selector.is_empty()
            && s.local_workload_selector.is_empty()
        {
            errs.push("spec.peerIP", "say whom to peer with: set peerIP (with asNumber), peerSelector, or localWorkloadSelector");
        }
        if !s.peer_ip.is_empty() && !s.peer_selector.is_empty() {
            errs.push(
                "spec.peerIP",
                "peerIP and peerSelector are exclusive; keep one of them",
            );
        }
        let asn_set = s.as_number.is_some_and(|a| a.0 != 0);
        if asn_set && !s.peer_selector.is_empty() {
            errs.push("spec.asNumber", "asNumber must be empty with peerSelector (the selected nodes' own AS numbers are used)");
        }
        if !asn_set && !s.local_workload_selector.is_empty() {
            errs.push(
                "spec.asNumber",
                "asNumber is required with localWorkloadSelector",
            );
        }
        if !s.peer_ip.is_empty() && !s.local_workload_selector.is_empty() {
            errs.push(
                "spec.peerIP",
                "peerIP must be empty with localWorkloadSelector",
            );
        }
        if !s.peer_selector.is_empty() && !s.local_workload_selector.is_empty() {
            errs.push(
                "spec.peerSelector",
                "peerSelector must be empty with localWorkloadSelector",
            );
        }
        if !s.reachable_by.is_empty() {
            match (s.reachable_by.parse::<IpAddr>(), peer) {
                (Err(_), _) => errs.push(
                    "spec.reachableBy",
                    format!("{:?} is not an IP address", s.reachable_by),
                ),
                (Ok(_), None) if s.peer_ip.is_empty() => errs.push(
                    "spec.reachableBy",
                    "reachableBy needs peerIP; set peerIP or remove reachableBy",
                ),
                (Ok(r), Some((p, _))) if r.is_ipv4() != p.is_ipv4() => errs.push(
                    "spec.reachableBy",
                    "reachableBy and peerIP must be the same IP version",
                ),
                _ => {}
            }
        }
        if let Some(m) = &s.next_hop_mode {
            check_one_of(m, &["Auto", "Self", "Keep"], "spec.nextHopMode", &mut errs);
            if s.keep_original_next_hop {
                errs.push("spec.keepOriginalNextHop", "keepOriginalNextHop is deprecated and cannot be true with nextHopMode; use nextHopMode: Keep");
            }
        }
        if let Some(p) = &s.password {
            check_password(p, "spec.password", &mut errs);
        }
        if !s.source_address.is_empty() {
            check_one_of(
                &s.source_address,
                &["UseNodeIP", "None"],
                "spec.sourceAddress",
                &mut errs,
            );
        }
        if let Some(d) = &s.max_restart_time {
            check_duration(d, "spec.maxRestartTime", &mut errs);
        }
        if s.num_allowed_local_as_numbers.is_some_and(|n| n < 0) {
            errs.push("spec.numAllowedLocalASNumbers", "must be 0 or more");
        }
        for (i, f) in s.filters.iter().enumerate() {
            check_name_ref(f, &format!("spec.filters[{i}]"), &mut errs);
        }
        if let Some(r) = &s.reverse_peering {
            check_one_of(r, &["Auto", "Manual"], "spec.reversePeering", &mut errs);
        }
        errs.into_result()
    }
}

/// The address part of a BGPPeer's peerIP, if valid.
pub fn peer_address(spec: &BGPPeerSpec) -> Option<IpAddr> {
    parse_peer_ip(&spec.peer_ip)
        .map(|(a, _)| a)
        .or_else(|| parse_cidr_or_ip(&spec.peer_ip).map(|n| n.addr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<(), ValidationErrors>) -> Vec<String> {
        r.err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn peer_ip_forms() {
        assert_eq!(
            parse_peer_ip("192.168.100.1"),
            Some(("192.168.100.1".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("192.168.100.1:1179"),
            Some(("192.168.100.1".parse().unwrap(), Some(1179)))
        );
        assert_eq!(
            parse_peer_ip("[2001:db8::1]:179"),
            Some(("2001:db8::1".parse().unwrap(), Some(179)))
        );
        assert!(parse_peer_ip("2001:193:168:1::4").is_some());
        assert!(parse_peer_ip("10.0.0.1:0").is_none());
        assert!(parse_peer_ip("peer.example").is_none());
    }

    #[test]
    fn peer_rules() {
        let mut p = BGPPeer::new("leaf");
        p.spec.peer_ip = "192.168.100.1".into();
        p.spec.as_number = Some(AsNumber(65102));
        assert!(p.validate().is_ok());
        p.spec.node = "master-1".into();
        p.spec.node_selector = "all()".into();
        assert_eq!(fields(p.validate()), ["spec.node"]);
        p.spec.node_selector.clear();
        p.spec.peer_selector = "has(rr)".into();
        assert_eq!(fields(p.validate()), ["spec.peerIP", "spec.asNumber"]);
        let mut p = BGPPeer::new("x");
        p.spec.peer_ip = "300.1.1.1".into();
        assert_eq!(fields(p.validate()), ["spec.peerIP"]);
        let mut p = BGPPeer::new("x");
        assert_eq!(fields(p.validate()), ["spec.peerIP"]);
        p.spec.peer_ip = "10.0.0.1".into();
        p.spec.reachable_by = "fd00::1".into();
        p.spec.source_address = "Wrong".into();
        assert_eq!(
            fields(p.validate()),
            ["spec.reachableBy", "spec.sourceAddress"]
        );
    }

    #[test]
    fn as_number_range_is_refused_when_parsing() {
        let r: Result<BGPPeerSpec, _> =
            serde_json::from_str(r#"{"peerIP":"10.0.0.1","asNumber":4294967296}"#);
        assert!(r.unwrap_err().to_string().contains("out of range"));
        let ok: BGPPeerSpec =
            serde_json::from_str(r#"{"peerIP":"10.0.0.1","asNumber":"1.10"}"#).unwrap();
        assert_eq!(ok.as_number, Some(AsNumber(65546)));
    }

    #[test]
    fn cluster_wide_bgp_settings_only_in_default() {
        let mut c = BGPConfiguration::new("node.worker-1");
        c.spec.log_severity_screen = Some("Debug".into());
        assert!(c.validate().is_ok());
        c.spec.as_number = Some(AsNumber(65001));
        c.spec.service_cluster_ips = vec![CidrBlock {
            cidr: "10.96.0.0/12".into(),
        }];
        assert_eq!(
            fields(c.validate()),
            ["spec.asNumber", "spec.serviceClusterIPs"]
        );
    }

    #[test]
    fn bgp_configuration_rules_and_effective_values() {
        let mut c = BGPConfiguration::new("default");
        assert_eq!(c.spec.effective_as_number(), 64512);
        assert!(c.spec.mesh_enabled());
        assert_eq!(c.spec.mesh_max_restart_seconds(), 120.0);
        c.spec.node_to_node_mesh_enabled = Some(false);
        c.spec.node_mesh_max_restart_time = Some("90s".into());
        c.spec.log_severity_screen = Some("verbose".into());
        c.spec.service_cluster_ips = vec![CidrBlock {
            cidr: "10.96.0.0/12".into(),
        }];
        c.spec.communities = vec![Community {
            name: "c".into(),
            value: "65000:100".into(),
        }];
        assert_eq!(
            fields(c.validate()),
            [
                "spec.logSeverityScreen",
                "spec.communities",
                "spec.nodeMeshMaxRestartTime"
            ]
        );
        c.spec.prefix_advertisements = vec![PrefixAdvertisement {
            cidr: "10.0.0.0/8".into(),
            communities: vec!["c".into(), "1:2:3".into(), "nope".into()],
        }];
        c.spec.node_mesh_max_restart_time = None;
        c.spec.log_severity_screen = Some("Info".into());
        assert_eq!(
            fields(c.validate()),
            ["spec.prefixAdvertisements[0].communities[2]"]
        );
    }
}
