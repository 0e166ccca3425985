//! The security matrix: every role of the starter policy × every record
//! endpoint and method × a record of the principal's own partner, of
//! another partner, and the endpoints that belong to no partner — on both
//! backends. Expectations never come from the engine under test: decisions
//! come from the reference interpreter of the policy crate's tests (loaded
//! here by path, fed the starter policy read with the `toml` crate, not
//! with partnerdb's parser), and field lists from a table written here by
//! hand.
//!
//! OWASP API Security Top 10 cases covered:
//! - API1 Broken Object Level Authorization: every by-id read, update and
//!   delete of another partner's record, and creates under another
//!   partner, answer like a missing record (404) or refuse (403), never
//!   the data; lists never contain another partner's rows.
//! - API3 Broken Object Property Level Authorization: reads show exactly
//!   the granted classes' fields (masked ones absent); writes of a field of
//!   an ungranted class are refused with 403 naming field and class; mass
//!   assignment of `id`, `version`, server-set and derived fields is
//!   refused (see `mass_assignment_is_refused`).
//! - API5 Broken Function Level Authorization: roles without a grant on an
//!   endpoint's resource and action are refused (analyst writing, api
//!   clients on principal administration, maintenance reading partners).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

#[path = "../../policy/tests/reference/mod.rs"]
mod reference;

use std::collections::{BTreeMap, BTreeSet};

use partnerdb_testkit::{BACKENDS, TestApp, spawn};
use reference::{RefGrant, RefPolicy, RefPrincipal, RefRequest, RefResource, RefRole};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Record fields by class, written by hand from PRODUCT.md (plus the extra
/// fields partnerdb adds: credit_currency, updated_at).
fn fields(kind: &str, class: &str) -> &'static [&'static str] {
    match (kind, class) {
        ("partner", "general") => &[
            "name",
            "legal_name",
            "region",
            "tier",
            "status",
            "website",
            "created_at",
            "updated_at",
        ],
        ("partner", "financial") => &[
            "credit_limit",
            "credit_currency",
            "payment_terms",
            "billing_account",
            "bank_account",
            "tax_id",
        ],
        ("contact", "general") => &["title", "department", "status", "created_at", "updated_at"],
        ("contact", "pii") => &["name", "email", "phone"],
        ("contract", "general") => &[
            "title",
            "status",
            "start_date",
            "end_date",
            "created_at",
            "updated_at",
        ],
        ("contract", "financial") => &["value", "currency", "commission_rate"],
        ("contract", "legal") => &["terms", "clauses", "signed_by", "signed_at"],
        ("transaction", "general") => &[
            "kind",
            "status",
            "occurred_at",
            "contract_id",
            "created_at",
            "updated_at",
        ],
        ("transaction", "financial") => &["amount", "currency", "reference"],
        _ => &[],
    }
}

fn expected_keys(kind: &str, classes: &[String]) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = ["id", "partner_id", "owner"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for class in classes {
        keys.extend(fields(kind, class).iter().map(|s| s.to_string()));
    }
    keys
}

