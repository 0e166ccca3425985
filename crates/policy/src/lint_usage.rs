//! Findings that need the deployment's bindings and usage data (R12, the
//! part `policy lint --usage` adds): roles no principal holds, redundant
//! bindings, fewer administrators than `min_admins`, dormant principals,
//! and roles and grants unused for N days.
//!
//! The caller gathers the facts (principals with their roles, the usage
//! counters, when the usage history begins) and passes times as seconds
//! since the Unix epoch; this module stays free of I/O and clocks.
//!
//! Grants are identified by their `role#index` label, as the engine reports
//! them; linting a file whose grants were reordered against usage recorded
//! under the old order reports by the old positions.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{Diagnostic, Severity};
use crate::effective::{Effective, administrator_roles};
use crate::model::Policy;

/// A principal, as lint sees it.
#[derive(Clone, Debug)]
pub struct PrincipalFacts {
    /// Its id.
    pub id: String,
    /// Its name, for messages.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// When it was created.
    pub created_at: i64,
    /// Its last decision, if any.
    pub last_used: Option<i64>,
}

/// What lint needs to know about a deployment.
#[derive(Clone, Debug, Default)]
pub struct UsageFacts {
    /// Every principal that is not deleted.
    pub principals: Vec<PrincipalFacts>,
    /// Last allowed decision per role name.
    pub role_last_used: BTreeMap<String, i64>,
    /// Last allowed decision per grant label (`role#index`).
    pub grant_last_used: BTreeMap<String, i64>,
    /// The first recorded event (the usage history begins there).
    pub history_start: Option<i64>,
    /// Now.
    pub now: i64,
    /// Unused for this many days is reported.
    pub unused_days: u32,
}

const DAY: i64 = 86_400;

/// Lints a policy against a deployment's bindings and usage.
pub fn lint_usage(policy: &Policy, facts: &UsageFacts) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let effective: BTreeMap<&str, (Effective, bool)> = policy
        .roles
        .iter()
        .map(|role| {
            (
                role.name.as_str(),
                (Effective::of_role(role), role.superuser),
            )
        })
        .collect();
    roles_without_principal(policy, facts, &mut out);
    redundant_bindings(&effective, facts, &mut out);
    administrators(policy, facts, &mut out);
    let cutoff = facts.now - i64::from(facts.unused_days) * DAY;
    match facts.history_start {
        // Only a history that covers the whole window can say nothing was
        // done in it: a principal without a decision in a younger trail
        // may have used its access before the trail began.
        Some(start) if start <= cutoff => {
            dormant_principals(facts, cutoff, &mut out);
            unused_roles_and_grants(policy, facts, cutoff, &mut out);
        }
        start => {
            let covered = start.map_or(0, |s| (facts.now - s).max(0) / DAY);
            out.push(
                Diagnostic::new(
                    Severity::Info,
                    "short-usage-history",
                    format!(
                        "usage history covers {covered} day{} (fewer than {}): dormant principals and unused roles and grants are not reported yet",
                        if covered == 1 { "" } else { "s" },
                        facts.unused_days
                    ),
                    None,
                )
                .with_help("run again once the trail is old enough, or pass a smaller --unused-days"),
            );
        }
    }
    out
}

fn bound_roles(facts: &UsageFacts) -> BTreeSet<&str> {
    facts
        .principals
        .iter()
        .flat_map(|p| p.roles.iter().map(String::as_str))
        .collect()
}

fn roles_without_principal(policy: &Policy, facts: &UsageFacts, out: &mut Vec<Diagnostic>) {
    let bound = bound_roles(facts);
    for role in policy
        .roles
        .iter()
        .filter(|r| !bound.contains(r.name.as_str()))
    {
        out.push(
            Diagnostic::new(
                Severity::Info,
                "role-without-principal",
                format!("no principal holds role \"{}\"", role.name),
                Some(role.span),
            )
            .with_help("bind it to the principals it was meant for, or remove it"),
        );
    }
}

