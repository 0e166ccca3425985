//! Aggregates for partner-performance metrics: sums and counts per
//! region, tier, month and currency, and which partners stand behind each
//! (region, tier, month) cell, so that the service can suppress small
//! groups.

use crate::StoreError;
use crate::sql::Db;

/// Sums of one (region, tier, month, currency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    /// The partner's region.
    pub region: String,
    /// The partner's tier.
    pub tier: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Currency (empty when unknown).
    pub currency: String,
    /// How many records.
    pub count: i64,
    /// The amount summed (minor units).
    pub amount: i64,
}

/// Transactions per cell: count and revenue (settled invoices).
pub async fn transaction_sums(db: &Db, from: &str, to: &str) -> Result<Vec<Sums>, StoreError> {
    let mut sql = db.sql();
    sql.push(
        "SELECT p_region, p_tier, SUBSTR(occurred_at, 1, 7), currency, COUNT(*), \
         CAST(SUM(CASE WHEN kind = 'invoice' AND status = 'settled' THEN amount ELSE 0 END) AS BIGINT) \
         FROM transactions WHERE occurred_at >= ",
    )
    .bind(from)
    .push(" AND occurred_at < ")
    .bind(to)
    .push(" GROUP BY 1, 2, 3, 4");
    sums(db, sql).await
}

/// Contracts per cell (by start month): count and value.
pub async fn contract_sums(db: &Db, from: &str, to: &str) -> Result<Vec<Sums>, StoreError> {
    let mut sql = db.sql();
    sql.push(
        "SELECT p_region, p_tier, SUBSTR(start_date, 1, 7), COALESCE(currency, ''), COUNT(*), \
         CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM contracts WHERE start_date >= ",
    )
    .bind(&from[..from.len().min(10)])
    .push(" AND start_date < ")
    .bind(&to[..to.len().min(10)])
    .push(" GROUP BY 1, 2, 3, 4");
    sums(db, sql).await
}

async fn sums(db: &Db, sql: crate::Sql) -> Result<Vec<Sums>, StoreError> {
    Ok(db
        .fetch_all_offloaded(sql)
        .await?
        .into_iter()
        .map(|row| Sums {
            region: row.text(0),
            tier: row.text(1),
            month: row.text(2),
            currency: row.text(3),
            count: row.int(4),
            amount: row.int(5),
        })
        .collect())
}

/// The partners behind each (region, tier, month): `(region, tier, month,
/// partner_id)`, each once.
pub async fn cell_partners(
    db: &Db,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT DISTINCT p_region, p_tier, SUBSTR(occurred_at, 1, 7), partner_id FROM transactions WHERE occurred_at >= ")
        .bind(from)
        .push(" AND occurred_at < ")
        .bind(to)
        .push(" UNION SELECT DISTINCT p_region, p_tier, SUBSTR(start_date, 1, 7), partner_id FROM contracts WHERE start_date >= ")
        .bind(&from[..from.len().min(10)])
        .push(" AND start_date < ")
        .bind(&to[..to.len().min(10)]);
    Ok(db
        .fetch_all_offloaded(sql)
        .await?
        .into_iter()
        .map(|row| (row.text(0), row.text(1), row.text(2), row.text(3)))
        .collect())
}
