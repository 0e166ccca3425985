//! Replaying recorded decisions against a candidate policy (the
//! simulation of `policy plan`): every recorded decision input (the batch
//! format, as the audit trail keeps it) is decided again by the candidate,
//! and the changes are counted per role, route and principal, with
//! examples.
//!
//! Loading (parsing the recorded inputs) and replaying are separate steps,
//! so that a plan can replay one loaded window against several candidates
//! and so that each can be measured apart.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::batch::{RawRequest, parse_line};
use crate::engine::CompiledPolicy;
use crate::schema::{Action, ResourceType};

/// One recorded decision.
#[derive(Clone, Copy, Debug)]
pub struct Recorded<'a> {
    /// The decision input, one JSON object in the batch format.
    pub input: &'a str,
    /// Whether it was allowed.
    pub allowed: bool,
    /// The route it was made on (`GET /v1/partners/{id}`).
    pub route: &'a str,
}

/// Recorded decisions parsed and ready to replay, borrowing from the
/// inputs.
#[derive(Debug, Default)]
pub struct Loaded<'a> {
    items: Vec<(RawRequest<'a>, ResourceType, Action, bool, &'a str)>,
    /// Inputs that could not be parsed (skipped).
    pub skipped: u64,
}

impl<'a> Loaded<'a> {
    /// Parses recorded decisions.
    pub fn load(recorded: impl IntoIterator<Item = Recorded<'a>>) -> Loaded<'a> {
        let mut out = Loaded::default();
        for r in recorded {
            match parse_line(r.input) {
                Ok((raw, kind, action)) => out.items.push((raw, kind, action, r.allowed, r.route)),
                Err(_) => out.skipped += 1,
            }
        }
        out
    }

    /// How many decisions are loaded.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Replays every loaded decision against `candidate`.
    pub fn replay(&self, candidate: &CompiledPolicy) -> Simulation {
        let mut out = Simulation {
            skipped: self.skipped,
            ..Simulation::default()
        };
        for (raw, kind, action, was_allowed, route) in &self.items {
            let roles = candidate.resolve_roles(raw.role_names());
            let request = raw.request(&roles, *kind, *action);
            let now_allowed = candidate.decide(&request).allowed;
            out.replayed += 1;
            if now_allowed == *was_allowed {
                continue;
            }
            let bump = |counts: &mut Counts| {
                if *was_allowed {
                    counts.allow_to_deny += 1;
                } else {
                    counts.deny_to_allow += 1;
                }
            };
            bump(&mut out.total);
            for role in raw.role_names() {
                bump(out.by_role.entry(role.to_owned()).or_default());
            }
            bump(out.by_route.entry((*route).to_owned()).or_default());
            bump(
                out.by_principal
                    .entry(raw.principal.id.to_string())
                    .or_default(),
            );
            if out.examples.len() < MAX_EXAMPLES {
                out.examples.push(Example {
                    principal: raw.principal.id.to_string(),
                    roles: raw.role_names().map(str::to_owned).collect(),
                    permission: format!("{kind}:{action}"),
                    resource_id: raw.resource.id.to_string(),
                    partner_id: raw.resource.partner_id.as_deref().map(str::to_owned),
                    route: (*route).to_owned(),
                    before: if *was_allowed { "allow" } else { "deny" },
                    after: if now_allowed { "allow" } else { "deny" },
                });
            }
        }
        out
    }
}

/// The most examples a simulation keeps.
pub const MAX_EXAMPLES: usize = 20;

/// Decisions that change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Allowed then, denied by the candidate.
    pub allow_to_deny: u64,
    /// Denied then, allowed by the candidate.
    pub deny_to_allow: u64,
}

/// One decision that changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Example {
    /// Who.
    pub principal: String,
    /// Its roles then.
    pub roles: Vec<String>,
    /// `resource:action`.
    pub permission: String,
    /// Which record.
    pub resource_id: String,
    /// Its partner.
    pub partner_id: Option<String>,
    /// The route.
    pub route: String,
    /// `allow` or `deny`, as recorded.
    pub before: &'static str,
    /// `allow` or `deny`, under the candidate.
    pub after: &'static str,
}

/// What replaying recorded decisions against a candidate found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Simulation {
    /// Decisions replayed.
    pub replayed: u64,
    /// Recorded inputs that could not be replayed.
    pub skipped: u64,
    /// Changes in all.
    pub total: Counts,
    /// Changes per role of the principal (a change counts for each of its
    /// roles).
    pub by_role: BTreeMap<String, Counts>,
    /// Changes per route.
    pub by_route: BTreeMap<String, Counts>,
    /// Changes per principal.
    pub by_principal: BTreeMap<String, Counts>,
    /// The first changes.
    pub examples: Vec<Example>,
}

impl Simulation {
    /// Whether the candidate denies something that was allowed: a
    /// breaking change.
    pub fn breaking(&self) -> bool {
        self.total.allow_to_deny > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;
    use crate::parse::parse_policy;

    fn compile(text: &str) -> CompiledPolicy {
        CompiledPolicy::compile(parse_policy(&SourceFile::new("t.toml", text)).unwrap())
    }

    const OLD: &str = r#"
[policy]
name = "t"
min_admins = 1
[roles.admin]
superuser = true
grants = [ { on = "*", can = ["*"] } ]
[roles.viewer]
description = "v"
grants = [ { on = "partner", can = ["read"], fields = ["general"] } ]
"#;

    #[test]
    fn counts_changes_in_both_directions() {
        let new = OLD.replace(
            r#"grants = [ { on = "partner", can = ["read"], fields = ["general"] } ]"#,
            r#"grants = [ { on = "contact", can = ["read"], fields = ["general"] } ]"#,
        );
        let read = |kind: &str| {
            format!(
                r#"{{"principal":{{"id":"u1","roles":["viewer"]}},"action":"read","resource":{{"type":"{kind}","id":"r","partner_id":"p"}}}}"#
            )
        };
        let (partner, contact) = (read("partner"), read("contact"));
        let recorded = [
            Recorded {
                input: &partner,
                allowed: true,
                route: "GET /v1/partners/{id}",
            },
            Recorded {
                input: &partner,
                allowed: true,
                route: "GET /v1/partners/{id}",
            },
            Recorded {
                input: &contact,
                allowed: false,
                route: "GET /v1/contacts/{id}",
            },
            Recorded {
                input: "not json",
                allowed: true,
                route: "x",
            },
        ];
        let loaded = Loaded::load(recorded);
        assert_eq!((loaded.len(), loaded.skipped), (3, 1));
        let same = loaded.replay(&compile(OLD));
        assert_eq!(same.total, Counts::default());
        assert!(!same.breaking());
        let changed = loaded.replay(&compile(&new));
        assert_eq!(changed.replayed, 3);
        assert_eq!(
            changed.total,
            Counts {
                allow_to_deny: 2,
                deny_to_allow: 1
            }
        );
        assert_eq!(changed.by_role["viewer"], changed.total);
        assert_eq!(changed.by_route["GET /v1/partners/{id}"].allow_to_deny, 2);
        assert_eq!(changed.by_principal["u1"].deny_to_allow, 1);
        assert_eq!(changed.examples.len(), 3);
        assert!(changed.breaking());
    }
}
