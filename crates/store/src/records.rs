//! Partner records: get, list (row scopes, filters, sort, keyset), insert,
//! update and delete, for every partner-owned type through its [`Table`].
//!
//! **Invariant:** every SQL fragment here is a literal or a schema name;
//! every value is bound.

use partnerdb_policy::{Attributes, ResourceType, RowFilter};

use crate::schema::{Column, Table};
use crate::sql::{Db, Row, Sql, Tx, Value};
use crate::{Dialect, StoreError};

/// A record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its type.
    pub kind: ResourceType,
    /// Its id.
    pub id: String,
    /// Its partner (a partner's is its own id).
    pub partner_id: String,
    /// Its partner's account manager.
    pub owner: Option<String>,
    /// Incremented by every update (the ETag).
    pub version: i64,
    /// Values of the table's columns, in column order.
    pub values: Vec<Value>,
    /// Its partner's region (children only).
    pub partner_region: Option<String>,
    /// Its partner's tier (children only).
    pub partner_tier: Option<String>,
}

impl Record {
    /// The table of the record's type.
    pub fn table(&self) -> Table {
        table(self.kind)
    }

    /// The value of column `name`.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let (index, _) = self.table().column(name)?;
        self.values.get(index)
    }
}

/// The attributes `when` conditions see: the record's general columns and
/// its partner's region and tier.
impl Attributes for Record {
    fn attr(&self, name: &str) -> Option<&str> {
        let table = self.table();
        match table.attribute_column(name)? {
            "p_region" => self.partner_region.as_deref(),
            "p_tier" => self.partner_tier.as_deref(),
            column => self.value(column)?.as_text(),
        }
    }
}

fn table(kind: ResourceType) -> Table {
    // Only partner-owned types reach this module.
    Table::of(kind).unwrap_or(Table {
        kind,
        name: "partners",
        columns: &[],
    })
}

fn select_list(sql: &mut Sql, table: &Table) {
    sql.push("SELECT id, partner_id, owner, version");
    for column in table.columns {
        sql.push(", ").push(column.name);
    }
    if table.is_child() {
        sql.push(", p_region, p_tier");
    } else {
        sql.push(", NULL AS p_region, NULL AS p_tier");
    }
    sql.push(" FROM ").push(table.name);
}

fn from_row(kind: ResourceType, table: &Table, row: Row) -> Record {
    let n = table.columns.len();
    let mut values = row.0;
    let tail: Vec<Value> = values.split_off(4 + n);
    let columns = values.split_off(4);
    let get = |v: &[Value], i: usize| v.get(i).and_then(|v| v.as_text().map(str::to_owned));
    Record {
        kind,
        id: get(&values, 0).unwrap_or_default(),
        partner_id: get(&values, 1).unwrap_or_default(),
        owner: get(&values, 2),
        version: values.get(3).and_then(Value::as_int).unwrap_or(0),
        values: columns,
        partner_region: get(&tail, 0),
        partner_tier: get(&tail, 1),
    }
}

impl Record {
    /// Points a child record at a partner: its id, owner, region and tier.
    pub fn adopt_partner(&mut self, partner: &Record) {
        self.partner_id = partner.id.clone();
        self.owner = partner.owner.clone();
        self.partner_region = partner
            .value("region")
            .and_then(Value::as_text)
            .map(str::to_owned);
        self.partner_tier = partner
            .value("tier")
            .and_then(Value::as_text)
            .map(str::to_owned);
    }
}

/// Reads one record by id (no access decision: the caller decides).
pub async fn get(db: &Db, kind: ResourceType, id: &str) -> Result<Option<Record>, StoreError> {
    let table = table(kind);
    let mut sql = db.sql();
    select_list(&mut sql, &table);
    sql.push(" WHERE id = ").bind(id);
    Ok(db
        .fetch_optional(&sql)
        .await?
        .map(|row| from_row(kind, &table, row)))
}

