//! Embedded SQLite, called on the caller's thread through rusqlite.
//!
//! SQLite is a library, not a server: a read of a few rows from the page
//! cache takes microseconds. Handing every statement to a worker thread
//! and its rows back through a channel (what an async driver does) cost
//! more than the reads themselves, so statements run where they are asked
//! for:
//!
//! - reads take a read-only connection from a small pool, run and put it
//!   back, without an `.await`;
//! - writes hold the one writer connection (an async mutex, so that
//!   transactions queue instead of failing with "database is locked") from
//!   `BEGIN IMMEDIATE` to the end, and run their statements in place,
//!   `COMMIT` included, then let the connection go *before* waiting for
//!   the disk: the writer runs `synchronous=NORMAL` (a commit writes the
//!   WAL without syncing it), and a thread of its own syncs the WAL behind
//!   the commits ([`WalSync`]), once for all the commits made meanwhile. A
//!   commit returns, or an event's request is answered, only when a sync
//!   that began after its `COMMIT` has ended: as durable as
//!   `synchronous=FULL`, but the next transaction runs while the disk
//!   works instead of after;
//! - reads known to be long (a slice of the trail, an export) can ask for a
//!   blocking thread of their own ([`Sqlite::fetch_all_offloaded`]).
//!
//! Migrations still run through sqlx's migrator (its bookkeeping table is
//! what existing databases carry); rusqlite and sqlx share one build of the
//! SQLite library.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use crate::StoreError;
use crate::sql::{Row, RowRef, Sql, Value};

/// Statements kept prepared per connection: the statements of the
/// service are a few dozen shapes.
const STATEMENT_CACHE: usize = 128;

/// Read connections kept open for reuse; more are opened when threads ask
/// at once, and closed when returned beyond this.
const IDLE_READERS: usize = 8;

/// How long a commit nobody waits for may stay unsynced: the WAL sync
/// thread syncs at once when a commit is waited for ([`Durable::wait`]:
/// every change, and every read event answered once on disk), and
/// otherwise (read events answered at their commit) at most this long
/// after the last sync. Each `fdatasync` costs the machine a few I/O
/// submissions (on a VM, exits to the host); syncing a thousand times a
/// second for commits nobody waits for took a tenth of a core.
pub(crate) const LAZY_SYNC: Duration = Duration::from_millis(10);

/// An open SQLite database: its writer, its readers, and a connection for
/// WAL checkpoints.
pub(crate) struct Sqlite {
    path: String,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    checkpoint: Arc<Mutex<Option<Connection>>>,
    sync: Arc<WalSync>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

/// Settings every connection gets.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans that do not depend on the values bound: without this, SQLite
    // 3.4x prepares a statement again whenever a value it may plan with
    // changes (the `LIMIT ?` of every page), which cost lists a quarter
    // of their time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

impl Sqlite {
    /// Opens (creating if missing) the database at `path`.
    pub(crate) fn open(path: &str) -> Result<Sqlite, StoreError> {
        Sqlite::open_syncing(path, LAZY_SYNC)
    }

