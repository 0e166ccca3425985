//! Writing the audit trail: every decision and change becomes an event.
//!
//! - A change and its event are appended in the change's own transaction
//!   (they commit together or not at all): [`Service::append_in`].
//! - Read and deny events go through one batched writer (group commit):
//!   events queued while a batch commits go into the next; a request gets
//!   its answer only after its event is committed ([`Service::record`]),
//!   and an error from the trail refuses the request (fail closed). The
//!   record reads hand their answer back as a [`Recorded`]: serialized
//!   while the event commits, given out only after.
//! - A checkpointer signs the chain's head every N events or T seconds with
//!   a key kept outside the database.
//!
//! Events never carry personal data (pii-class values; contact names,
//! e-mails and phones) in clear or hashed, nor legal-class values, nor
//! tokens: changes list the fields changed, with values before and after
//! only for general and financial fields.

use std::sync::Arc;
use std::time::Duration;

use partnerdb_audit::CheckpointKey;
use partnerdb_policy::{Decision, FieldClass, FieldSet};
use partnerdb_store::audit::{self as store, NewEvent};
use partnerdb_store::records::Record;
use partnerdb_store::{Db, Dialect, Durable, StoreError, Tx, Value};
use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::{Map, Value as Json, json};
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use crate::Service;
use crate::auth::{Caller, RequestInfo};
use crate::codec::to_json;
use crate::error::ServiceError;

/// How the trail is written.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The checkpoint key (none: no checkpoints are signed).
    pub key: Option<Arc<CheckpointKey>>,
    /// Sign a checkpoint after this many new events…
    pub checkpoint_every: i64,
    /// …or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Most events in one group commit.
    pub max_batch: usize,
    /// How often the indexer files the lookup keys of new events.
    pub index_interval: Duration,
    /// What the answer to a read or a denial waits for.
    pub read_durability: ReadDurability,
    /// Benchmark builds only (feature `bench-bare`): read and deny events
    /// are not written, so that the load benchmark can measure what the
    /// trail costs in the same build. Never in a build that serves data.
    #[cfg(feature = "bench-bare")]
    pub bench_unaudited: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key: None,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 4096,
            index_interval: Duration::from_millis(250),
            read_durability: ReadDurability::Commit,
            #[cfg(feature = "bench-bare")]
            bench_unaudited: false,
        }
    }
}

/// What the answer to a read or a denial waits for, its event being
/// written by the batched writer. Changes are not concerned: a change and
/// its event are on disk before the change is answered, always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadDurability {
    /// The event's commit is made (SQLite: in the WAL, through the
    /// operating system's cache; it reaches the disk with the next sync,
    /// within 10 ms, sooner when a change waits for one). A crash of the
    /// server loses nothing; a crash of the operating system or a power
    /// cut can lose the events of the last moments, whose answers were
    /// sent. A failed sync still stops every answer from then on (fail
    /// closed). On PostgreSQL the same as `Disk`: its commit returns once
    /// flushed. The default: no answer before its event is committed
    /// (what each mode costs: `BENCHMARKS.md` §4).
    #[default]
    Commit,
    /// The event's commit is on disk (synced): no answer without its
    /// record, whatever happens to the server, the operating system or
    /// the power.
    Disk,
}

impl ReadDurability {
    /// The name `serve --read-event-durability` takes, as recorded.
    pub fn name(self) -> &'static str {
        match self {
            ReadDurability::Disk => "disk",
            ReadDurability::Commit => "commit",
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

/// The handle on the batched writer.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<(NewEvent, Ack)>,
    /// What answers wait for.
    pub(crate) durability: ReadDurability,
    #[cfg(feature = "bench-bare")]
    pub(crate) bench_unaudited: bool,
}

impl AuditWriter {
    /// Starts the writer task on `db`; answers wait for what `durability`
    /// says.
    pub fn start(db: Db, max_batch: usize, durability: ReadDurability) -> AuditWriter {
        let (queue, mut incoming) = mpsc::channel::<(NewEvent, Ack)>(max_batch.max(16) * 4);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let (acks, result) = gather_and_commit(&db, first, &mut incoming, max_batch).await;
                let count = acks.len();
                match result {
                    // Answered at the commit, unless a sync has failed
                    // (nothing committed since is known to reach the disk).
                    Ok(durable) if durability == ReadDurability::Commit => {
                        answer(acks, count, durable.check().map_err(|e| e.to_string()));
                    }
                    // On disk: the batch's answers wait for its commit to
                    // reach the disk, on a task of their own: the next
                    // batch is written meanwhile (SQLite), and one sync
                    // covers both.
                    Ok(durable) => {
                        tokio::spawn(async move {
                            let result = durable.wait().await.map_err(|e| e.to_string());
                            answer(acks, count, result);
                        });
                    }
                    Err(error) => answer(acks, count, Err(error.to_string())),
                }
            }
        });
        AuditWriter {
            queue,
            durability,
            #[cfg(feature = "bench-bare")]
            bench_unaudited: false,
        }
    }

    /// Queues an event and waits until it is committed.
    pub async fn write(&self, event: NewEvent) -> Result<(), ServiceError> {
        self.submit(event).await?.committed().await
    }

    /// Queues an event; its commit is waited for through the
    /// [`Pending`] returned.
    pub async fn submit(&self, event: NewEvent) -> Result<Pending, ServiceError> {
        #[cfg(feature = "bench-bare")]
        if self.bench_unaudited {
            drop(event);
            return Ok(Pending(None));
        }
        let (ack, done) = oneshot::channel();
        self.queue
            .send((event, ack))
            .await
            .map_err(|_| ServiceError::AuditUnavailable("the audit writer has stopped".into()))?;
        Ok(Pending(Some(done)))
    }
}

/// An event queued to the batched writer, not yet known to be committed.
#[derive(Debug)]
#[must_use = "an answer waits for its event's commit"]
pub struct Pending(Option<oneshot::Receiver<Result<(), String>>>);

