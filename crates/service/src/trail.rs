//! Reading the audit trail (`/v1/audit`) and usage (`/v1/usage`), for
//! principals holding `audit:read`. Changed values are shown only in the
//! classes the reader may read on the record as it was recorded.

use partnerdb_policy::{Action, FieldSet, NoAttributes, Request, Resource, ResourceType};
use partnerdb_store::Value;
use partnerdb_store::audit::{self as store, AuditFilter};
use partnerdb_store::records::After;
use partnerdb_store::schema::Table;
use serde_json::{Map, Value as Json, json};

use crate::Service;
use crate::audit::{Draft, Target};
use crate::auth::Caller;
use crate::error::ServiceError;

/// Most events in one page.
pub const MAX_AUDIT_PAGE: usize = 500;

impl Service {
    async fn decide_audit(&self, caller: &Caller, what: &str) -> Result<(), ServiceError> {
        let request = Request {
            principal: caller.engine(),
            action: Action::Read,
            resource: Resource {
                kind: ResourceType::Audit,
                id: what,
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: caller.elevated_for(ResourceType::Audit, Action::Read, None),
        };
        let decision = caller.policy.decide(&request);
        let reason = caller.policy.deny_reason(&request, &decision);
        let event = self.event(
            caller,
            Draft {
                kind: "decision",
                action: "read",
                resource_type: "audit",
                resource_id: Some(what),
                partner_id: None,
                decision: &decision,
                reason,
                input: crate::audit::input(
                    caller,
                    "read",
                    Target::Object("audit", Some(what)),
                    caller.elevated_for(ResourceType::Audit, Action::Read, None),
                ),
                extra: json!({}),
            },
        );
        self.record(event).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(ServiceError::forbidden(
                "forbidden",
                "your roles do not allow audit:read",
            ))
        }
    }

