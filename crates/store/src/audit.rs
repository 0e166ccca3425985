//! The audit trail's storage: appending events to the hash chain inside a
//! caller's transaction, reading them back in order or filtered,
//! checkpoints, and usage counters.
//!
//! Appends are serialised: on SQLite by its single writer, on PostgreSQL by
//! a transaction-level advisory lock taken before the chain's head is read,
//! so that servers sharing one database keep one chain.

use partnerdb_audit::{Checkpoint, Event, EventRef, GENESIS, StoredEvent, StoredRef};

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
/// BLOCK_BITS`. A block is the size of an indexer chunk
/// ([`index_pending`]'s `max`, 4,096 in the service), so that a chunk's
/// rows go into one or two blocks of their own, side by side at the end
/// of each table, not among the rows of the chunks before it (migration
/// 0012; before it, blocks of 65,536).
const BLOCK_BITS: u32 = 12;
/// Events per span of the time index: `audit_spans` keeps the earliest
/// and latest time of every `seq >> SPAN_BITS`.
const SPAN_BITS: u32 = 10;
/// The indexer's lock ([`index_pending`]).
const INDEX_LOCK: i64 = 727_274_003;
/// How far the lookup tables go (a missing row reads as 0).
const INDEXED_THROUGH: &str = "SELECT through FROM audit_indexed WHERE id = 1";

const COLUMNS: &str = "seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash";
/// The positions in [`COLUMNS`] that may be NULL (principal, resource id,
/// partner).
const OPTIONAL_COLUMNS: [usize; 3] = [3, 6, 7];

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
/// the last `(seq, hash)`. The events' text moves into the statements: it
/// is hashed where it lies and never copied.
pub async fn append(tx: &mut Tx, events: Vec<NewEvent>) -> Result<(i64, String), StoreError> {
    let mut appender = Appender::begin(tx).await?;
    for event in events {
        appender.push(tx, event).await?;
    }
    appender.finish(tx).await
}

/// Events appended one at a time to the chain in the caller's
/// transaction, as they come: the batched writer on SQLite appends each
/// read event as soon as it is queued, so that its commit, when the batch
/// closes, has only the commit itself left to do. [`Appender::begin`] takes the chain
/// (on PostgreSQL its advisory lock) and reads its head; [`Appender::push`]
/// hashes an event after the last and writes it (on SQLite at once; on
/// PostgreSQL, which pays a round trip a statement, a multi-row statement
/// every [`rows_per_insert`] events); [`Appender::finish`] writes what is
/// left and adds the events to the usage counters. Nothing is kept unless
/// the transaction commits.
#[derive(Debug)]
pub struct Appender {
    /// The last event's seq and hash (the head, then each pushed event).
    seq: i64,
    prev: String,
    usage: UsageDeltas,
    /// Events hashed but not yet written, with their seq, link and hash.
    unwritten: Vec<(i64, NewEvent, String, String)>,
    per_statement: usize,
}

impl Appender {
    /// Takes the chain for the transaction and reads its head.
    pub async fn begin(tx: &mut Tx) -> Result<Appender, StoreError> {
        lock_on_postgres(tx, AUDIT_LOCK).await?;
        let (seq, prev) = head_in(tx).await?;
        let per_statement = rows_per_insert(tx);
        Ok(Appender {
            seq,
            prev,
            usage: UsageDeltas::new(),
            unwritten: Vec::with_capacity(per_statement),
            per_statement,
        })
    }

    /// Appends an event after the last one.
    pub async fn push(&mut self, tx: &mut Tx, event: NewEvent) -> Result<(), StoreError> {
        let seq = self.seq.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the trail's head is at seq {}: no seq follows",
                self.seq
            ))
        })?;
        count_event(&mut self.usage, &event);
        let hash = event.at_seq(seq).hash(&self.prev);
        let prev = std::mem::replace(&mut self.prev, hash.clone());
        self.seq = seq;
        self.unwritten.push((seq, event, prev, hash));
        if self.unwritten.len() >= self.per_statement {
            self.write(tx).await?;
        }
        Ok(())
    }

    /// Writes what is left and counts the events in the usage counters;
    /// the last `(seq, hash)`.
    pub async fn finish(mut self, tx: &mut Tx) -> Result<(i64, String), StoreError> {
        self.write(tx).await?;
        count_usage(tx, std::mem::take(&mut self.usage)).await?;
        Ok((self.seq, self.prev))
    }

    /// Writes the events hashed so far, in one statement.
    async fn write(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let mut sql = tx.sql();
        sql.push("INSERT INTO audit_events (")
            .push(COLUMNS)
            .push(") VALUES ");
        for (i, (seq, new, prev, hash)) in self.unwritten.drain(..).enumerate() {
            sql.push(if i > 0 { ", (" } else { "(" })
                .bind(seq)
                .push(", ")
                .bind(new.at)
                .push(", ")
                .bind(new.kind)
                .push(", ")
                .bind(new.principal_id)
                .push(", ")
                .bind(new.action)
                .push(", ")
                .bind(new.resource_type)
                .push(", ")
                .bind(new.resource_id)
                .push(", ")
                .bind(new.partner_id)
                .push(", ")
                .bind(new.decision)
                .push(", ")
                .bind(new.policy_version)
                .push(", ")
                .bind(new.detail)
                .push(", ")
                .bind(prev)
                .push(", ")
                .bind(hash)
                .push(")");
        }
        tx.execute(&sql).await?;
        Ok(())
    }
}

impl NewEvent {
    /// The event as it is stored at `seq`.
    pub fn into_event(self, seq: i64) -> Event {
        Event {
            seq,
            at: self.at,
            kind: self.kind,
            principal_id: self.principal_id,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            partner_id: self.partner_id,
            decision: self.decision,
            policy_version: self.policy_version,
            detail: self.detail,
        }
    }