impl Pending {
    /// Waits until the event is committed (and on disk); the trail's
    /// error if it cannot be (the request is refused: fail closed).
    pub async fn committed(self) -> Result<(), ServiceError> {
        let Some(done) = self.0 else {
            return Ok(());
        };
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ServiceError::AuditUnavailable(error)),
            Err(_) => Err(ServiceError::AuditUnavailable(
                "the audit writer has stopped".into(),
            )),
        }
    }
}

/// An answer whose event is queued and not yet committed: it can be made
/// ready to send (serialized) while the event commits, and is handed out
/// only once the event is committed ([`Recorded::finish`]). Its value is
/// private: there is no other way to it.
#[derive(Debug)]
#[must_use = "an answer is given out once its event is committed"]
pub struct Recorded<T> {
    value: T,
    pending: Pending,
}

impl<T> Recorded<T> {
    /// Prepares the answer from the value (`prepare` runs while the event
    /// commits: what it makes is returned only after the commit), then
    /// waits for the commit; the trail's error refuses the request.
    pub async fn finish<R>(self, prepare: impl FnOnce(T) -> R) -> Result<R, ServiceError> {
        let prepared = prepare(self.value);
        self.pending.committed().await?;
        Ok(prepared)
    }

    /// The value, once its event is committed.
    pub async fn committed(self) -> Result<T, ServiceError> {
        self.finish(|value| value).await
    }
}

/// One group commit: takes `first` and whatever else is queued, up to
/// `max_batch` events, appending each as soon as it is taken where that
/// keeps no one else waiting ([`Batch`]), so that once no more come only
/// the commit itself is left while the requests wait; commits pipelined.
/// Returns the batch's acknowledgements and the commit to wait on, or the
/// error that fails the whole batch (and what is queued when it fails).
async fn gather_and_commit(
    db: &Db,
    first: (NewEvent, Ack),
    incoming: &mut mpsc::Receiver<(NewEvent, Ack)>,
    max_batch: usize,
) -> (Vec<Ack>, Result<Durable, StoreError>) {
    let (event, ack) = first;
    let mut acks = vec![ack];
    let result = gather(db, event, incoming, max_batch, &mut acks).await;
    if result.is_err() {
        // What is queued now fails with the batch, as it would have had
        // the batch been gathered before its transaction began: a trail
        // that cannot be written (say, its lock held for the whole busy
        // timeout) costs the queue one wait, not one wait an event.
        while acks.len() < max_batch {
            match incoming.try_recv() {
                Ok((_, ack)) => acks.push(ack),
                Err(_) => break,
            }
        }
    }
    (acks, result)
}

