//! Why a decision was made: every grant of the principal's roles, whether
//! it matched the request and, if not, what it needed.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::engine::{CompiledPolicy, Request};
use crate::model::{ActionPattern, ConditionValue, Grant, ResourcePattern, Scope};
use crate::schema::FieldClass;

/// A decision with the reasoning behind it.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Visible (or writable) classes, in schema order.
    pub fields: Vec<&'static str>,
    /// Matched grants, `role#index`, in file order.
    pub matched: Vec<String>,
    /// Why it was denied.
    pub reason: Option<String>,
    /// The request, in words.
    pub request: String,
    /// Every role of the principal, with every grant.
    pub roles: Vec<RoleTrace>,
    /// Facts that apply to the whole request (partner binding, high risk).
    pub notes: Vec<String>,
}

/// One role of the principal.
#[derive(Clone, Debug, Serialize)]
pub struct RoleTrace {
    /// The role's name.
    pub role: String,
    /// Whether the policy defines it (an undefined role grants nothing).
    pub defined: bool,
    /// Its grants, in file order.
    pub grants: Vec<GrantTrace>,
}

/// One grant and what it did for the request.
#[derive(Clone, Debug, Serialize)]
pub struct GrantTrace {
    /// `role#index`.
    pub grant: String,
    /// The grant as written.
    pub summary: String,
    /// Whether it matched.
    pub matched: bool,
    /// What it gave, or what it lacked or needed.
    pub detail: String,
}

impl CompiledPolicy {
    /// Explains the decision on `request`.
    pub fn explain(&self, request: &Request<'_>) -> Explanation {
        let decision = self.decide(request);
        let principal = &request.principal;
        let resource = &request.resource;
        let kind = resource.kind;
        let permission = format!("{kind}:{}", request.action);

        let mut notes = Vec::new();
        let other_partner = kind.is_partner_owned()
            && principal
                .partner_id
                .is_some_and(|own| resource.partner_id != Some(own));
        if let Some(own) = principal.partner_id {
            if !kind.is_partner_owned() {
                notes.push(format!(
                    "the principal is bound to partner {own}; {kind} records belong to no partner, so the binding does not narrow them"
                ));
            } else if other_partner {
                notes.push(format!(
                    "the principal is bound to partner {own} and this {kind} is not that partner's: no grant can apply"
                ));
            } else {
                notes.push(format!(
                    "the principal is bound to partner {own}, which this {kind} belongs to"
                ));
            }
        }
        if self.is_high_risk(kind, request.action) {
            notes.push(if request.elevated {
                format!("{permission} is high-risk; the principal holds an active elevation for it")
            } else {
                format!("{permission} is high-risk and needs an active elevation, which the principal does not hold")
            });
        }

        let mut roles = Vec::new();
        for &role_id in principal.roles.ids() {
            let Some(role) = self.policy().roles.get(usize::from(role_id)) else {
                continue;
            };
            let grants = role
                .grants
                .iter()
                .enumerate()
                .map(|(index, grant)| {
                    let (matched, detail) = trace_grant(grant, request, other_partner);
                    GrantTrace {
                        grant: format!("{}#{index}", role.name),
                        summary: summarize(grant),
                        matched,
                        detail,
                    }
                })
                .collect();
            roles.push(RoleTrace {
                role: role.name.clone(),
                defined: true,
                grants,
            });
        }
        for unknown in principal.roles.unknown() {
            roles.push(RoleTrace {
                role: unknown.to_string(),
                defined: false,
                grants: Vec::new(),
            });
        }

        Explanation {
            decision: if decision.allowed { "allow" } else { "deny" },
            fields: decision
                .fields
                .in_schema_order(kind)
                .map(FieldClass::name)
                .collect(),
            matched: decision
                .matched
                .iter()
                .map(|&g| self.label(g).to_owned())
                .collect(),
            reason: self.deny_reason(request, &decision),
            request: describe_request(request),
            roles,
            notes,
        }
    }
}

