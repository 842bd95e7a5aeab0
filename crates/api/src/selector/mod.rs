//! Calico's label selector language: tokenizer, parser, evaluator, canonical printer.
//!
//! ```text
//!   text ──lexer::tokenize──▶ tokens ──parser──▶ Expr (inside Selector) ──eval──▶ bool
//!                                                      └──print (Display)──▶ canonical text
//! ```
//!
//! The language and its canonical form are upstream's (libcalico-go `selector/parser`):
//! `all()`, `global()`, `has(k)`, `k == 'v'`, `k != 'v'`, `k in {...}`, `k not in {...}`,
//! `k contains 'v'`, `k starts with 'v'`, `k ends with 'v'`, `!`, `&&`, `||`, parentheses;
//! precedence `!` > `&&` > `||`. The input is untrusted: nothing here panics, and parenthesis
//! nesting is capped at [`MAX_DEPTH`] so recursion stays bounded.

mod eval;
mod lexer;
mod parser;
mod print;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

pub use lexer::is_valid_label;

/// Deepest parenthesis nesting a selector may use.
pub const MAX_DEPTH: usize = 64;

/// Longest label key the tokenizer accepts (upstream's limit, in bytes).
pub const MAX_LABEL_LEN: usize = 512;

/// A selector expression tree. Labels are keys, values are literal strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: in a namespaceSelector, selects non-namespaced resources.
    Global,
    /// `has(k)`.
    Has(String),
    /// `k == "v"`.
    Eq(String, String),
    /// `k != "v"` (true when `k` is absent).
    Ne(String, String),
    /// `k in {"a", "b"}`.
    In(String, BTreeSet<String>),
    /// `k not in {"a", "b"}` (true when `k` is absent).
    NotIn(String, BTreeSet<String>),
    /// `k contains "s"`.
    Contains(String, String),
    /// `k starts with "p"`.
    StartsWith(String, String),
    /// `k ends with "s"`.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Expr>),
    /// `(a && b && ...)`, two or more terms when parsed.
    And(Vec<Expr>),
    /// `(a || b || ...)`, two or more terms when parsed.
    Or(Vec<Expr>),
}

/// A parsed selector; `None` inside is the empty selector (blank input).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Selector {
    root: Option<Expr>,
}

/// Why a selector did not parse: the position (0-based character offset) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?}: {message} at position {position}")]
pub struct ParseError {
    pub input: String,
    pub position: usize,
    pub message: String,
}

/// Parses a selector expression. The empty string (or only blanks) parses to the empty selector
/// (whose meaning, "all" or "none", the field that holds it decides).
pub fn parse(input: &str) -> Result<Selector, ParseError> {
    let error = |byte_pos: usize, message: String| ParseError {
        input: input.to_string(),
        position: input
            .get(..byte_pos)
            .map_or(byte_pos, |s| s.chars().count()),
        message,
    };
    let tokens = lexer::tokenize(input).map_err(|e| error(e.pos, e.message))?;
    if tokens.len() == 1 {
        return Ok(Selector::empty());
    }
    let root = parser::Parser::new(&tokens)
        .parse_root()
        .map_err(|e| error(e.pos, e.message))?;
    Ok(Selector { root: Some(root) })
}

impl Selector {
    /// The empty selector (what blank text parses to).
    pub fn empty() -> Self {
        Selector { root: None }
    }

    /// `all()`.
    pub fn all() -> Self {
        Selector {
            root: Some(Expr::All),
        }
    }

    /// Wraps an expression tree.
    pub fn from_expr(expr: Expr) -> Self {
        Selector { root: Some(expr) }
    }

    /// Whether this is the empty selector.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// The expression tree; `None` for the empty selector.
    pub fn expr(&self) -> Option<&Expr> {
        self.root.as_ref()
    }

    /// Whether a set of labels matches. The empty selector matches everything (as upstream's
    /// parser turns blank text into `all()`); fields where empty means "none" check
    /// [`Selector::is_empty`] first. `global()` is true here, as upstream evaluates it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with_global(labels, true)
    }

    /// Like [`Selector::matches`], with `global()` taking the value `global`: a namespaceSelector
    /// evaluates it as "the resource is not namespaced".
    pub fn matches_with_global(&self, labels: &BTreeMap<String, String>, global: bool) -> bool {
        self.root
            .as_ref()
            .is_none_or(|e| e.evaluate(labels, global))
    }
}

impl fmt::Display for Selector {
    /// The canonical form; the empty selector prints as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            Some(expr) => write!(f, "{expr}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}
