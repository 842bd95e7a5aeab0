//! `create`, `apply`, `replace`, `delete` and `validate`: load everything, check everything,
//! then write, then report per resource in upstream's words.
//!
//! ```text
//!  -f FILE|DIR|- ──input──▶ resources ──namespace rules, defaults, validation──▶ prepared
//!     (any failure: report, nothing written)                                     │
//!  connect ──▶ pre-flight reads: exists? resourceVersion current? immutable fields kept?
//!     (any failure: report, nothing written)                                     │
//!  writes, one CAS each ──▶ Results ──report──▶ stdout / stderr + exit status
//! ```
//!
//! Upstream writes resource by resource and reports the ones that failed; here a file is
//! checked as a whole first, so only a datastore failure or a race in the middle of the writes
//! can leave part of it applied — and that case is reported with upstream's "Partial success"
//! wording.

use crate::args::{self, Target};
use crate::client;
use crate::input::{self, InputError};
use crate::node_delete::Ended;
use calico_api::{Kind, Resource};
use calico_datastore::Revision;
use calico_datastore::resources::{self, ResourceStore, StoreError};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Apply,
    Replace,
    Delete,
    Validate,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Apply => "apply",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Validate => "validate",
        }
    }
    fn past(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Apply => "applied",
            Action::Replace => "replaced",
            Action::Delete => "deleted",
            Action::Validate => "validated",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub filename: Option<String>,
    pub recursive: bool,
    pub skip_empty: bool,
    pub config: Option<String>,
    pub namespace: Option<String>,
    pub skip_exists: bool,
    pub skip_not_exists: bool,
    /// `delete KIND NAME...`.
    pub kind: Option<String>,
    pub names: Vec<String>,
}

/// What a command printed and, when it failed, the message for stderr (exit status 1).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub out: String,
    pub err: Option<String>,
}

impl Outcome {
    pub fn fail(msg: impl Into<String>) -> Outcome {
        Outcome {
            out: String::new(),
            err: Some(msg.into()),
        }
    }
}

/// Upstream's CommandResults, reduced to what the reports use.
#[derive(Debug, Default)]
struct Results {
    num_resources: usize,
    num_handled: usize,
    single_kind: Option<String>,
    res_errs: Vec<String>,
    err: Option<String>,
}

