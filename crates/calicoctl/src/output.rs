//! `get -o yaml|json|name`: upstream's shapes around the codec's per-resource encodings.
//!
//! Upstream prints one named resource as itself, several named resources as a sequence, and a
//! listing (`get KIND` without names) as a `<Kind>List` object carrying the listing's revision.
//! YAML keys are sorted (upstream goes through sigs.k8s.io/yaml); JSON follows Go's struct
//! order (`kind`, `apiVersion`, `metadata`, `items`), escapes `<`, `>` and `&` as Go's encoder
//! does, and ends without a newline, exactly like upstream's printer.
//!
//! The encodings themselves (key order, number shapes) are `calico_api::codec`'s; YAML listings
//! are its `list_to_yaml` as they stand. Only the shapes upstream's printer adds around them
//! (sequences of named resources, Go's JSON struct order and escaping) are built here.

use calico_api::codec;
use calico_api::{API_VERSION, Kind, Resource};

/// What `get` found.
pub enum Found {
    /// Resources asked for by name (or from a file).
    Named(Vec<Resource>),
    /// Everything of one kind, as of `revision`.
    Listing {
        kind: Kind,
        items: Vec<Resource>,
        revision: Option<i64>,
    },
}

pub fn yaml(found: &Found) -> String {
    match found {
        Found::Named(rs) if rs.len() == 1 => resource_yaml(&rs[0]),
        Found::Named(rs) => sequence(rs),
        Found::Listing {
            kind,
            items,
            revision,
        } => codec::list_to_yaml(
            Some(*kind),
            items,
            revision.map(|r| r.to_string()).as_deref(),
        ),
    }
}

/// One resource as a YAML document, ending in a newline.
fn resource_yaml(r: &Resource) -> String {
    let mut s = codec::to_yaml(std::slice::from_ref(r));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// One resource as indented JSON (two spaces), without the trailing newline.
fn resource_json(r: &Resource) -> String {
    codec::to_json(std::slice::from_ref(r))
        .trim_end()
        .to_string()
}

/// A YAML block sequence of resources, each item's lines indented under its `- `.
fn sequence(rs: &[Resource]) -> String {
    if rs.is_empty() {
        return "[]\n".into();
    }
    let mut out = String::new();
    for r in rs {
        for (i, line) in resource_yaml(r).lines().enumerate() {
            out.push_str(if i == 0 { "- " } else { "  " });
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub fn json(found: &Found) -> String {
    let text = match found {
        Found::Named(rs) if rs.len() == 1 => resource_json(&rs[0]),
        Found::Named(rs) => array(rs, ""),
        Found::Listing {
            kind,
            items,
            revision,
        } => {
            let meta = match revision {
                Some(r) => format!("{{\n    \"resourceVersion\": \"{r}\"\n  }}"),
                None => "{}".into(),
            };
            format!(
                "{{\n  \"kind\": \"{}List\",\n  \"apiVersion\": \"{API_VERSION}\",\n  \"metadata\": {meta},\n  \"items\": {}\n}}",
                kind.name(),
                array(items, "  ")
            )
        }
    };
    go_html_escape(&text)
}

/// A JSON array of resources laid out like Go's `MarshalIndent(v, indent, "  ")`.
fn array(rs: &[Resource], indent: &str) -> String {
    if rs.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = rs
        .iter()
        .map(|r| {
            let body = resource_json(r);
            let inner = format!("{indent}  ");
            let lines: Vec<String> = body.lines().map(|l| format!("{inner}{l}")).collect();
            lines.join("\n")
        })
        .collect();
    format!("[\n{}\n{indent}]", items.join(",\n"))
}

/// Go's encoding/json escapes these three inside strings; they never occur outside strings.
fn go_html_escape(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `-o name`: one `kind/name` per line (ours; upstream has no such format).
pub fn names(found: &Found) -> String {
    let rs = match found {
        Found::Named(rs) => rs,
        Found::Listing { items, .. } => items,
    };
    rs.iter()
        .map(|r| format!("{}/{}\n", r.kind().name().to_ascii_lowercase(), r.name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Vec<Resource> {
        codec::parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/16\n  nodeSelector: a == 'x' && !has(b)\n---\n\
             apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: b\nspec:\n  cidr: 10.1.0.0/16\n",
        )
        .expect("pools parse")
    }

    #[test]
    fn listing_yaml_is_a_kind_list_with_the_revision() {
        let rs = pools();
        let y = yaml(&Found::Listing {
            kind: Kind::IPPool,
            items: rs.clone(),
            revision: Some(7),
        });
        assert!(y.starts_with("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata:\n    name: a\n"), "{y}");
        assert!(
            y.ends_with("kind: IPPoolList\nmetadata:\n  resourceVersion: \"7\"\n"),
            "{y}"
        );
        assert_eq!(codec::parse_documents(&y).expect("listing parses back"), rs);
        let empty = yaml(&Found::Listing {
            kind: Kind::IPPool,
            items: vec![],
            revision: Some(3),
        });
        assert_eq!(
            empty,
            "apiVersion: projectcalico.org/v3\nitems: []\nkind: IPPoolList\nmetadata:\n  resourceVersion: \"3\"\n"
        );
    }

    #[test]
    fn named_resources_print_as_object_or_sequence() {
        let rs = pools();
        let one = yaml(&Found::Named(rs[..1].to_vec()));
        assert!(
            one.starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\n"),
            "{one}"
        );
        let two = yaml(&Found::Named(rs.clone()));
        assert!(
            two.starts_with("- apiVersion: projectcalico.org/v3\n  kind: IPPool\n"),
            "{two}"
        );
        assert_eq!(
            codec::parse_documents(&two).expect("sequence parses back"),
            rs
        );
    }

    #[test]
    fn json_follows_go_encoder() {
        let rs = pools();
        let j = json(&Found::Listing {
            kind: Kind::IPPool,
            items: rs.clone(),
            revision: Some(7),
        });
        assert!(j.starts_with("{\n  \"kind\": \"IPPoolList\",\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"metadata\": {\n    \"resourceVersion\": \"7\"\n  },\n  \"items\": [\n    {\n"), "{j}");
        assert!(j.ends_with("\n  ]\n}"), "{j}");
        assert!(j.contains(r"a == 'x' \u0026\u0026 !has(b)"), "{j}");
        assert_eq!(codec::parse_documents(&j).expect("json parses back"), rs);
        assert_eq!(names(&Found::Named(rs)), "ippool/a\nippool/b\n");
    }
}