/// [`gather_and_commit`]'s work, each event taken adding its
/// acknowledgement to `acks`.
async fn gather(
    db: &Db,
    first: NewEvent,
    incoming: &mut mpsc::Receiver<(NewEvent, Ack)>,
    max_batch: usize,
    acks: &mut Vec<Ack>,
) -> Result<Durable, StoreError> {
    let mut batch = Batch::start(db, first).await?;
    // Take what is queued; then let the requests running now queue theirs
    // (a yield or two) before committing, as long as that brings more:
    // fewer, larger commits write fewer WAL pages and syncs per event.
    let mut idle_yields = 0;
    let mut yields = 0;
    while acks.len() < max_batch {
        match incoming.try_recv() {
            Ok((event, ack)) => {
                acks.push(ack);
                idle_yields = 0;
                batch.take(event).await?;
            }
            Err(_) if idle_yields < 2 && yields < 8 => {
                idle_yields += 1;
                yields += 1;
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    batch.commit(db).await
}

/// Where a batch's events go as the writer takes them.
enum Batch {
    /// Appended at once, in a transaction begun at the first (SQLite: the
    /// one writer connection is this server's own, and its changes would
    /// wait for the batch's commit anyway).
    Open(Tx, store::Appender),
    /// Held until the batch is gathered, then appended and committed in
    /// one go (PostgreSQL: the chain's advisory lock is shared by every
    /// server on the database, so it is held for the inserts and the
    /// commit alone, not while this server's requests trickle in).
    Held(Vec<NewEvent>),
}

impl Batch {
    async fn start(db: &Db, first: NewEvent) -> Result<Batch, StoreError> {
        if db.dialect() == Dialect::Postgres {
            return Ok(Batch::Held(vec![first]));
        }
        let mut tx = db.begin().await?;
        let mut appender = store::Appender::begin(&mut tx).await?;
        appender.push(&mut tx, first).await?;
        Ok(Batch::Open(tx, appender))
    }

    async fn take(&mut self, event: NewEvent) -> Result<(), StoreError> {
        match self {
            Batch::Open(tx, appender) => appender.push(tx, event).await,
            Batch::Held(events) => {
                events.push(event);
                Ok(())
            }
        }
    }

    async fn commit(self, db: &Db) -> Result<Durable, StoreError> {
        let tx = match self {
            Batch::Open(mut tx, appender) => {
                appender.finish(&mut tx).await?;
                tx
            }
            Batch::Held(events) => {
                let mut tx = db.begin().await?;
                store::append(&mut tx, events).await?;
                tx
            }
        };
        tx.commit_pipelined().await
    }
}

/// Answers a batch's requests: committed and on disk, or the trail's
/// error (they are refused: fail closed).
fn answer(acks: Vec<Ack>, events: usize, result: Result<(), String>) {
    if let Err(error) = &result {
        tracing::error!(%error, events, "the audit trail cannot be written; refusing the requests");
    }
    for ack in acks {
        let _ = ack.send(result.clone());
    }
}

/// Events the indexer files in one transaction: large enough that a
/// lookup table's page is written once for many events, small enough that
/// the appends waiting behind it on SQLite's one writer wait only a few
/// milliseconds.
pub const INDEX_CHUNK: usize = 4096;

/// Files the trail's lookup keys behind the appends, forever (a task):
/// every `interval`, what was appended since, a chunk at a time.
pub async fn indexer(db: Db, interval: Duration) {
    loop {
        loop {
            match store::index_pending(&db, INDEX_CHUNK).await {
                Ok(filed) if filed == INDEX_CHUNK => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot index the audit trail; queries scan its tail meanwhile");
                    break;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Signs checkpoints of the chain's head, forever (a task): every
/// `every` events or `interval`, whichever comes first ([`checkpoint_tick`]).
pub async fn checkpointer(
    db: Db,
    key: Arc<CheckpointKey>,
    every: i64,
    interval: Duration,
    clock: Arc<dyn crate::Clock>,
) {
    let mut signed = loop {
        match Signed::load(&db, &key).await {
            Ok(signed) => break signed,
            Err(error) => tracing::warn!(%error, "cannot read the last audit checkpoint"),
        }
        tokio::time::sleep(Duration::from_secs(1).min(interval)).await;
    };
    let mut last_signed = tokio::time::Instant::now();
    let mut refused = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250).min(interval)).await;
        let time_due = last_signed.elapsed() >= interval;
        match checkpoint_tick(&db, &key, &mut signed, every, time_due, clock.as_ref()).await {
            Ok(Tick::Signed(_)) => last_signed = tokio::time::Instant::now(),
            Ok(Tick::Idle) => {}
            // Said once; the checkpointer keeps refusing (the chain does
            // not mend itself) until a restart.
            Ok(Tick::Refused(why)) if !refused => {
                refused = true;
                tracing::error!(
                    %why,
                    "the audit trail was altered: no checkpoint is signed any more; run `partnerdb audit verify`"
                );
            }
            Ok(Tick::Refused(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot store an audit checkpoint"),
        }
    }
}

/// The last checkpoint signed with the checkpointer's key, as it knows it
/// (signed by it, or found in the database when it started and verified
/// with its key): what a new checkpoint must follow on from.
#[derive(Debug, Default)]
pub struct Signed(Option<(i64, String)>);

impl Signed {
    /// The database's last checkpoint, if `key` signed it.
    pub async fn load(db: &Db, key: &CheckpointKey) -> Result<Signed, StoreError> {
        let public = key.public();
        Ok(Signed(
            store::latest_checkpoint(db)
                .await?
                .filter(|checkpoint| checkpoint.verify(&public))
                .map(|checkpoint| (checkpoint.seq, checkpoint.hash)),
        ))
    }
}

/// What a checkpointer's tick did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing due.
    Idle,
    /// Signed and stored a checkpoint of the head at this seq.
    Signed(i64),
    /// Signed nothing: what it signed before is no longer in the database
    /// as it signed it (so the chain after it may be forged).
    Refused(String),
}

/// One tick of the checkpointer: signs the head if `every` events came
/// since the last checkpoint, or `time_due` and any came — unless the
/// database no longer holds what this key signed last (its checkpoint
/// deleted, or the event there rewritten): a server must not lend its
/// signature to a chain rewritten under it.
pub async fn checkpoint_tick(
    db: &Db,
    key: &CheckpointKey,
    signed: &mut Signed,
    every: i64,
    time_due: bool,
    clock: &dyn crate::Clock,
) -> Result<Tick, StoreError> {
    let (seq, hash) = store::head(db).await?;
    let latest = store::latest_checkpoint(db).await?;
    let last = latest.as_ref().map_or(0, |checkpoint| checkpoint.seq);
    // Another server with the same key may have signed since: its
    // checkpoint is this key's too, and what a new one must follow on from.
    if let Some(checkpoint) = latest
        && signed
            .0
            .as_ref()
            .is_none_or(|(signed_seq, _)| checkpoint.seq > *signed_seq)
        && checkpoint.verify(&key.public())
    {
        signed.0 = Some((checkpoint.seq, checkpoint.hash));
    }
    if let Some((signed_seq, signed_hash)) = &signed.0 {
        if last < *signed_seq {
            return Ok(Tick::Refused(format!(
                "the checkpoint of event {signed_seq} signed with this key is gone (the last is at {last})"
            )));
        }
        match store::hash_at(db, *signed_seq).await? {
            Some(stored) if stored == *signed_hash => {}
            Some(stored) => {
                return Ok(Tick::Refused(format!(
                    "event {signed_seq} was signed with hash {signed_hash}, but {stored} is stored"
                )));
            }
            None => {
                return Ok(Tick::Refused(format!(
                    "event {signed_seq}, signed with this key, is gone"
                )));
            }
        }
    }
    if seq <= last || (seq - last < every && !time_due) {
        return Ok(Tick::Idle);
    }
    let at = partnerdb_store::format_time(clock.now());
    let checkpoint = key.sign(seq, &hash, &at);
    let mut tx = db.begin().await?;
    store::insert_checkpoint(&mut tx, &checkpoint).await?;
    tx.commit().await?;
    signed.0 = Some((seq, hash));
    Ok(Tick::Signed(seq))
}

/// A refusal the service made, not the policy (a missing record or one
/// out of reach, the maker-checker rule, a field check, a closed or stale
/// object): no grant matched and no policy denial; such events are not
/// replayed by a plan.
pub(crate) fn service_refusal() -> Decision {
    Decision {
        allowed: false,
        fields: FieldSet::EMPTY,
        matched: Default::default(),
        denial: None,
    }
}

/// An allow the service made, not a grant (an author withdrawing their own
/// request, an idempotent replay, a system step).
pub(crate) fn service_allow() -> Decision {
    Decision {
        allowed: true,
        ..service_refusal()
    }
}

/// The decision input of a request, in the batch format of `partnerdb
/// authorize`, so that a recorded decision can be replayed against another
/// policy. Written straight into the event's detail (no JSON tree is built
/// on the way: every read makes one).
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    caller: &'a Caller,
    action: &'a str,
    resource: Target<'a>,
    elevated: bool,
}

/// What a decision input is about: the resource of the request.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A record: type, id, partner, owner and the attributes conditions
    /// see (general fields, the partner's region and tier). No personal
    /// data: pii fields are not attributes.
    Record(&'a Record),
    /// An object named by its type and, if it has one, its id.
    Object(&'a str, Option<&'a str>),
}

/// The input of `caller`'s request to `action` on `resource`.
pub fn input<'a>(
    caller: &'a Caller,
    action: &'a str,
    resource: Target<'a>,
    elevated: bool,
) -> Input<'a> {
    Input {
        caller,
        action,
        resource,
        elevated,
    }
}

impl Serialize for Input<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let principal = &self.caller.principal;
        let elevation = if self.elevated {
            self.caller.elevation.as_ref().map(|e| e.id.as_str())
        } else {
            None
        };
        // Keys in order, as a JSON object's are everywhere in the trail.
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("action", self.action)?;
        map.serialize_entry("elevated", &self.elevated)?;
        map.serialize_entry("elevation", &elevation)?;
        map.serialize_entry(
            "principal",
            &Object(&[
                ("attrs", Piece::Attrs(&principal.attrs)),
                ("id", Piece::Str(&principal.id)),
                ("partner_id", Piece::OptStr(principal.partner_id.as_deref())),
                ("roles", Piece::Strs(&principal.roles)),
            ]),
        )?;
        map.serialize_entry("resource", &self.resource)?;
        map.end()
    }
}

