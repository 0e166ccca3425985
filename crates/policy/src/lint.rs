//! Static findings about a checked policy (R12, the findings that need no
//! bindings or usage data). Each finding has a severity, a location and a
//! fix hint. Findings never stop a policy from being used: `check` decides
//! whether a policy is valid, lint whether it is wise.
//!
//! A role marked `superuser = true` is exempt from the wildcard,
//! containment (duplicate roles, redundant grants, missing `fields`) and
//! separation-of-duties findings; it is reported once as info instead.

use crate::diagnostic::{Diagnostic, Severity, Span};
use crate::effective::Effective;
use crate::model::{ActionPattern, Policy, ResourcePattern, Role, Scope};
use crate::schema::{Action, FieldClass, Permission, ResourceType, suggest};

/// Lints a policy; findings come in file order.
pub fn lint(policy: &Policy) -> Vec<Diagnostic> {
    let effective: Vec<Effective> = policy.roles.iter().map(Effective::of_role).collect();
    let mut out = Vec::new();
    superusers(policy, &mut out);
    role_shapes(policy, &mut out);
    separation_of_duties(policy, &effective, &mut out);
    duplicate_roles(policy, &effective, &mut out);
    redundant_grants(policy, &mut out);
    wildcards(policy, &mut out);
    missing_fields(policy, &mut out);
    partner_bound(policy, &mut out);
    unknown_attributes(policy, &mut out);
    lockout(&effective, &mut out);
    not_high_risk(policy, &effective, &mut out);
    out.sort_by_key(|d| (d.span.map_or(usize::MAX, |s| s.start), d.code));
    out
}

/// The permissions R12 calls destructive: they must be high-risk.
pub fn destructive_permissions() -> impl Iterator<Item = Permission> {
    use ResourceType as R;
    let fixed = [
        (R::Partner, Action::Delete),
        (R::Contract, Action::Delete),
        (R::Transaction, Action::Refund),
        (R::Contact, Action::Erase),
        (R::System, Action::Restore),
        (R::Policy, Action::Apply),
        (R::Policy, Action::Rollback),
    ]
    .into_iter()
    .map(|(resource, action)| Permission { resource, action });
    let exports = Permission::all().filter(|p| p.action == Action::Export);
    fixed.chain(exports)
}

fn finding(
    severity: Severity,
    code: &'static str,
    message: String,
    span: Option<Span>,
    help: &str,
) -> Diagnostic {
    Diagnostic::new(severity, code, message, span).with_help(help)
}

fn ordinary_roles(policy: &Policy) -> impl Iterator<Item = (usize, &Role)> {
    policy
        .roles
        .iter()
        .enumerate()
        .filter(|(_, role)| !role.superuser)
}

fn superusers(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for role in policy.roles.iter().filter(|role| role.superuser) {
        out.push(finding(
            Severity::Info,
            "superuser",
            format!(
                "role \"{}\" is a superuser: exempt from the wildcard, containment and separation-of-duties findings",
                role.name
            ),
            Some(role.span),
            "run-time maker-checker and elevation still bind it; bind it to as few principals as the lockout rule allows",
        ));
    }
}

fn role_shapes(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for role in &policy.roles {
        if role.grants.is_empty() {
            out.push(finding(
                Severity::Warning,
                "empty-role",
                format!("role \"{}\" grants nothing", role.name),
                Some(role.span),
                "add grants, or remove the role",
            ));
        }
        if role
            .description
            .as_deref()
            .is_none_or(|d| d.trim().is_empty())
        {
            out.push(finding(
                Severity::Warning,
                "missing-description",
                format!("role \"{}\" has no description", role.name),
                Some(role.span),
                "say in one sentence what the role is for: each role should have one purpose",
            ));
        }
    }
}