/// The starter policy read with the `toml` crate into the reference's own
/// representation.
fn starter() -> RefPolicy {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/starter.toml"
    ))
    .unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let strings = |v: &toml::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut roles = Vec::new();
    for (name, role) in doc["roles"].as_table().unwrap() {
        let grants = role["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let g = g.as_table().unwrap();
                let on = g["on"].as_str().unwrap();
                let can = strings(&g["can"]);
                RefGrant {
                    on: (on != "*").then(|| on.to_owned()),
                    can: (!can.iter().any(|c| c == "*")).then_some(can),
                    fields: g.get("fields").map(strings),
                    scope: g
                        .get("scope")
                        .and_then(|s| s.as_str())
                        .unwrap_or("all")
                        .to_owned(),
                    when: g
                        .get("when")
                        .and_then(|w| w.as_table())
                        .map(|w| {
                            w.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        roles.push(RefRole {
            name: name.clone(),
            grants,
        });
    }
    RefPolicy {
        roles,
        high_risk: strings(&doc["high_risk"]["permissions"]),
    }
}

struct Actor {
    role: &'static str,
    id: String,
    token: String,
    partner_id: Option<String>,
    attrs: BTreeMap<String, String>,
}

impl Actor {
    fn reference(&self) -> RefPrincipal {
        RefPrincipal {
            id: self.id.clone(),
            roles: vec![self.role.to_owned()],
            partner_id: self.partner_id.clone(),
            attrs: self.attrs.clone(),
        }
    }
}

const ROLES: &[&str] = &[
    "admin",
    "partner_manager",
    "finance",
    "legal",
    "analyst",
    "api_client",
    "read_only",
    "read_write",
    "maintenance",
    "auditor",
];
const KINDS: &[(&str, &str)] = &[
    ("partner", "partners"),
    ("contact", "contacts"),
    ("contract", "contracts"),
    ("transaction", "transactions"),
];

struct World {
    /// Partner id of "own" (A) and "other" (B).
    own: String,
    other: String,
    /// Partner JSON by id, as the admin sees it.
    partners: BTreeMap<String, Value>,
}

impl World {
    /// The reference's view of a record (its general fields and its
    /// partner's region and tier as attributes).
    fn resource(&self, kind: &str, record: &Value) -> RefResource {
        let partner = &self.partners[record["partner_id"].as_str().unwrap()];
        let mut attrs = BTreeMap::new();
        for field in fields(kind, "general") {
            if let Some(text) = record[*field].as_str() {
                attrs.insert(field.to_string(), text.to_owned());
            }
        }
        for inherited in ["region", "tier"] {
            attrs.insert(
                inherited.to_owned(),
                partner[inherited].as_str().unwrap().to_owned(),
            );
        }
        RefResource {
            kind: kind.to_owned(),
            id: record["id"].as_str().unwrap().to_owned(),
            partner_id: record["partner_id"].as_str().map(str::to_owned),
            owner: record["owner"].as_str().map(str::to_owned),
            attrs,
        }
    }
}

fn decide(
    policy: &RefPolicy,
    actor: &Actor,
    action: &str,
    resource: RefResource,
) -> reference::RefDecision {
    reference::decide(
        policy,
        &RefRequest {
            principal: actor.reference(),
            action: action.to_owned(),
            resource,
            elevated: false,
        },
    )
}

fn create_body(kind: &str, partner: &str, owner_self: Option<&str>) -> Value {
    match kind {
        "partner" => {
            let mut body = json!({"name": "New partner", "region": "emea"});
            if let Some(owner) = owner_self {
                body["owner"] = Value::from(owner);
            }
            body
        }
        "contact" => json!({"partner_id": partner, "name": "New contact"}),
        "contract" => json!({"partner_id": partner, "title": "New contract"}),
        _ => {
            json!({"partner_id": partner, "kind": "invoice", "occurred_at": "2026-01-01T00:00:00Z", "amount": 100, "currency": "EUR"})
        }
    }
}

fn update_body(kind: &str) -> Value {
    match kind {
        "partner" => json!({"website": "https://changed.example"}),
        "contact" | "contract" => json!({"title": "Changed"}),
        _ => json!({"status": "settled"}),
    }
}

/// Classes a create or update body writes.
fn written_classes(kind: &str, body: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for key in body.as_object().unwrap().keys() {
        for class in ["general", "financial", "pii", "legal"] {
            if fields(kind, class).contains(&key.as_str())
                || (class == "general" && (key == "owner" || key == "partner_id"))
            {
                out.insert(class.to_owned());
            }
        }
    }
    out
}

async fn make(app: &TestApp, kind: &str, plural: &str, partner: &str) -> Value {
    let body = match kind {
        "contact" => {
            json!({"partner_id": partner, "name": "Jo Doe", "email": "jo@x.example", "title": "Buyer"})
        }
        "contract" => {
            json!({"partner_id": partner, "title": "Deal", "value": 1000, "currency": "EUR", "terms": "t"})
        }
        _ => {
            json!({"partner_id": partner, "kind": "invoice", "occurred_at": "2026-01-02T00:00:00Z", "amount": 500, "currency": "EUR"})
        }
    };
    app.record(plural, body).await
}

/// Partner A (owned by the partner manager, region emea) and B (another
/// owner, apac), and one principal per starter role (the api client bound
/// to A).
async fn setup(app: &TestApp) -> (World, Vec<Actor>) {
    // The manager first: partner A is theirs.
    let (pm_id, pm_token) = app
        .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
        .await;
    let a = app.record("partners", json!({"name": "A", "region": "emea", "tier": "gold", "owner": pm_id, "credit_limit": 1, "tax_id": "T"})).await;
    let b = app
        .record(
            "partners",
            json!({"name": "B", "region": "apac", "owner": "someone-else", "bank_account": "X"}),
        )
        .await;
    let own = a["id"].as_str().unwrap().to_owned();
    let other = b["id"].as_str().unwrap().to_owned();
    let world = World {
        own: own.clone(),
        other: other.clone(),
        partners: [(own.clone(), a.clone()), (other.clone(), b.clone())].into(),
    };
    let mut actors = Vec::new();
    for &role in ROLES {
        let actor = match role {
            "admin" => Actor {
                role,
                id: app.admin_id.clone(),
                token: app.admin_token.clone(),
                partner_id: None,
                attrs: BTreeMap::new(),
            },
            "partner_manager" => Actor {
                role,
                id: pm_id.clone(),
                token: pm_token.clone(),
                partner_id: None,
                attrs: [("region".into(), "emea".into())].into(),
            },
            "api_client" => {
                let (id, token) = app
                    .principal("portal", &[role], Some(&own), json!({}))
                    .await;
                Actor {
                    role,
                    id,
                    token,
                    partner_id: Some(own.clone()),
                    attrs: BTreeMap::new(),
                }
            }
            _ => {
                let (id, token) = app.principal(role, &[role], None, json!({})).await;
                Actor {
                    role,
                    id,
                    token,
                    partner_id: None,
                    attrs: BTreeMap::new(),
                }
            }
        };
        actors.push(actor);
    }

    (world, actors)
}

#[tokio::test]
async fn every_role_every_endpoint_own_and_other_partner() {
    let policy = starter();
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (world, actors) = setup(&app).await;
        let mut world = world;
        let mut checked = 0;
        for actor in &actors {
            for &(kind, plural) in KINDS {
                // Every partner as the admin sees it (creates add some).
                let all = app.get("/v1/partners?limit=500", &app.admin_token).await;
                for p in all.body["items"].as_array().unwrap() {
                    world
                        .partners
                        .insert(p["id"].as_str().unwrap().to_owned(), p.clone());
                }
                let label = |what: &str| format!("{backend:?} {} {what} {kind}", actor.role);
                // Records to read, change and delete, fresh for this pair.
                let mut targets = Vec::new();
                for (side, partner) in [("own", &world.own), ("other", &world.other)] {
                    let record = if kind == "partner" {
                        world.partners[partner].clone()
                    } else {
                        make(&app, kind, plural, partner).await
                    };
                    targets.push((side, partner.clone(), record));
                }

                // List (function level, then object level on the rows).
                let covers = policy
                    .roles
                    .iter()
                    .filter(|r| r.name == actor.role)
                    .flat_map(|r| &r.grants)
                    .any(|g| g.actions_on(kind).contains(&"read"));
                let list = app
                    .get(&format!("/v1/{plural}?limit=500"), &actor.token)
                    .await;
                if !covers {
                    assert_eq!(list.status, StatusCode::FORBIDDEN, "{}", label("list"));
                } else {
                    assert_eq!(
                        list.status,
                        StatusCode::OK,
                        "{} {:?}",
                        label("list"),
                        list.body
                    );
                    for item in list.body["items"].as_array().unwrap() {
                        let d = decide(&policy, actor, "read", world.resource(kind, item));
                        assert!(
                            d.allowed,
                            "{}: row {item} must not be listed",
                            label("list")
                        );
                        let keys: BTreeSet<String> =
                            item.as_object().unwrap().keys().cloned().collect();
                        assert_eq!(
                            keys,
                            expected_keys(kind, &d.fields),
                            "{}: fields of a listed row",
                            label("list")
                        );
                    }
                    for (side, _, record) in &targets {
                        let d = decide(&policy, actor, "read", world.resource(kind, record));
                        let listed = list.body["items"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|i| i["id"] == record["id"]);
                        assert_eq!(
                            listed,
                            d.allowed,
                            "{}: {side} record listed?",
                            label("list")
                        );
                    }
                }
                checked += 1;

                for (side, partner, record) in &targets {
                    let id = record["id"].as_str().unwrap();
                    let resource = world.resource(kind, record);
                    let read = decide(&policy, actor, "read", resource.clone());

                    // Read by id.
                    let got = app.get(&format!("/v1/{plural}/{id}"), &actor.token).await;
                    if read.allowed {
                        assert_eq!(got.status, StatusCode::OK, "{} {side}", label("read"));
                        let keys: BTreeSet<String> =
                            got.body.as_object().unwrap().keys().cloned().collect();
                        assert_eq!(
                            keys,
                            expected_keys(kind, &read.fields),
                            "{} {side}: visible fields",
                            label("read")
                        );
                    } else {
                        assert_eq!(
                            got.status,
                            StatusCode::NOT_FOUND,
                            "{} {side}: {:?}",
                            label("read"),
                            got.body
                        );
                        assert_eq!(got.body["code"], "not_found");
                    }

                    // Update a general field.
                    let body = update_body(kind);
                    let patched = app
                        .patch(&format!("/v1/{plural}/{id}"), &actor.token, &body)
                        .await;
                    let update = decide(&policy, actor, "update", resource.clone());
                    let expected = if !read.allowed {
                        StatusCode::NOT_FOUND
                    } else if !update.allowed
                        || !written_classes(kind, &body)
                            .iter()
                            .all(|c| update.fields.contains(c))
                    {
                        StatusCode::FORBIDDEN
                    } else {
                        StatusCode::OK
                    };
                    assert_eq!(
                        patched.status,
                        expected,
                        "{} {side}: {:?}",
                        label("update"),
                        patched.body
                    );

                    // Create under this partner (for partners: owned by the
                    // actor, or by someone else).
                    let body = if kind == "partner" {
                        create_body(
                            kind,
                            partner,
                            if *side == "own" {
                                None
                            } else {
                                Some("someone-else")
                            },
                        )
                    } else {
                        create_body(kind, partner, None)
                    };
                    let created = app
                        .post(&format!("/v1/{plural}"), &actor.token, &body)
                        .await;
                    let mut new = resource.clone();
                    new.id = "new".into();
                    if kind == "partner" {
                        new.owner = Some(if *side == "own" {
                            actor.id.clone()
                        } else {
                            "someone-else".into()
                        });
                        new.partner_id = Some("new".into());
                        new.attrs = [
                            ("region".to_owned(), "emea".to_owned()),
                            ("tier".into(), "standard".into()),
                            ("status".into(), "prospect".into()),
                            ("name".into(), "New partner".into()),
                        ]
                        .into();
                        if actor.partner_id.is_some() {
                            new.partner_id = Some("new".into());
                        }
                    }
                    let partner_readable = kind == "partner"
                        || decide(
                            &policy,
                            actor,
                            "read",
                            world.resource("partner", &world.partners[partner]),
                        )
                        .allowed;
                    let create = decide(&policy, actor, "create", new);
                    let expected = if !partner_readable {
                        StatusCode::NOT_FOUND
                    } else if !create.allowed
                        || !written_classes(kind, &body)
                            .iter()
                            .all(|c| create.fields.contains(c))
                    {
                        StatusCode::FORBIDDEN
                    } else {
                        StatusCode::CREATED
                    };
                    assert_eq!(
                        created.status,
                        expected,
                        "{} {side}: {:?}",
                        label("create"),
                        created.body
                    );

                    // Delete (a fresh record for children; partners are
                    // shared, and partner:delete is high-risk anyway).
                    let (victim, victim_resource) = if kind == "partner" {
                        (record.clone(), resource.clone())
                    } else {
                        let fresh = make(&app, kind, plural, partner).await;
                        let r = world.resource(kind, &fresh);
                        (fresh, r)
                    };
                    let deleted = app
                        .delete(
                            &format!("/v1/{plural}/{}", victim["id"].as_str().unwrap()),
                            &actor.token,
                        )
                        .await;
                    let read_victim = decide(&policy, actor, "read", victim_resource.clone());
                    let delete = decide(&policy, actor, "delete", victim_resource);
                    let expected = if !read_victim.allowed {
                        StatusCode::NOT_FOUND
                    } else if !delete.allowed {
                        StatusCode::FORBIDDEN
                    } else if kind == "partner" {
                        // Still has contacts, contracts and transactions.
                        StatusCode::CONFLICT
                    } else {
                        StatusCode::NO_CONTENT
                    };
                    assert_eq!(
                        deleted.status,
                        expected,
                        "{} {side}: {:?}",
                        label("delete"),
                        deleted.body
                    );
                    checked += 4;
                }
            }

            // Endpoints that belong to no partner.
            let me = app.get("/v1/me", &actor.token).await;
            assert_eq!(me.status, StatusCode::OK);
            assert_eq!(me.body["id"], actor.id.as_str());
            let no_partner = RefResource {
                kind: "principal".into(),
                id: "*".into(),
                partner_id: None,
                owner: None,
                attrs: BTreeMap::new(),
            };
            let can = |action: &str| decide(&policy, actor, action, no_partner.clone()).allowed;
            let principals = app.get("/v1/principals", &actor.token).await;
            assert_eq!(
                principals.status,
                if can("read") {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                },
                "{backend:?} {} list principals",
                actor.role
            );
            let created = app
                .post("/v1/principals", &actor.token, &json!({"name": "x"}))
                .await;
            assert_eq!(
                created.status,
                if can("create") {
                    StatusCode::CREATED
                } else {
                    StatusCode::FORBIDDEN
                },
                "{backend:?} {} create principal",
                actor.role
            );
            let bound = app
                .put(
                    &format!("/v1/principals/{}/roles/analyst", actor.id),
                    &actor.token,
                )
                .await;
            let expected = if !can("assign") {
                StatusCode::FORBIDDEN
            } else if actor.partner_id.is_some() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            assert_eq!(
                bound.status, expected,
                "{backend:?} {} bind a role: {:?}",
                actor.role, bound.body
            );
            let credentials = app
                .post(
                    &format!("/v1/principals/{}/credentials", actor.id),
                    &actor.token,
                    &json!({}),
                )
                .await;
            assert_eq!(
                credentials.status,
                if can("update") {
                    StatusCode::CREATED
                } else {
                    StatusCode::FORBIDDEN
                },
                "{backend:?} {} issue a credential",
                actor.role
            );
            checked += 5;
        }
        assert!(checked > 300, "{checked}");
    }
}

#[tokio::test]
async fn mass_assignment_is_refused() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        let contact = app
            .record("contacts", json!({"partner_id": pid, "name": "Jo"}))
            .await;
        let cid = contact["id"].as_str().unwrap();
        for (path, body, code) in [
            (
                format!("/v1/partners/{pid}"),
                json!({"id": "mine"}),
                "read_only_field",
            ),
            (
                format!("/v1/partners/{pid}"),
                json!({"version": 99}),
                "read_only_field",
            ),
            (
                format!("/v1/partners/{pid}"),
                json!({"created_at": "2020-01-01T00:00:00Z"}),
                "read_only_field",
            ),
            (
                format!("/v1/partners/{pid}"),
                json!({"partner_id": "other"}),
                "read_only_field",
            ),
            (
                format!("/v1/contacts/{cid}"),
                json!({"owner": "me"}),
                "read_only_field",
            ),
            (
                format!("/v1/contacts/{cid}"),
                json!({"is_admin": true}),
                "unknown_field",
            ),
        ] {
            let answer = app.patch(&path, &app.admin_token, &body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{backend:?} {body}");
            assert_eq!(answer.body["code"], code, "{backend:?} {body}");
        }
        // Nothing changed.
        let again = app
            .get(&format!("/v1/partners/{pid}"), &app.admin_token)
            .await;
        assert_eq!(again.header("etag"), Some("\"1\""));
    }
}

/// The change-request endpoints (issue 5) for every role × own/other
/// partner's contract: propose, read with its diff, approve, reject,
/// withdraw. A request is proposed by the administrator, so the
/// administrator meets the maker-checker rule (API5: function level; API1:
/// another partner's request answers 404; API3: the diff shows only the
/// classes the reader may read).
#[tokio::test]
async fn change_requests_every_role_own_and_other_partner() {
    let policy = starter();
    let terms = json!({"value": 5, "terms": "new terms"});
    let proposed_classes = written_classes("contract", &terms);
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (world, actors) = setup(&app).await;
        let mut checked = 0;
        let mut made = BTreeMap::new();
        for actor in &actors {
            for (side, partner) in [("own", &world.own), ("other", &world.other)] {
                let label = |what: &str| format!("{backend:?} {} {what} ({side})", actor.role);
                let contract = make(&app, "contract", "contracts", partner).await;
                let cid = contract["id"].as_str().unwrap();
                let resource = || world.resource("contract", &contract);
                let read = decide(&policy, actor, "read", resource());
                let may = |action: &str| decide(&policy, actor, action, resource());

                // Propose.
                let proposed = app
                    .post(
                        &format!("/v1/contracts/{cid}/change-requests"),
                        &actor.token,
                        &terms,
                    )
                    .await;
                let propose = may("propose");
                let expected = if !read.allowed {
                    StatusCode::NOT_FOUND
                } else if !propose.allowed
                    || !proposed_classes.iter().all(|c| propose.fields.contains(c))
                {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::CREATED
                };
                assert_eq!(
                    proposed.status,
                    expected,
                    "{} {:?}",
                    label("propose"),
                    proposed.body
                );

                // The administrator's request, read by the actor.
                let fresh = || async {
                    let request = app
                        .post(
                            &format!("/v1/contracts/{cid}/change-requests"),
                            &app.admin_token,
                            &terms,
                        )
                        .await;
                    assert_eq!(request.status, StatusCode::CREATED);
                    request.body["id"].as_str().unwrap().to_owned()
                };
                let id = fresh().await;
                let seen = app
                    .get(&format!("/v1/change-requests/{id}"), &actor.token)
                    .await;
                if read.allowed {
                    assert_eq!(seen.status, StatusCode::OK, "{}", label("read"));
                    let shown: BTreeSet<String> = seen.body["diff"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d["field"].as_str().unwrap().to_owned())
                        .collect();
                    let readable: BTreeSet<String> = ["value", "terms"]
                        .iter()
                        .filter(|f| {
                            read.fields
                                .iter()
                                .any(|class| fields("contract", class).contains(*f))
                        })
                        .map(|f| f.to_string())
                        .collect();
                    assert_eq!(shown, readable, "{}", label("read the diff"));
                } else {
                    assert_eq!(seen.status, StatusCode::NOT_FOUND, "{}", label("read"));
                    assert!(!seen.body.to_string().contains("new terms"));
                }
                let listed = app.get("/v1/change-requests?limit=200", &actor.token).await;
                assert_eq!(listed.status, StatusCode::OK, "{}", label("list"));
                made.insert(cid.to_owned(), contract.clone());
                for item in listed.body["items"].as_array().unwrap() {
                    let on = &made[item["contract_id"].as_str().unwrap()];
                    assert!(
                        decide(&policy, actor, "read", world.resource("contract", on)).allowed,
                        "{}: a request on an unreadable contract is listed",
                        label("list")
                    );
                }

                // Approve and reject: never by the proposer (the admin).
                for action in ["approve", "reject"] {
                    let id = fresh().await;
                    let answer = app
                        .post(
                            &format!("/v1/change-requests/{id}/{action}"),
                            &actor.token,
                            &json!({"reason": "matrix"}),
                        )
                        .await;
                    let decision = may(action);
                    let (status, code) = if !read.allowed {
                        (StatusCode::NOT_FOUND, "not_found")
                    } else if actor.id == app.admin_id {
                        (StatusCode::FORBIDDEN, "self_approval")
                    } else if !decision.allowed {
                        (StatusCode::FORBIDDEN, "forbidden")
                    } else if action == "approve"
                        && !proposed_classes.iter().all(|c| decision.fields.contains(c))
                    {
                        (StatusCode::FORBIDDEN, "field_not_writable")
                    } else {
                        (StatusCode::OK, "")
                    };
                    assert_eq!(answer.status, status, "{} {:?}", label(action), answer.body);
                    if !code.is_empty() {
                        assert_eq!(answer.body["code"], code, "{}", label(action));
                    }
                }

                // Withdraw: the author only.
                let id = fresh().await;
                let answer = app
                    .post(
                        &format!("/v1/change-requests/{id}/withdraw"),
                        &actor.token,
                        &json!({}),
                    )
                    .await;
                let status = if !read.allowed {
                    StatusCode::NOT_FOUND
                } else if actor.id == app.admin_id {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(answer.status, status, "{}", label("withdraw"));
                checked += 6;
            }
        }
        assert!(checked >= 6 * 2 * ROLES.len(), "{checked}");
    }
}

/// The elevation and workflow endpoints (issue 5) for every role:
/// requesting an elevation, approving another's, triggering onboarding and
/// approving it (API5: function level; the maker-checker rule on the
/// administrator's own requests).
#[tokio::test]
async fn elevations_and_workflows_every_role() {
    let policy = starter();
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (world, actors) = setup(&app).await;
        let on = |kind: &str| RefResource {
            kind: kind.into(),
            id: "*".into(),
            partner_id: None,
            owner: None,
            attrs: BTreeMap::new(),
        };
        for actor in &actors {
            let label = |what: &str| format!("{backend:?} {} {what}", actor.role);
            let can = |kind: &str, action: &str| decide(&policy, actor, action, on(kind)).allowed;
            // Does some grant of the role cover partner:delete at all?
            let covers_delete = policy
                .roles
                .iter()
                .filter(|r| r.name == actor.role)
                .flat_map(|r| &r.grants)
                .any(|g| g.actions_on("partner").contains(&"delete"));

            let asked = app
                .post(
                    "/v1/elevations",
                    &actor.token,
                    &json!({"permissions": ["partner:delete"], "reason": "matrix", "ttl_seconds": 60}),
                )
                .await;
            let (status, code) = if !can("elevation", "request") {
                (StatusCode::FORBIDDEN, "forbidden")
            } else if !covers_delete {
                (StatusCode::BAD_REQUEST, "not_granted")
            } else {
                (StatusCode::CREATED, "")
            };
            assert_eq!(
                asked.status,
                status,
                "{} {:?}",
                label("request an elevation"),
                asked.body
            );
            if !code.is_empty() {
                assert_eq!(
                    asked.body["code"],
                    code,
                    "{}",
                    label("request an elevation")
                );
            }

            // The administrator's request, approved by the actor.
            let theirs = app
                .post(
                    "/v1/elevations",
                    &app.admin_token,
                    &json!({"permissions": ["partner:delete"], "partner_id": world.other, "reason": "matrix", "ttl_seconds": 60}),
                )
                .await;
            let id = theirs.body["id"].as_str().unwrap();
            let approved = app
                .post(
                    &format!("/v1/elevations/{id}/approve"),
                    &actor.token,
                    &json!({}),
                )
                .await;
            let status = if !can("elevation", "approve") {
                StatusCode::NOT_FOUND
            } else if actor.id == app.admin_id {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!(
                approved.status,
                status,
                "{} {:?}",
                label("approve an elevation"),
                approved.body
            );

            // Onboarding: trigger, then create the partner it owns and a
            // draft contract.
            let partner_resource = RefResource {
                kind: "partner".into(),
                id: "new".into(),
                partner_id: Some("new".into()),
                owner: Some(actor.id.clone()),
                attrs: [
                    ("region".to_owned(), "emea".to_owned()),
                    ("status".to_owned(), "onboarding".to_owned()),
                ]
                .into(),
            };
            let contract_resource = RefResource {
                kind: "contract".into(),
                ..partner_resource.clone()
            };
            let started = app
                .post(
                    "/v1/workflows/onboarding",
                    &actor.token,
                    &json!({"partner": {"name": format!("N {}", actor.role), "region": "emea"}}),
                )
                .await;
            // Each step is a permission: trigger, create the partner,
            // create the contract.
            let expected = if can("workflow", "trigger")
                && decide(&policy, actor, "create", partner_resource.clone()).allowed
                && decide(&policy, actor, "create", contract_resource).allowed
            {
                StatusCode::CREATED
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(
                started.status,
                expected,
                "{} {:?}",
                label("onboard"),
                started.body
            );
        }
        // An onboarding by the manager, approved by each role in turn:
        // only a role that may create principals (and did not trigger it).
        let pm = actors.iter().find(|a| a.role == "partner_manager").unwrap();
        for actor in &actors {
            let started = app
                .post(
                    "/v1/workflows/onboarding",
                    &pm.token,
                    &json!({"partner": {"name": format!("M {}", actor.role), "region": "emea"}}),
                )
                .await;
            assert_eq!(started.status, StatusCode::CREATED);
            let id = started.body["workflow"]["id"].as_str().unwrap();
            let approved = app
                .post(
                    &format!("/v1/workflows/{id}/approve"),
                    &actor.token,
                    &json!({}),
                )
                .await;
            let partner = RefResource {
                partner_id: started.body["partner"]["id"].as_str().map(str::to_owned),
                owner: Some(pm.id.clone()),
                kind: "partner".into(),
                id: started.body["partner"]["id"].as_str().unwrap().to_owned(),
                attrs: [("region".to_owned(), "emea".to_owned())].into(),
            };
            let sees = decide(&policy, actor, "read", partner).allowed;
            let expected = if actor.id == pm.id {
                StatusCode::FORBIDDEN
            } else if !sees {
                StatusCode::NOT_FOUND
            } else if !decide(&policy, actor, "create", on("principal")).allowed
                || !decide(&policy, actor, "update", on("principal")).allowed
            {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!(
                approved.status, expected,
                "{backend:?} {} approve an onboarding: {:?}",
                actor.role, approved.body
            );
        }
    }
}
