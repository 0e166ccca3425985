//! Reading and writing partner records under the policy: every request is
//! decided, reads return only the granted field classes, writes may touch
//! only writable classes, a record the caller may not read does not exist
//! for it (404, as if missing), lists are scoped in SQL and paged with
//! signed keyset cursors, updates honour `If-Match`, creates honour an
//! `Idempotency-Key` stored in the write's own transaction.

use std::borrow::Borrow;

use partnerdb_policy::{
    Action, Decision, Denial, FieldClass, FieldSet, Request, Resource, ResourceType,
};
use partnerdb_store::records::{self, After, Filter, ListQuery, Op, Record, Sort};
use partnerdb_store::schema::{Column, Kind, Table};
use partnerdb_store::{StoreError, Tx, Value, principals};
use serde_json::Value as Json;

use crate::Service;
use crate::audit::{self, Draft, Recorded, Target, service_allow, service_refusal};
use crate::auth::Caller;
use crate::codec::{ColumnValue, from_json, normalize_timestamp, object};
use crate::error::ServiceError;
use partnerdb_store::audit::NewEvent;
use serde_json::json;

/// A record as one caller may see it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordView {
    /// The visible fields, as a JSON object.
    pub body: Json,
    /// The record's ETag (quoted).
    pub etag: String,
}

/// One page of a list, serialized as `{"items": […], "next_cursor": …}`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Page {
    /// The records, each with the fields the caller may see on it.
    pub items: Vec<Visible>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// A record (owned or borrowed) with the fields its reader may see,
/// serialized straight from the row: `id`, `partner_id`, `owner` and the
/// columns of the classes in `fields`, keys sorted by name. The one place
/// that says what a reader sees of a record ([`render`] is its JSON value).
#[derive(Clone, Debug)]
pub struct Visible<R = Record> {
    record: R,
    fields: FieldSet,
}

impl<R: Borrow<Record>> Visible<R> {
    /// `record` showing only the fields in `fields`.
    pub fn new(record: R, fields: FieldSet) -> Visible<R> {
        Visible { record, fields }
    }
}

impl<R: Borrow<Record>> serde::Serialize for Visible<R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let record: &Record = self.record.borrow();
        let columns = record.table().columns;
        let visible = |key: &Key| match key {
            Key::Column(i) => columns
                .get(*i)
                .is_some_and(|c| self.fields.contains(c.class)),
            _ => true,
        };
        let order = key_order(record.kind);
        let mut map =
            serializer.serialize_map(Some(order.iter().filter(|k| visible(k)).count()))?;
        for key in order.iter().filter(|k| visible(k)) {
            match key {
                Key::Id => map.serialize_entry("id", &record.id)?,
                Key::PartnerId => map.serialize_entry("partner_id", &record.partner_id)?,
                Key::Owner => map.serialize_entry("owner", &record.owner)?,
                Key::Column(i) => {
                    if let (Some(column), Some(value)) = (columns.get(*i), record.values.get(*i)) {
                        map.serialize_entry(column.name, &ColumnValue(column, value))?;
                    }
                }
            }
        }
        map.end()
    }
}

/// A key of a rendered record.
#[derive(Clone, Copy, Debug)]
enum Key {
    Id,
    PartnerId,
    Owner,
    /// The table's column at this index.
    Column(usize),
}

/// A record type's keys sorted by name (as a JSON object orders them),
/// worked out once per type.
fn key_order(kind: ResourceType) -> &'static [Key] {
    static ORDERS: std::sync::OnceLock<Vec<(ResourceType, Vec<Key>)>> = std::sync::OnceLock::new();
    let orders = ORDERS.get_or_init(|| {
        partnerdb_store::schema::RECORD_TYPES
            .iter()
            .map(|&kind| {
                let columns = table(kind).map_or(&[][..], |t| t.columns);
                let mut keys: Vec<(&str, Key)> = vec![
                    ("id", Key::Id),
                    ("partner_id", Key::PartnerId),
                    ("owner", Key::Owner),
                ];
                keys.extend(
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name, Key::Column(i))),
                );
                keys.sort_by_key(|(name, _)| *name);
                (kind, keys.into_iter().map(|(_, key)| key).collect())
            })
            .collect()
    });
    orders
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&[], |(_, keys)| keys.as_slice())
}

/// An `Idempotency-Key` and the request it came with.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// SHA-256 (hex) of the request body.
    pub body_hash: String,
}

/// The answer to a create.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    /// The record created (or, on a replay, created before).
    pub view: RecordView,
    /// Whether this is the stored answer of an earlier identical request.
    pub replayed: bool,
}

/// Limits on list requests.
pub const MAX_PAGE: usize = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;
/// The most filters one list may have.
pub const MAX_FILTERS: usize = 16;
/// How long an idempotency key is kept.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn table(kind: ResourceType) -> Result<Table, ServiceError> {
    Table::of(kind).ok_or(ServiceError::NotFound("resource type"))
}

pub(crate) fn noun(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Partner => "partner",
        ResourceType::Contact => "contact",
        ResourceType::Contract => "contract",
        ResourceType::Transaction => "transaction",
        _ => "record",
    }
}

