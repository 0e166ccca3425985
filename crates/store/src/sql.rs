//! The SQL layer: values, rows, a statement builder that only binds values
//! (identifiers come from the schema tables, never from input), and one
//! database handle over SQLite or PostgreSQL.
//!
//! Statements are written once with `?` placeholders produced by
//! [`Sql::bind`]; the builder numbers them `$1, $2, …` for PostgreSQL.
//! sqlx 0.9 asks that dynamic SQL be asserted safe (`AssertSqlSafe`): it is,
//! because [`Sql`] appends only literals and schema names, and binds every
//! value.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Column as _, Row as _, TypeInfo as _, ValueRef as _};

use crate::StoreError;
use crate::sqlite::{Sqlite, SqliteTx};

/// A value bound to or read from a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// SQL NULL bound as a BIGINT (PostgreSQL types parameters; a text NULL
    /// does not fit a BIGINT column). Never read back.
    NullInt,
    /// A BIGINT.
    Int(i64),
    /// A TEXT.
    Text(String),
}

impl Value {
    /// The text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether it is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null | Value::NullInt)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

/// A row read back, its values in the order of the select list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Value `i`.
    pub fn get(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    /// Text value `i` (empty if absent).
    pub fn text(&self, i: usize) -> String {
        self.get(i).as_text().unwrap_or_default().to_owned()
    }

    /// Optional text value `i`.
    pub fn opt_text(&self, i: usize) -> Option<String> {
        self.get(i).as_text().map(str::to_owned)
    }

    /// Takes text value `i` out of the row (empty if absent), leaving NULL.
    pub fn take_text(&mut self, i: usize) -> String {
        self.take_opt_text(i).unwrap_or_default()
    }

    /// Takes optional text value `i` out of the row, leaving NULL.
    pub fn take_opt_text(&mut self, i: usize) -> Option<String> {
        match self.0.get_mut(i).map(|v| std::mem::replace(v, Value::Null)) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// Integer value `i` (0 if absent).
    pub fn int(&self, i: usize) -> i64 {
        self.get(i).as_int().unwrap_or(0)
    }
}

/// The database a statement is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A statement under construction: text with placeholders, and the values
/// bound to them.
#[derive(Clone, Debug)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Value>,
}

impl Sql {
    /// An empty statement for `dialect`.
    pub fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::with_capacity(256),
            args: Vec::new(),
        }
    }

    /// Appends SQL text. Only ever called with literals and schema names.
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.args.push(value.into());
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.args.len().to_string());
            }
        }
        self
    }

    /// The statement's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The values bound, in order.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// The dialect it is written for.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Binds a statement's values to a sqlx query.
macro_rules! bind_all {
    ($sql:expr) => {{
        let mut query = sqlx::query(AssertSqlSafe($sql.text()));
        for arg in $sql.args() {
            query = match arg {
                Value::Null => query.bind(None::<String>),
                Value::NullInt => query.bind(None::<i64>),
                Value::Int(n) => query.bind(*n),
                Value::Text(text) => query.bind(text.as_str()),
            };
        }
        query
    }};
}

/// Runs a statement on an executor and decodes its rows.
macro_rules! fetch_rows {
    ($sql:expr, $executor:expr, $decode:path) => {{
        let rows = bind_all!($sql).fetch_all($executor).await?;
        rows.iter()
            .map($decode)
            .collect::<Result<Vec<Row>, sqlx::Error>>()?
    }};
}

fn decode_postgres(row: &PgRow) -> Result<Row, sqlx::Error> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.push(Value::Null);
            continue;
        }
        out.push(match column.type_info().name() {
            "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
            "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
            "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
            "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(i)?)),
            _ => Value::Text(row.try_get::<String, _>(i)?),
        });
    }
    Ok(Row(out))
}

/// A row's values where the driver holds them, for a reader that needs
/// them only for a moment ([`Db::visit_range`]): nothing is copied out.
pub trait RowRef {
    /// Integer value `i` (0 if it is not one).
    fn int(&self, i: usize) -> i64;
    /// Text value `i`; `None` for NULL and for anything but text.
    fn text(&self, i: usize) -> Option<&str>;
    /// Whether value `i` is NULL.
    fn is_null(&self, i: usize) -> bool;
}

struct PgRowRef<'r>(&'r PgRow);

