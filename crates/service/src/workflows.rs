//! Workflows (R7): partner onboarding and offboarding, each step a
//! permission in the policy and an audit event of its own.
//!
//! - **Onboarding** (`workflow:trigger`): creates the partner in status
//!   `onboarding` (`partner:create`; a partner manager becomes its owner)
//!   and a draft contract from the template (`contract:create`). Once a
//!   *different* principal approves, the partner's `api_client` principal
//!   (`principal:create`) and its credential (`principal:update`) are made;
//!   the token is shown once, to the approver, to hand over. An approval
//!   that stops half-way (a refused step) resumes where it stopped.
//! - **Offboarding** (`workflow:trigger`): revokes every live credential of
//!   the partner's principals (`principal:update`) and archives the partner
//!   (`partner:update`).

use partnerdb_policy::{Action, Decision, NoAttributes, Request, Resource, ResourceType};
use partnerdb_store::principals as store_principals;
use partnerdb_store::workflows::{self as store, WorkflowRow};
use partnerdb_store::{Tx, records};
use serde_json::{Map, Value as Json, json};

use crate::Service;
use crate::audit::{self, Draft, Target, service_allow, service_refusal};
use crate::auth::Caller;
use crate::codec::{object, only};
use crate::error::ServiceError;

/// How long an approval's claim on an onboarding holds: an approval that
/// stopped without giving the run back (a timeout, a restart) can be taken
/// over after this.
pub const CLAIM_LEASE_SECS: i64 = 120;

/// The terms a draft contract starts from.
pub const CONTRACT_TEMPLATE: &str = "Standard partner agreement: terms to be negotiated. \
     Payment net 30 days; either party may terminate with 90 days' notice.";

fn workflow_json(w: &WorkflowRow) -> Json {
    json!({
        "id": w.id,
        "kind": w.kind,
        "partner_id": w.partner_id,
        "contract_id": w.contract_id,
        "triggered_by": w.triggered_by,
        "status": w.status,
        "approved_by": w.approved_by,
        "api_client_id": w.api_client_id,
        "created_at": w.created_at,
        "updated_at": w.updated_at,
    })
}

