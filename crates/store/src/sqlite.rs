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
//!   `COMMIT` (which waits for the disk, `synchronous=FULL`) included:
//!   commits are serial anyway, and handing them to a blocking thread and
//!   back measured no faster;
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
use crate::sql::{Row, Sql, Value};

/// Statements kept prepared per connection: the statements of the
/// service are a few dozen shapes.
const STATEMENT_CACHE: usize = 128;

/// Read connections kept open for reuse; more are opened when threads ask
/// at once, and closed when returned beyond this.
const IDLE_READERS: usize = 8;

/// An open SQLite database: its writer, its readers, and a connection for
/// WAL checkpoints.
pub(crate) struct Sqlite {
    path: String,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    checkpoint: Arc<Mutex<Option<Connection>>>,
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
        writer.pragma_update(None, "cache_size", -32768)?;
        writer.pragma_update(None, "wal_autocheckpoint", 16384)?;
        writer.pragma_update(None, "journal_size_limit", 67_108_864)?;
        let sqlite = Sqlite {
            path: path.to_owned(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(Vec::new()),
            checkpoint: Arc::new(Mutex::new(None)),
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

    /// Starts a write transaction on the writer (`BEGIN IMMEDIATE`: the
    /// database's write lock is taken now, not at the first write).
    pub(crate) async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let conn = Arc::clone(&self.writer).lock_owned().await;
        if !conn.is_autocommit() {
            // A transaction left open by a failed rollback.
            conn.execute_batch("ROLLBACK")?;
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(SqliteTx { conn: Some(conn) })
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

    /// Commits (waiting for the disk).
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let Some(conn) = self.conn.take() else {
            return Err(StoreError::Interrupted("the transaction has ended".into()));
        };
        let committed = conn.execute_batch("COMMIT");
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok(committed?)
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
