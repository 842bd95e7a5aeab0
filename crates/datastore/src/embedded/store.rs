//! The embedded store's operations on one connection to the shared SQLite file. Everything here
//! blocks; callers run it off the async workers.
//!
//! Layout (kine-style): `log` is the history, one row per write, whose AUTOINCREMENT id is the
//! revision; `current` points every live key at its latest `log` row; `leases` holds TTLs as
//! wall-clock deadlines (every process on the host shares the clock); `meta` holds the compact
//! revision. Writes run in `BEGIN IMMEDIATE`, so they are serialised across processes and log ids
//! commit in increasing order: a reader that sees id N has seen every id below it.

use super::sql::{
    BUSY_TIMEOUT, SCHEMA, SCHEMA_VERSION, Sql, compact_revision, current_kv, current_revision,
    expire_lease, key_string, lease_not_found, lease_opt, now_ms, prefix_end, put, sweep,
    tombstone,
};
use crate::error::{Error, Result};
use crate::txn::{Check, Op, TxnResult};
use crate::{EventKind, KeyValue, LeaseId, Revision, WatchEvent};
use rusqlite::config::DbConfig;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::path::Path;
use std::time::{Duration, Instant};

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
        // Switching a fresh file to WAL while other processes open it can fail with SQLITE_BUSY
        // at once (no busy handler runs for it): retry the whole setup until the busy timeout.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        let (conn, mode, version) = loop {
            let mut conn =
                Connection::open_with_flags(path, flags).map_err(|e| Error::Unavailable {
                    endpoint: label.to_string(),
                    reason: format!(
                        "cannot open the SQLite file: {e}; check the path and permissions"
                    ),
                })?;
            match setup(&mut conn, init) {
                Ok((mode, version)) => break (conn, mode, version),
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    drop(conn);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e).db(label),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "{label}: cannot switch the file to WAL mode (got {mode}); the file system must \
                 support shared memory (not NFS)"
            )));
        }
        if let Some(version) = version.filter(|v| *v != SCHEMA_VERSION) {
            return Err(Error::Backend(format!(
                "{label}: schema version {version} is not supported (this build reads version \
                 {SCHEMA_VERSION}); use a matching calico-rs build or a new file"
            )));
        }
        Ok(Store {
            conn,
            label: label.to_string(),
        })
    }

    pub(super) fn label(&self) -> &str {
        &self.label
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

    /// A multi-key transaction (see `Datastore::txn`): checks, then one log row per write, in
    /// one `BEGIN IMMEDIATE`. Puts drop any lease, as etcd's plain put.
    pub(super) fn txn(&mut self, checks: &[Check], ops: &[Op]) -> Result<TxnResult> {
        let now = now_ms();
        let (tx, label) = self.write_tx()?;
        sweep(&tx, label, now)?;
        for c in checks {
            let actual = current_kv(&tx, label, &c.key)?.map_or(0, |kv| kv.mod_revision);
            if let Some(e) = c.failure(actual) {
                return Err(e);
            }
        }
        let mut revisions = Vec::with_capacity(ops.len());
        for op in ops {
            let old = current_kv(&tx, label, op.key())?;
            let rev = match (op, old) {
                (Op::Put { key, value }, Some(old)) => put(
                    &tx,
                    label,
                    key,
                    value,
                    old.create_revision,
                    old.mod_revision,
                    0,
                )?,
                (Op::Put { key, value }, None) => put(&tx, label, key, value, 0, 0, 0)?,
                (Op::Delete { .. }, Some(old)) => tombstone(&tx, label, &old)?,
                (Op::Delete { .. }, None) => current_revision(&tx, label)?,
            };
            revisions.push(rev);
        }
        let revision = current_revision(&tx, label)?;
        tx.commit().db(label)?;
        Ok(TxnResult {
            revision,
            revisions,
        })
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

    /// Compacts so that the newest `keep` revisions stay watchable; returns the new compact
    /// revision when it moved. Several processes may run this at once: compaction is idempotent.
    pub(super) fn auto_compact(&mut self, keep: i64) -> Result<Option<Revision>> {
        let (current, done) = {
            let (tx, label) = self.read_tx()?;
            let r = (current_revision(&tx, label)?, compact_revision(&tx, label)?);
            tx.commit().db(label)?;
            r
        };
        match auto_compact_target(current, done, keep) {
            Some(target) => self.compact(target).map(|()| Some(target)),
            None => Ok(None),
        }
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

/// Connection settings and (with `init`) the schema; returns the journal mode and the schema
/// version found.
fn setup(conn: &mut Connection, init: bool) -> rusqlite::Result<(String, Option<i64>)> {
    conn.busy_handler(Some(busy_wait))?;
    // WAL lets readers run beside the single writer; the mode is stored in the file.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    // NORMAL in WAL mode survives process crashes; a power cut may lose the last commits.
    conn.execute_batch("PRAGMA synchronous=NORMAL")?;
    // A short-lived process (one CNI call) is often the last to have the file open, and SQLite
    // would then checkpoint the WAL into the database on close, with three fsyncs (~10 ms).
    // The automatic checkpoints during commits keep the WAL bounded instead.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    if !init {
        return Ok((mode, None));
    }
    // The common case, a file whose schema exists: one read, no write lock. Many short-lived
    // processes (one per CNI call) open the file at once; taking the write lock here would
    // serialise them all behind each other's opens.
    if let Some(version) = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .ok()
        .flatten()
    {
        return Ok((mode, Some(version)));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let version: i64 = tx.query_row(
        "SELECT value FROM meta WHERE name = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok((mode, Some(version)))
}

/// Waits for another connection's lock in short steps, up to about `BUSY_TIMEOUT`. SQLite's
/// default handler (`busy_timeout`) sleeps up to 100 ms per retry, far longer than a write holds
/// the lock here (well under a millisecond), so a crowd of writers — 30 CNI processes starting
/// at once — spent most of its time asleep with the lock free.
fn busy_wait(attempt: i32) -> bool {
    const SHORT: i32 = 20;
    let limit = SHORT.saturating_add(i32::try_from(BUSY_TIMEOUT.as_millis()).unwrap_or(i32::MAX));
    if attempt >= limit {
        return false;
    }
    std::thread::sleep(if attempt < SHORT {
        Duration::from_micros(100)
    } else {
        Duration::from_millis(1)
    });
    true
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Where automatic compaction moves the compact revision, if anywhere.
fn auto_compact_target(current: Revision, done: Revision, keep: i64) -> Option<Revision> {
    let target = current.saturating_sub(keep);
    (target > done && target > 0).then_some(target)
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

#[cfg(test)]
mod tests {
    use super::auto_compact_target;

    #[test]
    fn auto_compaction_keeps_the_newest_revisions() {
        assert_eq!(auto_compact_target(500, 0, 1000), None);
        assert_eq!(auto_compact_target(5000, 0, 1000), Some(4000));
        assert_eq!(auto_compact_target(5000, 4000, 1000), None);
        assert_eq!(auto_compact_target(5001, 4000, 1000), Some(4001));
    }
}
