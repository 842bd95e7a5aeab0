//! Calico's label selector language: parser, evaluator, canonical printer.
//! SCAFFOLD: the real parser lands next; this signature is the interface other modules use.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    source: String,
}

/// Why a selector did not parse: the position (0-based character offset) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?}: {message} at position {position}")]
pub struct ParseError {
    pub input: String,
    pub position: usize,
    pub message: String,
}

/// Parses a selector expression. The empty string parses to the empty selector (whose meaning,
/// "all" or "none", the field that holds it decides).
pub fn parse(input: &str) -> Result<Selector, ParseError> {
    Ok(Selector { source: input.trim().to_string() })
}

impl Selector {
    /// Whether a set of labels matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let _ = labels;
        self.source.is_empty() || self.source == "all()"
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