fn trace_grant(grant: &Grant, request: &Request<'_>, other_partner: bool) -> (bool, String) {
    let kind = request.resource.kind;
    let Some(coverage) = grant.coverage().find(|c| c.resource == kind) else {
        return (false, format!("does not cover {kind}"));
    };
    if !coverage.actions.contains(request.action) {
        return (false, format!("covers {kind} but not {}", request.action));
    }
    if other_partner {
        return (
            false,
            "the record belongs to another partner than the principal's".to_owned(),
        );
    }
    let principal = &request.principal;
    let resource = &request.resource;
    let mut needs = Vec::new();
    match grant.scope {
        Scope::All => {}
        Scope::OwnPartner => {
            if principal.partner_id.is_none() || resource.partner_id != principal.partner_id {
                needs.push(format!(
                    "scope own_partner: the record's partner ({}) is not the principal's ({})",
                    resource.partner_id.unwrap_or("none"),
                    principal.partner_id.unwrap_or("none")
                ));
            }
        }
        Scope::Owned => {
            if resource.owner != Some(principal.id) {
                needs.push(format!(
                    "scope owned: the record's owner ({}) is not the principal ({})",
                    resource.owner.unwrap_or("none"),
                    principal.id
                ));
            }
        }
    }
    for condition in &grant.when {
        let actual = resource.attrs.attr(&condition.attr);
        let holds = match &condition.value {
            ConditionValue::Literal(value) => actual == Some(value.as_str()),
            ConditionValue::Principal(attr) => {
                actual.is_some() && principal.attrs.attr(attr) == actual
            }
        };
        if !holds {
            let mut text = format!(
                "when {condition}: the record has {}",
                actual.map_or_else(|| "no such attribute".to_owned(), |v| format!("{v:?}"))
            );
            if let ConditionValue::Principal(attr) = &condition.value {
                let _ = write!(
                    text,
                    ", the principal has {}",
                    principal
                        .attrs
                        .attr(attr)
                        .map_or_else(|| "no such attribute".to_owned(), |v| format!("{v:?}"))
                );
            }
            needs.push(text);
        }
    }
    if needs.is_empty() {
        let fields: Vec<_> = coverage
            .fields
            .in_schema_order(kind)
            .map(FieldClass::name)
            .collect();
        (true, format!("matches, giving [{}]", fields.join(", ")))
    } else {
        (false, needs.join("; "))
    }
}

/// A grant as one line: `on partner can [read, update] fields [general] scope owned`.
pub fn summarize(grant: &Grant) -> String {
    let mut text = format!("on {}", grant.on);
    match grant.can {
        ActionPattern::Any => text.push_str(" can [*]"),
        ActionPattern::Set(set) => {
            let names: Vec<_> = set.iter().map(|a| a.name()).collect();
            let _ = write!(text, " can [{}]", names.join(", "));
        }
    }
    match grant.fields {
        Some(fields) => {
            let names: Vec<_> = match grant.on {
                ResourcePattern::One(resource) => fields
                    .in_schema_order(resource)
                    .map(FieldClass::name)
                    .collect(),
                ResourcePattern::Any => fields.iter().map(FieldClass::name).collect(),
            };
            let _ = write!(text, " fields [{}]", names.join(", "));
        }
        None => text.push_str(" fields (all)"),
    }
    if grant.scope != Scope::All {
        let _ = write!(text, " scope {}", grant.scope);
    }
    if !grant.when.is_empty() {
        let conditions: Vec<_> = grant.when.iter().map(ToString::to_string).collect();
        let _ = write!(text, " when {}", conditions.join(" and "));
    }
    text
}

fn describe_request(request: &Request<'_>) -> String {
    let principal = &request.principal;
    let resource = &request.resource;
    format!(
        "principal {} (partner {}) asks to {} {} {} (partner {}, owner {}){}",
        principal.id,
        principal.partner_id.unwrap_or("none"),
        request.action,
        resource.kind,
        if resource.id.is_empty() {
            "(no id)"
        } else {
            resource.id
        },
        resource.partner_id.unwrap_or("none"),
        resource.owner.unwrap_or("none"),
        if request.elevated {
            ", with an active elevation"
        } else {
            ""
        }
    )
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.request)?;
        if self.decision == "allow" {
            writeln!(
                f,
                "decision: allow, fields [{}], matched [{}]",
                self.fields.join(", "),
                self.matched.join(", ")
            )?;
        } else {
            writeln!(
                f,
                "decision: deny: {}",
                self.reason.as_deref().unwrap_or("denied")
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if self.roles.is_empty() {
            writeln!(f, "the principal has no roles")?;
        }
        for role in &self.roles {
            if !role.defined {
                writeln!(
                    f,
                    "role {}: not defined by this policy, grants nothing",
                    role.role
                )?;
                continue;
            }
            writeln!(f, "role {}:", role.role)?;
            if role.grants.is_empty() {
                writeln!(f, "  (no grants)")?;
            }
            for grant in &role.grants {
                writeln!(
                    f,
                    "  {} {:<10} {}\n      {}",
                    if grant.matched { "✓" } else { "·" },
                    grant.grant,
                    grant.summary,
                    grant.detail
                )?;
            }
        }
        Ok(())
    }
}
