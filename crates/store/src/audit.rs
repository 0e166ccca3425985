//! The audit trail's storage: appending events to the hash chain inside a
//! caller's transaction, reading them back in order or filtered,
//! checkpoints, and usage counters.
//!
//! Appends are serialised: on SQLite by its single writer, on PostgreSQL by
//! a transaction-level advisory lock taken before the chain's head is read,
//! so that servers sharing one database keep one chain.

use partnerdb_audit::{Checkpoint, Event, GENESIS, StoredEvent};

use crate::sql::{Db, Row, Sql, Tx, Value};
use crate::{Dialect, StoreError};

/// An event to append (its seq, links and hash are set on append).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// When, as stored.
    pub at: String,
    /// `decision`, `change`, `principal` or `policy`.
    pub kind: String,
    /// Who.
    pub principal_id: Option<String>,
    /// What.
    pub action: String,
    /// On which resource type.
    pub resource_type: String,
    /// Which record or object.
    pub resource_id: Option<String>,
    /// Which partner.
    pub partner_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The deciding policy version.
    pub policy_version: String,
    /// JSON detail.
    pub detail: String,
    /// Grants that matched (`role#index`), for usage counters.
    pub matched: Vec<String>,
}

const AUDIT_LOCK: i64 = 727_274_002;
/// Events per block of the lookup tables: keys lead with `seq >>
/// BLOCK_BITS`.
const BLOCK_BITS: u32 = 16;
/// Events per span of the time index: `audit_spans` keeps the earliest
/// and latest time of every `seq >> SPAN_BITS`.
const SPAN_BITS: u32 = 10;
/// The indexer's lock ([`index_pending`]).
const INDEX_LOCK: i64 = 727_274_003;
/// How far the lookup tables go (a missing row reads as 0).
const INDEXED_THROUGH: &str = "SELECT through FROM audit_indexed WHERE id = 1";

const COLUMNS: &str = "seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash";
/// [`COLUMNS`] of the events aliased `e`.
const E_COLUMNS: &str = "e.seq, e.at, e.kind, e.principal_id, e.action, e.resource_type, e.resource_id, e.partner_id, e.decision, e.policy_version, e.detail, e.prev_hash, e.hash";

/// On PostgreSQL, takes the advisory lock `key` until the transaction ends
/// (SQLite's one writer already serialises writers).
async fn lock_on_postgres(tx: &mut Tx, key: i64) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Postgres {
        let mut sql = tx.sql();
        sql.push("SELECT pg_advisory_xact_lock(")
            .bind(key)
            .push(")");
        tx.execute(&sql).await?;
    }
    Ok(())
}

/// The chain's last event: `(seq, hash)`, or `(0, GENESIS)` when empty.
pub async fn head_in(tx: &mut Tx) -> Result<(i64, String), StoreError> {
    let mut sql = tx.sql();
    sql.push("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
    Ok(tx
        .fetch_optional(&sql)
        .await?
        .map_or_else(|| (0, GENESIS.to_owned()), |r| (r.int(0), r.text(1))))
}

/// The chain's last event, outside a transaction.
pub async fn head(db: &Db) -> Result<(i64, String), StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
    Ok(db
        .fetch_optional(&sql)
        .await?
        .map_or_else(|| (0, GENESIS.to_owned()), |r| (r.int(0), r.text(1))))
}

