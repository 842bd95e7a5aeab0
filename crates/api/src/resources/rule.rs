//! The rule language shared by NetworkPolicy, GlobalNetworkPolicy and Profile: `Rule`,
//! `EntityRule`, ICMP and HTTP matches, and the checks upstream applies to each rule.

use super::common::{
    Port, Protocol, check_name_ref, check_no_global, check_selector, parse_cidr_or_ip,
};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    Log,
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<ICMPFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<ICMPFields>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            icmp: None,
            not_protocol: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ICMPFields {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

impl EntityRule {
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HTTPMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HTTPPath>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HTTPPath {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Which direction a rule list is for (some matches are legal in one direction only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

fn uses_app_layer(r: &Rule) -> bool {
    r.http.is_some()
        || r.source.service_accounts.is_some()
        || r.destination.service_accounts.is_some()
}

/// Checks one rule; `f` is its path, e.g. `spec.ingress[0]`.
pub fn check_rule(r: &Rule, dir: Direction, f: &str, errs: &mut ValidationErrors) {
    if let Some(v) = r.ip_version
        && v != 4
        && v != 6
    {
        errs.push(
            format!("{f}.ipVersion"),
            format!("{v} is not an IP version; use 4 or 6"),
        );
    }
    if let Some(p) = &r.protocol {
        p.check(&format!("{f}.protocol"), errs);
    }
    if let Some(p) = &r.not_protocol {
        p.check(&format!("{f}.notProtocol"), errs);
    }

    let ports_ok = r.protocol.as_ref().is_some_and(Protocol::supports_ports);
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (list, name) in [(&e.ports, "ports"), (&e.not_ports, "notPorts")] {
            if !list.is_empty() && !ports_ok {
                errs.push(
                    format!("{f}.{side}.{name}"),
                    "rules that match ports must set protocol to TCP, UDP or SCTP",
                );
            }
            for (i, p) in list.iter().enumerate() {
                p.check(&format!("{f}.{side}.{name}[{i}]"), errs);
            }
        }
    }

    let is_icmp = |p: &Option<Protocol>, n: &str| {
        p.as_ref().is_some_and(|p| {
            p.is_name(n)
                || matches!(
                    (p, n),
                    (Protocol::Number(1), "ICMP") | (Protocol::Number(58), "ICMPv6")
                )
        })
    };
    for (icmp, name) in [(&r.icmp, "icmp"), (&r.not_icmp, "notICMP")] {
        let Some(icmp) = icmp else { continue };
        let path = format!("{f}.{name}");
        if name == "icmp" && !is_icmp(&r.protocol, "ICMP") && !is_icmp(&r.protocol, "ICMPv6") {
            errs.push(
                &path,
                "rules that match ICMP type/code must set protocol to ICMP or ICMPv6",
            );
        }
        if let Some(t) = icmp.icmp_type
            && !(0..=254).contains(&t)
        {
            errs.push(
                format!("{path}.type"),
                format!("ICMP type {t} is out of range; use 0–254"),
            );
        }
        if let Some(c) = icmp.code
            && !(0..=255).contains(&c)
        {
            errs.push(
                format!("{path}.code"),
                format!("ICMP code {c} is out of range; use 0–255"),
            );
        }
        if icmp.code.is_some() && icmp.icmp_type.is_none() {
            errs.push(
                format!("{path}.code"),
                "an ICMP code needs an ICMP type; set type as well",
            );
        }
    }
    if (is_icmp(&r.protocol, "ICMP") || is_icmp(&r.not_protocol, "ICMP"))
        && r.ip_version.is_some_and(|v| v != 4)
    {
        errs.push(
            format!("{f}.ipVersion"),
            "protocol ICMP needs ipVersion 4 (use ICMPv6 for IPv6)",
        );
    }
    if (is_icmp(&r.protocol, "ICMPv6") || is_icmp(&r.not_protocol, "ICMPv6"))
        && r.ip_version.is_some_and(|v| v != 6)
    {
        errs.push(
            format!("{f}.ipVersion"),
            "protocol ICMPv6 needs ipVersion 6",
        );
    }

    // Nets: each a valid CIDR, one IP family per rule, matching ipVersion.
    let (mut seen4, mut seen6) = (false, false);
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (list, name) in [(&e.nets, "nets"), (&e.not_nets, "notNets")] {
            let (mut v4, mut v6) = (false, false);
            for (i, n) in list.iter().enumerate() {
                match parse_cidr_or_ip(n) {
                    None => errs.push(
                        format!("{f}.{side}.{name}[{i}]"),
                        format!("{n:?} is not a CIDR; write e.g. 10.0.0.0/8"),
                    ),
                    Some(net) => {
                        v4 |= net.addr().is_ipv4();
                        v6 |= net.addr().is_ipv6();
                    }
                }
            }
            let path = format!("{f}.{side}.{name}");
            if let Some(ver) = r.ip_version
                && ((v4 && ver != 4) || (v6 && ver != 6))
            {
                errs.push(&path, format!("CIDRs do not match ipVersion {ver}"));
            }
            if (v4 && (v6 || seen6)) || (v6 && seen4) {
                errs.push(
                    &path,
                    "a rule cannot mix IPv4 and IPv6 CIDRs; split it into two rules",
                );
            }
            seen4 |= v4;
            seen6 |= v6;
        }
        check_entity(e, dir, side, f, errs);
    }

    if let Some(h) = &r.http {
        if let Some(p) = &r.protocol
            && !p.is_name("TCP")
        {
            errs.push(
                format!("{f}.protocol"),
                "rules with http matches must use protocol TCP or leave it empty",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &h.methods {
            if !seen.insert(m) {
                errs.push(
                    format!("{f}.http.methods"),
                    format!("method {m:?} is listed twice"),
                );
            }
        }
        for (i, p) in h.paths.iter().enumerate() {
            let path = format!("{f}.http.paths[{i}]");
            let v = match (p.exact.is_empty(), p.prefix.is_empty()) {
                (false, false) => {
                    errs.push(&path, "set exact or prefix, not both");
                    continue;
                }
                (true, true) => {
                    errs.push(&path, "set exact or prefix");
                    continue;
                }
                (false, true) => &p.exact,
                (true, false) => &p.prefix,
            };
            if !v.starts_with('/') || v.contains(['?', ' ', '#']) {
                errs.push(
                    &path,
                    format!("{v:?} is not a path: start with / and leave out '?', '#' and spaces"),
                );
            }
        }
    }
    if uses_app_layer(r) && r.action != Action::Allow {
        errs.push(
            f,
            "http and serviceAccounts matches are only valid in Allow rules",
        );
    }
    if dir == Direction::Egress && r.http.is_some() {
        errs.push(
            format!("{f}.http"),
            "http matches are not allowed in egress rules",
        );
    }
    if r.destination.services.is_some()
        && (!r.destination.ports.is_empty() || !r.destination.not_ports.is_empty())
    {
        errs.push(
            format!("{f}.destination.ports"),
            "a services match takes its ports from the service; remove ports/notPorts",
        );
    }
    if let Some(m) = &r.metadata {
        for k in m.annotations.keys() {
            if !super::common::is_qualified_name(&k.to_ascii_lowercase()) {
                errs.push(
                    format!("{f}.metadata.annotations[{k}]"),
                    "invalid annotation key: use [prefix/]name",
                );
            }
        }
    }
}

fn check_entity(e: &EntityRule, dir: Direction, side: &str, f: &str, errs: &mut ValidationErrors) {
    let p = format!("{f}.{side}");
    if !e.selector.is_empty() {
        check_selector(&e.selector, &format!("{p}.selector"), errs);
        check_no_global(&e.selector, &format!("{p}.selector"), errs);
    }
    if !e.not_selector.is_empty() {
        check_selector(&e.not_selector, &format!("{p}.notSelector"), errs);
    }
    if !e.namespace_selector.is_empty() {
        check_selector(
            &e.namespace_selector,
            &format!("{p}.namespaceSelector"),
            errs,
        );
        if e.namespace_selector.contains("global(") && e.namespace_selector.trim() != "global()" {
            errs.push(
                format!("{p}.namespaceSelector"),
                "global() cannot be combined with other selector terms; use global() alone",
            );
        }
    }
    if let Some(sa) = &e.service_accounts
        && !sa.selector.is_empty()
    {
        check_selector(&sa.selector, &format!("{p}.serviceAccounts.selector"), errs);
    }
    if let Some(svc) = &e.services {
        let sp = format!("{p}.services");
        if svc.name.is_empty() {
            errs.push(
                format!("{sp}.name"),
                "a services match needs the service name",
            );
        } else {
            check_name_ref(&svc.name, &format!("{sp}.name"), errs);
        }
        if !svc.namespace.is_empty() {
            check_name_ref(&svc.namespace, &format!("{sp}.namespace"), errs);
        }
        if !e.namespace_selector.is_empty() {
            errs.push(&sp, "services cannot be combined with namespaceSelector");
        }
        if !e.selector.is_empty() || !e.not_selector.is_empty() {
            errs.push(&sp, "services cannot be combined with selector/notSelector");
        }
        if e.service_accounts.is_some() {
            errs.push(&sp, "services cannot be combined with serviceAccounts");
        }
        if !e.nets.is_empty() || !e.not_nets.is_empty() {
            errs.push(&sp, "services cannot be combined with nets/notNets (the service's endpoints give the addresses)");
        }
        match (dir, side) {
            (Direction::Egress, "source") => errs.push(
                &sp,
                "services are not allowed in an egress rule's source; match them as destination",
            ),
            (Direction::Ingress, "destination") => errs.push(
                &sp,
                "services are not allowed in an ingress rule's destination; match them as source",
            ),
            _ => {}
        }
    }
}

/// Checks a rule list (`spec.ingress` / `spec.egress`).
pub fn check_rules(rules: &[Rule], dir: Direction, f: &str, errs: &mut ValidationErrors) {
    for (i, r) in rules.iter().enumerate() {
        check_rule(r, dir, &format!("{f}[{i}]"), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(r: &Rule, dir: Direction) -> Vec<String> {
        let mut e = ValidationErrors::default();
        check_rule(r, dir, "spec.ingress[0]", &mut e);
        e.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn ports_need_a_port_protocol() {
        let mut r = Rule::new(Action::Allow);
        r.destination.ports = vec![
            Port::single(80),
            Port::Range {
                min: 8080,
                max: 8090,
            },
            Port::Named("http".into()),
        ];
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].destination.ports"]
        );
        r.protocol = Some(Protocol::Name("TCP".into()));
        assert!(check(&r, Direction::Ingress).is_empty());
        r.protocol = Some(Protocol::Number(17));
        assert!(check(&r, Direction::Ingress).is_empty());
        r.protocol = Some(Protocol::Name("ICMP".into()));
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].destination.ports"]
        );
        r.protocol = Some(Protocol::Name("SCTP".into()));
        r.source.not_ports = vec![Port::single(0)];
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].source.notPorts[0]"]
        );
    }

    #[test]
    fn icmp_rules() {
        let mut r = Rule::new(Action::Allow);
        r.icmp = Some(ICMPFields {
            icmp_type: None,
            code: Some(0),
        });
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].icmp", "spec.ingress[0].icmp.code"]
        );
        r.protocol = Some(Protocol::Name("ICMP".into()));
        r.icmp = Some(ICMPFields {
            icmp_type: Some(255),
            code: Some(256),
        });
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].icmp.type", "spec.ingress[0].icmp.code"]
        );
        r.icmp = Some(ICMPFields {
            icmp_type: Some(8),
            code: Some(0),
        });
        r.ip_version = Some(6);
        assert_eq!(check(&r, Direction::Ingress), ["spec.ingress[0].ipVersion"]);
        r.ip_version = Some(4);
        assert!(check(&r, Direction::Ingress).is_empty());
    }

    #[test]
    fn nets_and_versions() {
        let mut r = Rule::new(Action::Deny);
        r.source.nets = vec!["10.0.0.0/8".into()];
        r.destination.nets = vec!["fd00::/8".into()];
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].destination.nets"]
        );
        r.destination.nets = vec!["bogus".into()];
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].destination.nets[0]"]
        );
        r.destination.nets.clear();
        r.ip_version = Some(6);
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].source.nets"]
        );
        r.ip_version = Some(5);
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].ipVersion", "spec.ingress[0].source.nets"]
        );
    }

    #[test]
    fn services_and_http() {
        let mut r = Rule::new(Action::Allow);
        r.destination.services = Some(ServiceMatch {
            name: "kube-dns".into(),
            namespace: "kube-system".into(),
        });
        assert!(check(&r, Direction::Egress).is_empty());
        assert_eq!(
            check(&r, Direction::Ingress),
            ["spec.ingress[0].destination.services"]
        );
        let mut r = Rule::new(Action::Deny);
        r.http = Some(HTTPMatch {
            methods: vec!["GET".into(), "GET".into()],
            paths: vec![HTTPPath {
                exact: "x".into(),
                prefix: String::new(),
            }],
        });
        assert_eq!(
            check(&r, Direction::Ingress),
            [
                "spec.ingress[0].http.methods",
                "spec.ingress[0].http.paths[0]",
                "spec.ingress[0]"
            ]
        );
    }

    #[test]
    fn rules_parse_with_upstream_names() {
        let r: Rule = serde_json::from_str(
            r#"{"action":"Allow","protocol":"TCP","notICMP":{"type":8},"source":{"selector":"app == 'a'","notNets":["10.0.0.0/8"]},
                "destination":{"ports":[80,"8080:8090","http"],"namespaceSelector":"global()"}}"#,
        )
        .unwrap();
        assert_eq!(r.destination.ports.len(), 3);
        assert!(check(&r, Direction::Ingress).is_empty());
        assert!(serde_json::from_str::<Rule>(r#"{"action":"Drop"}"#).is_err());
        assert!(serde_json::from_str::<Rule>(r#"{"action":"Allow","sauce":{}}"#).is_err());
    }
}
