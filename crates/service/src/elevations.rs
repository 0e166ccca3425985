//! Short-lived elevation (R9): a principal asks for high-risk permissions
//! (on one partner, or on all it may reach), with a reason and a duration
//! of at most the policy's `elevation_max_ttl`; another principal holding
//! `elevation:approve` approves or denies. Once approved, the requester
//! activates it and receives a separate token (`pde_…`, shown once, only
//! its hash kept) to send in `X-Partnerdb-Elevation` together with its own
//! bearer token: a stolen long-lived token alone never carries an
//! elevation, and an elevation token alone authenticates nothing. It
//! unlocks exactly the permissions asked for, on the scope asked for,
//! until it expires or is revoked. Every step is audited.

use std::sync::Arc;

use base64::Engine as _;
use partnerdb_policy::{Action, Decision, NoAttributes, Request, Resource, ResourceType};
use partnerdb_store::audit::NewEvent;
use partnerdb_store::elevations::{self as store, ElevationRow};
use partnerdb_store::records;
use rand::RngCore as _;
use serde_json::{Value as Json, json};

use crate::Service;
use crate::audit::{self, Draft, Target, service_allow, service_refusal};
use crate::auth::{ActiveElevation, Caller, token_hash};
use crate::codec::{object, only};
use crate::error::ServiceError;

/// The header that carries an elevation token.
pub const ELEVATION_HEADER: &str = "x-partnerdb-elevation";
/// How elevation tokens start.
pub const ELEVATION_PREFIX: &str = "pde_";
/// Most permissions in one elevation.
pub const MAX_PERMISSIONS: usize = 16;
/// The longest reason, in bytes.
pub const MAX_REASON: usize = 2000;

const STATUSES: [&str; 5] = ["pending", "approved", "denied", "revoked", "expired"];

fn new_elevation_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{ELEVATION_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("elevation")
}

fn permissions_of(row: &ElevationRow) -> Vec<(ResourceType, Action)> {
    let names: Vec<String> = serde_json::from_str(&row.permissions).unwrap_or_default();
    names
        .iter()
        .filter_map(|name| {
            let (resource, action) = name.split_once(':')?;
            Some((ResourceType::parse(resource)?, Action::parse(action)?))
        })
        .collect()
}

/// The elevation's state at `now` (an approved one past its end is
/// `expired`).
fn state(row: &ElevationRow, now: &str) -> &'static str {
    match row.status.as_str() {
        "approved" if row.expires_at.as_deref().is_some_and(|end| end <= now) => "expired",
        "approved" => "approved",
        "pending" => "pending",
        "denied" => "denied",
        "expired" => "expired",
        _ => "revoked",
    }
}

fn elevation_json(row: &ElevationRow, now: &str) -> Json {
    let permissions: Json = serde_json::from_str(&row.permissions).unwrap_or(Json::Null);
    json!({
        "id": row.id,
        "principal_id": row.principal_id,
        "permissions": permissions,
        "partner_id": row.partner_id,
        "reason": row.reason,
        "ttl_seconds": row.ttl_seconds,
        "status": state(row, now),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "expires_at": row.expires_at,
        "token_issued": row.token_issued,
        "revoked_at": row.revoked_at,
        "created_at": row.created_at,
    })
}

/// A request for an elevation, as parsed from its JSON body.
struct Asked {
    permissions: Vec<(ResourceType, Action)>,
    partner_id: Option<String>,
    reason: String,
    ttl_seconds: i64,
}