/// Appends events to the chain in the caller's transaction (they commit
/// with it, or not at all) and counts them in the usage counters. Returns
/// the last `(seq, hash)`.
pub async fn append(tx: &mut Tx, events: &[NewEvent]) -> Result<(i64, String), StoreError> {
    lock_on_postgres(tx, AUDIT_LOCK).await?;
    let (mut seq, mut prev) = head_in(tx).await?;
    for chunk in events.chunks(rows_per_insert(tx)) {
        let mut sql = tx.sql();
        sql.push("INSERT INTO audit_events (")
            .push(COLUMNS)
            .push(") VALUES ");
        for (i, new) in chunk.iter().enumerate() {
            seq += 1;
            let event = Event {
                seq,
                at: new.at.clone(),
                kind: new.kind.clone(),
                principal_id: new.principal_id.clone(),
                action: new.action.clone(),
                resource_type: new.resource_type.clone(),
                resource_id: new.resource_id.clone(),
                partner_id: new.partner_id.clone(),
                decision: new.decision.clone(),
                policy_version: new.policy_version.clone(),
                detail: new.detail.clone(),
            };
            let hash = event.hash(&prev);
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(seq)
                .push(", ")
                .bind(event.at)
                .push(", ")
                .bind(event.kind)
                .push(", ")
                .bind(event.principal_id)
                .push(", ")
                .bind(event.action)
                .push(", ")
                .bind(event.resource_type)
                .push(", ")
                .bind(event.resource_id)
                .push(", ")
                .bind(event.partner_id)
                .push(", ")
                .bind(event.decision)
                .push(", ")
                .bind(event.policy_version)
                .push(", ")
                .bind(event.detail)
                .push(", ")
                .bind(prev.as_str())
                .push(", ")
                .bind(hash.as_str())
                .push(")");
            prev = hash;
        }
        tx.execute(&sql).await?;
    }
    count_usage(tx, events).await?;
    Ok((seq, prev))
}

/// Rows per `INSERT`: PostgreSQL pays a round trip per statement, so many;
/// SQLite runs statements in place, and one prepared single-row statement
/// run again is cheaper than preparing multi-row ones of every length.
fn rows_per_insert(tx: &Tx) -> usize {
    match tx.dialect() {
        Dialect::Sqlite => 1,
        Dialect::Postgres => 200,
    }
}

/// Adds events to the usage counters: per principal (allows and denies),
/// and per role and grant that matched an allow.
async fn count_usage(tx: &mut Tx, events: &[NewEvent]) -> Result<(), StoreError> {
    use std::collections::BTreeMap;
    let mut deltas: BTreeMap<(&str, String), (i64, i64, &str)> = BTreeMap::new();
    for event in events {
        let allow = event.decision == "allow";
        let mut bump = |kind: &'static str, name: String| {
            let entry = deltas.entry((kind, name)).or_insert((0, 0, ""));
            if allow {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
            if *entry.2 < *event.at.as_str() {
                entry.2 = &event.at;
            }
        };
        if let Some(principal) = &event.principal_id {
            bump("principal", principal.clone());
        }
        if allow {
            let mut roles: Vec<&str> = event
                .matched
                .iter()
                .map(|g| g.split('#').next().unwrap_or(g))
                .collect();
            roles.dedup();
            for role in roles {
                bump("role", role.to_owned());
            }
            for grant in &event.matched {
                bump("grant", grant.clone());
            }
        }
    }
    // One multi-row upsert per chunk: the keys are distinct (a map), so no
    // statement touches a row twice.
    let deltas: Vec<_> = deltas.into_iter().collect();
    for chunk in deltas.chunks(rows_per_insert(tx)) {
        let mut sql = tx.sql();
        sql.push("INSERT INTO usage_counters (kind, name, allows, denies, last_at) VALUES ");
        for (i, ((kind, name), (allows, denies, last))) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .bind(*kind)
                .push(", ")
                .bind(name.as_str())
                .push(", ")
                .bind(*allows)
                .push(", ")
                .bind(*denies)
                .push(", ")
                .bind(*last)
                .push(")");
        }
        sql.push(
            " ON CONFLICT (kind, name) DO UPDATE SET allows = usage_counters.allows + excluded.allows, \
             denies = usage_counters.denies + excluded.denies, \
             last_at = CASE WHEN excluded.last_at > usage_counters.last_at OR usage_counters.last_at IS NULL \
             THEN excluded.last_at ELSE usage_counters.last_at END",
        );
        tx.execute(&sql).await?;
    }
    Ok(())
}