/// The engine's request for `action` on `record` by `caller`.
fn request_on<'a>(caller: &'a Caller, action: Action, record: &'a Record) -> Request<'a> {
    Request {
        principal: caller.engine(),
        action,
        resource: Resource {
            kind: record.kind,
            id: &record.id,
            partner_id: Some(&record.partner_id),
            owner: record.owner.as_deref(),
            attrs: record,
        },
        elevated: caller.elevated_for(record.kind, action, Some(&record.partner_id)),
    }
}

/// Decides `action` on a stored (or about to be stored) record.
pub fn decide(caller: &Caller, action: Action, record: &Record) -> Decision {
    caller.policy.decide(&request_on(caller, action, record))
}

/// The refusal for a denied write the caller may read about.
pub(crate) fn refusal(
    caller: &Caller,
    action: Action,
    record: &Record,
    decision: &Decision,
) -> ServiceError {
    if decision.denial == Some(Denial::ElevationRequired) {
        return ServiceError::ElevationRequired {
            permission: format!("{}:{action}", record.kind),
        };
    }
    let _ = caller;
    ServiceError::forbidden(
        "forbidden",
        format!("you may not {action} this {}", noun(record.kind)),
    )
}

/// Why `decision` denied `action` on `record`, in words.
pub(crate) fn reason(
    caller: &Caller,
    action: Action,
    record: &Record,
    decision: &Decision,
) -> Option<String> {
    caller
        .policy
        .deny_reason(&request_on(caller, action, record), decision)
}

impl Service {
    /// The event of a decision on a record; `kind` is `decision` for reads
    /// and refusals, `change` for a change (with `extra` holding the
    /// changes).
    pub(crate) fn record_event(
        &self,
        caller: &Caller,
        kind: &'static str,
        action: Action,
        record: &Record,
        decision: &Decision,
        extra: Json,
    ) -> NewEvent {
        let why = if decision.allowed {
            None
        } else {
            reason(caller, action, record, decision)
        };
        self.event(
            caller,
            Draft {
                kind,
                action: action.name(),
                resource_type: record.kind.name(),
                resource_id: Some(&record.id),
                partner_id: Some(&record.partner_id),
                decision,
                reason: why,
                input: audit::record_decision_input(caller, action.name(), record),
                extra,
            },
        )
    }

    /// The event of a request about a record that does not exist or is out
    /// of the caller's reach (answered 404).
    pub(crate) fn unseen_event(
        &self,
        caller: &Caller,
        action: Action,
        kind: ResourceType,
        id: &str,
        why: &str,
    ) -> NewEvent {
        self.event(
            caller,
            Draft {
                kind: "decision",
                action: action.name(),
                resource_type: kind.name(),
                resource_id: Some(id),
                partner_id: None,
                decision: &service_refusal(),
                reason: Some(why.to_owned()),
                input: audit::input(
                    caller,
                    action.name(),
                    Target::Object(kind.name(), Some(id)),
                    caller.elevated_for(kind, action, None),
                ),
                extra: json!({}),
            },
        )
    }

    /// The event of a list request.
    fn list_event(
        &self,
        caller: &Caller,
        kind: ResourceType,
        decision: &Decision,
        why: Option<&str>,
        extra: Json,
    ) -> NewEvent {
        self.event(
            caller,
            Draft {
                kind: "decision",
                action: Action::Read.name(),
                resource_type: kind.name(),
                resource_id: None,
                partner_id: None,
                decision,
                reason: why.map(str::to_owned),
                input: audit::input(
                    caller,
                    "read",
                    Target::Object(kind.name(), None),
                    caller.elevated_for(kind, Action::Read, None),
                ),
                extra,
            },
        )
    }

    /// The event of a write refused for one of its fields.
    fn field_refusal_event(
        &self,
        caller: &Caller,
        action: Action,
        record: &Record,
        error: &ServiceError,
    ) -> NewEvent {
        self.event(
            caller,
            Draft {
                kind: "decision",
                action: action.name(),
                resource_type: record.kind.name(),
                resource_id: Some(&record.id),
                partner_id: Some(&record.partner_id),
                decision: &service_refusal(),
                reason: Some(error.to_string()),
                input: audit::record_decision_input(caller, action.name(), record),
                extra: json!({}),
            },
        )
    }

    /// Writes a refusal's event (after the refused request's transaction
    /// has ended) and returns the refusal.
    pub(crate) async fn refuse<T>(
        &self,
        error: ServiceError,
        event: Option<NewEvent>,
    ) -> Result<T, ServiceError> {
        if let Some(event) = event {
            self.record(event).await?;
        }
        Err(error)
    }

    /// Records a change's refusal and returns it: the event a step made
    /// (a denial, a record out of reach), or, where no step made one, a
    /// service refusal naming the reason (a stale `If-Match`, a lost
    /// version race, an invalid body or reference, dependents left, an
    /// `Idempotency-Key` reused), so that a change the policy allowed and
    /// the service then refused has its event too. Storage failures are
    /// not refusals: returned as they are. `id` is empty for a create.
    async fn refuse_change<T>(
        &self,
        caller: &Caller,
        (action, kind, id): (Action, ResourceType, &str),
        error: ServiceError,
        event: Option<NewEvent>,
    ) -> Result<T, ServiceError> {
        if event.is_some()
            || matches!(
                error,
                ServiceError::Store(_) | ServiceError::AuditUnavailable(_)
            )
        {
            return self.refuse(error, event).await;
        }
        let event = self.unseen_event(caller, action, kind, id, &error.to_string());
        self.refuse(error, Some(event)).await
    }
}