fn separation_of_duties(policy: &Policy, effective: &[Effective], out: &mut Vec<Diagnostic>) {
    for (index, role) in ordinary_roles(policy) {
        for rule in &policy.separation_of_duties {
            for (a, b) in rule.pairs() {
                if effective[index].holds(a) && effective[index].holds(b) {
                    out.push(finding(
                        Severity::Error,
                        "sod-conflict",
                        format!(
                            "role \"{}\" holds both {a} and {b}, which separation-of-duties rule \"{}\" forbids one principal to hold",
                            role.name, rule.name
                        ),
                        Some(role.span),
                        "split the role so that the two permissions go to different roles held by different people",
                    ));
                }
            }
        }
    }
}

fn duplicate_roles(policy: &Policy, effective: &[Effective], out: &mut Vec<Diagnostic>) {
    let roles: Vec<_> = ordinary_roles(policy).collect();
    for (later, &(j, role)) in roles.iter().enumerate() {
        if effective[j].entries.is_empty() {
            continue;
        }
        if let Some(&(_, first)) = roles[..later]
            .iter()
            .find(|&&(i, _)| effective[i] == effective[j])
        {
            out.push(finding(
                Severity::Warning,
                "duplicate-role",
                format!(
                    "role \"{}\" grants exactly what role \"{}\" grants",
                    role.name, first.name
                ),
                Some(role.span),
                "keep one of the two roles and bind its principals to it",
            ));
        }
    }
}

fn redundant_grants(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (_, role) in ordinary_roles(policy) {
        let grants: Vec<Effective> = role.grants.iter().map(Effective::of_grant).collect();
        for (j, grant) in role.grants.iter().enumerate() {
            // The first grant that includes this one (an earlier one when two
            // are identical, so that only the later is reported).
            let covering = grants.iter().enumerate().find(|&(i, other)| {
                i != j && other.includes(&grants[j]) && (grants[j] != *other || i < j)
            });
            if let Some((i, _)) = covering {
                out.push(finding(
                    Severity::Warning,
                    "redundant-grant",
                    format!(
                        "grant {name}#{j} overlaps {name}#{i}, which already grants everything it does",
                        name = role.name
                    ),
                    Some(grant.span),
                    "remove this grant, or narrow the other one",
                ));
            }
        }
    }
}

fn wildcards(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (_, role) in ordinary_roles(policy) {
        for (index, grant) in role.grants.iter().enumerate() {
            if grant.on == ResourcePattern::Any {
                out.push(finding(
                    Severity::Warning,
                    "wildcard",
                    format!(
                        "grant {}#{index} applies to every resource type (on = \"*\")",
                        role.name
                    ),
                    Some(grant.on_span),
                    "name the resource types the role needs, one grant each",
                ));
            }
            if grant.can == ActionPattern::Any {
                out.push(finding(
                    Severity::Warning,
                    "wildcard",
                    format!(
                        "grant {}#{index} allows every action (can = [\"*\"])",
                        role.name
                    ),
                    Some(grant.can_span),
                    "list the actions the role needs: a wildcard also grants actions added later",
                ));
            }
        }
    }
}

fn missing_fields(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (_, role) in ordinary_roles(policy) {
        for (index, grant) in role.grants.iter().enumerate() {
            if grant.fields.is_some() {
                continue;
            }
            let sensitive: Vec<String> = grant
                .coverage()
                .filter_map(|c| {
                    let classes: Vec<&str> = c
                        .fields
                        .in_schema_order(c.resource)
                        .filter(|class| class.is_sensitive())
                        .map(FieldClass::name)
                        .collect();
                    (!classes.is_empty())
                        .then(|| format!("{} ({})", c.resource, classes.join(", ")))
                })
                .collect();
            if !sensitive.is_empty() {
                out.push(finding(
                    Severity::Warning,
                    "missing-fields",
                    format!(
                        "grant {}#{index} omits \"fields\", so it covers sensitive fields of {}",
                        role.name,
                        sensitive.join(", ")
                    ),
                    Some(grant.span),
                    "add fields = [\"general\", …] naming only the classes the role needs",
                ));
            }
        }
    }
}