fn stored_from_row(mut row: Row) -> StoredEvent {
    StoredEvent {
        event: Event {
            seq: row.int(0),
            at: row.take_text(1),
            kind: row.take_text(2),
            principal_id: row.take_opt_text(3),
            action: row.take_text(4),
            resource_type: row.take_text(5),
            resource_id: row.take_opt_text(6),
            partner_id: row.take_opt_text(7),
            decision: row.take_text(8),
            policy_version: row.take_text(9),
            detail: row.take_text(10),
        },
        prev_hash: row.take_text(11),
        hash: row.take_text(12),
    }
}

/// Events with seq greater than `after`, in seq order, at most `limit`
/// (for verification and export).
pub async fn events_after(
    db: &Db,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM audit_events WHERE seq > ")
        .bind(after)
        .push(" ORDER BY seq LIMIT ")
        .bind(limit as i64);
    fetch_events(db, sql).await
}

/// Reads whole events (a long read: off the caller's worker).
async fn fetch_events(db: &Db, sql: Sql) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(db
        .fetch_all_offloaded(sql)
        .await?
        .into_iter()
        .map(stored_from_row)
        .collect())
}

/// Events with `after < seq <= through`, in seq order (one slice of a
/// verification; slices are read in parallel).
pub async fn events_between(
    db: &Db,
    after: i64,
    through: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    // One text column per row instead of twelve: the drivers' cost is per
    // value. Fields are joined with U+001F, which JSON text never holds
    // unescaped; optional fields carry `N` (null) or `S` (some) first. A
    // stored value holding U+001F splits into too many parts: such a row
    // (tampered with) is read again column by column.
    let mut sql = db.sql();
    let packed = match db.dialect() {
        Dialect::Sqlite => PACKED.to_owned(),
        Dialect::Postgres => PACKED.replace("char(31)", "chr(31)"),
    };
    sql.push("SELECT seq, ")
        .push(&packed)
        .push(" FROM audit_events WHERE seq > ")
        .bind(after)
        .push(" AND seq <= ")
        .bind(through)
        .push(" ORDER BY seq");
    let rows = db.fetch_all_offloaded(sql).await?;
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let seq = row.int(0);
        match unpack(seq, &row.take_text(1)) {
            Some(event) => out.push(event),
            None => {
                let mut sql = db.sql();
                sql.push("SELECT ")
                    .push(COLUMNS)
                    .push(" FROM audit_events WHERE seq = ")
                    .bind(seq);
                if let Some(row) = db.fetch_optional(&sql).await? {
                    out.push(stored_from_row(row));
                }
            }
        }
    }
    Ok(out)
}

/// The packed form of a row (see [`events_between`]).
const PACKED: &str = "at || char(31) || kind || char(31) || \
    CASE WHEN principal_id IS NULL THEN 'N' ELSE 'S' || principal_id END || char(31) || \
    action || char(31) || resource_type || char(31) || \
    CASE WHEN resource_id IS NULL THEN 'N' ELSE 'S' || resource_id END || char(31) || \
    CASE WHEN partner_id IS NULL THEN 'N' ELSE 'S' || partner_id END || char(31) || \
    decision || char(31) || policy_version || char(31) || detail || char(31) || \
    prev_hash || char(31) || hash";

fn unpack(seq: i64, packed: &str) -> Option<StoredEvent> {
    let mut parts = packed.split('\u{1f}');
    let mut next = || parts.next().map(str::to_owned);
    let optional = |part: String| -> Option<Option<String>> {
        match part.split_at_checked(1)? {
            ("N", "") => Some(None),
            ("S", rest) => Some(Some(rest.to_owned())),
            _ => None,
        }
    };
    let event = Event {
        seq,
        at: next()?,
        kind: next()?,
        principal_id: optional(next()?)?,
        action: next()?,
        resource_type: next()?,
        resource_id: optional(next()?)?,
        partner_id: optional(next()?)?,
        decision: next()?,
        policy_version: next()?,
        detail: next()?,
    };
    let prev_hash = next()?;
    let hash = next()?;
    if next().is_some() {
        return None;
    }
    Some(StoredEvent {
        event,
        prev_hash,
        hash,
    })
}