impl Service {
    /// Decides `workflow:trigger` on the workflow `name`; a refusal is
    /// recorded and returned.
    async fn may_trigger(&self, caller: &Caller, name: &str) -> Result<Decision, ServiceError> {
        let request = Request {
            principal: caller.engine(),
            action: Action::Trigger,
            resource: Resource {
                kind: ResourceType::Workflow,
                id: name,
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: caller.elevated_for(ResourceType::Workflow, Action::Trigger, None),
        };
        let decision = caller.policy.decide(&request);
        if decision.allowed {
            return Ok(decision);
        }
        let reason = caller.policy.deny_reason(&request, &decision);
        let event =
            self.workflow_event(caller, "trigger", name, None, &decision, reason, json!({}));
        self.refuse(
            ServiceError::forbidden("forbidden", format!("you may not trigger {name}")),
            Some(event),
        )
        .await
    }

    /// Appends the event of a change an approval makes to its run (a
    /// step: `step`'s keys join the detail) in the change's transaction.
    async fn append_approval_step(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        run: &WorkflowRow,
        step: Json,
    ) -> Result<(), ServiceError> {
        let allowed = service_allow();
        let event = self.workflow_event(
            caller,
            "approve",
            &run.id,
            Some(&run.partner_id),
            &allowed,
            None,
            step,
        );
        self.append_in(tx, event).await
    }

    #[allow(clippy::too_many_arguments, reason = "one event, spelled out")]
    fn workflow_event(
        &self,
        caller: &Caller,
        action: &str,
        id: &str,
        partner: Option<&str>,
        decision: &Decision,
        reason: Option<String>,
        extra: Json,
    ) -> partnerdb_store::audit::NewEvent {
        self.event(
            caller,
            Draft {
                kind: if decision.allowed {
                    "workflow"
                } else {
                    "decision"
                },
                action,
                resource_type: "workflow",
                resource_id: Some(id),
                partner_id: partner,
                decision,
                reason,
                input: audit::input(caller, action, Target::Object("workflow", Some(id)), false),
                extra,
            },
        )
    }

    /// A trigger the policy allowed whose steps stopped part way (a step
    /// refused after earlier ones were made, each in a transaction of its
    /// own): the trail says that it was triggered, what was done and why
    /// it stopped, beside the refused step's own event. The step's error
    /// is what the caller gets; if this event cannot be written, the
    /// trail's.
    async fn unless_stopped<T>(
        &self,
        step: Result<T, ServiceError>,
        (caller, name, decision, partner_id): (&Caller, &str, &Decision, &str),
        done: Json,
    ) -> Result<T, ServiceError> {
        let error = match step {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        // An allow keeps no reason: why it stopped goes with what was done
        // (the error's quoted request text withheld, as in reasons).
        let mut extra = json!({
            "workflow": name,
            "incomplete": true,
            "stopped": {
                "code": error.code(),
                "reason": crate::audit::withhold_free_text(&error.to_string()),
            },
        });
        if let (Some(extra), Json::Object(done)) = (extra.as_object_mut(), done) {
            extra.extend(done);
        }
        let event = self.workflow_event(
            caller,
            "trigger",
            name,
            Some(partner_id),
            decision,
            None,
            extra,
        );
        match self.record(event).await {
            Ok(()) => Err(error),
            Err(trail) => Err(trail),
        }
    }

    async fn save_workflow(
        &self,
        caller: &Caller,
        run: &WorkflowRow,
        action: &str,
        decision: &Decision,
        extra: Json,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db().begin().await?;
        store::save(&mut tx, run).await?;
        let event = self.workflow_event(
            caller,
            action,
            &run.id,
            Some(&run.partner_id),
            decision,
            None,
            extra,
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Triggers onboarding: `{"partner": {…}, "contract": {…}}` (the
    /// contract's fields are optional; it starts as a draft from the
    /// template).
    pub async fn onboard(&self, caller: &Caller, body: &Json) -> Result<Json, ServiceError> {
        let decision = self.may_trigger(caller, "onboarding").await?;
        // A body refused once the trigger is allowed is recorded (the
        // records' own refusals are, by the records).
        let (partner, mut contract, name) = match onboarding_parts(caller, body) {
            Ok(parts) => parts,
            Err(error) => {
                return self
                    .refuse_plain(caller, "trigger", ("workflow", "onboarding"), error)
                    .await;
            }
        };
        let created = self
            .create_record(
                caller,
                ResourceType::Partner,
                &Json::Object(partner),
                None,
                None,
            )
            .await?;
        let partner_id = created.view.body["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        contract.insert("partner_id".into(), Json::from(partner_id.as_str()));
        contract.insert("status".into(), Json::from("draft"));
        contract
            .entry("title")
            .or_insert_with(|| Json::from(format!("Partner agreement: {name}")));
        contract
            .entry("terms")
            .or_insert_with(|| Json::from(CONTRACT_TEMPLATE));
        let draft = self
            .unless_stopped(
                self.create_record(
                    caller,
                    ResourceType::Contract,
                    &Json::Object(contract),
                    None,
                    None,
                )
                .await,
                (caller, "onboarding", &decision, &partner_id),
                json!({"partner_created": partner_id}),
            )
            .await?;
        let now = self.now_text();
        let run = WorkflowRow {
            id: partnerdb_store::new_id(),
            kind: "onboarding".into(),
            partner_id,
            contract_id: draft.view.body["id"].as_str().map(str::to_owned),
            triggered_by: caller.principal.id.clone(),
            status: "awaiting_approval".into(),
            approved_by: None,
            api_client_id: None,
            created_at: now.clone(),
            updated_at: now,
        };
        self.save_workflow(
            caller,
            &run,
            "trigger",
            &decision,
            json!({"workflow": "onboarding"}),
        )
        .await?;
        Ok(json!({
            "workflow": workflow_json(&run),
            "partner": created.view.body,
            "contract": draft.view.body,
        }))
    }

    /// Approves an onboarding (never by whoever triggered it): makes the
    /// partner's api_client principal and its credential.
    pub async fn approve_workflow(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let result = self.try_approve_workflow(caller, id).await;
        self.record_unrecorded(caller, "approve", ("workflow", id), result)
            .await
    }

    async fn try_approve_workflow(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let Some(mut run) = self.visible_workflow(caller, id).await? else {
            return Err(ServiceError::NotFound("workflow"));
        };
        if run.kind != "onboarding"
            || !["awaiting_approval", "approving"].contains(&run.status.as_str())
        {
            return Err(ServiceError::conflict(
                "workflow_closed",
                format!("this {} is {}, not awaiting approval", run.kind, run.status),
            ));
        }
        if run.triggered_by == caller.principal.id {
            let error = ServiceError::forbidden(
                "self_approval",
                "you triggered this onboarding, so you may not approve it: another principal must",
            );
            let refused = service_refusal();
            let event = self.workflow_event(
                caller,
                "approve",
                &run.id,
                Some(&run.partner_id),
                &refused,
                Some(error.to_string()),
                json!({}),
            );
            return self.refuse(error, Some(event)).await;
        }
        // Decided before the run is touched: an approver who may not make
        // the partner's API client (principal:create, and :assign for its
        // role) or its credential (principal:update) is refused without
        // claiming it. The steps decide again as they go.
        if run.api_client_id.is_none() {
            self.decide_principal(caller, Action::Create, "*", false)
                .await?;
            self.decide_principal(caller, Action::Assign, "*", false)
                .await?;
        }
        let client = run.api_client_id.as_deref().unwrap_or("*");
        self.decide_principal(caller, Action::Update, client, false)
            .await?;
        // Claim the run: of two approvers at once, one goes on.
        let mut tx = self.db().begin().await?;
        let claimed = store::claim(
            &mut tx,
            &run.id,
            &self.now_text(),
            &self.time_text(-CLAIM_LEASE_SECS),
        )
        .await?;
        if claimed {
            // The claim is a change of the run: its event commits with it.
            let step =
                json!({"step": "claimed", "status": {"before": run.status, "after": "approving"}});
            self.append_approval_step(&mut tx, caller, &run, step)
                .await?;
        }
        tx.commit().await?;
        if !claimed {
            return Err(ServiceError::conflict(
                "workflow_closed",
                "this onboarding is being approved or was approved already",
            ));
        }
        run.status = "approving".into();
        match self.finish_onboarding(caller, &mut run).await {
            Ok(answer) => Ok(answer),
            Err(error) => {
                // Give the run back, to be approved again (it resumes).
                // Only if it is still ours to give: a claim whose lease ran
                // out may have been taken over (and finished) by another
                // approver, and no step was then made here.
                let mut tx = self.db().begin().await?;
                let released = store::transition(
                    &mut tx,
                    &run.id,
                    "approving",
                    "awaiting_approval",
                    &self.now_text(),
                )
                .await?;
                if released {
                    let step = json!({"step": "released", "status": {"before": "approving", "after": "awaiting_approval"}});
                    self.append_approval_step(&mut tx, caller, &run, step)
                        .await?;
                }
                tx.commit().await?;
                Err(error)
            }
        }
    }

    /// The approved part of an onboarding, on a claimed run.
    async fn finish_onboarding(
        &self,
        caller: &Caller,
        run: &mut WorkflowRow,
    ) -> Result<Json, ServiceError> {
        let api_client = match &run.api_client_id {
            Some(existing) => existing.clone(),
            None => {
                let partner = records::get(self.db(), ResourceType::Partner, &run.partner_id)
                    .await?
                    .ok_or(ServiceError::NotFound("partner"))?;
                let name = partner
                    .value("name")
                    .and_then(|v| v.as_text())
                    .unwrap_or("partner")
                    .to_owned();
                let principal = self
                    .create_principal(
                        caller,
                        &json!({
                            "name": format!("{name} API client"),
                            "kind": "api_client",
                            "partner_id": run.partner_id,
                            "roles": ["api_client"],
                        }),
                    )
                    .await?;
                let made = principal["id"].as_str().unwrap_or_default().to_owned();
                // Remembered at once: a later step refused can resume.
                let mut tx = self.db().begin().await?;
                run.api_client_id = Some(made.clone());
                run.updated_at = self.now_text();
                store::save(&mut tx, run).await?;
                let step = json!({"step": "api_client_created", "api_client_id": made});
                self.append_approval_step(&mut tx, caller, run, step)
                    .await?;
                tx.commit().await?;
                made
            }
        };
        let credential = self
            .create_credential(caller, &api_client, &json!({}))
            .await?;
        run.status = "completed".into();
        run.approved_by = Some(caller.principal.id.clone());
        run.updated_at = self.now_text();
        let allowed = service_allow();
        self.save_workflow(
            caller,
            run,
            "approve",
            &allowed,
            json!({"api_client": api_client, "credential": credential.id}),
        )
        .await?;
        Ok(json!({
            "workflow": workflow_json(run),
            "api_client": {
                "id": api_client,
                "credential_id": credential.id,
                "token": credential.token,
                "expires_at": credential.expires_at,
                "note": "the token is shown once: hand it to the partner now",
            },
        }))
    }

    /// Offboards a partner: `{"partner_id": "…"}`.
    pub async fn offboard(&self, caller: &Caller, body: &Json) -> Result<Json, ServiceError> {
        let decision = self.may_trigger(caller, "offboarding").await?;
        let partner_id = match offboarding_partner(body) {
            Ok(partner_id) => partner_id,
            Err(error) => {
                return self
                    .refuse_plain(caller, "trigger", ("workflow", "offboarding"), error)
                    .await;
            }
        };
        // The partner must be one the caller may read (else: not found).
        self.get_record(caller, ResourceType::Partner, &partner_id)
            .await?;
        // Every step is decided before anything changes, so that a refused
        // step does not leave the partner half offboarded (each step is
        // decided and recorded again when it runs).
        let partner = records::get(self.db(), ResourceType::Partner, &partner_id)
            .await?
            .ok_or(ServiceError::NotFound("partner"))?;
        let update = crate::records::decide(caller, Action::Update, &partner);
        if !update.allowed
            || !update
                .fields
                .contains(partnerdb_policy::FieldClass::General)
            || !caller.allows(ResourceType::Principal, Action::Update)
        {
            let error = ServiceError::forbidden(
                "forbidden",
                "offboarding needs partner:update on this partner's general fields (its status) and principal:update",
            );
            return self
                .refuse_plain(caller, "trigger", ("workflow", "offboarding"), error)
                .await;
        }
        let now = self.now_text();
        let live = store_principals::partner_credentials(self.db(), &partner_id, &now).await?;
        let mut revoked = Vec::new();
        for (principal, credential) in &live {
            self.unless_stopped(
                self.revoke_credential(caller, principal, credential).await,
                (caller, "offboarding", &decision, &partner_id),
                json!({"credentials_revoked": revoked}),
            )
            .await?;
            revoked.push(credential.clone());
        }
        let archived = self
            .unless_stopped(
                self.update_record(
                    caller,
                    ResourceType::Partner,
                    &partner_id,
                    &json!({"status": "archived"}),
                    None,
                )
                .await,
                (caller, "offboarding", &decision, &partner_id),
                json!({"credentials_revoked": revoked}),
            )
            .await?;
        let run = WorkflowRow {
            id: partnerdb_store::new_id(),
            kind: "offboarding".into(),
            partner_id,
            contract_id: None,
            triggered_by: caller.principal.id.clone(),
            status: "completed".into(),
            approved_by: None,
            api_client_id: None,
            created_at: now.clone(),
            updated_at: self.now_text(),
        };
        self.save_workflow(
            caller,
            &run,
            "trigger",
            &decision,
            json!({"workflow": "offboarding", "credentials_revoked": live.len()}),
        )
        .await?;
        Ok(json!({
            "workflow": workflow_json(&run),
            "credentials_revoked": live.len(),
            "partner": archived.body,
        }))
    }

    /// A run, if the caller triggered it or may read its partner.
    async fn visible_workflow(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<WorkflowRow>, ServiceError> {
        Ok(self.sighted_workflow(caller, id).await?.map(|(run, _)| run))
    }

    /// A run and the decision that shows it to the caller: the service's
    /// (the caller triggered it) or the policy's read of its partner.
    async fn sighted_workflow(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<(WorkflowRow, Decision)>, ServiceError> {
        let Some(run) = store::get(self.db(), id).await? else {
            return Ok(None);
        };
        if run.triggered_by == caller.principal.id {
            return Ok(Some((run, service_allow())));
        }
        let partner = records::get(self.db(), ResourceType::Partner, &run.partner_id).await?;
        let read = partner.map(|p| crate::records::decide(caller, Action::Read, &p));
        Ok(read.filter(|d| d.allowed).map(|d| (run, d)))
    }

    /// One run.
    pub async fn get_workflow(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let Some((run, decision)) = self.sighted_workflow(caller, id).await? else {
            return self
                .refuse_plain(
                    caller,
                    "read",
                    ("workflow", id),
                    ServiceError::NotFound("workflow"),
                )
                .await;
        };
        let mut event = self.workflow_event(
            caller,
            "read",
            id,
            Some(&run.partner_id),
            &decision,
            None,
            json!({}),
        );
        event.kind = "decision".to_owned();
        self.record(event).await?;
        Ok(workflow_json(&run))
    }
}

/// An onboarding's partner and contract bodies (their status set, the
/// partner's owner defaulted to the caller) and the partner's name.
type OnboardingParts = (Map<String, Json>, Map<String, Json>, String);

/// [`OnboardingParts`] of a body, or why the body is refused.
fn onboarding_parts(caller: &Caller, body: &Json) -> Result<OnboardingParts, ServiceError> {
    let top = object(body, "")?;
    only(top, &["partner", "contract"], "an onboarding")?;
    let mut partner = object(top.get("partner").unwrap_or(&Json::Null), "/partner")?.clone();
    match partner.get("status").and_then(Json::as_str) {
        None | Some("onboarding") => {}
        Some(_) => {
            return Err(ServiceError::invalid(
                "invalid_value",
                "/partner/status",
                "an onboarded partner starts in status `onboarding`",
            ));
        }
    }
    partner.insert("status".into(), Json::from("onboarding"));
    partner
        .entry("owner")
        .or_insert_with(|| Json::from(caller.principal.id.as_str()));
    let contract = match top.get("contract") {
        None => Map::new(),
        Some(c) => object(c, "/contract")?.clone(),
    };
    if contract.get("status").is_some_and(|s| s != "draft") {
        return Err(ServiceError::invalid(
            "invalid_value",
            "/contract/status",
            "the onboarding contract starts as a draft",
        ));
    }
    let name = partner
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or("the partner")
        .to_owned();
    Ok((partner, contract, name))
}

/// The partner an offboarding names, or why the body is refused.
fn offboarding_partner(body: &Json) -> Result<String, ServiceError> {
    let top = object(body, "")?;
    only(top, &["partner_id"], "an offboarding")?;
    Ok(top
        .get("partner_id")
        .and_then(Json::as_str)
        .filter(|p| crate::auth::is_request_id(p.as_bytes()))
        .ok_or_else(|| {
            ServiceError::invalid(
                "missing_field",
                "/partner_id",
                "`partner_id` is required: a partner id",
            )
        })?
        .to_owned())
}
