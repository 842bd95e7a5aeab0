//! IPPool: a CIDR that IPAM splits into per-node blocks, and how traffic to it is encapsulated.
//!
//! Defaults (upstream's client fills them on create, so `get` prints them and they apply again
//! unchanged): blockSize 26 / 122, nodeSelector `all()`, ipipMode and vxlanMode `Never`,
//! allowedUses `[Workload, Tunnel]`, assignmentMode `Automatic`.

use super::common::{check_selector, parse_cidr_or_ip, resource_struct};
use crate::validate::ValidationErrors;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

resource_struct!(
    /// `kind: IPPool`.
    IPPool,
    IPPoolSpec
);

/// `ipipMode` / `vxlanMode`. An empty string reads as `Never`, as upstream treats it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

impl<'de> Deserialize<'de> for EncapMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "" | "Never" => Ok(EncapMode::Never),
            "Always" => Ok(EncapMode::Always),
            "CrossSubnet" => Ok(EncapMode::CrossSubnet),
            other => Err(serde::de::Error::custom(format!(
                "unknown encapsulation mode {other:?}; use Never, Always or CrossSubnet"
            ))),
        }
    }
}

impl EncapMode {
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// What addresses of a pool may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// Whether IPAM picks the pool on its own (`Automatic`) or only when asked for it (`Manual`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssignmentMode {
    #[default]
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, rename = "vxlanMode", skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, rename = "ipipMode", skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_uses: Option<Vec<AllowedUse>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

impl IPPoolSpec {
    /// The parsed CIDR, if it parses.
    pub fn network(&self) -> Option<IpNet> {
        parse_cidr_or_ip(&self.cidr)
    }
    pub fn ipip(&self) -> EncapMode {
        self.ipip_mode.unwrap_or_default()
    }
    pub fn vxlan(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or_default()
    }
    /// blockSize, or the family default (26 / 122) when unset.
    pub fn effective_block_size(&self) -> u8 {
        match (self.block_size.filter(|b| *b != 0), self.network()) {
            (Some(b), _) => b,
            (None, Some(IpNet::V6(_))) => 122,
            (None, _) => 26,
        }
    }
    /// allowedUses, or `[Workload, Tunnel]` when unset or empty.
    pub fn uses(&self) -> Vec<AllowedUse> {
        match &self.allowed_uses {
            Some(u) if !u.is_empty() => u.clone(),
            _ => vec![AllowedUse::Workload, AllowedUse::Tunnel],
        }
    }
    pub fn is_disabled(&self) -> bool {
        self.disabled.unwrap_or(false)
    }
}

impl IPPool {
    pub fn apply_defaults(&mut self) {
        let s = &mut self.spec;
        // Normalise a bare address to CIDR form, as upstream does before persisting.
        if let Some(n) = s.network()
            && !s.cidr.contains('/')
        {
            s.cidr = n.to_string();
        }
        if s.block_size.is_none() || s.block_size == Some(0) {
            s.block_size = Some(s.effective_block_size());
        }
        if s.node_selector.as_deref().is_none_or(str::is_empty) {
            s.node_selector = Some("all()".into());
        }
        s.ipip_mode.get_or_insert(EncapMode::Never);
        s.vxlan_mode.get_or_insert(EncapMode::Never);
        if s.allowed_uses.as_ref().is_none_or(Vec::is_empty) {
            s.allowed_uses = Some(vec![AllowedUse::Workload, AllowedUse::Tunnel]);
        }
        s.assignment_mode.get_or_insert(AssignmentMode::Automatic);
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        let net = if s.cidr.trim().is_empty() {
            errs.push(
                "spec.cidr",
                "an IPPool needs a CIDR; set spec.cidr, e.g. 192.168.0.0/16",
            );
            None
        } else {
            match parse_cidr_or_ip(&s.cidr) {
                None => {
                    errs.push(
                        "spec.cidr",
                        format!(
                            "{:?} is not a valid CIDR; write e.g. 192.168.0.0/16 or fd00:10::/64",
                            s.cidr
                        ),
                    );
                    None
                }
                Some(n) => Some(n),
            }
        };
        let v6 = matches!(net, Some(IpNet::V6(_)));
        if let Some(n) = net {
            if n.trunc() != n {
                errs.push(
                    "spec.cidr",
                    format!("{} is not strictly masked; write {}", s.cidr, n.trunc()),
                );
            }
            let link_local: IpNet = if v6 {
                IpNet::V6("fe80::/10".parse().unwrap_or_default())
            } else {
                IpNet::V4("169.254.0.0/16".parse().unwrap_or_default())
            };
            if overlaps(&n.trunc(), &link_local) {
                errs.push(
                    "spec.cidr",
                    format!(
                        "{} overlaps the link-local range {link_local}; choose a range outside it",
                        s.cidr
                    ),
                );
            }
        }

        let (lo, hi) = if v6 { (116, 128) } else { (20, 32) };
        let block = s.effective_block_size();
        if s.block_size.is_some_and(|b| b != 0) && !(lo..=hi).contains(&block) {
            let fam = if v6 { "IPv6" } else { "IPv4" };
            errs.push(
                "spec.blockSize",
                format!("{block} is out of range; use {lo}–{hi} for an {fam} pool"),
            );
        } else if let Some(n) = net
            && !s.is_disabled()
            && n.prefix_len() > block
        {
            errs.push("spec.blockSize", format!("the pool /{} is smaller than one block /{block}; use a blockSize of at least {} or a larger cidr", n.prefix_len(), n.prefix_len()));
        }

        if v6 && s.ipip().enabled() {
            errs.push("spec.ipipMode", "IPIP is not supported on an IPv6 pool; set ipipMode: Never (use vxlanMode for encapsulation)");
        }
        if s.ipip().enabled() && s.vxlan().enabled() {
            errs.push(
                "spec.vxlanMode",
                "ipipMode and vxlanMode cannot both be enabled; set one of them to Never",
            );
        }

        if let Some(uses) = &s.allowed_uses {
            let lb = uses.contains(&AllowedUse::LoadBalancer);
            if lb {
                for (i, u) in uses.iter().enumerate() {
                    if *u != AllowedUse::LoadBalancer {
                        errs.push(format!("spec.allowedUses[{i}]"), format!("LoadBalancer cannot be combined with {u:?}; use a separate pool for LoadBalancer addresses"));
                    }
                }
                if s.ipip().enabled() || s.vxlan().enabled() {
                    errs.push("spec.ipipMode", "a LoadBalancer pool cannot use encapsulation; set ipipMode and vxlanMode to Never");
                }
                if s.node_selector
                    .as_deref()
                    .is_some_and(|n| !n.is_empty() && n.trim() != "all()")
                {
                    errs.push(
                        "spec.nodeSelector",
                        "a LoadBalancer pool must have nodeSelector all()",
                    );
                }
            }
        }
        if let Some(ns) = &s.node_selector {
            check_selector(ns, "spec.nodeSelector", &mut errs);
        }
        if let Some(ns) = &s.namespace_selector {
            check_selector(ns, "spec.namespaceSelector", &mut errs);
        }
        errs.into_result()
    }

