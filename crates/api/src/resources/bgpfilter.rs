//! BGPFilter: import/export rules that BGPPeers reference by name (`spec.filters`).

use super::common::{check_interface, check_net, check_one_of, resource_struct};
use crate::validate::ValidationErrors;
use serde::{Deserialize, Serialize};

resource_struct!(
    /// `kind: BGPFilter`.
    BGPFilter,
    BGPFilterSpec
);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One filter rule (the same shape for V4 and V6; the family is checked by validation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    /// `RemotePeers`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// `Equal` | `NotEqual` | `In` | `NotIn`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub match_operator: String,
    /// `Accept` | `Reject`.
    #[serde(default)]
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

impl BGPFilter {
    pub fn apply_defaults(&mut self) {}

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let s = &self.spec;
        for (rules, name, v6) in [
            (&s.export_v4, "exportV4", false),
            (&s.import_v4, "importV4", false),
            (&s.export_v6, "exportV6", true),
            (&s.import_v6, "importV6", true),
        ] {
            for (i, r) in rules.iter().enumerate() {
                check_filter_rule(r, v6, &format!("spec.{name}[{i}]"), &mut errs);
            }
        }
        errs.into_result()
    }
}

fn check_filter_rule(r: &BGPFilterRule, v6: bool, f: &str, errs: &mut ValidationErrors) {
    let max = if v6 { 128 } else { 32 };
    if !r.cidr.is_empty()
        && let Some(n) = check_net(&r.cidr, &format!("{f}.cidr"), errs)
        && matches!(n, ipnet::IpNet::V6(_)) != v6
    {
        errs.push(
            format!("{f}.cidr"),
            format!(
                "{} is not an IPv{} CIDR; move the rule to the {} list",
                r.cidr,
                if v6 { 6 } else { 4 },
                if v6 { "V4" } else { "V6" }
            ),
        );
    }
    if !r.cidr.is_empty() && r.match_operator.is_empty() {
        errs.push(
            format!("{f}.matchOperator"),
            "a rule with cidr needs matchOperator (Equal, NotEqual, In or NotIn)",
        );
    }
    if r.cidr.is_empty() && !r.match_operator.is_empty() {
        errs.push(
            format!("{f}.cidr"),
            "matchOperator needs a cidr to compare with",
        );
    }
    if r.cidr.is_empty() && r.prefix_length.is_some() {
        errs.push(format!("{f}.prefixLength"), "prefixLength needs a cidr");
    }
    if !r.match_operator.is_empty() {
        check_one_of(
            &r.match_operator,
            &["Equal", "NotEqual", "In", "NotIn"],
            &format!("{f}.matchOperator"),
            errs,
        );
    }
    if let Some(pl) = &r.prefix_length {
        for (v, name) in [(pl.min, "min"), (pl.max, "max")] {
            if let Some(v) = v
                && !(0..=max).contains(&v)
            {
                errs.push(
                    format!("{f}.prefixLength.{name}"),
                    format!("{v} is out of range; use 0–{max}"),
                );
            }
        }
        if let (Some(a), Some(b)) = (pl.min, pl.max)
            && a > b
        {
            errs.push(format!("{f}.prefixLength"), "min must not exceed max");
        }
    }
    if !r.source.is_empty() {
        check_one_of(&r.source, &["RemotePeers"], &format!("{f}.source"), errs);
    }
    if !r.interface.is_empty() {
        check_interface_pattern(&r.interface, &format!("{f}.interface"), errs);
    }
    check_one_of(
        &r.action,
        &["Accept", "Reject"],
        &format!("{f}.action"),
        errs,
    );
}

fn check_interface_pattern(s: &str, f: &str, errs: &mut ValidationErrors) {
    if s.contains('*') {
        let ok = s.len() <= 15
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.*-".contains(&b));
        if !ok {
            errs.push(f, format!("{s:?} is not an interface pattern (at most 15 of letters, digits, '_', '.', '-', '*')"));
        }
    } else {
        check_interface(s, false, f, errs);
    }
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
    fn filter_rules() {
        let mut f = BGPFilter::new("f");
        f.spec.export_v4 = vec![BGPFilterRule {
            cidr: "10.0.0.0/8".into(),
            match_operator: "In".into(),
            action: "Accept".into(),
            ..Default::default()
        }];
        assert!(f.validate().is_ok());
        f.spec.import_v6 = vec![BGPFilterRule {
            cidr: "10.0.0.0/8".into(),
            action: "Drop".into(),
            prefix_length: Some(PrefixLength {
                min: Some(130),
                max: None,
            }),
            ..Default::default()
        }];
        assert_eq!(
            fields(f.validate()),
            [
                "spec.importV6[0].cidr",
                "spec.importV6[0].matchOperator",
                "spec.importV6[0].prefixLength.min",
                "spec.importV6[0].action"
            ]
        );
    }
}