    /// A page of the trail, newest first. Parameters: `principal`,
    /// `partner`, `resource`, `resource_id`, `action`, `decision`, `since`,
    /// `until` (RFC 3339), `limit`, `cursor`.
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        self.decide_audit(caller, "trail").await?;
        let mut filter = AuditFilter::default();
        let mut limit = 100;
        let mut cursor = None;
        // The filters as given, for the cursor's binding: a map (a name
        // given twice is refused, not read as its last value), encoded as
        // JSON so that no value can pass for another filter.
        let mut canonical = std::collections::BTreeMap::new();
        for (name, value) in params {
            if canonical.contains_key(name.as_str()) || (name == "cursor" && cursor.is_some()) {
                return Err(ServiceError::invalid(
                    "duplicate_parameter",
                    name.as_str(),
                    format!("`{name}` is given more than once"),
                ));
            }
            if value.len() > 200 {
                return Err(ServiceError::invalid(
                    "value_too_long",
                    name.as_str(),
                    "values are limited to 200 bytes",
                ));
            }
            let time = |v: &str| {
                crate::codec::normalize_timestamp(v).ok_or_else(|| {
                    ServiceError::invalid(
                        "invalid_value",
                        name.as_str(),
                        format!("`{name}` must be an RFC 3339 time"),
                    )
                })
            };
            match name.as_str() {
                "principal" => filter.principal_id = Some(value.clone()),
                "partner" => filter.partner_id = Some(value.clone()),
                "resource" => {
                    // The schema's types, and the objects events are also
                    // about (contract change requests).
                    if ResourceType::parse(value).is_none() && value != "change_request" {
                        return Err(ServiceError::invalid(
                            "invalid_value",
                            "resource",
                            format!("no resource type `{value}`"),
                        ));
                    }
                    filter.resource_type = Some(value.clone());
                }
                "resource_id" => filter.resource_id = Some(value.clone()),
                "action" => filter.action = Some(value.clone()),
                "decision" => {
                    if value != "allow" && value != "deny" {
                        return Err(ServiceError::invalid(
                            "invalid_value",
                            "decision",
                            "`decision` is allow or deny",
                        ));
                    }
                    filter.decision = Some(value.clone());
                }
                "since" => filter.since = Some(time(value)?),
                "until" => filter.until = Some(time(value)?),
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                        .ok_or_else(|| {
                            ServiceError::invalid(
                                "invalid_limit",
                                "limit",
                                format!("`limit` must be a number from 1 to {MAX_AUDIT_PAGE}"),
                            )
                        })?;
                }
                "cursor" => {
                    cursor = Some(value.clone());
                    continue;
                }
                _ => {
                    return Err(ServiceError::invalid(
                        "unknown_parameter",
                        name.as_str(),
                        format!("unknown query parameter `{name}`"),
                    ));
                }
            }
            canonical.insert(name.as_str(), value.as_str());
        }
        let binding = format!(
            "{}|audit|{}",
            caller.principal.id,
            Json::from(
                canonical
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), Json::from(value)))
                    .collect::<Map<String, Json>>()
            )
        );
        let before = match cursor {
            Some(cursor) => Some(
                self.cursors()
                    .check(&cursor, &binding)
                    .and_then(|after| after.value.as_int())
                    .ok_or_else(|| {
                        ServiceError::invalid("invalid_cursor", "cursor", "the cursor is invalid or was issued for other filters or another principal")
                    })?,
            ),
            None => None,
        };
        // A principal bound to a partner reads that partner's events only
        // (tenant isolation): its partner filter is its own, and another
        // partner asked for matches nothing.
        if let Some(own) = &caller.principal.partner_id {
            if filter.partner_id.as_ref().is_some_and(|asked| asked != own) {
                return Ok(json!({"items": [], "next_cursor": null}));
            }
            filter.partner_id = Some(own.clone());
        }
        let events = store::list(self.db(), &filter, before, limit + 1).await?;
        let more = events.len() > limit;
        let items: Vec<Json> = events
            .iter()
            .take(limit)
            .map(|e| self.show_event(caller, e))
            .collect();
        let next_cursor = match events.get(limit.saturating_sub(1)) {
            Some(last) if more => Some(self.cursors().issue(
                &After {
                    value: Value::Int(last.event.seq),
                    id: String::new(),
                },
                &binding,
            )),
            _ => None,
        };
        self.settle_read().await?;
        Ok(json!({"items": items, "next_cursor": next_cursor}))
    }

    /// An event as `caller` may see it: values of classes it may not read
    /// on the recorded record are dropped (field names stay): changed
    /// values, and the record's attributes in the decision input (its
    /// general text fields, and a child's partner's region and tier).
    fn show_event(&self, caller: &Caller, stored: &partnerdb_audit::StoredEvent) -> Json {
        const HIDDEN: &str = "hidden: not readable by you";
        let event = &stored.event;
        let mut detail: Json = serde_json::from_str(&event.detail).unwrap_or(Json::Null);
        let resource = &detail["input"]["resource"];
        if resource["attrs"].is_object() || detail["changes"].is_array() {
            // An update's record as it was and as it became: a value is
            // shown only in the classes the reader may read on both.
            let mut visible = readable_classes(caller, resource);
            let before = &detail["input_before"]["resource"];
            if before.is_object() {
                let was = readable_classes(caller, before);
                visible.retain(|class| was.contains(class));
            }
            let readable = |class: &str| visible.contains(&class);
            if !readable("general") {
                if let Some(attrs) = detail
                    .pointer_mut("/input_before/resource/attrs")
                    .and_then(Json::as_object_mut)
                {
                    hide_values(attrs, HIDDEN);
                }
                if let Some(attrs) = detail
                    .pointer_mut("/input/resource/attrs")
                    .and_then(Json::as_object_mut)
                {
                    let values = hide_values(attrs, HIDDEN);
                    if let Some(Json::String(text)) = detail.get_mut("reason") {
                        *text = hide_record_values(text, values, HIDDEN);
                    }
                }
            }
            if let Some(changes) = detail.get_mut("changes").and_then(Json::as_array_mut) {
                for change in changes.iter_mut() {
                    let class = change["class"].as_str().unwrap_or("").to_owned();
                    if !readable(&class)
                        && let Some(object) = change.as_object_mut()
                    {
                        object.remove("before");
                        object.remove("after");
                        object.insert("values".into(), Json::from(HIDDEN));
                    }
                }
            }
        }
        hide_list_filters(caller, &mut detail, HIDDEN);
        let principal_id = if hide_other_principal(caller, &mut detail, HIDDEN) {
            Some(HIDDEN)
        } else {
            event.principal_id.as_deref()
        };
        json!({
            "seq": event.seq,
            "at": event.at,
            "kind": event.kind,
            "principal_id": principal_id,
            "action": event.action,
            "resource_type": event.resource_type,
            "resource_id": event.resource_id,
            "partner_id": event.partner_id,
            "decision": event.decision,
            "policy_version": event.policy_version,
            "detail": detail,
            "hash": stored.hash,
            "prev_hash": stored.prev_hash,
        })
    }

    /// Usage counters: `kind` (`principal`, `role`, `grant`) optional.
    pub async fn usage(
        &self,
        caller: &Caller,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        self.decide_audit(caller, "usage").await?;
        if caller.principal.partner_id.is_some() {
            // The counters are the whole deployment's (every tenant's
            // principals): none of a partner's.
            let error = ServiceError::forbidden(
                "forbidden",
                "usage counters span every partner: a principal bound to one may not read them",
            );
            return self
                .refuse_plain(caller, "read", ("audit", "usage"), error)
                .await;
        }
        let mut kind = None;
        for (name, value) in params {
            match name.as_str() {
                "kind" if ["principal", "role", "grant"].contains(&value.as_str()) => {
                    kind = Some(value.as_str())
                }
                "kind" => {
                    return Err(ServiceError::invalid(
                        "invalid_value",
                        "kind",
                        "`kind` is principal, role or grant",
                    ));
                }
                _ => {
                    return Err(ServiceError::invalid(
                        "unknown_parameter",
                        name.as_str(),
                        format!("unknown query parameter `{name}`"),
                    ));
                }
            }
        }
        let rows = store::usage(self.db(), kind, None).await?;
        self.settle_read().await?;
        Ok(json!({"items": rows.iter().map(usage_json).collect::<Vec<_>>()}))
    }

    /// `/v1/me`: who the caller is, what their roles allow and their own
    /// usage counter (this request counted). Every principal may read it
    /// (the service's rule); the read is recorded as any other.
    pub async fn me(&self, caller: &Caller) -> Result<Json, ServiceError> {
        let id = caller.principal.id.as_str();
        let event = self.event(
            caller,
            Draft {
                kind: "decision",
                action: "read",
                resource_type: "principal",
                resource_id: Some(id),
                partner_id: caller.principal.partner_id.as_deref(),
                decision: &crate::audit::service_allow(),
                reason: None,
                input: crate::audit::input(
                    caller,
                    "read",
                    Target::Object("principal", Some(id)),
                    false,
                ),
                extra: json!({"me": true}),
            },
        );
        self.record(event).await?;
        let mut me = crate::me::me(caller);
        me["usage"] = self.own_usage(caller).await?;
        self.settle_read().await?;
        Ok(me)
    }

    /// The caller's own usage counter (for `/v1/me`).
    async fn own_usage(&self, caller: &Caller) -> Result<Json, ServiceError> {
        let id = caller.principal.id.as_str();
        let rows = store::usage(self.db(), Some("principal"), Some(id)).await?;
        Ok(rows.first().map_or(
            json!({"kind": "principal", "name": id, "allows": 0, "denies": 0, "last_at": null}),
            usage_json,
        ))
    }
}