    /// The event as it is hashed at `seq`.
    pub fn at_seq(&self, seq: i64) -> EventRef<'_> {
        EventRef {
            seq,
            at: &self.at,
            kind: &self.kind,
            principal_id: self.principal_id.as_deref(),
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: self.resource_id.as_deref(),
            partner_id: self.partner_id.as_deref(),
            decision: &self.decision,
            policy_version: &self.policy_version,
            detail: &self.detail,
        }
    }
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

/// What events add to the usage counters, keyed by (kind, name): allows,
/// denies and the latest time. Per principal (allows and denies), and per
/// role and grant that matched an allow.
type UsageDeltas = std::collections::BTreeMap<(&'static str, String), (i64, i64, String)>;

/// Adds an event to the usage deltas.
fn count_event(deltas: &mut UsageDeltas, event: &NewEvent) {
    let allow = event.decision == "allow";
    let mut bump = |kind: &'static str, name: &str| {
        let entry = deltas
            .entry((kind, name.to_owned()))
            .or_insert((0, 0, String::new()));
        if allow {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        if entry.2 < event.at {
            entry.2.clone_from(&event.at);
        }
    };
    if let Some(principal) = &event.principal_id {
        bump("principal", principal);
    }
    if allow {
        let mut roles: Vec<&str> = event
            .matched
            .iter()
            .map(|g| g.split('#').next().unwrap_or(g))
            .collect();
        // Once per event, however its grants are ordered (an update
        // counts the grants of both its decisions).
        roles.sort_unstable();
        roles.dedup();
        for role in roles {
            bump("role", role);
        }
        for grant in &event.matched {
            bump("grant", grant);
        }
    }
}

/// Adds to the usage counters.
async fn count_usage(tx: &mut Tx, deltas: UsageDeltas) -> Result<(), StoreError> {
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
                .bind(last.as_str())
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

/// The lowest seq stored, if any (the chain starts at 1: a lower one was
/// put there by hand).
pub async fn lowest_seq(db: &Db) -> Result<Option<i64>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT seq FROM audit_events ORDER BY seq LIMIT 1");
    Ok(db.fetch_optional(&sql).await?.map(|row| row.int(0)))
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

/// The events with `after < seq <= through`, in seq order, each checked
/// against its own stored hash where the driver holds it (one slice of a
/// verification; slices are read and hashed several at once): what
/// [`ChainVerifier::push_checked`](partnerdb_audit::ChainVerifier::push_checked)
/// then follows in order. No event is copied out of the driver to be
/// hashed.
pub async fn checked_between(
    db: &Db,
    after: i64,
    through: i64,
) -> Result<Vec<Checked>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM audit_events WHERE seq > ")
        .bind(after)
        .push(" AND seq <= ")
        .bind(through)
        .push(" ORDER BY seq");
    let mut scratch = Vec::new();
    db.visit_range(sql, move |row| {
        // A value that is not text where text belongs (NULL in a field
        // that must have one; bytes that are not UTF-8, or a number, in
        // any field) was not written by partnerdb: the event was altered,
        // whatever its content would hash to read some other way (read as
        // missing or empty, it could hash as it did when the field was).
        // Each field read (and its UTF-8 checked) once.
        let texts: [Option<&str>; 13] = std::array::from_fn(|i| row.text(i));
        let unreadable = (1..=12)
            .find(|&i| texts[i].is_none() && (!row.is_null(i) || !OPTIONAL_COLUMNS.contains(&i)));
        let text = |i: usize| texts[i].unwrap_or_default();
        let stored = StoredRef {
            event: EventRef {
                seq: row.int(0),
                at: text(1),
                kind: text(2),
                principal_id: texts[3],
                action: text(4),
                resource_type: text(5),
                resource_id: texts[6],
                partner_id: texts[7],
                decision: text(8),
                policy_version: text(9),
                detail: text(10),
            },
            prev_hash: text(11),
            hash: text(12),
        };
        let mismatch = match unreadable {
            Some(i) => Some(format!(
                "(nothing: its {} is not text partnerdb wrote)",
                COLUMNS.split(", ").nth(i).unwrap_or("field")
            )),
            None => stored.content_mismatch(&mut scratch),
        };
        Checked {
            seq: stored.event.seq,
            mismatch,
            prev_hash: stored.prev_hash.to_owned(),
            hash: stored.hash.to_owned(),
        }
    })
    .await
}

/// A stored event checked against its stored hash ([`checked_between`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Its seq.
    pub seq: i64,
    /// The previous event's hash, as stored with it.
    pub prev_hash: String,
    /// Its hash, as stored.
    pub hash: String,
    /// `None` when its content hashes to that hash; else what it hashes to.
    pub mismatch: Option<String>,
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
    // Seqs near i64::MAX are tampering, not appends: saturate, not panic.
    let mut out = if before.is_some_and(|b| b <= through.saturating_add(1)) {
        Vec::new()
    } else {
        scan(db, filter, Some(through), before, limit).await?
    };
    // The indexed part: seqs in `lowest..below`, narrowed by the time
    // spans that can hold matching events.
    let mut below = before.map_or(through.saturating_add(1), |b| {
        b.min(through.saturating_add(1))
    });
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
                below = below.min(last.saturating_add(1));
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
    // Spans of seqs near i64::MAX (tampering) clamp instead of wrapping.
    let span_start = |span: i64| {
        span.checked_shl(SPAN_BITS)
            .filter(|s| s >> SPAN_BITS == span)
    };
    let last_seq = span_start(last.saturating_add(1))
        .map_or(i64::MAX, |start| start - 1)
        .min(through);
    Ok(Some((
        span_start(first).unwrap_or(i64::MAX).max(1),
        last_seq,
    )))
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

impl Lookup<'_> {
    /// The table holding this kind of key's lists.
    fn table(&self) -> &'static str {
        match self {
            Lookup::Resource(..) => "audit_by_resource",
            Lookup::Principal(_) => "audit_by_principal",
            Lookup::Partner(_) => "audit_by_partner",
        }
    }

    /// `AND` the key's columns equal it.
    fn push_key(&self, sql: &mut Sql) {
        match *self {
            Lookup::Resource(kind, id) => sql
                .push(" AND resource_type = ")
                .bind(kind)
                .push(" AND resource_id = ")
                .bind(id),
            Lookup::Principal(principal) => sql.push(" AND principal_id = ").bind(principal),
            Lookup::Partner(partner) => sql.push(" AND partner_id = ").bind(partner),
        };
    }
}