    /// Opens the database at `path`, syncing commits nobody waits for at
    /// most `lazy` after the last sync.
    fn open_syncing(path: &str, lazy: Duration) -> Result<Sqlite, StoreError> {
        let writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&writer)?;
        // WAL: readers never wait for the writer. The one writer keeps a
        // larger page cache (32 MiB): the trail's indexes are written with
        // every batch; commits seldom carry a checkpoint (16,384 pages),
        // and the WAL is truncated back to 64 MiB after one.
        writer.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        // Commits write the WAL without syncing it; `WalSync` syncs it
        // behind them, and a commit is durable when it says so. (SQLite
        // still syncs the WAL before a checkpoint and the database after.)
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "cache_size", -32768)?;
        writer.pragma_update(None, "wal_autocheckpoint", 16384)?;
        writer.pragma_update(None, "journal_size_limit", 67_108_864)?;
        let sqlite = Sqlite {
            path: path.to_owned(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(Vec::new()),
            checkpoint: Arc::new(Mutex::new(None)),
            sync: WalSync::start(path, lazy)?,
        };
        // Open one reader now, so that a database that cannot be read
        // fails at startup rather than on the first request.
        let reader = sqlite.open_reader()?;
        sqlite.put_reader(reader);
        Ok(sqlite)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&conn)?;
        Ok(conn)
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open_reader(),
        }
    }

    fn put_reader(&self, conn: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Reads rows on the caller's thread.
    pub(crate) fn fetch_all(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        let conn = self.take_reader()?;
        let rows = query(&conn, sql);
        self.put_reader(conn);
        Ok(rows?)
    }

    /// Runs several reads in one read transaction (one snapshot).
    pub(crate) fn fetch_all_snapshot(
        &self,
        statements: &[Sql],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let conn = self.take_reader()?;
        let read = || -> rusqlite::Result<Vec<Vec<Row>>> {
            conn.execute_batch("BEGIN")?;
            let rows = statements.iter().map(|sql| query(&conn, sql)).collect();
            conn.execute_batch("COMMIT")?;
            rows
        };
        let rows = read();
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.put_reader(conn);
        Ok(rows?)
    }

    /// Reads rows on a blocking thread: for reads long enough that the
    /// caller's worker should serve others meanwhile, or that a caller
    /// runs several of at once.
    pub(crate) async fn fetch_all_offloaded(
        self: &Arc<Self>,
        sql: Sql,
    ) -> Result<Vec<Row>, StoreError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.fetch_all(&sql))
            .await
            .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }

    /// Reads rows on a blocking thread and hands each to `visit` as it
    /// lies in SQLite's buffers ([`crate::sql::Db::visit_range`]).
    pub(crate) async fn visit_offloaded<T: Send + 'static>(
        self: &Arc<Self>,
        sql: Sql,
        mut visit: impl FnMut(&dyn RowRef) -> T + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> Result<Vec<T>, StoreError> {
            let conn = this.take_reader()?;
            let read = (|| -> rusqlite::Result<Vec<T>> {
                let mut statement = prepare(&conn, &sql)?;
                let mut rows = statement.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(visit(&SqliteRowRef(row)));
                }
                Ok(out)
            })();
            this.put_reader(conn);
            Ok(read?)
        })
        .await
        .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }

    /// Starts a write transaction on the writer (`BEGIN IMMEDIATE`: the
    /// database's write lock is taken now, not at the first write).
    pub(crate) async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let conn = Arc::clone(&self.writer).lock_owned().await;
        // After a failed sync nothing more is written: a commit now would
        // be answered as failed (its sync can never be had) yet might be
        // kept, so that a client's retry would be made twice.
        if let Synced::Failed(why) = &*self.sync.synced.borrow() {
            return Err(StoreError::SyncFailedBefore(why.clone()));
        }
        if !conn.is_autocommit() {
            // A transaction left open by a failed rollback.
            conn.execute_batch("ROLLBACK")?;
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(SqliteTx {
            conn: Some(conn),
            sync: Arc::clone(&self.sync),
        })
    }

    /// Waits until every commit made so far is on disk: for a read that
    /// may have seen commits whose sync nobody has waited for yet. The
    /// writer is taken for a moment, so that a commit already visible has
    /// its number counted (it is counted just after its `COMMIT`, with the
    /// writer still held).
    pub(crate) async fn settle(&self) -> Result<(), StoreError> {
        let ticket = {
            let _writer = self.writer.lock().await;
            self.sync
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .committed
        };
        Durable::of(&self.sync, ticket).wait().await
    }

    /// Applies what it can of the WAL to the database without waiting for
    /// readers or the writer (a passive checkpoint), on a connection of its
    /// own and a blocking thread.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), StoreError> {
        let slot = Arc::clone(&self.checkpoint);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                let conn = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                configure(&conn)?;
                *slot = Some(conn);
            }
            if let Some(conn) = slot.as_ref() {
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Interrupted(e.to_string()))?
    }

    /// Closes the idle connections (the writer closes when the last handle
    /// on the database is dropped).
    pub(crate) fn close(&self) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// A write transaction holding the writer connection; rolled back when
