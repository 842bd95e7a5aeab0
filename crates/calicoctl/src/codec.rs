//! The one place calicoctl turns text into resources and resources into text.
//!
//! Parsing and the YAML/JSON encodings belong to `calico_api::codec`; this module only adapts
//! them to calicoctl's messages, so switching encoders never touches the commands.
//!
//! TEMPORARY: until `calico_api::codec` lands, a minimal local decoder/encoder stands in.

use calico_api::{Kind, Resource};
use serde_json::Value;

/// Every resource in `text` (YAML or JSON; multi-document; `kind: List` / `kind: <Kind>List`
/// and top-level sequences expanded), in document order.
pub fn parse(text: &str) -> Result<Vec<Resource>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for d in docs {
        expand(d, &mut out)?;
    }
    Ok(out)
}

fn expand(d: Value, out: &mut Vec<Resource>) -> Result<(), String> {
    match d {
        Value::Null => Ok(()),
        Value::Array(items) => items.into_iter().try_for_each(|i| expand(i, out)),
        Value::Object(ref m) => {
            let kind = m
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if kind == "List" || (kind.ends_with("List") && Kind::from_kind_field(&kind).is_none())
            {
                let items = m.get("items").cloned().unwrap_or(Value::Array(vec![]));
                return expand(items, out);
            }
            let k = Kind::from_kind_field(&kind).ok_or_else(|| {
                format!("unknown resource type ({kind}) and/or version (projectcalico.org/v3)")
            })?;
            let bytes = serde_json::to_vec(&d).map_err(|e| e.to_string())?;
            out.push(Resource::from_json(k, &bytes).map_err(|e| e.to_string())?);
            Ok(())
        }
        other => Err(format!("expected a resource, found {other}")),
    }
}

/// One resource as a YAML document (keys sorted like upstream's output), ending in a newline.
pub fn to_yaml(r: &Resource) -> String {
    let v = serde_json::to_value(r).unwrap_or(Value::Null);
    serde_saphyr::to_string(&v).unwrap_or_default()
}

/// One resource as indented JSON (two spaces, no trailing newline).
pub fn to_json(r: &Resource) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