/// Events read by seq at a time when a lookup has found their seqs (a
/// fixed number of placeholders, so one prepared statement serves all).
const FETCH_BY_SEQ: usize = 64;

/// Matching events newest first through a lookup table, with `lowest <=
/// seq < before` (`before` at most the indexed seq + 1): block by block,
/// from `before`'s down to `lowest`'s, until `limit` are found. A block's
/// lists of the key are read in one query (a key with fewer events than a
/// page costs one query per block of 4,096 events that has some, and two
/// more to skip each run of blocks that has none), and
/// the events they name, newest first, [`FETCH_BY_SEQ`] a query, with the
/// filter's other conditions.
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
        sql.push("SELECT first_seq, seqs FROM ")
            .push(lookup.table())
            .push(" WHERE block = ")
            .bind(block);
        lookup.push_key(&mut sql);
        sql.push(" AND first_seq < ").bind(before);
        let rows = db.fetch_all(&sql).await?;
        if rows.is_empty() {
            // On to the key's next lower block that has postings, in one
            // query however far below (blocks are not walked one by one:
            // a seq far beyond the chain, put there by hand, would make
            // that trillions of queries).
            let mut sql = db.sql();
            sql.push("SELECT MAX(block) FROM ")
                .push(lookup.table())
                .push(" WHERE block < ")
                .bind(block);
            lookup.push_key(&mut sql);
            sql.push(" AND first_seq < ").bind(before);
            match db
                .fetch_optional(&sql)
                .await?
                .and_then(|r| r.get(0).as_int())
            {
                Some(lower) if lower >= first_block => {
                    block = lower;
                    continue;
                }
                _ => break,
            }
        }
        let mut seqs = Vec::new();
        for row in rows {
            decode_postings(
                row.int(0),
                row.get(1).as_text().unwrap_or_default(),
                &mut seqs,
            );
        }
        seqs.retain(|&seq| lowest <= seq && seq < before);
        // Newest first; a chunk filed twice (the watermark lost) lists
        // its events twice.
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        for batch in seqs.chunks(FETCH_BY_SEQ) {
            if out.len() >= limit {
                break;
            }
            let mut sql = db.sql();
            sql.push("SELECT ")
                .push(COLUMNS)
                .push(" FROM audit_events WHERE seq IN (");
            for i in 0..FETCH_BY_SEQ {
                if i > 0 {
                    sql.push(", ");
                }
                // The batch's first seq again fills the list's rest (a
                // filler that names no event could still name a row that
                // was inserted outside the chain, at seq 0 say).
                sql.bind(batch.get(i).copied().unwrap_or(batch[0]));
            }
            sql.push(")");
            push_conditions(&mut sql, filter, "");
            sql.push(" ORDER BY seq DESC LIMIT ")
                .bind((limit - out.len()) as i64);
            out.extend(fetch_events(db, sql).await?);
        }
        block -= 1;
    }
    Ok(out)
}

/// A posting list as stored: the first seq, and the text of every seq's
/// distance from it, in order, separated by commas (`0,1,2,7`).
fn encode_postings(seqs: &[i64]) -> (i64, String) {
    use std::fmt::Write as _;
    let first = seqs.first().copied().unwrap_or(0);
    let mut text = String::with_capacity(seqs.len() * 3);
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{}", seq - first);
    }
    (first, text)
}

