//! Property tests: the compiled engine against the reference interpreter in
//! `tests/reference`, on random policies and random requests — decisions,
//! visible fields and matched grants — through every way the engine is
//! reached (the library, the batch format, explain and row filters).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod reference;

use std::collections::BTreeMap;

use partnerdb_policy::batch::decide_line;
use partnerdb_policy::{
    Action, CompiledPolicy, FieldClass, Principal, Request, Resource, ResourceType, SourceFile,
    parse_policy,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use reference::{
    CLASSES, RESOURCES, RefDecision, RefGrant, RefPolicy, RefPrincipal, RefRequest, RefResource,
    RefRole, schema,
};

const ALL_ACTIONS: &[&str] = &[
    "read", "create", "update", "delete", "export", "erase", "propose", "approve", "reject",
    "refund", "trigger", "request", "assign", "apply", "rollback", "verify", "backup", "restore",
    "vacuum", "reindex", "check",
];
const ROLE_NAMES: &[&str] = &["r0", "r1", "r2", "r3", "r4"];
const HIGH_RISK: &[&str] = &[
    "partner:delete",
    "*:export",
    "transaction:*",
    "contract:approve",
    "*:read",
    "system:restore",
    "*:*",
];

fn strings(items: Vec<&str>) -> Vec<String> {
    items.into_iter().map(str::to_owned).collect()
}

/// A grant: the resource, then actions, classes, scope and conditions that
/// fit it (or anything, for `*`). Grants covering nothing are dropped later.
fn grant() -> impl Strategy<Value = RefGrant> {
    let on = prop_oneof![1 => Just(None), 4 => select(RESOURCES).prop_map(Some)];
    on.prop_flat_map(|on| {
        let (actions, classes, partner_owned) = match on {
            Some(resource) => schema(resource),
            None => (ALL_ACTIONS, CLASSES, true),
        };
        let can = prop_oneof![
            1 => Just(None),
            5 => subsequence(actions, 1..=actions.len().min(4)).prop_map(|a| Some(strings(a))),
        ];
        let fields = prop_oneof![
            1 => Just(None),
            3 => subsequence(classes, 1..=classes.len()).prop_map(|c| Some(strings(c))),
        ];
        let scope = if partner_owned {
            select(&["all", "all", "own_partner", "owned"][..]).boxed()
        } else {
            Just("all").boxed()
        };
        let condition = (
            select(&["region", "tier", "status"][..]),
            select(
                &[
                    "emea",
                    "gold",
                    "$principal.region",
                    "$principal.tier",
                    "$principal.dept",
                ][..],
            ),
        );
        let when = if partner_owned {
            prop::collection::vec(condition, 0..=2).boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        (can, fields, scope, when).prop_map(move |(can, fields, scope, when)| {
            let mut conditions: Vec<(String, String)> = Vec::new();
            for (attr, value) in when {
                // TOML tables cannot repeat a key.
                if !conditions.iter().any(|(a, _)| a == attr) {
                    conditions.push((attr.to_owned(), value.to_owned()));
                }
            }
            RefGrant {
                on: on.map(str::to_owned),
                can,
                fields,
                scope: scope.to_owned(),
                when: conditions,
            }
        })
    })
}

fn policy() -> impl Strategy<Value = RefPolicy> {
    let role = prop::collection::vec(grant(), 0..=4);
    (
        prop::collection::vec(role, 1..=ROLE_NAMES.len()),
        subsequence(HIGH_RISK, 0..=3),
    )
        .prop_map(|(roles, high_risk)| RefPolicy {
            roles: roles
                .into_iter()
                .enumerate()
                .map(|(i, grants)| RefRole {
                    name: ROLE_NAMES[i].to_owned(),
                    // `check` rejects grants that cover nothing.
                    grants: grants
                        .into_iter()
                        .filter(RefGrant::covers_something)
                        .collect(),
                })
                .collect(),
            high_risk: strings(high_risk),
        })
}

fn attrs(
    keys: &'static [&'static str],
    values: &'static [&'static str],
) -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(select(keys), select(values), 0..=keys.len()).prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

fn principal() -> impl Strategy<Value = RefPrincipal> {
    (
        select(&["u0", "u1", "u2"][..]),
        prop::collection::vec(select(&["r0", "r1", "r2", "r3", "r4", "ghost"][..]), 0..=3),
        prop::option::weighted(0.3, select(&["p0", "p1"][..])),
        attrs(&["region", "tier", "dept"], &["emea", "apac", "gold"]),
    )
        .prop_map(|(id, roles, partner_id, attrs)| RefPrincipal {
            id: id.to_owned(),
            roles: strings(roles),
            partner_id: partner_id.map(str::to_owned),
            attrs,
        })
}