impl Serialize for Target<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Target::Record(record) => Object(&[
                ("attrs", Piece::RecordAttrs(record)),
                ("id", Piece::Str(&record.id)),
                ("owner", Piece::OptStr(record.owner.as_deref())),
                ("partner_id", Piece::Str(&record.partner_id)),
                ("type", Piece::Str(record.kind.name())),
            ])
            .serialize(serializer),
            Target::Object(kind, Some(id)) => {
                Object(&[("id", Piece::Str(id)), ("type", Piece::Str(kind))]).serialize(serializer)
            }
            Target::Object(kind, None) => {
                Object(&[("type", Piece::Str(kind))]).serialize(serializer)
            }
        }
    }
}

/// A record's attributes, in key order: its general text fields, then (a
/// child's) its partner's region and tier, a later one replacing an
/// earlier one of the same name.
fn record_attrs(record: &Record) -> SmallVec<[(&str, &str); 16]> {
    let table = record.table();
    let mut attrs: SmallVec<[(&str, &str); 16]> = table
        .columns
        .iter()
        .zip(&record.values)
        .filter(|(column, _)| column.class == FieldClass::General)
        .filter_map(|(column, value)| Some((column.name, value.as_text()?)))
        .collect();
    if table.is_child() {
        if let Some(region) = &record.partner_region {
            attrs.push(("region", region.as_str()));
        }
        if let Some(tier) = &record.partner_tier {
            attrs.push(("tier", tier.as_str()));
        }
    }
    last_of_each(attrs)
}

/// Sorts `(key, value)` pairs by key (stably) and keeps the last pair of
/// each key: what inserting them in turn into a map gives.
fn last_of_each<'a, V, A: smallvec::Array<Item = (&'a str, V)>>(
    mut pairs: SmallVec<A>,
) -> SmallVec<A> {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = SmallVec::new();
    let mut pairs = pairs.into_iter().peekable();
    while let Some(pair) = pairs.next() {
        if pairs.peek().is_none_or(|next| next.0 != pair.0) {
            out.push(pair);
        }
    }
    out
}

/// A value in an event's detail, serialized as it is found.
#[derive(Clone, Copy, Debug)]
enum Piece<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Bool(bool),
    Strs(&'a [String]),
    Attrs(&'a std::collections::BTreeMap<String, String>),
    RecordAttrs(&'a Record),
    Input(&'a Input<'a>),
    Request(&'a RequestInfo),
    Json(&'a Json),
}

impl Serialize for Piece<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Piece::Str(text) => serializer.serialize_str(text),
            Piece::OptStr(text) => text.serialize(serializer),
            Piece::Bool(flag) => serializer.serialize_bool(flag),
            Piece::Strs(texts) => texts.serialize(serializer),
            Piece::Attrs(attrs) => attrs.serialize(serializer),
            Piece::RecordAttrs(record) => {
                let attrs = record_attrs(record);
                serializer.collect_map(attrs.iter().map(|&(k, v)| (k, v)))
            }
            Piece::Input(input) => input.serialize(serializer),
            Piece::Request(request) => Object(&[
                ("id", Piece::Str(&request.id)),
                ("method", Piece::Str(&request.method)),
                ("route", Piece::Str(&request.route)),
            ])
            .serialize(serializer),
            Piece::Json(value) => value.serialize(serializer),
        }
    }
}

/// A JSON object of pieces, its keys given in order.
struct Object<'s, 'a>(&'s [(&'a str, Piece<'a>)]);

impl Serialize for Object<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, piece)| (key, piece)))
    }
}

/// The fields that differ between two versions of a record (either may be
/// absent: a create or a delete), with values only for general and
/// financial fields.
pub fn changes(before: Option<&Record>, after: Option<&Record>) -> Json {
    let Some(table) = before.or(after).map(Record::table) else {
        return Json::Array(Vec::new());
    };
    let mut out = Vec::new();
    let value_of = |record: Option<&Record>, i: usize| {
        record
            .and_then(|r| r.values.get(i))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for (i, column) in table.columns.iter().enumerate() {
        let (old, new) = (value_of(before, i), value_of(after, i));
        if old == new || (old.is_null() && new.is_null()) {
            continue;
        }
        if matches!(column.name, "updated_at") {
            continue;
        }
        out.push(change_entry(
            column,
            &old,
            &new,
            before.is_some(),
            after.is_some(),
        ));
    }
    for (name, old, new) in [
        (
            "partner_id",
            before.map(|r| r.partner_id.clone()),
            after.map(|r| r.partner_id.clone()),
        ),
        (
            "owner",
            before.and_then(|r| r.owner.clone()),
            after.and_then(|r| r.owner.clone()),
        ),
    ] {
        if old != new {
            out.push(json!({"field": name, "class": "general", "before": old, "after": new}));
        }
    }
    Json::Array(out)
}

/// Whether the trail keeps values of a field of `class` (in changes and
/// list filters): general and financial ones; of personal and legal
/// fields it keeps the names only.
pub(crate) fn keeps_values(class: FieldClass) -> bool {
    matches!(class, FieldClass::General | FieldClass::Financial)
}

fn change_entry(
    column: &partnerdb_store::schema::Column,
    old: &Value,
    new: &Value,
    had_before: bool,
    has_after: bool,
) -> Json {
    let mut entry = Map::new();
    entry.insert("field".into(), Json::from(column.name));
    entry.insert("class".into(), Json::from(column.class.name()));
    if keeps_values(column.class) {
        if had_before {
            entry.insert("before".into(), to_json(column, old));
        }
        if has_after {
            entry.insert("after".into(), to_json(column, new));
        }
    }
    Json::Object(entry)
}

/// What an event says, before it is given its place in the chain.
#[derive(Debug)]
pub struct Draft<'a> {
    /// `decision`, `change` or `principal`.
    pub kind: &'static str,
    /// The action.
    pub action: &'a str,
    /// The resource type.
    pub resource_type: &'a str,
    /// The record or object.
    pub resource_id: Option<&'a str>,
    /// The partner.
    pub partner_id: Option<&'a str>,
    /// The decision (an allow for a change).
    pub decision: &'a Decision,
    /// The deny reason, for a deny.
    pub reason: Option<String>,
    /// The decision input (batch format).
    pub input: Input<'a>,
    /// Further detail (changes, list size, …), merged into the detail.
    pub extra: Json,
}

