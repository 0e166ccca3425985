//! Writing the audit trail: every decision and change becomes an event.
//!
//! - A change and its event are appended in the change's own transaction
//!   (they commit together or not at all): [`Service::append_in`].
//! - Read and deny events go through one batched writer (group commit):
//!   events queued while a batch commits go into the next; a request gets
//!   its answer only after its event is committed ([`Service::record`]),
//!   and an error from the trail refuses the request (fail closed).
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
use partnerdb_store::{Db, Durable, StoreError, Tx, Value};
use serde_json::{Map, Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use crate::Service;
use crate::auth::Caller;
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
            #[cfg(feature = "bench-bare")]
            bench_unaudited: false,
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

/// The handle on the batched writer.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<(NewEvent, Ack)>,
    #[cfg(feature = "bench-bare")]
    pub(crate) bench_unaudited: bool,
}

impl AuditWriter {
    /// Starts the writer task on `db`.
    pub fn start(db: Db, max_batch: usize) -> AuditWriter {
        let (queue, mut incoming) = mpsc::channel::<(NewEvent, Ack)>(max_batch.max(16) * 4);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                // Take what is queued; then let the requests running now
                // queue theirs (a yield or two) before committing, as long
                // as that brings more: fewer, larger commits write fewer
                // WAL pages and syncs per event.
                let mut idle_yields = 0;
                let mut yields = 0;
                while batch.len() < max_batch {
                    match incoming.try_recv() {
                        Ok(next) => {
                            batch.push(next);
                            idle_yields = 0;
                        }
                        Err(_) if idle_yields < 2 && yields < 8 => {
                            idle_yields += 1;
                            yields += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(_) => break,
                    }
                }
                let (events, acks): (Vec<NewEvent>, Vec<Ack>) = batch.into_iter().unzip();
                // The batch's answers wait for its commit to reach the
                // disk, on a task of their own: the next batch is written
                // meanwhile (SQLite), and one sync covers both.
                let count = events.len();
                match commit_batch(&db, &events).await {
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
            #[cfg(feature = "bench-bare")]
            bench_unaudited: false,
        }
    }

    /// Queues an event and waits until it is committed.
    pub async fn write(&self, event: NewEvent) -> Result<(), ServiceError> {
        #[cfg(feature = "bench-bare")]
        if self.bench_unaudited {
            drop(event);
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.queue
            .send((event, ack))
            .await
            .map_err(|_| ServiceError::AuditUnavailable("the audit writer has stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ServiceError::AuditUnavailable(error)),
            Err(_) => Err(ServiceError::AuditUnavailable(
                "the audit writer has stopped".into(),
            )),
        }
    }
}

async fn commit_batch(db: &Db, events: &[NewEvent]) -> Result<Durable, StoreError> {
    let mut tx = db.begin().await?;
    store::append(&mut tx, events).await?;
    tx.commit_pipelined().await
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

/// Signs checkpoints of the chain's head, forever (a task).
pub async fn checkpointer(
    db: Db,
    key: Arc<CheckpointKey>,
    every: i64,
    interval: Duration,
    clock: Arc<dyn crate::Clock>,
) {
    let mut last_signed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250).min(interval)).await;
        let Ok((seq, hash)) = store::head(&db).await else {
            continue;
        };
        let Ok(last) = store::last_checkpoint(&db).await else {
            continue;
        };
        let due = seq > last && (seq - last >= every || last_signed.elapsed() >= interval);
        if !due {
            continue;
        }
        let at = partnerdb_store::format_time(clock.now());
        let checkpoint = key.sign(seq, &hash, &at);
        let written = async {
            let mut tx = db.begin().await?;
            store::insert_checkpoint(&mut tx, &checkpoint).await?;
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => last_signed = tokio::time::Instant::now(),
            Err(error) => tracing::warn!(%error, "cannot store an audit checkpoint"),
        }
    }
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

/// The decision input of a request on a record, in the batch format of
/// `partnerdb authorize`, so that a recorded decision can be replayed
/// against another policy.
pub fn input(caller: &Caller, action: &str, resource: Json, elevated: bool) -> Json {
    json!({
        "principal": {
            "id": caller.principal.id,
            "roles": caller.principal.roles,
            "partner_id": caller.principal.partner_id,
            "attrs": caller.principal.attrs,
        },
        "action": action,
        "resource": resource,
        "elevated": elevated,
        "elevation": if elevated { caller.elevation.as_ref().map(|e| e.id.as_str()) } else { None },
    })
}

/// A record as a decision input: type, id, partner, owner and the
/// attributes conditions see (general fields, the partner's region and
/// tier). No personal data: pii fields are not attributes.
pub fn record_input(record: &Record) -> Json {
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
    json!({
        "type": record.kind.name(),
        "id": record.id,
        "partner_id": record.partner_id,
        "owner": record.owner,
        "attrs": attrs,
    })
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
    if matches!(column.class, FieldClass::General | FieldClass::Financial) {
        if had_before {
            entry.insert("before".into(), to_json(column, old));
        }
        if has_after {
            entry.insert("after".into(), to_json(column, new));
        }
    }
    Json::Object(entry)
}

/// The `matched` grants or the deny reason of a decision.
fn outcome(caller: &Caller, decision: &Decision, reason: Option<String>) -> (Vec<String>, Json) {
    if decision.allowed {
        let matched: Vec<String> = decision
            .matched
            .iter()
            .map(|&g| caller.policy.label(g).to_owned())
            .collect();
        (matched.clone(), json!({"matched": matched}))
    } else {
        (
            Vec::new(),
            json!({"reason": reason.unwrap_or_else(|| "denied".into()), "denial": decision.denial.map(|d| d.code())}),
        )
    }
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
    pub input: Json,
    /// Further detail (changes, list size, …), merged into the detail.
    pub extra: Json,
}

impl Service {
    /// An event for `caller` from a draft.
    pub fn event(&self, caller: &Caller, draft: Draft<'_>) -> NewEvent {
        let (matched, outcome) = outcome(caller, draft.decision, draft.reason);
        let mut detail = Map::new();
        detail.insert(
            "request".into(),
            json!({"id": caller.request.id, "method": caller.request.method, "route": caller.request.route}),
        );
        if let Json::Object(outcome) = outcome {
            detail.extend(outcome);
        }
        detail.insert("input".into(), draft.input);
        // Whether the policy made this decision (a replay can reproduce
        // it), or the service did (a missing record, the maker-checker
        // rule, a field check).
        let engine = if draft.decision.allowed {
            !draft.decision.matched.is_empty()
        } else {
            draft.decision.denial.is_some()
        };
        detail.insert("engine".into(), Json::Bool(engine));
        if let Json::Object(extra) = draft.extra {
            detail.extend(extra);
        }
        NewEvent {
            at: self.now_text(),
            kind: draft.kind.to_owned(),
            principal_id: Some(caller.principal.id.clone()),
            action: draft.action.to_owned(),
            resource_type: draft.resource_type.to_owned(),
            resource_id: draft.resource_id.map(str::to_owned),
            partner_id: draft.partner_id.map(str::to_owned),
            decision: if draft.decision.allowed {
                "allow"
            } else {
                "deny"
            }
            .to_owned(),
            policy_version: caller.policy_version.to_string(),
            detail: Json::Object(detail).to_string(),
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
                    json!({"type": resource_type, "id": id}),
                    false,
                ),
                extra: json!({}),
            },
        );
        self.record(event).await?;
        Err(error)
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
        #[cfg(feature = "bench-bare")]
        if self.audit_writer().bench_unaudited {
            return Ok(());
        }
        self.record(build()).await
    }

