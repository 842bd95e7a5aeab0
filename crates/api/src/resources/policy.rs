//! Policy kinds: NetworkPolicy (namespaced), GlobalNetworkPolicy, Tier, Profile, and the address
//! sets rules refer to (NetworkSet, GlobalNetworkSet).
//!
//! Defaults as upstream's client fills them: `tier: default`, and `types` derived from the rules
//! (Ingress unless the policy has only egress rules; Egress when it has egress rules).

use super::common::{check_labels, check_no_global, check_selector, resource_struct};
use super::rule::{Direction, Rule, check_rules};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tier policies without one belong to.
pub const DEFAULT_TIER: &str = "default";
/// Fixed orders of the built-in tiers.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
pub const ADMIN_NETWORK_POLICY_TIER_ORDER: f64 = 1_000.0;
pub const BASELINE_ADMIN_NETWORK_POLICY_TIER_ORDER: f64 = 10_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

resource_struct!(
    /// `kind: NetworkPolicy` (namespaced).
    NetworkPolicy,
    NetworkPolicySpec
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

resource_struct!(
    /// `kind: GlobalNetworkPolicy`.
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    #[serde(
        default,
        rename = "preDNAT",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

fn default_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    let mut t = Vec::new();
    if !ingress.is_empty() || egress.is_empty() {
        t.push(PolicyType::Ingress);
    }
    if !egress.is_empty() {
        t.push(PolicyType::Egress);
    }
    t
}

/// Checks shared by both policy kinds.
#[allow(clippy::too_many_arguments)]
fn check_policy_common(
    tier: &str,
    order: Option<f64>,
    ingress: &[Rule],
    egress: &[Rule],
    selector: &str,
    types: &[PolicyType],
    sa_selector: &str,
    hints: &[String],
    errs: &mut ValidationErrors,
) {
    if !tier.is_empty() && !super::common::is_dns1123_label(tier) {
        errs.push(
            "spec.tier",
            format!("{tier:?} is not a tier name (lower-case letters, digits and '-')"),
        );
    }
    if order.is_some_and(|o| !o.is_finite()) {
        errs.push(
            "spec.order",
            "order must be a finite number (leave it out to order last)",
        );
    }
    check_rules(ingress, Direction::Ingress, "spec.ingress", errs);
    check_rules(egress, Direction::Egress, "spec.egress", errs);
    if !selector.is_empty() {
        check_selector(selector, "spec.selector", errs);
        check_no_global(selector, "spec.selector", errs);
    }
    if !sa_selector.is_empty() {
        check_selector(sa_selector, "spec.serviceAccountSelector", errs);
        check_no_global(sa_selector, "spec.serviceAccountSelector", errs);
    }
    for (i, t) in types.iter().enumerate() {
        if types[..i].contains(t) {
            errs.push(
                format!("spec.types[{i}]"),
                format!("{t:?} is listed more than once"),
            );
        }
    }
    for (i, h) in hints.iter().enumerate() {
        if h != "AssumeNeededOnEveryNode" {
            errs.push(
                format!("spec.performanceHints[{i}]"),
                format!("unknown hint {h:?}; the only hint is AssumeNeededOnEveryNode"),
            );
        } else if hints[..i].contains(h) {
            errs.push(
                format!("spec.performanceHints[{i}]"),
                "listed more than once",
            );
        }
    }
}

impl NetworkPolicy {
    pub fn apply_defaults(&mut self) {
        let s = &mut self.spec;
        if s.tier.is_empty() {
            s.tier = DEFAULT_TIER.into();
        }
        if s.types.is_empty() {
            s.types = default_types(&s.ingress, &s.egress);
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        check_policy_common(
            &s.tier,
            s.order,
            &s.ingress,
            &s.egress,
            &s.selector,
            &s.types,
            &s.service_account_selector,
            &s.performance_hints,
            &mut errs,
        );
        errs.into_result()
    }
}

impl GlobalNetworkPolicy {
    pub fn apply_defaults(&mut self) {
        let s = &mut self.spec;
        if s.tier.is_empty() {
            s.tier = DEFAULT_TIER.into();
        }
        if s.types.is_empty() {
            s.types = default_types(&s.ingress, &s.egress);
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        check_policy_common(
            &s.tier,
            s.order,
            &s.ingress,
            &s.egress,
            &s.selector,
            &s.types,
            &s.service_account_selector,
            &s.performance_hints,
            &mut errs,
        );
        if !s.namespace_selector.is_empty() {
            check_selector(&s.namespace_selector, "spec.namespaceSelector", &mut errs);
            check_no_global(&s.namespace_selector, "spec.namespaceSelector", &mut errs);
        }
        if s.do_not_track && s.pre_dnat {
            errs.push(
                "spec.preDNAT",
                "preDNAT and doNotTrack cannot both be true; keep one",
            );
        }
        if s.pre_dnat && !s.egress.is_empty() {
            errs.push("spec.egress", "a preDNAT policy cannot have egress rules");
        }
        if s.pre_dnat && s.types.contains(&PolicyType::Egress) {
            errs.push("spec.types", "a preDNAT policy cannot have type Egress");
        }
        if !s.apply_on_forward && (s.do_not_track || s.pre_dnat) {
            errs.push(
                "spec.applyOnForward",
                "preDNAT and doNotTrack policies need applyOnForward: true",
            );
        }
        for (rules, dir, f) in [
            (&s.ingress, "source", "spec.ingress"),
            (&s.egress, "destination", "spec.egress"),
        ] {
            for (i, r) in rules.iter().enumerate() {
                let e = if dir == "source" {
                    &r.source
                } else {
                    &r.destination
                };
                if let Some(svc) = &e.services
                    && svc.namespace.is_empty()
                {
                    errs.push(
                        format!("{f}[{i}].{dir}.services.namespace"),
                        "a global policy must name the service's namespace",
                    );
                }
            }
        }
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: Tier`: an ordered group of policies.
    Tier,
    TierSpec
);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens to traffic no policy in the tier decides: `Deny` (default) or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<super::rule::Action>,
}

impl Tier {
    pub fn apply_defaults(&mut self) {
        let fixed = match self.metadata.name.as_str() {
            "default" => Some(DEFAULT_TIER_ORDER),
            "adminnetworkpolicy" => Some(ADMIN_NETWORK_POLICY_TIER_ORDER),
            "baselineadminnetworkpolicy" => Some(BASELINE_ADMIN_NETWORK_POLICY_TIER_ORDER),
            _ => None,
        };
        if self.spec.order.is_none() {
            self.spec.order = fixed;
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let fixed = match self.metadata.name.as_str() {
            "default" => Some(DEFAULT_TIER_ORDER),
            "adminnetworkpolicy" => Some(ADMIN_NETWORK_POLICY_TIER_ORDER),
            "baselineadminnetworkpolicy" => Some(BASELINE_ADMIN_NETWORK_POLICY_TIER_ORDER),
            _ => None,
        };
        if let Some(o) = fixed
            && self.spec.order != Some(o)
        {
            errs.push(
                "spec.order",
                format!("the {} tier's order is fixed at {o}", self.metadata.name),
            );
        }
        if self.spec.order.is_some_and(|o| !o.is_finite()) {
            errs.push("spec.order", "order must be a finite number");
        }
        if let Some(a) = self.spec.default_action
            && !matches!(a, super::rule::Action::Deny | super::rule::Action::Pass)
        {
            errs.push(
                "spec.defaultAction",
                "a tier's defaultAction is Deny or Pass",
            );
        }
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: Profile`: rules and labels applied to endpoints that list it.
    Profile,
    ProfileSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl Profile {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        check_rules(
            &self.spec.ingress,
            Direction::Ingress,
            "spec.ingress",
            &mut errs,
        );
        check_rules(
            &self.spec.egress,
            Direction::Egress,
            "spec.egress",
            &mut errs,
        );
        check_labels(&self.spec.labels_to_apply, "spec.labelsToApply", &mut errs);
        errs.into_result()
    }
}

resource_struct!(
    /// `kind: NetworkSet` (namespaced): addresses selectable by labels.
    NetworkSet,
    NetworkSetSpec
);
resource_struct!(
    /// `kind: GlobalNetworkSet`.
    GlobalNetworkSet,
    NetworkSetSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

fn check_set(
    spec: &NetworkSetSpec,
    labels: Option<&BTreeMap<String, String>>,
    errs: &mut ValidationErrors,
) {
    for (i, n) in spec.nets.iter().enumerate() {
        // Upstream accepts unmasked CIDRs here; only the syntax is checked.
        super::common::check_cidr(n, &format!("spec.nets[{i}]"), errs);
    }
    if labels.is_some_and(|l| l.contains_key("projectcalico.org/namespace")) {
        errs.push(
            "metadata.labels[projectcalico.org/namespace]",
            "projectcalico.org/namespace is reserved; remove this label",
        );
    }
}

impl NetworkSet {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        check_set(&self.spec, self.metadata.labels.as_ref(), &mut errs);
        errs.into_result()
    }
}

impl GlobalNetworkSet {
    pub fn apply_defaults(&mut self) {}
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        check_set(&self.spec, self.metadata.labels.as_ref(), &mut errs);
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::rule::Action;

    fn fields(r: Result<(), ValidationErrors>) -> Vec<String> {
        r.err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn policy_defaults() {
        let mut p = NetworkPolicy::new("allow-dns");
        p.spec.egress = vec![Rule::new(Action::Allow)];
        p.apply_defaults();
        assert_eq!(p.spec.tier, "default");
        assert_eq!(p.spec.types, [PolicyType::Egress]);
        let mut g = GlobalNetworkPolicy::new("g");
        g.apply_defaults();
        assert_eq!(g.spec.types, [PolicyType::Ingress]);
        let again = g.clone();
        g.apply_defaults();
        assert_eq!(g, again);
    }

    #[test]
    fn global_policy_rules() {
        let mut g = GlobalNetworkPolicy::new("g");
        g.spec.pre_dnat = true;
        g.spec.do_not_track = true;
        g.spec.egress = vec![Rule::new(Action::Allow)];
        g.spec.selector = "global()".into();
        assert_eq!(
            fields(g.validate()),
            [
                "spec.selector",
                "spec.preDNAT",
                "spec.egress",
                "spec.applyOnForward"
            ]
        );
        let mut g = GlobalNetworkPolicy::new("g");
        g.spec.types = vec![PolicyType::Ingress, PolicyType::Ingress];
        g.spec.order = Some(f64::INFINITY);
        assert_eq!(fields(g.validate()), ["spec.order", "spec.types[1]"]);
    }

    #[test]
    fn tiers_and_sets() {
        let mut t = Tier::new("default");
        assert_eq!(fields(t.validate()), ["spec.order"]);
        t.apply_defaults();
        assert!(t.validate().is_ok());
        t.spec.default_action = Some(Action::Allow);
        assert_eq!(fields(t.validate()), ["spec.defaultAction"]);
        let mut s = GlobalNetworkSet::new("s");
        s.spec.nets = vec!["10.0.0.1/8".into(), "nope".into()];
        assert_eq!(fields(s.validate()), ["spec.nets[1]"]);
    }
}