/// An event's detail (the request, the matched grants or the deny
/// reason, the decision input, whether the policy decided, and the
/// draft's extra keys, which may replace any of these), as JSON text with
/// its keys in order, and the labels of the grants that matched.
fn detail(caller: &Caller, draft: &Draft<'_>) -> (String, Vec<String>) {
    let decision = draft.decision;
    let matched: Vec<String> = if decision.allowed {
        decision
            .matched
            .iter()
            .map(|&g| caller.policy.label(g).to_owned())
            .collect()
    } else {
        Vec::new()
    };
    // Whether the policy made this decision (a replay can reproduce it),
    // or the service did (a missing record, the maker-checker rule, a
    // field check).
    let engine = if decision.allowed {
        !decision.matched.is_empty()
    } else {
        decision.denial.is_some()
    };
    let reason = withhold_free_text(draft.reason.as_deref().unwrap_or("denied"));
    let mut entries: SmallVec<[(&str, Piece<'_>); 12]> = SmallVec::new();
    entries.push(("request", Piece::Request(&caller.request)));
    if decision.allowed {
        entries.push(("matched", Piece::Strs(&matched)));
    } else {
        entries.push(("reason", Piece::Str(&reason)));
        entries.push(("denial", Piece::OptStr(decision.denial.map(|d| d.code()))));
    }
    entries.push(("input", Piece::Input(&draft.input)));
    entries.push(("engine", Piece::Bool(engine)));
    if let Json::Object(extra) = &draft.extra {
        entries.extend(
            extra
                .iter()
                .map(|(key, value)| (key.as_str(), Piece::Json(value))),
        );
    }
    let text = detail_text(&Object(&last_of_each(entries)));
    (text, matched)
}

/// What the trail keeps of a refused policy's diagnostics: each one's
/// severity, code and position, not its message nor the snippet under it,
/// which quote the proposed text (any of which may be personal data: a
/// description, a comment).
fn refusal_reason(code: &str, reason: &str) -> String {
    if code != "policy_invalid" && code != "policy_lint_errors" {
        return reason.to_owned();
    }
    let mut found: Vec<String> = Vec::new();
    for line in reason.lines() {
        let header = ["error[", "warning[", "info["]
            .iter()
            .find(|prefix| line.starts_with(**prefix))
            .and_then(|_| line.split_once("]: "))
            .map(|(head, _)| head);
        if let Some(head) = header {
            found.push(format!("{head}]"));
        } else if let Some(at) = line.trim_start().strip_prefix("--> ")
            && let Some(last) = found.last_mut()
            && !last.contains(" at ")
        {
            last.push_str(" at ");
            last.push_str(at);
        }
    }
    format!(
        "the proposed policy was refused ({code}): {}",
        if found.is_empty() {
            "(no diagnostic)".to_owned()
        } else {
            found.join("; ")
        }
    )
}

/// A refusal's reason as the trail keeps it: what an error text quotes
/// from the request (between backticks: a parameter's or field's name, a
/// value) stays only if it looks like a name or an id (1–64 letters,
/// digits, `-_.:`); free text, which may be personal data, becomes
/// `(withheld)`.
pub(crate) fn withhold_free_text(reason: &str) -> std::borrow::Cow<'_, str> {
    let quoted_free_text = |quoted: &str| !crate::auth::is_request_id(quoted.as_bytes());
    let mut parts = reason.split('`');
    // Odd pieces are quoted (an unmatched last backtick quotes the rest).
    if !parts.clone().skip(1).step_by(2).any(quoted_free_text) {
        return std::borrow::Cow::Borrowed(reason);
    }
    let mut out = String::with_capacity(reason.len());
    for (i, part) in parts.by_ref().enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 && quoted_free_text(part) {
            out.push_str("(withheld)");
        } else {
            out.push_str(part);
        }
    }
    std::borrow::Cow::Owned(out)
}

impl Service {
    /// An event for `caller` from a draft.
    pub fn event(&self, caller: &Caller, draft: Draft<'_>) -> NewEvent {
        let (detail, matched) = detail(caller, &draft);
        let decision = draft.decision;
        if !decision.allowed {
            caller.mark_denied();
        }
        NewEvent {
            at: self.now_text(),
            kind: draft.kind.to_owned(),
            principal_id: Some(caller.principal.id.clone()),
            action: draft.action.to_owned(),
            resource_type: draft.resource_type.to_owned(),
            resource_id: draft.resource_id.map(str::to_owned),
            partner_id: draft.partner_id.map(str::to_owned),
            decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
            policy_version: caller.policy_version.to_string(),
            detail,
            matched,
        }
    }

