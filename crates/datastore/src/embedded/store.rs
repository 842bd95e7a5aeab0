//! The SQL layer of the embedded store: one connection to the shared SQLite file and the
//! synchronous operations on it. Everything here blocks; callers run it off the async workers.
//!
//! Layout (kine-style): `log` is the history, one row per write, whose AUTOINCREMENT id is the
//! revision; `current` points every live key at its latest `log` row; `leases` holds TTLs as
//! wall-clock deadlines (every process on the host shares the clock); `meta` holds the compact
//! revision. Writes run in `BEGIN IMMEDIATE`, so they are serialised across processes and log ids
//! commit in increasing order: a reader that sees id N has seen every id below it.

use crate::error::{Error, Result};
use crate::{EventKind, KeyValue, LeaseId, Revision, WatchEvent};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
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
fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn lease_not_found(lease: LeaseId) -> Error {
    Error::NotFound {
        key: format!("lease {lease} (expired or revoked; grant a new lease)"),
    }
}

fn key_string(raw: Vec<u8>) -> Result<String> {
    String::from_utf8(raw).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

fn lease_opt(lease: i64) -> Option<LeaseId> {
    (lease != 0).then_some(lease)
}

/// A row of `log` as read for events.
struct LogRow {
    id: Revision,
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    lease: i64,
}

const LOG_COLUMNS: &str = "id, key, value, create_revision, prev_revision, deleted, lease";

fn log_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        id: r.get(0)?,
        key: r.get(1)?,
        value: r.get(2)?,
        create_revision: r.get(3)?,
        prev_revision: r.get(4)?,
        deleted: r.get::<_, i64>(5)? != 0,
        lease: r.get(6)?,
    })
}

/// One connection to the store's file.
pub(super) struct Store {
    conn: Connection,
    label: String,
}