/// The record's fields of the given classes, as JSON; `id`, `partner_id`
/// and `owner` always.
pub fn render(record: &Record, fields: FieldSet) -> Json {
    serde_json::to_value(Visible::new(record, fields)).unwrap_or(Json::Null)
}

pub(crate) fn view(record: &Record, fields: FieldSet) -> RecordView {
    RecordView {
        body: render(record, fields),
        etag: etag(record.version),
    }
}

/// A field the request writes: its column (or `partner_id` / `owner`) and
/// class.
pub(crate) struct Written {
    pub(crate) name: String,
    pub(crate) class: FieldClass,
}

/// The fields of a request body, parsed into `record` (whose values start
/// as they are, or as defaults for a create). Returns the fields written.
pub(crate) fn apply_body(
    kind: ResourceType,
    body: &Json,
    record: &mut Record,
    creating: bool,
) -> Result<(Vec<Written>, Option<String>), ServiceError> {
    let table = table(kind)?;
    let object = object(body, "")?;
    let mut written = Vec::with_capacity(object.len());
    let mut new_partner = None;
    for (name, json) in object {
        let path = format!("/{}", escape_pointer(name));
        match name.as_str() {
            "id" | "version" => {
                return Err(ServiceError::invalid(
                    "read_only_field",
                    path,
                    format!("`{name}` is set by the server"),
                ));
            }
            "partner_id" if table.is_child() => {
                let partner = json
                    .as_str()
                    .filter(|id| crate::auth::is_request_id(id.as_bytes()))
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            "wrong_type",
                            path,
                            "`partner_id` must be a partner id",
                        )
                    })?;
                new_partner = Some(partner.to_owned());
                written.push(Written {
                    name: name.clone(),
                    class: FieldClass::General,
                });
            }
            "owner" if !table.is_child() => {
                let owner = match json {
                    Json::Null => None,
                    Json::String(id) if crate::auth::is_request_id(id.as_bytes()) => {
                        Some(id.clone())
                    }
                    _ => {
                        return Err(ServiceError::invalid(
                            "wrong_type",
                            path,
                            "`owner` must be a principal id or null",
                        ));
                    }
                };
                record.owner = owner;
                written.push(Written {
                    name: name.clone(),
                    class: FieldClass::General,
                });
            }
            "partner_id" | "owner" => {
                return Err(ServiceError::invalid(
                    "read_only_field",
                    path,
                    format!("`{name}` of a {} follows its partner", noun(kind)),
                ));
            }
            _ => {
                let Some((index, column)) = table.column(name) else {
                    return Err(ServiceError::invalid(
                        "unknown_field",
                        path,
                        format!("{} has no field `{name}`", noun(kind)),
                    ));
                };
                if !column.writable {
                    return Err(ServiceError::invalid(
                        "read_only_field",
                        path,
                        format!("`{name}` is set by the server"),
                    ));
                }
                let mut value = from_json(column, json, &path)?;
                if column.kind == Kind::Timestamp
                    && let Value::Text(text) = &value
                {
                    value = Value::Text(normalize_timestamp(text).unwrap_or_default());
                }
                if let Some(slot) = record.values.get_mut(index) {
                    *slot = value;
                }
                written.push(Written {
                    name: name.clone(),
                    class: column.class,
                });
            }
        }
    }
    if creating {
        for (column, value) in table.columns.iter().zip(&record.values) {
            if column.required && value.is_null() {
                return Err(ServiceError::invalid(
                    "missing_field",
                    format!("/{}", column.name),
                    format!("`{}` is required", column.name),
                ));
            }
        }
    }
    Ok((written, new_partner))
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn check_writable(written: &[Written], writable: FieldSet) -> Result<(), ServiceError> {
    match written.iter().find(|w| !writable.contains(w.class)) {
        Some(w) => Err(ServiceError::Field {
            code: "field_not_writable",
            field: w.name.clone(),
            class: w.class,
            what: "your roles do not allow you to write",
        }),
        None => Ok(()),
    }
}

pub(crate) fn set_column(record: &mut Record, name: &str, value: Value) {
    if let Some((index, _)) = record.table().column(name)
        && let Some(slot) = record.values.get_mut(index)
    {
        *slot = value;
    }
}

impl Service {
    /// Reads one record.
    pub async fn get_record(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
    ) -> Result<RecordView, ServiceError> {
        self.get_record_recorded(caller, kind, id)
            .await?
            .committed()
            .await
    }

    /// [`Service::get_record`], the record's view handed out once its read
    /// event is committed: the caller serializes it meanwhile.
    pub async fn get_record_recorded(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
    ) -> Result<Recorded<RecordView>, ServiceError> {
        table(kind)?;
        let Some(record) = records::get(self.db(), kind, id).await? else {
            let event = self.unseen_event(caller, Action::Read, kind, id, "no such record");
            return self
                .refuse(ServiceError::NotFound(noun(kind)), Some(event))
                .await;
        };
        let decision = decide(caller, Action::Read, &record);
        let event = || {
            self.record_event(
                caller,
                "decision",
                Action::Read,
                &record,
                &decision,
                json!({}),
            )
        };
        if !decision.allowed {
            self.record_with(event).await?;
            return Err(ServiceError::NotFound(noun(kind)));
        }
        self.recorded_with(event, || view(&record, decision.fields))
            .await
    }

