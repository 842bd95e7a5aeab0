//! Text ⇄ resources: YAML and JSON, multi-document files, `kind: List` and `kind: <Kind>List`.
//!
//! Parsing runs in two passes over each document. The first reads it loosely to learn its shape
//! (one resource, a list, or a bare sequence) and the `kind` of every resource; the second
//! deserialises each resource straight into its typed struct with a `DeserializeSeed`, streaming,
//! so an unknown field or a bad value is reported at its line and column. Documents are cut at
//! `---` lines and each is parsed with the preceding lines blanked, which keeps line numbers
//! relative to the whole file.
//!
//! Printing follows upstream calicoctl: one resource prints as the object; several print as a
//! `<Kind>List` (or `List` for mixed kinds) with `apiVersion: projectcalico.org/v3` and `items`.
//! Keys are sorted like Go's encoders, and everything printed parses back to equal resources.

use crate::kind::Kind;
use crate::resource::Resource;
use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a text could not be read as resources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Malformed YAML/JSON, an unknown field, or a value of the wrong type, at a position
    /// (1-based line and column of the whole input).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The document is well-formed but is not a resource we know (missing or unknown `kind`,
    /// wrong `apiVersion`, not a mapping).
    #[error("document {document} (line {line}){}: {message}", item.map(|i| format!(", items[{i}]")).unwrap_or_default())]
    Document {
        document: usize,
        line: usize,
        item: Option<usize>,
        message: String,
    },
}

/// Every resource in `text`, in order. Accepts YAML (multi-document) or JSON; a document may be
/// one resource, a `kind: List` / `kind: <Kind>List` with `items`, or a sequence of resources.
/// Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, CodecError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    // Text that is not JSON after all (e.g. YAML flow style with comments) is read as YAML.
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        let plan = plan(&v, 1, first_line(text))?;
        let mut de = serde_json::Deserializer::from_str(text);
        return PlanSeed(&plan).deserialize(&mut de).map_err(json_err);
    }
    let mut out = Vec::new();
    for (index, doc) in split_documents(text).into_iter().enumerate() {
        let v: Value = serde_saphyr::with_deserializer_from_str(&doc, |d| Value::deserialize(d))
            .map_err(yaml_err)?;
        let plan = plan(&v, index + 1, first_line(&doc))?;
        if matches!(plan, Plan::Empty) {
            continue;
        }
        let rs = serde_saphyr::with_deserializer_from_str(&doc, |d| PlanSeed(&plan).deserialize(d))
            .map_err(yaml_err)?;
        out.extend(rs);
    }
    Ok(out)
}

/// Prints resources as upstream `calicoctl get -o yaml` does: one resource as the object,
/// otherwise a list.
pub fn to_yaml(resources: &[Resource]) -> String {
    yaml_of(&document(resources))
}

/// JSON twin of [`to_yaml`], indented by two spaces like upstream, ending in a newline.
pub fn to_json(resources: &[Resource]) -> String {
    json_of(&document(resources))
}

/// Always a list (what `calicoctl get <kind>` without a name prints), with the datastore
/// revision as `metadata.resourceVersion` when given. `kind` is `None` for mixed kinds.
pub fn list_to_yaml(
    kind: Option<Kind>,
    items: &[Resource],
    resource_version: Option<&str>,
) -> String {
    yaml_of(&list_value(kind, items, resource_version))
}

/// JSON twin of [`list_to_yaml`].
pub fn list_to_json(
    kind: Option<Kind>,
    items: &[Resource],
    resource_version: Option<&str>,
) -> String {
    json_of(&list_value(kind, items, resource_version))
}

fn document(resources: &[Resource]) -> Value {
    match resources {
        [one] => resource_value(one),
        many => {
            let first = many.first().map(Resource::kind);
            let same = first.filter(|k| many.iter().all(|r| r.kind() == *k));
            list_value(same, many, None)
        }
    }
}

fn list_value(kind: Option<Kind>, items: &[Resource], resource_version: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert(
        "apiVersion".into(),
        Value::String(crate::API_VERSION.into()),
    );
    m.insert(
        "items".into(),
        Value::Array(items.iter().map(resource_value).collect()),
    );
    let kind = kind.map_or_else(|| "List".to_string(), |k| format!("{}List", k.name()));
    m.insert("kind".into(), Value::String(kind));
    let mut meta = Map::new();
    if let Some(rv) = resource_version {
        meta.insert("resourceVersion".into(), Value::String(rv.into()));
    }
    m.insert("metadata".into(), Value::Object(meta));
    Value::Object(m)
}