fn redundant_bindings(
    effective: &BTreeMap<&str, (Effective, bool)>,
    facts: &UsageFacts,
    out: &mut Vec<Diagnostic>,
) {
    for principal in &facts.principals {
        let roles: BTreeSet<&str> = principal.roles.iter().map(String::as_str).collect();
        for &held in &roles {
            let Some((inner, _)) = effective.get(held) else {
                continue;
            };
            // The first other role (in name order) that grants everything
            // `held` does; of two equal roles only the later one is reported.
            let container = roles.iter().find(|&&other| {
                other != held
                    && effective.get(other).is_some_and(|(outer, superuser)| {
                        !superuser && outer.includes(inner) && (outer != inner || other < held)
                    })
            });
            if let Some(container) = container {
                out.push(
                    Diagnostic::new(
                        Severity::Warning,
                        "redundant-binding",
                        format!(
                            "principal {} ({}) holds role \"{held}\", which its role \"{container}\" already contains",
                            principal.id, principal.name
                        ),
                        None,
                    )
                    .with_help(format!("unbind \"{held}\" from {}", principal.id)),
                );
            }
        }
    }
}

fn administrators(policy: &Policy, facts: &UsageFacts, out: &mut Vec<Diagnostic>) {
    let admin_roles = administrator_roles(policy);
    let admins = facts
        .principals
        .iter()
        .filter(|p| p.roles.iter().any(|r| admin_roles.contains(r.as_str())))
        .count();
    let min = policy.min_admins;
    if admins < min as usize {
        out.push(
            Diagnostic::new(
                Severity::Warning,
                "too-few-administrators",
                format!(
                    "{admins} principal{} can apply a policy, fewer than min_admins = {min}",
                    if admins == 1 { "" } else { "s" }
                ),
                None,
            )
            .with_help("bind an administrator role to another principal: until then no administrator can be removed"),
        );
    }
}

fn dormant_principals(facts: &UsageFacts, cutoff: i64, out: &mut Vec<Diagnostic>) {
    for principal in &facts.principals {
        let idle_since = principal.last_used.unwrap_or(principal.created_at);
        if principal.created_at <= cutoff && idle_since <= cutoff {
            let what = match principal.last_used {
                Some(last) => format!("last decision {} days ago", (facts.now - last) / DAY),
                None => "no decision ever".to_owned(),
            };
            out.push(
                Diagnostic::new(
                    Severity::Warning,
                    "dormant-principal",
                    format!(
                        "principal {} ({}) is dormant: {what} (none in the last {} days)",
                        principal.id, principal.name, facts.unused_days
                    ),
                    None,
                )
                .with_help("revoke its credentials or delete it if nobody needs it"),
            );
        }
    }
}