fn usage_json(u: &store::Usage) -> Json {
    json!({"kind": u.kind, "name": u.name, "allows": u.allows, "denies": u.denies, "last_at": u.last_at})
}

/// The classes `caller` may read on a resource recorded in an event.
/// Hides the values of a list event's filters (`field.op=value`) whose
/// field's class `caller` may not read on every record of the listed type:
/// a filter names no single record, so a value shows only where no record
/// of the type could hide it (an unconstrained grant of that class).
/// Events written before the filters were a list hold them as one text
/// (`&` between them, ambiguous when a value holds `&`): hidden whole
/// if any of them would be.
fn hide_list_filters(caller: &Caller, detail: &mut Json, hidden: &str) {
    let Some(kind) = detail["input"]["resource"]["type"]
        .as_str()
        .and_then(ResourceType::parse)
    else {
        return;
    };
    let Some(filters) = detail
        .get_mut("list")
        .and_then(|list| list.get_mut("filters"))
    else {
        return;
    };
    let Some(table) = Table::of(kind) else {
        return;
    };
    let everywhere = caller
        .policy
        .row_filter(&caller.engine(), kind, Action::Read, false)
        .conditions
        .iter()
        .filter(|c| c.is_unconstrained())
        .fold(FieldSet::EMPTY, |acc, c| acc.union(c.fields));
    let hides = |filter: &str| {
        let (name, value) = filter.split_once('=')?;
        let field = name
            .rsplit_once('.')
            .filter(|(_, op)| matches!(*op, "gt" | "gte" | "lt" | "lte"))
            .map_or(name, |(field, _)| field);
        let hide = table.column(field).is_some_and(|(_, column)| {
            !everywhere.contains(column.class)
                && value != format!("(withheld: {})", column.class.name())
        });
        hide.then(|| format!("{name}=({hidden})"))
    };
    match filters {
        Json::Array(list) => {
            for filter in list.iter_mut() {
                if let Some(masked) = filter.as_str().and_then(hides) {
                    *filter = Json::from(masked);
                }
            }
        }
        Json::String(text) if text.split('&').any(|f| hides(f).is_some()) => {
            *filters = Json::from(format!("({hidden})"));
        }
        _ => {}
    }
}

