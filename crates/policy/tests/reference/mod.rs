//! A plain, obviously correct interpreter of the policy semantics of
//! PRODUCT.md, written apart from the engine (its own schema table, its own
//! policy representation, no compilation) so that the compiled engine can
//! be checked against it. Slow on purpose: it re-reads every grant of every
//! role for every request.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::BTreeMap;

/// resource → (actions, field classes in schema order, partner-owned)
pub fn schema(resource: &str) -> (&'static [&'static str], &'static [&'static str], bool) {
    match resource {
        "partner" => (
            &["read", "create", "update", "delete", "export"],
            &["general", "financial"],
            true,
        ),
        "contact" => (
            &["read", "create", "update", "delete", "export", "erase"],
            &["general", "pii"],
            true,
        ),
        "contract" => (
            &[
                "read", "create", "update", "delete", "export", "propose", "approve", "reject",
            ],
            &["general", "legal", "financial"],
            true,
        ),
        "transaction" => (
            &["read", "create", "update", "refund", "export"],
            &["general", "financial"],
            true,
        ),
        "metrics" => (&["read"], &["general"], false),
        "workflow" => (&["trigger"], &["general"], false),
        "elevation" => (&["request", "approve"], &["general"], false),
        "principal" => (
            &["read", "create", "update", "delete", "assign"],
            &["general"],
            false,
        ),
        "policy" => (
            &["read", "propose", "apply", "rollback"],
            &["general"],
            false,
        ),
        "audit" => (&["read", "export", "verify"], &["general"], false),
        "system" => (
            &["backup", "restore", "vacuum", "reindex", "check"],
            &["general"],
            false,
        ),
        _ => (&[], &[], false),
    }
}

pub const RESOURCES: &[&str] = &[
    "partner",
    "contact",
    "contract",
    "transaction",
    "metrics",
    "workflow",
    "elevation",
    "principal",
    "policy",
    "audit",
    "system",
];
pub const CLASSES: &[&str] = &["general", "financial", "pii", "legal"];