fn parse_request(body: &Json, max_ttl: u64) -> Result<Asked, ServiceError> {
    let object = object(body, "")?;
    only(
        object,
        &["permissions", "partner_id", "reason", "ttl_seconds"],
        "an elevation request",
    )?;
    let list = object
        .get("permissions")
        .and_then(Json::as_array)
        .filter(|l| !l.is_empty() && l.len() <= MAX_PERMISSIONS)
        .ok_or_else(|| {
            ServiceError::invalid(
                "invalid_value",
                "/permissions",
                format!(
                    "`permissions` is a list of 1 to {MAX_PERMISSIONS} `resource:action` strings"
                ),
            )
        })?;
    let mut permissions = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = format!("/permissions/{i}");
        let parsed = item.as_str().and_then(|text| {
            let (resource, action) = text.split_once(':')?;
            let resource = ResourceType::parse(resource)?;
            let action = Action::parse(action)?;
            resource
                .actions()
                .contains(action)
                .then_some((resource, action))
        });
        let Some(permission) = parsed else {
            return Err(ServiceError::invalid(
                "invalid_permission",
                path,
                "expected a concrete `resource:action` of the schema (no wildcards)",
            ));
        };
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    }
    let partner_id = match object.get("partner_id") {
        None | Some(Json::Null) => None,
        Some(Json::String(id)) if crate::auth::is_request_id(id.as_bytes()) => Some(id.clone()),
        Some(_) => {
            return Err(ServiceError::invalid(
                "wrong_type",
                "/partner_id",
                "`partner_id` must be a partner id, or null for everything you may reach",
            ));
        }
    };
    let reason = match object.get("reason") {
        Some(Json::String(r)) if !r.trim().is_empty() && r.len() <= MAX_REASON => r.clone(),
        _ => {
            return Err(ServiceError::invalid(
                "missing_field",
                "/reason",
                format!("an elevation needs a `reason` (1 to {MAX_REASON} bytes)"),
            ));
        }
    };
    let ttl_seconds = object
        .get("ttl_seconds")
        .and_then(Json::as_i64)
        .ok_or_else(|| {
            ServiceError::invalid(
                "missing_field",
                "/ttl_seconds",
                "an elevation needs `ttl_seconds`, how long it lasts once approved",
            )
        })?;
    if ttl_seconds < 1 || u64::try_from(ttl_seconds).map_or(true, |t| t > max_ttl) {
        return Err(ServiceError::invalid(
            "ttl_too_long",
            "/ttl_seconds",
            format!("`ttl_seconds` must be from 1 to {max_ttl} (the policy's elevation_max_ttl)"),
        ));
    }
    Ok(Asked {
        permissions,
        partner_id,
        reason,
        ttl_seconds,
    })
}