fn readable_classes(caller: &Caller, resource: &Json) -> Vec<&'static str> {
    let Some(kind) = resource["type"].as_str().and_then(ResourceType::parse) else {
        return Vec::new();
    };
    let attrs: Vec<(String, String)> = resource["attrs"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let request = Request {
        principal: caller.engine(),
        action: Action::Read,
        resource: Resource {
            kind,
            id: resource["id"].as_str().unwrap_or(""),
            partner_id: resource["partner_id"].as_str(),
            owner: resource["owner"].as_str(),
            attrs: &attrs,
        },
        elevated: false,
    };
    let decision = caller.policy.decide(&request);
    if decision.allowed {
        decision
            .fields
            .in_schema_order(kind)
            .map(|c| c.name())
            .collect()
    } else {
        Vec::new()
    }
}

/// Why a deployment's usage facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The database failed.
    #[error("cannot read the bindings and usage counters: {0}")]
    Store(#[from] partnerdb_store::StoreError),
    /// A stored time does not parse.
    #[error("the database holds a malformed time `{0}`")]
    MalformedTime(String),
}

/// The principals with their roles, the usage counters and the start of
/// the usage history, as `policy lint --usage` and a plan need them.
pub async fn usage_facts(
    db: &partnerdb_store::Db,
    now: i64,
    unused_days: u32,
) -> Result<partnerdb_policy::lint_usage::UsageFacts, FactsError> {
    use partnerdb_policy::lint_usage::{PrincipalFacts, UsageFacts};
    let seconds = |at: &str| -> Result<i64, FactsError> {
        at.parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|_| FactsError::MalformedTime(at.to_owned()))
    };
    let mut facts = UsageFacts {
        now,
        unused_days,
        ..UsageFacts::default()
    };
    let mut principal_last = std::collections::BTreeMap::new();
    for counter in store::usage(db, None, None).await? {
        let Some(at) = counter.last_at.as_deref() else {
            continue;
        };
        let at = seconds(at)?;
        match counter.kind.as_str() {
            "principal" => drop(principal_last.insert(counter.name, at)),
            "role" => drop(facts.role_last_used.insert(counter.name, at)),
            "grant" => drop(facts.grant_last_used.insert(counter.name, at)),
            _ => {}
        }
    }
    facts.history_start = store::first_event_at(db)
        .await?
        .as_deref()
        .map(seconds)
        .transpose()?;
    let mut after = None;
    loop {
        let page = partnerdb_store::principals::list(db, after.as_deref(), 500, None).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for principal in page {
            facts.principals.push(PrincipalFacts {
                last_used: principal_last.get(&principal.id).copied(),
                created_at: seconds(&principal.created_at)?,
                id: principal.id,
                name: principal.name,
                roles: principal.roles,
            });
        }
    }
    Ok(facts)
}