/// Appends the seqs of a stored posting list to `out`. A part that is not
/// a number (a row edited by hand) names no event: the lookup misses it,
/// as it would miss a deleted row, and verification is what finds edits.
fn decode_postings(first: i64, text: &str, out: &mut Vec<i64>) {
    out.extend(
        text.split(',')
            .filter_map(|part| part.parse::<i64>().ok())
            .filter_map(|offset| first.checked_add(offset)),
    );
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
/// have caught up). Each key gets one row per block of the chunk: its
/// posting list, the seqs of its events there. A chunk of events about one
/// record, one principal and one partner writes three rows, and a chunk
/// whose every key differs writes a row a key, where the event table's
/// own indexes wrote a scattered page per key per commit. The chunk is
/// read once, and its rows go in sorted, led by their block, so that they
/// land in the newest block's region.
///
/// On PostgreSQL, indexers of servers sharing the database take turns
/// (an advisory lock of their own, not the appends'). Appends commit in
/// seq order (they hold the appends' lock from reading the head to their
/// commit), so the events an indexer sees have no gaps still to fill.
pub async fn index_pending(db: &Db, max: usize) -> Result<usize, StoreError> {
    use std::collections::BTreeMap;
    // The chunk is read and sorted before the write transaction, which
    // holds SQLite's one writer (and with it every append) only for the
    // inserts: reading and sorting 4,096 events inside it held the
    // appends 2-7 ms.
    let mut sql = db.sql();
    sql.push(INDEXED_THROUGH);
    let through = db.fetch_optional(&sql).await?.map_or(0, |r| r.int(0));
    // The chunk: the next `max` events (seqs may have gaps).
    let mut sql = db.sql();
    sql.push("SELECT seq, at, principal_id, partner_id, resource_type, resource_id FROM audit_events WHERE seq > ")
        .bind(through)
        .push(" ORDER BY seq LIMIT ")
        .bind(max as i64);
    let chunk = db.fetch_all(&sql).await?;
    let Some(last) = chunk.last().map(|row| row.int(0)) else {
        return Ok(0);
    };
    // Each key's seqs per block, in seq order; each span's earliest and
    // latest time.
    let mut principals: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    let mut partners: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    let mut resources: BTreeMap<(i64, &str, &str), Vec<i64>> = BTreeMap::new();
    let mut spans: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for row in &chunk {
        let seq = row.int(0);
        let block = seq >> BLOCK_BITS;
        if let Some(principal) = row.get(2).as_text() {
            principals.entry((block, principal)).or_default().push(seq);
        }
        if let Some(partner) = row.get(3).as_text() {
            partners.entry((block, partner)).or_default().push(seq);
        }
        if let (Some(kind), Some(id)) = (row.get(4).as_text(), row.get(5).as_text()) {
            resources.entry((block, kind, id)).or_default().push(seq);
        }
        let at = row.get(1).as_text().unwrap_or_default();
        let span = spans.entry(seq >> SPAN_BITS).or_insert((at, at));
        span.0 = span.0.min(at);
        span.1 = span.1.max(at);
    }
    let lists = |keys: Vec<Value>, seqs: &[i64]| {
        let (first, text) = encode_postings(seqs);
        let mut values = keys;
        values.extend([Value::Int(first), Value::Text(text)]);
        values
    };
    let principals: Vec<Vec<Value>> = principals
        .iter()
        .map(|(&(block, principal), seqs)| lists(vec![block.into(), principal.into()], seqs))
        .collect();
    let partners: Vec<Vec<Value>> = partners
        .iter()
        .map(|(&(block, partner), seqs)| lists(vec![block.into(), partner.into()], seqs))
        .collect();
    let resources: Vec<Vec<Value>> = resources
        .iter()
        .map(|(&(block, kind, id), seqs)| lists(vec![block.into(), kind.into(), id.into()], seqs))
        .collect();
    let mut tx = db.begin().await?;
    lock_on_postgres(&mut tx, INDEX_LOCK).await?;
    // Filed meanwhile by another indexer (servers sharing a PostgreSQL
    // database): the next round reads from where it got to.
    let mut sql = tx.sql();
    sql.push(INDEXED_THROUGH);
    if tx.fetch_optional(&sql).await?.map_or(0, |r| r.int(0)) != through {
        return Ok(0);
    }
    // Filing a chunk again (the watermark lost) makes rows with the same
    // keys and first seqs; of two such lists the longer is kept: both list
    // the key's events from that first seq on in its block, so the longer
    // holds the shorter (a larger chunk filed over a smaller one would
    // otherwise lose the events past the smaller's end). Lists of another
    // chunking may overlap the rows there are; lookups drop the seqs they
    // find twice.
    for (table, key, rows) in [
        (
            "audit_by_principal",
            "block, principal_id, first_seq",
            principals,
        ),
        ("audit_by_partner", "block, partner_id, first_seq", partners),
        (
            "audit_by_resource",
            "block, resource_type, resource_id, first_seq",
            resources,
        ),
    ] {
        let keep_longer = format!(
            " ON CONFLICT ({key}) DO UPDATE SET seqs = excluded.seqs \
             WHERE length(excluded.seqs) > length({table}.seqs)"
        );
        insert_rows(&mut tx, table, &format!("{key}, seqs"), &keep_longer, rows).await?;
    }
    let (least, greatest) = match tx.dialect() {
        Dialect::Sqlite => ("min", "max"),
        Dialect::Postgres => ("LEAST", "GREATEST"),
    };
    let spans: Vec<Vec<Value>> = spans
        .into_iter()
        .map(|(span, (min, max))| vec![span.into(), min.into(), max.into()])
        .collect();
    let merge = format!(
        " ON CONFLICT (span) DO UPDATE SET min_at = {least}(audit_spans.min_at, excluded.min_at), \
         max_at = {greatest}(audit_spans.max_at, excluded.max_at)"
    );
    insert_rows(
        &mut tx,
        "audit_spans",
        "span, min_at, max_at",
        &merge,
        spans,
    )
    .await?;
    // An upsert: were the row ever lost, an update would leave the
    // indexer filing the same first chunk forever.
    let mut sql = tx.sql();
    sql.push("INSERT INTO audit_indexed (id, through) VALUES (1, ")
        .bind(last)
        .push(") ON CONFLICT (id) DO UPDATE SET through = excluded.through");
    tx.execute(&sql).await?;
    tx.commit().await?;
    Ok(chunk.len())
}

/// Inserts rows of values into `table`'s `columns`, [`rows_per_insert`] a
/// statement, each statement ending with `tail` (its conflict clause).
async fn insert_rows(
    tx: &mut Tx,
    table: &str,
    columns: &str,
    tail: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    let per_statement = rows_per_insert(tx);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = tx.sql();
        sql.push("INSERT INTO ")
            .push(table)
            .push(" (")
            .push(columns)
            .push(") VALUES ");
        for (i, row) in rows.by_ref().take(per_statement).enumerate() {
            sql.push(if i > 0 { ", (" } else { "(" });
            for (j, value) in row.into_iter().enumerate() {
                if j > 0 {
                    sql.push(", ");
                }
                sql.bind(value);
            }
            sql.push(")");
        }
        sql.push(tail);
        tx.execute(&sql).await?;
    }
    Ok(())
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
        .map(checkpoint_from_row)
        .collect())
}

