//! Principals, role bindings and credentials, each change decided by the
//! policy and checked, in its own transaction, against separation of
//! duties (R8) and the lockout rule (R13).

use std::collections::{BTreeMap, BTreeSet};

use partnerdb_policy::effective::Effective;
use partnerdb_policy::{
    Action, CompiledPolicy, Decision, NoAttributes, Permission, Request, Resource, ResourceType,
};
use partnerdb_store::principals::{self as store, CredentialRow, PrincipalRow};
use partnerdb_store::{Dialect, StoreError, Tx, records};
use serde_json::{Value as Json, json};

use crate::Service;
use crate::audit::{self, Draft, Target};
use crate::auth::{self, Caller};
use crate::codec::{object, only};
use crate::error::ServiceError;
use partnerdb_store::audit::NewEvent;

/// A credential just issued: the token is shown here once and never again.
#[derive(Clone, Debug)]
pub struct NewCredential {
    /// The credential's id.
    pub id: String,
    /// The principal it authenticates.
    pub principal_id: String,
    /// The token.
    pub token: String,
    /// When it expires.
    pub expires_at: Option<String>,
}

/// Default credential lifetime.
pub const DEFAULT_TOKEN_DAYS: i64 = 90;
/// Longest credential lifetime.
pub const MAX_TOKEN_DAYS: i64 = 366;

/// Stores a new credential for a principal and returns its token.
pub async fn issue_credential(
    tx: &mut Tx,
    principal_id: &str,
    now: &str,
    expires_at: Option<String>,
) -> Result<NewCredential, StoreError> {
    let token = auth::new_token();
    let row = CredentialRow {
        id: partnerdb_store::new_id(),
        principal_id: principal_id.to_owned(),
        prefix: auth::token_display_prefix(&token),
        created_at: now.to_owned(),
        expires_at: expires_at.clone(),
        revoked_at: None,
    };
    store::insert_credential(tx, &row, &auth::token_hash(&token)).await?;
    Ok(NewCredential {
        id: row.id,
        principal_id: principal_id.to_owned(),
        token,
        expires_at,
    })
}

/// A principal as the API shows it.
pub fn principal_json(principal: &PrincipalRow) -> Json {
    json!({
        "id": principal.id,
        "kind": principal.kind,
        "name": principal.name,
        "partner_id": principal.partner_id,
        "attrs": principal.attrs,
        "roles": principal.roles,
        "created_at": principal.created_at,
    })
}

/// A credential as the API shows it (never the token).
pub fn credential_json(credential: &CredentialRow) -> Json {
    json!({
        "id": credential.id,
        "principal_id": credential.principal_id,
        "prefix": credential.prefix,
        "created_at": credential.created_at,
        "expires_at": credential.expires_at,
        "revoked_at": credential.revoked_at,
    })
}

/// The principals (by id) that hold `policy:apply` through their roles.
pub fn administrators<'a>(
    policy: &CompiledPolicy,
    bindings: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>,
) -> BTreeSet<String> {
    let admin_roles = partnerdb_policy::effective::administrator_roles(policy.policy());
    bindings
        .into_iter()
        .filter(|(_, roles)| roles.iter().any(|r| admin_roles.contains(r.as_str())))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The separation-of-duties rule that `roles` together break, if any, as
/// a sentence. Superuser roles are exempt (run-time maker-checker still
/// binds them).
pub fn sod_violation(policy: &CompiledPolicy, roles: &[String]) -> Option<String> {
    let mut held = Effective::default();
    let mut held_by: BTreeMap<Permission, Vec<&str>> = BTreeMap::new();
    for name in roles {
        let Some(role) = policy.policy().role(name).filter(|r| !r.superuser) else {
            continue;
        };
        let effective = Effective::of_role(role);
        for permission in effective.permissions() {
            held_by.entry(permission).or_default().push(&role.name);
        }
        held.entries.extend(effective.entries);
    }
    for rule in &policy.policy().separation_of_duties {
        for (a, b) in rule.pairs() {
            if held.holds(a) && held.holds(b) {
                let by = |p: Permission| held_by.get(&p).map(|r| r.join(", ")).unwrap_or_default();
                return Some(format!(
                    "separation-of-duties rule \"{}\" forbids one principal to hold both {a} (from {}) and {b} (from {})",
                    rule.name,
                    by(a),
                    by(b)
                ));
            }
        }
    }
    None
}

/// Serialises changes to principals, bindings and credentials across
/// servers sharing a PostgreSQL database (SQLite has a single writer).
async fn lock(tx: &mut Tx) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Postgres {
        let mut sql = tx.sql();
        sql.push("SELECT pg_advisory_xact_lock(727274001)");
        tx.execute(&sql).await?;
    }
    Ok(())
}