    /// Starts a write transaction and loads the record to change: missing
    /// or unreadable is "not found" alike; a stale `If-Match` is refused.
    async fn load_for_change(
        &self,
        caller: &Caller,
        action: Action,
        kind: ResourceType,
        id: &str,
        if_match: Option<&str>,
        denied: &mut Option<NewEvent>,
    ) -> Result<(Tx, Record), ServiceError> {
        let mut tx = self.db().begin().await?;
        let Some(current) = records::get_in(&mut tx, kind, id).await? else {
            *denied = Some(self.unseen_event(caller, action, kind, id, "no such record"));
            return Err(ServiceError::NotFound(noun(kind)));
        };
        let read = decide(caller, Action::Read, &current);
        if !read.allowed {
            *denied =
                Some(self.record_event(caller, "decision", action, &current, &read, json!({})));
            return Err(ServiceError::NotFound(noun(kind)));
        }
        check_if_match(if_match, current.version)?;
        Ok((tx, current))
    }

    /// Loads a partner the caller may read, inside a transaction; a missing
    /// or unreadable partner is "not found" alike.
    async fn readable_partner(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        action: Action,
        kind: ResourceType,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<Record, ServiceError> {
        let found = records::get_in(tx, ResourceType::Partner, id).await?;
        match found {
            Some(partner) if decide(caller, Action::Read, &partner).allowed => Ok(partner),
            _ => {
                *denied = Some(self.unseen_event(
                    caller,
                    action,
                    kind,
                    "",
                    "the partner does not exist or is out of reach",
                ));
                if let Some(event) = denied.as_mut() {
                    event.partner_id = Some(id.to_owned());
                }
                Err(ServiceError::NotFound("partner"))
            }
        }
    }

    /// Checks a transaction's `contract_id`: a contract of the same partner
    /// that the caller may read.
    async fn check_references(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        record: &Record,
    ) -> Result<(), ServiceError> {
        for (column, value) in record.table().columns.iter().zip(&record.values) {
            let (Kind::Ref(target), Some(id)) = (column.kind, value.as_text()) else {
                continue;
            };
            let found = records::get_in(tx, target, id).await?;
            let ok = found.is_some_and(|r| {
                r.partner_id == record.partner_id && decide(caller, Action::Read, &r).allowed
            });
            if !ok {
                return Err(ServiceError::invalid(
                    "invalid_reference",
                    format!("/{}", column.name),
                    format!("no {} `{id}` of this partner", noun(target)),
                ));
            }
        }
        Ok(())
    }

    /// Creates a record. `partner_id` comes from the body or from a nested
    /// route (`/partners/{id}/contacts`).
    pub async fn create_record(
        &self,
        caller: &Caller,
        kind: ResourceType,
        body: &Json,
        route_partner: Option<&str>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, ServiceError> {
        let mut denied = None;
        let result = match self
            .try_create(caller, kind, body, route_partner, idempotency, &mut denied)
            .await
        {
            // Two requests with the same new key raced: the loser's insert
            // of the key conflicts; the winner has committed, so replay.
            Err(ServiceError::Store(StoreError::Conflict)) if idempotency.is_some() => {
                denied = None;
                self.try_create(caller, kind, body, route_partner, idempotency, &mut denied)
                    .await
            }
            other => other,
        };
        match result {
            Err(error) => {
                self.refuse_change(caller, (Action::Create, kind, ""), error, denied)
                    .await
            }
            Ok(created) => {
                if created.replayed {
                    let allowed = service_allow();
                    let id = created.view.body["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let partner = created.view.body["partner_id"].as_str().map(str::to_owned);
                    let event = self.event(
                        caller,
                        Draft {
                            kind: "decision",
                            action: Action::Create.name(),
                            resource_type: kind.name(),
                            resource_id: Some(&id),
                            partner_id: partner.as_deref(),
                            decision: &allowed,
                            reason: None,
                            input: audit::input(
                                caller,
                                "create",
                                Target::Object(kind.name(), Some(&id)),
                                caller.elevated_for(kind, Action::Create, partner.as_deref()),
                            ),
                            extra: json!({"idempotent_replay": true}),
                        },
                    );
                    self.record(event).await?;
                }
                Ok(created)
            }
        }
    }

    async fn try_create(
        &self,
        caller: &Caller,
        kind: ResourceType,
        body: &Json,
        route_partner: Option<&str>,
        idempotency: Option<&Idempotency>,
        denied: &mut Option<NewEvent>,
    ) -> Result<Created, ServiceError> {
        let table = table(kind)?;
        let now = self.now_text();
        let mut tx = self.db().begin().await?;
        let since = self.time_text(-IDEMPOTENCY_TTL_SECS);
        if let Some(key) = idempotency
            && let Some(stored) =
                principals::idempotent_response(&mut tx, &caller.principal.id, &key.key, &since)
                    .await?
        {
            if stored.method != key.method
                || stored.path != key.path
                || stored.body_hash != key.body_hash
            {
                return Err(ServiceError::IdempotencyMismatch);
            }
            let saved: Json = serde_json::from_str(&stored.response).unwrap_or_default();
            // A replay is answered only while the policy would still
            // allow the create it replays, on the record as it is now (a
            // caller whose roles were taken away gets no answer made for
            // the roles it had). A record deleted since is answered as
            // it was made: nothing the caller did not see then.
            let id = saved["body"]["id"].as_str().unwrap_or_default();
            if let Some(current) = records::get_in(&mut tx, kind, id).await? {
                let decision = decide(caller, Action::Create, &current);
                if !decision.allowed {
                    *denied = Some(self.record_event(
                        caller,
                        "decision",
                        Action::Create,
                        &current,
                        &decision,
                        json!({"idempotent_replay": true}),
                    ));
                    return Err(refusal(caller, Action::Create, &current, &decision));
                }
            }
            return Ok(Created {
                view: RecordView {
                    body: saved["body"].clone(),
                    etag: saved["etag"].as_str().unwrap_or_default().to_owned(),
                },
                replayed: true,
            });
        }

        let id = partnerdb_store::new_id();
        let mut record = Record {
            kind,
            id: id.clone(),
            partner_id: id.clone(),
            owner: None,
            version: 1,
            values: table.columns.iter().map(records::column_default).collect(),
            partner_region: None,
            partner_tier: None,
        };
        set_column(&mut record, "created_at", Value::Text(now.clone()));
        set_column(&mut record, "updated_at", Value::Text(now.clone()));
        if !table.is_child() {
            // The creator manages a new partner unless the body says who.
            record.owner = Some(caller.principal.id.clone());
        }
        let (written, body_partner) = apply_body(kind, body, &mut record, true)?;
        if table.is_child() {
            let partner_id = match (body_partner, route_partner) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ServiceError::invalid(
                        "partner_mismatch",
                        "/partner_id",
                        "`partner_id` differs from the partner in the path",
                    ));
                }
                (Some(a), _) => a,
                (None, Some(b)) => b.to_owned(),
                (None, None) => {
                    return Err(ServiceError::invalid(
                        "missing_field",
                        "/partner_id",
                        "`partner_id` is required",
                    ));
                }
            };
            let partner = self
                .readable_partner(&mut tx, caller, Action::Create, kind, &partner_id, denied)
                .await?;
            record.adopt_partner(&partner);
        }
        let decision = decide(caller, Action::Create, &record);
        if !decision.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Create,
                &record,
                &decision,
                json!({}),
            ));
            return Err(refusal(caller, Action::Create, &record, &decision));
        }
        if let Err(error) = check_writable(&written, decision.fields) {
            *denied = Some(self.field_refusal_event(caller, Action::Create, &record, &error));
            return Err(error);
        }
        self.check_references(&mut tx, caller, &record).await?;
        records::insert(&mut tx, &record).await?;
        let event = self.record_event(
            caller,
            "change",
            Action::Create,
            &record,
            &decision,
            json!({"changes": audit::changes(None, Some(&record))}),
        );
        self.append_in(&mut tx, event).await?;

        let read = decide(caller, Action::Read, &record);
        let view = view(
            &record,
            if read.allowed {
                read.fields
            } else {
                FieldSet::EMPTY
            },
        );
        if let Some(key) = idempotency {
            let saved = serde_json::json!({"etag": view.etag, "body": view.body});
            principals::store_idempotent_response(
                &mut tx,
                &caller.principal.id,
                &key.key,
                &principals::IdempotentResponse {
                    method: key.method.clone(),
                    path: key.path.clone(),
                    body_hash: key.body_hash.clone(),
                    status: 201,
                    response: saved.to_string(),
                    created_at: now,
                },
                &since,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Created {
            view,
            replayed: false,
        })
    }

    /// Updates a record with the fields of `body` (others unchanged; `null`
    /// clears an optional field). `if_match` is the `If-Match` header.
    pub async fn update_record(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
        body: &Json,
        if_match: Option<&str>,
    ) -> Result<RecordView, ServiceError> {
        let mut denied = None;
        match self
            .try_update(caller, kind, id, body, if_match, &mut denied)
            .await
        {
            Ok(view) => Ok(view),
            Err(error) => {
                self.refuse_change(caller, (Action::Update, kind, id), error, denied)
                    .await
            }
        }
    }

    async fn try_update(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
        body: &Json,
        if_match: Option<&str>,
        denied: &mut Option<NewEvent>,
    ) -> Result<RecordView, ServiceError> {
        table(kind)?;
        let (mut tx, current) = self
            .load_for_change(caller, Action::Update, kind, id, if_match, denied)
            .await?;

        let mut next = current.clone();
        let (written, new_partner) = apply_body(kind, body, &mut next, false)?;
        if let Some(partner_id) = new_partner.filter(|p| *p != current.partner_id) {
            let partner = self
                .readable_partner(&mut tx, caller, Action::Update, kind, &partner_id, denied)
                .await?;
            next.adopt_partner(&partner);
        }
        // Decided on the record as it is and as it would be: moving a
        // record to another partner needs both.
        let before = decide(caller, Action::Update, &current);
        if !before.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Update,
                &current,
                &before,
                json!({}),
            ));
            return Err(refusal(caller, Action::Update, &current, &before));
        }
        let after = decide(caller, Action::Update, &next);
        if !after.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Update,
                &next,
                &after,
                json!({}),
            ));
            return Err(refusal(caller, Action::Update, &next, &after));
        }
        if let Err(error) = check_writable(&written, before.fields.intersection(after.fields)) {
            *denied = Some(self.field_refusal_event(caller, Action::Update, &current, &error));
            return Err(error);
        }
        self.check_references(&mut tx, caller, &next).await?;

        next.version = current.version + 1;
        set_column(&mut next, "updated_at", Value::Text(self.now_text()));
        if !records::update(&mut tx, &next, current.version).await? {
            return Err(ServiceError::PreconditionFailed {
                current: etag(current.version + 1),
            });
        }
        if kind == ResourceType::Partner
            && (next.owner != current.owner
                || next.value("region") != current.value("region")
                || next.value("tier") != current.value("tier"))
        {
            records::cascade_partner(&mut tx, &next).await?;
        }
        // Both decisions are kept for replay: the one on the record as it
        // becomes is the event's input, the one on the record as it was is
        // `input_before` (a candidate policy may refuse either: a move out
        // of a region, say).
        let input_before =
            serde_json::to_value(audit::record_decision_input(caller, "update", &current))
                .unwrap_or(Json::Null);
        let extra = json!({
            "changes": audit::changes(Some(&current), Some(&next)),
            "input_before": input_before,
        });
        let mut event = self.record_event(caller, "change", Action::Update, &next, &after, extra);
        // Both decisions' grants were used: the usage counters count the
        // grants that allowed the update on the record as it was too.
        for &grant in before.matched.iter() {
            let label = caller.policy.label(grant);
            if !event.matched.iter().any(|m| m == label) {
                event.matched.push(label.to_owned());
            }
        }
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        let read = decide(caller, Action::Read, &next);
        Ok(view(
            &next,
            if read.allowed {
                read.fields
            } else {
                FieldSet::EMPTY
            },
        ))
    }

    /// Deletes a record.
    pub async fn delete_record(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ServiceError> {
        let mut denied = None;
        match self
            .try_delete(caller, kind, id, if_match, &mut denied)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => {
                self.refuse_change(caller, (Action::Delete, kind, id), error, denied)
                    .await
            }
        }
    }

    async fn try_delete(
        &self,
        caller: &Caller,
        kind: ResourceType,
        id: &str,
        if_match: Option<&str>,
        denied: &mut Option<NewEvent>,
    ) -> Result<(), ServiceError> {
        table(kind)?;
        let (mut tx, current) = self
            .load_for_change(caller, Action::Delete, kind, id, if_match, denied)
            .await?;
        let decision = decide(caller, Action::Delete, &current);
        if !decision.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Delete,
                &current,
                &decision,
                json!({}),
            ));
            return Err(refusal(caller, Action::Delete, &current, &decision));
        }
        // Only the version read and decided on is deleted: a change (or a
        // delete) committed meanwhile by another server makes this one a
        // precondition failure, not a second event about a record gone.
        match records::delete(&mut tx, kind, id, current.version).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(ServiceError::PreconditionFailed {
                    current: etag(current.version + 1),
                });
            }
            Err(StoreError::Reference) => {
                return Err(ServiceError::conflict(
                    "has_dependents",
                    format!("this {} still has records that belong to it", noun(kind)),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        let event = self.record_event(
            caller,
            "change",
            Action::Delete,
            &current,
            &decision,
            json!({"changes": audit::changes(Some(&current), None)}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lists records: `params` are the query parameters (`limit`, `sort`,
    /// `cursor`, and filters `field=value` or `field.gt|gte|lt|lte=value`);
    /// `route_partner` restricts to one partner (nested routes).
    pub async fn list_records(
        &self,
        caller: &Caller,
        kind: ResourceType,
        params: &[(String, String)],
        route_partner: Option<&str>,
    ) -> Result<Page, ServiceError> {
        self.list_records_recorded(caller, kind, params, route_partner)
            .await?
            .committed()
            .await
    }

    /// [`Service::list_records`], the page handed out once the list's
    /// event is committed: the caller serializes it meanwhile.
    pub async fn list_records_recorded(
        &self,
        caller: &Caller,
        kind: ResourceType,
        params: &[(String, String)],
        route_partner: Option<&str>,
    ) -> Result<Recorded<Page>, ServiceError> {
        let table = table(kind)?;
        if !caller.policy.covers(&caller.roles, kind, Action::Read) {
            let event = self.list_event(
                caller,
                kind,
                &service_refusal(),
                Some("no grant of the principal's roles covers this list"),
                json!({}),
            );
            return self
                .refuse(
                    ServiceError::forbidden(
                        "forbidden",
                        format!("your roles do not allow reading {}s", noun(kind)),
                    ),
                    Some(event),
                )
                .await;
        }
        let scope = caller.policy.row_filter(
            &caller.engine(),
            kind,
            Action::Read,
            caller.elevated_for(kind, Action::Read, None),
        );
        // Classes readable on every reachable row: what filters and sorts
        // may use without revealing hidden values.
        let readable = scope
            .conditions
            .iter()
            .map(|c| c.fields)
            .reduce(FieldSet::intersection)
            .unwrap_or(FieldSet::EMPTY);
        let parsed = match parse_list_params(&table, params, readable) {
            Ok(parsed) => parsed,
            Err(error) => return self.refuse_list(caller, kind, error).await,
        };
        let mut filters = parsed.filters;
        if let Some(partner) = route_partner {
            filters.push(Filter {
                column: "partner_id",
                op: Op::Eq,
                value: Value::from(partner),
            });
        }
        let binding = format!(
            "{}|{kind}|{}|{}{}",
            caller.principal.id,
            parsed.canonical,
            route_partner.unwrap_or(""),
            if parsed.sort.descending { "-" } else { "+" },
        ) + parsed.sort.column;
        let after = match &parsed.cursor {
            Some(cursor) => match self.cursors().check(cursor, &binding) {
                Some(after) => Some(after),
                None => {
                    let error = ServiceError::invalid(
                        "invalid_cursor",
                        "cursor",
                        "the cursor is invalid, or was issued for another list, filter, sort or principal",
                    );
                    return self.refuse_list(caller, kind, error).await;
                }
            },
            None => None,
        };
        let (rows, more) = records::list(
            self.db(),
            &ListQuery {
                kind,
                scope: &scope,
                filters: &filters,
                sort: parsed.sort,
                after,
                limit: parsed.limit,
            },
        )
        .await?;
        let next_cursor = match rows.last() {
            Some(last) if more => {
                let value = if parsed.sort.column == "id" {
                    Value::from(last.id.as_str())
                } else {
                    last.value(parsed.sort.column)
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                Some(self.cursors().issue(
                    &After {
                        value,
                        id: last.id.clone(),
                    },
                    &binding,
                ))
            }
            _ => None,
        };
        let mut items = Vec::with_capacity(rows.len());
        for record in rows {
            let decision = decide(caller, Action::Read, &record);
            // The SQL scope and the decision agree; a row they disagree on
            // is left out rather than shown.
            if decision.allowed {
                items.push(Visible {
                    record,
                    fields: decision.fields,
                });
            }
        }
        let mut allowed = service_refusal();
        allowed.allowed = true;
        for condition in &scope.conditions {
            if !allowed.matched.contains(&condition.grant) {
                allowed.matched.push(condition.grant);
            }
        }
        let returned = items.len();
        self.recorded_with(
            || {
                self.list_event(
                    caller,
                    kind,
                    &allowed,
                    None,
                    json!({"list": {"filters": parsed.audited, "partner": route_partner, "returned": returned}}),
                )
            },
            || Page { items, next_cursor },
        )
        .await
    }

    /// Records a list the service refuses once the caller's roles cover
    /// it (a parameter it does not know, a filter on a class the caller
    /// may not read, a cursor of another list), then returns the refusal.
    async fn refuse_list<T>(
        &self,
        caller: &Caller,
        kind: ResourceType,
        error: ServiceError,
    ) -> Result<T, ServiceError> {
        let event = self.list_event(
            caller,
            kind,
            &service_refusal(),
            Some(&error.to_string()),
            json!({}),
        );
        self.refuse(error, Some(event)).await
    }
}

fn check_if_match(if_match: Option<&str>, version: i64) -> Result<(), ServiceError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = etag(version);
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current);
    if matches {
        Ok(())
    } else {
        Err(ServiceError::PreconditionFailed { current })
    }
}

struct ListParams {
    filters: Vec<Filter>,
    /// The filters, for the cursor's binding.
    canonical: String,
    /// The filters as the trail records them, one `field.op=value` each
    /// (personal and legal values withheld).
    audited: Vec<String>,
    sort: Sort,
    cursor: Option<String>,
    limit: usize,
}

fn parse_list_params(
    table: &Table,
    params: &[(String, String)],
    readable: FieldSet,
) -> Result<ListParams, ServiceError> {
    let mut filters = Vec::new();
    let mut canonical: Vec<String> = Vec::new();
    let mut audited: Vec<String> = Vec::new();
    let mut sort = Sort {
        column: "id",
        descending: false,
    };
    let mut cursor = None;
    let mut limit = DEFAULT_PAGE;
    for (name, value) in params {
        if value.len() > 512 {
            return Err(ServiceError::invalid(
                "value_too_long",
                name.as_str(),
                "query parameter values are limited to 512 bytes",
            ));
        }
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            "invalid_limit",
                            "limit",
                            format!("`limit` must be a number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "cursor" => cursor = Some(value.clone()),
            "sort" => {
                let (descending, field) = match value.strip_prefix('-') {
                    Some(field) => (true, field),
                    None => (false, value.as_str()),
                };
                let column = if field == "id" {
                    "id"
                } else {
                    let (_, column) =
                        table
                            .column(field)
                            .filter(|(_, c)| c.sortable)
                            .ok_or_else(|| {
                                let sortable: Vec<&str> = table
                                    .columns
                                    .iter()
                                    .filter(|c| c.sortable)
                                    .map(|c| c.name)
                                    .collect();
                                ServiceError::invalid(
                                    "invalid_sort",
                                    "sort",
                                    format!(
                                        "cannot sort on `{field}`; sortable fields: id, {}",
                                        sortable.join(", ")
                                    ),
                                )
                            })?;
                    require_readable(column, readable)?;
                    column.name
                };
                sort = Sort { column, descending };
            }
            _ => {
                let (field, op) = match name.rsplit_once('.') {
                    Some((field, "gt")) => (field, Op::Gt),
                    Some((field, "gte")) => (field, Op::Gte),
                    Some((field, "lt")) => (field, Op::Lt),
                    Some((field, "lte")) => (field, Op::Lte),
                    _ => (name.as_str(), Op::Eq),
                };
                let filter = parse_filter(table, name, field, op, value, readable)?;
                canonical.push(format!("{name}={value}"));
                // The trail keeps a filter's value where it keeps changed
                // values, and the ids' (not columns of the schema) when
                // they are ids: any other text may be anything.
                audited.push(match table.column(field) {
                    Some((_, column)) if !audit::keeps_values(column.class) => {
                        format!("{name}=(withheld: {})", column.class.name())
                    }
                    None if !crate::auth::is_request_id(value.as_bytes()) => {
                        format!("{name}=(withheld: not an id)")
                    }
                    _ => format!("{name}={value}"),
                });
                filters.push(filter);
            }
        }
    }
    if filters.len() > MAX_FILTERS {
        return Err(ServiceError::invalid(
            "too_many_filters",
            "",
            format!("at most {MAX_FILTERS} filters"),
        ));
    }
    canonical.sort();
    audited.sort();
    Ok(ListParams {
        filters,
        canonical: canonical.join("&"),
        audited,
        sort,
        cursor,
        limit,
    })
}

fn require_readable(column: &Column, readable: FieldSet) -> Result<(), ServiceError> {
    if readable.contains(column.class) {
        Ok(())
    } else {
        Err(ServiceError::Field {
            code: "field_not_readable",
            field: column.name.to_owned(),
            class: column.class,
            what: "your roles do not allow you to read",
        })
    }
}

fn parse_filter(
    table: &Table,
    param: &str,
    field: &str,
    op: Op,
    value: &str,
    readable: FieldSet,
) -> Result<Filter, ServiceError> {
    match field {
        "partner_id" | "owner" | "id" => {
            if op != Op::Eq {
                return Err(ServiceError::invalid(
                    "invalid_filter",
                    param,
                    format!("`{field}` can only be compared for equality"),
                ));
            }
            let column = match field {
                "partner_id" => "partner_id",
                "owner" => "owner",
                _ => "id",
            };
            return Ok(Filter {
                column,
                op,
                value: Value::from(value),
            });
        }
        _ => {}
    }
    let Some((_, column)) = table.column(field) else {
        return Err(ServiceError::invalid(
            "unknown_parameter",
            param,
            format!("unknown query parameter `{param}`"),
        ));
    };
    require_readable(column, readable)?;
    let ordered = matches!(
        column.kind,
        Kind::Money | Kind::Rate | Kind::Date | Kind::Timestamp
    );
    if op != Op::Eq && !ordered {
        return Err(ServiceError::invalid(
            "invalid_filter",
            param,
            format!("`{field}` can only be compared for equality"),
        ));
    }
    let json = match column.kind {
        Kind::Money => Json::from(value.parse::<i64>().map_err(|_| {
            ServiceError::invalid("wrong_type", param, format!("`{field}` must be an integer"))
        })?),
        _ => Json::from(value),
    };
    let mut parsed = from_json(column, &json, param)?;
    if column.kind == Kind::Timestamp
        && let Value::Text(text) = &parsed
    {
        parsed = Value::Text(normalize_timestamp(text).unwrap_or_default());
    }
    Ok(Filter {
        column: column.name,
        op,
        value: parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// A record of `kind` with a value in every column: integers where
    /// the column holds numbers, text elsewhere, and one NULL.
    fn sample(kind: ResourceType) -> Record {
        let columns = table(kind).map_or(&[][..], |t| t.columns);
        let values = columns
            .iter()
            .enumerate()
            .map(|(i, column)| match column.kind {
                _ if i == 1 => Value::Null,
                Kind::Money | Kind::Rate => Value::Int(125_000 + i as i64),
                _ => Value::Text(format!("v\"{i}\\é")),
            })
            .collect();
        Record {
            kind,
            id: "r1".into(),
            partner_id: "p1".into(),
            owner: None,
            version: 3,
            values,
            partner_region: Some("emea".into()),
            partner_tier: None,
        }
    }

    /// What a reader should see of `record`, built by hand: the three
    /// keys every reader sees, then each column of a class in `fields`.
    fn reference(record: &Record, fields: FieldSet) -> String {
        let mut body = Map::new();
        body.insert("id".into(), Json::from(record.id.as_str()));
        body.insert("partner_id".into(), Json::from(record.partner_id.as_str()));
        body.insert(
            "owner".into(),
            record.owner.as_deref().map_or(Json::Null, Json::from),
        );
        for (column, value) in record.table().columns.iter().zip(&record.values) {
            if fields.contains(column.class) {
                let json = match (column.kind, value) {
                    (_, Value::Null | Value::NullInt) => Json::Null,
                    (Kind::Rate, Value::Int(ppm)) => Json::String(crate::codec::format_rate(*ppm)),
                    (_, Value::Int(n)) => Json::from(*n),
                    (_, Value::Text(text)) => Json::String(text.clone()),
                };
                body.insert(column.name.into(), json);
            }
        }
        Json::Object(body).to_string()
    }

    #[test]
    fn visible_records_serialize_as_the_reference_builds_them() {
        let subsets = [
            FieldSet::EMPTY,
            FieldSet::from_iter([FieldClass::General]),
            FieldSet::from_iter([FieldClass::General, FieldClass::Financial]),
            FieldSet::from_iter(FieldClass::ALL.iter().copied()),
        ];
        for kind in partnerdb_store::schema::RECORD_TYPES {
            for fields in subsets {
                let record = sample(kind);
                let expected = reference(&record, fields);
                assert_eq!(
                    render(&record, fields).to_string(),
                    expected,
                    "{kind:?} {fields:?}"
                );
                let got = serde_json::to_string(&Visible::new(record, fields)).ok();
                assert_eq!(
                    got.as_deref(),
                    Some(expected.as_str()),
                    "{kind:?} {fields:?}"
                );
            }
        }
    }
}