/// Values read without sqlx's check of the column's type against the
/// Rust one (a tenth of a verify's client CPU): the statements that visit
/// rows name their columns, whose types the migrations set.
impl RowRef for PgRowRef<'_> {
    fn int(&self, i: usize) -> i64 {
        self.0.try_get_unchecked::<i64, _>(i).unwrap_or(0)
    }

    fn text(&self, i: usize) -> Option<&str> {
        let value = self.0.try_get_raw(i).ok()?;
        std::str::from_utf8(value.as_bytes().ok()?).ok()
    }

    fn is_null(&self, i: usize) -> bool {
        use sqlx::ValueRef as _;
        self.0.try_get_raw(i).is_ok_and(|value| value.is_null())
    }
}

/// A schema against this build's migrations ([`Db::schema_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaState {
    /// Migrations of this build not applied yet.
    pub pending: usize,
    /// Migrations applied that this build does not have.
    pub unknown: usize,
}

/// Where the data lives.
#[derive(Clone, Debug)]
enum Pools {
    /// Embedded SQLite, called in place (see [`crate::sqlite`]).
    Sqlite(Arc<Sqlite>),
    Postgres(PgPool),
}

/// A handle on the database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pools: Pools,
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Connections for reads (PostgreSQL: all connections).
    pub max_connections: u32,
    /// PostgreSQL schema to use (tests use a fresh one each).
    pub schema: Option<String>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 4,
            schema: None,
        }
    }
}

/// The migrations for `dialect`: every one in `migrations/`, except those
/// named for the other dialect (`sqlite_…` runs on SQLite only,
/// `postgres_…` on PostgreSQL only), for what the two cannot say in one
/// statement (SQLite's rowid and WITHOUT ROWID tables).
pub(crate) fn migrator_for(dialect: Dialect) -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    let other = match dialect {
        Dialect::Sqlite => "postgres ",
        Dialect::Postgres => "sqlite ",
    };
    let own: Vec<_> = migrator
        .iter()
        .filter(|m| !m.description.starts_with(other))
        .cloned()
        .collect();
    migrator.migrations = own.into();
    migrator
}

