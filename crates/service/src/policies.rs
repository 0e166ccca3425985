//! Policy versions (R11, R13): proposed after check, lint and a
//! separation-of-duties check against the current bindings; approved by a
//! *different* principal holding `policy:apply` (high-risk: with an
//! elevation), refused when it would leave fewer administrators than
//! `min_admins`; activated atomically (the version's state and the `policy`
//! setting in one transaction with the event) and taken into use at once by
//! this server and, by polling, within a second by every server sharing the
//! database. A rollback proposes an earlier version's text again.
//!
//! Each request is decided by exactly one version: the `Caller` holds the
//! compiled policy it was authenticated under, and its audit event records
//! that version.

use std::sync::Arc;
use std::time::Duration;

use partnerdb_policy::diagnostic::{Report, Severity, SourceFile};
use partnerdb_policy::{
    Action, CompiledPolicy, Decision, Denial, NoAttributes, Request, Resource, ResourceType,
    parse_policy,
};
use partnerdb_store::policies::{self as store, PolicyVersionRow};
use partnerdb_store::{Db, StoreError, principals as store_principals};
use serde_json::{Value as Json, json};

use crate::audit::{self, Draft, Target};
use crate::auth::Caller;
use crate::codec::{object, only};
use crate::error::ServiceError;
use crate::{ActivePolicy, Service, policy_version};

/// How often a server looks for a version activated elsewhere.
pub const POLICY_POLL: Duration = Duration::from_millis(500);
/// How soon a lost activation listener is connected again.
pub const LISTEN_RETRY: Duration = Duration::from_secs(30);
/// The largest policy text, in bytes.
pub const MAX_POLICY_BYTES: usize = 512 * 1024;

/// Records the policy in force as version 1 in a database initialised
/// before versions were kept, with its event (`policy` `adopt`) in the
/// same transaction, as every policy version has one.
pub async fn adopt_unversioned(db: &Db, text: &str) -> Result<(), StoreError> {
    if store::active(db).await?.is_some() {
        return Ok(());
    }
    let now = partnerdb_store::now();
    let mut tx = db.begin().await?;
    if store::list(db, None, 1).await?.is_empty() {
        let version = policy_version(text);
        store::insert(
            &mut tx,
            &PolicyVersionRow {
                number: 1,
                hash: version.clone(),
                content: text.to_owned(),
                author: "bootstrap".into(),
                message: "the policy in force before versions were kept".into(),
                state: "active".into(),
                approved_by: None,
                rollback_of: None,
                based_on: None,
                created_at: now.clone(),
                decided_at: Some(now.clone()),
            },
        )
        .await?;
        let event = partnerdb_store::audit::NewEvent {
            at: now,
            kind: "policy".to_owned(),
            principal_id: None,
            action: "adopt".to_owned(),
            resource_type: "policy".to_owned(),
            resource_id: Some(version.clone()),
            partner_id: None,
            decision: "allow".to_owned(),
            policy_version: version.clone(),
            detail: json!({"by": "bootstrap", "number": 1, "version": version, "adopted": "the policy in force before versions were kept"}).to_string(),
            matched: Vec::new(),
        };
        partnerdb_store::audit::append(&mut tx, vec![event]).await?;
    }
    tx.commit().await
}

/// The active version and its compiled policy.
fn compile_active(
    active: Option<PolicyVersionRow>,
) -> Result<(PolicyVersionRow, CompiledPolicy), ServiceError> {
    let active = active
        .ok_or_else(|| ServiceError::conflict("policy_missing", "no policy version is active"))?;
    let compiled = crate::compile(&active.content).map_err(|error| {
        ServiceError::conflict(
            "policy_invalid",
            format!("the active policy does not compile: {error}"),
        )
    })?;
    Ok((active, compiled))
}

