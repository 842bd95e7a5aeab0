//! `patch` and `label`: read one resource, change it, write it back with compare-and-swap on
//! the revision that was read, so a concurrent writer is never silently overwritten.

use crate::args;
use crate::client;
use crate::crud::Outcome;
use calico_api::{Kind, Resource};
use calico_datastore::resources::ResourceStore;
use serde_json::Value;

pub struct PatchOpts {
    pub kind: String,
    pub name: String,
    pub patch: String,
    pub patch_type: String,
    pub config: Option<String>,
    pub namespace: Option<String>,
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` deletes, anything else replaces.
/// (Upstream's strategic merge behaves the same on Calico's types, which declare no list merge
/// keys.)
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

pub async fn patch(o: &PatchOpts) -> Outcome {
    let kind = match args::kind(&o.kind) {
        Ok(k) => k,
        Err(e) => return Outcome::fail(e),
    };
    if o.name.is_empty() {
        return Outcome::fail("resource name may not be empty");
    }
    if !matches!(o.patch_type.as_str(), "strategic" | "merge") {
        return Outcome::fail(format!(
            "patch type '{}' is not supported; use strategic or merge (a JSON merge patch)",
            o.patch_type
        ));
    }
    let ns = match args::namespace(kind, None, o.namespace.as_deref(), false) {
        Ok(ns) => ns,
        Err(e) => return Outcome::fail(e),
    };
    let patch: Value = match serde_json::from_str(&o.patch) {
        Ok(p) => p,
        Err(e) => {
            return Outcome::fail(format!(
                "hit error: performing strategic merge patch: invalid JSON patch: {e}"
            ));
        }
    };
    let store = match client::connect(o.config.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let current = match client::bounded(store.get(kind, ns.as_deref(), &o.name)).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("hit error: {}", client::store_error(&e))),
    };
    let patched = match apply_patch(kind, &current, &patch) {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("hit error: {e}")),
    };
    match client::bounded(store.update(patched)).await {
        Ok(_) => Outcome {
            out: format!("Successfully patched 1 '{}' resource\n", kind.name()),
            err: None,
        },
        Err(e) => Outcome::fail(format!(
            "hit error: updating existing resource: {}",
            client::store_error(&e)
        )),
    }
}

/// The patched copy of `current`. Identity (kind, name, namespace) and the revision read stay
/// as they were, so the write is a CAS on what was patched.
fn apply_patch(kind: Kind, current: &Resource, patch: &Value) -> Result<Resource, String> {
    let mut doc = serde_json::to_value(current).map_err(|e| e.to_string())?;
    merge_patch(&mut doc, patch);
    let bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    let mut r = Resource::from_json(kind, &bytes)
        .map_err(|e| format!("creating resource from patched data: {e}"))?;
    let m = r.metadata_mut();
    m.name = current.name().to_string();
    m.namespace = current.namespace().map(String::from);
    m.resource_version = current.metadata().resource_version.clone();
    m.uid = current.metadata().uid.clone();
    m.creation_timestamp = current.metadata().creation_timestamp.clone();
    Ok(r)
}

pub struct LabelOpts {
    pub kind: String,
    pub name: String,
    pub label: String,
    pub overwrite: bool,
    pub remove: bool,
    pub config: Option<String>,
    pub namespace: Option<String>,
}

pub async fn label(o: &LabelOpts) -> Outcome {
    let (kind_s, name) = (&o.kind, &o.name);
    let (key, value) = if o.remove {
        (o.label.clone(), String::new())
    } else {
        match o.label.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => return Outcome::fail(format!("invalid label {}", o.label)),
        }
    };
    let kind = match args::kind(kind_s) {
        Ok(k) => k,
        Err(e) => return Outcome::fail(format!("failed to get {kind_s} {name}, error {e}")),
    };
    let ns = match args::namespace(kind, None, o.namespace.as_deref(), false) {
        Ok(ns) => ns,
        Err(e) => return Outcome::fail(format!("failed to get {kind_s} {name}, error {e}")),
    };
    let store: ResourceStore = match client::connect(o.config.as_deref()).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let mut r = match client::bounded(store.get(kind, ns.as_deref(), name)).await {
        Ok(r) => r,
        Err(calico_datastore::resources::StoreError::NotFound { .. }) => {
            return Outcome::fail(format!("{kind_s} {name} not found"));
        }
        Err(e) => {
            return Outcome::fail(format!(
                "failed to get {kind_s} {name}, error {}",
                client::store_error(&e)
            ));
        }
    };
    let labels = r.metadata_mut().labels.get_or_insert_with(Default::default);
    let mut overwritten = false;
    if o.remove {
        if labels.remove(&key).is_none() {
            return Outcome::fail(format!(
                "cannot remove label of {kind_s} {name}, key {key} does not exist"
            ));
        }
    } else {
        match labels.get(&key) {
            Some(old) if o.overwrite || *old == value => overwritten = true,
            Some(_) => {
                return Outcome::fail(format!(
                    "failed to update label of {kind_s} {name}, key {key} is already present. please use '--overwrite' to set a new value"
                ));
            }
            None => {}
        }
        labels.insert(key.clone(), value);
    }
    if let Err(e) = client::bounded(store.update(r)).await {
        return Outcome::fail(format!(
            "failed to update {kind_s} {name}, label not changed: {}",
            client::store_error(&e)
        ));
    }
    let out = if o.remove {
        format!("Successfully removed label {key} from {kind_s} {name}\n")
    } else if overwritten {
        format!("Successfully updated label {key} on {kind_s} {name}\n")
    } else {
        format!("Successfully set label {key} on {kind_s} {name}\n")
    };
    Outcome { out, err: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"list": [1, 2], "keep": true});
        merge_patch(&mut t, &json!({"list": [3]}));
        assert_eq!(t, json!({"list": [3], "keep": true}));
        let mut t = json!({"a": "foo"});
        merge_patch(&mut t, &json!({"a": {"bb": {"ccc": null}}}));
        assert_eq!(t, json!({"a": {"bb": {}}}));
    }
}
