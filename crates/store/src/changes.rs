//! Contract change requests: proposed terms (a JSON object of field values)
//! against the contract version they were proposed on, and their state.

use crate::StoreError;
use crate::sql::{Db, Row, Tx};

/// A change request as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRequestRow {
    /// Its id.
    pub id: String,
    /// The contract it would change.
    pub contract_id: String,
    /// That contract's partner.
    pub partner_id: String,
    /// Who proposed it.
    pub proposer_id: String,
    /// The contract's version when it was proposed.
    pub base_version: i64,
    /// The proposed field values, a JSON object.
    pub terms: String,
    /// `pending`, `approved`, `rejected` or `withdrawn`.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// Who approved, rejected or withdrew it.
    pub decided_by: Option<String>,
    /// When it was proposed.
    pub created_at: String,
    /// When it was decided.
    pub decided_at: Option<String>,
}

const COLUMNS: &str = "id, contract_id, partner_id, proposer_id, base_version, terms, status, reason, decided_by, created_at, decided_at";

fn from_row(mut row: Row) -> ChangeRequestRow {
    ChangeRequestRow {
        base_version: row.int(4),
        id: row.take_text(0),
        contract_id: row.take_text(1),
        partner_id: row.take_text(2),
        proposer_id: row.take_text(3),
        terms: row.take_text(5),
        status: row.take_text(6),
        reason: row.take_opt_text(7),
        decided_by: row.take_opt_text(8),
        created_at: row.take_text(9),
        decided_at: row.take_opt_text(10),
    }
}

/// Stores a new request.
pub async fn insert(tx: &mut Tx, request: &ChangeRequestRow) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO change_requests (")
        .push(COLUMNS)
        .push(") VALUES (")
        .bind(request.id.as_str())
        .push(", ")
        .bind(request.contract_id.as_str())
        .push(", ")
        .bind(request.partner_id.as_str())
        .push(", ")
        .bind(request.proposer_id.as_str())
        .push(", ")
        .bind(request.base_version)
        .push(", ")
        .bind(request.terms.as_str())
        .push(", ")
        .bind(request.status.as_str())
        .push(", ")
        .bind(request.reason.as_deref())
        .push(", ")
        .bind(request.decided_by.as_deref())
        .push(", ")
        .bind(request.created_at.as_str())
        .push(", ")
        .bind(request.decided_at.as_deref())
        .push(")");
    tx.execute(&sql).await?;
    Ok(())
}

/// One request, read in a write transaction (PostgreSQL: locked until it
/// ends, so that two decisions on one request serialise).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<ChangeRequestRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM change_requests WHERE id = ")
        .bind(id);
    if tx.dialect() == crate::Dialect::Postgres {
        sql.push(" FOR UPDATE");
    }
    Ok(tx.fetch_optional(&sql).await?.map(from_row))
}

/// One request.
pub async fn get(db: &Db, id: &str) -> Result<Option<ChangeRequestRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM change_requests WHERE id = ")
        .bind(id);
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// Requests in id order (oldest first) after `after`, optionally of one
/// contract and in one status, at most `limit`.
pub async fn list(
    db: &Db,
    contract_id: Option<&str>,
    status: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ChangeRequestRow>, StoreError> {
    let equal = [("contract_id", contract_id), ("status", status)];
    let rows = crate::sql::id_page(db, COLUMNS, "change_requests", &equal, after, limit).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Closes a pending request (`approved`, `rejected` or `withdrawn`).
/// Returns false when it was no longer pending.
pub async fn close(
    tx: &mut Tx,
    id: &str,
    status: &str,
    decided_by: &str,
    reason: Option<&str>,
    at: &str,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE change_requests SET status = ")
        .bind(status)
        .push(", decided_by = ")
        .bind(decided_by)
        .push(", reason = ")
        .bind(reason)
        .push(", decided_at = ")
        .bind(at)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND status = 'pending'");
    Ok(tx.execute(&sql).await? == 1)
}