impl Store {
    /// Opens the file (creating it and its directory when missing) and, with `init`, creates the
    /// schema. Every process may do this concurrently.
    pub(super) fn open(path: &Path, label: &str, init: bool) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Config(format!(
                    "cannot create directory {} for the embedded datastore: {e}; set \
                     EMBEDDED_DATASTORE_PATH to a writable location",
                    dir.display()
                ))
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::Unavailable {
            endpoint: label.to_string(),
            reason: format!("cannot open the SQLite file: {e}; check the path and permissions"),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).db(label)?;
        let mut store = Store {
            conn,
            label: label.to_string(),
        };
        // WAL lets readers run beside the single writer; the mode is stored in the file.
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .db(label)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "{label}: cannot switch the file to WAL mode (got {mode}); the file system must \
                 support shared memory (not NFS)"
            )));
        }
        // NORMAL in WAL mode survives process crashes; a power cut may lose the last commits.
        store
            .conn
            .execute_batch("PRAGMA synchronous=NORMAL")
            .db(label)?;
        if init {
            store.init_schema()?;
        }
        Ok(store)
    }

    pub(super) fn label(&self) -> &str {
        &self.label
    }

    fn init_schema(&mut self) -> Result<()> {
        let label = self.label.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db(&label)?;
        tx.execute_batch(SCHEMA).db(&label)?;
        let version: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .db(&label)?;
        if version != SCHEMA_VERSION {
            return Err(Error::Backend(format!(
                "{label}: schema version {version} is not supported (this build reads version \
                 {SCHEMA_VERSION}); use a matching calico-rs build or a new file"
            )));
        }
        tx.commit().db(&label)
    }

    /// `PRAGMA data_version`: changes whenever another connection commits.
    pub(super) fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .db(&self.label)
    }

    fn write_tx(&mut self) -> Result<(Transaction<'_>, &str)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db(&self.label)?;
        Ok((tx, &self.label))
    }

    fn read_tx(&mut self) -> Result<(Transaction<'_>, &str)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .db(&self.label)?;
        Ok((tx, &self.label))
    }

    /// Deletes keys whose lease has expired, if any; returns how many leases were expired.
    pub(super) fn sweep_if_expired(&mut self) -> Result<usize> {
        let now = now_ms();
        let any: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM leases WHERE expires_ms <= ?1 LIMIT 1",
                [now],
                |r| r.get(0),
            )
            .optional()
            .db(&self.label)?;
        if any.is_none() {
            return Ok(0);
        }
        let (tx, label) = self.write_tx()?;
        let n = sweep(&tx, label, now)?;
        tx.commit().db(label)?;
        Ok(n)
    }

    pub(super) fn revision(&mut self) -> Result<Revision> {
        let label = self.label.clone();
        current_revision(&self.conn, &label)
    }

    pub(super) fn get(&mut self, key: &str) -> Result<Option<KeyValue>> {
        self.sweep_if_expired()?;
        let label = self.label.clone();
        current_kv(&self.conn, &label, key)
    }

    pub(super) fn list(&mut self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        self.sweep_if_expired()?;
        let (tx, label) = self.read_tx()?;
        let revision = current_revision(&tx, label)?;
        let sql = "SELECT l.key, l.value, l.create_revision, l.id, l.lease FROM current c \
                   JOIN log l ON l.id = c.rev";
        let mut kvs = Vec::new();
        let mut push = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            kvs.push((
                r.get::<_, Vec<u8>>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ));
            Ok(())
        };
        match prefix_end(prefix) {
            Some(end) => {
                let mut st = tx
                    .prepare_cached(&format!(
                        "{sql} WHERE c.key >= ?1 AND c.key < ?2 ORDER BY c.key"
                    ))
                    .db(label)?;
                let mut rows = st.query(params![prefix.as_bytes(), end]).db(label)?;
                while let Some(r) = rows.next().db(label)? {
                    push(r).db(label)?;
                }
            }
            None => {
                let mut st = tx
                    .prepare_cached(&format!("{sql} ORDER BY c.key"))
                    .db(label)?;
                let mut rows = st.query([]).db(label)?;
                while let Some(r) = rows.next().db(label)? {
                    push(r).db(label)?;
                }
            }
        }
        tx.commit().db(label)?;
        let kvs = kvs
            .into_iter()
            .map(|(k, value, create_revision, mod_revision, lease)| {
                Ok(KeyValue {
                    key: key_string(k)?,
                    value,
                    create_revision,
                    mod_revision,
                    lease: lease_opt(lease),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((kvs, revision))
    }

    pub(super) fn create(
        &mut self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        if let Some(l) = lease {
            let live: Option<i64> = tx
                .query_row("SELECT id FROM leases WHERE id = ?1", [l], |r| r.get(0))
                .optional()
                .db(label)?;
            if live.is_none() {
                return Err(lease_not_found(l));
            }
        }
        if current_kv(&tx, label, key)?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = put(&tx, label, key, value, 0, 0, lease.unwrap_or(0))?;
        tx.commit().db(label)?;
        Ok(rev)
    }

    /// Replaces the value; the key keeps its lease (like etcd's `ignore_lease`).
    pub(super) fn update(
        &mut self,
        key: &str,
        value: &[u8],
        expected: Revision,
    ) -> Result<Revision> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        let old =
            current_kv(&tx, label, key)?.ok_or_else(|| Error::NotFound { key: key.into() })?;
        if old.mod_revision != expected {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual: old.mod_revision,
            });
        }
        let lease = old.lease.unwrap_or(0);
        let rev = put(
            &tx,
            label,
            key,
            value,
            old.create_revision,
            old.mod_revision,
            lease,
        )?;
        tx.commit().db(label)?;
        Ok(rev)
    }

    pub(super) fn delete(&mut self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        let old =
            current_kv(&tx, label, key)?.ok_or_else(|| Error::NotFound { key: key.into() })?;
        if let Some(expected) = expected.filter(|e| *e != old.mod_revision) {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual: old.mod_revision,
            });
        }
        tombstone(&tx, label, &old)?;
        tx.commit().db(label)?;
        Ok(old)
    }

    /// Drops history below `revision`: superseded values and tombstones. Live keys stay.
    pub(super) fn compact(&mut self, revision: Revision) -> Result<()> {
        let (tx, label) = self.write_tx()?;
        let current = current_revision(&tx, label)?;
        if revision > current {
            return Err(Error::Backend(format!(
                "{label}: cannot compact to revision {revision}: the store is only at {current}"
            )));
        }
        let done = compact_revision(&tx, label)?;
        if revision <= done {
            return Ok(());
        }
        tx.execute(
            "DELETE FROM log WHERE id < ?1 AND NOT EXISTS (SELECT 1 FROM current c WHERE c.rev = log.id)",
            [revision],
        )
        .db(label)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compact_revision'",
            [revision],
        )
        .db(label)?;
        tx.commit().db(label)
    }

    pub(super) fn grant_lease(&mut self, ttl: Duration) -> Result<LeaseId> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if ttl_ms <= 0 {
            return Err(Error::Backend("a lease TTL must be at least 1 ms".into()));
        }
        let (tx, label) = self.write_tx()?;
        tx.execute(
            "INSERT INTO leases(ttl_ms, expires_ms) VALUES (?1, ?2)",
            params![ttl_ms, now_ms().saturating_add(ttl_ms)],
        )
        .db(label)?;
        let id = tx.last_insert_rowid();
        tx.commit().db(label)?;
        Ok(id)
    }

    pub(super) fn keep_alive(&mut self, lease: LeaseId) -> Result<()> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        let n = tx
            .execute(
                "UPDATE leases SET expires_ms = ?1 + ttl_ms WHERE id = ?2",
                params![now, lease],
            )
            .db(label)?;
        if n == 0 {
            return Err(lease_not_found(lease));
        }
        tx.commit().db(label)
    }

    pub(super) fn revoke_lease(&mut self, lease: LeaseId) -> Result<()> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        if !expire_lease(&tx, label, lease)? {
            return Err(lease_not_found(lease));
        }
        tx.commit().db(label)
    }

    /// Starts the read transaction a watch poll runs in.
    pub(super) fn snapshot(&mut self) -> Result<Snapshot<'_>> {
        let (tx, label) = self.read_tx()?;
        let label = label.to_string();
        let revision = current_revision(&tx, &label)?;
        let compacted = compact_revision(&tx, &label)?;
        Ok(Snapshot {
            tx,
            label,
            revision,
            compacted,
        })
    }
}