fn unused_roles_and_grants(
    policy: &Policy,
    facts: &UsageFacts,
    cutoff: i64,
    out: &mut Vec<Diagnostic>,
) {
    let bound = bound_roles(facts);
    let used = |last: Option<&i64>| last.is_some_and(|&t| t > cutoff);
    for role in policy
        .roles
        .iter()
        .filter(|r| bound.contains(r.name.as_str()))
    {
        if !used(facts.role_last_used.get(&role.name)) {
            out.push(
                Diagnostic::new(
                    Severity::Warning,
                    "unused-role",
                    format!(
                        "role \"{}\" allowed nothing in the last {} days, though principals hold it",
                        role.name, facts.unused_days
                    ),
                    Some(role.span),
                )
                .with_help("unbind it from those principals, or remove it"),
            );
            // Its grants are unused too; the role's finding says it once.
            continue;
        }
        for (index, grant) in role.grants.iter().enumerate() {
            let label = format!("{}#{index}", role.name);
            if !used(facts.grant_last_used.get(&label)) {
                out.push(
                    Diagnostic::new(
                        Severity::Warning,
                        "unused-grant",
                        format!(
                            "grant {label} allowed nothing in the last {} days",
                            facts.unused_days
                        ),
                        Some(grant.span),
                    )
                    .with_help("remove it, or narrow the role to what is used (least privilege)"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SourceFile, parse_policy};

    const POLICY: &str = r#"
[policy]
min_admins = 2

[roles.admin]
description = "all"
superuser = true
grants = [ { on = "*", can = ["*"] } ]

[roles.reader]
description = "reads partners"
grants = [
  { on = "partner", can = ["read"], fields = ["general"] },
  { on = "contact", can = ["read"], fields = ["general"] },
]

[roles.wide_reader]
description = "reads more"
grants = [
  { on = "partner", can = ["read"], fields = ["general", "financial"] },
  { on = "contact", can = ["read"], fields = ["general"] },
]

[roles.spare]
description = "nobody"
grants = [ { on = "metrics", can = ["read"] } ]
"#;

    fn principal(id: &str, roles: &[&str], created: i64, last: Option<i64>) -> PrincipalFacts {
        PrincipalFacts {
            id: id.to_owned(),
            name: format!("{id}-name"),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            created_at: created,
            last_used: last,
        }
    }

    fn found(facts: &UsageFacts) -> Vec<String> {
        let policy = parse_policy(&SourceFile::new("p.toml", POLICY)).unwrap();
        lint_usage(&policy, facts)
            .into_iter()
            .map(|d| format!("{} {}", d.code, d.message))
            .collect()
    }

    const NOW: i64 = 1_000 * DAY;

    fn facts() -> UsageFacts {
        UsageFacts {
            principals: vec![
                principal("p1", &["admin"], 0, Some(NOW - DAY)),
                principal("p2", &["reader", "wide_reader"], 0, Some(NOW - 40 * DAY)),
                principal("p3", &["reader"], NOW - 5 * DAY, None),
            ],
            role_last_used: [
                ("admin".to_owned(), NOW - DAY),
                ("reader".to_owned(), NOW - 2 * DAY),
            ]
            .into_iter()
            .collect(),
            grant_last_used: [
                ("admin#0".to_owned(), NOW - DAY),
                ("reader#0".to_owned(), NOW - 2 * DAY),
            ]
            .into_iter()
            .collect(),
            history_start: Some(0),
            now: NOW,
            unused_days: 30,
        }
    }

    #[test]
    fn reports_bindings_and_usage_findings() {
        assert_eq!(
            found(&facts()),
            [
                "role-without-principal no principal holds role \"spare\"",
                "redundant-binding principal p2 (p2-name) holds role \"reader\", which its role \"wide_reader\" already contains",
                "too-few-administrators 1 principal can apply a policy, fewer than min_admins = 2",
                "dormant-principal principal p2 (p2-name) is dormant: last decision 40 days ago (none in the last 30 days)",
                "unused-grant grant reader#1 allowed nothing in the last 30 days",
                "unused-role role \"wide_reader\" allowed nothing in the last 30 days, though principals hold it",
            ],
        );
    }

    #[test]
    fn a_short_history_reports_no_unused_grants_and_new_principals_are_not_dormant() {
        let mut facts = facts();
        facts.history_start = Some(NOW - 3 * DAY);
        facts.principals[1].last_used = Some(NOW - 2 * DAY);
        let found = found(&facts);
        assert!(
            found.iter().all(|f| !f.starts_with("unused-")),
            "{found:#?}"
        );
        assert!(
            found.iter().all(|f| !f.starts_with("dormant-")),
            "{found:#?}"
        );
        assert!(
            found.contains(&"short-usage-history usage history covers 3 days (fewer than 30): dormant principals and unused roles and grants are not reported yet".to_owned()),
            "{found:#?}"
        );
    }

    #[test]
    fn an_old_principal_unseen_by_a_young_trail_is_not_dormant() {
        let mut facts = facts();
        facts.history_start = Some(NOW - 10 * DAY);
        // Made long before the trail began, no decision since: it may have
        // used its access before the trail, so nothing can be said yet.
        facts.principals.push(principal("p5", &["reader"], 0, None));
        let young = found(&facts);
        assert!(!young.iter().any(|f| f.contains("p5")), "{young:#?}");
        // Once the trail covers the window, it is.
        facts.history_start = Some(NOW - 31 * DAY);
        let covered = found(&facts);
        assert!(
            covered.contains(&"dormant-principal principal p5 (p5-name) is dormant: no decision ever (none in the last 30 days)".to_owned()),
            "{covered:#?}"
        );
    }

    #[test]
    fn a_superuser_does_not_make_other_bindings_redundant() {
        let mut facts = facts();
        facts.principals[0].roles.push("reader".to_owned());
        facts
            .principals
            .push(principal("p4", &["admin"], 0, Some(NOW)));
        let found = found(&facts);
        assert!(!found.iter().any(|f| f.contains("p1")), "{found:#?}");
        assert!(
            !found.iter().any(|f| f.starts_with("too-few")),
            "{found:#?}"
        );
    }
}
