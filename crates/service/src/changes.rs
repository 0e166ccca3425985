//! Contract change requests (maker-checker, R7): a principal with
//! `contract:propose` proposes new terms; the contract keeps its terms until
//! a *different* principal with `contract:approve` approves (the terms are
//! applied and recorded in one transaction) or one with `contract:reject`
//! rejects with a reason; the author may withdraw. A request goes stale
//! when the contract changes under it, and a stale request cannot be
//! approved. Whoever proposed a request can never approve or reject it,
//! whatever roles or tokens they hold: the check is on the principal.

use partnerdb_policy::{Action, Decision, FieldSet, ResourceType};
use partnerdb_store::audit::NewEvent;
use partnerdb_store::changes::{self as store, ChangeRequestRow};
use partnerdb_store::records::{self, Record};
use partnerdb_store::{Tx, Value};
use serde_json::{Map, Value as Json, json};

use crate::Service;
use crate::audit::{self, Target, service_allow, service_refusal};
use crate::auth::Caller;
use crate::codec::{object, only, to_json};
use crate::error::ServiceError;
use crate::records::{apply_body, check_writable, decide, refusal, render, set_column};

/// Most requests in one page.
pub const MAX_CHANGE_PAGE: usize = 200;

/// The longest rejection reason, in bytes.
pub const MAX_REASON: usize = 2000;

const STATUSES: [&str; 4] = ["pending", "approved", "rejected", "withdrawn"];

/// A request as `readable` (the reader's classes on the contract) lets it
/// be seen: the field-by-field diff shows only readable fields.
fn change_json(request: &ChangeRequestRow, contract: &Record, readable: FieldSet) -> Json {
    let table = contract.table();
    let terms: Map<String, Json> = serde_json::from_str(&request.terms).unwrap_or_default();
    let mut diff = Vec::new();
    for (name, proposed) in &terms {
        let Some((index, column)) = table.column(name) else {
            continue;
        };
        if !readable.contains(column.class) {
            continue;
        }
        let current = contract
            .values
            .get(index)
            .map_or(Json::Null, |v| to_json(column, v));
        diff.push(json!({
            "field": name,
            "class": column.class.name(),
            "current": current,
            "proposed": proposed,
        }));
    }
    let pending = request.status == "pending";
    json!({
        "id": request.id,
        "contract_id": request.contract_id,
        "partner_id": request.partner_id,
        "proposer_id": request.proposer_id,
        "status": request.status,
        "base_version": request.base_version,
        "contract_version": contract.version,
        "stale": pending && contract.version != request.base_version,
        "diff": diff,
        "reason": request.reason,
        "decided_by": request.decided_by,
        "created_at": request.created_at,
        "decided_at": request.decided_at,
    })
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("change request")
}

fn stale(request: &ChangeRequestRow, contract: &Record) -> ServiceError {
    ServiceError::conflict(
        "change_request_stale",
        format!(
            "the contract changed since this request was made (version {} then, {} now): propose the change again on the current terms",
            request.base_version, contract.version
        ),
    )
}

fn closed(request: &ChangeRequestRow) -> ServiceError {
    ServiceError::conflict(
        "change_request_closed",
        format!(
            "this change request is {}, no longer pending",
            request.status
        ),
    )
}

/// The body of a rejection: `{"reason": "…"}`.
fn rejection_reason(body: &Json) -> Result<String, ServiceError> {
    let object = object(body, "")?;
    only(object, &["reason"], "a rejection")?;
    match object.get("reason") {
        Some(Json::String(reason)) if !reason.trim().is_empty() && reason.len() <= MAX_REASON => {
            Ok(reason.clone())
        }
        Some(Json::String(reason)) if reason.len() > MAX_REASON => Err(ServiceError::invalid(
            "value_too_long",
            "/reason",
            format!("`reason` is at most {MAX_REASON} bytes"),
        )),
        Some(Json::String(_)) | None => Err(ServiceError::invalid(
            "missing_field",
            "/reason",
            "a rejection needs a `reason`",
        )),
        Some(_) => Err(ServiceError::invalid(
            "wrong_type",
            "/reason",
            "`reason` must be a string",
        )),
    }
}

