//! Typed access to v3 resources: `Resource` ⇄ (key, JSON), `resourceVersion` = mod revision.
//!
//! Every write is validated first and is a single compare-and-swap, so a rejected resource or a
//! lost race changes nothing. An IPPool write also reads the other pools first and is refused
//! when its CIDR shares addresses with any of them (upstream's client refuses the same); two
//! writers racing with overlapping pools can still both succeed, as upstream's can.

use crate::error::Error;
use crate::keys;
use crate::{Datastore, KeyValue, Revision};
use calico_api::{Kind, Resource, ValidationErrors};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind}({name}) is not valid: {errors}")]
    Invalid {
        kind: Kind,
        name: String,
        errors: ValidationErrors,
    },
    #[error("resource does not exist: {kind}({name})")]
    NotFound { kind: Kind, name: String },
    #[error("resource already exists: {kind}({name})")]
    AlreadyExists { kind: Kind, name: String },
    #[error(
        "update conflict: {kind}({name}) has resourceVersion {actual}, not {expected}; get it again and reapply your change"
    )]
    Conflict {
        kind: Kind,
        name: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("{kind}({name}): metadata.resourceVersion {value:?} is not a number")]
    BadResourceVersion {
        kind: Kind,
        name: String,
        value: String,
    },
    #[error(transparent)]
    Datastore(#[from] Error),
}

