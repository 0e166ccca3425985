//! `/v1/me`: who the caller is, its roles and what they let it do.

use partnerdb_policy::effective::Effective;
use partnerdb_policy::{Action, FieldClass, Permission, ResourceType};
use serde_json::{Value as Json, json};

use crate::auth::Caller;

const APPLY: Permission = Permission {
    resource: ResourceType::Policy,
    action: Action::Apply,
};

/// The caller, its roles and its effective permissions.
pub fn me(caller: &Caller) -> Json {
    let policy = caller.policy.policy();
    let mut roles = Vec::new();
    let mut permissions = Vec::new();
    for name in &caller.principal.roles {
        match policy.role(name) {
            Some(role) => {
                roles.push(json!({
                    "role": role.name,
                    "description": role.description,
                    "defined": true,
                }));
                for ((permission, reach), fields) in Effective::of_role(role).entries {
                    permissions.push(json!({
                        "permission": permission.to_string(),
                        "role": role.name,
                        "scope": reach.scope.name(),
                        "when": reach.when.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "fields": fields.in_schema_order(permission.resource).map(FieldClass::name).collect::<Vec<_>>(),
                        "high_risk": policy.is_high_risk(permission),
                        "narrowed_to_partner": caller.principal.partner_id.is_some() && permission.resource.is_partner_owned(),
                    }));
                }
            }
            None => roles.push(json!({"role": name, "description": null, "defined": false})),
        }
    }
    json!({
        "id": caller.principal.id,
        "kind": caller.principal.kind,
        "name": caller.principal.name,
        "partner_id": caller.principal.partner_id,
        "attrs": caller.principal.attrs,
        "roles": roles,
        "policy": policy.name,
        "permissions": permissions,
        "administrator": caller
            .principal
            .roles
            .iter()
            .filter_map(|r| policy.role(r))
            .any(|r| Effective::of_role(r).holds(APPLY)),
    })
}