fn checkpoint_from_row(r: &Row) -> Checkpoint {
    Checkpoint {
        seq: r.int(0),
        hash: r.text(1),
        at: r.text(2),
        signature: r.text(3),
        public_key: r.text(4),
    }
}

/// The last checkpoint, if any.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<Checkpoint>, StoreError> {
    let mut sql = db.sql();
    sql.push(
        "SELECT seq, hash, at, signature, public_key FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
    );
    Ok(db
        .fetch_optional(&sql)
        .await?
        .as_ref()
        .map(checkpoint_from_row))
}

/// The hash stored with the event at `seq`, if there is one.
pub async fn hash_at(db: &Db, seq: i64) -> Result<Option<String>, StoreError> {
    let mut sql = db.sql();
    sql.push("SELECT hash FROM audit_events WHERE seq = ")
        .bind(seq);
    Ok(db.fetch_optional(&sql).await?.map(|r| r.text(0)))
}

/// The first seq recorded at or after `at`, if any: the events are read
/// in seq order from the first time span that can hold one (the events
/// after the indexed seq when none can).
pub async fn first_seq_since(db: &Db, at: &str) -> Result<Option<i64>, StoreError> {
    let through = indexed_through(db).await?;
    let from = match time_bounds(db, Some(at), None, through).await? {
        Some((first, _)) => first,
        None => through.saturating_add(1),
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

    /// Runs one statement in a transaction of its own.
    async fn run(db: &Db, statement: &str) {
        let mut tx = db.begin().await.expect("begin");
        let mut sql = tx.sql();
        sql.push(statement);
        tx.execute(&sql).await.expect(statement);
        tx.commit().await.expect("commit");
    }

    /// Runs one statement on the database at `url`, outside any schema.
    async fn run_at(url: &str, statement: &str) {
        let admin = Db::connect(url, &DbOptions::default())
            .await
            .expect("admin");
        run(&admin, statement).await;
        admin.close().await;
    }

    /// A read of partner `partner` by `principal` at `at`, stored at
    /// `seq` (links left empty: lookups do not read them).
    fn read_event(seq: i64, at: String, principal: Option<String>, partner: String) -> StoredEvent {
        StoredEvent {
            event: Event {
                seq,
                at,
                kind: "decision".into(),
                principal_id: principal,
                action: "read".into(),
                resource_type: "partner".into(),
                resource_id: Some(partner.clone()),
                partner_id: Some(partner),
                decision: "allow".into(),
                policy_version: "v".into(),
                detail: "{}".into(),
            },
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The rows the indexer filed before posting lists (migration 0009)
    /// become posting lists on the upgrade (0010, 0011), on both backends:
    /// what was indexed stays indexed, and lookups find exactly what a
    /// plain filter does. Then 0012 (blocks of 4,096) drops them, and the
    /// trail filed again from its start finds the same.
    #[tokio::test]
    async fn lookup_rows_filed_before_posting_lists_are_kept_then_filed_again() {
        let scratch = crate::scratch::Scratch::new("postings-upgrade");
        let sqlite_url = format!("sqlite://{}", scratch.file().display());
        let mut backends = vec![(Dialect::Sqlite, sqlite_url, None)];
        if let Some((url, schema)) = postgres_schema().await {
            backends.push((Dialect::Postgres, url, Some(schema)));
        }
        for (dialect, url, schema) in backends {
            let options = DbOptions {
                schema: schema.clone(),
                ..DbOptions::default()
            };
            let db = Db::connect(&url, &options).await.expect("open");
            migrate_to(dialect, &db, &scratch.file(), 9).await;
            // 120 events 3,001 seqs apart (across groups of 4,096 and
            // blocks of 65,536), filed as 0009's indexer filed them: a
            // row per event and key.
            let events: Vec<StoredEvent> = (0..120)
                .map(|i: i64| {
                    let mut event = read_event(
                        1 + 3001 * i,
                        format!("2026-12-01T10:{:02}:00Z", i % 60),
                        (i % 5 != 0).then(|| format!("u{}", i % 4)),
                        format!("p{}", i % 3),
                    );
                    event.event.resource_id = Some(format!("p{}", i % 7));
                    event
                })
                .collect();
            let mut tx = db.begin().await.expect("begin");
            insert_stored(&mut tx, &events).await.expect("events");
            for statement in [
                "INSERT INTO audit_by_principal (block, principal_id, seq) SELECT seq >> 16, principal_id, seq FROM audit_events WHERE principal_id IS NOT NULL",
                "INSERT INTO audit_by_partner (block, partner_id, seq) SELECT seq >> 16, partner_id, seq FROM audit_events WHERE partner_id IS NOT NULL",
                "INSERT INTO audit_by_resource (block, resource_type, resource_id, seq) SELECT seq >> 16, resource_type, resource_id, seq FROM audit_events WHERE resource_id IS NOT NULL",
            ] {
                let mut sql = tx.sql();
                sql.push(statement);
                tx.execute(&sql).await.expect("old lookup rows");
            }
            let last = events.last().map_or(0, |e| e.event.seq);
            let mut sql = tx.sql();
            sql.push("UPDATE audit_indexed SET through = ").bind(last);
            tx.execute(&sql).await.expect("watermark");
            tx.commit().await.expect("commit");

            // 0010 and 0011 keep what was indexed; 0012 drops it (blocks
            // of another size) and the indexer files the trail again.
            migrate_to(dialect, &db, &scratch.file(), 11).await;
            assert_eq!(indexed_through(&db).await.expect("through"), last);
            let found = |db: Db, filters: Vec<AuditFilter>| async move {
                let mut found = Vec::new();
                for filter in filters {
                    let seqs: Vec<i64> = list(&db, &filter, None, 1000)
                        .await
                        .expect("list")
                        .iter()
                        .map(|s| s.event.seq)
                        .collect();
                    found.push(seqs);
                }
                found
            };
            let mut filters = Vec::new();
            for n in 0..7 {
                filters.push(AuditFilter {
                    principal_id: Some(format!("u{n}")),
                    ..AuditFilter::default()
                });
                filters.push(AuditFilter {
                    partner_id: Some(format!("p{n}")),
                    ..AuditFilter::default()
                });
                filters.push(AuditFilter {
                    resource_type: Some("partner".into()),
                    resource_id: Some(format!("p{n}")),
                    ..AuditFilter::default()
                });
            }
            let expected: Vec<Vec<i64>> = filters
                .iter()
                .map(|filter| {
                    events
                        .iter()
                        .rev()
                        .map(|s| &s.event)
                        .filter(|e| {
                            filter.principal_id.is_none() || filter.principal_id == e.principal_id
                        })
                        .filter(|e| {
                            filter.partner_id.is_none() || filter.partner_id == e.partner_id
                        })
                        .filter(|e| {
                            filter.resource_id.is_none() || filter.resource_id == e.resource_id
                        })
                        .map(|e| e.seq)
                        .collect()
                })
                .collect();
            assert_eq!(
                found(db.clone(), filters.clone()).await,
                expected,
                "{dialect:?} after 0011"
            );
            db.migrate().await.expect("migrations from 0012");
            assert_eq!(indexed_through(&db).await.expect("through"), 0);
            while index_pending(&db, 4096).await.expect("index") > 0 {}
            assert_eq!(indexed_through(&db).await.expect("through"), last);
            assert_eq!(
                found(db.clone(), filters).await,
                expected,
                "{dialect:?} filed again"
            );
            db.close().await;
            if let Some(schema) = &schema {
                run_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
            }
        }
    }

    /// Runs the migrations up to `version` on `db` (SQLite through a
    /// connection of its own to `file`).
    async fn migrate_to(dialect: Dialect, db: &Db, file: &std::path::Path, version: i64) {
        match dialect {
            Dialect::Postgres => {
                let pool = db.postgres_pool().expect("a PostgreSQL pool");
                crate::sql::migrator_for(dialect)
                    .run_to(version, pool)
                    .await
                    .expect("migrations");
            }
            Dialect::Sqlite => {
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        sqlx::sqlite::SqliteConnectOptions::new()
                            .filename(file)
                            .create_if_missing(true),
                    )
                    .await
                    .expect("pool");
                crate::sql::migrator_for(dialect)
                    .run_to(version, &pool)
                    .await
                    .expect("migrations");
                pool.close().await;
            }
        }
    }

    /// The test server's URL and a schema made for one test there; `None`
    /// (said on stderr) without `PARTNERDB_TEST_PG_URL` outside CI.
    async fn postgres_schema() -> Option<(String, String)> {
        match std::env::var("PARTNERDB_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                run_at(&url, &format!("CREATE SCHEMA {schema}")).await;
                Some((url, schema))
            }
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but PARTNERDB_TEST_PG_URL is not set: PostgreSQL tests cannot run")
            }
            _ => {
                eprintln!("skipping PostgreSQL: PARTNERDB_TEST_PG_URL is not set");
                None
            }
        }
    }

    /// A slice of the trail read on PostgreSQL (rows visited as they
    /// arrive, the planner told to walk the index) gives every event of
    /// the slice in order, checked, and leaves the planner's settings to
    /// its own transaction: every connection of the pool plans as before.
    #[tokio::test]
    async fn a_postgres_slice_read_keeps_its_planner_settings_to_itself() {
        let Some((url, schema)) = postgres_schema().await else {
            return;
        };
        let options = DbOptions {
            schema: Some(schema.clone()),
            ..DbOptions::default()
        };
        let db = Db::connect(&url, &options).await.expect("open");
        db.migrate().await.expect("migrate");
        let events = partnerdb_audit::link(
            partnerdb_audit::GENESIS,
            (1..=50).map(|seq| {
                read_event(
                    seq,
                    format!("2026-12-01T10:00:{:02}Z", seq % 60),
                    Some("u1".into()),
                    format!("p{}", seq % 3),
                )
                .event
            }),
        );
        let mut tx = db.begin().await.expect("begin");
        insert_stored(&mut tx, &events).await.expect("events");
        tx.commit().await.expect("commit");
        // The settings of every connection the pool holds: all of them at
        // once, so that the one the slice was read on is among them.
        let settings = || async {
            let pool = db.postgres_pool().expect("a PostgreSQL pool");
            let mut held = Vec::new();
            for _ in 0..pool.options().get_max_connections() {
                held.push(pool.acquire().await.expect("a connection"));
            }
            let mut seen = Vec::new();
            for conn in &mut held {
                let setting: String = sqlx::query_scalar(
                    "SELECT current_setting('enable_bitmapscan') || ' ' || current_setting('enable_sort') \
                     || ' ' || current_setting('max_parallel_workers_per_gather')",
                )
                .fetch_one(&mut **conn)
                .await
                .expect("settings");
                seen.push(setting);
            }
            seen
        };
        let before = settings().await;
        assert!(
            before.iter().all(|s| s != "off off 0"),
            "the server's own settings: {before:?}"
        );
        let got = checked_between(&db, 10, 40).await.expect("slice");
        let expected: Vec<Checked> = events[10..40]
            .iter()
            .map(|s| Checked {
                seq: s.event.seq,
                prev_hash: s.prev_hash.clone(),
                hash: s.hash.clone(),
                mismatch: None,
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(settings().await, before);
        db.close().await;
        run_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
    }

    /// Servers sharing one PostgreSQL database keep one chain: two pools
    /// (two servers' connections), four appenders each, append batches at
    /// once in transactions of their own, as the writers do; every append
    /// succeeds, and the events read back form one unbroken chain holding
    /// each event once. Without the advisory lock, appends reading the
    /// same head collide on a seq (or fork the chain).
    #[tokio::test]
    async fn servers_sharing_postgres_keep_one_chain() {
        let Some((url, schema)) = postgres_schema().await else {
            return;
        };
        // Servers whose connections default to repeatable read (as a
        // database may be configured): the store asks for read committed,
        // which the append's read of the head after the lock needs.
        let url = format!(
            "{url}{}options=-c%20default_transaction_isolation%3Drepeatable%5C%20read",
            if url.contains('?') { '&' } else { '?' }
        );
        let options = DbOptions {
            schema: Some(schema.clone()),
            ..DbOptions::default()
        };
        let first = Db::connect(&url, &options).await.expect("open");
        first.migrate().await.expect("migrate");
        let second = Db::connect(&url, &options)
            .await
            .expect("open a second pool");
        let (servers, appenders, batches, per_batch) = (2, 4, 10, 5);
        let mut tasks = Vec::new();
        for (server, db) in [first.clone(), second.clone()].into_iter().enumerate() {
            for appender in 0..appenders {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    for batch in 0..batches {
                        let events = (0..per_batch)
                            .map(|i| NewEvent {
                                at: "2026-12-03T10:00:00Z".into(),
                                kind: "decision".into(),
                                principal_id: Some(format!("server{server}")),
                                action: "read".into(),
                                resource_type: "partner".into(),
                                resource_id: Some(format!("s{server}-a{appender}-b{batch}-{i}")),
                                partner_id: None,
                                decision: "allow".into(),
                                policy_version: "v".into(),
                                detail: "{}".into(),
                                matched: vec!["admin#0".into()],
                            })
                            .collect();
                        let mut tx = db.begin().await.expect("begin");
                        append(&mut tx, events).await.expect("append");
                        tx.commit().await.expect("commit");
                    }
                }));
            }
        }
        for task in tasks {
            task.await.expect("an appender");
        }
        let total = servers * appenders * batches * per_batch;
        let stored = events_after(&second, 0, 10 * total).await.expect("read");
        let mut verifier = partnerdb_audit::ChainVerifier::new(Vec::new(), None);
        for event in &stored {
            verifier.push(event).expect("one unbroken chain");
        }
        assert_eq!(verifier.finish().expect("the chain"), total as i64);
        let distinct: std::collections::BTreeSet<_> =
            stored.iter().map(|s| s.event.resource_id.clone()).collect();
        assert_eq!(distinct.len(), total, "each event once");
        first.close().await;
        second.close().await;
        run_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
    }

    /// Lists filed twice over different chunks (the watermark lost)
    /// overlap: a lookup gives each event once, even where a page's
    /// events are read in several queries, and in order; and a larger
    /// chunk filed over a smaller one (lists with the same first seq, the
    /// new one longer) loses none of the events past the smaller's end.
    #[tokio::test]
    async fn posting_lists_filed_twice_give_each_event_once() {
        for (first, again) in [(100, 37), (100, 250), (37, 300)] {
            let scratch = crate::scratch::Scratch::new("postings");
            let url = format!("sqlite://{}", scratch.file().display());
            let db = Db::connect(&url, &DbOptions::default())
                .await
                .expect("open");
            files_twice(&db, first, again).await;
        }
    }

    /// The same on PostgreSQL, whose conflict clause is its own.
    #[tokio::test]
    async fn posting_lists_filed_twice_give_each_event_once_on_postgres() {
        let Some((url, schema)) = postgres_schema().await else {
            return;
        };
        let options = DbOptions {
            schema: Some(schema.clone()),
            ..DbOptions::default()
        };
        let db = Db::connect(&url, &options).await.expect("open");
        files_twice(&db, 100, 250).await;
        db.close().await;
        run_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
    }

    /// Events pushed one at a time (the batched writer's way) chain like
    /// the same events linked in one go, across PostgreSQL's multi-row
    /// statements and the remainder after them, and are counted once each;
    /// pushed and rolled back, they leave the chain as it was. Both
    /// backends.
    #[tokio::test]
    async fn events_pushed_one_at_a_time_chain_and_roll_back_like_a_batch() {
        let scratch = crate::scratch::Scratch::new("appender");
        let mut backends = vec![(
            format!("sqlite://{}", scratch.file().display()),
            None::<String>,
        )];
        if let Some((url, schema)) = postgres_schema().await {
            backends.push((url, Some(schema)));
        }
        for (url, schema) in backends {
            let options = DbOptions {
                schema: schema.clone(),
                ..DbOptions::default()
            };
            let db = Db::connect(&url, &options).await.expect("open");
            db.migrate().await.expect("migrate");
            let new = |i: usize| NewEvent {
                at: format!("2026-12-01T10:{:02}:{:02}Z", i / 60 % 60, i % 60),
                kind: "decision".into(),
                principal_id: Some("u1".into()),
                action: "read".into(),
                resource_type: "partner".into(),
                resource_id: Some(format!("p{i}")),
                partner_id: Some(format!("p{i}")),
                decision: if i.is_multiple_of(5) { "deny" } else { "allow" }.into(),
                policy_version: "v1".into(),
                detail: format!("{{\"n\":{i}}}"),
                matched: if i.is_multiple_of(5) {
                    vec![]
                } else {
                    vec!["reader#0".into()]
                },
            };
            let count = 450;
            let mut tx = db.begin().await.expect("begin");
            let mut appender = Appender::begin(&mut tx).await.expect("appender");
            for i in 0..count {
                appender.push(&mut tx, new(i)).await.expect("push");
            }
            let (seq, hash) = appender.finish(&mut tx).await.expect("finish");
            tx.commit().await.expect("commit");

            let expected =
                partnerdb_audit::link(GENESIS, (0..count).map(|i| new(i).into_event(i as i64 + 1)));
            assert_eq!(
                (seq, hash.as_str()),
                (count as i64, expected[count - 1].hash.as_str())
            );
            let stored = checked_between(&db, 0, i64::MAX).await.expect("read");
            assert_eq!(stored.len(), count, "{url}");
            for (checked, want) in stored.iter().zip(&expected) {
                assert_eq!(checked.seq, want.event.seq);
                assert_eq!(checked.prev_hash, want.prev_hash);
                assert_eq!(checked.hash, want.hash);
                assert_eq!(checked.mismatch, None);
            }
            let principal = usage(&db, Some("principal"), Some("u1"))
                .await
                .expect("usage");
            assert_eq!((principal[0].allows, principal[0].denies), (360, 90));
            let grant = usage(&db, Some("grant"), Some("reader#0"))
                .await
                .expect("usage");
            assert_eq!(grant[0].allows, 360);

            // Pushed, then the transaction dropped: nothing kept.
            let mut tx = db.begin().await.expect("begin");
            let mut appender = Appender::begin(&mut tx).await.expect("appender");
            for i in 0..3 {
                appender.push(&mut tx, new(i)).await.expect("push");
            }
            drop(appender);
            drop(tx);
            assert_eq!(head(&db).await.expect("head"), (seq, hash));
            let principal = usage(&db, Some("principal"), Some("u1"))
                .await
                .expect("usage");
            assert_eq!((principal[0].allows, principal[0].denies), (360, 90));
            db.close().await;
            if let Some(schema) = schema {
                run_at(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
            }
        }
    }

    /// Files 150 events in chunks of `first`, forgets the watermark,
    /// appends 150 more, files all 300 in chunks of `again`, adds one and
    /// checks what the principal's and a partner's lookups give.
    async fn files_twice(db: &Db, first: usize, again: usize) {
        db.migrate().await.expect("migrate");
        // 301 events of one principal in one block, each third about
        // another partner.
        let events: Vec<StoredEvent> = (1..=301)
            .map(|seq| {
                read_event(
                    seq,
                    format!("2026-12-01T10:00:{:02}Z", seq % 60),
                    Some("u1".into()),
                    format!("p{}", seq % 3),
                )
            })
            .collect();
        // Half of them filed, the watermark lost, the other half appended,
        // and all filed again: a list of the second filing can start where
        // one of the first did and go further.
        for (events, chunk, forget) in [
            (&events[..150], first, true),
            (&events[150..300], again, false),
        ] {
            let mut tx = db.begin().await.expect("begin");
            insert_stored(&mut tx, events).await.expect("events");
            tx.commit().await.expect("commit");
            while index_pending(db, chunk).await.expect("index") > 0 {}
            if forget {
                run(db, "DELETE FROM audit_indexed").await;
            }
        }
        // One more, listed once: the seqs found twice below it no longer
        // pair up within a query's share.
        let mut tx = db.begin().await.expect("begin");
        insert_stored(&mut tx, &events[300..]).await.expect("event");
        tx.commit().await.expect("commit");
        assert_eq!(index_pending(db, again).await.expect("index"), 1);
        assert_eq!(indexed_through(db).await.expect("through"), 301);
        for (filter, expected) in [
            (
                AuditFilter {
                    principal_id: Some("u1".into()),
                    ..AuditFilter::default()
                },
                (1..=301).rev().collect::<Vec<i64>>(),
            ),
            (
                AuditFilter {
                    partner_id: Some("p1".into()),
                    ..AuditFilter::default()
                },
                (1..=301).rev().filter(|seq| seq % 3 == 1).collect(),
            ),
        ] {
            let got: Vec<i64> = list(db, &filter, None, 1000)
                .await
                .expect("list")
                .iter()
                .map(|s| s.event.seq)
                .collect();
            assert_eq!(got, expected, "chunks of {first} then {again}: {filter:?}");
        }
    }

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
        // Through 0011 the events stay indexed; 0012 (lookup blocks of
        // another size) has the indexer file them again, the spans kept.
        migrate_to(Dialect::Sqlite, &db, &path, 11).await;
        assert_eq!(indexed_through(&db).await.expect("through"), seq(39));
        for through in [seq(39), 0, seq(39)] {
            if through == 0 {
                db.migrate().await.expect("migrations from 0012");
            } else if indexed_through(&db).await.expect("through") == 0 {
                while index_pending(&db, 4096).await.expect("index") > 0 {}
            }
            assert_eq!(indexed_through(&db).await.expect("through"), through);
            times_answered_exactly(&db, &at, &seq).await;
        }
    }

    /// Time filters over the 40 events of
    /// [`a_trail_indexed_before_the_spans_answers_time_filters`] find
    /// exactly the events a plain filter does.
    async fn times_answered_exactly(db: &Db, at: impl Fn(i64) -> String, seq: impl Fn(i64) -> i64) {
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
                .map(&seq)
                .collect();
            let filter = AuditFilter {
                since: since.clone(),
                until: until.clone(),
                ..AuditFilter::default()
            };
            let got: Vec<i64> = list(db, &filter, None, 100)
                .await
                .expect("list")
                .iter()
                .map(|s| s.event.seq)
                .collect();
            assert_eq!(got, expected, "since {since:?} until {until:?}");
        }
        let first = (0..40).filter(|&i| at(i) >= at(7)).map(&seq).min();
        assert_eq!(first_seq_since(db, &at(7)).await.expect("first"), first);
    }
}