    /// Appends a change's event in the change's own transaction.
    pub async fn append_in(&self, tx: &mut Tx, event: NewEvent) -> Result<(), ServiceError> {
        store::append(tx, std::slice::from_ref(&event))
            .await
            .map_err(|e| ServiceError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }
}

/// The input of a record decision.
pub fn record_decision_input(caller: &Caller, action: &str, record: &Record) -> Json {
    let elevated = partnerdb_policy::Action::parse(action)
        .is_some_and(|a| caller.elevated_for(record.kind, a, Some(&record.partner_id)));
    input(caller, action, record_input(record), elevated)
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
/// without one, against the public key stored with each checkpoint (which
/// catches edits, not an attacker who also replaced the checkpoints).
/// `progress` is called with the last verified seq after every page.
pub async fn verify(
    db: &Db,
    given: Vec<partnerdb_audit::Checkpoint>,
    key: Option<&partnerdb_audit::PublicKey>,
    mut progress: impl FnMut(i64),
) -> Result<VerifyReport, VerifyError> {
    let mut checkpoints = store::checkpoints(db).await?;
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
    checkpoints.extend(given);
    let count = checkpoints.len();
    let mut verifier = partnerdb_audit::ChainVerifier::new(checkpoints, key);
    // The chain is read in slices up to the head seen now (after the
    // checkpoints, so none lies beyond it), a few slices ahead in parallel
    // while the current one is hashed.
    const SLICE: i64 = 10_000;
    const AHEAD: usize = 4;
    let (last_seq, _) = store::head(db).await?;
    let mut pending = std::collections::VecDeque::new();
    let mut next = 0;
    loop {
        while pending.len() < AHEAD && next < last_seq {
            let (db, after, through) = (db.clone(), next, (next + SLICE).min(last_seq));
            let task =
                tokio::spawn(async move { store::events_between(&db, after, through).await });
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
        for event in &slice {
            verifier.push(event)?;
        }
        if let Some(last) = slice.last() {
            progress(last.event.seq);
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