/// Filters of an audit query; all present must hold.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Principal id.
    pub principal_id: Option<String>,
    /// Partner id.
    pub partner_id: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// At or after.
    pub since: Option<String>,
    /// Before.
    pub until: Option<String>,
}

/// Events matching `filter`, newest first, with seq below `before` (a
/// cursor), at most `limit`.
///
/// A filter on a principal, a partner or a resource (type and id) reads
/// the lookup tables for events up to [`indexed_through`] and scans the
/// events after it (the few the indexer has not reached); the two parts
/// meet at that seq, so none is missed or given twice while the indexer
/// moves on. A time range narrows the indexed part to the seqs of the
/// time spans that can hold matching events. Other filters scan the
/// events newest first.
pub async fn list(
    db: &Db,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let lookup = Lookup::for_filter(filter);
    let timed = filter.since.is_some() || filter.until.is_some();
    if lookup.is_none() && !timed {
        return scan(db, filter, None, before, limit).await;
    }
    let through = indexed_through(db).await?;
    let mut out = if before.is_some_and(|b| b <= through + 1) {
        Vec::new()
    } else {
        scan(db, filter, Some(through), before, limit).await?
    };
    // The indexed part: seqs in `lowest..below`, narrowed by the time
    // spans that can hold matching events.
    let mut below = before.map_or(through + 1, |b| b.min(through + 1));
    let mut lowest = 1;
    if timed {
        match time_bounds(
            db,
            filter.since.as_deref(),
            filter.until.as_deref(),
            through,
        )
        .await?
        {
            Some((first, last)) => {
                lowest = first;
                below = below.min(last + 1);
            }
            None => below = lowest,
        }
    }
    if out.len() < limit && below > lowest {
        let rest = limit - out.len();
        out.extend(match &lookup {
            Some(lookup) => look_up(db, lookup, filter, (lowest, below), rest).await?,
            None => scan(db, filter, Some(lowest - 1), Some(below), rest).await?,
        });
    }
    Ok(out)
}

/// The seqs, up to `through`, that can hold events at or after `since`
/// and before `until`: from the first span whose latest time is at or
/// after `since` to the last span whose earliest time is before `until`
/// (None: no span can). Exact whatever the order of times within and
/// across spans: a span is left out only when none of its events can
/// match.
async fn time_bounds(
    db: &Db,
    since: Option<&str>,
    until: Option<&str>,
    through: i64,
) -> Result<Option<(i64, i64)>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT MIN(span), MAX(span) FROM audit_spans WHERE 1 = 1");
    if let Some(since) = since {
        sql.push(" AND max_at >= ").bind(since);
    }
    if let Some(until) = until {
        sql.push(" AND min_at < ").bind(until);
    }
    let row = db.fetch_optional(&sql).await?;
    let Some((Some(first), Some(last))) = row.map(|r| (r.get(0).as_int(), r.get(1).as_int()))
    else {
        return Ok(None);
    };
    let last_seq = (((last + 1) << SPAN_BITS) - 1).min(through);
    Ok(Some(((first << SPAN_BITS).max(1), last_seq)))
}