/// Reads one record by id inside a write transaction.
pub async fn get_in(
    tx: &mut Tx,
    kind: ResourceType,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    let table = table(kind);
    let mut sql = tx.sql();
    select_list(&mut sql, &table);
    sql.push(" WHERE id = ").bind(id);
    Ok(tx
        .fetch_optional(&sql)
        .await?
        .map(|row| from_row(kind, &table, row)))
}

/// A comparison of a list filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => " = ",
            Op::Gt => " > ",
            Op::Gte => " >= ",
            Op::Lt => " < ",
            Op::Lte => " <= ",
        }
    }
}

/// One list filter on a column (or `partner_id` / `owner`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The column's name, from the table (checked by the caller).
    pub column: &'static str,
    /// The comparison.
    pub op: Op,
    /// The value compared with.
    pub value: Value,
}

/// How a list is ordered: one sortable column (or `id`), then `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    /// The column's name, from the table, or `id`.
    pub column: &'static str,
    /// Descending order.
    pub descending: bool,
}

/// Where a page starts: after the row with this sort value and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct After {
    /// The last row's sort value.
    pub value: Value,
    /// The last row's id.
    pub id: String,
}

/// A list request, already authorised: the row filter comes from the
/// policy, the filters and sort were checked against the principal's
/// readable classes.
#[derive(Clone, Debug)]
pub struct ListQuery<'a> {
    /// The record type.
    pub kind: ResourceType,
    /// The rows the principal may reach.
    pub scope: &'a RowFilter,
    /// Filters, all of which must hold.
    pub filters: &'a [Filter],
    /// The order.
    pub sort: Sort,
    /// Start after this row.
    pub after: Option<After>,
    /// At most this many rows.
    pub limit: usize,
}

/// The row filter as equalities on columns: `None` when every row is
/// reachable, otherwise one list of `(column, value)` per way to reach rows
/// (empty: no row is reachable). Conditions on attributes the table does
/// not have are dropped (they never hold); duplicates are merged.
fn scope_equalities(table: &Table, scope: &RowFilter) -> Option<Vec<Vec<(&'static str, String)>>> {
    if scope.is_unrestricted() {
        return None;
    }
    let mut out: Vec<Vec<(&'static str, String)>> = Vec::new();
    'conditions: for condition in &scope.conditions {
        let mut equalities = Vec::new();
        if let Some(partner) = &condition.partner_id {
            equalities.push(("partner_id", partner.clone()));
        }
        if let Some(owner) = &condition.owner {
            equalities.push(("owner", owner.clone()));
        }
        for (attr, value) in &condition.attrs {
            match table.attribute_column(attr) {
                Some(column) => equalities.push((column, value.clone())),
                None => continue 'conditions,
            }
        }
        equalities.sort();
        if !out.contains(&equalities) {
            out.push(equalities);
        }
    }
    Some(out)
}