/// The display name `ns/name` or `name`.
fn display_name(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

pub struct ResourceStore {
    ds: Arc<dyn Datastore>,
    now: fn() -> SystemTime,
}

impl ResourceStore {
    pub fn new(ds: Arc<dyn Datastore>) -> Self {
        ResourceStore {
            ds,
            now: SystemTime::now,
        }
    }

    /// For tests: a fixed clock for creationTimestamp.
    pub fn with_clock(ds: Arc<dyn Datastore>, now: fn() -> SystemTime) -> Self {
        ResourceStore { ds, now }
    }

    pub fn datastore(&self) -> &Arc<dyn Datastore> {
        &self.ds
    }

    fn ns(kind: Kind, ns: Option<&str>) -> Option<&str> {
        if kind.namespaced() {
            Some(ns.unwrap_or("default"))
        } else {
            None
        }
    }

    fn decode(kind: Kind, kv: &KeyValue) -> Result<Resource, StoreError> {
        let mut r = Resource::from_json(kind, &kv.value).map_err(|e| Error::Corrupt {
            key: kv.key.clone(),
            reason: e.to_string(),
        })?;
        r.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
        Ok(r)
    }

    fn encode(r: &Resource) -> Vec<u8> {
        let mut stored = r.clone();
        stored.metadata_mut().resource_version = None;
        stored.to_json()
    }

    fn expected_revision(r: &Resource) -> Result<Option<Revision>, StoreError> {
        match r.metadata().resource_version.as_deref() {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| StoreError::BadResourceVersion {
                    kind: r.kind(),
                    name: r.name().to_string(),
                    value: v.to_string(),
                }),
        }
    }

    /// Defaults, namespace and validation: the checks every write makes before touching the store.
    pub fn prepare(&self, r: Resource) -> Result<Resource, StoreError> {
        prepare(r)
    }

    pub async fn get(
        &self,
        kind: Kind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Resource, StoreError> {
        let ns = Self::ns(kind, ns);
        match self.ds.get(&keys::resource_key(kind, ns, name)).await? {
            Some(kv) => Self::decode(kind, &kv),
            None => Err(StoreError::NotFound {
                kind,
                name: display_name(ns, name),
            }),
        }
    }

    /// All resources of `kind`; for namespaced kinds, in `ns` or (None) in every namespace.
    pub async fn list(&self, kind: Kind, ns: Option<&str>) -> Result<Vec<Resource>, StoreError> {
        Ok(self.list_with_revision(kind, ns).await?.0)
    }

    /// Like `list`, plus the store revision the listing reflects (a list's resourceVersion).
    pub async fn list_with_revision(
        &self,
        kind: Kind,
        ns: Option<&str>,
    ) -> Result<(Vec<Resource>, Revision), StoreError> {
        let listing = self.ds.list(&keys::resource_prefix(kind, ns)).await?;
        let items = listing
            .kvs
            .iter()
            .filter(|kv| keys::parse_resource_key(&kv.key).is_some_and(|(k, _, _)| k == kind))
            .map(|kv| Self::decode(kind, kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, listing.revision))
    }

    /// Refuses an IPPool that overlaps a stored pool other than itself; other kinds pass.
    async fn refuse_pool_overlap(&self, r: &Resource) -> Result<(), StoreError> {
        if r.kind() != Kind::IPPool {
            return Ok(());
        }
        let pools = self.list(Kind::IPPool, None).await?;
        check_pool_overlap(r, &pools)
    }

    /// Creates a resource; fails if it exists. Sets uid and creationTimestamp.
    pub async fn create(&self, r: Resource) -> Result<Resource, StoreError> {
        let mut r = self.prepare(r)?;
        self.refuse_pool_overlap(&r).await?;
        let kind = r.kind();
        let key = keys::resource_key(kind, r.namespace(), r.name());
        let meta = r.metadata_mut();
        meta.resource_version = None;
        meta.uid = Some(new_uid());
        meta.creation_timestamp = Some(rfc3339((self.now)()));
        match self.ds.create(&key, Self::encode(&r), None).await {
            Ok(rev) => {
                r.metadata_mut().resource_version = Some(rev.to_string());
                Ok(r)
            }
            Err(Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists {
                kind,
                name: display_name(r.namespace(), r.name()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an existing resource. With `metadata.resourceVersion` set, only if it still
    /// matches; without, against the current revision. Immutable fields are checked against the
    /// stored copy; uid and creationTimestamp are kept.
    pub async fn update(&self, r: Resource) -> Result<Resource, StoreError> {
        let r = self.prepare(r)?;
        let kind = r.kind();
        let name = display_name(r.namespace(), r.name());
        let current = self.get(kind, r.namespace(), r.name()).await?;
        let current_rev = Self::expected_revision(&current)?.unwrap_or_default();
        let expected = Self::expected_revision(&r)?.unwrap_or(current_rev);
        if expected != current_rev {
            return Err(StoreError::Conflict {
                kind,
                name,
                expected,
                actual: current_rev,
            });
        }
        self.write_over(r, &current, expected).await
    }

    /// Creates or replaces (calicoctl apply): a given resourceVersion is honoured as in `update`.
    pub async fn apply(&self, r: Resource) -> Result<Resource, StoreError> {
        let r = self.prepare(r)?;
        match self.get(r.kind(), r.namespace(), r.name()).await {
            Err(StoreError::NotFound { .. }) => match self.create(r.clone()).await {
                // Lost a race with another creator: fall through to a CAS update.
                Err(StoreError::AlreadyExists { .. }) => self.update(r).await,
                other => other,
            },
            Err(e) => Err(e),
            Ok(current) => {
                let current_rev = Self::expected_revision(&current)?.unwrap_or_default();
                let expected = Self::expected_revision(&r)?.unwrap_or(current_rev);
                if expected != current_rev {
                    return Err(StoreError::Conflict {
                        kind: r.kind(),
                        name: display_name(r.namespace(), r.name()),
                        expected,
                        actual: current_rev,
                    });
                }
                self.write_over(r, &current, expected).await
            }
        }
    }

    async fn write_over(
        &self,
        mut r: Resource,
        current: &Resource,
        expected: Revision,
    ) -> Result<Resource, StoreError> {
        let kind = r.kind();
        let name = display_name(r.namespace(), r.name());
        r.validate_update(current)
            .map_err(|errors| StoreError::Invalid {
                kind,
                name: name.clone(),
                errors,
            })?;
        self.refuse_pool_overlap(&r).await?;
        let meta = r.metadata_mut();
        meta.uid = current.metadata().uid.clone();
        meta.creation_timestamp = current.metadata().creation_timestamp.clone();
        let key = keys::resource_key(kind, r.namespace(), r.name());
        match self.ds.update(&key, Self::encode(&r), expected).await {
            Ok(rev) => {
                r.metadata_mut().resource_version = Some(rev.to_string());
                Ok(r)
            }
            Err(Error::Conflict {
                expected, actual, ..
            }) => Err(StoreError::Conflict {
                kind,
                name,
                expected,
                actual,
            }),
            Err(Error::NotFound { .. }) => Err(StoreError::NotFound { kind, name }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a resource, only at `expected` revision when given. Returns what was deleted.
    pub async fn delete(
        &self,
        kind: Kind,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<Resource, StoreError> {
        let ns = Self::ns(kind, ns);
        let key = keys::resource_key(kind, ns, name);
        let dname = display_name(ns, name);
        match self.ds.delete(&key, expected).await {
            Ok(kv) => Self::decode(kind, &kv),
            Err(Error::NotFound { .. }) => Err(StoreError::NotFound { kind, name: dname }),
            Err(Error::Conflict {
                expected, actual, ..
            }) => Err(StoreError::Conflict {
                kind,
                name: dname,
                expected,
                actual,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Defaults, namespace and validation without a store (what `ResourceStore::prepare` does), for
/// callers that check input before connecting (e.g. `calicoctl validate`).
pub fn prepare(mut r: Resource) -> Result<Resource, StoreError> {
    let kind = r.kind();
    if kind.namespaced() && r.namespace().is_none() {
        r.metadata_mut().namespace = Some("default".into());
    }
    if !kind.namespaced() {
        r.metadata_mut().namespace = None;
    }
    r.apply_defaults();
    r.validate().map_err(|errors| StoreError::Invalid {
        kind,
        name: display_name(r.namespace(), r.name()),
        errors,
    })?;
    Ok(r)
}

/// Refuses `pool` when its CIDR shares an address with the CIDR of any IPPool in `others` other
/// than itself (same name), naming both pools like upstream's client:
/// `spec.cidr: IPPool(b) CIDR overlaps with IPPool(a) CIDR 10.0.0.0/16`. Resources of other
/// kinds, and CIDRs that do not parse (validation reports those), are passed over. Used by every
/// `ResourceStore` write and by callers checking a batch before writing any of it.
pub fn check_pool_overlap<'a>(
    pool: &Resource,
    others: impl IntoIterator<Item = &'a Resource>,
) -> Result<(), StoreError> {
    let Resource::IPPool(p) = pool else {
        return Ok(());
    };
    let Some(net) = p.spec.network().map(|n| n.trunc()) else {
        return Ok(());
    };
    let mut errors = ValidationErrors::default();
    for other in others {
        let Resource::IPPool(o) = other else {
            continue;
        };
        if other.name() == pool.name() {
            continue;
        }
        let Some(other_net) = o.spec.network().map(|n| n.trunc()) else {
            continue;
        };
        if net.contains(&other_net.network()) || other_net.contains(&net.network()) {
            errors.push(
                "spec.cidr",
                format!(
                    "IPPool({}) CIDR overlaps with IPPool({}) CIDR {} (pools may not share addresses: choose a CIDR outside it, or delete IPPool({}) first)",
                    pool.name(),
                    other.name(),
                    o.spec.cidr,
                    other.name()
                ),
            );
        }
    }
    errors.into_result().map_err(|errors| StoreError::Invalid {
        kind: Kind::IPPool,
        name: pool.name().to_string(),
        errors,
    })
}

/// A random RFC 4122 version-4 UUID string.
fn new_uid() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per instance; two draws give 128 random-enough bits for
    // an identifier that is informational only (nothing keys on it).
    let draw = || {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.finish()
    };
    let (a, b) = (draw(), draw());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `2025-03-11T17:26:46Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm, public domain description).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_741_714_006)),
            "2025-03-11T17:26:46Z"
        );
    }

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }
}