/// What a reader bound to a partner sees of the principal an event of its
/// partner names: the principal of another partner (one that probed this
/// partner's records) is theirs, not this partner's, and is hidden whole
/// (id, partner, roles, attributes); an operator's staff (bound to no
/// partner) keep their id and roles, their attributes hidden. Whether the
/// principal was hidden whole (then so is the event's `principal_id`).
fn hide_other_principal(caller: &Caller, detail: &mut Json, hidden: &str) -> bool {
    let Some(own) = caller.principal.partner_id.as_deref() else {
        return false;
    };
    let mut whole = false;
    // Their id and partner, which a deny reason names too (`scope
    // own_partner (principal partner …)`).
    let mut named: Vec<String> = Vec::new();
    for input in ["input", "input_before"] {
        let Some(principal) = detail
            .get_mut(input)
            .and_then(|input| input.get_mut("principal"))
            .and_then(Json::as_object_mut)
        else {
            continue;
        };
        let theirs = match principal.get("partner_id") {
            Some(Json::String(partner)) => partner != own,
            _ => false,
        };
        let staff = matches!(principal.get("partner_id"), None | Some(Json::Null));
        if theirs {
            whole = true;
            for key in ["id", "partner_id"] {
                if let Some(Json::String(text)) = principal.get(key) {
                    named.push(text.clone());
                }
            }
            for key in ["id", "partner_id", "roles"] {
                if principal.contains_key(key) {
                    principal.insert(key.into(), Json::from(hidden));
                }
            }
        }
        if (theirs || staff)
            && let Some(attrs) = principal.get_mut("attrs").and_then(Json::as_object_mut)
        {
            hide_values(attrs, hidden);
        }
    }
    if let Some(Json::String(reason)) = detail.get_mut("reason") {
        for text in named.iter().filter(|text| !text.is_empty()) {
            *reason = reason.replace(text.as_str(), hidden);
        }
    }
    whole
}

/// Replaces every value of `object` by `hidden`; the text values it held.
fn hide_values(object: &mut serde_json::Map<String, Json>, hidden: &str) -> Vec<String> {
    object
        .values_mut()
        .filter_map(|value| match std::mem::replace(value, Json::from(hidden)) {
            Json::String(text) => Some(text),
            _ => None,
        })
        .collect()
}

/// A deny reason with the record's attribute values it quotes hidden: a
/// failed condition reads `attr = "wanted" (record has VALUE)` or
/// `(record has VALUE, principal has …)`, VALUE being one of the record's
/// attributes in the decision input (`values`), which the reader may not
/// read. The longest values first, so that a value that begins another
/// hides only itself.
fn hide_record_values(reason: &str, mut values: Vec<String>, hidden: &str) -> String {
    values.sort_by_key(|value| std::cmp::Reverse(value.len()));
    let mut out = reason.to_owned();
    for value in values {
        for end in [")", ", principal has "] {
            let quoted = format!("(record has {value}{end}");
            if out.contains(&quoted) {
                out = out.replace(&quoted, &format!("(record has {hidden}{end}"));
            }
        }
    }
    out
}
