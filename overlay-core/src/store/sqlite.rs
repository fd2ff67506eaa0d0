//! The embedded store: one SQLite database file, shared by every vxmesh process on the machine.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction (writers queue on SQLite's lock, so no update
//! is lost), the journal is a write-ahead log with `synchronous=FULL` (a process killed mid-write
//! leaves the last committed state), and every transaction appends its changes to an `events`
//! table so watchers can resume from a revision, as with etcd.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    prefix_end, Compare, Event, EventKind, KeyValue, LeaseId, Op, Range, Revision, Store,
    StoreError, Txn, TxnOutcome,
};

/// How many revisions of history watchers can resume from.
const HISTORY: Revision = 10_000;
/// How often a waiting watch looks for new events.
const WATCH_POLL: Duration = Duration::from_millis(50);
/// How long a writer waits for the database lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER NOT NULL,
    key BLOB NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB
);
CREATE INDEX IF NOT EXISTS events_rev ON events(rev);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    ttl_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
";

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, and its directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.display().to_string(),
                source,
            })?;
        }
        let store = SqliteStore {
            conn: Mutex::new(Connection::open(&path).map_err(|e| sql_err(&path, e))?),
            path,
        };
        {
            let conn = store.lock();
            conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| store.err(e))?;
            // journal_mode returns a row; pragma_update ignores it.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| store.err(e))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|e| store.err(e))?;
            // Schema creation takes the write lock so concurrent first openers do not race.
            let mut conn = conn;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| store.err(e))?;
            tx.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
            tx.commit().map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (the transaction
        // rolls back on drop), so a poisoned mutex is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: reason.into(),
        }
    }

    fn key_string(&self, raw: Vec<u8>) -> Result<String, StoreError> {
        String::from_utf8(raw).map_err(|_| self.corrupt("a key is not UTF-8"))
    }

    /// Runs `f` in a write transaction that first expires due leases; `f` returns whether it
    /// wrote anything, and the revision is bumped (and history trimmed) only then.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, Revision) -> Result<(T, bool), StoreError>,
    ) -> Result<(T, Revision), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let current: Revision = meta(&tx, "revision").map_err(|e| self.err(e))?;
        let next = current + 1;
        let expired = self.expire_leases(&tx, next)?;
        let (out, wrote) = f(&tx, next)?;
        let rev = if wrote || expired {
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", [next])
                .map_err(|e| self.err(e))?;
            if next.is_multiple_of(1000) && next > HISTORY {
                let floor = next - HISTORY;
                tx.execute("DELETE FROM events WHERE rev <= ?1", [floor])
                    .map_err(|e| self.err(e))?;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                    [floor],
                )
                .map_err(|e| self.err(e))?;
            }
            next
        } else {
            current
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok((out, rev))
    }

    /// Deletes keys of expired leases at revision `rev`; true if anything was deleted.
    fn expire_leases(
        &self,
        tx: &rusqlite::Transaction<'_>,
        rev: Revision,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut stmt = tx
            .prepare_cached("SELECT id FROM leases WHERE expires_ms <= ?1")
            .map_err(|e| self.err(e))?;
        let ids: Vec<LeaseId> = stmt
            .query_map([now], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut wrote = false;
        for id in ids {
            wrote |= self.drop_lease(tx, id, rev)?;
        }
        Ok(wrote)
    }

    fn drop_lease(
        &self,
        tx: &rusqlite::Transaction<'_>,
        id: LeaseId,
        rev: Revision,
    ) -> Result<bool, StoreError> {
        let keys: Vec<Vec<u8>> = {
            let mut stmt = tx
                .prepare_cached("SELECT key FROM kv WHERE lease = ?1")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([id], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        for key in &keys {
            delete_key(tx, key, rev).map_err(|e| self.err(e))?;
        }
        tx.execute("DELETE FROM leases WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        Ok(!keys.is_empty())
    }

    fn read_kv(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<(Vec<u8>, KeyValue)> {
        Ok((
            row.get(0)?,
            KeyValue {
                key: String::new(),
                value: row.get(1)?,
                create_revision: row.get(2)?,
                mod_revision: row.get(3)?,
                version: row.get(4)?,
                lease: row.get(5)?,
            },
        ))
    }

    fn check(&self, tx: &rusqlite::Transaction<'_>, c: &Compare) -> Result<bool, StoreError> {
        let key = match c {
            Compare::Exists(k) | Compare::Absent(k) | Compare::ModRevision(k, _) => k,
        };
        let rev: Option<Revision> = tx
            .query_row(
                "SELECT mod_rev FROM kv WHERE key = ?1",
                [key.as_bytes()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match c {
            Compare::Exists(_) => rev.is_some(),
            Compare::Absent(_) => rev.is_none(),
            Compare::ModRevision(_, want) => rev == Some(*want),
        })
    }

    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        op: &Op,
        rev: Revision,
    ) -> Result<bool, StoreError> {
        match op {
            Op::Put { key, value, lease } => {
                if let Some(l) = lease {
                    let live: Option<i64> = tx
                        .query_row("SELECT id FROM leases WHERE id = ?1", [l], |r| r.get(0))
                        .optional()
                        .map_err(|e| self.err(e))?;
                    if live.is_none() {
                        return Err(StoreError::LeaseNotFound(*l));
                    }
                }
                tx.execute(
                    "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease)
                     VALUES (?1, ?2, ?3, ?3, 1, ?4)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev,
                        version = kv.version + 1, lease = excluded.lease",
                    params![key.as_bytes(), value, rev, lease],
                )
                .map_err(|e| self.err(e))?;
                tx.execute(
                    "INSERT INTO events (rev, key, kind, value) VALUES (?1, ?2, 0, ?3)",
                    params![rev, key.as_bytes(), value],
                )
                .map_err(|e| self.err(e))?;
                Ok(true)
            }
            Op::Delete(key) => delete_key(tx, key.as_bytes(), rev).map_err(|e| self.err(e)),
            Op::DeletePrefix(prefix) => {
                let keys = self.keys_with_prefix(tx, prefix)?;
                for k in &keys {
                    delete_key(tx, k, rev).map_err(|e| self.err(e))?;
                }
                Ok(!keys.is_empty())
            }
        }
    }

    fn keys_with_prefix(
        &self,
        conn: &Connection,
        prefix: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (sql, end) = range_sql("key");
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![prefix.as_bytes(), end(prefix)], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Events under `prefix` after `after`, or `Compacted`.
    fn events_after(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        let compacted: Revision = meta(&conn, "compacted").map_err(|e| self.err(e))?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0xff; 64]);
        let mut stmt = conn
            .prepare_cached(
                "SELECT rev, key, kind, value FROM events
                 WHERE rev > ?1 AND key >= ?2 AND key < ?3 ORDER BY rev, rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, prefix.as_bytes(), end], |r| {
                Ok((
                    r.get::<_, Revision>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (revision, key, kind, value) = row.map_err(|e| self.err(e))?;
            out.push(Event {
                kind: if kind == 0 {
                    EventKind::Put
                } else {
                    EventKind::Delete
                },
                key: self.key_string(key)?,
                value,
                revision,
            });
        }
        Ok(out)
    }
}

fn sql_err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<Revision> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
}

/// A key is live unless its lease has expired (expired keys are deleted by the next write;
/// until then reads must not see them). `?2` / `?3` is the current time in milliseconds.
const LIVE: &str =
    "(lease IS NULL OR EXISTS (SELECT 1 FROM leases WHERE id = kv.lease AND expires_ms > ?2))";
const LIVE_3: &str =
    "(lease IS NULL OR EXISTS (SELECT 1 FROM leases WHERE id = kv.lease AND expires_ms > ?3))";

/// The SQL that selects `cols` of every key in [?1, ?2), and a function giving ?2 for a prefix.
fn range_sql(cols: &str) -> (String, fn(&str) -> Vec<u8>) {
    (
        format!("SELECT {cols} FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key"),
        |p| prefix_end(p).unwrap_or_else(|| vec![0xff; 64]),
    )
}

fn delete_key(tx: &rusqlite::Transaction<'_>, key: &[u8], rev: Revision) -> rusqlite::Result<bool> {
    let n = tx.execute("DELETE FROM kv WHERE key = ?1", [key])?;
    if n > 0 {
        tx.execute(
            "INSERT INTO events (rev, key, kind, value) VALUES (?1, ?2, 1, NULL)",
            params![rev, key],
        )?;
    }
    Ok(n > 0)
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!(
                    "SELECT key, value, create_rev, mod_rev, version, lease FROM kv \
                     WHERE key = ?1 AND {LIVE}"
                ),
                params![key.as_bytes(), now_ms()],
                |r| self.read_kv(r),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.map(|(_, mut kv)| {
            kv.key = key.to_string();
            kv
        }))
    }

    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let mut conn = self.lock();
        // A read transaction: the keys and the revision come from one snapshot.
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let revision = meta(&tx, "revision").map_err(|e| self.err(e))?;
        let (sql, end) = range_sql("key, value, create_rev, mod_rev, version, lease");
        let sql = sql.replace(" ORDER BY", &format!(" AND {LIVE_3} ORDER BY"));
        let mut kvs = Vec::new();
        {
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![prefix.as_bytes(), end(prefix), now_ms()], |r| {
                    self.read_kv(r)
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (key, mut kv) = row.map_err(|e| self.err(e))?;
                kv.key = self.key_string(key)?;
                kvs.push(kv);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Range { kvs, revision })
    }

    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        let (succeeded, revision) = self.write(|tx, rev| {
            for c in &txn.compares {
                if !self.check(tx, c)? {
                    return Ok((false, false));
                }
            }
            let mut wrote = false;
            for op in &txn.ops {
                wrote |= self.apply(tx, op, rev)?;
            }
            Ok((true, wrote))
        })?;
        Ok(TxnOutcome {
            succeeded,
            revision,
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        meta(&self.lock(), "revision").map_err(|e| self.err(e))
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
        timeout: Duration,
    ) -> Result<Vec<Event>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_after(prefix, after)?;
            if !events.is_empty() || Instant::now() >= deadline {
                return Ok(events);
            }
            thread::sleep(WATCH_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl_ms = ttl.as_millis() as i64;
        let (id, _) = self.write(|tx, _| {
            tx.execute(
                "INSERT INTO leases (ttl_ms, expires_ms) VALUES (?1, ?2)",
                params![ttl_ms, now_ms() + ttl_ms],
            )
            .map_err(|e| self.err(e))?;
            Ok((tx.last_insert_rowid(), false))
        })?;
        Ok(id)
    }

    fn lease_keepalive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let (n, _) = self.write(|tx, _| {
            let n = tx
                .execute(
                    "UPDATE leases SET expires_ms = ?2 + ttl_ms WHERE id = ?1",
                    params![lease, now_ms()],
                )
                .map_err(|e| self.err(e))?;
            Ok((n, false))
        })?;
        if n == 0 {
            return Err(StoreError::LeaseNotFound(lease));
        }
        Ok(())
    }

    fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.write(|tx, rev| Ok(((), self.drop_lease(tx, lease, rev)?)))?;
        Ok(())
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(|tx, next| {
            if revision >= next {
                return Err(StoreError::Config {
                    field: "revision".into(),
                    value: revision.to_string(),
                    reason: format!("is in the future (the store is at {})", next - 1),
                });
            }
            let floor = revision.saturating_sub(1);
            tx.execute("DELETE FROM events WHERE rev <= ?1", [floor])
                .map_err(|e| self.err(e))?;
            tx.execute(
                "UPDATE meta SET value = max(value, ?1) WHERE name = 'compacted'",
                [floor],
            )
            .map_err(|e| self.err(e))?;
            Ok(((), false))
        })?;
        Ok(())
    }
}
