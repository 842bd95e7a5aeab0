//! Evaluation of a selector tree against a label map.
//!
//! Semantics follow upstream: a comparison on a missing label is false, except `!=` and
//! `not in`, which hold when the label is absent. `global()` evaluates to the caller's context
//! flag (true in plain label matching, as upstream evaluates it).

use std::collections::BTreeMap;

use super::Expr;

impl Expr {
    /// Evaluates against `labels`; `global` is the value `global()` takes.
    pub fn evaluate(&self, labels: &BTreeMap<String, String>, global: bool) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str);
        match self {
            Expr::All => true,
            Expr::Global => global,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => get(k) != Some(v.as_str()),
            Expr::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Expr::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Expr::Contains(k, v) => get(k).is_some_and(|l| l.contains(v.as_str())),
            Expr::StartsWith(k, v) => get(k).is_some_and(|l| l.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => get(k).is_some_and(|l| l.ends_with(v.as_str())),
            Expr::Not(inner) => !inner.evaluate(labels, global),
            Expr::And(terms) => terms.iter().all(|t| t.evaluate(labels, global)),
            Expr::Or(terms) => terms.iter().any(|t| t.evaluate(labels, global)),
        }
    }
}