fn partner_bound(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for (_, role) in ordinary_roles(policy).filter(|(_, role)| role.partner_bound) {
        for (index, grant) in role.grants.iter().enumerate() {
            for coverage in grant.coverage() {
                let label = format!("{}#{index}", role.name);
                if !coverage.resource.is_partner_owned() {
                    out.push(finding(
                        Severity::Warning,
                        "partner-bound-scope",
                        format!(
                            "grant {label} gives a partner-bound role {} access, which no partner binding narrows",
                            coverage.resource
                        ),
                        Some(grant.span),
                        "partner-bound principals should reach their own partner's records only: remove this grant",
                    ));
                } else if grant.scope != Scope::OwnPartner {
                    out.push(finding(
                        Severity::Warning,
                        "partner-bound-scope",
                        format!(
                            "grant {label} on {} has scope {}, wider than own_partner; partner binding narrows it to the principal's partner",
                            coverage.resource, grant.scope
                        ),
                        Some(grant.span),
                        "write scope = \"own_partner\" so that the grant says what it does",
                    ));
                }
            }
        }
    }
}

fn unknown_attributes(policy: &Policy, out: &mut Vec<Diagnostic>) {
    for role in &policy.roles {
        for (index, grant) in role.grants.iter().enumerate() {
            for condition in &grant.when {
                for coverage in grant.coverage() {
                    let known: Vec<&str> = coverage.resource.attributes().collect();
                    if known.contains(&condition.attr.as_str()) {
                        continue;
                    }
                    let mut message = format!(
                        "grant {}#{index} tests attribute \"{}\", which {} records do not have",
                        role.name, condition.attr, coverage.resource
                    );
                    if let Some(best) = suggest(&condition.attr, known.iter().copied()) {
                        message.push_str(&format!("; did you mean \"{best}\"?"));
                    }
                    out.push(finding(
                        Severity::Warning,
                        "unknown-attribute",
                        message,
                        Some(grant.span),
                        &format!(
                            "a condition on a missing attribute never holds; {} attributes are: {}",
                            coverage.resource,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
    }
}

fn lockout(effective: &[Effective], out: &mut Vec<Diagnostic>) {
    let apply = Permission {
        resource: ResourceType::Policy,
        action: Action::Apply,
    };
    if !effective.iter().any(|e| e.holds(apply)) {
        out.push(finding(
            Severity::Error,
            "no-admin",
            "no role can apply a policy (policy:apply): once active, this policy could never be changed".to_owned(),
            None,
            "give an administrator role (such as admin) policy:apply",
        ));
    }
}

fn not_high_risk(policy: &Policy, effective: &[Effective], out: &mut Vec<Diagnostic>) {
    for permission in destructive_permissions() {
        let granted = effective.iter().any(|e| e.holds(permission));
        if granted && !policy.is_high_risk(permission) {
            out.push(finding(
                Severity::Warning,
                "not-high-risk",
                format!("{permission} is destructive but not marked high-risk"),
                policy.high_risk_span,
                &format!(
                    "add \"{permission}\" to [high_risk] permissions so that it needs an elevation"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;
    use crate::parse::parse_policy;

    /// Lints `roles` under a policy that is otherwise clean (an admin that
    /// can apply, every destructive permission high-risk).
    fn codes(roles: &str) -> Vec<String> {
        let text = format!(
            r#"
[roles.admin]
description = "all"
superuser = true
grants = [ {{ on = "*", can = ["*"] }} ]
{roles}
[[separation_of_duties]]
name = "contract maker-checker"
conflicting = ["contract:propose", "contract:approve"]
[high_risk]
permissions = ["partner:delete", "contract:delete", "transaction:refund", "contact:erase", "*:export", "system:restore", "policy:apply", "policy:rollback"]
"#
        );
        let policy = parse_policy(&SourceFile::new("p.toml", text)).unwrap();
        lint(&policy)
            .into_iter()
            .filter(|d| d.code != "superuser")
            .map(|d| format!("{} {}: {}", d.severity, d.code, d.message))
            .collect()
    }

    #[test]
    fn a_clean_policy_has_only_the_superuser_info() {
        assert_eq!(codes(""), Vec::<String>::new());
    }

    #[test]
    fn separation_of_duties_counts_wildcards_and_scopes() {
        let found = codes(
            r#"[roles.pm]
description = "x"
grants = [
  { on = "contract", can = ["propose"], fields = ["general"], scope = "owned" },
  { on = "*", can = ["approve"], fields = ["general"] },
]"#,
        );
        assert!(found.contains(&"error sod-conflict: role \"pm\" holds both contract:propose and contract:approve, which separation-of-duties rule \"contract maker-checker\" forbids one principal to hold".to_owned()), "{found:#?}");
    }

    #[test]
    fn duplicate_roles_compare_effective_permissions() {
        let found = codes(
            r#"[roles.a]
description = "x"
grants = [ { on = "metrics", can = ["*"] } ]
[roles.b]
description = "y"
grants = [ { on = "metrics", can = ["read"], fields = ["general"] } ]"#,
        );
        assert!(
            found.contains(
                &"warning duplicate-role: role \"b\" grants exactly what role \"a\" grants"
                    .to_owned()
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn redundant_grants_are_reported_once() {
        let found = codes(
            r#"[roles.a]
description = "x"
grants = [
  { on = "partner", can = ["read", "update"], fields = ["general", "financial"] },
  { on = "partner", can = ["read"], fields = ["general"], scope = "owned" },
  { on = "contact", can = ["read"], fields = ["general"] },
  { on = "contact", can = ["read"], fields = ["general"] },
]"#,
        );
        assert_eq!(
            found,
            [
                "warning redundant-grant: grant a#1 overlaps a#0, which already grants everything it does",
                "warning redundant-grant: grant a#3 overlaps a#2, which already grants everything it does",
            ]
        );
    }

    #[test]
    fn wildcards_and_missing_fields() {
        let found = codes(
            r#"[roles.a]
description = "x"
grants = [ { on = "*", can = ["read"], fields = ["general"] }, { on = "contract", can = ["*"] } ]"#,
        );
        assert_eq!(
            found,
            [
                "error sod-conflict: role \"a\" holds both contract:propose and contract:approve, which separation-of-duties rule \"contract maker-checker\" forbids one principal to hold",
                "warning wildcard: grant a#0 applies to every resource type (on = \"*\")",
                "warning missing-fields: grant a#1 omits \"fields\", so it covers sensitive fields of contract (legal, financial)",
                "warning wildcard: grant a#1 allows every action (can = [\"*\"])",
            ]
        );
    }

    #[test]
    fn partner_bound_roles_should_stay_in_their_partner() {
        let found = codes(
            r#"[roles.api_client]
description = "x"
grants = [
  { on = "partner", can = ["read"], fields = ["general"], scope = "own_partner" },
  { on = "transaction", can = ["read"], fields = ["general"] },
  { on = "principal", can = ["read"] },
]"#,
        );
        assert_eq!(
            found,
            [
                "warning partner-bound-scope: grant api_client#1 on transaction has scope all, wider than own_partner; partner binding narrows it to the principal's partner",
                "warning partner-bound-scope: grant api_client#2 gives a partner-bound role principal access, which no partner binding narrows",
            ]
        );
    }

    #[test]
    fn shapes_and_attributes() {
        let found = codes(
            r#"[roles.a]
grants = []
[roles.b]
description = "x"
grants = [ { on = "partner", can = ["read"], fields = ["general"], when = { regoin = "emea" } } ]"#,
        );
        assert_eq!(
            found,
            [
                "warning empty-role: role \"a\" grants nothing",
                "warning missing-description: role \"a\" has no description",
                "warning unknown-attribute: grant b#0 tests attribute \"regoin\", which partner records do not have; did you mean \"region\"?",
            ]
        );
    }

    #[test]
    fn lockout_and_high_risk() {
        let text = r#"
[roles.a]
description = "x"
grants = [ { on = "partner", can = ["read", "delete"], fields = ["general"] } ]
"#;
        let policy = parse_policy(&SourceFile::new("p.toml", text)).unwrap();
        let found: Vec<_> = lint(&policy).into_iter().map(|d| d.code).collect();
        assert_eq!(found, ["no-admin", "not-high-risk"]);
    }
}
