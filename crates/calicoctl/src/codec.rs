//! The one place calicoctl turns text into resources and resources into text.
//!
//! Parsing and the per-resource YAML/JSON encodings belong to `calico_api::codec`; this module
//! only adapts them, so the commands never depend on the encoder's shape.

use calico_api::Resource;

/// Every resource in `text` (YAML or JSON; multi-document; `kind: List` / `kind: <Kind>List`
/// and top-level sequences expanded), in document order. Errors carry line and column.
pub fn parse(text: &str) -> Result<Vec<Resource>, String> {
    calico_api::codec::parse_documents(text).map_err(|e| e.to_string())
}

/// One resource as a YAML document (keys sorted like upstream's output), ending in a newline.
pub fn to_yaml(r: &Resource) -> String {
    let mut s = calico_api::codec::to_yaml(std::slice::from_ref(r));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// One resource as indented JSON (two spaces, no trailing newline).
pub fn to_json(r: &Resource) -> String {
    calico_api::codec::to_json(std::slice::from_ref(r))
        .trim_end()
        .to_string()
}