pub async fn run(action: Action, o: &Opts) -> Outcome {
    if action == Action::Delete {
        return delete(o).await;
    }
    let Some(filename) = o.filename.as_deref() else {
        return Outcome::fail("no resources specified: use -f FILE, -f DIR or -f - (stdin)");
    };
    let loaded = match input::load(filename, o.recursive, o.skip_empty) {
        Ok(rs) => rs,
        Err(InputError::Invalid(e)) => {
            return Outcome::fail(format!("failed to execute command: {e}"));
        }
        Err(InputError::Empty(e)) => return Outcome::fail(e),
    };
    let mut res = Results {
        num_resources: loaded.len(),
        ..Default::default()
    };
    res.single_kind = single_kind(&loaded);
    if loaded.is_empty() {
        return report(action, &res);
    }

    // Phase 1: namespace rules, defaults and validation of the whole input.
    let mut prepared = Vec::with_capacity(loaded.len());
    for mut r in loaded {
        let checked = args::set_namespace(&mut r, o.namespace.as_deref())
            .and_then(|_| resources::prepare(r).map_err(|e| client::store_error(&e)));
        match checked {
            Ok(r) => prepared.push(r),
            Err(e) => res.res_errs.push(e),
        }
    }
    if action == Action::Validate {
        res.num_handled = prepared.len();
        return report(action, &res);
    }
    if !res.res_errs.is_empty() {
        return report(action, &res);
    }

    // Phase 2: everything that can be checked against the datastore without writing.
    let store = match client::connect(o.config.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let mut todo = Vec::with_capacity(prepared.len());
    let mut seen = HashSet::new();
    for r in prepared {
        let t = Target::of(&r);
        if !seen.insert((t.kind, t.namespace.clone(), t.name.clone())) {
            res.res_errs
                .push(format!("{} appears more than once in the input", t.id()));
            continue;
        }
        match preflight(action, &store, &r, &t, o).await {
            Ok(skip) => todo.push((r, skip)),
            Err(Stop::Resource(e)) => res.res_errs.push(e),
            Err(Stop::Datastore(e)) => {
                res.res_errs = vec![e];
                break;
            }
        }
    }
    if res.res_errs.is_empty() {
        match pool_overlaps(&store, &todo).await {
            Ok(errs) => res.res_errs = errs,
            Err(e) => res.res_errs = vec![e],
        }
    }
    if !res.res_errs.is_empty() {
        return report(action, &res);
    }

    // Phase 3: the writes.
    for (r, skip) in todo {
        if skip {
            res.num_handled += 1;
            continue;
        }
        let written = client::bounded(async {
            match action {
                Action::Create => store.create(r).await,
                Action::Apply => store.apply(r).await,
                _ => store.update(r).await,
            }
        })
        .await;
        match written {
            Ok(_) => res.num_handled += 1,
            Err(e) if action == Action::Replace => {
                res.err = Some(client::store_error(&e));
                break;
            }
            Err(e) => res.res_errs.push(client::store_error(&e)),
        }
    }
    report(action, &res)
}

enum Stop {
    /// This resource cannot be written (exists, missing, stale, immutable field changed).
    Resource(String),
    /// The datastore failed; nothing else will work either.
    Datastore(String),
}

fn stop(e: StoreError) -> Stop {
    match e {
        StoreError::Datastore(inner) => Stop::Datastore(client::explain(&inner)),
        other => Stop::Resource(client::store_error(&other)),
    }
}

/// Checks one prepared resource against the store. `Ok(true)`: skip it (already exists and
/// `--skip-exists`).
async fn preflight(
    action: Action,
    store: &ResourceStore,
    r: &Resource,
    t: &Target,
    o: &Opts,
) -> Result<bool, Stop> {
    if action == Action::Apply && t.kind == Kind::ClusterInformation {
        // calico-node owns it; upstream refuses apply the same way.
        return Err(Stop::Resource(
            "operation apply is not supported on ClusterInformation: resource is readonly".into(),
        ));
    }
    let current = client::bounded(store.get(t.kind, t.namespace.as_deref(), &t.name)).await;
    match (action, current) {
        (Action::Create, Ok(_)) if o.skip_exists => Ok(true),
        (Action::Create, Ok(_)) => Err(Stop::Resource(
            StoreError::AlreadyExists {
                kind: t.kind,
                name: display(t),
            }
            .to_string(),
        )),
        (Action::Create | Action::Apply, Err(StoreError::NotFound { .. })) => Ok(false),
        (_, Err(e)) => Err(stop(e)),
        (_, Ok(current)) => {
            check_revision(t, &current).map_err(stop)?;
            r.validate_update(&current).map_err(|errors| {
                stop(StoreError::Invalid {
                    kind: t.kind,
                    name: display(t),
                    errors,
                })
            })?;
            Ok(false)
        }
    }
}

/// IPPools of the input that would overlap another pool once everything is written: a stored
/// pool, or another pool of the same input (the store checks each write only against what is
/// already stored, so two new overlapping pools would otherwise both pass one by one).
async fn pool_overlaps(
    store: &ResourceStore,
    todo: &[(Resource, bool)],
) -> Result<Vec<String>, String> {
    let writing: Vec<&Resource> = todo
        .iter()
        .filter(|(r, skip)| !skip && r.kind() == Kind::IPPool)
        .map(|(r, _)| r)
        .collect();
    if writing.is_empty() {
        return Ok(Vec::new());
    }
    let stored = client::bounded(store.list(Kind::IPPool, None))
        .await
        .map_err(|e| client::store_error(&e))?;
    // Stored pools the input does not replace, then each input pool against those and the input
    // pools before it, so an overlapping pair is reported once, at the later one (the one
    // upstream, writing in order, would refuse).
    let kept: Vec<&Resource> = stored
        .iter()
        .filter(|s| !writing.iter().any(|w| w.name() == s.name()))
        .collect();
    Ok(writing
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let others = kept.iter().chain(&writing[..i]).copied();
            resources::check_pool_overlap(w, others).err()
        })
        .map(|e| client::store_error(&e))
        .collect())
}

/// A resourceVersion given by the user must be the stored one (upstream: "update conflict").
fn check_revision(t: &Target, current: &Resource) -> Result<(), StoreError> {
    let Some(given) = t.revision.as_deref() else {
        return Ok(());
    };
    let expected: Revision = given.parse().map_err(|_| StoreError::BadResourceVersion {
        kind: t.kind,
        name: display(t),
        value: given.to_string(),
    })?;
    let actual: Revision = current
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    if expected != actual {
        return Err(StoreError::Conflict {
            kind: t.kind,
            name: display(t),
            expected,
            actual,
        });
    }
    Ok(())
}

fn display(t: &Target) -> String {
    match &t.namespace {
        Some(ns) if t.kind.namespaced() => format!("{ns}/{}", t.name),
        _ => t.name.clone(),
    }
}

fn single_kind(rs: &[Resource]) -> Option<String> {
    let kinds: HashSet<_> = rs.iter().map(Resource::kind).collect();
    match kinds.len() {
        1 => kinds.into_iter().next().map(|k| k.name().to_string()),
        _ => None,
    }
}