fn version_json(v: &PolicyVersionRow, with_content: bool) -> Json {
    let mut out = json!({
        "number": v.number,
        "hash": v.hash,
        "author": v.author,
        "message": v.message,
        "state": v.state,
        "approved_by": v.approved_by,
        "rollback_of": v.rollback_of,
        "created_at": v.created_at,
        "decided_at": v.decided_at,
    });
    if with_content {
        out["content"] = Json::from(v.content.as_str());
    }
    out
}

/// Checks and lints a candidate: the compiled policy and the lint findings
/// that do not block it, or why it is refused.
fn check_candidate(text: &str) -> Result<(CompiledPolicy, Vec<Json>), ServiceError> {
    let source = SourceFile::new("proposed policy", text);
    let policy = parse_policy(&source).map_err(|diagnostics| {
        ServiceError::invalid(
            "policy_invalid",
            "/content",
            Report {
                source: &source,
                diagnostics: &diagnostics,
            }
            .to_string(),
        )
    })?;
    let findings = partnerdb_policy::lint::lint(&policy);
    let errors: Vec<_> = findings
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(ServiceError::invalid(
            "policy_lint_errors",
            "/content",
            Report {
                source: &source,
                diagnostics: &errors,
            }
            .to_string(),
        ));
    }
    let shown = findings.iter().map(|d| d.to_json(&source)).collect();
    Ok((CompiledPolicy::compile(policy), shown))
}

impl Service {
    /// Takes version `number` (`text`, already checked and stored) into
    /// use in this server, unless it already uses that one or a later one:
    /// a slow poll never brings back an older version.
    fn take_into_use(&self, number: i64, text: &str) -> Result<(), ServiceError> {
        if self.policy.load().number >= number {
            return Ok(());
        }
        let compiled = crate::compile(text).map_err(|error| {
            ServiceError::conflict(
                "policy_invalid",
                format!("the stored policy does not compile: {error}"),
            )
        })?;
        let next = Arc::new(ActivePolicy {
            compiled: Arc::new(compiled),
            version: policy_version(text).into(),
            number,
        });
        loop {
            let current = self.policy.load_full();
            if current.number >= number {
                return Ok(());
            }
            let previous = self.policy.compare_and_swap(&current, next.clone());
            if Arc::ptr_eq(&previous, &current) {
                break;
            }
        }
        self.principals_changed();
        Ok(())
    }

