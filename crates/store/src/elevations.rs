//! Elevations: requested high-risk permissions, their approval, and the
//! hash of the short-lived token that carries them.

use crate::StoreError;
use crate::sql::{Db, Row, Tx};

/// An elevation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElevationRow {
    /// Its id.
    pub id: String,
    /// Who asked.
    pub principal_id: String,
    /// The permissions asked for, a JSON array of `resource:action`.
    pub permissions: String,
    /// The one partner it is limited to, if any.
    pub partner_id: Option<String>,
    /// Why.
    pub reason: String,
    /// How long it lasts once approved.
    pub ttl_seconds: i64,
    /// `pending`, `approved`, `denied`, `revoked` or `expired`.
    pub status: String,
    /// Who approved, denied or revoked it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// When an approved elevation ends.
    pub expires_at: Option<String>,
    /// Whether its token was issued.
    pub token_issued: bool,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// When it was asked for.
    pub created_at: String,
}

const COLUMNS: &str = "id, principal_id, permissions, partner_id, reason, ttl_seconds, status, decided_by, decided_at, expires_at, token_hash IS NOT NULL, revoked_at, created_at";

fn from_row(mut row: Row) -> ElevationRow {
    ElevationRow {
        ttl_seconds: row.int(5),
        token_issued: row.int(10) != 0,
        id: row.take_text(0),
        principal_id: row.take_text(1),
        permissions: row.take_text(2),
        partner_id: row.take_opt_text(3),
        reason: row.take_text(4),
        status: row.take_text(6),
        decided_by: row.take_opt_text(7),
        decided_at: row.take_opt_text(8),
        expires_at: row.take_opt_text(9),
        revoked_at: row.take_opt_text(11),
        created_at: row.take_text(12),
    }
}

/// Stores a new (pending) elevation.
pub async fn insert(tx: &mut Tx, e: &ElevationRow) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO elevations (id, principal_id, permissions, partner_id, reason, ttl_seconds, status, created_at) VALUES (")
        .bind(e.id.as_str())
        .push(", ")
        .bind(e.principal_id.as_str())
        .push(", ")
        .bind(e.permissions.as_str())
        .push(", ")
        .bind(e.partner_id.as_deref())
        .push(", ")
        .bind(e.reason.as_str())
        .push(", ")
        .bind(e.ttl_seconds)
        .push(", ")
        .bind(e.status.as_str())
        .push(", ")
        .bind(e.created_at.as_str())
        .push(")");
    tx.execute(&sql).await?;
    Ok(())
}

/// One elevation in a write transaction (PostgreSQL: locked until it ends).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<ElevationRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM elevations WHERE id = ")
        .bind(id);
    if tx.dialect() == crate::Dialect::Postgres {
        sql.push(" FOR UPDATE");
    }
    Ok(tx.fetch_optional(&sql).await?.map(from_row))
}

/// One elevation.
pub async fn get(db: &Db, id: &str) -> Result<Option<ElevationRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM elevations WHERE id = ")
        .bind(id);
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// The elevation a token carries.
pub async fn by_token(db: &Db, token_hash: &str) -> Result<Option<ElevationRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM elevations WHERE token_hash = ")
        .bind(token_hash);
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// Elevations in id order after `after`, of one principal or all, in one
/// status or all, at most `limit`.
pub async fn list(
    db: &Db,
    principal_id: Option<&str>,
    status: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ElevationRow>, StoreError> {
    let equal = [("principal_id", principal_id), ("status", status)];
    let rows = crate::sql::id_page(db, COLUMNS, "elevations", &equal, after, limit).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Approves or denies a pending elevation. Returns false when it was no
/// longer pending.
pub async fn decide(
    tx: &mut Tx,
    id: &str,
    status: &str,
    decided_by: &str,
    at: &str,
    expires_at: Option<&str>,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE elevations SET status = ")
        .bind(status)
        .push(", decided_by = ")
        .bind(decided_by)
        .push(", decided_at = ")
        .bind(at)
        .push(", expires_at = ")
        .bind(expires_at)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND status = 'pending'");
    Ok(tx.execute(&sql).await? == 1)
}

/// Sets the token of an approved elevation, once. Returns false when one
/// was already issued.
pub async fn issue_token(tx: &mut Tx, id: &str, token_hash: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE elevations SET token_hash = ")
        .bind(token_hash)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND status = 'approved' AND token_hash IS NULL");
    Ok(tx.execute(&sql).await? == 1)
}

/// Revokes a pending or approved elevation. Returns false when it was
/// already denied or revoked.
pub async fn revoke(tx: &mut Tx, id: &str, by: &str, at: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE elevations SET status = 'revoked', revoked_at = ")
        .bind(at)
        .push(", decided_by = COALESCE(decided_by, ")
        .bind(by)
        .push(") WHERE id = ")
        .bind(id)
        .push(" AND status IN ('pending', 'approved')");
    Ok(tx.execute(&sql).await? == 1)
}

/// Approved elevations whose end has passed (at most `limit`).
pub async fn due(tx: &mut Tx, now: &str, limit: usize) -> Result<Vec<ElevationRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM elevations WHERE status = 'approved' AND expires_at <= ")
        .bind(now)
        .push(" ORDER BY id LIMIT ")
        .bind(limit as i64);
    Ok(tx
        .fetch_all(&sql)
        .await?
        .into_iter()
        .map(from_row)
        .collect())
}

/// Marks an approved elevation expired. Returns false when it was no
/// longer approved (another server marked it, or it was revoked).
pub async fn expire(tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE elevations SET status = 'expired' WHERE id = ")
        .bind(id)
        .push(" AND status = 'approved'");
    Ok(tx.execute(&sql).await? == 1)
}

/// Whether any approved elevation has ended (a cheap read, so that a sweep
/// takes the write lock only when there is something to mark).
pub async fn any_due(db: &Db, now: &str) -> Result<bool, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT 1 FROM elevations WHERE status = 'approved' AND expires_at <= ")
        .bind(now)
        .push(" LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.is_some())
}
