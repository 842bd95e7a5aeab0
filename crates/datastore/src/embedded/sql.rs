//! Row-level SQL shared by the embedded store's operations: the schema, error mapping, and the
//! helpers that append history rows and keep `current` and `leases` in step with them. Every
//! helper taking a `Transaction` expects a write (`BEGIN IMMEDIATE`) transaction unless it only
//! reads.

use crate::error::{Error, Result};
use crate::{KeyValue, LeaseId, Revision};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a writer waits for another process's transaction before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    lease INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL,
    lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS current_rev ON current(rev);
CREATE INDEX IF NOT EXISTS current_lease ON current(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_ms);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', 1), ('compact_revision', 0);
";

/// Maps SQLite failures to our errors, naming the file.
pub(super) trait Sql<T> {
    fn db(self, label: &str) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn db(self, label: &str) -> Result<T> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::Unavailable {
                    endpoint: label.to_string(),
                    reason: format!(
                        "the file stayed locked by another process for {}s ({e}); check for a \
                         hung process holding it",
                        BUSY_TIMEOUT.as_secs()
                    ),
                }
            }
            _ => Error::Backend(format!("{label}: {e}")),
        })
    }
}

/// Milliseconds since the Unix epoch: lease deadlines must mean the same in every process.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The exclusive upper bound of keys starting with `prefix`, or `None` for "no bound".
/// UTF-8 never contains 0xFF, so bumping the last byte always yields a valid bound.
pub(super) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(super) fn lease_not_found(lease: LeaseId) -> Error {
    Error::NotFound {
        key: format!("lease {lease} (expired or revoked; grant a new lease)"),
    }
}

pub(super) fn key_string(raw: Vec<u8>) -> Result<String> {
    String::from_utf8(raw).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

pub(super) fn lease_opt(lease: i64) -> Option<LeaseId> {
    (lease != 0).then_some(lease)
}

pub(super) fn current_revision(conn: &Connection, label: &str) -> Result<Revision> {
    conn.query_row(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)",
        [],
        |r| r.get(0),
    )
    .db(label)
}

pub(super) fn compact_revision(conn: &Connection, label: &str) -> Result<Revision> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'compact_revision'",
        [],
        |r| r.get(0),
    )
    .db(label)
}

pub(super) fn current_kv(conn: &Connection, label: &str, key: &str) -> Result<Option<KeyValue>> {
    let mut st = conn
        .prepare_cached(
            "SELECT l.value, l.create_revision, l.id, l.lease FROM current c \
             JOIN log l ON l.id = c.rev WHERE c.key = ?1",
        )
        .db(label)?;
    st.query_row([key.as_bytes()], |r| {
        Ok(KeyValue {
            key: key.to_string(),
            value: r.get(0)?,
            create_revision: r.get(1)?,
            mod_revision: r.get(2)?,
            lease: lease_opt(r.get(3)?),
        })
    })
    .optional()
    .db(label)
}

/// A history row about to be written.
pub(super) struct NewRow<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a [u8],
    /// 0 = this row creates the key.
    pub(super) create_revision: Revision,
    pub(super) prev_revision: Revision,
    pub(super) deleted: bool,
    pub(super) lease: i64,
}

/// Appends a log row at the next revision. Only inside a write transaction, which makes
/// "max + 1" safe against other processes.
pub(super) fn append(tx: &Transaction<'_>, label: &str, row: &NewRow<'_>) -> Result<Revision> {
    let rev = current_revision(tx, label)? + 1;
    let create_revision = if row.create_revision == 0 {
        rev
    } else {
        row.create_revision
    };
    tx.prepare_cached(
        "INSERT INTO log(id, key, value, create_revision, prev_revision, deleted, lease) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db(label)?
    .execute(params![
        rev,
        row.key.as_bytes(),
        row.value,
        create_revision,
        row.prev_revision,
        row.deleted,
        row.lease
    ])
    .db(label)?;
    Ok(rev)
}

pub(super) fn put(
    tx: &Transaction<'_>,
    label: &str,
    key: &str,
    value: &[u8],
    create_revision: Revision,
    prev_revision: Revision,
    lease: i64,
) -> Result<Revision> {
    let row = NewRow {
        key,
        value,
        create_revision,
        prev_revision,
        deleted: false,
        lease,
    };
    let rev = append(tx, label, &row)?;
    tx.prepare_cached("INSERT OR REPLACE INTO current(key, rev, lease) VALUES (?1, ?2, ?3)")
        .db(label)?
        .execute(params![key.as_bytes(), rev, lease])
        .db(label)?;
    Ok(rev)
}

pub(super) fn tombstone(tx: &Transaction<'_>, label: &str, old: &KeyValue) -> Result<Revision> {
    let row = NewRow {
        key: &old.key,
        value: &[],
        create_revision: old.create_revision,
        prev_revision: old.mod_revision,
        deleted: true,
        lease: 0,
    };
    let rev = append(tx, label, &row)?;
    tx.prepare_cached("DELETE FROM current WHERE key = ?1")
        .db(label)?
        .execute([old.key.as_bytes()])
        .db(label)?;
    Ok(rev)
}

/// Deletes the lease and every key attached to it (one tombstone each). False if unknown.
pub(super) fn expire_lease(tx: &Transaction<'_>, label: &str, lease: LeaseId) -> Result<bool> {
    let keys: Vec<Vec<u8>> = tx
        .prepare_cached("SELECT key FROM current WHERE lease = ?1 ORDER BY key")
        .db(label)?
        .query_map([lease], |r| r.get(0))
        .db(label)?
        .collect::<rusqlite::Result<_>>()
        .db(label)?;
    for key in keys {
        let key = key_string(key)?;
        if let Some(old) = current_kv(tx, label, &key)? {
            tombstone(tx, label, &old)?;
        }
    }
    Ok(tx
        .execute("DELETE FROM leases WHERE id = ?1", [lease])
        .db(label)?
        > 0)
}

/// Expires every lease whose deadline has passed. Inside a write transaction.
pub(super) fn sweep(tx: &Transaction<'_>, label: &str, now: i64) -> Result<usize> {
    let expired: Vec<i64> = tx
        .prepare_cached("SELECT id FROM leases WHERE expires_ms <= ?1 ORDER BY id")
        .db(label)?
        .query_map([now], |r| r.get(0))
        .db(label)?
        .collect::<rusqlite::Result<_>>()
        .db(label)?;
    for lease in &expired {
        expire_lease(tx, label, *lease)?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bumps_the_last_byte() {
        assert_eq!(prefix_end("/calico/"), Some(b"/calico0".to_vec()));
        assert_eq!(prefix_end(""), None);
    }
}