/// One `SELECT … WHERE … ORDER BY … LIMIT` over the table, restricted by
/// `equalities`, the filters and the keyset position.
fn push_branch(
    sql: &mut Sql,
    table: &Table,
    equalities: &[(&'static str, String)],
    query: &ListQuery<'_>,
) {
    select_list(sql, table);
    sql.push(" WHERE 1 = 1");
    for (column, value) in equalities {
        sql.push(" AND ")
            .push(column)
            .push(" = ")
            .bind(value.as_str());
    }
    for filter in query.filters {
        sql.push(" AND ")
            .push(filter.column)
            .push(filter.op.sql())
            .bind(filter.value.clone());
    }
    let cmp = if query.sort.descending { " < " } else { " > " };
    if let Some(after) = &query.after {
        if query.sort.column == "id" {
            sql.push(" AND id").push(cmp).bind(after.id.as_str());
        } else {
            let column = query.sort.column;
            sql.push(" AND (")
                .push(column)
                .push(cmp)
                .bind(after.value.clone())
                .push(" OR (")
                .push(column)
                .push(" = ")
                .bind(after.value.clone())
                .push(" AND id")
                .push(cmp)
                .bind(after.id.as_str())
                .push("))");
        }
    }
    push_order(sql, query);
}

fn push_order(sql: &mut Sql, query: &ListQuery<'_>) {
    let direction = if query.sort.descending {
        " DESC"
    } else {
        " ASC"
    };
    sql.push(" ORDER BY ");
    if query.sort.column != "id" {
        sql.push(query.sort.column).push(direction).push(", ");
    }
    sql.push("id").push(direction);
    sql.push(" LIMIT ").bind((query.limit + 1) as i64);
}

/// Lists records: the page (at most `limit` rows) and whether more follow.
///
/// A scope with several ways to reach rows (`owner = a OR region = b`) is
/// queried as one ordered, limited branch per way, so that each branch
/// follows its own index and the cost follows the page, not the number of
/// rows the principal could reach. PostgreSQL merges the branches in one
/// `UNION`; on SQLite, whose `UNION` compares whole rows in a temporary
/// b-tree (several times the cost of the branches), the branches are read
/// in one snapshot and merged here.
pub async fn list(db: &Db, query: &ListQuery<'_>) -> Result<(Vec<Record>, bool), StoreError> {
    let table = table(query.kind);
    let branches = match scope_equalities(&table, query.scope) {
        None => vec![Vec::new()],
        Some(branches) if branches.is_empty() => return Ok((Vec::new(), false)),
        Some(branches) => branches,
    };
    let mut records: Vec<Record> = if branches.len() > 1 && db.dialect() == Dialect::Sqlite {
        let statements: Vec<Sql> = branches
            .iter()
            .map(|equalities| {
                let mut sql = db.sql();
                push_branch(&mut sql, &table, equalities, query);
                sql
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut merged: Vec<Record> = db
            .fetch_all_snapshot(&statements)
            .await?
            .into_iter()
            .flatten()
            .map(|row| from_row(query.kind, &table, row))
            .filter(|record| seen.insert(record.id.clone()))
            .collect();
        sort_page(&mut merged, query.sort);
        merged.truncate(query.limit + 1);
        merged
    } else {
        let mut sql = db.sql();
        if let [equalities] = branches.as_slice() {
            push_branch(&mut sql, &table, equalities, query);
        } else {
            sql.push("SELECT * FROM (");
            for (i, equalities) in branches.iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ");
                }
                sql.push("SELECT * FROM (");
                push_branch(&mut sql, &table, equalities, query);
                sql.push(&format!(") AS b{i}"));
            }
            sql.push(") AS u");
            push_order(&mut sql, query);
        }
        db.fetch_all(&sql)
            .await?
            .into_iter()
            .map(|row| from_row(query.kind, &table, row))
            .collect()
    };
    let more = records.len() > query.limit;
    records.truncate(query.limit);
    Ok((records, more))
}

/// Orders merged branches as the database would: by the sort column, then
/// id (NULL first, text by bytes as SQLite's BINARY collation).
fn sort_page(records: &mut [Record], sort: Sort) {
    fn key(r: &Record, sort: Sort) -> Option<&Value> {
        if sort.column == "id" {
            None
        } else {
            r.value(sort.column)
        }
    }
    records.sort_by(|a, b| {
        let order = key(a, sort)
            .unwrap_or(&Value::Null)
            .cmp(key(b, sort).unwrap_or(&Value::Null))
            .then_with(|| a.id.cmp(&b.id));
        if sort.descending {
            order.reverse()
        } else {
            order
        }
    });
}

/// Inserts a record. The caller has filled every column value (NULL where
/// absent) and the partner's owner, region and tier.
pub async fn insert(tx: &mut Tx, record: &Record) -> Result<(), StoreError> {
    let table = record.table();
    let mut sql = tx.sql();
    sql.push("INSERT INTO ")
        .push(table.name)
        .push(" (id, partner_id, owner, version");
    for column in table.columns {
        sql.push(", ").push(column.name);
    }
    if table.is_child() {
        sql.push(", p_region, p_tier");
    }
    sql.push(") VALUES (")
        .bind(record.id.as_str())
        .push(", ")
        .bind(record.partner_id.as_str())
        .push(", ")
        .bind(record.owner.clone())
        .push(", ")
        .bind(record.version);
    for (column, value) in table.columns.iter().zip(&record.values) {
        sql.push(", ").bind(typed(column, value));
    }
    if table.is_child() {
        sql.push(", ")
            .bind(record.partner_region.clone())
            .push(", ")
            .bind(record.partner_tier.clone());
    }
    sql.push(")");
    tx.execute(&sql).await?;
    Ok(())
}

/// Writes a record's new values if its version is still `expected_version`
/// (and bumps it). Returns false when the record changed meanwhile.
pub async fn update(
    tx: &mut Tx,
    record: &Record,
    expected_version: i64,
) -> Result<bool, StoreError> {
    let table = record.table();
    let mut sql = tx.sql();
    sql.push("UPDATE ")
        .push(table.name)
        .push(" SET partner_id = ")
        .bind(record.partner_id.as_str())
        .push(", owner = ")
        .bind(record.owner.clone())
        .push(", version = ")
        .bind(record.version);
    for (column, value) in table.columns.iter().zip(&record.values) {
        sql.push(", ")
            .push(column.name)
            .push(" = ")
            .bind(typed(column, value));
    }
    if table.is_child() {
        sql.push(", p_region = ")
            .bind(record.partner_region.clone())
            .push(", p_tier = ")
            .bind(record.partner_tier.clone());
    }
    sql.push(" WHERE id = ")
        .bind(record.id.as_str())
        .push(" AND version = ")
        .bind(expected_version);
    Ok(tx.execute(&sql).await? == 1)
}

/// Copies a partner's owner, region and tier onto its contacts, contracts
/// and transactions (in the partner's update transaction).
pub async fn cascade_partner(tx: &mut Tx, partner: &Record) -> Result<(), StoreError> {
    let region = partner
        .value("region")
        .and_then(Value::as_text)
        .map(str::to_owned);
    let tier = partner
        .value("tier")
        .and_then(Value::as_text)
        .map(str::to_owned);
    for child in [
        ResourceType::Contact,
        ResourceType::Contract,
        ResourceType::Transaction,
    ] {
        let mut sql = tx.sql();
        sql.push("UPDATE ")
            .push(table(child).name)
            .push(" SET owner = ")
            .bind(partner.owner.clone())
            .push(", p_region = ")
            .bind(region.clone())
            .push(", p_tier = ")
            .bind(tier.clone())
            // A child whose owner or partner's region or tier changed is
            // a new version: an If-Match made before the move is stale.
            .push(", version = version + 1")
            .push(" WHERE partner_id = ")
            .bind(partner.id.as_str());
        tx.execute(&sql).await?;
    }
    Ok(())
}

/// Deletes a record at `expected_version`. Returns false if it does not
/// exist at that version (deleted or changed meanwhile).
pub async fn delete(
    tx: &mut Tx,
    kind: ResourceType,
    id: &str,
    expected_version: i64,
) -> Result<bool, StoreError> {
    let mut sql = tx.sql();
    sql.push("DELETE FROM ")
        .push(table(kind).name)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND version = ")
        .bind(expected_version);
    Ok(tx.execute(&sql).await? == 1)
}

/// A value to bind to `column`: a NULL of an integer column is bound as a
/// BIGINT NULL.
fn typed(column: &Column, value: &Value) -> Value {
    if column.kind.is_integer() && value.is_null() {
        Value::NullInt
    } else {
        value.clone()
    }
}

/// The value of a column in a row about to be written: given, or the
/// column's default, or NULL.
pub fn column_default(column: &Column) -> Value {
    column.default.map_or(Value::Null, Value::from)
}