/// A consistent view of the log for delivering watch events.
pub(super) struct Snapshot<'a> {
    tx: Transaction<'a>,
    label: String,
    /// The newest revision in this view.
    pub revision: Revision,
    /// History below this revision is gone.
    pub compacted: Revision,
}

impl Snapshot<'_> {
    /// Events with `from ≤ revision ≤ self.revision` under `prefix` (all keys when `None`), oldest
    /// first, at most `limit`.
    pub(super) fn events(
        &self,
        from: Revision,
        prefix: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WatchEvent>> {
        let label = self.label.as_str();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<LogRow> = match prefix.map(|p| (p, prefix_end(p))) {
            Some((p, Some(end))) => {
                let mut st = self
                    .tx
                    .prepare_cached(&format!(
                        "SELECT {LOG_COLUMNS} FROM log WHERE id >= ?1 AND id <= ?2 \
                         AND key >= ?3 AND key < ?4 ORDER BY id LIMIT ?5"
                    ))
                    .db(label)?;
                st.query_map(
                    params![from, self.revision, p.as_bytes(), end, limit],
                    log_row,
                )
                .db(label)?
                .collect::<rusqlite::Result<_>>()
                .db(label)?
            }
            _ => {
                let mut st = self
                    .tx
                    .prepare_cached(&format!(
                        "SELECT {LOG_COLUMNS} FROM log WHERE id >= ?1 AND id <= ?2 \
                         ORDER BY id LIMIT ?3"
                    ))
                    .db(label)?;
                st.query_map(params![from, self.revision, limit], log_row)
                    .db(label)?
                    .collect::<rusqlite::Result<_>>()
                    .db(label)?
            }
        };
        rows.into_iter().map(|row| self.event(row)).collect()
    }

    fn event(&self, row: LogRow) -> Result<WatchEvent> {
        let label = self.label.as_str();
        let key = key_string(row.key)?;
        let prev = if row.prev_revision > 0 {
            self.tx
                .query_row(
                    "SELECT value, create_revision, lease FROM log WHERE id = ?1 AND deleted = 0",
                    [row.prev_revision],
                    |r| {
                        Ok(KeyValue {
                            key: key.clone(),
                            value: r.get(0)?,
                            create_revision: r.get(1)?,
                            mod_revision: row.prev_revision,
                            lease: lease_opt(r.get(2)?),
                        })
                    },
                )
                .optional()
                .db(label)?
        } else {
            None
        };
        let (kind, kv) = if row.deleted {
            let kv = KeyValue {
                key,
                value: Vec::new(),
                create_revision: 0,
                mod_revision: row.id,
                lease: None,
            };
            (EventKind::Delete, kv)
        } else {
            let kv = KeyValue {
                key,
                value: row.value,
                create_revision: row.create_revision,
                mod_revision: row.id,
                lease: lease_opt(row.lease),
            };
            (EventKind::Put, kv)
        };
        Ok(WatchEvent { kind, kv, prev })
    }

    pub(super) fn finish(self) -> Result<()> {
        let label = self.label;
        self.tx.commit().db(&label)
    }
}

fn current_revision(conn: &Connection, label: &str) -> Result<Revision> {
    conn.query_row(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)",
        [],
        |r| r.get(0),
    )
    .db(label)
}

fn compact_revision(conn: &Connection, label: &str) -> Result<Revision> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'compact_revision'",
        [],
        |r| r.get(0),
    )
    .db(label)
}

fn current_kv(conn: &Connection, label: &str, key: &str) -> Result<Option<KeyValue>> {
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
struct NewRow<'a> {
    key: &'a str,
    value: &'a [u8],
    /// 0 = this row creates the key.
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    lease: i64,
}

/// Appends a log row at the next revision. Only inside a write transaction, which makes
/// "max + 1" safe against other processes.
fn append(tx: &Transaction<'_>, label: &str, row: &NewRow<'_>) -> Result<Revision> {
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

fn put(
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

fn tombstone(tx: &Transaction<'_>, label: &str, old: &KeyValue) -> Result<Revision> {
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
fn expire_lease(tx: &Transaction<'_>, label: &str, lease: LeaseId) -> Result<bool> {
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
fn sweep(tx: &Transaction<'_>, label: &str, now: i64) -> Result<usize> {
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