/// dropped without [`SqliteTx::commit`].
pub(crate) struct SqliteTx {
    conn: Option<OwnedMutexGuard<Connection>>,
    sync: Arc<WalSync>,
}

impl SqliteTx {
    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn
            .as_deref()
            .ok_or_else(|| StoreError::Interrupted("the transaction has ended".into()))
    }

    /// Reads rows in the transaction.
    pub(crate) fn fetch_all(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        Ok(query(self.conn()?, sql)?)
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let mut statement = prepare(conn, sql)?;
        let mut rows = statement.raw_query();
        while rows.next()?.is_some() {}
        Ok(conn.changes())
    }

    /// Commits and waits until the commit is on disk.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.commit_unsynced()?.wait().await
    }

    /// Commits and lets the writer go at once: the next transaction can
    /// run while this one's WAL is synced. Nothing of the commit may be
    /// acknowledged before [`Durable::wait`] says it is on disk.
    pub(crate) fn commit_unsynced(mut self) -> Result<Durable, StoreError> {
        let Some(conn) = self.conn.take() else {
            return Err(StoreError::Interrupted("the transaction has ended".into()));
        };
        let committed = conn.execute_batch("COMMIT");
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        committed?;
        // Every commit is synced, even one that seems to have written
        // nothing (SQLite counts no changes for DDL): a sync of a clean
        // WAL costs a system call.
        let ticket = self.sync.committed();
        drop(conn);
        Ok(Durable::of(&self.sync, ticket))
    }
}

/// Syncs the WAL behind the writer's commits, on a thread of its own: one
/// `fdatasync` for every commit made while the previous one ran (group
/// commit of the disk's work), at once when a commit is waited for, and
/// otherwise within [`LAZY_SYNC`] of the last sync. Commits are numbered;
/// the thread publishes the number up to which they are on disk. A failed sync is final (after
/// a failed `fsync` the kernel may have dropped the pages it could not
/// write: retrying could report a loss as durable): every wait fails from
/// then on, and the service refuses requests (fail closed).
pub(crate) struct WalSync {
    state: Mutex<SyncState>,
    wake: std::sync::Condvar,
    synced: tokio::sync::watch::Sender<Synced>,
    /// How long a commit nobody waits for may wait for its sync.
    lazy: Duration,
}

#[derive(Default)]
struct SyncState {
    /// Commits made.
    committed: u64,
    /// The latest commit someone waits for.
    wanted: u64,
    /// Commits on disk (as far as the thread has synced; only it writes
    /// this).
    synced: u64,
    /// Tests: the next sync fails with this.
    #[cfg(test)]
    fail_next: Option<String>,
}

/// How far commits are on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Synced {
    /// Commits up to this number.
    Through(u64),
    /// A sync failed; nothing after it is known to be on disk.
    Failed(String),
}

impl WalSync {
    fn start(path: &str, lazy: Duration) -> Result<Arc<WalSync>, StoreError> {
        let sync = Arc::new(WalSync {
            state: Mutex::new(SyncState::default()),
            wake: std::sync::Condvar::new(),
            synced: tokio::sync::watch::Sender::new(Synced::Through(0)),
            lazy,
        });
        let (shared, path) = (Arc::clone(&sync), path.to_owned());
        std::thread::Builder::new()
            .name("partnerdb-wal-sync".into())
            .spawn(move || WalSync::run(&shared, &path))
            .map_err(|e| {
                StoreError::Interrupted(format!("cannot start the WAL sync thread: {e}"))
            })?;
        Ok(sync)
    }

    /// Counts a commit; its number, to wait for.
    fn committed(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.committed += 1;
        // Only the first commit after a sync wakes the thread (which then
        // waits for its delay or a waiter): waking it for every commit
        // cost each commit two context switches.
        if state.committed == state.synced + 1 {
            self.wake.notify_one();
        }
        state.committed
    }

    /// Someone waits for commit `ticket`: it is synced without delay.
    fn want(&self, ticket: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if ticket > state.wanted {
            state.wanted = ticket;
            self.wake.notify_one();
        }
    }