    /// cidr and blockSize cannot change once the pool exists (its blocks were carved from them).
    pub fn validate_update(&self, old: &IPPool) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let norm = |s: &IPPoolSpec| s.network().map(|n| n.trunc());
        if norm(&self.spec) != norm(&old.spec) {
            errs.push("spec.cidr", format!("cidr cannot be changed (was {}); create a new pool and disable this one instead", old.spec.cidr));
        }
        if self.spec.effective_block_size() != old.spec.effective_block_size() {
            errs.push(
                "spec.blockSize",
                format!(
                    "blockSize cannot be changed (was {}); create a new pool instead",
                    old.spec.effective_block_size()
                ),
            );
        }
        errs.into_result()
    }
}

/// Whether two networks share any address.
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> IPPool {
        let mut p = IPPool::new("p");
        p.spec.cidr = cidr.into();
        p
    }

    fn fields(r: Result<(), ValidationErrors>) -> Vec<String> {
        r.err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_match_upstream() {
        let mut p = pool("10.0.0.0/16");
        p.apply_defaults();
        assert_eq!(p.spec.block_size, Some(26));
        assert_eq!(p.spec.node_selector.as_deref(), Some("all()"));
        assert_eq!(p.spec.ipip_mode, Some(EncapMode::Never));
        assert_eq!(p.spec.vxlan_mode, Some(EncapMode::Never));
        assert_eq!(
            p.spec.allowed_uses,
            Some(vec![AllowedUse::Workload, AllowedUse::Tunnel])
        );
        assert_eq!(p.spec.assignment_mode, Some(AssignmentMode::Automatic));
        let mut p6 = pool("fd00::/48");
        p6.apply_defaults();
        assert_eq!(p6.spec.block_size, Some(122));
        // Defaulting is idempotent: what get prints applies again unchanged.
        let once = p.clone();
        p.apply_defaults();
        assert_eq!(p, once);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn block_size_out_of_range_names_the_range() {
        let mut p = pool("10.0.0.0/16");
        p.spec.block_size = Some(33);
        let e = p.validate().unwrap_err();
        assert_eq!(e.0[0].field, "spec.blockSize");
        assert_eq!(
            e.0[0].message,
            "33 is out of range; use 20–32 for an IPv4 pool"
        );
        let mut p6 = pool("fd00::/48");
        p6.spec.block_size = Some(115);
        assert_eq!(fields(p6.validate()), ["spec.blockSize"]);
        p6.spec.block_size = Some(116);
        assert!(p6.validate().is_ok());
    }

    #[test]
    fn pool_must_hold_a_block() {
        let mut p = pool("10.0.0.0/28");
        assert_eq!(fields(p.validate()), ["spec.blockSize"]);
        p.spec.disabled = Some(true);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn cidr_rules() {
        assert_eq!(fields(pool("10.0.0.1/16").validate()), ["spec.cidr"]);
        assert_eq!(fields(pool("").validate()), ["spec.cidr"]);
        assert_eq!(fields(pool("banana").validate()), ["spec.cidr"]);
        let e = pool("169.254.0.0/16").validate().unwrap_err();
        assert!(e.0[0].message.contains("169.254.0.0/16"), "{e}");
        assert_eq!(fields(pool("169.0.0.0/8").validate()), ["spec.cidr"]);
        assert_eq!(fields(pool("fe80::/64").validate()), ["spec.cidr"]);
    }

    #[test]
    fn encapsulation_rules() {
        let mut p = pool("10.0.0.0/16");
        p.spec.ipip_mode = Some(EncapMode::Always);
        p.spec.vxlan_mode = Some(EncapMode::Always);
        assert_eq!(fields(p.validate()), ["spec.vxlanMode"]);
        p.spec.vxlan_mode = Some(EncapMode::CrossSubnet);
        assert_eq!(fields(p.validate()), ["spec.vxlanMode"]);
        p.spec.vxlan_mode = Some(EncapMode::Never);
        assert!(p.validate().is_ok());
        let mut p6 = pool("fd00::/48");
        p6.spec.ipip_mode = Some(EncapMode::CrossSubnet);
        assert_eq!(fields(p6.validate()), ["spec.ipipMode"]);
    }

    #[test]
    fn load_balancer_rules() {
        let mut p = pool("10.0.0.0/16");
        p.spec.allowed_uses = Some(vec![AllowedUse::LoadBalancer]);
        assert!(p.validate().is_ok());
        p.spec.allowed_uses = Some(vec![AllowedUse::LoadBalancer, AllowedUse::Workload]);
        assert_eq!(fields(p.validate()), ["spec.allowedUses[1]"]);
        p.spec.allowed_uses = Some(vec![AllowedUse::LoadBalancer]);
        p.spec.vxlan_mode = Some(EncapMode::Always);
        assert_eq!(fields(p.validate()), ["spec.ipipMode"]);
        p.spec.vxlan_mode = None;
        p.spec.node_selector = Some("rack == 'a'".into());
        assert_eq!(fields(p.validate()), ["spec.nodeSelector"]);
    }

    #[test]
    fn cidr_and_block_size_are_immutable() {
        let mut old = pool("10.0.0.0/16");
        old.apply_defaults();
        let mut new = old.clone();
        new.spec.nat_outgoing = Some(true);
        assert!(new.validate_update(&old).is_ok());
        new.spec.cidr = "10.1.0.0/16".into();
        new.spec.block_size = Some(24);
        assert_eq!(
            fields(new.validate_update(&old)),
            ["spec.cidr", "spec.blockSize"]
        );
    }
}
