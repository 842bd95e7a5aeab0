//! What the user typed, resolved: kind names and the namespace rules every command shares.

use calico_api::{Kind, Resource};

/// Resolves a kind as typed on the command line (every alias upstream's resource manager
/// accepts is in `Kind::from_user`); upstream's message when it is unknown.
pub fn kind(typed: &str) -> Result<Kind, String> {
    Kind::from_user(typed).ok_or_else(|| format!("resource type '{typed}' is not supported"))
}

/// Upstream's namespace rules: `-n` fills a namespaced resource's empty namespace (default
/// `default`), must agree with one written in the resource, and is refused (like `-A`) for
/// cluster-scoped kinds. With `-A` the namespace is cleared so a listing spans all of them.
/// Returns the namespace to use (`None`: cluster-scoped, or every namespace under `-A`).
pub fn namespace(
    kind: Kind,
    res_ns: Option<&str>,
    cli_ns: Option<&str>,
    all_ns: bool,
) -> Result<Option<String>, String> {
    let res = res_ns.unwrap_or_default();
    let cli = cli_ns.unwrap_or_default();
    if kind.namespaced() {
        if all_ns && !cli.is_empty() {
            return Err(
                "cannot use both --namespace and --all-namespaces flags at the same time".into(),
            );
        }
        if res.is_empty() && !cli.is_empty() {
            return Ok(Some(cli.to_string()));
        }
        if all_ns {
            return Ok(None);
        }
        if res.is_empty() {
            return Ok(Some("default".into()));
        }
        if cli.is_empty() || cli == res {
            return Ok(Some(res.to_string()));
        }
        Err(format!(
            "resource namespace does not match client namespace. {res} != {cli}"
        ))
    } else if !res.is_empty() {
        Err(format!(
            "namespace should not be specified for a non-namespaced resource. {kind} is not a namespaced resource"
        ))
    } else if all_ns || !cli.is_empty() {
        Err(format!("{kind} is not namespaced"))
    } else {
        Ok(None)
    }
}

/// Applies `namespace` to a resource read from a file.
pub fn set_namespace(r: &mut Resource, cli_ns: Option<&str>) -> Result<(), String> {
    let ns = namespace(r.kind(), r.namespace(), cli_ns, false)?;
    r.metadata_mut().namespace = ns;
    Ok(())
}

/// One resource named on the command line (or taken from a file for get/delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    /// A resourceVersion given in a file (delete honours it).
    pub revision: Option<String>,
}

impl Target {
    pub fn of(r: &Resource) -> Target {
        Target {
            kind: r.kind(),
            namespace: r.namespace().map(String::from),
            name: r.name().to_string(),
            revision: r
                .metadata()
                .resource_version
                .clone()
                .filter(|v| !v.is_empty()),
        }
    }

    /// `Kind(ns/name)` as upstream names resources in messages.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) if self.kind.namespaced() => format!("{}({ns}/{})", self.kind, self.name),
            _ => format!("{}({})", self.kind, self.name),
        }
    }
}