/// The lookup table a filter reads, with its key.
enum Lookup<'a> {
    Resource(&'a str, &'a str),
    Principal(&'a str),
    Partner(&'a str),
}

impl<'a> Lookup<'a> {
    /// The narrowest lookup the filter allows: a resource (one record's
    /// events) before a principal before a partner.
    fn for_filter(filter: &'a AuditFilter) -> Option<Lookup<'a>> {
        if let (Some(kind), Some(id)) = (&filter.resource_type, &filter.resource_id) {
            return Some(Lookup::Resource(kind, id));
        }
        if let Some(principal) = &filter.principal_id {
            return Some(Lookup::Principal(principal));
        }
        filter.partner_id.as_deref().map(Lookup::Partner)
    }
}

/// The filter's conditions on the events' columns, each `AND …`, with
/// `prefix` before each column name.
fn push_conditions(sql: &mut Sql, filter: &AuditFilter, prefix: &str) {
    let equal = [
        ("principal_id", &filter.principal_id),
        ("partner_id", &filter.partner_id),
        ("resource_type", &filter.resource_type),
        ("resource_id", &filter.resource_id),
        ("action", &filter.action),
        ("decision", &filter.decision),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            sql.push(" AND ")
                .push(prefix)
                .push(column)
                .push(" = ")
                .bind(value.as_str());
        }
    }
    if let Some(since) = &filter.since {
        sql.push(" AND ")
            .push(prefix)
            .push("at >= ")
            .bind(since.as_str());
    }
    if let Some(until) = &filter.until {
        sql.push(" AND ")
            .push(prefix)
            .push("at < ")
            .bind(until.as_str());
    }
}

/// Matching events newest first, by the event table alone: those after
/// `after` (all when none) and below `before`.
async fn scan(
    db: &Db,
    filter: &AuditFilter,
    after: Option<i64>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM audit_events WHERE 1 = 1");
    push_conditions(&mut sql, filter, "");
    if let Some(after) = after {
        sql.push(" AND seq > ").bind(after);
    }
    if let Some(before) = before {
        sql.push(" AND seq < ").bind(before);
    }
    sql.push(" ORDER BY seq DESC LIMIT ").bind(limit as i64);
    fetch_events(db, sql).await
}

/// Matching events newest first through a lookup table, with `lowest <=
/// seq < before` (`before` at most the indexed seq + 1): block by block,
/// from `before`'s down to `lowest`'s, until `limit` are found (a key
/// with fewer events than a page costs one query per block of 65,536
/// events: 16 on a million).
async fn look_up(
    db: &Db,
    lookup: &Lookup<'_>,
    filter: &AuditFilter,
    (lowest, before): (i64, i64),
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    let mut block = (before - 1).max(0) >> BLOCK_BITS;
    let first_block = lowest.max(0) >> BLOCK_BITS;
    while block >= first_block && out.len() < limit {
        let mut sql = db.sql();
        sql.push("SELECT ").push(E_COLUMNS);
        match *lookup {
            Lookup::Resource(kind, id) => sql
                .push(" FROM audit_by_resource k JOIN audit_events e ON e.seq = k.seq WHERE k.resource_type = ")
                .bind(kind)
                .push(" AND k.resource_id = ")
                .bind(id),
            Lookup::Principal(principal) => sql
                .push(" FROM audit_by_principal k JOIN audit_events e ON e.seq = k.seq WHERE k.principal_id = ")
                .bind(principal),
            Lookup::Partner(partner) => sql
                .push(" FROM audit_by_partner k JOIN audit_events e ON e.seq = k.seq WHERE k.partner_id = ")
                .bind(partner),
        };
        sql.push(" AND k.block = ")
            .bind(block)
            .push(" AND k.seq < ")
            .bind(before);
        if lowest > 1 {
            sql.push(" AND k.seq >= ").bind(lowest);
        }
        push_conditions(&mut sql, filter, "e.");
        sql.push(" ORDER BY k.seq DESC LIMIT ")
            .bind((limit - out.len()) as i64);
        out.extend(fetch_events(db, sql).await?);
        block -= 1;
    }
    Ok(out)
}

/// How far the lookup tables go: every event with a seq up to this one is
/// filed there.
pub async fn indexed_through(db: &Db) -> Result<i64, StoreError> {
    let mut sql = db.sql();
    sql.push(INDEXED_THROUGH);
    Ok(db.fetch_optional(&sql).await?.map_or(0, |r| r.int(0)))
}

/// Files the lookup keys of the next `max` events not yet filed (at most),
/// in one transaction, and returns how many events it filed (0: the tables
/// have caught up). Keys go in sorted and led by their block, so that a
/// chunk writes the few pages of the newest block's region once, rather
/// than a scattered page per key per commit as indexes on the event table
/// did.
///
/// On PostgreSQL, indexers of servers sharing the database take turns
/// (an advisory lock of their own, not the appends'). Appends commit in
/// seq order (they hold the appends' lock from reading the head to their
/// commit), so the events an indexer sees have no gaps still to fill.
pub async fn index_pending(db: &Db, max: usize) -> Result<usize, StoreError> {
    let mut tx = db.begin().await?;
    lock_on_postgres(&mut tx, INDEX_LOCK).await?;
    let mut sql = tx.sql();
    sql.push(INDEXED_THROUGH);
    let through = tx.fetch_optional(&sql).await?.map_or(0, |r| r.int(0));
    // The chunk: the next `max` events (seqs may have gaps).
    let mut sql = tx.sql();
    sql.push("SELECT COUNT(*), MAX(seq) FROM (SELECT seq FROM audit_events WHERE seq > ")
        .bind(through)
        .push(" ORDER BY seq LIMIT ")
        .bind(max as i64)
        .push(") chunk");
    let Some(row) = tx.fetch_optional(&sql).await? else {
        return Ok(0);
    };
    let (count, Some(last)) = (row.int(0), row.get(1).as_int()) else {
        return Ok(0);
    };
    // Each table's keys, made and sorted by the database: nothing travels
    // to the client and back. PostgreSQL reads the chunk once for the
    // three (data-modifying `WITH`); SQLite, without those, once a table.
    let tables = [
        ("audit_by_principal", "principal_id"),
        ("audit_by_partner", "partner_id"),
        ("audit_by_resource", "resource_type, resource_id"),
    ];
    let insert = |sql: &mut Sql, table: &str, key: &str, from: &str| {
        let not_null = key.rsplit(", ").next().unwrap_or(key);
        sql.push("INSERT INTO ")
            .push(table)
            .push(" (block, ")
            .push(key)
            .push(", seq) SELECT seq >> ")
            .push(&BLOCK_BITS.to_string())
            .push(", ")
            .push(key)
            .push(", seq FROM ")
            .push(from)
            .push(" WHERE seq > ")
            .bind(through)
            .push(" AND seq <= ")
            .bind(last)
            .push(" AND ")
            .push(not_null)
            .push(" IS NOT NULL ORDER BY 1, ")
            .push(key)
            .push(", seq ON CONFLICT DO NOTHING");
    };
    // The time spans: each span's earliest and latest time, merged with
    // what an earlier chunk filed of the same span.
    let spans = |sql: &mut Sql, from: &str| {
        let (least, greatest) = match sql.dialect() {
            Dialect::Sqlite => ("min", "max"),
            Dialect::Postgres => ("LEAST", "GREATEST"),
        };
        sql.push("INSERT INTO audit_spans (span, min_at, max_at) SELECT seq >> ")
            .push(&SPAN_BITS.to_string())
            .push(", MIN(at), MAX(at) FROM ")
            .push(from)
            .push(" WHERE seq > ")
            .bind(through)
            .push(" AND seq <= ")
            .bind(last)
            .push(" GROUP BY 1 ON CONFLICT (span) DO UPDATE SET min_at = ")
            .push(least)
            .push("(audit_spans.min_at, excluded.min_at), max_at = ")
            .push(greatest)
            .push("(audit_spans.max_at, excluded.max_at)");
    };
    match tx.dialect() {
        Dialect::Postgres => {
            let mut sql = tx.sql();
            sql.push("WITH chunk AS MATERIALIZED (SELECT seq, at, principal_id, partner_id, resource_type, resource_id FROM audit_events WHERE seq > ")
                .bind(through)
                .push(" AND seq <= ")
                .bind(last)
                .push(")");
            for (i, (table, key)) in tables.iter().enumerate() {
                sql.push(&format!(", k{i} AS ("));
                insert(&mut sql, table, key, "chunk");
                sql.push(")");
            }
            sql.push(" ");
            spans(&mut sql, "chunk");
            tx.execute(&sql).await?;
        }
        Dialect::Sqlite => {
            for (table, key) in tables {
                let mut sql = tx.sql();
                insert(&mut sql, table, key, "audit_events");
                tx.execute(&sql).await?;
            }
            let mut sql = tx.sql();
            spans(&mut sql, "audit_events");
            tx.execute(&sql).await?;
        }
    }
    // An upsert: were the row ever lost, an update would leave the
    // indexer filing the same first chunk forever.
    let mut sql = tx.sql();
    sql.push("INSERT INTO audit_indexed (id, through) VALUES (1, ")
        .bind(last)
        .push(") ON CONFLICT (id) DO UPDATE SET through = excluded.through");
    tx.execute(&sql).await?;
    tx.commit().await?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Stores a checkpoint.
pub async fn insert_checkpoint(tx: &mut Tx, checkpoint: &Checkpoint) -> Result<(), StoreError> {
    let mut sql = tx.sql();
    sql.push("INSERT INTO audit_checkpoints (seq, hash, at, signature, public_key) VALUES (")
        .bind(checkpoint.seq)
        .push(", ")
        .bind(checkpoint.hash.as_str())
        .push(", ")
        .bind(checkpoint.at.as_str())
        .push(", ")
        .bind(checkpoint.signature.as_str())
        .push(", ")
        .bind(checkpoint.public_key.as_str())
        .push(") ON CONFLICT (seq) DO NOTHING");
    tx.execute(&sql).await?;
    Ok(())
}

/// Every checkpoint, by seq.
pub async fn checkpoints(db: &Db) -> Result<Vec<Checkpoint>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT seq, hash, at, signature, public_key FROM audit_checkpoints ORDER BY seq");
    Ok(db
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| Checkpoint {
            seq: r.int(0),
            hash: r.text(1),
            at: r.text(2),
            signature: r.text(3),
            public_key: r.text(4),
        })
        .collect())
}

