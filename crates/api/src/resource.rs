//! `Resource`: one value of any kind, and the operations every kind shares — defaults,
//! validation (the envelope and metadata rules here, the spec rules in each kind's module),
//! update rules, and typed deserialisation by kind (used by the codec to keep error positions).

use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::resources::common::{
    check_labels, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
};
use crate::resources::*;
use crate::validate::ValidationErrors;

macro_rules! resource_enum {
    ($($variant:ident),* $(,)?) => {
        /// A resource of any kind. Serialises exactly as the inner type (with its own
        /// `apiVersion`/`kind`), so a `Vec<Resource>` prints as upstream's documents do.
        // FelixConfiguration (~3 KiB, every upstream field) dominates the size; resources are
        // moved rarely and boxing would change the variant types every other crate matches on.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        pub enum Resource { $($variant($variant)),* }

        impl Resource {
            pub fn kind(&self) -> Kind {
                match self { $(Resource::$variant(_) => Kind::$variant),* }
            }
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $(Resource::$variant(r) => &r.metadata),* }
            }
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Resource::$variant(r) => &mut r.metadata),* }
            }
            fn header_mut(&mut self) -> (&mut String, &mut String) {
                match self { $(Resource::$variant(r) => (&mut r.api_version, &mut r.kind)),* }
            }
            fn header(&self) -> (&str, &str) {
                match self { $(Resource::$variant(r) => (&r.api_version, &r.kind)),* }
            }
            fn apply_kind_defaults(&mut self) {
                match self { $(Resource::$variant(r) => r.apply_defaults()),* }
            }
            fn validate_kind(&self) -> Result<(), ValidationErrors> {
                match self { $(Resource::$variant(r) => r.validate()),* }
            }
            /// Parses one resource of a known kind from JSON (the datastore's stored form).
            pub fn from_json(kind: Kind, bytes: &[u8]) -> Result<Resource, serde_json::Error> {
                Ok(match kind { $(Kind::$variant => Resource::$variant(serde_json::from_slice(bytes)?)),* })
            }
            /// Deserialises one resource of a known kind from any serde format, streaming, so
            /// format errors keep their line and column.
            pub fn deserialize_kind<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<Resource, D::Error> {
                use serde::Deserialize;
                Ok(match kind { $(Kind::$variant => Resource::$variant($variant::deserialize(d)?)),* })
            }
        }

        $(
            impl From<$variant> for Resource {
                fn from(r: $variant) -> Self { Resource::$variant(r) }
            }
        )*
    };
}

resource_enum!(
    IPPool,
    IPAMConfiguration,
    IPReservation,
    BlockAffinity,
    Node,
    WorkloadEndpoint,
    HostEndpoint,
    BGPConfiguration,
    BGPPeer,
    BGPFilter,
    FelixConfiguration,
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
    Profile,
    ClusterInformation,
    KubeControllersConfiguration,
);

impl Resource {
    pub fn name(&self) -> &str {
        &self.metadata().name
    }
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
    /// Serialises to the JSON the datastore stores.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data structs with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Fills upstream's defaults in place: `apiVersion`/`kind`, `namespace: default` for
    /// namespaced kinds without one, and each kind's spec defaults (blockSize 26, nodeSelector
    /// all(), policy tier `default`, …). Idempotent, so printed output applies again unchanged.
    pub fn apply_defaults(&mut self) {
        let kind = self.kind();
        let (api_version, kind_field) = self.header_mut();
        if api_version.is_empty() {
            *api_version = crate::API_VERSION.to_string();
        }
        if kind_field.is_empty() {
            *kind_field = kind.name().to_string();
        }
        if kind.namespaced() {
            let m = self.metadata_mut();
            if m.namespace.as_deref().is_none_or(str::is_empty) {
                m.namespace = Some("default".into());
            }
        }
        self.apply_kind_defaults();
    }