    /// The thread: syncs while there are commits to sync (at once for one
    /// waited for, else `lazy` after the last sync); ends when everything
    /// committed is synced and nothing else holds the handle (the database
    /// and its transactions are gone).
    fn run(this: &Arc<WalSync>, path: &str) {
        let mut last_sync = std::time::Instant::now();
        loop {
            let target = {
                let mut state = this.state.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let alone = Arc::strong_count(this) == 1;
                    if state.committed == state.synced {
                        if alone {
                            return;
                        }
                        state = this
                            .wake
                            .wait_timeout(state, Duration::from_secs(1))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        continue;
                    }
                    let due = last_sync + this.lazy;
                    let now = std::time::Instant::now();
                    if state.wanted > state.synced || alone || now >= due {
                        break;
                    }
                    state = this
                        .wake
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                state.committed
            };
            // The sync runs with the state unlocked: commits go on
            // meanwhile, and the next sync covers them.
            #[cfg(test)]
            let injected = this
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fail_next
                .take();
            #[cfg(not(test))]
            let injected: Option<String> = None;
            let result = match injected {
                Some(why) => Err(std::io::Error::other(why)),
                None => sync_files(path),
            };
            last_sync = std::time::Instant::now();
            match result {
                Ok(()) => {
                    this.state.lock().unwrap_or_else(|e| e.into_inner()).synced = target;
                    this.synced.send_replace(Synced::Through(target));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot sync the database's WAL to disk; refusing what waits for it");
                    this.synced.send_replace(Synced::Failed(format!(
                        "cannot sync the WAL to disk: {error}"
                    )));
                    return;
                }
            }
        }
    }

    #[cfg(test)]
    fn fail_next(&self, why: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fail_next = Some(why.into());
    }
}

/// Syncs the WAL file (opened anew each time, so that a WAL made anew
/// after the last connection closed is the one synced). Without a WAL,
/// the last checkpoint wrote and synced the database: it is synced again,
/// which is cheap when nothing is dirty.
fn sync_files(path: &str) -> std::io::Result<()> {
    match std::fs::File::open(format!("{path}-wal")) {
        Ok(wal) => wal.sync_data(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::File::open(path)?.sync_data()
        }
        Err(error) => Err(error),
    }
}

/// A commit not yet known to be on disk.
#[derive(Debug)]
pub(crate) struct Durable {
    ticket: u64,
    synced: tokio::sync::watch::Receiver<Synced>,
    /// To say that the commit is waited for (weak: a commit nobody waits
    /// for does not keep the sync thread alive).
    sync: std::sync::Weak<WalSync>,
}

impl Durable {
    /// Commit `ticket`, to be waited for on `sync`.
    fn of(sync: &Arc<WalSync>, ticket: u64) -> Durable {
        Durable {
            ticket,
            synced: sync.synced.subscribe(),
            sync: Arc::downgrade(sync),
        }
    }

    /// Fails if a sync has failed (final), without waiting.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match &*self.synced.borrow() {
            Synced::Failed(why) => Err(StoreError::Sync(why.clone())),
            Synced::Through(_) => Ok(()),
        }
    }

    /// Waits until the commit is on disk.
    pub(crate) async fn wait(mut self) -> Result<(), StoreError> {
        let mut asked = false;
        loop {
            let now = self.synced.borrow_and_update().clone();
            match now {
                Synced::Through(n) if n >= self.ticket => return Ok(()),
                Synced::Failed(why) => return Err(StoreError::Sync(why)),
                Synced::Through(_) => {}
            }
            if !asked {
                asked = true;
                // Without a handle left the thread is syncing what is
                // committed before it ends.
                if let Some(sync) = self.sync.upgrade() {
                    sync.want(self.ticket);
                }
            }
            if self.synced.changed().await.is_err() {
                return Err(StoreError::Sync("the WAL sync thread has stopped".into()));
            }
        }
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.is_autocommit()
            && let Err(error) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(%error, "cannot roll back a transaction");
        }
    }
}

fn prepare<'c>(conn: &'c Connection, sql: &Sql) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(sql.text())?;
    for (i, arg) in sql.args().iter().enumerate() {
        match arg {
            Value::Null | Value::NullInt => {
                statement.raw_bind_parameter(i + 1, rusqlite::types::Null)?
            }
            Value::Int(n) => statement.raw_bind_parameter(i + 1, n)?,
            Value::Text(text) => statement.raw_bind_parameter(i + 1, text.as_str())?,
        }
    }
    Ok(statement)
}