/// The last checkpoint's seq (0 when none).
pub async fn last_checkpoint(db: &Db) -> Result<i64, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.map_or(0, |r| r.int(0)))
}

/// The first seq recorded at or after `at`, if any: the events are read
/// in seq order from the first time span that can hold one (the events
/// after the indexed seq when none can).
pub async fn first_seq_since(db: &Db, at: &str) -> Result<Option<i64>, StoreError> {
    let through = indexed_through(db).await?;
    let from = match time_bounds(db, Some(at), None, through).await? {
        Some((first, _)) => first,
        None => through + 1,
    };
    let mut sql = db.sql();
    sql.push("SELECT seq FROM audit_events WHERE seq >= ")
        .bind(from)
        .push(" AND at >= ")
        .bind(at)
        .push(" ORDER BY seq LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.map(|r| r.int(0)))
}

/// Events with `from <= seq < before`, newest first, at most `limit`:
/// `(seq, decision, detail)` only (for a plan's simulation).
pub async fn details_since(
    db: &Db,
    from: i64,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT seq, decision, detail FROM audit_events WHERE seq >= ")
        .bind(from);
    if let Some(before) = before {
        sql.push(" AND seq < ").bind(before);
    }
    sql.push(" ORDER BY seq DESC LIMIT ").bind(limit as i64);
    Ok(db
        .fetch_all_offloaded(sql)
        .await?
        .into_iter()
        .map(|mut row| (row.int(0), row.take_text(1), row.take_text(2)))
        .collect())
}

/// The first event's time (the trail's beginning), if any.
pub async fn first_event_at(db: &Db) -> Result<Option<String>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT at FROM audit_events ORDER BY seq LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.map(|r| r.text(0)))
}