    /// Every rule upstream enforces for this kind; errors name the field path and the fix.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        self.check_envelope(&mut errs);
        if let Err(e) = self.validate_kind() {
            errs.0.extend(e.0);
        }
        errs.into_result()
    }

    fn check_envelope(&self, errs: &mut ValidationErrors) {
        let kind = self.kind();
        let (api_version, kind_field) = self.header();
        if !api_version.is_empty() && api_version != crate::API_VERSION {
            errs.push(
                "apiVersion",
                format!(
                    "{api_version:?} is not supported; use {}",
                    crate::API_VERSION
                ),
            );
        }
        if !kind_field.is_empty() && kind_field != kind.name() {
            errs.push(
                "kind",
                format!(
                    "{kind_field:?} does not match this {}; write kind: {}",
                    kind.name(),
                    kind.name()
                ),
            );
        }
        let m = self.metadata();
        check_name(kind, &m.name, errs);
        match (&m.namespace, kind.namespaced()) {
            (Some(ns), true) if !ns.is_empty() && !is_dns1123_label(ns) => {
                errs.push(
                    "metadata.namespace",
                    format!("{ns:?} is not a namespace name (lower-case letters, digits and '-')"),
                );
            }
            (Some(ns), false) if !ns.is_empty() => {
                errs.push(
                    "metadata.namespace",
                    format!("{} is cluster-wide; remove metadata.namespace", kind.name()),
                );
            }
            _ => {}
        }
        if let Some(labels) = &m.labels {
            check_labels(labels, "metadata.labels", errs);
        }
        if let Some(ann) = &m.annotations {
            let mut size = 0usize;
            for (k, v) in ann {
                if !is_qualified_name(&k.to_ascii_lowercase()) {
                    errs.push(
                        format!("metadata.annotations[{k}]"),
                        "invalid annotation key: use [prefix/]name with a DNS-subdomain prefix",
                    );
                }
                size += k.len() + v.len();
            }
            if size > 256 * 1024 {
                errs.push(
                    "metadata.annotations",
                    format!("annotations total {size} bytes; the limit is 262144"),
                );
            }
        }
    }

    /// Rules that compare a replacement with the stored copy (immutable fields such as an
    /// IPPool's `cidr` and `blockSize`).
    pub fn validate_update(&self, old: &Resource) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        if self.kind() != old.kind() {
            errs.push(
                "kind",
                format!("cannot replace a {} with a {}", old.kind(), self.kind()),
            );
            return Err(errs);
        }
        match (self, old) {
            (Resource::IPPool(new), Resource::IPPool(old)) => return new.validate_update(old),
            (Resource::BlockAffinity(new), Resource::BlockAffinity(old))
                if new.spec.cidr != old.spec.cidr || new.spec.node != old.spec.node =>
            {
                errs.push(
                    "spec",
                    "a BlockAffinity's node and cidr cannot change; delete it and create a new one",
                );
            }
            (Resource::WorkloadEndpoint(new), Resource::WorkloadEndpoint(old))
                if !old.spec.node.is_empty() && new.spec.node != old.spec.node =>
            {
                errs.push(
                    "spec.node",
                    format!(
                        "a workload endpoint cannot move nodes (was {}); delete and recreate it",
                        old.spec.node
                    ),
                );
            }
            _ => {}
        }
        errs.into_result()
    }
}

/// Upstream's name rules: DNS-1123 subdomain for most kinds; a DNS label for tiers; policy names
/// are one label, optionally prefixed by a tier (`tier.name`), or `knp.default.<name>`.
fn check_name(kind: Kind, name: &str, errs: &mut ValidationErrors) {
    if name.is_empty() {
        errs.push(
            "metadata.name",
            format!("a {} needs a name; set metadata.name", kind.name()),
        );
        return;
    }
    if name.len() > 253 {
        errs.push(
            "metadata.name",
            format!(
                "name is too long by {} bytes (at most 253)",
                name.len() - 253
            ),
        );
        return;
    }
    let ok = match kind {
        Kind::Tier => is_dns1123_label(name),
        Kind::GlobalNetworkPolicy => {
            let parts: Vec<&str> = name.split('.').collect();
            parts.len() <= 2 && parts.iter().all(|p| is_dns1123_label(p))
        }
        Kind::NetworkPolicy => {
            let parts: Vec<&str> = name.split('.').collect();
            (parts.len() <= 2 && parts.iter().all(|p| is_dns1123_label(p)))
                || ["knp.default.", "ossg.default."]
                    .iter()
                    .any(|p| name.strip_prefix(p).is_some_and(is_dns1123_subdomain))
        }
        _ => is_dns1123_subdomain(name),
    };
    if !ok {
        let rule = match kind {
            Kind::Tier => "lower-case letters, digits and '-' (no dots), at most 63 characters",
            Kind::GlobalNetworkPolicy | Kind::NetworkPolicy => {
                "lower-case letters, digits and '-', optionally prefixed by a tier name and '.'"
            }
            _ => {
                "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
            }
        };
        let suggestion: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        errs.push(
            "metadata.name",
            format!(
                "{name:?} is not a valid {} name: use {rule} (e.g. {:?})",
                kind.name(),
                suggestion.trim_matches(['-', '.'])
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_name_rules() {
        let mut r = Resource::from(IPPool::new("Bad_Name"));
        if let Resource::IPPool(p) = &mut r {
            p.spec.cidr = "10.0.0.0/16".into();
        }
        let e = r.validate().unwrap_err();
        assert_eq!(e.0[0].field, "metadata.name");
        assert!(e.0[0].message.contains("\"bad-name\""), "{e}");

        let mut t = Resource::from(Tier::new("a.b"));
        t.apply_defaults();
        assert_eq!(t.validate().unwrap_err().0[0].field, "metadata.name");

        let mut np = Resource::from(NetworkPolicy::new("default.allow-dns"));
        np.apply_defaults();
        assert_eq!(np.namespace(), Some("default"));
        assert!(np.validate().is_ok());
        let np = Resource::from(NetworkPolicy::new("a.b.c"));
        assert!(np.validate().is_err());

        let mut pool = IPPool::new("p");
        pool.spec.cidr = "10.0.0.0/16".into();
        pool.metadata.namespace = Some("kube-system".into());
        pool.kind = "IPPools".into();
        let f: Vec<_> = Resource::from(pool)
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(f, ["kind", "metadata.namespace"]);
    }

    #[test]
    fn update_rules_dispatch() {
        let mut a = IPPool::new("p");
        a.spec.cidr = "10.0.0.0/16".into();
        let mut b = a.clone();
        b.spec.cidr = "10.9.0.0/16".into();
        let err = Resource::from(b)
            .validate_update(&Resource::from(a.clone()))
            .unwrap_err();
        assert_eq!(err.0[0].field, "spec.cidr");
        let other = Resource::from(Tier::new("t"));
        assert!(other.validate_update(&Resource::from(a)).is_err());
    }
}