    /// Records a refusal that no more specific event describes (a missing
    /// or closed object, a stale or conflicting state, a field refused),
    /// then returns it. Storage failures are not refusals: returned as
    /// they are.
    pub(crate) async fn refuse_plain<T>(
        &self,
        caller: &Caller,
        action: &str,
        (resource_type, id): (&str, &str),
        error: ServiceError,
    ) -> Result<T, ServiceError> {
        if matches!(
            error,
            ServiceError::Store(_) | ServiceError::AuditUnavailable(_)
        ) {
            return Err(error);
        }
        let refused = service_refusal();
        let event = self.event(
            caller,
            Draft {
                kind: "decision",
                action,
                resource_type,
                resource_id: Some(id),
                partner_id: None,
                decision: &refused,
                reason: Some(error.to_string()),
                input: input(
                    caller,
                    action,
                    Target::Object(resource_type, Some(id)),
                    false,
                ),
                extra: json!({}),
            },
        );
        self.record(event).await?;
        Err(error)
    }

    /// Records a refusal of `caller`'s request that no step of the service
    /// recorded (the HTTP layer's: a body, a query string, a header or an
    /// id it could not take; a parameter a step refused after its
    /// decision) and waits for its commit: every refusal an authenticated
    /// caller receives has its event.
    pub async fn record_refusal(
        &self,
        caller: &Caller,
        refusal: &Refusal<'_>,
    ) -> Result<(), ServiceError> {
        let refused = service_refusal();
        self.record_with(|| {
            self.event(
                caller,
                Draft {
                    kind: "decision",
                    action: refusal.action,
                    resource_type: refusal.resource_type,
                    resource_id: refusal.resource_id,
                    partner_id: refusal.partner_id,
                    decision: &refused,
                    reason: Some(refusal_reason(refusal.code, refusal.reason)),
                    input: input(
                        caller,
                        refusal.action,
                        Target::Object(refusal.resource_type, refusal.resource_id),
                        false,
                    ),
                    extra: json!({"refusal": {"status": refusal.status, "code": refusal.code}}),
                },
            )
        })
        .await
    }

    /// Records the refusals an operation's steps leave unrecorded (a
    /// missing object, a closed or conflicting state: the refusals the
    /// steps record themselves are forbidden ones) and passes the outcome
    /// on.
    pub(crate) async fn record_unrecorded<T>(
        &self,
        caller: &Caller,
        action: &str,
        on: (&str, &str),
        result: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        match result {
            Err(error @ (ServiceError::NotFound(_) | ServiceError::Conflict { .. })) => {
                self.refuse_plain(caller, action, on, error).await
            }
            other => other,
        }
    }

    /// For a read whose event is recorded before it reads (so that its
    /// answer may show commits made after the event's sync): with answers
    /// on disk, waits until everything committed so far is on disk too, as
    /// the answer's event is. Reads of records need none of this: their
    /// event is committed after what they read.
    pub(crate) async fn settle_read(&self) -> Result<(), ServiceError> {
        if self.audit.durability == ReadDurability::Disk {
            self.db()
                .settle()
                .await
                .map_err(|error| ServiceError::AuditUnavailable(error.to_string()))?;
        }
        Ok(())
    }

    /// Records a read or deny event through the batched writer and waits
    /// for its commit (fail closed: an unwritable trail refuses the
    /// request).
    pub async fn record(&self, event: NewEvent) -> Result<(), ServiceError> {
        self.audit_writer().write(event).await
    }

    /// [`Service::record`] of the event `build` makes. A benchmark build
    /// told to write no read events builds none either, so that its
    /// figures without the trail carry none of the trail's cost.
    pub(crate) async fn record_with(
        &self,
        build: impl FnOnce() -> NewEvent,
    ) -> Result<(), ServiceError> {
        self.recorded_with(build, || ()).await?.committed().await
    }

    /// [`Service::record_with`] without waiting: the event is queued, and
    /// `value` comes back as a [`Recorded`] answer, given out once the
    /// event is committed. The caller makes the answer (renders or
    /// serializes it) while the writer commits. A benchmark build told to
    /// write no read events builds none.
    pub(crate) async fn recorded_with<T>(
        &self,
        build: impl FnOnce() -> NewEvent,
        value: impl FnOnce() -> T,
    ) -> Result<Recorded<T>, ServiceError> {
        #[cfg(feature = "bench-bare")]
        if self.audit_writer().bench_unaudited {
            return Ok(Recorded {
                value: value(),
                pending: Pending(None),
            });
        }
        let pending = self.audit_writer().submit(build()).await?;
        Ok(Recorded {
            value: value(),
            pending,
        })
    }

    /// Records a server's start and how durable its read and deny events
    /// are (`server` `start`, no principal), on disk before it serves: an
    /// auditor reads from the trail itself which events a crash of the
    /// operating system could have lost.
    pub async fn record_start(&self, durability: ReadDurability) -> Result<(), ServiceError> {
        let version = self.policy_version();
        let detail = serde_json::json!({
            "read_event_durability": durability.name(),
            "server_version": env!("CARGO_PKG_VERSION"),
        });
        let event = NewEvent {
            at: self.now_text(),
            kind: "service".to_owned(),
            principal_id: None,
            action: "start".to_owned(),
            resource_type: "server".to_owned(),
            resource_id: None,
            partner_id: None,
            decision: "allow".to_owned(),
            policy_version: version.to_string(),
            detail: detail.to_string(),
            matched: Vec::new(),
        };
        let mut tx = self.db().begin().await?;
        self.append_in(&mut tx, event).await?;
        tx.commit()
            .await
            .map_err(|e| ServiceError::AuditUnavailable(e.to_string()))
    }

    /// Appends a change's event in the change's own transaction.
    pub async fn append_in(&self, tx: &mut Tx, event: NewEvent) -> Result<(), ServiceError> {
        store::append(tx, vec![event])
            .await
            .map_err(|e| ServiceError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }
}

/// A refusal answered to an authenticated caller, as
/// [`Service::record_refusal`] records it.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    /// The action the request asked for (`read`, `create`, `approve`, …).
    pub action: &'a str,
    /// The resource type the route is about.
    pub resource_type: &'a str,
    /// The object the route names, if it names one.
    pub resource_id: Option<&'a str>,
    /// The partner the route names, if it names one.
    pub partner_id: Option<&'a str>,
    /// The answer's HTTP status.
    pub status: u16,
    /// The answer's problem code.
    pub code: &'a str,
    /// Why, as the answer says it.
    pub reason: &'a str,
}