/// One usage counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// `principal`, `role` or `grant`.
    pub kind: String,
    /// Its id or name.
    pub name: String,
    /// Allowed decisions.
    pub allows: i64,
    /// Denied decisions.
    pub denies: i64,
    /// The last decision's time.
    pub last_at: Option<String>,
}

/// Usage counters, optionally of one kind or one name.
pub async fn usage(
    db: &Db,
    kind: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Usage>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT kind, name, allows, denies, last_at FROM usage_counters WHERE 1 = 1");
    if let Some(kind) = kind {
        sql.push(" AND kind = ").bind(kind);
    }
    if let Some(name) = name {
        sql.push(" AND name = ").bind(name);
    }
    sql.push(" ORDER BY kind, name");
    Ok(db
        .fetch_all(&sql)
        .await?
        .iter()
        .map(|r| Usage {
            kind: r.text(0),
            name: r.text(1),
            allows: r.int(2),
            denies: r.int(3),
            last_at: r.opt_text(4),
        })
        .collect())
}

/// Bulk-loads already chained events (for benchmarks and tests that need
/// a long chain fast), in the caller's transaction.
pub async fn insert_stored(tx: &mut Tx, events: &[StoredEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(200) {
        let mut sql = tx.sql();
        sql.push("INSERT INTO audit_events (")
            .push(COLUMNS)
            .push(") VALUES ");
        for (i, s) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            let e = &s.event;
            sql.push("(");
            let values: [Value; 13] = [
                e.seq.into(),
                e.at.clone().into(),
                e.kind.clone().into(),
                e.principal_id.clone().into(),
                e.action.clone().into(),
                e.resource_type.clone().into(),
                e.resource_id.clone().into(),
                e.partner_id.clone().into(),
                e.decision.clone().into(),
                e.policy_version.clone().into(),
                e.detail.clone().into(),
                s.prev_hash.clone().into(),
                s.hash.clone().into(),
            ];
            for (j, value) in values.into_iter().enumerate() {
                if j > 0 {
                    sql.push(", ");
                }
                sql.bind(value);
            }
            sql.push(")");
        }
        tx.execute(&sql).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DbOptions;

    /// A trail stored and indexed before the time spans existed (migrated
    /// to 0008) keeps answering time filters exactly once migrated on: the
    /// spans of its events are made by the migration, not left to an
    /// indexer that has already passed them.
    #[tokio::test]
    async fn a_trail_indexed_before_the_spans_answers_time_filters() {
        let scratch = crate::scratch::Scratch::new("spans");
        let path = scratch.file();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .expect("pool");
        crate::sql::migrator_for(Dialect::Sqlite)
            .run_to(8, &pool)
            .await
            .expect("migrations up to 0008");
        // 40 events 300 seqs apart (three or four to a span), times out of
        // seq order, all of them indexed.
        let at = |i: i64| format!("2026-12-01T10:{:02}:00Z", (i * 17) % 40);
        let seq = |i: i64| 1 + 300 * i;
        for i in 0..40 {
            sqlx::query(
                "INSERT INTO audit_events (seq, at, kind, action, resource_type, decision, policy_version, detail, prev_hash, hash) \
                 VALUES (?, ?, 'decision', 'read', 'partner', 'allow', 'v', '{}', '', '')",
            )
            .bind(seq(i))
            .bind(at(i))
            .execute(&pool)
            .await
            .expect("event");
        }
        sqlx::query("UPDATE audit_indexed SET through = ?")
            .bind(seq(39))
            .execute(&pool)
            .await
            .expect("watermark");
        pool.close().await;

        let url = format!("sqlite://{}", path.display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .expect("open");
        db.migrate().await.expect("migrations from 0009");
        assert_eq!(indexed_through(&db).await.expect("through"), seq(39));
        for (since, until) in [
            (Some(at(3)), None),
            (None, Some(at(5))),
            (Some(at(2)), Some(at(9))),
            (Some("2026-12-01T11:00:00Z".to_owned()), None),
        ] {
            let expected: Vec<i64> = (0..40)
                .rev()
                .filter(|&i| since.as_ref().is_none_or(|s| at(i) >= *s))
                .filter(|&i| until.as_ref().is_none_or(|u| at(i) < *u))
                .map(seq)
                .collect();
            let filter = AuditFilter {
                since: since.clone(),
                until: until.clone(),
                ..AuditFilter::default()
            };
            let got: Vec<i64> = list(&db, &filter, None, 100)
                .await
                .expect("list")
                .iter()
                .map(|s| s.event.seq)
                .collect();
            assert_eq!(got, expected, "since {since:?} until {until:?}");
        }
        let first = (0..40).filter(|&i| at(i) >= at(7)).map(seq).min();
        assert_eq!(first_seq_since(&db, &at(7)).await.expect("first"), first);
    }
}