fn resource_value(r: &Resource) -> Value {
    // Serialising plain data structs with string keys cannot fail.
    normalise(serde_json::to_value(r).unwrap_or(Value::Null))
}

/// Sorts keys (as Go's encoders do) and prints integral floats as integers (`order: 100`).
fn normalise(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, normalise(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalise).collect()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        other => other,
    }
}

fn yaml_of(v: &Value) -> String {
    // A serde_json::Value always serialises.
    serde_saphyr::to_string(v).unwrap_or_default()
}

fn json_of(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// Document splitting and error mapping

/// Cuts YAML text at document markers. Each piece keeps its place: lines before it are blank,
/// so positions reported inside it are positions in the whole input.
fn split_documents(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut docs = Vec::new();
    let mut start = 0;
    let is_marker =
        |l: &str| l == "---" || l.starts_with("--- ") || l.starts_with("---\t") || l == "...";
    for (i, l) in lines.iter().enumerate() {
        if is_marker(l.trim_end()) {
            docs.push(piece(&lines, start, i));
            // Content after `--- ` on the marker line belongs to the next document.
            start = i;
        }
    }
    docs.push(piece(&lines, start, lines.len()));
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

fn piece(lines: &[&str], start: usize, end: usize) -> String {
    let mut s = "\n".repeat(start);
    for (i, l) in lines[start..end].iter().enumerate() {
        let t = l.trim_end();
        let l = if i == 0
            && (t == "---" || t == "..." || l.starts_with("--- ") || l.starts_with("---\t"))
        {
            // The marker line itself: keep what follows `---` (rarely used), drop the marker.
            t.strip_prefix("---")
                .or_else(|| t.strip_prefix("..."))
                .unwrap_or(t)
        } else {
            l
        };
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn first_line(doc: &str) -> usize {
    doc.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

fn yaml_err(e: serde_saphyr::Error) -> CodecError {
    let (line, column) = e
        .location()
        .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
    let mut message = e.without_snippet().to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    CodecError::Syntax {
        line,
        column,
        message,
    }
}

fn json_err(e: serde_json::Error) -> CodecError {
    let mut message = e.to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    CodecError::Syntax {
        line: e.line(),
        column: e.column(),
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// First pass: the shape of a document

/// What the typed pass should expect.
#[derive(Debug)]
enum Plan {
    Empty,
    One(Kind),
    /// A `List`/`<Kind>List` mapping; the kind of each item.
    List(Vec<Kind>),
    /// A bare top-level sequence of resources.
    Seq(Vec<Kind>),
}

fn plan(v: &Value, document: usize, line: usize) -> Result<Plan, CodecError> {
    let err = |item: Option<usize>, message: String| CodecError::Document {
        document,
        line,
        item,
        message,
    };
    match v {
        Value::Null => Ok(Plan::Empty),
        Value::Array(items) => {
            let kinds = items
                .iter()
                .enumerate()
                .map(|(i, it)| resource_kind(it, None).map_err(|m| err(Some(i), m)))
                .collect::<Result<_, _>>()?;
            Ok(Plan::Seq(kinds))
        }
        Value::Object(m) => {
            let kind = m.get("kind").and_then(Value::as_str).unwrap_or_default();
            let list_of = if kind == "List" {
                Some(None)
            } else {
                kind.strip_suffix("List")
                    .and_then(Kind::from_kind_field)
                    .map(Some)
            };
            match list_of {
                Some(item_kind) => {
                    let av = m
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !(av == crate::API_VERSION || (item_kind.is_none() && av == "v1")) {
                        return Err(err(
                            None,
                            format!(
                                "a {kind} needs apiVersion: {} (found {av:?})",
                                crate::API_VERSION
                            ),
                        ));
                    }
                    let items = match m.get("items") {
                        None | Some(Value::Null) => return Ok(Plan::List(Vec::new())),
                        Some(Value::Array(a)) => a,
                        Some(_) => {
                            return Err(err(None, "items must be a list of resources".into()));
                        }
                    };
                    let kinds = items
                        .iter()
                        .enumerate()
                        .map(|(i, it)| {
                            resource_kind(it, item_kind).map_err(|msg| err(Some(i), msg))
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(Plan::List(kinds))
                }
                None => resource_kind(v, None)
                    .map(Plan::One)
                    .map_err(|m| err(None, m)),
            }
        }
        other => Err(err(
            None,
            format!(
                "expected a resource (a mapping with apiVersion, kind, metadata, spec), found {other}"
            ),
        )),
    }
}

/// The kind of one resource value; `implied` is the kind its `<Kind>List` names.
fn resource_kind(v: &Value, implied: Option<Kind>) -> Result<Kind, String> {
    let Value::Object(m) = v else {
        return Err("expected a resource (a mapping with apiVersion, kind, metadata, spec)".into());
    };
    let kind = match (m.get("kind"), implied) {
        (None, Some(k)) => k,
        (None, None) => return Err("kind is missing; add e.g. kind: IPPool".into()),
        (Some(Value::String(s)), implied) => {
            let k = Kind::from_kind_field(s).ok_or_else(|| unknown_kind(s))?;
            if let Some(i) = implied
                && i != k
            {
                return Err(format!("a {}List cannot hold a {s}", i.name()));
            }
            k
        }
        (Some(other), _) => return Err(format!("kind must be a string, found {other}")),
    };
    match m.get("apiVersion") {
        Some(Value::String(av)) if av == crate::API_VERSION => Ok(kind),
        None if implied.is_some() => Ok(kind),
        None => Err(format!(
            "apiVersion is missing; add apiVersion: {}",
            crate::API_VERSION
        )),
        Some(av) => Err(format!(
            "apiVersion {av} is not supported for {}; use apiVersion: {}",
            kind.name(),
            crate::API_VERSION
        )),
    }
}

fn unknown_kind(s: &str) -> String {
    let hint = Kind::from_user(s)
        .map(|k| format!("did you mean {}?", k.name()))
        .unwrap_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("known kinds: {}", names.join(", "))
        });
    format!(
        "unknown kind {s:?} for apiVersion {}; {hint}",
        crate::API_VERSION
    )
}

// ---------------------------------------------------------------------------------------------
// Second pass: typed, streaming

struct PlanSeed<'a>(&'a Plan);

impl<'de> DeserializeSeed<'de> for PlanSeed<'_> {
    type Value = Vec<Resource>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0 {
            Plan::Empty => IgnoredAny::deserialize(d).map(|_| Vec::new()),
            Plan::One(k) => Resource::deserialize_kind(*k, d).map(|r| vec![r]),
            Plan::Seq(kinds) => d.deserialize_seq(ItemsSeed(kinds)),
            Plan::List(kinds) => d.deserialize_map(ListVisitor(kinds)),
        }
    }
}

struct KindSeed(Kind);
impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Resource;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Resource, D::Error> {
        Resource::deserialize_kind(self.0, d)
    }
}

struct ItemsSeed<'a>(&'a [Kind]);
impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Vec<Resource>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}
impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Vec<Resource>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of resources")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(self.0.len());
        for k in self.0 {
            match seq.next_element_seed(KindSeed(*k))? {
                Some(r) => out.push(r),
                None => return Err(de::Error::invalid_length(out.len(), &self)),
            }
        }
        Ok(out)
    }
}

struct ListVisitor<'a>(&'a [Kind]);
impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = Vec<Resource>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list with apiVersion, kind, metadata and items")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => out = map.next_value_seed(OptionalItems(self.0))?,
                "apiVersion" | "kind" | "metadata" => {
                    map.next_value::<IgnoredAny>()?;
                }
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["apiVersion", "kind", "metadata", "items"],
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `items:` that may be null.
struct OptionalItems<'a>(&'a [Kind]);
impl<'de> DeserializeSeed<'de> for OptionalItems<'_> {
    type Value = Vec<Resource>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}
impl<'de> Visitor<'de> for OptionalItems<'_> {
    type Value = Vec<Resource>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of resources")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        ItemsSeed(self.0).deserialize(d)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