/// The input of a record decision.
pub fn record_decision_input<'a>(
    caller: &'a Caller,
    action: &'a str,
    record: &'a Record,
) -> Input<'a> {
    let elevated = partnerdb_policy::Action::parse(action)
        .is_some_and(|a| caller.elevated_for(record.kind, a, Some(&record.partner_id)));
    input(caller, action, Target::Record(record), elevated)
}

/// The JSON text of an event's detail.
fn detail_text(detail: &Object<'_, '_>) -> String {
    #[expect(
        clippy::expect_used,
        reason = "a detail holds only strings, booleans, arrays and objects keyed by strings: serde_json cannot refuse it"
    )]
    serde_json::to_string(detail).expect("an event's detail serializes")
}

/// Why a chain did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken here.
    #[error("{0}")]
    Broken(#[from] partnerdb_audit::Break),
    /// The trail could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events verified.
    pub events: i64,
    /// The last event's hash.
    pub head: String,
    /// Checkpoints checked (stored and given).
    pub checkpoints: usize,
}

/// Verifies the whole stored chain, its stored checkpoints and `given`
/// ones (exported earlier), with signatures checked against `key` — or,
/// without one, against the public key kept with each checkpoint (which
/// catches edits, not an attacker who also replaced the checkpoints).
/// `progress` is called with the last verified seq after every page.
pub async fn verify(
    db: &Db,
    given: Vec<partnerdb_audit::Checkpoint>,
    key: Option<&partnerdb_audit::PublicKey>,
    mut progress: impl FnMut(i64),
) -> Result<VerifyReport, VerifyError> {
    let mut checkpoints = store::checkpoints(db).await?;
    checkpoints.extend(given);
    if key.is_none() {
        for checkpoint in &checkpoints {
            let own = partnerdb_audit::PublicKey::from_hex(&checkpoint.public_key);
            if !own.is_some_and(|k| checkpoint.verify(&k)) {
                return Err(partnerdb_audit::Break::Signature {
                    seq: checkpoint.seq,
                }
                .into());
            }
        }
    }
    let count = checkpoints.len();
    let mut verifier = partnerdb_audit::ChainVerifier::new(checkpoints, key);
    // The chain is read in slices up to the head seen now (after the
    // checkpoints, so none lies beyond it), a few slices ahead in parallel.
    // Each event's content is hashed where its slice is read (SQLite: on a
    // blocking thread; PostgreSQL: on the slice's task, as rows arrive; an
    // event's hash needs only its own fields and its stored link), so
    // slices are hashed at once too; the links, the
    // sequence and the checkpoints are then followed here in order.
    const SLICE: i64 = 10_000;
    const AHEAD: usize = 4;
    let (last_seq, _) = store::head(db).await?;
    let mut pending = std::collections::VecDeque::new();
    // A row below 1 (inserted by hand, at any seq down to i64::MIN) is a
    // break to report, not something to read past.
    if let Some(lowest) = store::lowest_seq(db).await?
        && lowest < 1
    {
        return Err(partnerdb_audit::Break::Sequence {
            previous: 0,
            expected: 1,
            found: lowest,
        }
        .into());
    }
    let mut next = 0;
    loop {
        while pending.len() < AHEAD && next < last_seq {
            let (db, after, through) = (db.clone(), next, next.saturating_add(SLICE).min(last_seq));
            let task =
                tokio::spawn(async move { store::checked_between(&db, after, through).await });
            pending.push_back((through, task));
            next = through;
        }
        let Some((through, slice)) = pending.pop_front() else {
            break;
        };
        let slice = match slice.await {
            Ok(slice) => slice?,
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        };
        if slice.is_empty() {
            // A whole slice is missing (the chain is broken here): go on
            // from the next event there is, so that a tampered huge seq
            // costs one query, not a walk through empty slices.
            for (_, task) in pending.drain(..) {
                task.abort();
            }
            match store::events_after(db, through, 1).await?.first() {
                Some(event) => next = event.event.seq - 1,
                None => break,
            }
            continue;
        }
        let last = slice.last().map(|event| event.seq);
        for event in slice {
            verifier.push_checked(event.seq, &event.prev_hash, &event.hash, event.mismatch)?;
        }
        if let Some(last) = last {
            progress(last);
        }
    }
    let head = verifier.head().1.to_owned();
    let events = verifier.finish()?;
    Ok(VerifyReport {
        events,
        head,
        checkpoints: count,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use partnerdb_policy::{Action, Denial, GrantRef, ResourceType};
    use partnerdb_store::principals::PrincipalRow;

    use super::*;
    use crate::auth::ActiveElevation;

    /// The detail as the trail built it before it was written straight to
    /// text: a JSON tree of maps, printed (the reference).
    fn reference(caller: &Caller, draft: &Draft<'_>, resource: Json) -> String {
        let decision = draft.decision;
        let mut detail = Map::new();
        detail.insert(
            "request".into(),
            json!({"id": caller.request.id, "method": caller.request.method, "route": caller.request.route}),
        );
        if decision.allowed {
            let matched: Vec<&str> = decision
                .matched
                .iter()
                .map(|&g| caller.policy.label(g))
                .collect();
            detail.insert("matched".into(), json!(matched));
        } else {
            detail.insert(
                "reason".into(),
                json!(draft.reason.clone().unwrap_or_else(|| "denied".into())),
            );
            detail.insert("denial".into(), json!(decision.denial.map(|d| d.code())));
        }
        let elevated = draft.input.elevated;
        detail.insert(
            "input".into(),
            json!({
                "principal": {
                    "id": caller.principal.id,
                    "roles": caller.principal.roles,
                    "partner_id": caller.principal.partner_id,
                    "attrs": caller.principal.attrs,
                },
                "action": draft.input.action,
                "resource": resource,
                "elevated": elevated,
                "elevation": if elevated { caller.elevation.as_ref().map(|e| e.id.as_str()) } else { None },
            }),
        );
        let engine = if decision.allowed {
            !decision.matched.is_empty()
        } else {
            decision.denial.is_some()
        };
        detail.insert("engine".into(), Json::Bool(engine));
        if let Json::Object(extra) = &draft.extra {
            detail.extend(extra.clone());
        }
        Json::Object(detail).to_string()
    }

    /// A record as the reference's decision input has it.
    fn reference_record(record: &Record) -> Json {
        let table = record.table();
        let mut attrs = Map::new();
        for (column, value) in table.columns.iter().zip(&record.values) {
            if column.class == FieldClass::General
                && let Some(text) = value.as_text()
            {
                attrs.insert(column.name.into(), Json::from(text));
            }
        }
        if table.is_child() {
            if let Some(region) = &record.partner_region {
                attrs.insert("region".into(), Json::from(region.as_str()));
            }
            if let Some(tier) = &record.partner_tier {
                attrs.insert("tier".into(), Json::from(tier.as_str()));
            }
        }
        json!({"type": record.kind.name(), "id": record.id, "partner_id": record.partner_id, "owner": record.owner, "attrs": attrs})
    }

    fn caller(partner: Option<&str>, elevation: bool) -> Caller {
        let policy = crate::compile(crate::STARTER_POLICY).expect("the starter policy compiles");
        let principal = PrincipalRow {
            id: "u-1\"x".into(),
            kind: "user".into(),
            name: "Ana".into(),
            partner_id: partner.map(str::to_owned),
            attrs: BTreeMap::from([
                ("region".into(), "emea".into()),
                ("a\u{e9}".into(), "\\v".into()),
            ]),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            roles: vec!["admin".into(), "partner_manager".into()],
        };
        let mut caller = Caller::new(principal, Arc::new(policy), "v7".into());
        caller.request = RequestInfo {
            id: "req-1".into(),
            method: "GET".into(),
            route: "/v1/partners/{id}".into(),
        };
        if elevation {
            caller.elevation = Some(Arc::new(ActiveElevation {
                id: "el-1".into(),
                permissions: vec![(ResourceType::Partner, Action::Read)],
                partner_id: None,
                expires_at: String::new(),
            }));
        }
        caller
    }

    /// A record of `kind` with text in every column but one, which is NULL,
    /// and numbers where the column holds them.
    fn sample(kind: ResourceType, tier: Option<&str>) -> Record {
        let columns = partnerdb_store::schema::Table::of(kind).map_or(&[][..], |t| t.columns);
        let values = columns
            .iter()
            .enumerate()
            .map(|(i, column)| match column.kind {
                _ if i == 1 => Value::Null,
                partnerdb_store::schema::Kind::Money | partnerdb_store::schema::Kind::Rate => {
                    Value::Int(10 + i as i64)
                }
                _ => Value::Text(format!("v{i}\"\u{e9}")),
            })
            .collect();
        Record {
            kind,
            id: "r1".into(),
            partner_id: "p1".into(),
            owner: (kind != ResourceType::Contact).then(|| "u-2".into()),
            version: 1,
            values,
            partner_region: Some("emea".into()),
            partner_tier: tier.map(str::to_owned),
        }
    }

    #[test]
    fn quoted_free_text_is_withheld_from_reasons() {
        for (given, kept) in [
            (
                "unknown query parameter `colour`",
                "unknown query parameter `colour`",
            ),
            (
                "no contract `nope` of this partner",
                "no contract `nope` of this partner",
            ),
            (
                "no resource type `jane.doe@example.com`",
                "no resource type `(withheld)`",
            ),
            (
                "unknown query parameter `Jane Doe`; see `limit`",
                "unknown query parameter `(withheld)`; see `limit`",
            ),
            ("a trailing `free text", "a trailing `(withheld)"),
            ("an empty ``", "an empty `(withheld)`"),
            ("nothing quoted", "nothing quoted"),
        ] {
            assert_eq!(withhold_free_text(given), kept, "{given}");
        }
    }

    #[test]
    fn details_are_written_as_the_json_tree_printed_them() {
        let grants: partnerdb_policy::engine::Matched = [
            GrantRef { role: 0, grant: 0 },
            GrantRef { role: 1, grant: 2 },
        ]
        .into_iter()
        .collect();
        let decisions = [
            Decision {
                allowed: true,
                fields: FieldSet::EMPTY,
                matched: grants.clone(),
                denial: None,
            },
            service_allow(),
            Decision {
                allowed: false,
                fields: FieldSet::EMPTY,
                matched: grants,
                denial: Some(Denial::ElevationRequired),
            },
            service_refusal(),
        ];
        let extras = [
            json!({}),
            json!({"list": {"returned": 20, "filters": "a=b"}, "changes": [{"field": "name"}]}),
            // Extra keys replace the event's own.
            json!({"engine": "replaced", "input": null, "zz": 1}),
        ];
        let mut checked = 0;
        for (partner, elevation) in [(None, false), (Some("p1"), true)] {
            let caller = caller(partner, elevation);
            for decision in &decisions {
                for reason in [None, Some("no grant \"covers\" it".to_owned())] {
                    for extra in &extras {
                        let mut targets = vec![
                            (
                                Target::Object("policy", Some("7")),
                                json!({"type": "policy", "id": "7"}),
                            ),
                            (
                                Target::Object("transaction", None),
                                json!({"type": "transaction"}),
                            ),
                        ];
                        let records: Vec<Record> = partnerdb_store::schema::RECORD_TYPES
                            .iter()
                            .flat_map(|&kind| [sample(kind, None), sample(kind, Some("gold"))])
                            .collect();
                        targets.extend(
                            records
                                .iter()
                                .map(|r| (Target::Record(r), reference_record(r))),
                        );
                        for (target, resource) in targets {
                            let draft = Draft {
                                kind: "decision",
                                action: "read",
                                resource_type: "partner",
                                resource_id: None,
                                partner_id: None,
                                decision,
                                reason: reason.clone(),
                                input: input(&caller, "read", target, elevation),
                                extra: extra.clone(),
                            };
                            let (text, _) = detail(&caller, &draft);
                            assert_eq!(text, reference(&caller, &draft, resource), "{draft:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