/// A principal that is not deleted, inside a transaction.
async fn principal_in(tx: &mut Tx, id: &str) -> Result<PrincipalRow, ServiceError> {
    store::get_in(tx, id)
        .await?
        .ok_or(ServiceError::NotFound("principal"))
}

impl Service {
    /// Decides `action` on principals. A refusal is recorded in the audit
    /// trail here; so is an allowed read (`read`); an allowed change is
    /// recorded by the caller, in the change's transaction.
    pub(crate) async fn decide_principal(
        &self,
        caller: &Caller,
        action: Action,
        id: &str,
        read: bool,
    ) -> Result<Decision, ServiceError> {
        let request = Request {
            principal: caller.engine(),
            action,
            resource: Resource {
                kind: ResourceType::Principal,
                id,
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: caller.elevated_for(ResourceType::Principal, action, None),
        };
        let decision = caller.policy.decide(&request);
        if decision.allowed {
            // A principal bound to a partner reaches that partner's
            // principals only (R15): another's is not found (a refusal
            // the service makes, recorded as such).
            if let Some(own) = caller.principal.partner_id.as_deref()
                && id != "*"
                && store::get(self.db(), id)
                    .await?
                    .is_some_and(|target| target.partner_id.as_deref() != Some(own))
            {
                let refused = crate::audit::service_refusal();
                let event = self.principal_event(
                    caller,
                    action,
                    id,
                    &refused,
                    Some("the principal belongs to no partner of yours".into()),
                    json!({}),
                );
                return self
                    .refuse(ServiceError::NotFound("principal"), Some(event))
                    .await;
            }
            if read {
                self.record(self.principal_event(caller, action, id, &decision, None, json!({})))
                    .await?;
            }
            return Ok(decision);
        }
        let reason = caller.policy.deny_reason(&request, &decision);
        self.record(self.principal_event(caller, action, id, &decision, reason, json!({})))
            .await?;
        if decision.denial == Some(partnerdb_policy::Denial::ElevationRequired) {
            Err(ServiceError::ElevationRequired {
                permission: format!("principal:{action}"),
            })
        } else {
            Err(ServiceError::forbidden(
                "forbidden",
                format!("your roles do not allow principal:{action}"),
            ))
        }
    }

    /// Passes a principal change's outcome on, recording a refusal that
    /// came after the decision (a separation-of-duties or lockout
    /// conflict, an unknown role, bad input, a missing principal or
    /// credential); denials are recorded by [`Self::decide_principal`].
    async fn principal_outcome<T>(
        &self,
        caller: &Caller,
        action: Action,
        id: &str,
        result: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        match result {
            Err(ServiceError::Forbidden { .. } | ServiceError::ElevationRequired { .. })
            | Ok(_) => result,
            Err(error) => {
                self.refuse_plain(caller, action.name(), ("principal", id), error)
                    .await
            }
        }
    }

    /// An event about principals (never a token or a display name): a
    /// `principal` change when `change` holds something, else a decision.
    fn principal_event(
        &self,
        caller: &Caller,
        action: Action,
        id: &str,
        decision: &Decision,
        reason: Option<String>,
        change: Json,
    ) -> NewEvent {
        let is_change = change.as_object().is_some_and(|c| !c.is_empty());
        self.event(
            caller,
            Draft {
                kind: if is_change { "principal" } else { "decision" },
                action: action.name(),
                resource_type: ResourceType::Principal.name(),
                resource_id: Some(id),
                partner_id: None,
                decision,
                reason,
                input: audit::input(
                    caller,
                    action.name(),
                    Target::Object("principal", Some(id)),
                    caller.elevated_for(ResourceType::Principal, action, None),
                ),
                extra: change,
            },
        )
    }

    /// A write transaction holding the principals lock.
    pub(crate) async fn begin_locked(&self) -> Result<Tx, ServiceError> {
        let mut tx = self.db().begin().await?;
        lock(&mut tx).await?;
        Ok(tx)
    }

    /// [`Service::begin_locked`], with the policy version in force read
    /// under the lock: administrators are counted under it, not under the
    /// one the request was authenticated under (a version activated
    /// meanwhile may count others).
    pub(crate) async fn begin_locked_in_force(&self) -> Result<(Tx, CompiledPolicy), ServiceError> {
        let mut tx = self.begin_locked().await?;
        let (_, policy) = self.active_in(&mut tx).await?;
        Ok((tx, policy))
    }

    /// The administrators now (holding `policy:apply`, with a credential
    /// neither revoked nor expired), inside a locked transaction.
    pub(crate) async fn live_administrators(
        &self,
        tx: &mut Tx,
        policy: &CompiledPolicy,
    ) -> Result<(BTreeMap<String, Vec<String>>, BTreeSet<String>), ServiceError> {
        let bindings = store::all_bindings(tx).await?;
        let live: BTreeSet<String> = store::with_live_credentials(tx, &self.now_text())
            .await?
            .into_iter()
            .collect();
        let admins = administrators(policy, &bindings)
            .into_iter()
            .filter(|id| live.contains(id))
            .collect();
        Ok((bindings, admins))
    }

    /// Refuses a change that leaves `after` administrators out of `before`
    /// when that breaks R13.
    fn check_lockout(
        policy: &CompiledPolicy,
        before: usize,
        after: usize,
    ) -> Result<(), ServiceError> {
        let min = policy.policy().min_admins as usize;
        if after < before && after < min {
            return Err(ServiceError::conflict(
                "lockout",
                format!(
                    "refused by the lockout rule (R13): this change would leave {after} administrator(s) (principals holding policy:apply with a live credential); the policy requires at least {min}, and a count already below it may not fall further"
                ),
            ));
        }
        Ok(())
    }

    /// Lists principals.
    pub async fn list_principals(
        &self,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Json>, ServiceError> {
        self.decide_principal(caller, Action::Read, "*", true)
            .await?;
        // A principal bound to a partner lists that partner's only.
        let own = caller.principal.partner_id.as_deref();
        let listed = store::list(self.db(), after, limit.clamp(1, 500), own)
            .await?
            .iter()
            .map(principal_json)
            .collect();
        self.settle_read().await?;
        Ok(listed)
    }

    /// Reads a principal.
    pub async fn get_principal(&self, caller: &Caller, id: &str) -> Result<Json, ServiceError> {
        self.decide_principal(caller, Action::Read, id, true)
            .await?;
        let principal = store::get(self.db(), id)
            .await?
            .ok_or(ServiceError::NotFound("principal"))?;
        self.settle_read().await?;
        Ok(principal_json(&principal))
    }

    /// Creates a principal: `{"name", "kind": "user"|"api_client",
    /// "partner_id" (api clients), "attrs": {..}, "roles": [..]}`.
    pub async fn create_principal(
        &self,
        caller: &Caller,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let result = self.try_create_principal(caller, body).await;
        self.principal_outcome(caller, Action::Create, "", result)
            .await
    }

    async fn try_create_principal(
        &self,
        caller: &Caller,
        body: &Json,
    ) -> Result<Json, ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Create, "*", false)
            .await?;
        let object = object(body, "")?;
        only(
            object,
            &["name", "kind", "partner_id", "attrs", "roles"],
            "a principal",
        )?;
        let name = object
            .get("name")
            .and_then(Json::as_str)
            .filter(|n| !n.trim().is_empty() && n.chars().count() <= 200)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "missing_field",
                    "/name",
                    "`name` is required: a string of 1 to 200 characters",
                )
            })?;
        let kind = match object.get("kind") {
            None => "user",
            Some(Json::String(k)) if k == "user" || k == "api_client" => k.as_str(),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "invalid_value",
                    "/kind",
                    "`kind` must be \"user\" or \"api_client\"",
                ));
            }
        };
        let partner_id = match object.get("partner_id") {
            None | Some(Json::Null) => None,
            Some(Json::String(p)) if crate::auth::is_request_id(p.as_bytes()) => Some(p.clone()),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "wrong_type",
                    "/partner_id",
                    "`partner_id` must be a partner id",
                ));
            }
        };
        match (kind, &partner_id) {
            ("api_client", None) => {
                return Err(ServiceError::invalid(
                    "missing_field",
                    "/partner_id",
                    "an api_client principal must be bound to one partner",
                ));
            }
            ("user", Some(_)) => {
                return Err(ServiceError::invalid(
                    "invalid_value",
                    "/partner_id",
                    "only api_client principals are bound to a partner",
                ));
            }
            _ => {}
        }
        let mut attrs = BTreeMap::new();
        if let Some(value) = object.get("attrs") {
            let map = value.as_object().ok_or_else(|| {
                ServiceError::invalid(
                    "wrong_type",
                    "/attrs",
                    "`attrs` must be an object of strings",
                )
            })?;
            if map.len() > 32 {
                return Err(ServiceError::invalid(
                    "too_many",
                    "/attrs",
                    "at most 32 attributes",
                ));
            }
            for (key, value) in map {
                let text = value
                    .as_str()
                    .filter(|t| t.len() <= 200 && key.len() <= 64)
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            "wrong_type",
                            format!("/attrs/{key}"),
                            "attributes are strings of at most 200 bytes",
                        )
                    })?;
                attrs.insert(key.clone(), text.to_owned());
            }
        }
        let mut roles: Vec<String> = match object.get("roles") {
            None => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.as_str().map(str::to_owned).ok_or_else(|| {
                        ServiceError::invalid(
                            "wrong_type",
                            format!("/roles/{i}"),
                            "roles are role names",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ServiceError::invalid(
                    "wrong_type",
                    "/roles",
                    "`roles` must be an array of role names",
                ));
            }
        };
        roles.sort();
        roles.dedup();
        if !roles.is_empty() {
            self.decide_principal(caller, Action::Assign, "*", false)
                .await?;
        }
        let policy = caller.policy.clone();
        for (i, role) in roles.iter().enumerate() {
            self.check_role(&policy, role, partner_id.is_some(), &format!("/roles/{i}"))?;
        }
        if let Some(violation) = sod_violation(&policy, &roles) {
            return Err(ServiceError::conflict("separation_of_duties", violation));
        }

        let now = self.now_text();
        let mut tx = self.begin_locked().await?;
        if let Some(partner) = &partner_id
            && records::get_in(&mut tx, ResourceType::Partner, partner)
                .await?
                .is_none()
        {
            return Err(ServiceError::invalid(
                "invalid_reference",
                "/partner_id",
                "no such partner",
            ));
        }
        let principal = PrincipalRow {
            id: partnerdb_store::new_id(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            partner_id,
            attrs,
            created_at: now.clone(),
            roles: roles.clone(),
        };
        store::insert(&mut tx, &principal).await?;
        for role in &roles {
            store::bind_role(
                &mut tx,
                &principal.id,
                role,
                &now,
                Some(&caller.principal.id),
            )
            .await?;
        }
        let event = self.principal_event(caller, Action::Create, &principal.id, &decision, None, json!({"principal": {"kind": principal.kind, "partner_id": principal.partner_id, "roles": roles, "attrs": principal.attrs}}));
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(principal_json(&principal))
    }

    fn check_role(
        &self,
        policy: &CompiledPolicy,
        role: &str,
        partner_bound: bool,
        path: &str,
    ) -> Result<(), ServiceError> {
        let Some(definition) = policy.policy().role(role) else {
            return Err(ServiceError::invalid(
                "unknown_role",
                path,
                format!("the active policy defines no role `{role}`"),
            ));
        };
        if definition.partner_bound && !partner_bound {
            return Err(ServiceError::invalid(
                "role_needs_partner",
                path,
                format!("role `{role}` is for partner-bound principals (api clients) only"),
            ));
        }
        Ok(())
    }

    /// Binds a role to a principal (R8: refused if the principal's roles
    /// would then break a separation-of-duties rule).
    pub async fn bind_role(
        &self,
        caller: &Caller,
        id: &str,
        role: &str,
    ) -> Result<Json, ServiceError> {
        let result = self.try_bind_role(caller, id, role).await;
        self.principal_outcome(caller, Action::Assign, id, result)
            .await
    }

    async fn try_bind_role(
        &self,
        caller: &Caller,
        id: &str,
        role: &str,
    ) -> Result<Json, ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Assign, id, false)
            .await?;
        let policy = caller.policy.clone();
        let mut tx = self.begin_locked().await?;
        let principal = principal_in(&mut tx, id).await?;
        self.check_role(&policy, role, principal.partner_id.is_some(), "role")?;
        let mut roles = principal.roles.clone();
        if !roles.iter().any(|r| r == role) {
            roles.push(role.to_owned());
            roles.sort();
        }
        if let Some(violation) = sod_violation(&policy, &roles) {
            return Err(ServiceError::conflict("separation_of_duties", violation));
        }
        // A role already held is bound again by nobody: the event says so
        // (`bound: false`), not that a binding was made.
        let bound = store::bind_role(
            &mut tx,
            id,
            role,
            &self.now_text(),
            Some(&caller.principal.id),
        )
        .await?;
        let event = self.principal_event(
            caller,
            Action::Assign,
            id,
            &decision,
            None,
            json!({"role": role, "bound": bound}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(principal_json(&PrincipalRow { roles, ..principal }))
    }

    /// Removes a role from a principal (R13: refused if it would lock
    /// administrators out).
    pub async fn unbind_role(
        &self,
        caller: &Caller,
        id: &str,
        role: &str,
    ) -> Result<Json, ServiceError> {
        let result = self.try_unbind_role(caller, id, role).await;
        self.principal_outcome(caller, Action::Assign, id, result)
            .await
    }

    async fn try_unbind_role(
        &self,
        caller: &Caller,
        id: &str,
        role: &str,
    ) -> Result<Json, ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Assign, id, false)
            .await?;
        let (mut tx, policy) = self.begin_locked_in_force().await?;
        let principal = principal_in(&mut tx, id).await?;
        if !principal.roles.iter().any(|r| r == role) {
            return Err(ServiceError::NotFound("role binding"));
        }
        let (mut bindings, before) = self.live_administrators(&mut tx, &policy).await?;
        if let Some(roles) = bindings.get_mut(id) {
            roles.retain(|r| r != role);
        }
        let after = administrators(&policy, &bindings)
            .into_iter()
            .filter(|a| before.contains(a))
            .count();
        Self::check_lockout(&policy, before.len(), after)?;
        store::unbind_role(&mut tx, id, role).await?;
        let event = self.principal_event(
            caller,
            Action::Assign,
            id,
            &decision,
            None,
            json!({"role": role, "bound": false}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        let roles = principal
            .roles
            .iter()
            .filter(|r| *r != role)
            .cloned()
            .collect();
        Ok(principal_json(&PrincipalRow { roles, ..principal }))
    }

    /// Deletes a principal, its bindings and credentials (R13 applies).
    pub async fn delete_principal(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let result = self.try_delete_principal(caller, id).await;
        self.principal_outcome(caller, Action::Delete, id, result)
            .await
    }

    async fn try_delete_principal(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Delete, id, false)
            .await?;
        let (mut tx, policy) = self.begin_locked_in_force().await?;
        let (_, before) = self.live_administrators(&mut tx, &policy).await?;
        let after = before.iter().filter(|a| *a != id).count();
        Self::check_lockout(&policy, before.len(), after)?;
        let Some(removed) = store::delete(&mut tx, id, &self.now_text()).await? else {
            return Err(ServiceError::NotFound("principal"));
        };
        // What went with it: who held which role, and which credentials
        // stopped working, stay readable from the trail.
        let event = self.principal_event(
            caller,
            Action::Delete,
            id,
            &decision,
            None,
            json!({"deleted": true, "roles_removed": removed.roles, "credentials_revoked": removed.credentials}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(())
    }

    /// A principal's credentials (metadata only).
    pub async fn list_credentials(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Vec<Json>, ServiceError> {
        self.decide_principal(caller, Action::Read, id, true)
            .await?;
        if store::get(self.db(), id).await?.is_none() {
            return Err(ServiceError::NotFound("principal"));
        }
        let credentials = store::credentials(self.db(), id)
            .await?
            .iter()
            .map(credential_json)
            .collect();
        self.settle_read().await?;
        Ok(credentials)
    }

    /// Issues a credential: `{"expires_in_days": 1..=366}` (default 90).
    pub async fn create_credential(
        &self,
        caller: &Caller,
        id: &str,
        body: &Json,
    ) -> Result<NewCredential, ServiceError> {
        let result = self.try_create_credential(caller, id, body).await;
        self.principal_outcome(caller, Action::Update, id, result)
            .await
    }

    async fn try_create_credential(
        &self,
        caller: &Caller,
        id: &str,
        body: &Json,
    ) -> Result<NewCredential, ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Update, id, false)
            .await?;
        let days = parse_days(body)?;
        let mut tx = self.begin_locked().await?;
        principal_in(&mut tx, id).await?;
        let now = self.now_text();
        let credential =
            issue_credential(&mut tx, id, &now, Some(self.time_text(days * 86_400))).await?;
        let event = self.principal_event(caller, Action::Update, id, &decision, None, json!({"credential": credential.id, "issued": true, "expires_at": credential.expires_at}));
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(credential)
    }

    /// Revokes a credential (R13 applies: an administrator's last live
    /// credential counts).
    pub async fn revoke_credential(
        &self,
        caller: &Caller,
        id: &str,
        credential_id: &str,
    ) -> Result<(), ServiceError> {
        let result = self.try_revoke_credential(caller, id, credential_id).await;
        self.principal_outcome(caller, Action::Update, id, result)
            .await
    }

    async fn try_revoke_credential(
        &self,
        caller: &Caller,
        id: &str,
        credential_id: &str,
    ) -> Result<(), ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Update, id, false)
            .await?;
        let (mut tx, policy) = self.begin_locked_in_force().await?;
        let credential = store::credential_in(&mut tx, credential_id)
            .await?
            .filter(|c| c.principal_id == id && c.revoked_at.is_none())
            .ok_or(ServiceError::NotFound("credential"))?;
        let (_, before) = self.live_administrators(&mut tx, &policy).await?;
        store::revoke_credential(&mut tx, &credential.id, &self.now_text()).await?;
        let (_, after) = self.live_administrators(&mut tx, &policy).await?;
        Self::check_lockout(&policy, before.len(), after.len())?;
        let event = self.principal_event(
            caller,
            Action::Update,
            id,
            &decision,
            None,
            json!({"credential": credential.id, "revoked": true}),
        );
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(())
    }

    /// Replaces a credential by a new one with the same lifetime from now,
    /// revoking the old one in the same transaction.
    pub async fn rotate_credential(
        &self,
        caller: &Caller,
        id: &str,
        credential_id: &str,
    ) -> Result<NewCredential, ServiceError> {
        let result = self.try_rotate_credential(caller, id, credential_id).await;
        self.principal_outcome(caller, Action::Update, id, result)
            .await
    }

    async fn try_rotate_credential(
        &self,
        caller: &Caller,
        id: &str,
        credential_id: &str,
    ) -> Result<NewCredential, ServiceError> {
        let decision = self
            .decide_principal(caller, Action::Update, id, false)
            .await?;
        let mut tx = self.begin_locked().await?;
        let old = store::credential_in(&mut tx, credential_id)
            .await?
            .filter(|c| c.principal_id == id && c.revoked_at.is_none())
            .ok_or(ServiceError::NotFound("credential"))?;
        let now = self.now_text();
        let lifetime = lifetime_secs(&old).unwrap_or(DEFAULT_TOKEN_DAYS * 86_400);
        store::revoke_credential(&mut tx, &old.id, &now).await?;
        let credential =
            issue_credential(&mut tx, id, &now, Some(self.time_text(lifetime))).await?;
        let event = self.principal_event(caller, Action::Update, id, &decision, None, json!({"credential": credential.id, "replaces": old.id, "issued": true, "expires_at": credential.expires_at}));
        self.append_in(&mut tx, event).await?;
        tx.commit().await?;
        self.principals_changed();
        Ok(credential)
    }
}

fn parse_days(body: &Json) -> Result<i64, ServiceError> {
    if body.is_null() {
        return Ok(DEFAULT_TOKEN_DAYS);
    }
    let object = object(body, "")?;
    only(object, &["expires_in_days"], "a credential request")?;
    match object.get("expires_in_days") {
        None => Ok(DEFAULT_TOKEN_DAYS),
        Some(value) => value
            .as_i64()
            .filter(|d| (1..=MAX_TOKEN_DAYS).contains(d))
            .ok_or_else(|| {
                ServiceError::invalid(
                    "invalid_value",
                    "/expires_in_days",
                    format!("`expires_in_days` must be a whole number from 1 to {MAX_TOKEN_DAYS}"),
                )
            }),
    }
}

fn lifetime_secs(credential: &CredentialRow) -> Option<i64> {
    let created: jiff::Timestamp = credential.created_at.parse().ok()?;
    let expires: jiff::Timestamp = credential.expires_at.as_deref()?.parse().ok()?;
    Some(expires.duration_since(created).as_secs().max(60))
}
