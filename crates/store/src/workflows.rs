//! Workflow runs (onboarding, offboarding) and how far they got.

use crate::StoreError;
use crate::sql::{Db, Row, Tx};

/// A workflow run as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRow {
    /// Its id.
    pub id: String,
    /// `onboarding` or `offboarding`.
    pub kind: String,
    /// The partner it is about.
    pub partner_id: String,
    /// The draft contract onboarding made.
    pub contract_id: Option<String>,
    /// Who triggered it.
    pub triggered_by: String,
    /// `awaiting_approval`, `completed` or `rejected`.
    pub status: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// The api_client principal onboarding made.
    pub api_client_id: Option<String>,
    /// When it was triggered.
    pub created_at: String,
    /// When it last moved.
    pub updated_at: String,
}

const COLUMNS: &str = "id, kind, partner_id, contract_id, triggered_by, status, approved_by, api_client_id, created_at, updated_at";

fn from_row(mut row: Row) -> WorkflowRow {
    WorkflowRow {
        id: row.take_text(0),
        kind: row.take_text(1),
        partner_id: row.take_text(2),
        contract_id: row.take_opt_text(3),
        triggered_by: row.take_text(4),
        status: row.take_text(5),
        approved_by: row.take_opt_text(6),
        api_client_id: row.take_opt_text(7),
        created_at: row.take_text(8),
        updated_at: row.take_text(9),
    }
}

/// Stores a run, or replaces its state.
pub async fn save(tx: &mut Tx, w: &WorkflowRow) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO workflows (")
        .push(COLUMNS)
        .push(") VALUES (")
        .bind(w.id.as_str())
        .push(", ")
        .bind(w.kind.as_str())
        .push(", ")
        .bind(w.partner_id.as_str())
        .push(", ")
        .bind(w.contract_id.as_deref())
        .push(", ")
        .bind(w.triggered_by.as_str())
        .push(", ")
        .bind(w.status.as_str())
        .push(", ")
        .bind(w.approved_by.as_deref())
        .push(", ")
        .bind(w.api_client_id.as_deref())
        .push(", ")
        .bind(w.created_at.as_str())
        .push(", ")
        .bind(w.updated_at.as_str())
        .push(
            ") ON CONFLICT (id) DO UPDATE SET status = excluded.status, approved_by = excluded.approved_by, \
             api_client_id = excluded.api_client_id, updated_at = excluded.updated_at",
        );
    tx.execute(&sql).await?;
    Ok(())
}

/// One run in a write transaction (PostgreSQL: locked until it ends).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<WorkflowRow>, StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM workflows WHERE id = ")
        .bind(id);
    if tx.dialect() == crate::Dialect::Postgres {
        sql.push(" FOR UPDATE");
    }
    Ok(tx.fetch_optional(&sql).await?.map(from_row))
}

/// One run.
pub async fn get(db: &Db, id: &str) -> Result<Option<WorkflowRow>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM workflows WHERE id = ")
        .bind(id);
    Ok(db.fetch_optional(&sql).await?.map(from_row))
}

/// Moves a run from state `from` to `to`; false when it was not in `from`
/// (another approver claimed it first).
pub async fn transition(
    tx: &mut Tx,
    id: &str,
    from: &str,
    to: &str,
    at: &str,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE workflows SET status = ")
        .bind(to)
        .push(", updated_at = ")
        .bind(at)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND status = ")
        .bind(from);
    Ok(tx.execute(&sql).await? == 1)
}

/// Claims a run for approval: from `awaiting_approval`, or from an
/// `approving` claim older than `stale_before` (an approval that stopped
/// without giving the run back: a timeout, a restart). False when another
/// approver holds a live claim or the run is closed.
pub async fn claim(
    tx: &mut Tx,
    id: &str,
    at: &str,
    stale_before: &str,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("UPDATE workflows SET status = 'approving', updated_at = ")
        .bind(at)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND (status = 'awaiting_approval' OR (status = 'approving' AND updated_at < ")
        .bind(stale_before)
        .push("))");
    Ok(tx.execute(&sql).await? == 1)
}
