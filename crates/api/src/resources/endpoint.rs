//! Endpoints policy applies to: WorkloadEndpoint (a pod's interface, written by the CNI plugin)
//! and HostEndpoint (a host interface or set of host addresses).

use super::common::{
    Protocol, check_cidr, check_interface, check_ip, check_mac, check_name_ref, check_port_name,
    parse_cidr_or_ip, resource_struct,
};
use crate::naming::WorkloadEndpointIdentifiers;
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};

resource_struct!(
    /// `kind: WorkloadEndpoint` (namespaced).
    WorkloadEndpoint,
    WorkloadEndpointSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// The endpoint's own addresses (/32 or /128 each).
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IPNAT>,
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    /// Bandwidth/packet-rate limits; kept as upstream's map of optional integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A 1:1 NAT mapping of a WorkloadEndpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPNAT {
    #[serde(default, rename = "internalIP")]
    pub internal_ip: String,
    #[serde(default, rename = "externalIP")]
    pub external_ip: String,
}

/// A named or host-mapped port of a WorkloadEndpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    #[serde(default)]
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port: u16,
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl WorkloadEndpoint {
    /// The identifiers the endpoint's name is built from (`<node>-<orchestrator>-<pod>-<endpoint>`
    /// for Kubernetes, with `-` doubled inside each part).
    pub fn identifiers(&self) -> WorkloadEndpointIdentifiers {
        let s = &self.spec;
        WorkloadEndpointIdentifiers {
            node: s.node.clone(),
            orchestrator: s.orchestrator.clone(),
            pod: s.pod.clone(),
            container_id: s.container_id.clone(),
            workload: s.workload.clone(),
            endpoint: s.endpoint.clone(),
        }
    }

    /// Names an unnamed endpoint from its identifiers, as upstream's client does.
    pub fn apply_defaults(&mut self) {
        if self.metadata.name.is_empty()
            && let Ok(name) = self.identifiers().name()
        {
            self.metadata.name = name;
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if let Ok(expected) = self.identifiers().name()
            && !self.metadata.name.is_empty()
            && self.metadata.name != expected
        {
            errs.push("metadata.name", format!("the name does not match spec node/orchestrator/pod/endpoint; name it {expected:?} (or leave the name out)"));
        }
        for (f, v) in [
            ("spec.orchestrator", &s.orchestrator),
            ("spec.workload", &s.workload),
            ("spec.node", &s.node),
            ("spec.pod", &s.pod),
            ("spec.endpoint", &s.endpoint),
            ("spec.serviceAccountName", &s.service_account_name),
        ] {
            if !v.is_empty() {
                check_name_ref(v, f, &mut errs);
            }
        }
        if !s.container_id.is_empty() {
            let ok = s
                .container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !s.container_id.starts_with('-')
                && !s.container_id.ends_with('-');
            if !ok {
                errs.push(
                    "spec.containerID",
                    "a container ID is letters, digits and '-' (no leading or trailing '-')",
                );
            }
        }
        for (i, n) in s.ip_networks.iter().enumerate() {
            let f = format!("spec.ipNetworks[{i}]");
            if let Some(net) = super::common::check_net(n, &f, &mut errs)
                && net.prefix_len() != net.max_prefix_len()
            {
                errs.push(f, format!("{n} holds several addresses; a workload endpoint lists single addresses (/32 or /128)"));
            }
        }
        for (i, nat) in s.ip_nats.iter().enumerate() {
            let f = format!("spec.ipNATs[{i}]");
            let int = check_ip(&nat.internal_ip, 0, &format!("{f}.internalIP"), &mut errs);
            let ext = check_ip(&nat.external_ip, 0, &format!("{f}.externalIP"), &mut errs);
            if let (Some(a), Some(b)) = (int, ext) {
                if a.is_ipv4() != b.is_ipv4() {
                    errs.push(
                        format!("{f}.externalIP"),
                        "internalIP and externalIP must be the same IP version",
                    );
                }
                let inside = s
                    .ip_networks
                    .iter()
                    .filter_map(|n| parse_cidr_or_ip(n))
                    .any(|n| n.contains(&a));
                if !inside {
                    errs.push(
                        format!("{f}.internalIP"),
                        format!("{a} is not one of the endpoint's ipNetworks; add it there first"),
                    );
                }
            }
        }
        if !s.ipv4_gateway.is_empty() {
            check_ip(&s.ipv4_gateway, 4, "spec.ipv4Gateway", &mut errs);
        }
        if !s.ipv6_gateway.is_empty() {
            check_ip(&s.ipv6_gateway, 6, "spec.ipv6Gateway", &mut errs);
        }
        for (i, p) in s.profiles.iter().enumerate() {
            check_name_ref(p, &format!("spec.profiles[{i}]"), &mut errs);
        }
        if !s.interface_name.is_empty() {
            check_interface(&s.interface_name, false, "spec.interfaceName", &mut errs);
        }
        if !s.mac.is_empty() {
            check_mac(&s.mac, "spec.mac", &mut errs);
        }
        for (i, p) in s.ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            p.protocol.check(&format!("{f}.protocol"), &mut errs);
            if !p.protocol.supports_ports() {
                errs.push(
                    format!("{f}.protocol"),
                    "ports need protocol TCP, UDP or SCTP",
                );
            }
            if p.port == 0 {
                errs.push(format!("{f}.port"), "port must be 1–65535");
            }
            if p.name.is_empty() && p.host_port == 0 {
                errs.push(format!("{f}.name"), "give the port a name, or a hostPort");
            } else if !p.name.is_empty() {
                check_port_name(&p.name, &format!("{f}.name"), &mut errs);
            }
            if !p.host_ip.is_empty() {
                check_ip(&p.host_ip, 0, &format!("{f}.hostIP"), &mut errs);
            }
        }
        for (i, c) in s.allow_spoofed_source_prefixes.iter().enumerate() {
            check_cidr(
                c,
                &format!("spec.allowSpoofedSourcePrefixes[{i}]"),
                &mut errs,
            );
        }
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: HostEndpoint`.
    HostEndpoint,
    HostEndpointSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// A named port of a HostEndpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl HostEndpoint {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        if s.node.is_empty() {
            errs.push(
                "spec.node",
                "a HostEndpoint belongs to a node; set spec.node",
            );
        } else {
            check_name_ref(&s.node, "spec.node", &mut errs);
        }
        if s.interface_name.is_empty() && s.expected_ips.is_empty() {
            errs.push(
                "spec.interfaceName",
                "set interfaceName (or \"*\"), expectedIPs, or both",
            );
        }
        if !s.interface_name.is_empty() {
            check_interface(&s.interface_name, true, "spec.interfaceName", &mut errs);
        }
        for (i, ip) in s.expected_ips.iter().enumerate() {
            check_ip(ip, 0, &format!("spec.expectedIPs[{i}]"), &mut errs);
        }
        for (i, p) in s.profiles.iter().enumerate() {
            check_name_ref(p, &format!("spec.profiles[{i}]"), &mut errs);
        }
        for (i, p) in s.ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            check_port_name(&p.name, &format!("{f}.name"), &mut errs);
            p.protocol.check(&format!("{f}.protocol"), &mut errs);
            if !p.protocol.supports_ports() {
                errs.push(
                    format!("{f}.protocol"),
                    "ports need protocol TCP, UDP or SCTP",
                );
            }
            if p.port == 0 {
                errs.push(format!("{f}.port"), "port must be 1–65535");
            }
        }
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wep() -> WorkloadEndpoint {
        let mut w = WorkloadEndpoint::new("worker--1-k8s-nginx--abc-eth0");
        w.metadata.namespace = Some("default".into());
        w.spec = WorkloadEndpointSpec {
            orchestrator: "k8s".into(),
            node: "worker-1".into(),
            pod: "nginx-abc".into(),
            endpoint: "eth0".into(),
            container_id: "0123abcd".into(),
            interface_name: "calif3d1a45b809".into(),
            mac: "ee:ee:ee:ee:ee:ee".into(),
            ip_networks: vec!["10.233.116.1/32".into(), "fd00::5/128".into()],
            profiles: vec!["kns.default".into(), "ksa.default.default".into()],
            ..Default::default()
        };
        w
    }

    fn fields(r: Result<(), ValidationErrors>) -> Vec<String> {
        r.err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn workload_endpoint_rules() {
        assert!(wep().validate().is_ok());
        let mut w = wep();
        w.spec.ip_networks = vec!["10.0.0.0/24".into()];
        assert_eq!(fields(w.validate()), ["spec.ipNetworks[0]"]);
        let mut w = wep();
        w.spec.interface_name = "this-name-is-far-too-long".into();
        assert_eq!(fields(w.validate()), ["spec.interfaceName"]);
        let mut w = wep();
        w.spec.ports = vec![WorkloadEndpointPort {
            name: String::new(),
            protocol: Protocol::Name("ICMP".into()),
            port: 80,
            host_port: 0,
            host_ip: String::new(),
        }];
        assert_eq!(
            fields(w.validate()),
            ["spec.ports[0].protocol", "spec.ports[0].name"]
        );
        let mut w = wep();
        w.metadata.name = "worker-1-k8s-nginx-abc-eth0".into();
        assert_eq!(fields(w.validate()), ["metadata.name"]);
        w.metadata.name.clear();
        w.apply_defaults();
        assert_eq!(w.metadata.name, "worker--1-k8s-nginx--abc-eth0");
        let mut w = wep();
        w.spec.ip_nats = vec![IPNAT {
            internal_ip: "10.9.9.9".into(),
            external_ip: "1.2.3.4".into(),
        }];
        assert_eq!(fields(w.validate()), ["spec.ipNATs[0].internalIP"]);
    }

    #[test]
    fn host_endpoint_needs_node_and_interface_or_ips() {
        let h = HostEndpoint::new("h");
        assert_eq!(fields(h.validate()), ["spec.node", "spec.interfaceName"]);
        let mut h = HostEndpoint::new("h");
        h.spec.node = "n1".into();
        h.spec.interface_name = "*".into();
        assert!(h.validate().is_ok());
    }
}