/// `delete KIND NAME...` or `delete -f`: every target must exist (or `--skip-not-exists`)
/// before any is deleted.
async fn delete(o: &Opts) -> Outcome {
    let (targets, kind_name) = match delete_targets(o) {
        Ok(t) => t,
        Err(out) => return out,
    };
    let mut res = Results {
        num_resources: targets.len(),
        single_kind: kind_name,
        ..Default::default()
    };
    if targets.is_empty() {
        return report(Action::Delete, &res);
    }
    let store = match client::connect(o.config.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let mut todo = Vec::new();
    for t in targets {
        match client::bounded(store.get(t.kind, t.namespace.as_deref(), &t.name)).await {
            Ok(current) => match check_revision(&t, &current) {
                Ok(()) => todo.push((t, true)),
                Err(e) => res.res_errs.push(client::store_error(&e)),
            },
            Err(StoreError::NotFound { .. }) if o.skip_not_exists => todo.push((t, false)),
            Err(e @ StoreError::NotFound { .. }) => res.res_errs.push(client::store_error(&e)),
            Err(e) => {
                res.err = Some(client::store_error(&e));
                return report(Action::Delete, &res);
            }
        }
    }
    if !res.res_errs.is_empty() {
        return report(Action::Delete, &res);
    }
    for (t, present) in todo {
        let expected = t.revision.as_deref().and_then(|v| v.parse().ok());
        if t.kind == Kind::Node {
            // As upstream, a missing Node's resources are still cleaned up (`--skip-not-exists`).
            match crate::node_delete::delete_node(&store, &t.name, expected).await {
                Ended::Deleted => res.num_handled += 1,
                Ended::NodeMissing if o.skip_not_exists => res.num_handled += 1,
                Ended::NodeMissing => {
                    res.res_errs
                        .push(client::store_error(&StoreError::NotFound {
                            kind: Kind::Node,
                            name: t.name.clone(),
                        }))
                }
                Ended::Refused(e) => res.res_errs.push(e),
                Ended::Failed(e) => {
                    res.err = Some(e);
                    break;
                }
            }
            continue;
        }
        if !present {
            res.num_handled += 1;
            continue;
        }
        match client::bounded(store.delete(t.kind, t.namespace.as_deref(), &t.name, expected)).await
        {
            Ok(_) => res.num_handled += 1,
            Err(StoreError::NotFound { .. }) if o.skip_not_exists => res.num_handled += 1,
            Err(e @ StoreError::Datastore(_)) => {
                res.err = Some(client::store_error(&e));
                break;
            }
            Err(e) => res.res_errs.push(client::store_error(&e)),
        }
    }
    report(Action::Delete, &res)
}

type Targets = (Vec<Target>, Option<String>);

fn delete_targets(o: &Opts) -> Result<Targets, Outcome> {
    if let Some(f) = o.filename.as_deref() {
        let loaded = match input::load(f, o.recursive, o.skip_empty) {
            Ok(rs) => rs,
            Err(InputError::Invalid(e)) => {
                return Err(Outcome::fail(format!("failed to execute command: {e}")));
            }
            Err(InputError::Empty(e)) => return Err(Outcome::fail(e)),
        };
        let kind = single_kind(&loaded);
        let mut targets = Vec::new();
        for mut r in loaded {
            args::set_namespace(&mut r, o.namespace.as_deref()).map_err(Outcome::fail)?;
            targets.push(Target::of(&r));
        }
        return Ok((targets, kind));
    }
    let Some(kind) = o.kind.as_deref() else {
        return Err(Outcome::fail(
            "no resources specified: use KIND NAME... or -f FILE|DIR|-",
        ));
    };
    let kind = args::kind(kind).map_err(Outcome::fail)?;
    if o.names.is_empty() {
        return Err(Outcome::fail("no resources specified"));
    }
    if o.names.iter().any(String::is_empty) {
        return Err(Outcome::fail("resource name may not be empty"));
    }
    let ns = args::namespace(kind, None, o.namespace.as_deref(), false).map_err(Outcome::fail)?;
    let targets = o
        .names
        .iter()
        .map(|n| Target {
            kind,
            namespace: ns.clone(),
            name: n.clone(),
            revision: None,
        })
        .collect();
    Ok((targets, Some(kind.name().to_string())))
}

fn errs(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Upstream's result messages for each command.
fn report(action: Action, r: &Results) -> Outcome {
    let (verb, past) = (action.verb(), action.past());
    let kind = r.single_kind.as_deref();
    let mut out = Outcome::default();
    if r.num_resources == 0 {
        match &r.err {
            Some(e) => out.err = Some(e.clone()),
            None => out.out = "No resources specified\n".into(),
        }
        return out;
    }
    if action == Action::Delete {
        if r.err.is_none() && r.num_handled > 0 {
            out.out = match kind {
                Some(k) => format!("Successfully deleted {} '{k}' resource(s)\n", r.num_handled),
                None => format!("Successfully deleted {} resource(s)\n", r.num_handled),
            };
        } else if let Some(e) = &r.err {
            out.err = Some(format!("hit error: {e}"));
            return out;
        }
        if !r.res_errs.is_empty() {
            let lines: Vec<String> = r
                .res_errs
                .iter()
                .map(|e| match kind {
                    Some(k) => format!("Failed to delete '{k}' resource: {e}"),
                    None => format!("Failed to delete resource: {e}"),
                })
                .collect();
            out.err = Some(lines.join("\n"));
        }
        return out;
    }
    // Replace reports its single error; the others list every failed resource.
    let failure = match (action, &r.err) {
        (Action::Replace, Some(e)) => Some(e.clone()),
        (Action::Replace, None) if !r.res_errs.is_empty() => Some(r.res_errs.join("; ")),
        (_, _) if !r.res_errs.is_empty() => Some(errs(&r.res_errs)),
        (_, Some(e)) => Some(e.clone()),
        _ => None,
    };
    match failure {
        None => {
            out.out = match kind {
                Some(k) => format!("Successfully {past} {} '{k}' resource(s)\n", r.num_handled),
                None => format!("Successfully {past} {} resource(s)\n", r.num_handled),
            };
        }
        Some(e) if r.num_handled == 0 => {
            out.err = Some(match kind {
                Some(k) if r.num_resources == 1 => format!("failed to {verb} '{k}' resource: {e}"),
                None if r.num_resources == 1 => format!("failed to {verb} resource: {e}"),
                Some(k) => format!("failed to {verb} any '{k}' resources: {e}"),
                None => format!("failed to {verb} any resources: {e}"),
            });
        }
        Some(e) => {
            out.out = match kind {
                Some(k) => format!(
                    "Partial success: {past} the first {} out of {} '{k}' resources:\n",
                    r.num_handled, r.num_resources
                ),
                None => format!(
                    "Partial success: {past} the first {} out of {} resources:\n",
                    r.num_handled, r.num_resources
                ),
            };
            out.err = Some(format!("hit error: {e}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(n: usize, handled: usize, errs: &[&str]) -> Results {
        Results {
            num_resources: n,
            num_handled: handled,
            single_kind: Some("IPPool".into()),
            res_errs: errs.iter().map(|s| s.to_string()).collect(),
            err: None,
        }
    }

    #[test]
    fn success_messages() {
        let o = report(Action::Create, &results(1, 1, &[]));
        assert_eq!(o.out, "Successfully created 1 'IPPool' resource(s)\n");
        let mut r = results(2, 2, &[]);
        r.single_kind = None;
        assert_eq!(
            report(Action::Apply, &r).out,
            "Successfully applied 2 resource(s)\n"
        );
        assert_eq!(
            report(Action::Delete, &results(1, 1, &[])).out,
            "Successfully deleted 1 'IPPool' resource(s)\n"
        );
    }

    #[test]
    fn failure_messages() {
        let o = report(
            Action::Create,
            &results(1, 0, &["resource already exists: IPPool(p)"]),
        );
        assert_eq!(
            o.err.as_deref(),
            Some("failed to create 'IPPool' resource: [resource already exists: IPPool(p)]")
        );
        let o = report(Action::Apply, &results(3, 0, &["a", "b"]));
        assert_eq!(
            o.err.as_deref(),
            Some("failed to apply any 'IPPool' resources: [a b]")
        );
        let o = report(Action::Create, &results(3, 2, &["x"]));
        assert_eq!(
            o.out,
            "Partial success: created the first 2 out of 3 'IPPool' resources:\n"
        );
        assert_eq!(o.err.as_deref(), Some("hit error: [x]"));
        let mut r = results(1, 0, &[]);
        r.err = Some("update conflict: IPPool(p)".into());
        assert_eq!(
            report(Action::Replace, &r).err.as_deref(),
            Some("failed to replace 'IPPool' resource: update conflict: IPPool(p)")
        );
        let o = report(
            Action::Delete,
            &results(1, 0, &["resource does not exist: IPPool(p)"]),
        );
        assert_eq!(
            o.err.as_deref(),
            Some("Failed to delete 'IPPool' resource: resource does not exist: IPPool(p)")
        );
        assert_eq!(o.out, "");
    }
}