impl Service {
    /// Passes an outcome on, recording a refusal: its specific event when
    /// there is one, else a plain one (closed, stale, a field, a missing
    /// request, bad input), as refused record changes are.
    async fn change_outcome<T>(
        &self,
        caller: &Caller,
        action: &str,
        on: (&str, &str),
        result: Result<T, ServiceError>,
        denied: Option<NewEvent>,
    ) -> Result<T, ServiceError> {
        let error = match result {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        if denied.is_some() {
            return self.refuse(error, denied).await;
        }
        self.refuse_plain(caller, action, on, error).await
    }

    fn change_event(
        &self,
        caller: &Caller,
        action: &str,
        contract: &Record,
        decision: &Decision,
        reason: Option<String>,
        extra: Json,
    ) -> NewEvent {
        self.event(
            caller,
            audit::Draft {
                kind: if decision.allowed {
                    "change"
                } else {
                    "decision"
                },
                action,
                resource_type: "contract",
                resource_id: Some(&contract.id),
                partner_id: Some(&contract.partner_id),
                decision,
                reason,
                input: audit::record_decision_input(caller, action, contract),
                extra,
            },
        )
    }

    /// Proposes new terms for a contract: a JSON object of contract fields
    /// the caller may propose (any subset). The contract is not changed.
    pub async fn propose_change(
        &self,
        caller: &Caller,
        contract_id: &str,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let mut denied = None;
        let result = self
            .try_propose(caller, contract_id, body, &mut denied)
            .await;
        self.change_outcome(caller, "propose", ("contract", contract_id), result, denied)
            .await
    }

    async fn try_propose(
        &self,
        caller: &Caller,
        contract_id: &str,
        body: &Json,
        denied: &mut Option<NewEvent>,
    ) -> Result<Json, ServiceError> {
        let mut tx = self.db().begin().await?;
        let contract = self
            .readable_contract(&mut tx, caller, Action::Propose, contract_id, denied)
            .await?;
        let decision = decide(caller, Action::Propose, &contract);
        if !decision.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Propose,
                &contract,
                &decision,
                json!({}),
            ));
            return Err(refusal(caller, Action::Propose, &contract, &decision));
        }
        if let Some(name) = body
            .as_object()
            .and_then(|o| o.keys().find(|k| *k == "partner_id"))
        {
            return Err(ServiceError::invalid(
                "read_only_field",
                format!("/{name}"),
                "a change request proposes terms; moving a contract to another partner is an update",
            ));
        }
        let mut next = contract.clone();
        let (written, _) = apply_body(ResourceType::Contract, body, &mut next, false)?;
        if written.is_empty() {
            return Err(ServiceError::invalid(
                "empty_change",
                "",
                "propose at least one field",
            ));
        }
        check_writable(&written, decision.fields).map_err(|error| match error {
            ServiceError::Field {
                code, field, class, ..
            } => ServiceError::Field {
                code,
                field,
                class,
                what: "your roles do not allow you to propose",
            },
            other => other,
        })?;
        // The terms as they would be stored, in the API's JSON form.
        let table = contract.table();
        let mut terms = Map::new();
        for w in &written {
            if let Some((index, column)) = table.column(&w.name) {
                let value = next.values.get(index).cloned().unwrap_or(Value::Null);
                terms.insert(w.name.clone(), to_json(column, &value));
            }
        }
        let request = ChangeRequestRow {
            id: partnerdb_store::new_id(),
            contract_id: contract.id.clone(),
            partner_id: contract.partner_id.clone(),
            proposer_id: caller.principal.id.clone(),
            base_version: contract.version,
            terms: Json::Object(terms).to_string(),
            status: "pending".into(),
            reason: None,
            decided_by: None,
            created_at: self.now_text(),
            decided_at: None,
        };
        store::insert(&mut tx, &request).await?;
        let fields: Vec<&str> = written.iter().map(|w| w.name.as_str()).collect();
        let event = self.change_event(
            caller,
            "propose",
            &contract,
            &decision,
            None,
            json!({"change_request": request.id, "fields": fields}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(change_json(
            &request,
            &contract,
            self.readable(caller, &contract),
        ))
    }

    /// The classes `caller` may read on `contract`.
    fn readable(&self, caller: &Caller, contract: &Record) -> FieldSet {
        let read = decide(caller, Action::Read, contract);
        if read.allowed {
            read.fields
        } else {
            FieldSet::EMPTY
        }
    }

    /// Loads a contract the caller may read, in a transaction; missing and
    /// unreadable alike are "not found".
    async fn readable_contract(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        action: Action,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<Record, ServiceError> {
        let Some(contract) = records::get_in(tx, ResourceType::Contract, id).await? else {
            *denied = Some(self.unseen_event(
                caller,
                action,
                ResourceType::Contract,
                id,
                "no such record",
            ));
            return Err(ServiceError::NotFound("contract"));
        };
        let read = decide(caller, Action::Read, &contract);
        if !read.allowed {
            *denied =
                Some(self.record_event(caller, "decision", action, &contract, &read, json!({})));
            return Err(ServiceError::NotFound("contract"));
        }
        Ok(contract)
    }

    /// Loads a request and its contract in a transaction, for a decision on
    /// it; a request on a contract the caller may not read is "not found".
    async fn load_change(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        action: Action,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<(ChangeRequestRow, Record), ServiceError> {
        let Some(request) = store::get_in(tx, id).await? else {
            return Err(not_found());
        };
        let contract = self
            .readable_contract(tx, caller, action, &request.contract_id, denied)
            .await
            .map_err(|error| match error {
                ServiceError::NotFound(_) => not_found(),
                other => other,
            })?;
        Ok((request, contract))
    }

    /// One request, with the diff in the classes the caller may read.
    pub async fn get_change(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let Some(request) = store::get(self.db(), id).await? else {
            return self
                .refuse_plain(caller, "read", ("change_request", id), not_found())
                .await;
        };
        let Some(contract) =
            records::get(self.db(), ResourceType::Contract, &request.contract_id).await?
        else {
            return self
                .refuse_plain(caller, "read", ("change_request", id), not_found())
                .await;
        };
        let read = decide(caller, Action::Read, &contract);
        self.record(self.record_event(
            caller,
            "decision",
            Action::Read,
            &contract,
            &read,
            json!({"change_request": request.id}),
        ))
        .await?;
        if !read.allowed {
            return Err(not_found());
        }
        Ok(change_json(&request, &contract, read.fields))
    }

    /// Requests on contracts the caller may read, oldest first:
    /// `status`, `contract` (an id; or the route's), `after` (a request id,
    /// from `next_after`), `limit` (1–200, default 50).
    pub async fn list_changes(
        &self,
        caller: &Caller,
        params: &[(String, String)],
        route_contract: Option<&str>,
    ) -> Result<Json, ServiceError> {
        let mut status = None;
        let mut contract = route_contract.map(str::to_owned);
        let mut after = None;
        let mut limit = 50;
        for (name, value) in params {
            match name.as_str() {
                "status" if STATUSES.contains(&value.as_str()) => status = Some(value.clone()),
                "status" => {
                    return Err(ServiceError::invalid(
                        "invalid_value",
                        "status",
                        "`status` is pending, approved, rejected or withdrawn",
                    ));
                }
                "contract" if route_contract.is_none() => {
                    if !crate::auth::is_request_id(value.as_bytes()) {
                        return Err(ServiceError::invalid(
                            "invalid_value",
                            "contract",
                            "`contract` must be a contract id",
                        ));
                    }
                    contract = Some(value.clone());
                }
                "after" if value.len() <= 64 => after = Some(value.clone()),
                "limit" => {
                    limit = ServiceError::page_limit(value, MAX_CHANGE_PAGE)?;
                }
                _ => {
                    return Err(ServiceError::unknown_parameter(name));
                }
            }
        }
        // Requests are few next to records: read them in id order and keep
        // those whose contract the caller may read, until the page is full.
        let mut items = Vec::new();
        let mut cursor = after;
        let mut exhausted = false;
        while items.len() < limit && !exhausted {
            let batch = store::list(
                self.db(),
                contract.as_deref(),
                status.as_deref(),
                cursor.as_deref(),
                MAX_CHANGE_PAGE,
            )
            .await?;
            exhausted = batch.len() < MAX_CHANGE_PAGE;
            for request in batch {
                cursor = Some(request.id.clone());
                let Some(record) =
                    records::get(self.db(), ResourceType::Contract, &request.contract_id).await?
                else {
                    continue;
                };
                let read = decide(caller, Action::Read, &record);
                if read.allowed {
                    items.push(change_json(&request, &record, read.fields));
                    if items.len() == limit {
                        break;
                    }
                }
            }
        }
        let next_after = if items.len() == limit {
            items
                .last()
                .and_then(|i| i["id"].as_str())
                .map(str::to_owned)
        } else {
            None
        };
        self.record(self.event(
            caller,
            audit::Draft {
                kind: "decision",
                action: "read",
                resource_type: "change_request",
                resource_id: None,
                partner_id: None,
                decision: &service_allow(),
                reason: None,
                input: audit::input(
                    caller,
                    "read",
                    Target::Object("change_request", None),
                    caller.elevated_for(ResourceType::Contract, Action::Read, None),
                ),
                extra: json!({"returned": items.len()}),
            },
        ))
        .await?;
        Ok(json!({"items": items, "next_after": next_after}))
    }

    /// Approves a pending request: applies its terms to the contract and
    /// closes it, in one transaction with the event.
    pub async fn approve_change(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let mut denied = None;
        let result = self.try_approve(caller, id, &mut denied).await;
        self.change_outcome(caller, "approve", ("change_request", id), result, denied)
            .await
    }

    fn maker_checker(
        &self,
        caller: &Caller,
        action: Action,
        request: &ChangeRequestRow,
        contract: &Record,
        denied: &mut Option<NewEvent>,
    ) -> Result<(), ServiceError> {
        if request.proposer_id != caller.principal.id {
            return Ok(());
        }
        let error = ServiceError::forbidden(
            "self_approval",
            format!(
                "you proposed this change, so you may not {action} it (maker-checker): another principal with contract:{action} must"
            ),
        );
        *denied = Some(self.change_event(
            caller,
            action.name(),
            contract,
            &service_refusal(),
            Some(error.to_string()),
            json!({"change_request": request.id}),
        ));
        Err(error)
    }

    /// Closes a pending request as `status` (by the caller, with a
    /// reason for a rejection) and commits that with its event; returns the
    /// request as closed.
    async fn close_request(
        &self,
        mut tx: Tx,
        caller: &Caller,
        request: ChangeRequestRow,
        status: &str,
        reason: Option<String>,
        event: NewEvent,
    ) -> Result<ChangeRequestRow, ServiceError> {
        let at = self.now_text();
        let by = caller.principal.id.clone();
        if !store::close(&mut tx, &request.id, status, &by, reason.as_deref(), &at).await? {
            return Err(closed(&request));
        }
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(ChangeRequestRow {
            status: status.into(),
            reason,
            decided_by: Some(by),
            decided_at: Some(at),
            ..request
        })
    }

    /// Opens a pending request for a reviewer's `action` (approve or
    /// reject): visible, pending, not the reviewer's own, and allowed.
    async fn review(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        action: Action,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<(ChangeRequestRow, Record, Decision), ServiceError> {
        let (request, contract) = self.load_change(tx, caller, action, id, denied).await?;
        if request.status != "pending" {
            return Err(closed(&request));
        }
        self.maker_checker(caller, action, &request, &contract, denied)?;
        let decision = decide(caller, action, &contract);
        if !decision.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                action,
                &contract,
                &decision,
                json!({"change_request": request.id}),
            ));
            return Err(refusal(caller, action, &contract, &decision));
        }
        Ok((request, contract, decision))
    }

    async fn try_approve(
        &self,
        caller: &Caller,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<Json, ServiceError> {
        let mut tx = self.db().begin().await?;
        let (request, current, before) = self
            .review(&mut tx, caller, Action::Approve, id, denied)
            .await?;
        if current.version != request.base_version {
            return Err(stale(&request, &current));
        }
        let terms: Json = serde_json::from_str(&request.terms)
            .ok()
            .filter(|t: &Json| t.as_object().is_some_and(|o| !o.is_empty()))
            .ok_or_else(|| {
                ServiceError::conflict(
                    "change_request_corrupt",
                    "the stored terms of this request cannot be read; propose the change again",
                )
            })?;
        let mut next = current.clone();
        let (written, _) = apply_body(ResourceType::Contract, &terms, &mut next, false)?;
        let after = decide(caller, Action::Approve, &next);
        if !after.allowed {
            *denied = Some(self.record_event(
                caller,
                "decision",
                Action::Approve,
                &next,
                &after,
                json!({"change_request": request.id}),
            ));
            return Err(refusal(caller, Action::Approve, &next, &after));
        }
        check_writable(&written, before.fields.intersection(after.fields)).map_err(|error| {
            match error {
                ServiceError::Field {
                    code, field, class, ..
                } => ServiceError::Field {
                    code,
                    field,
                    class,
                    what: "your roles do not allow you to approve",
                },
                other => other,
            }
        })?;
        next.version = current.version + 1;
        set_column(&mut next, "updated_at", Value::Text(self.now_text()));
        if !records::update(&mut tx, &next, current.version).await? {
            return Err(stale(&request, &next));
        }
        let event = self.change_event(
            caller,
            "approve",
            &next,
            &after,
            None,
            json!({
                "change_request": request.id,
                "proposer": request.proposer_id,
                "changes": audit::changes(Some(&current), Some(&next)),
            }),
        );
        let closed = self
            .close_request(tx, caller, request, "approved", None, event)
            .await?;
        let readable = self.readable(caller, &next);
        let mut view = change_json(&closed, &current, readable);
        view["contract"] = render(&next, readable);
        Ok(view)
    }

    /// Rejects a pending request with a reason.
    pub async fn reject_change(
        &self,
        caller: &Caller,
        id: &str,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let mut denied = None;
        let result = self.try_reject(caller, id, body, &mut denied).await;
        self.change_outcome(caller, "reject", ("change_request", id), result, denied)
            .await
    }

    async fn try_reject(
        &self,
        caller: &Caller,
        id: &str,
        body: &Json,
        denied: &mut Option<NewEvent>,
    ) -> Result<Json, ServiceError> {
        let reason = rejection_reason(body)?;
        let mut tx = self.db().begin().await?;
        let (request, contract, decision) = self
            .review(&mut tx, caller, Action::Reject, id, denied)
            .await?;
        // The reason is free text: it stays with the request (which can be
        // erased), not in the trail.
        let event = self.change_event(
            caller,
            "reject",
            &contract,
            &decision,
            None,
            json!({"change_request": request.id, "proposer": request.proposer_id}),
        );
        let closed = self
            .close_request(tx, caller, request, "rejected", Some(reason), event)
            .await?;
        Ok(change_json(
            &closed,
            &contract,
            self.readable(caller, &contract),
        ))
    }

    /// Withdraws a pending request; only its author may.
    pub async fn withdraw_change(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let mut denied = None;
        let result = self.try_withdraw(caller, id, &mut denied).await;
        self.change_outcome(caller, "withdraw", ("change_request", id), result, denied)
            .await
    }

    async fn try_withdraw(
        &self,
        caller: &Caller,
        id: &str,
        denied: &mut Option<NewEvent>,
    ) -> Result<Json, ServiceError> {
        let mut tx = self.db().begin().await?;
        let (request, contract) = self
            .load_change(&mut tx, caller, Action::Propose, id, denied)
            .await?;
        if request.proposer_id != caller.principal.id {
            let error = ServiceError::forbidden(
                "not_proposer",
                "only the principal who proposed a change may withdraw it",
            );
            *denied = Some(self.change_event(
                caller,
                "withdraw",
                &contract,
                &service_refusal(),
                Some(error.to_string()),
                json!({"change_request": request.id}),
            ));
            return Err(error);
        }
        if request.status != "pending" {
            return Err(closed(&request));
        }
        let event = self.change_event(
            caller,
            "withdraw",
            &contract,
            &service_allow(),
            None,
            json!({"change_request": request.id}),
        );
        let closed = self
            .close_request(tx, caller, request, "withdrawn", None, event)
            .await?;
        Ok(change_json(
            &closed,
            &contract,
            self.readable(caller, &contract),
        ))
    }
}