impl Service {
    /// Decides `elevation:<action>` for the caller.
    fn decide_elevation(
        &self,
        caller: &Caller,
        action: Action,
        id: &str,
    ) -> (Decision, Option<String>) {
        let request = Request {
            principal: caller.engine(),
            action,
            resource: Resource {
                kind: ResourceType::Elevation,
                id,
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: false,
        };
        let decision = caller.policy.decide(&request);
        let reason = caller.policy.deny_reason(&request, &decision);
        (decision, reason)
    }

    fn elevation_event(
        &self,
        caller: &Caller,
        action: &str,
        (id, partner): (&str, Option<&str>),
        decision: &Decision,
        reason: Option<String>,
        extra: Json,
    ) -> NewEvent {
        self.event(
            caller,
            Draft {
                kind: if decision.allowed {
                    "elevation"
                } else {
                    "decision"
                },
                action,
                resource_type: "elevation",
                resource_id: Some(id),
                partner_id: partner,
                decision,
                reason,
                input: audit::input(caller, action, Target::Object("elevation", Some(id)), false),
                extra,
            },
        )
    }

    /// A refusal about an elevation: recorded, then returned.
    async fn refuse_elevation<T>(
        &self,
        caller: &Caller,
        action: &str,
        row: &ElevationRow,
        error: ServiceError,
    ) -> Result<T, ServiceError> {
        let event = self.elevation_event(
            caller,
            action,
            (&row.id, row.partner_id.as_deref()),
            &service_refusal(),
            Some(error.to_string()),
            json!({}),
        );
        self.refuse(error, Some(event)).await
    }

    /// Asks for an elevation (`elevation:request`).
    pub async fn request_elevation(
        &self,
        caller: &Caller,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let id = partnerdb_store::new_id();
        let (decision, why) = self.decide_elevation(caller, Action::Request, &id);
        if !decision.allowed {
            let event =
                self.elevation_event(caller, "request", (&id, None), &decision, why, json!({}));
            return self
                .refuse(
                    ServiceError::forbidden("forbidden", "you may not request elevations"),
                    Some(event),
                )
                .await;
        }
        let max_ttl = caller.policy.policy().elevation_max_ttl_secs;
        let asked = parse_request(body, max_ttl)?;
        for (i, &(resource, action)) in asked.permissions.iter().enumerate() {
            if !caller.policy.is_high_risk(resource, action) {
                return Err(ServiceError::invalid(
                    "not_high_risk",
                    format!("/permissions/{i}"),
                    format!("{resource}:{action} is not high-risk: it needs no elevation"),
                ));
            }
            if !caller.policy.covers(&caller.roles, resource, action) {
                return Err(ServiceError::invalid(
                    "not_granted",
                    format!("/permissions/{i}"),
                    format!(
                        "no role of yours grants {resource}:{action}; an elevation grants nothing by itself"
                    ),
                ));
            }
        }
        if let Some(partner) = &asked.partner_id {
            let readable = records::get(self.db(), ResourceType::Partner, partner)
                .await?
                .is_some_and(|p| crate::records::decide(caller, Action::Read, &p).allowed);
            if !readable {
                return Err(ServiceError::NotFound("partner"));
            }
        }
        let names: Vec<String> = asked
            .permissions
            .iter()
            .map(|(r, a)| format!("{r}:{a}"))
            .collect();
        let row = ElevationRow {
            id,
            principal_id: caller.principal.id.clone(),
            permissions: json!(names).to_string(),
            partner_id: asked.partner_id,
            reason: asked.reason,
            ttl_seconds: asked.ttl_seconds,
            status: "pending".into(),
            decided_by: None,
            decided_at: None,
            expires_at: None,
            token_issued: false,
            revoked_at: None,
            created_at: self.now_text(),
        };
        let mut tx = self.db().begin().await?;
        store::insert(&mut tx, &row).await?;
        // The reason is free text: it stays with the elevation, not in the
        // trail.
        let event = self.elevation_event(
            caller,
            "request",
            (&row.id, row.partner_id.as_deref()),
            &decision,
            None,
            json!({"permissions": names, "ttl_seconds": row.ttl_seconds}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(elevation_json(&row, &self.now_text()))
    }

    /// Whether the caller may see `row`: its requester, or a principal
    /// who may approve elevations.
    fn may_see(&self, caller: &Caller, row: &ElevationRow) -> bool {
        self.sight(caller, Some(row)).allowed
    }

    /// The decision that shows `row` (every elevation, for `None`) to the
    /// caller: the service's for the requester's own, else the policy's
    /// `elevation:approve`.
    fn sight(&self, caller: &Caller, row: Option<&ElevationRow>) -> Decision {
        if row.is_some_and(|row| row.principal_id == caller.principal.id) {
            return service_allow();
        }
        let id = row.map_or("", |row| row.id.as_str());
        self.decide_elevation(caller, Action::Approve, id).0
    }

    /// The event of a read of elevations: one (`id`) or a list.
    fn elevation_read(
        &self,
        caller: &Caller,
        (id, partner): (Option<&str>, Option<&str>),
        decision: &Decision,
        extra: Json,
    ) -> NewEvent {
        self.event(
            caller,
            Draft {
                kind: "decision",
                action: "read",
                resource_type: "elevation",
                resource_id: id,
                partner_id: partner,
                decision,
                reason: None,
                input: audit::input(caller, "read", Target::Object("elevation", id), false),
                extra,
            },
        )
    }

    /// One elevation, for its requester and for approvers.
    async fn try_get_elevation(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let Some(row) = store::get(self.db(), id).await? else {
            return Err(not_found());
        };
        let decision = self.sight(caller, Some(&row));
        if !decision.allowed {
            return Err(not_found());
        }
        let event = self.elevation_read(
            caller,
            (Some(id), row.partner_id.as_deref()),
            &decision,
            json!({}),
        );
        self.record(event).await?;
        Ok(elevation_json(&row, &self.now_text()))
    }

    /// The caller's elevations, or every one for approvers: `status`,
    /// `after`, `limit` (1–200, default 50).
    pub async fn list_elevations(
        &self,
        caller: &Caller,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        let mut status = None;
        let mut after = None;
        let mut limit = 50usize;
        for (name, value) in params {
            let refused = match name.as_str() {
                "status" if STATUSES.contains(&value.as_str()) => {
                    status = Some(value.clone());
                    None
                }
                "after" if value.len() <= 64 => {
                    after = Some(value.clone());
                    None
                }
                "limit" => match ServiceError::page_limit(value, 200) {
                    Ok(n) => {
                        limit = n;
                        None
                    }
                    Err(error) => Some(error),
                },
                _ => Some(ServiceError::unknown_parameter(name)),
            };
            if let Some(error) = refused {
                return self
                    .refuse_plain(caller, "read", ("elevation", ""), error)
                    .await;
            }
        }
        // Approvers see every elevation; others their own (the service's
        // rule).
        let every = self.sight(caller, None);
        let (decision, whose) = if every.allowed {
            (every, None)
        } else {
            (service_allow(), Some(caller.principal.id.as_str()))
        };
        let rows =
            store::list(self.db(), whose, status.as_deref(), after.as_deref(), limit).await?;
        let list =
            json!({"list": {"status": status, "own": whose.is_some(), "returned": rows.len()}});
        let event = self.elevation_read(caller, (None, None), &decision, list);
        self.record(event).await?;
        let now = self.now_text();
        let next = (rows.len() == limit).then(|| rows.last().map(|r| r.id.clone()));
        Ok(json!({
            "items": rows.iter().map(|r| elevation_json(r, &now)).collect::<Vec<_>>(),
            "next_after": next.flatten(),
        }))
    }

    /// Approves (`approve = true`) or denies a pending elevation; never
    /// the requester's own.
    async fn try_decide_on_elevation(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
    ) -> Result<Json, ServiceError> {
        let verb = if approve { "approve" } else { "deny" };
        let mut tx = self.db().begin().await?;
        let Some(row) = store::get_in(&mut tx, id).await? else {
            return Err(not_found());
        };
        if !self.may_see(caller, &row) {
            return Err(not_found());
        }
        drop(tx);
        if row.principal_id == caller.principal.id {
            let error = ServiceError::forbidden(
                "self_approval",
                format!(
                    "you asked for this elevation, so you may not {verb} it: another principal with elevation:approve must"
                ),
            );
            return self.refuse_elevation(caller, verb, &row, error).await;
        }
        let (decision, why) = self.decide_elevation(caller, Action::Approve, &row.id);
        if !decision.allowed {
            let event = self.elevation_event(
                caller,
                verb,
                (&row.id, row.partner_id.as_deref()),
                &decision,
                why,
                json!({}),
            );
            return self
                .refuse(
                    ServiceError::forbidden("forbidden", format!("you may not {verb} elevations")),
                    Some(event),
                )
                .await;
        }
        if approve {
            self.still_valid(caller, &row).await?;
        }
        let mut tx = self.db().begin().await?;
        let at = self.now_text();
        let expires = approve.then(|| self.time_text(row.ttl_seconds));
        let status = if approve { "approved" } else { "denied" };
        if !store::decide(
            &mut tx,
            &row.id,
            status,
            &caller.principal.id,
            &at,
            expires.as_deref(),
        )
        .await?
        {
            return Err(ServiceError::conflict(
                "elevation_closed",
                "this elevation is no longer pending",
            ));
        }
        let event = self.elevation_event(
            caller,
            verb,
            (&row.id, row.partner_id.as_deref()),
            &decision,
            None,
            json!({"requester": row.principal_id, "expires_at": expires}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        let decided = ElevationRow {
            status: status.into(),
            decided_by: Some(caller.principal.id.clone()),
            decided_at: Some(at),
            expires_at: expires,
            ..row
        };
        Ok(elevation_json(&decided, &self.now_text()))
    }

    /// Whether a pending elevation still makes sense under the policy in
    /// force (it may have changed since the request): every permission
    /// high-risk and granted to the requester, the duration within
    /// `elevation_max_ttl`.
    async fn still_valid(&self, caller: &Caller, row: &ElevationRow) -> Result<(), ServiceError> {
        let requester = partnerdb_store::principals::get(self.db(), &row.principal_id)
            .await?
            .ok_or_else(|| {
                ServiceError::conflict("elevation_outdated", "the requester no longer exists")
            })?;
        let roles = caller
            .policy
            .resolve_roles(requester.roles.iter().map(String::as_str));
        let permissions = permissions_of(row);
        if permissions.is_empty() {
            return Err(ServiceError::conflict(
                "elevation_outdated",
                "the permissions of this elevation cannot be read; ask again",
            ));
        }
        for (resource, action) in permissions {
            if !caller.policy.is_high_risk(resource, action)
                || !caller.policy.covers(&roles, resource, action)
            {
                return Err(ServiceError::conflict(
                    "elevation_outdated",
                    format!(
                        "under the policy in force, {resource}:{action} is no longer a high-risk permission the requester holds; ask again"
                    ),
                ));
            }
        }
        let max = caller.policy.policy().elevation_max_ttl_secs;
        if u64::try_from(row.ttl_seconds).map_or(true, |t| t > max) {
            return Err(ServiceError::conflict(
                "elevation_outdated",
                format!(
                    "the duration asked for is longer than the policy's elevation_max_ttl ({max} s) now; ask again"
                ),
            ));
        }
        Ok(())
    }

    /// Issues the token of an approved elevation to its requester, once.
    async fn try_activate_elevation(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Json, ServiceError> {
        let Some(row) = store::get(self.db(), id).await? else {
            return Err(not_found());
        };
        if !self.may_see(caller, &row) {
            return Err(not_found());
        }
        if row.principal_id != caller.principal.id {
            let error = ServiceError::forbidden(
                "not_requester",
                "only the principal who asked for an elevation may activate it",
            );
            return self.refuse_elevation(caller, "activate", &row, error).await;
        }
        let now = self.now_text();
        match state(&row, &now) {
            "approved" => {}
            other => {
                return Err(ServiceError::conflict(
                    "elevation_not_active",
                    format!(
                        "this elevation is {other}: only an approved, unexpired one can be activated"
                    ),
                ));
            }
        }
        let token = new_elevation_token();
        let mut tx = self.db().begin().await?;
        if !store::issue_token(&mut tx, &row.id, &token_hash(&token)).await? {
            return Err(ServiceError::conflict(
                "elevation_token_issued",
                "this elevation's token was already issued; ask for a new elevation if it was lost",
            ));
        }
        let event = self.elevation_event(
            caller,
            "activate",
            (&row.id, row.partner_id.as_deref()),
            &service_allow(),
            None,
            json!({}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(json!({
            "id": row.id,
            "token": token,
            "expires_at": row.expires_at,
            "header": "X-Partnerdb-Elevation",
            "note": "the token is shown once; send it with your own bearer token",
        }))
    }

    /// Revokes a pending or approved elevation: its requester, or a
    /// principal who may approve elevations.
    async fn try_revoke_elevation(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let Some(row) = store::get(self.db(), id).await? else {
            return Err(not_found());
        };
        if !self.may_see(caller, &row) {
            return Err(not_found());
        }
        let mut tx = self.db().begin().await?;
        if !store::revoke(&mut tx, &row.id, &caller.principal.id, &self.now_text()).await? {
            return Err(ServiceError::conflict(
                "elevation_closed",
                "this elevation is already denied or revoked",
            ));
        }
        let event = self.elevation_event(
            caller,
            "revoke",
            (&row.id, row.partner_id.as_deref()),
            &service_allow(),
            None,
            json!({"requester": row.principal_id}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks approved elevations whose end has passed as expired, each
    /// with an audit event (a system event: no principal). Servers sharing
    /// a database may sweep at once; each elevation is marked and recorded
    /// once. Returns how many were marked.
    pub async fn sweep_expired_elevations(&self) -> Result<usize, ServiceError> {
        let now = self.now_text();
        if !store::any_due(self.db(), &now).await? {
            return Ok(0);
        }
        let mut tx = self.db().begin().await?;
        let due = store::due(&mut tx, &now, 100).await?;
        let mut marked = 0;
        for row in &due {
            if !store::expire(&mut tx, &row.id).await? {
                continue;
            }
            let event = NewEvent {
                at: now.clone(),
                kind: "elevation".into(),
                principal_id: None,
                action: "expire".into(),
                resource_type: "elevation".into(),
                resource_id: Some(row.id.clone()),
                partner_id: row.partner_id.clone(),
                decision: "allow".into(),
                policy_version: self.policy_version().to_string(),
                detail: json!({"requester": row.principal_id, "expires_at": row.expires_at, "permissions": serde_json::from_str::<Json>(&row.permissions).unwrap_or(Json::Null)}).to_string(),
                matched: Vec::new(),
            };
            self.append_in(&mut tx, event).await?;
            marked += 1;
        }
        tx.commit().await?;
        Ok(marked)
    }

    /// Sweeps expired elevations every second, forever (a task).
    pub async fn expire_elevations(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.sweep_expired_elevations().await {
                tracing::warn!(%error, "cannot mark expired elevations");
            }
        }
    }

    /// One elevation, for its requester and for approvers.
    pub async fn get_elevation(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        let result = self.try_get_elevation(caller, id).await;
        self.record_unrecorded(caller, "read", ("elevation", id), result)
            .await
    }

    /// Approves (`approve = true`) or denies a pending elevation; never
    /// the requester's own.
    pub async fn decide_on_elevation(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
    ) -> Result<Json, ServiceError> {
        let result = self.try_decide_on_elevation(caller, id, approve).await;
        let action = if approve { "approve" } else { "deny" };
        self.record_unrecorded(caller, action, ("elevation", id), result)
            .await
    }

    /// Issues the token of an approved elevation to its requester, once.
    pub async fn activate_elevation(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Json, ServiceError> {
        let result = self.try_activate_elevation(caller, id).await;
        self.record_unrecorded(caller, "activate", ("elevation", id), result)
            .await
    }

    /// Revokes a pending or approved elevation: its requester, or a
    /// principal who may approve elevations.
    pub async fn revoke_elevation(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let result = self.try_revoke_elevation(caller, id).await;
        self.record_unrecorded(caller, "revoke", ("elevation", id), result)
            .await
    }

    /// Attaches the elevation an `X-Partnerdb-Elevation` token carries to
    /// the caller: it must be the caller's own, approved, unexpired and
    /// unrevoked. Anything else refuses the request (and is recorded).
    pub async fn elevate(&self, caller: &mut Caller, token: &str) -> Result<(), ServiceError> {
        // One answer for a malformed, unknown or foreign token (the trail
        // keeps which): a stolen token is not confirmed valid.
        let invalid = || {
            ServiceError::forbidden(
                "elevation_invalid",
                "the elevation token is not valid for you",
            )
        };
        let row = if token.starts_with(ELEVATION_PREFIX) && token.len() <= 128 {
            store::by_token(self.db(), &token_hash(token)).await?
        } else {
            None
        };
        let Some(row) = row else {
            let error = invalid();
            let why = "an unknown or malformed elevation token";
            let event = self.elevation_event(
                caller,
                "use",
                ("unknown", None),
                &service_refusal(),
                Some(why.into()),
                json!({}),
            );
            return self.refuse(error, Some(event)).await;
        };
        let error = if row.principal_id != caller.principal.id {
            let why = "the elevation token of another principal";
            let on = (row.id.as_str(), row.partner_id.as_deref());
            let event = self.elevation_event(
                caller,
                "use",
                on,
                &service_refusal(),
                Some(why.into()),
                json!({"requester": row.principal_id}),
            );
            return self.refuse(invalid(), Some(event)).await;
        } else {
            match state(&row, &self.now_text()) {
                "approved" => None,
                "expired" => Some(ServiceError::forbidden(
                    "elevation_expired",
                    format!(
                        "the elevation expired at {}; request a new one",
                        row.expires_at.as_deref().unwrap_or("?")
                    ),
                )),
                _ => Some(ServiceError::forbidden(
                    "elevation_revoked",
                    "the elevation was revoked",
                )),
            }
        };
        if let Some(error) = error {
            return self.refuse_elevation(caller, "use", &row, error).await;
        }
        caller.elevation = Some(Arc::new(ActiveElevation {
            permissions: permissions_of(&row),
            id: row.id,
            partner_id: row.partner_id,
            expires_at: row.expires_at.unwrap_or_default(),
        }));
        Ok(())
    }
}
