//! Policy versions: proposed, approved into activation, superseded,
//! rejected. Activation swaps the `policy` setting in the same
//! transaction.

use crate::StoreError;
use crate::sql::{Db, Row, Tx, Value};

/// A policy version as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// Its number (1, 2, …).
    pub number: i64,
    /// The first 16 hex digits of the SHA-256 of its content.
    pub hash: String,
    /// The policy text.
    pub content: String,
    /// Who proposed it (`bootstrap` for the first).
    pub author: String,
    /// Why.
    pub message: String,
    /// `proposed`, `active`, `superseded` or `rejected`.
    pub state: String,
    /// Who approved (or rejected) it.
    pub approved_by: Option<String>,
    /// The version it rolls back to, for a rollback.
    pub rollback_of: Option<i64>,
    /// The version active when it was proposed (its plan and diff were
    /// against that one).
    pub based_on: Option<i64>,
    /// When it was proposed.
    pub created_at: String,
    /// When it was approved or rejected.
    pub decided_at: Option<String>,
}

const COLUMNS: &str = "number, hash, content, author, message, state, approved_by, rollback_of, created_at, decided_at, based_on";

fn from_row(mut row: Row) -> PolicyVersionRow {
    let rollback_of = row.get(7).as_int();
    let based_on = row.get(10).as_int();
    PolicyVersionRow {
        based_on,
        number: row.int(0),
        hash: row.take_text(1),
        content: row.take_text(2),
        author: row.take_text(3),
        message: row.take_text(4),
        state: row.take_text(5),
        approved_by: row.take_opt_text(6),
        rollback_of,
        created_at: row.take_text(8),
        decided_at: row.take_opt_text(9),
    }
}

/// Stores a new version, numbered after the last; returns its number.
pub async fn insert(tx: &mut Tx, v: &PolicyVersionRow) -> Result<i64, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT COALESCE(MAX(number), 0) FROM policy_versions");
    let number = tx.fetch_optional(&sql).await?.map_or(0, |r| r.int(0)) + 1;
    let mut sql = tx.sql();
    sql.push("INSERT INTO policy_versions (")
        .push(COLUMNS)
        .push(") VALUES (")
        .bind(number)
        .push(", ")
        .bind(v.hash.as_str())
        .push(", ")
        .bind(v.content.as_str())
        .push(", ")
        .bind(v.author.as_str())
        .push(", ")
        .bind(v.message.as_str())
        .push(", ")
        .bind(v.state.as_str())
        .push(", ")
        .bind(v.approved_by.as_deref())
        .push(", ")
        .bind(v.rollback_of.map_or(Value::NullInt, Value::Int))
        .push(", ")
        .bind(v.created_at.as_str())
        .push(", ")
        .bind(v.decided_at.as_deref())
        .push(", ")
        .bind(v.based_on.map_or(Value::NullInt, Value::Int))
        .push(")");
    tx.execute(&sql).await?;
    Ok(number)
}

/// One version in a write transaction.
pub async fn get_in(tx: &mut Tx, number: i64) -> Result<Option<PolicyVersionRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM policy_versions WHERE number = ")
        .bind(number);
    Ok(tx.fetch_optional(&sql).await?.map(from_row))
}

/// One version.
pub async fn get(db: &Db, number: i64) -> Result<Option<PolicyVersionRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM policy_versions WHERE number = ")
        .bind(number);
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// Every version, newest first, below `before`, at most `limit`.
pub async fn list(
    db: &Db,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<PolicyVersionRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM policy_versions");
    if let Some(before) = before {
        sql.push(" WHERE number < ").bind(before);
    }
    sql.push(" ORDER BY number DESC LIMIT ").bind(limit as i64);
    Ok(db
        .fetch_all(&sql)
        .await?
        .into_iter()
        .map(from_row)
        .collect())
}

/// The active version, in a write transaction.
pub async fn active_in(tx: &mut Tx) -> Result<Option<PolicyVersionRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM policy_versions WHERE state = 'active' ORDER BY number DESC LIMIT 1");
    Ok(tx.fetch_optional(&sql).await?.map(from_row))
}

/// The active version.
pub async fn active_version(db: &Db) -> Result<Option<PolicyVersionRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM policy_versions WHERE state = 'active' ORDER BY number DESC LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// The active version's number and hash (cheap: for polling).
pub async fn active(db: &Db) -> Result<Option<(i64, String)>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT number, hash FROM policy_versions WHERE state = 'active' ORDER BY number DESC LIMIT 1");
    Ok(db
        .fetch_optional(&sql)
        .await?
        .map(|mut r| (r.int(0), r.take_text(1))))
}

/// Activates a proposed version: the active one becomes superseded, this
/// one active, and its text the `policy` setting. Returns false when the
/// version was no longer proposed.
pub async fn activate(tx: &mut Tx, number: i64, by: &str, at: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE policy_versions SET state = 'active', approved_by = ")
        .bind(by)
        .push(", decided_at = ")
        .bind(at)
        .push(" WHERE number = ")
        .bind(number)
        .push(" AND state = 'proposed'");
    if tx.execute(&sql).await? != 1 {
        return Ok(false);
    }
    let mut sql = tx.sql();
    sql.push(
        "UPDATE policy_versions SET state = 'superseded' WHERE state = 'active' AND number <> ",
    )
    .bind(number);
    tx.execute(&sql).await?;
    let mut sql = tx.sql();
    sql.push("UPDATE settings SET value = (SELECT content FROM policy_versions WHERE number = ")
        .bind(number)
        .push(") WHERE name = 'policy'");
    tx.execute(&sql).await?;
    if tx.dialect() == crate::Dialect::Postgres {
        // Delivered to every listening server when the transaction commits.
        let mut sql = tx.sql();
        sql.push("SELECT pg_notify('")
            .push(POLICY_CHANNEL)
            .push("', ")
            .bind(number.to_string())
            .push(")");
        tx.execute(&sql).await?;
    }
    Ok(true)
}

/// The PostgreSQL channel activations are announced on.
pub const POLICY_CHANNEL: &str = "partnerdb_policy";

/// Announcements of activations (PostgreSQL LISTEN on [`POLICY_CHANNEL`]).
#[derive(Debug)]
pub struct PolicyListener(sqlx::postgres::PgListener);

impl PolicyListener {
    /// Waits for the next activation (reconnecting if the connection
    /// drops) and returns its payload: the activated version's number.
    /// Channels are per database: deployments in other schemas of the
    /// same database are heard too (a wasted poll, nothing more).
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        Ok(self.0.recv().await?.payload().to_owned())
    }
}

/// Listens for activations; `None` on SQLite (which has one process's
/// writers only and is followed by polling).
pub async fn listen(db: &Db) -> Result<Option<PolicyListener>, StoreError> {
    let Some(pool) = db.postgres_pool() else {
        return Ok(None);
    };
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(POLICY_CHANNEL).await?;
    Ok(Some(PolicyListener(listener)))
}

/// Rejects a proposed version. Returns false when it was no longer
/// proposed.
pub async fn reject(tx: &mut Tx, number: i64, by: &str, at: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE policy_versions SET state = 'rejected', approved_by = ")
        .bind(by)
        .push(", decided_at = ")
        .bind(at)
        .push(" WHERE number = ")
        .bind(number)
        .push(" AND state = 'proposed'");
    Ok(tx.execute(&sql).await? == 1)
}
