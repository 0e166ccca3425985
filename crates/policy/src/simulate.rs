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
    /// Parses recorded decisions. A decision on no single resource (a
    /// list) is left out: it cannot be decided again as recorded.
    pub fn load(recorded: impl IntoIterator<Item = Recorded<'a>>) -> Loaded<'a> {
        let mut out = Loaded::default();
        for r in recorded {
            match parse_line(r.input) {
                Ok((raw, _, _)) if raw.resource.id.is_empty() => {}
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

    /// Replays every loaded decision against `candidate`, comparing with
    /// the recorded outcome, or, given a `baseline` (the version in force),
    /// with the baseline's decision on the same input: then only what the
    /// candidate itself changes is counted, not what earlier versions did.
    pub fn replay(
        &self,
        baseline: Option<&CompiledPolicy>,
        candidate: &CompiledPolicy,
    ) -> Simulation {
        let mut out = Simulation {
            skipped: self.skipped,
            ..Simulation::default()
        };
        let decide = |policy: &CompiledPolicy, raw: &RawRequest<'_>, kind, action| {
            let roles = policy.resolve_roles(raw.role_names());
            policy.decide(&raw.request(&roles, kind, action)).allowed
        };
        for (raw, kind, action, recorded, route) in &self.items {
            let was_allowed = &match baseline {
                Some(baseline) => decide(baseline, raw, *kind, *action),
                None => *recorded,
            };
            let now_allowed = decide(candidate, raw, *kind, *action);
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

impl Counts {
    fn add(&mut self, other: Counts) {
        self.allow_to_deny += other.allow_to_deny;
        self.deny_to_allow += other.deny_to_allow;
    }
}

impl Simulation {
    /// Whether the candidate denies something that was allowed: a
    /// breaking change.
    pub fn breaking(&self) -> bool {
        self.total.allow_to_deny > 0
    }

    /// Adds another part of the same simulation (replaying a window page
    /// by page keeps memory bounded).
    pub fn merge(&mut self, other: Simulation) {
        self.replayed += other.replayed;
        self.skipped += other.skipped;
        self.total.add(other.total);
        for (into, from) in [
            (&mut self.by_role, other.by_role),
            (&mut self.by_route, other.by_route),
            (&mut self.by_principal, other.by_principal),
        ] {
            for (key, counts) in from {
                into.entry(key).or_default().add(counts);
            }
        }
        let room = MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
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
        let same = loaded.replay(None, &compile(OLD));
        assert_eq!(same.total, Counts::default());
        assert!(!same.breaking());
        let changed = loaded.replay(None, &compile(&new));
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
        // Against the version in force instead of the recorded outcomes:
        // the contact read recorded as denied is denied by OLD too, so only
        // the partner reads change.
        let against_old = loaded.replay(Some(&compile(OLD)), &compile(&new));
        assert_eq!(
            against_old.total,
            Counts {
                allow_to_deny: 2,
                deny_to_allow: 1
            }
        );
        let none = loaded.replay(Some(&compile(&new)), &compile(&new));
        assert_eq!(none.total, Counts::default());
        // Page by page, merged: the same totals.
        let mut merged = Simulation::default();
        merged.merge(loaded.replay(None, &compile(&new)));
        merged.merge(loaded.replay(None, &compile(&new)));
        assert_eq!(
            merged.total,
            Counts {
                allow_to_deny: 4,
                deny_to_allow: 2
            }
        );
        assert_eq!(merged.examples.len(), 6);
    }
}