impl Db {
    /// Opens a database from a URL: `sqlite://PATH` (created if missing) or
    /// `postgres://…`.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Db, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Db::open_sqlite(path, options).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Db::open_postgres(url, options).await;
        }
        Err(StoreError::Url(
            "expected sqlite://PATH or postgres://…".to_owned(),
        ))
    }

    async fn open_sqlite(path: &str, _options: &DbOptions) -> Result<Db, StoreError> {
        if path.is_empty() || path.contains(":memory:") || path.contains("mode=memory") {
            // Every connection would open a database of its own.
            return Err(StoreError::Url(
                "SQLite needs a file: sqlite://PATH (an in-memory database is not supported)"
                    .to_owned(),
            ));
        }
        let sqlite = Sqlite::open(path)?;
        Ok(Db {
            pools: Pools::Sqlite(Arc::new(sqlite)),
        })
    }

    async fn open_postgres(url: &str, options: &DbOptions) -> Result<Db, StoreError> {
        // Read committed whatever the server's default: an append reads
        // the chain's head after its advisory lock is granted, which needs
        // a snapshot per statement (under repeatable read the snapshot
        // would predate the lock, and two servers would both append after
        // the same head).
        let mut connect = PgConnectOptions::from_str(url)?
            .options([("default_transaction_isolation", "read committed")]);
        if let Some(schema) = &options.schema {
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            // One more than asked: a server's policy listener holds one.
            .max_connections(options.max_connections.max(2) + 1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        Ok(Db {
            pools: Pools::Postgres(pool),
        })
    }

    /// The PostgreSQL pool, for the PostgreSQL-only features (LISTEN).
    pub(crate) fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(pool) => Some(pool),
            Pools::Sqlite(_) => None,
        }
    }

    /// The dialect statements for this database are written in.
    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite(_) => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement for this database.
    pub fn sql(&self) -> Sql {
        Sql::new(self.dialect())
    }

    /// Applies the migrations not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrator_for(self.dialect());
        match &self.pools {
            Pools::Sqlite(sqlite) => {
                // sqlx's migrator keeps its bookkeeping table, which the
                // databases made so far carry; it gets a connection of its
                // own for the run.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        SqliteConnectOptions::new()
                            .filename(sqlite.path())
                            .journal_mode(SqliteJournalMode::Wal)
                            .foreign_keys(true)
                            .busy_timeout(Duration::from_secs(10)),
                    )
                    .await?;
                let run = migrator.run(&pool).await;
                pool.close().await;
                run?
            }
            Pools::Postgres(pool) => migrator.run(pool).await?,
        }
        Ok(())
    }

    /// How the database's schema stands against this build's migrations,
    /// without changing it (for commands that only read): the migrations
    /// not applied yet, and those applied that this build does not know
    /// (a newer build's).
    pub async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        let migrator = migrator_for(self.dialect());
        let known: std::collections::BTreeSet<i64> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        let mut sql = self.sql();
        sql.push("SELECT version FROM _sqlx_migrations WHERE success");
        let applied: std::collections::BTreeSet<i64> = self
            .fetch_all(&sql)
            .await?
            .iter()
            .map(|row| row.int(0))
            .collect();
        Ok(SchemaState {
            pending: known.difference(&applied).count(),
            unknown: applied.difference(&known).count(),
        })
    }

    /// Reads rows outside any write transaction.
    pub async fn fetch_all(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.fetch_all(sql)?,
            Pools::Postgres(pool) => fetch_rows!(sql, pool, decode_postgres),
        })
    }

    /// Runs several reads on one snapshot of the database (no write lands
    /// between them); their rows, statement by statement.
    pub async fn fetch_all_snapshot(
        &self,
        statements: &[Sql],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.fetch_all_snapshot(statements),
            Pools::Postgres(pool) => {
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let mut out = Vec::with_capacity(statements.len());
                for sql in statements {
                    out.push(fetch_rows!(sql, &mut *tx, decode_postgres));
                }
                tx.commit().await?;
                Ok(out)
            }
        }
    }

    /// Reads rows, for a long read: on SQLite on a blocking thread, so that
    /// the caller's worker serves others meanwhile and several such reads
    /// run at once.
    pub async fn fetch_all_offloaded(&self, sql: Sql) -> Result<Vec<Row>, StoreError> {
        match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.fetch_all_offloaded(sql).await,
            Pools::Postgres(_) => self.fetch_all(&sql).await,
        }
    }

    /// Reads a range of a table's key in the key's order (a slice of the
    /// trail) and hands each row to `visit` where the driver holds it, for
    /// a long read whose values are needed only to compute something
    /// smaller from them. SQLite reads and visits on a blocking thread;
    /// PostgreSQL's rows are visited on the caller's task as they arrive,
    /// each dropped before the next (rows collected first and visited
    /// elsewhere cost a verify a seventh of its CPU in fresh pages).
    ///
    /// PostgreSQL is told to walk the key's index rather than plan by its
    /// statistics: on a table not yet analyzed (a trail just restored or
    /// loaded) it planned a parallel bitmap scan and a sort spilled to
    /// disk for every slice, 38 ms a slice of 10,000 events against 4 ms
    /// for the index scan.
    pub async fn visit_range<T: Send + 'static>(
        &self,
        sql: Sql,
        mut visit: impl FnMut(&dyn RowRef) -> T + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.visit_offloaded(sql, visit).await,
            Pools::Postgres(pool) => {
                let mut tx = pool.begin_with("BEGIN READ ONLY").await?;
                // Settings of this transaction only (`is_local`).
                sqlx::query(
                    "SELECT set_config('enable_bitmapscan', 'off', true), \
                     set_config('enable_sort', 'off', true), \
                     set_config('max_parallel_workers_per_gather', '0', true)",
                )
                .execute(&mut *tx)
                .await?;
                let mut out = Vec::new();
                {
                    let mut rows = bind_all!(sql).fetch(&mut *tx);
                    while let Some(row) =
                        std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await
                    {
                        out.push(visit(&PgRowRef(&row?)));
                    }
                }
                tx.commit().await?;
                Ok(out)
            }
        }
    }

    /// Reads at most one row outside any write transaction.
    pub async fn fetch_optional(&self, sql: &Sql) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }

    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE` on the single
    /// writer connection).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match &self.pools {
            Pools::Sqlite(sqlite) => TxInner::Sqlite(sqlite.begin().await?),
            Pools::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        }))
    }

    /// SQLite: copies what it can of the WAL back into the database
    /// without waiting for readers or the writer (a passive checkpoint), so
    /// that commits seldom carry one. PostgreSQL: nothing to do.
    pub async fn checkpoint_wal(&self) -> Result<(), StoreError> {
        if let Pools::Sqlite(sqlite) = &self.pools {
            sqlite.checkpoint_wal().await?;
        }
        Ok(())
    }

    /// Waits until every commit made so far is durable (SQLite: on disk,
    /// its WAL synced; PostgreSQL's commits are durable once made).
    pub async fn settle(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.settle().await,
            Pools::Postgres(_) => Ok(()),
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let sql = {
            let mut sql = self.sql();
            sql.push("SELECT 1");
            sql
        };
        self.fetch_all(&sql).await.map(|_| ())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite(sqlite) => sqlite.close(),
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

/// One page of a table keyed by `id`: the rows where each given column
/// equals its value (`None`: any), after `after`, in id order, at most
/// `limit`. `columns` and `table` come from the schema, never from input.
pub(crate) async fn id_page(
    db: &Db,
    columns: &str,
    table: &str,
    equal: &[(&str, Option<&str>)],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(columns)
        .push(" FROM ")
        .push(table)
        .push(" WHERE 1 = 1");
    for (column, value) in equal {
        if let Some(value) = value {
            sql.push(" AND ").push(column).push(" = ").bind(*value);
        }
    }
    if let Some(after) = after {
        sql.push(" AND id > ").bind(after);
    }
    sql.push(" ORDER BY id LIMIT ").bind(limit as i64);
    db.fetch_all(&sql).await
}

enum TxInner {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A write transaction: everything in it commits together or not at all
/// (dropping it without [`Tx::commit`] rolls back).
pub struct Tx(TxInner);

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

impl Tx {
    /// The dialect of the transaction's database.
    pub fn dialect(&self) -> Dialect {
        match self.0 {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement for this transaction's database.
    pub fn sql(&self) -> Sql {
        Sql::new(self.dialect())
    }

    /// Reads rows.
    pub async fn fetch_all(&mut self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
        Ok(match &mut self.0 {
            TxInner::Sqlite(tx) => tx.fetch_all(sql)?,
            TxInner::Postgres(tx) => fetch_rows!(sql, &mut **tx, decode_postgres),
        })
    }

    /// Reads at most one row.
    pub async fn fetch_optional(&mut self, sql: &Sql) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        Ok(match &mut self.0 {
            TxInner::Sqlite(tx) => tx.execute(sql)?,
            TxInner::Postgres(tx) => bind_all!(sql).execute(&mut **tx).await?.rows_affected(),
        })
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.0 {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Commits, and returns before the commit is known to be on disk where
    /// the database allows it (SQLite: the WAL is synced behind the
    /// writer, which the next transaction can take meanwhile; PostgreSQL:
    /// the commit waits for its WAL flush as always). Nothing of the
    /// transaction may be acknowledged before [`Durable::wait`] returns.
    pub async fn commit_pipelined(self) -> Result<Durable, StoreError> {
        Ok(Durable(match self.0 {
            TxInner::Sqlite(tx) => Some(tx.commit_unsynced()?),
            TxInner::Postgres(tx) => {
                tx.commit().await?;
                None
            }
        }))
    }
}

/// A commit on its way to disk ([`Tx::commit_pipelined`]).
#[derive(Debug)]
pub struct Durable(Option<crate::sqlite::Durable>);

impl Durable {
    /// Waits until the commit is on disk; an error means it may not be
    /// (and nothing committed after it is known to be).
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            Some(durable) => durable.wait().await,
            None => Ok(()),
        }
    }

    /// Whether the commit is known not to reach the disk, without
    /// waiting: a sync of the database has failed (which is final), so
    /// nothing committed from then on is known to be on disk. `Ok` says
    /// only that no sync has failed yet, not that this commit is on disk.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.0 {
            Some(durable) => durable.check(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_sqlite_is_refused_with_the_reason() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://"] {
            match Db::connect(url, &DbOptions::default()).await {
                Err(StoreError::Url(reason)) => assert!(reason.contains("file"), "{url}: {reason}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("SELECT * FROM t WHERE a = ")
            .bind(1)
            .push(" AND b = ")
            .bind("x");
        assert_eq!(sql.text(), "SELECT * FROM t WHERE a = $1 AND b = $2");
        let mut sql = Sql::new(Dialect::Sqlite);
        sql.push("a = ").bind(1).push(" AND b = ").bind(Value::Null);
        assert_eq!(sql.text(), "a = ? AND b = ?");
        assert_eq!(sql.args(), [Value::Int(1), Value::Null]);
    }
}