    /// Follows activations made through other servers: polls the active
    /// version every [`POLICY_POLL`] and takes a new one into use.
    pub async fn follow_policy(self: Arc<Self>) {
        // PostgreSQL announces activations (LISTEN/NOTIFY); the poll stays
        // as the fallback, and is all there is on SQLite.
        let mut listener = None;
        let mut listen_again = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(POLICY_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // (Re)connect the listener, at most every LISTEN_RETRY.
            if listener.is_none() && tokio::time::Instant::now() >= listen_again {
                listen_again = tokio::time::Instant::now() + LISTEN_RETRY;
                match store::listen(self.db()).await {
                    Ok(connected) => listener = connected,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for policy activations; polling meanwhile");
                    }
                }
            }
            match listener.as_mut() {
                Some(announced) => {
                    tokio::select! {
                        _ = tick.tick() => {}
                        received = announced.recv() => {
                            if let Err(error) = received {
                                tracing::warn!(%error, "lost the policy listener; polling only");
                                listener = None;
                            }
                        }
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            if let Err(error) = self.poll_policy().await {
                tracing::warn!(%error, "cannot check for a new policy version");
            }
        }
    }

    /// One poll: takes the active version into use if it is not already.
    pub async fn poll_policy(&self) -> Result<(), ServiceError> {
        let Some((number, _)) = store::active(self.db()).await? else {
            return Ok(());
        };
        if self.policy.load().number >= number {
            return Ok(());
        }
        if let Some(version) = store::get(self.db(), number).await? {
            self.take_into_use(number, &version.content)?;
            tracing::info!(number, hash = %version.hash, "policy version taken into use");
        }
        Ok(())
    }

    /// Decides `policy:<action>`; a refusal is recorded and returned, and
    /// so is a read's allow (a change's allow is recorded with the change).
    async fn may_policy(
        &self,
        caller: &Caller,
        action: Action,
        id: &str,
    ) -> Result<Decision, ServiceError> {
        let request = Request {
            principal: caller.engine(),
            action,
            resource: Resource {
                kind: ResourceType::Policy,
                id,
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: caller.elevated_for(ResourceType::Policy, action, None),
        };
        let decision = caller.policy.decide(&request);
        if decision.allowed {
            if action == Action::Read {
                let event = self.policy_event(caller, "read", id, &decision, None, json!({}));
                self.record(event).await?;
            }
            return Ok(decision);
        }
        let reason = caller.policy.deny_reason(&request, &decision);
        let event = self.policy_event(caller, action.name(), id, &decision, reason, json!({}));
        let error = if decision.denial == Some(Denial::ElevationRequired) {
            ServiceError::ElevationRequired {
                permission: format!("policy:{action}"),
            }
        } else {
            ServiceError::forbidden("forbidden", format!("you may not {action} policies"))
        };
        self.refuse(error, Some(event)).await
    }

    fn policy_event(
        &self,
        caller: &Caller,
        action: &str,
        id: &str,
        decision: &Decision,
        reason: Option<String>,
        extra: Json,
    ) -> partnerdb_store::audit::NewEvent {
        self.event(
            caller,
            Draft {
                kind: if decision.allowed && action != "read" {
                    "policy"
                } else {
                    "decision"
                },
                action,
                resource_type: "policy",
                resource_id: Some(id),
                partner_id: None,
                decision,
                reason,
                input: audit::input(
                    caller,
                    action,
                    Target::Object("policy", Some(id)),
                    caller.elevated_for(
                        ResourceType::Policy,
                        Action::parse(action).unwrap_or(Action::Read),
                        None,
                    ),
                ),
                extra,
            },
        )
    }

    /// Proposes a version: `{"content": "<policy TOML>", "message": "…"}`.
    pub async fn propose_policy(&self, caller: &Caller, body: &Json) -> Result<Json, ServiceError> {
        let decision = self.may_policy(caller, Action::Propose, "new").await?;
        let object = object(body, "")?;
        only(object, &["content", "message"], "a proposal")?;
        let content = object
            .get("content")
            .and_then(Json::as_str)
            .filter(|c| !c.trim().is_empty() && c.len() <= MAX_POLICY_BYTES)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "missing_field",
                    "/content",
                    format!(
                        "`content` is the policy's TOML text, at most {MAX_POLICY_BYTES} bytes"
                    ),
                )
            })?;
        let message = object
            .get("message")
            .and_then(Json::as_str)
            .filter(|m| !m.trim().is_empty() && m.len() <= 2000)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "missing_field",
                    "/message",
                    "a proposal needs a `message` (1 to 2000 bytes)",
                )
            })?;
        self.store_proposal(caller, &decision, content, message, None)
            .await
    }

    /// Proposes an earlier version's text again (`policy:rollback`).
    pub async fn rollback_policy(
        &self,
        caller: &Caller,
        number: i64,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let result = self.try_rollback_policy(caller, number, body).await;
        let id = number.to_string();
        self.record_unrecorded(caller, "rollback", ("policy", &id), result)
            .await
    }

    async fn try_rollback_policy(
        &self,
        caller: &Caller,
        number: i64,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let decision = self
            .may_policy(caller, Action::Rollback, &number.to_string())
            .await?;
        let earlier = store::get(self.db(), number)
            .await?
            .ok_or(ServiceError::NotFound("policy version"))?;
        if earlier.state != "superseded" && earlier.state != "active" {
            return Err(ServiceError::conflict(
                "not_a_previous_version",
                format!(
                    "version {number} is {}: only a version that was in force can be rolled back to",
                    earlier.state
                ),
            ));
        }
        let message = match body.get("message") {
            None | Some(Json::Null) => format!("rollback to version {number}"),
            Some(Json::String(m)) if !m.trim().is_empty() && m.len() <= 2000 => m.clone(),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "invalid_value",
                    "/message",
                    "`message` is a string of 1 to 2000 bytes",
                ));
            }
        };
        self.store_proposal(caller, &decision, &earlier.content, &message, Some(number))
            .await
    }

    /// The version active in the database (inside `tx`), compiled.
    pub(crate) async fn active_in(
        &self,
        tx: &mut partnerdb_store::Tx,
    ) -> Result<(PolicyVersionRow, CompiledPolicy), ServiceError> {
        compile_active(store::active_in(tx).await?)
    }

    /// The version active in the database now, compiled.
    pub async fn active_now(&self) -> Result<(PolicyVersionRow, CompiledPolicy), ServiceError> {
        compile_active(store::active_version(self.db()).await?)
    }

    /// Refuses a version that would make an existing binding break a
    /// separation-of-duties rule.
    async fn check_bindings(
        &self,
        tx: &mut partnerdb_store::Tx,
        candidate: &CompiledPolicy,
    ) -> Result<(), ServiceError> {
        for (principal, roles) in &store_principals::all_bindings(tx).await? {
            if let Some(violation) = crate::principals::sod_violation(candidate, roles) {
                return Err(ServiceError::conflict(
                    "separation_of_duties",
                    format!(
                        "under this version, principal {principal} would break a rule: {violation}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records a refused policy action (after its transaction ended) and
    /// returns the refusal. Storage failures are returned as they are.
    async fn refuse_policy<T>(
        &self,
        caller: &Caller,
        action: &str,
        id: &str,
        error: ServiceError,
    ) -> Result<T, ServiceError> {
        self.refuse_plain(caller, action, ("policy", id), error)
            .await
    }

    async fn store_proposal(
        &self,
        caller: &Caller,
        decision: &Decision,
        content: &str,
        message: &str,
        rollback_of: Option<i64>,
    ) -> Result<Json, ServiceError> {
        let (candidate, findings) = check_candidate(content)?;
        let action = if rollback_of.is_some() {
            "rollback"
        } else {
            "propose"
        };
        let mut tx = self.begin_locked().await?;
        let checked = async {
            self.check_bindings(&mut tx, &candidate).await?;
            self.active_in(&mut tx).await
        }
        .await;
        let (active, active_compiled) = match checked {
            Ok(active) => active,
            Err(error) => {
                drop(tx);
                return self.refuse_policy(caller, action, "new", error).await;
            }
        };
        let diff = partnerdb_policy::diff::diff(active_compiled.policy(), candidate.policy());
        let mut row = PolicyVersionRow {
            number: 0,
            hash: policy_version(content),
            content: content.to_owned(),
            author: caller.principal.id.clone(),
            message: message.to_owned(),
            state: "proposed".into(),
            approved_by: None,
            rollback_of,
            based_on: Some(active.number),
            created_at: self.now_text(),
            decided_at: None,
        };
        row.number = store::insert(&mut tx, &row).await?;
        let event = self.policy_event(
            caller,
            action,
            &row.number.to_string(),
            decision,
            None,
            json!({"number": row.number, "hash": row.hash, "rollback_of": rollback_of}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        let mut out = version_json(&row, false);
        out["lint"] = Json::from(findings);
        out["diff"] = serde_json::to_value(&diff).unwrap_or(Json::Null);
        Ok(out)
    }

    /// The versions, newest first (`policy:read`): `before`, `limit`.
    pub async fn list_policy_versions(
        &self,
        caller: &Caller,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        self.may_policy(caller, Action::Read, "versions").await?;
        let mut before = None;
        let mut limit = 50usize;
        for (name, value) in params {
            match name.as_str() {
                "before" => {
                    before = Some(value.parse::<i64>().map_err(|_| {
                        ServiceError::invalid(
                            "invalid_value",
                            "before",
                            "`before` is a version number",
                        )
                    })?);
                }
                "limit" => {
                    limit = ServiceError::page_limit(value, 200)?;
                }
                _ => {
                    return Err(ServiceError::unknown_parameter(name));
                }
            }
        }
        let rows = store::list(self.db(), before, limit).await?;
        Ok(json!({"items": rows.iter().map(|v| version_json(v, false)).collect::<Vec<_>>()}))
    }

    /// One version with its text (`policy:read`).
    pub async fn get_policy_version(
        &self,
        caller: &Caller,
        number: i64,
    ) -> Result<Json, ServiceError> {
        self.may_policy(caller, Action::Read, &number.to_string())
            .await?;
        let version = store::get(self.db(), number)
            .await?
            .ok_or(ServiceError::NotFound("policy version"))?;
        Ok(version_json(&version, true))
    }

    /// Approves a proposed version (`policy:apply`, never by its author)
    /// and activates it at once.
    pub async fn approve_policy(
        &self,
        caller: &Caller,
        number: i64,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let id = number.to_string();
        let decision = self.may_policy(caller, Action::Apply, &id).await?;
        let accept_breaking = match body.get("accept_breaking") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => {
                return Err(ServiceError::invalid(
                    "wrong_type",
                    "/accept_breaking",
                    "`accept_breaking` is true or false",
                ));
            }
        };
        let Some(version) = store::get(self.db(), number).await? else {
            let error = ServiceError::NotFound("policy version");
            return self.refuse_policy(caller, "apply", &id, error).await;
        };
        if version.author == caller.principal.id {
            let error = ServiceError::forbidden(
                "self_approval",
                "you proposed this version, so you may not approve it: another principal with policy:apply must",
            );
            let refused = Decision {
                allowed: false,
                ..decision
            };
            let event = self.policy_event(
                caller,
                "apply",
                &id,
                &refused,
                Some(error.to_string()),
                json!({}),
            );
            return self.refuse(error, Some(event)).await;
        }
        let (candidate, _) = check_candidate(&version.content)?;
        // Breaking: it denies something the version in force allows on the
        // decisions recorded in the plan's window. Replayed before the lock
        // (the texts cannot change; the lock is held only for the checks
        // that read bindings and states).
        let simulated = match self.active_now().await {
            Ok(active) => self.simulate(&active, &candidate, PLAN_DAYS).await,
            Err(error) => Err(error),
        };
        let simulation = match simulated {
            Ok(simulation) => simulation,
            Err(error) => return self.refuse_policy(caller, "apply", &id, error).await,
        };
        let mut tx = self.begin_locked().await?;
        let checked = self
            .approval_checks(&mut tx, number, &candidate, &simulation, accept_breaking)
            .await;
        let (version, previous) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                drop(tx);
                return self.refuse_policy(caller, "apply", &id, error).await;
            }
        };
        let at = self.now_text();
        if !store::activate(&mut tx, number, &caller.principal.id, &at).await? {
            drop(tx);
            let error = ServiceError::conflict(
                "policy_version_closed",
                format!("version {number} is no longer proposed"),
            );
            return self.refuse_policy(caller, "apply", &id, error).await;
        }
        let event = self.policy_event(
            caller,
            "apply",
            &id,
            &decision,
            None,
            json!({"number": number, "hash": version.hash, "previous": previous, "author": version.author, "breaking": simulation["breaking"], "accepted_breaking": accept_breaking}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.take_into_use(number, &version.content)?;
        let active = PolicyVersionRow {
            state: "active".into(),
            approved_by: Some(caller.principal.id.clone()),
            decided_at: Some(at),
            ..version
        };
        Ok(version_json(&active, false))
    }

    /// What approval checks under the lock: the version is still
    /// proposed and was planned against the version in force, no binding
    /// breaks a separation-of-duties rule under it, the lockout rule, and
    /// breaking changes accepted. Returns the version and the hash of the
    /// one it replaces.
    async fn approval_checks(
        &self,
        tx: &mut partnerdb_store::Tx,
        number: i64,
        candidate: &CompiledPolicy,
        simulation: &Json,
        accept_breaking: bool,
    ) -> Result<(PolicyVersionRow, String), ServiceError> {
        let version = store::get_in(tx, number)
            .await?
            .ok_or(ServiceError::NotFound("policy version"))?;
        if version.state != "proposed" {
            return Err(ServiceError::conflict(
                "policy_version_closed",
                format!("version {number} is {}, not proposed", version.state),
            ));
        }
        let (active, current) = self.active_in(tx).await?;
        if version.based_on.is_some_and(|base| base != active.number) {
            return Err(ServiceError::conflict(
                "policy_version_stale",
                format!(
                    "version {number} was proposed when version {} was in force; version {} is in force now: plan it again and propose it anew",
                    version.based_on.unwrap_or_default(),
                    active.number
                ),
            ));
        }
        if simulation["against"].as_str() != Some(active.hash.as_str()) {
            return Err(ServiceError::conflict(
                "policy_version_stale",
                "another version was activated while this approval ran; approve again",
            ));
        }
        self.check_bindings(tx, candidate).await?;
        let (_, before) = self.live_administrators(tx, &current).await?;
        let (_, after) = self.live_administrators(tx, candidate).await?;
        let min = candidate.policy().min_admins as usize;
        // R13: no version may bring the administrators below
        // `min_admins`, nor lower their number while it is already below;
        // one that keeps it as it is passes (as unbinding and revoking do).
        if after.len() < min && after.len() < before.len() {
            return Err(ServiceError::conflict(
                "lockout",
                format!(
                    "refused by the lockout rule (R13): under version {number}, {} principal(s) would hold policy:apply with a live credential; it requires at least {min}",
                    after.len()
                ),
            ));
        }
        if simulation["breaking"] == Json::Bool(true) && !accept_breaking {
            return Err(ServiceError::conflict(
                "breaking_change",
                format!(
                    "version {number} denies {} decision(s) that the version in force allows among those recorded in the last {PLAN_DAYS} days (see `partnerdb policy plan {number}`); approve with accept_breaking to apply it anyway",
                    simulation["total"]["allow_to_deny"]
                ),
            ));
        }
        Ok((version, active.hash))
    }

    /// Rejects a proposed version (`policy:apply`).
    pub async fn reject_policy(&self, caller: &Caller, number: i64) -> Result<Json, ServiceError> {
        let result = self.try_reject_policy(caller, number).await;
        let id = number.to_string();
        self.record_unrecorded(caller, "reject", ("policy", &id), result)
            .await
    }

    async fn try_reject_policy(&self, caller: &Caller, number: i64) -> Result<Json, ServiceError> {
        let id = number.to_string();
        let decision = self.may_policy(caller, Action::Apply, &id).await?;
        let mut tx = self.db().begin().await?;
        let at = self.now_text();
        if !store::reject(&mut tx, number, &caller.principal.id, &at).await? {
            return Err(match store::get_in(&mut tx, number).await? {
                None => ServiceError::NotFound("policy version"),
                Some(v) => ServiceError::conflict(
                    "policy_version_closed",
                    format!("version {number} is {}, not proposed", v.state),
                ),
            });
        }
        let event = self.policy_event(
            caller,
            "reject",
            &id,
            &decision,
            None,
            json!({"number": number}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        let version = store::get(self.db(), number)
            .await?
            .ok_or(ServiceError::NotFound("policy version"))?;
        Ok(version_json(&version, false))
    }
}

/// What a plan's usage findings count as unused, in days.
pub const USAGE_UNUSED_DAYS: u32 = 90;
/// The window a plan replays by default, in days.
pub const PLAN_DAYS: i64 = 30;
/// Events read at a time by a simulation.
const PAGE: usize = 5_000;
/// The most recorded decisions a plan replays.
pub const MAX_REPLAYED: usize = 2_000_000;

/// What a simulation reads of an event's detail.
#[derive(serde::Deserialize)]
struct DetailView<'a> {
    /// The decision input, as stored (batch format).
    #[serde(borrow, default)]
    input: Option<&'a serde_json::value::RawValue>,
    /// An update's other decision input: the record as it was.
    #[serde(borrow, default)]
    input_before: Option<&'a serde_json::value::RawValue>,
    /// Whether the policy made the decision.
    #[serde(default)]
    engine: bool,
    /// Method and route.
    #[serde(borrow, default)]
    request: RequestView<'a>,
}

#[derive(Default, serde::Deserialize)]
struct RequestView<'a> {
    #[serde(borrow, default)]
    method: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    route: std::borrow::Cow<'a, str>,
}

/// The permissions a set of roles holds under `policy`.
fn held(policy: &partnerdb_policy::Policy, roles: &[String]) -> std::collections::BTreeSet<String> {
    roles
        .iter()
        .filter_map(|name| policy.role(name))
        .flat_map(|role| partnerdb_policy::effective::Effective::of_role(role).permissions())
        .map(|p| p.to_string())
        .collect()
}

impl Service {
    /// Replays the decisions recorded in the last `days` days (at most
    /// [`MAX_REPLAYED`], page by page, so memory stays bounded) against
    /// the version in force and against `candidate`, counting what the
    /// candidate changes; with load and replay times.
    pub async fn simulate(
        &self,
        (active, baseline): &(PolicyVersionRow, CompiledPolicy),
        candidate: &CompiledPolicy,
        days: i64,
    ) -> Result<Json, ServiceError> {
        let since = self.time_text(-days.saturating_mul(86_400));
        // The window is a range of seqs: paging never walks older events.
        let from = partnerdb_store::audit::first_seq_since(self.db(), &since)
            .await?
            .unwrap_or(i64::MAX);
        let (mut load, mut replay) = (Duration::ZERO, Duration::ZERO);
        let mut simulation = partnerdb_policy::simulate::Simulation::default();
        let mut before = None;
        let mut truncated = false;
        loop {
            let started = std::time::Instant::now();
            let page = partnerdb_store::audit::details_since(self.db(), from, before, PAGE).await?;
            let Some(&(last, _, _)) = page.last() else {
                break;
            };
            before = Some(last);
            let full = page.len() == PAGE;
            // The detail is read only as far as needed: the input stays the
            // text it was stored as.
            let views: Vec<(DetailView<'_>, bool, String)> = page
                .iter()
                .filter_map(|(_, decision, detail)| {
                    let view: DetailView<'_> = serde_json::from_str(detail).ok()?;
                    // Decisions the service made itself are not replayed.
                    if !view.engine || view.input.is_none() {
                        return None;
                    }
                    let route = format!("{} {}", view.request.method, view.request.route);
                    Some((view, decision == "allow", route))
                })
                .collect();
            // An update was decided twice, both allowed: on the record as
            // it was (`input_before`) and as it became (`input`).
            let loaded = partnerdb_policy::simulate::Loaded::load(views.iter().flat_map(
                |(view, allowed, route)| {
                    [view.input, view.input_before]
                        .into_iter()
                        .flatten()
                        .map(move |input| partnerdb_policy::simulate::Recorded {
                            input: input.get(),
                            allowed: *allowed,
                            route,
                        })
                },
            ));
            load += started.elapsed();
            let started = std::time::Instant::now();
            simulation.merge(loaded.replay(Some(baseline), candidate));
            replay += started.elapsed();
            if !full {
                break;
            }
            if simulation.replayed as usize >= MAX_REPLAYED {
                truncated = true;
                break;
            }
        }
        let mut out = serde_json::to_value(&simulation).unwrap_or(Json::Null);
        out["days"] = Json::from(days);
        out["against"] = Json::from(active.hash.as_str());
        out["truncated"] = Json::Bool(truncated);
        out["breaking"] = Json::Bool(simulation.breaking());
        out["load_ms"] = Json::from(load.as_secs_f64() * 1e3);
        out["replay_ms"] = Json::from(replay.as_secs_f64() * 1e3);
        Ok(out)
    }

    /// The plan of a version (`policy:read`): effective-permission changes
    /// per role and per bound principal, lint findings, the lockout check,
    /// and the recorded decisions of the last `days` days replayed against
    /// it.
    pub async fn plan_policy(
        &self,
        caller: &Caller,
        number: i64,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        self.may_policy(caller, Action::Read, &number.to_string())
            .await?;
        let mut days = PLAN_DAYS;
        for (name, value) in params {
            match name.as_str() {
                "days" => {
                    days = value
                        .parse()
                        .ok()
                        .filter(|d| (1..=3650).contains(d))
                        .ok_or_else(|| {
                            ServiceError::invalid(
                                "invalid_value",
                                "days",
                                "`days` is a number from 1 to 3650",
                            )
                        })?;
                }
                _ => {
                    return Err(ServiceError::unknown_parameter(name));
                }
            }
        }
        let version = store::get(self.db(), number)
            .await?
            .ok_or(ServiceError::NotFound("policy version"))?;
        let (candidate, findings) = check_candidate(&version.content)?;
        let mut tx = self.db().begin().await?;
        let in_force = self.active_in(&mut tx).await?;
        let (active_row, active) = (&in_force.0, &in_force.1);
        let bindings = store_principals::all_bindings(&mut tx).await?;
        let (_, admins_now) = self.live_administrators(&mut tx, active).await?;
        let (_, admins_after) = self.live_administrators(&mut tx, &candidate).await?;
        drop(tx);
        let diff = partnerdb_policy::diff::diff(active.policy(), candidate.policy());
        let mut principals = Vec::new();
        for (id, roles) in &bindings {
            let (old, new) = (
                held(active.policy(), roles),
                held(candidate.policy(), roles),
            );
            let gained: Vec<&String> = new.difference(&old).collect();
            let lost: Vec<&String> = old.difference(&new).collect();
            if !gained.is_empty() || !lost.is_empty() {
                principals.push(json!({"id": id, "roles": roles, "gained": gained, "lost": lost}));
            }
        }
        let min = candidate.policy().min_admins as usize;
        let lockout_ok = admins_after.len() >= min || admins_after.len() >= admins_now.len();
        let mut simulation = self.simulate(&in_force, &candidate, days).await?;
        // Who did what is the trail's and the principals' business: shown
        // only to those who may read them, across every partner (as
        // /v1/usage: not to a principal bound to one).
        let reads_usage = caller.allows(ResourceType::Audit, Action::Read)
            && caller.principal.partner_id.is_none();
        if !reads_usage {
            simulation["examples"] = json!([]);
            simulation["by_principal"] = json!({});
            simulation["redacted"] =
                json!("examples and counts per principal need audit:read and no partner binding");
        }
        if !caller.allows(ResourceType::Principal, Action::Read) {
            for entry in &mut principals {
                entry["id"] = Json::Null;
            }
        }
        // The findings that need this deployment's bindings and usage
        // (they name principals and when they last acted): for the same
        // readers.
        let usage: Json = if reads_usage {
            let facts = crate::trail::usage_facts(
                self.db(),
                self.clock().now().as_second(),
                USAGE_UNUSED_DAYS,
            )
            .await
            .map_err(|error| match error {
                crate::trail::FactsError::Store(store) => ServiceError::Store(store),
                other => ServiceError::conflict("usage_unreadable", other.to_string()),
            })?;
            let source = SourceFile::new("proposed policy", &version.content);
            partnerdb_policy::lint_usage::lint_usage(candidate.policy(), &facts)
                .iter()
                .map(|d| d.to_json(&source))
                .collect()
        } else {
            json!([])
        };
        Ok(json!({
            "usage_lint": usage,
            "usage_lint_redacted": !reads_usage,
            "version": version_json(&version, false),
            "against": active_row.hash,
            "against_number": active_row.number,
            "diff": serde_json::to_value(&diff).unwrap_or(Json::Null),
            "principals": principals,
            "lint": findings,
            "lockout": {"ok": lockout_ok, "administrators_now": admins_now.len(), "administrators_after": admins_after.len(), "min_admins": min},
            "simulation": simulation,
        }))
    }
}