struct SqliteRowRef<'r>(&'r rusqlite::Row<'r>);

impl RowRef for SqliteRowRef<'_> {
    fn int(&self, i: usize) -> i64 {
        match self.0.get_ref(i) {
            Ok(ValueRef::Integer(n)) => n,
            _ => 0,
        }
    }

    fn text(&self, i: usize) -> Option<&str> {
        match self.0.get_ref(i).ok()? {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    fn is_null(&self, i: usize) -> bool {
        matches!(self.0.get_ref(i), Ok(ValueRef::Null))
    }
}

/// Runs a statement and decodes its rows by each value's storage class.
fn query(conn: &Connection, sql: &Sql) -> rusqlite::Result<Vec<Row>> {
    let mut statement = prepare(conn, sql)?;
    let columns = statement.column_count();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Int(f as i64),
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                    Value::Text(std::str::from_utf8(bytes).map_or_else(
                        |_| String::from_utf8_lossy(bytes).into_owned(),
                        str::to_owned,
                    ))
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;

    /// A fresh database in a scratch directory.
    fn open(scratch: &Scratch) -> Sqlite {
        Sqlite::open(scratch.file().to_str().expect("utf-8 path")).expect("open")
    }

    fn statement(text: &str) -> Sql {
        let mut sql = Sql::new(crate::Dialect::Sqlite);
        sql.push(text);
        sql
    }

    /// A fresh database holding an empty table `t`, created and synced.
    async fn with_table(name: &str) -> (Scratch, Sqlite) {
        syncing(name, LAZY_SYNC).await
    }

    async fn write(db: &Sqlite, text: &str) -> Durable {
        let tx = db.begin().await.expect("begin");
        tx.execute(&statement(text)).expect("statement");
        tx.commit_unsynced().expect("commit")
    }

    #[tokio::test]
    async fn a_commit_is_acknowledged_once_a_later_sync_has_ended() {
        let (_scratch, db) = with_table("synced").await;
        let first = write(&db, "INSERT INTO t VALUES (1)").await;
        // The writer is free before the first commit is on disk: a second
        // transaction commits meanwhile.
        let second = write(&db, "INSERT INTO t VALUES (2)").await;
        assert!(second.ticket > first.ticket);
        first.wait().await.expect("first durable");
        second.wait().await.expect("second durable");
        let synced = db.sync.synced.borrow().clone();
        assert_eq!(synced, Synced::Through(3));
    }

    #[tokio::test]
    async fn a_schema_change_is_synced_like_any_commit() {
        let scratch = Scratch::new("ddl");
        let db = open(&scratch);
        let created = write(&db, "CREATE TABLE t (n INTEGER)").await;
        assert_eq!(
            created.ticket, 1,
            "a commit counted though it changed no row"
        );
        created.wait().await.expect("durable");
    }

    #[tokio::test]
    async fn after_a_failed_sync_no_commit_is_acknowledged() {
        let (_scratch, db) = with_table("failed").await;
        db.sync.fail_next("injected: the disk refused the write");
        let pending = write(&db, "INSERT INTO t VALUES (1)").await;
        let error = pending.wait().await.expect_err("must not be acknowledged");
        assert!(
            matches!(&error, StoreError::Sync(why) if why.contains("injected")),
            "{error}"
        );
        // No write begins after it: nothing more is committed that could
        // be kept though its answer said it failed.
        assert!(
            matches!(db.begin().await, Err(StoreError::SyncFailedBefore(why)) if why.contains("injected")),
            "a write after a failed sync must be refused before it begins"
        );
        let rows = db
            .fetch_all(&statement("SELECT count(*) FROM t"))
            .expect("count");
        assert_eq!(rows[0].int(0), 1, "only the write made before the failure");
    }

    #[tokio::test]
    async fn settling_waits_for_every_commit_made_so_far() {
        let through = |db: &Sqlite| match &*db.sync.synced.borrow() {
            Synced::Through(n) => *n,
            Synced::Failed(why) => panic!("{why}"),
        };
        // Synced only when waited for (no lazy sync within the test).
        let (_scratch, db) = syncing("settle", Duration::from_secs(3600)).await;
        let pending = write(&db, "INSERT INTO t VALUES (1)").await;
        assert!(through(&db) < pending.ticket, "nobody waited for it yet");
        tokio::time::timeout(Duration::from_secs(10), db.settle())
            .await
            .expect("settled within 10 s")
            .expect("synced");
        assert!(through(&db) >= pending.ticket);
        // After a failed sync, settling fails too.
        let later = write(&db, "INSERT INTO t VALUES (2)").await;
        db.sync.fail_next("injected: the disk refused the write");
        assert!(matches!(later.wait().await, Err(StoreError::Sync(_))));
        assert!(matches!(db.settle().await, Err(StoreError::Sync(_))));
    }

    #[tokio::test]
    async fn a_commit_made_while_a_sync_fails_is_not_acknowledged() {
        // Synced only when waited for (no lazy sync within the test).
        let (_scratch, db) = syncing("failing", Duration::from_secs(3600)).await;
        let first = write(&db, "INSERT INTO t VALUES (1)").await;
        // A transaction begun before the failure commits after it: its
        // check and its wait both fail.
        let tx = db.begin().await.expect("begin");
        tx.execute(&statement("INSERT INTO t VALUES (2)"))
            .expect("insert");
        db.sync.fail_next("injected: the disk refused the write");
        assert!(matches!(first.wait().await, Err(StoreError::Sync(_))));
        let second = tx.commit_unsynced().expect("commit");
        assert!(matches!(second.check(), Err(StoreError::Sync(_))));
        assert!(matches!(second.wait().await, Err(StoreError::Sync(_))));
    }

    /// A fresh database syncing unwaited commits `lazy` after the last
    /// sync, holding an empty table `t` (created and synced).
    async fn syncing(name: &str, lazy: Duration) -> (Scratch, Sqlite) {
        let scratch = Scratch::new(name);
        let db =
            Sqlite::open_syncing(scratch.file().to_str().expect("utf-8 path"), lazy).expect("open");
        let created = write(&db, "CREATE TABLE t (n INTEGER)").await;
        // Waited for, so synced at once whatever `lazy` is.
        tokio::time::timeout(Duration::from_secs(10), created.wait())
            .await
            .expect("a waited commit is synced without the delay")
            .expect("durable");
        (scratch, db)
    }

    fn synced(db: &Sqlite) -> Synced {
        db.sync.synced.borrow().clone()
    }

    #[tokio::test]
    async fn a_commit_nobody_waits_for_waits_for_the_lazy_sync_and_a_waited_one_does_not() {
        let (_scratch, db) = syncing("lazy", Duration::from_secs(3600)).await;
        assert_eq!(synced(&db), Synced::Through(1));
        let unwaited = write(&db, "INSERT INTO t VALUES (1)").await;
        assert_eq!(unwaited.ticket, 2);
        // Long enough for a sync that would start at once to end.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            synced(&db),
            Synced::Through(1),
            "a commit nobody waits for was synced before its delay"
        );
        // Waiting for a later commit syncs both now, not in an hour.
        let waited = write(&db, "INSERT INTO t VALUES (2)").await;
        tokio::time::timeout(Duration::from_secs(10), waited.wait())
            .await
            .expect("a waited commit is synced without the delay")
            .expect("durable");
        assert_eq!(synced(&db), Synced::Through(3));
        drop(unwaited);
    }

    #[tokio::test]
    async fn a_commit_nobody_waits_for_is_synced_after_the_delay() {
        let (_scratch, db) = syncing("lazy-ends", Duration::from_millis(20)).await;
        let unwaited = write(&db, "INSERT INTO t VALUES (1)").await;
        drop(unwaited);
        let synced_in_time = tokio::time::timeout(Duration::from_secs(30), async {
            while synced(&db) != Synced::Through(2) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(synced_in_time.is_ok(), "never synced: {:?}", synced(&db));
    }
}