fn request() -> impl Strategy<Value = RefRequest> {
    select(RESOURCES).prop_flat_map(|kind| {
        let (actions, _, _) = schema(kind);
        (
            principal(),
            select(actions),
            prop::option::weighted(0.8, select(&["p0", "p1", "p2"][..])),
            prop::option::weighted(0.8, select(&["u0", "u1", "u2"][..])),
            attrs(&["region", "tier", "status"], &["emea", "apac", "gold"]),
            any::<bool>(),
        )
            .prop_map(
                move |(principal, action, partner_id, owner, attrs, elevated)| RefRequest {
                    principal,
                    action: action.to_owned(),
                    resource: RefResource {
                        kind: kind.to_owned(),
                        id: "r1".to_owned(),
                        partner_id: partner_id.map(str::to_owned),
                        owner: owner.map(str::to_owned),
                        attrs,
                    },
                    elevated,
                },
            )
    })
}

fn compile(policy: &RefPolicy) -> CompiledPolicy {
    let text = reference::to_toml(policy);
    match parse_policy(&SourceFile::new("generated.toml", text.as_str())) {
        Ok(policy) => CompiledPolicy::compile(policy),
        Err(errors) => panic!("generated policy does not check: {errors:#?}\n{text}"),
    }
}

/// Runs `f` with the engine's view of `request`.
fn with_request<T>(
    policy: &CompiledPolicy,
    request: &RefRequest,
    f: impl FnOnce(&Request<'_>) -> T,
) -> T {
    let roles = policy.resolve_roles(request.principal.roles.iter().map(String::as_str));
    let engine_request = Request {
        principal: Principal {
            id: &request.principal.id,
            roles: &roles,
            partner_id: request.principal.partner_id.as_deref(),
            attrs: &request.principal.attrs,
        },
        action: Action::parse(&request.action).unwrap(),
        resource: Resource {
            kind: ResourceType::parse(&request.resource.kind).unwrap(),
            id: &request.resource.id,
            partner_id: request.resource.partner_id.as_deref(),
            owner: request.resource.owner.as_deref(),
            attrs: &request.resource.attrs,
        },
        elevated: request.elevated,
    };
    f(&engine_request)
}

fn engine_decision(policy: &CompiledPolicy, request: &RefRequest) -> RefDecision {
    with_request(policy, request, |r| {
        let decision = policy.decide(r);
        RefDecision {
            allowed: decision.allowed,
            fields: if decision.allowed {
                decision
                    .fields
                    .in_schema_order(r.resource.kind)
                    .map(|c: FieldClass| c.name().to_owned())
                    .collect()
            } else {
                Vec::new()
            },
            matched: if decision.allowed {
                decision
                    .matched
                    .iter()
                    .map(|&g| policy.label(g).to_owned())
                    .collect()
            } else {
                Vec::new()
            },
        }
    })
}

fn batch_decision(policy: &CompiledPolicy, request: &RefRequest) -> RefDecision {
    let mut out = Vec::new();
    assert!(decide_line(policy, &reference::to_json(request), &mut out));
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let list = |key: &str| -> Vec<String> {
        value[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    match value["decision"].as_str() {
        Some("allow") => RefDecision {
            allowed: true,
            fields: list("fields"),
            matched: list("matched"),
        },
        Some("deny") => {
            assert!(
                value["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{value}"
            );
            RefDecision {
                allowed: false,
                fields: Vec::new(),
                matched: Vec::new(),
            }
        }
        _ => panic!("unexpected answer {value}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_agrees_with_the_reference(
        policy in policy(),
        requests in prop::collection::vec(request(), 1..64),
    ) {
        let compiled = compile(&policy);
        for request in &requests {
            let expected = reference::decide(&policy, request);
            let actual = engine_decision(&compiled, request);
            prop_assert_eq!(&actual, &expected, "request {}\npolicy:\n{}", reference::to_json(request), reference::to_toml(&policy));
            let batch = batch_decision(&compiled, request);
            prop_assert_eq!(&batch, &expected, "batch format, request {}", reference::to_json(request));
        }
    }

    #[test]
    fn explain_and_row_filters_agree_with_decide(
        policy in policy(),
        requests in prop::collection::vec(request(), 1..32),
    ) {
        let compiled = compile(&policy);
        for request in &requests {
            with_request(&compiled, request, |r| {
                let decision = compiled.decide(r);
                let explanation = compiled.explain(r);
                assert_eq!(explanation.decision == "allow", decision.allowed);
                let matched_by_trace: Vec<String> = explanation
                    .roles
                    .iter()
                    .flat_map(|role| role.grants.iter().filter(|g| g.matched).map(|g| g.grant.clone()))
                    .collect();
                let matched: Vec<String> = decision.matched.iter().map(|&g| compiled.label(g).to_owned()).collect();
                assert_eq!(matched_by_trace, matched, "explain and decide disagree on {}", reference::to_json(request));

                let filter = compiled.row_filter(&r.principal, r.resource.kind, r.action, r.elevated);
                let row_fields = filter.fields_for(r.resource.partner_id, r.resource.owner, r.resource.attrs);
                assert_eq!(
                    row_fields,
                    decision.fields,
                    "row filter {filter:?} and decide disagree on {}",
                    reference::to_json(request)
                );
            });
        }
    }
}
