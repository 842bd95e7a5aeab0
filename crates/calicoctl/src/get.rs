//! `get`: read resources by kind and name (or from a file) and print them as a table, YAML,
//! JSON or names, with upstream's namespace rules and error reporting.

use crate::args::{self, Target};
use crate::client;
use crate::crud::Outcome;
use crate::input::{self, InputError};
use crate::output::{self, Found};
use crate::table::{self, TableContext};
use calico_api::{Kind, Resource};
use calico_datastore::resources::{ResourceStore, StoreError};

#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub kind: Option<String>,
    pub names: Vec<String>,
    pub filename: Option<String>,
    pub recursive: bool,
    pub skip_empty: bool,
    pub config: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub output: String,
    pub export: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
    Name,
    Table {
        wide: bool,
        headings: Option<Vec<String>>,
    },
}

fn format(output: &str) -> Result<Format, String> {
    Ok(match output {
        "yaml" | "yml" => Format::Yaml,
        "json" => Format::Json,
        "name" => Format::Name,
        "ps" | "" => Format::Table {
            wide: false,
            headings: None,
        },
        "wide" => Format::Table {
            wide: true,
            headings: None,
        },
        other => match other.split_once('=') {
            Some(("custom-columns", "")) => {
                return Err("need to specify at least one column".into());
            }
            Some(("custom-columns", cols)) => Format::Table {
                wide: false,
                headings: Some(cols.split(',').map(str::to_string).collect()),
            },
            Some(("go-template" | "go-template-file", _)) => {
                return Err(format!(
                    "output format '{other}' is not supported by this calicoctl; use yaml, json, ps, wide, name or custom-columns=..."
                ));
            }
            _ => return Err(format!("unrecognized output format '{other}'")),
        },
    })
}

enum What {
    Listing {
        kind: Kind,
        namespace: Option<String>,
    },
    Named(Vec<Target>),
}

pub async fn run(o: &Opts) -> Outcome {
    let fmt = match format(&o.output) {
        Ok(f) => f,
        Err(e) => return Outcome::fail(e),
    };
    let what = match what(o) {
        Ok(w) => w,
        Err(e) => return Outcome::fail(e),
    };
    let store = match client::connect(o.config.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let mut errors = Vec::new();
    let found = match what {
        What::Listing { kind, namespace } => {
            match client::bounded(store.list_with_revision(kind, namespace.as_deref())).await {
                Ok((items, rev)) => Found::Listing {
                    kind,
                    items,
                    revision: Some(rev),
                },
                Err(e) => {
                    return Outcome::fail(format!(
                        "failed to get resources: {}",
                        client::store_error(&e)
                    ));
                }
            }
        }
        What::Named(targets) => {
            let mut rs = Vec::new();
            for t in targets {
                match client::bounded(store.get(t.kind, t.namespace.as_deref(), &t.name)).await {
                    Ok(mut r) => {
                        if o.export {
                            export(&mut r);
                        }
                        rs.push(r);
                    }
                    Err(e) => errors.push(client::store_error(&e)),
                }
            }
            Found::Named(rs)
        }
    };
    let print_namespace = o.all_namespaces || o.namespace.as_deref().is_some_and(|n| !n.is_empty());
    let text = match &fmt {
        Format::Yaml => output::yaml(&found),
        Format::Json => output::json(&found),
        Format::Name => output::names(&found),
        Format::Table { wide, headings } => {
            match tables(&store, &found, *wide, headings.as_deref(), print_namespace).await {
                Ok(t) => t,
                Err(e) => return Outcome::fail(e),
            }
        }
    };
    Outcome {
        out: text,
        err: if errors.is_empty() {
            None
        } else {
            Some(errors.join("\n"))
        },
    }
}

fn what(o: &Opts) -> Result<What, String> {
    if let Some(f) = o.filename.as_deref() {
        let loaded = input::load(f, o.recursive, o.skip_empty).map_err(|e| match e {
            InputError::Invalid(e) => format!("failed to execute command: {e}"),
            InputError::Empty(e) => e,
        })?;
        let mut targets = Vec::new();
        for r in loaded {
            let ns = args::namespace(
                r.kind(),
                r.namespace(),
                o.namespace.as_deref(),
                o.all_namespaces,
            )?;
            let mut t = Target::of(&r);
            t.namespace = ns;
            t.revision = None;
            targets.push(t);
        }
        return Ok(What::Named(targets));
    }
    let Some(kind) = o.kind.as_deref() else {
        return Err("no resources specified: use KIND [NAME...] or -f FILE|DIR|-".into());
    };
    let kind = args::kind(kind).map_err(|e| format!("failed to get resources: {e}"))?;
    let ns = args::namespace(kind, None, o.namespace.as_deref(), o.all_namespaces)?;
    if o.names.is_empty() {
        return Ok(What::Listing {
            kind,
            namespace: ns,
        });
    }
    if o.names.iter().any(String::is_empty) {
        return Err("failed to get resources: resource name may not be empty".into());
    }
    if kind.namespaced() && ns.is_none() {
        return Err("cannot use --all-namespace flag for getting a single resource".into());
    }
    Ok(What::Named(
        o.names
            .iter()
            .map(|n| Target {
                kind,
                namespace: ns.clone(),
                name: n.clone(),
                revision: None,
            })
            .collect(),
    ))
}

/// `--export`: drop what only makes sense in this cluster (upstream's list).
fn export(r: &mut Resource) {
    let m = r.metadata_mut();
    m.namespace = None;
    m.uid = None;
    m.resource_version = None;
    m.creation_timestamp = None;
    m.deletion_timestamp = None;
    m.deletion_grace_period_seconds = None;
}

async fn tables(
    store: &ResourceStore,
    found: &Found,
    wide: bool,
    custom: Option<&[String]>,
    print_namespace: bool,
) -> Result<String, String> {
    // Upstream prints one table for a listing, and one table per resource fetched by name.
    let groups: Vec<(Kind, Vec<&Resource>)> = match found {
        Found::Listing { kind, items, .. } => vec![(*kind, items.iter().collect())],
        Found::Named(rs) => rs.iter().map(|r| (r.kind(), vec![r])).collect(),
    };
    let mut ctx: Option<TableContext> = None;
    let mut out = String::new();
    for (kind, rs) in groups {
        let mut headings: Vec<&str> = match custom {
            Some(h) => h.iter().map(String::as_str).collect(),
            None => table::default_headings(kind, wide).to_vec(),
        };
        if print_namespace && kind.namespaced() && custom.is_none() {
            headings.insert(0, "NAMESPACE");
        }
        if ctx.is_none() {
            ctx = Some(if kind == Kind::Node && headings.contains(&"ASN") {
                context(store).await
            } else {
                TableContext::default()
            });
        }
        let values: Vec<serde_json::Value> = rs
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        out.push_str(&table::render(
            kind,
            &headings,
            &values,
            ctx.as_ref().unwrap_or(&TableContext::default()),
        )?);
    }
    Ok(out)
}

/// The cluster AS number nodes inherit: BGPConfiguration `default`'s, else 64512.
async fn context(store: &ResourceStore) -> TableContext {
    let asn = match client::bounded(store.get(Kind::BGPConfiguration, None, "default")).await {
        Ok(r) => serde_json::to_value(&r)
            .ok()
            .and_then(|v| v.pointer("/spec/asNumber").cloned())
            .filter(|v| !v.is_null())
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_else(|| "64512".into()),
        Err(StoreError::NotFound { .. }) => "64512".into(),
        Err(_) => "unknown".into(),
    };
    TableContext {
        default_as_number: asn,
    }
}