#[derive(Clone, Debug)]
pub struct RefGrant {
    /// `None` for `"*"`.
    pub on: Option<String>,
    /// `None` for `["*"]`.
    pub can: Option<Vec<String>>,
    /// `None` when `fields` is omitted.
    pub fields: Option<Vec<String>>,
    pub scope: String,
    /// attr → literal, or `$principal.attr`.
    pub when: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct RefRole {
    pub name: String,
    pub grants: Vec<RefGrant>,
}

#[derive(Clone, Debug)]
pub struct RefPolicy {
    pub roles: Vec<RefRole>,
    /// `resource:action` patterns, `*` on either side.
    pub high_risk: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct RefPrincipal {
    pub id: String,
    pub roles: Vec<String>,
    pub partner_id: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct RefResource {
    pub kind: String,
    pub id: String,
    pub partner_id: Option<String>,
    pub owner: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct RefRequest {
    pub principal: RefPrincipal,
    pub action: String,
    pub resource: RefResource,
    pub elevated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefDecision {
    pub allowed: bool,
    pub fields: Vec<String>,
    pub matched: Vec<String>,
}

impl RefGrant {
    fn restricted(&self) -> bool {
        self.scope != "all" || !self.when.is_empty()
    }

    /// The actions this grant gives on `resource` (empty if it does not
    /// cover it), following "on = \"*\" covers every resource type that has
    /// at least one of the grant's actions and at least one of its field
    /// classes, and on which its scope and conditions are valid".
    pub fn actions_on(&self, resource: &str) -> Vec<&'static str> {
        let (actions, _, partner_owned) = schema(resource);
        if self.restricted() && !partner_owned {
            return Vec::new();
        }
        if self.on.as_deref().is_some_and(|on| on != resource) {
            return Vec::new();
        }
        if self.classes_on(resource).is_empty() {
            return Vec::new();
        }
        actions
            .iter()
            .copied()
            .filter(|a| match &self.can {
                None => true,
                Some(can) => can.iter().any(|c| c == a),
            })
            .collect()
    }

    /// The classes this grant gives on `resource`.
    pub fn classes_on(&self, resource: &str) -> Vec<&'static str> {
        let (_, classes, _) = schema(resource);
        classes
            .iter()
            .copied()
            .filter(|c| match &self.fields {
                None => true,
                Some(fields) => fields.iter().any(|f| f == c),
            })
            .collect()
    }

    /// Whether the grant covers at least one resource type (what `check`
    /// demands of a grant).
    pub fn covers_something(&self) -> bool {
        RESOURCES.iter().any(|r| !self.actions_on(r).is_empty())
    }
}

fn is_high_risk(policy: &RefPolicy, resource: &str, action: &str) -> bool {
    policy.high_risk.iter().any(|pattern| {
        let (r, a) = pattern.split_once(':').unwrap();
        (r == "*" || r == resource) && (a == "*" || a == action)
    })
}

fn grant_applies(grant: &RefGrant, request: &RefRequest) -> bool {
    let p = &request.principal;
    let r = &request.resource;
    if !grant
        .actions_on(&r.kind)
        .iter()
        .any(|a| *a == request.action)
    {
        return false;
    }
    let (_, _, partner_owned) = schema(&r.kind);
    // Partner-bound principals never reach another partner's records.
    if partner_owned && p.partner_id.is_some() && r.partner_id != p.partner_id {
        return false;
    }
    let scope_ok = match grant.scope.as_str() {
        "all" => true,
        "own_partner" => p.partner_id.is_some() && r.partner_id == p.partner_id,
        "owned" => r.owner.as_deref() == Some(p.id.as_str()),
        other => panic!("scope {other}"),
    };
    if !scope_ok {
        return false;
    }
    grant.when.iter().all(|(attr, value)| {
        let Some(actual) = r.attrs.get(attr) else {
            return false;
        };
        match value.strip_prefix("$principal.") {
            Some(principal_attr) => p.attrs.get(principal_attr) == Some(actual),
            None => actual == value,
        }
    })
}

/// Decides a request the slow way.
pub fn decide(policy: &RefPolicy, request: &RefRequest) -> RefDecision {
    let mut matched = Vec::new();
    let mut granted: Vec<&str> = Vec::new();
    for role in &policy.roles {
        if !request.principal.roles.contains(&role.name) {
            continue;
        }
        for (index, grant) in role.grants.iter().enumerate() {
            if grant_applies(grant, request) {
                matched.push(format!("{}#{index}", role.name));
                granted.extend(grant.classes_on(&request.resource.kind));
            }
        }
    }
    let deny = RefDecision {
        allowed: false,
        fields: Vec::new(),
        matched: Vec::new(),
    };
    if matched.is_empty() {
        return deny;
    }
    if is_high_risk(policy, &request.resource.kind, &request.action) && !request.elevated {
        return deny;
    }
    let (_, classes, _) = schema(&request.resource.kind);
    RefDecision {
        allowed: true,
        fields: classes
            .iter()
            .filter(|c| granted.contains(c))
            .map(|c| c.to_string())
            .collect(),
        matched,
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the policy as a policy file.
pub fn to_toml(policy: &RefPolicy) -> String {
    let mut out = String::from("[policy]\nname = \"generated\"\n");
    for role in &policy.roles {
        out.push_str(&format!(
            "\n[roles.{}]\ndescription = \"generated\"\ngrants = [\n",
            role.name
        ));
        for grant in &role.grants {
            let mut parts = vec![format!("on = {:?}", grant.on.as_deref().unwrap_or("*"))];
            parts.push(match &grant.can {
                None => "can = [\"*\"]".to_owned(),
                Some(can) => format!("can = [{}]", quoted(can)),
            });
            if let Some(fields) = &grant.fields {
                parts.push(format!("fields = [{}]", quoted(fields)));
            }
            if grant.scope != "all" || grant.when.is_empty() {
                parts.push(format!("scope = {:?}", grant.scope));
            }
            if !grant.when.is_empty() {
                let conditions: Vec<String> = grant
                    .when
                    .iter()
                    .map(|(k, v)| format!("{k} = {v:?}"))
                    .collect();
                parts.push(format!("when = {{ {} }}", conditions.join(", ")));
            }
            out.push_str(&format!("  {{ {} }},\n", parts.join(", ")));
        }
        out.push_str("]\n");
    }
    out.push_str(&format!(
        "\n[high_risk]\npermissions = [{}]\n",
        quoted(&policy.high_risk)
    ));
    out
}

/// Writes the request as a line of the batch format.
pub fn to_json(request: &RefRequest) -> String {
    serde_json::json!({
        "principal": {
            "id": request.principal.id,
            "roles": request.principal.roles,
            "partner_id": request.principal.partner_id,
            "attrs": request.principal.attrs,
        },
        "action": request.action,
        "resource": {
            "type": request.resource.kind,
            "id": request.resource.id,
            "partner_id": request.resource.partner_id,
            "owner": request.resource.owner,
            "attrs": request.resource.attrs,
        },
        "elevated": request.elevated,
    })
    .to_string()
}
