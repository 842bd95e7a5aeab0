//! Canonical printer, byte-for-byte upstream's `Selector.String()`.
//!
//! `k == "v"` with double quotes unless the value contains `"` (then single quotes), sets sorted
//! as `k in {"a", "b"}`, every `&&`/`||` chain wrapped in parentheses, `!` glued to its operand.
//! One deliberate difference: a negated negation prints as `!(!x)`, not upstream's `!!x`.
//! Printing any tree the parser produces and parsing the text again yields the same tree. A
//! hand-built tree whose value holds both quote characters, or whose label is not a valid label
//! key, has no textual form; such text will not parse.

use std::fmt::{self, Write};

use super::Expr;

fn quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

fn chain(f: &mut fmt::Formatter<'_>, terms: &[Expr], op: &str) -> fmt::Result {
    f.write_char('(')?;
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(op)?;
        }
        write!(f, "{term}")?;
    }
    f.write_char(')')
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compare = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, v: &str| {
            write!(f, "{k} {op} ")?;
            quoted(f, v)
        };
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => compare(f, k, "==", v),
            Expr::Ne(k, v) => compare(f, k, "!=", v),
            Expr::Contains(k, v) => compare(f, k, "contains", v),
            Expr::StartsWith(k, v) => compare(f, k, "starts with", v),
            Expr::EndsWith(k, v) => compare(f, k, "ends with", v),
            Expr::In(k, set) | Expr::NotIn(k, set) => {
                let op = if matches!(self, Expr::In(..)) {
                    "in"
                } else {
                    "not in"
                };
                write!(f, "{k} {op} {{")?;
                for (i, v) in set.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    quoted(f, v)?;
                }
                f.write_char('}')
            }
            // Upstream prints `!!x` here, which parses back as `x` (a run of `!` collapses);
            // the parentheses keep the tree, and the meaning is the same either way.
            Expr::Not(inner) if matches!(**inner, Expr::Not(_)) => write!(f, "!({inner})"),
            Expr::Not(inner) => write!(f, "!{inner}"),
            Expr::And(terms) => chain(f, terms, " && "),
            Expr::Or(terms) => chain(f, terms, " || "),
        }
    }
}
