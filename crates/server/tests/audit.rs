//! The audit trail on both backends: every decision and change recorded
//! with what replaying it needs; no personal data; tampering named
//! precisely by verify; a truncated tail caught by exported checkpoints;
//! an unwritable trail refusing requests; reading the trail with values
//! masked by the reader's classes; usage counters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_audit::Break;
use partnerdb_service::audit::{ReadDurability, VerifyError, verify};
use partnerdb_testkit::{BACKENDS, Backend, TestApp, spawn, spawn_configured};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/v1/audit?limit=500{query}");
    loop {
        let page = app.get(&path, &app.admin_token).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        out.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=500{query}&cursor={cursor}"),
            None => return out,
        }
    }
}

/// The event of `events` about `id` whose reason mentions `reason`.
fn refusal<'e>(events: &'e [Value], id: &str, reason: &str, backend: Backend) -> &'e Value {
    events
        .iter()
        .find(|e| {
            e["resource_id"] == id
                && e["detail"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(reason))
        })
        .unwrap_or_else(|| panic!("{backend:?}: no event for {id} ({reason}) in {events:#?}"))
}

async fn sql(app: &TestApp, statement: &str) {
    partnerdb_testkit::execute(app.service.db(), statement)
        .await
        .unwrap();
}

/// Rewrites the chain from event 3 on, consistently (every event an
/// export, each linked to the one before): only a checkpoint can tell.
async fn rewrite_from_3(app: &TestApp) {
    let events = partnerdb_store::audit::events_after(app.service.db(), 0, 1000)
        .await
        .unwrap();
    let rewritten = partnerdb_audit::link(
        &events[1].hash,
        events[2..].iter().map(|stored| partnerdb_audit::Event {
            action: "export".into(),
            ..stored.event.clone()
        }),
    );
    sql(app, "DELETE FROM audit_events WHERE seq >= 3").await;
    let mut tx = app.service.db().begin().await.unwrap();
    partnerdb_store::audit::insert_stored(&mut tx, &rewritten)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn verified(app: &TestApp, given: Vec<partnerdb_audit::Checkpoint>) -> Result<i64, Break> {
    match verify(app.service.db(), given, Some(&app.key.public()), |_| {}).await {
        Ok(report) => Ok(report.events),
        Err(VerifyError::Broken(broken)) => Err(broken),
        Err(VerifyError::Store(error)) => panic!("{error}"),
    }
}

#[tokio::test]
async fn decisions_and_changes_are_recorded_for_replay() {
    let starter = partnerdb_policy::CompiledPolicy::compile(
        partnerdb_policy::parse_policy(&partnerdb_policy::SourceFile::new(
            "starter",
            partnerdb_service::STARTER_POLICY,
        ))
        .unwrap(),
    );
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, pm_token) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let partner = app
            .record(
                "partners",
                json!({"name": "Acme", "region": "emea", "owner": pm, "credit_limit": 100}),
            )
            .await;
        let pid = partner["id"].as_str().unwrap();
        let other = app
            .record(
                "partners",
                json!({"name": "Other", "region": "apac", "owner": "x"}),
            )
            .await;
        let oid = other["id"].as_str().unwrap();
        let contact = app.record("contacts", json!({"partner_id": pid, "name": "Zelda Quartermaine", "email": "zelda@acme.example", "title": "CFO"})).await;
        assert_eq!(
            app.get(&format!("/v1/partners/{pid}"), &pm_token)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            app.get(&format!("/v1/partners/{oid}"), &pm_token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.patch(
                &format!("/v1/partners/{pid}"),
                &pm_token,
                &json!({"credit_limit": 5})
            )
            .await
            .status,
            StatusCode::FORBIDDEN
        );
        let updated = app
            .patch(
                &format!("/v1/partners/{pid}"),
                &app.admin_token,
                &json!({"credit_limit": 900, "website": "https://acme.example"}),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK);
        assert_eq!(
            app.patch(
                &format!("/v1/contacts/{}", contact["id"].as_str().unwrap()),
                &app.admin_token,
                &json!({"phone": "+1 555 0100"})
            )
            .await
            .status,
            StatusCode::OK
        );
        assert_eq!(
            app.get("/v1/partners?limit=5", &pm_token).await.status,
            StatusCode::OK
        );

        let all = events(&app, "").await;
        // The chain starts with the policy and the first administrator.
        let first = all.last().unwrap();
        assert_eq!(
            (first["seq"].as_i64(), first["kind"].as_str()),
            (Some(1), Some("policy"))
        );

        // The manager's allowed read, with what replaying it needs.
        let read = all
            .iter()
            .find(|e| {
                e["action"] == "read" && e["resource_id"] == pid && e["principal_id"] == pm.as_str()
            })
            .unwrap();
        assert_eq!(read["decision"], "allow");
        assert_eq!(read["detail"]["request"]["route"], "/v1/partners/{id}");
        assert_eq!(read["detail"]["request"]["method"], "GET");
        assert!(
            read["detail"]["request"]["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(
            read["policy_version"],
            app.service.policy_version().as_ref()
        );
        assert!(
            read["detail"]["matched"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "partner_manager#0")
        );
        let mut out = Vec::new();
        assert!(partnerdb_policy::batch::decide_line(
            &starter,
            &read["detail"]["input"].to_string(),
            &mut out
        ));
        let replay: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            replay["decision"], "allow",
            "{backend:?}: the recorded input replays to the same decision"
        );
        assert_eq!(replay["matched"], read["detail"]["matched"]);

        // The denied read (404) and the refused write.
        let denied = all
            .iter()
            .find(|e| e["resource_id"] == oid && e["principal_id"] == pm.as_str())
            .unwrap();
        assert_eq!(denied["decision"], "deny");
        assert!(
            denied["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains("partner_manager")
        );
        let refused = all
            .iter()
            .find(|e| e["action"] == "update" && e["decision"] == "deny")
            .unwrap();
        assert!(
            refused["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains("credit_limit"),
            "{refused}"
        );

        // The change: financial and general values before and after.
        let change = all
            .iter()
            .find(|e| e["kind"] == "change" && e["action"] == "update" && e["resource_id"] == pid)
            .unwrap();
        let changes = change["detail"]["changes"].as_array().unwrap();
        let credit = changes
            .iter()
            .find(|c| c["field"] == "credit_limit")
            .unwrap();
        assert_eq!(
            (
                credit["before"].as_i64(),
                credit["after"].as_i64(),
                credit["class"].as_str()
            ),
            (Some(100), Some(900), Some("financial"))
        );
        assert!(changes.iter().any(|c| c["field"] == "website"));
        // Personal data: the field's name only.
        let phone_change = all
            .iter()
            .find(|e| {
                e["kind"] == "change" && e["resource_type"] == "contact" && e["action"] == "update"
            })
            .unwrap();
        let phone = &phone_change["detail"]["changes"][0];
        assert_eq!(
            (phone["field"].as_str(), phone["class"].as_str()),
            (Some("phone"), Some("pii"))
        );
        assert!(phone.get("after").is_none() && phone.get("before").is_none());
        // Principal changes and the list.
        assert!(
            all.iter()
                .any(|e| e["kind"] == "principal" && e["action"] == "create")
        );
        assert!(
            all.iter()
                .any(|e| e["kind"] == "principal" && e["detail"]["issued"] == true)
        );
        let list = all
            .iter()
            .find(|e| {
                e["resource_type"] == "partner"
                    && e["resource_id"].is_null()
                    && e["principal_id"] == pm.as_str()
            })
            .unwrap();
        assert_eq!(list["detail"]["list"]["returned"], 1);

        // Filters on personal fields, and parameters refused after their
        // decision, leave their names in the trail, not their values.
        let by_email = app
            .get(
                "/v1/contacts?email=zelda@acme.example&name=Zelda%20Quartermaine",
                &app.admin_token,
            )
            .await;
        assert_eq!(by_email.status, StatusCode::OK, "{:?}", by_email.body);
        let _ = app
            .get(
                "/v1/metrics/partner-performance?who=zelda@acme.example",
                &app.admin_token,
            )
            .await;
        // Free text where an id goes: a list filter on `id`, a metrics
        // parameter's name and month, a body's partner.
        let by_id = app
            .get("/v1/contacts?id=Zelda%20Quartermaine", &app.admin_token)
            .await;
        assert_eq!(by_id.status, StatusCode::OK, "{:?}", by_id.body);
        for path in [
            "/v1/metrics/partner-performance?zelda@acme.example=1",
            "/v1/metrics/partner-performance?from=Zelda",
        ] {
            let refused = app.get(path, &app.admin_token).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        }
        for (path, body) in [
            (
                "/v1/contacts",
                json!({"partner_id": "zelda@acme.example", "name": "x"}),
            ),
            (
                "/v1/workflows/offboarding",
                json!({"partner_id": "Zelda Quartermaine"}),
            ),
        ] {
            let refused = app.post(path, &app.admin_token, &body).await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{path}: {:?}",
                refused.body
            );
        }
        // A token pasted where an id goes (a path, a body, a request id)
        // is refused as an id and kept nowhere.
        let pasted = app
            .get(&format!("/v1/partners/{pm_token}"), &app.admin_token)
            .await;
        assert_eq!(pasted.status, StatusCode::BAD_REQUEST, "{:?}", pasted.body);
        let pasted = app
            .post(
                "/v1/contacts",
                &app.admin_token,
                &json!({"partner_id": pm_token, "name": "x"}),
            )
            .await;
        assert_eq!(pasted.status, StatusCode::BAD_REQUEST, "{:?}", pasted.body);
        let pasted = app
            .request(
                Method::GET,
                "/v1/partners?limit=1",
                Some(&app.admin_token),
                None,
                &[("x-request-id", &pm_token)],
            )
            .await;
        assert_eq!(pasted.status, StatusCode::OK, "{:?}", pasted.body);
        let filtered = events(&app, "&resource=contact&action=read").await;
        let filters: Vec<&Value> = filtered
            .iter()
            .filter(|e| e["detail"]["list"]["filters"].is_array())
            .map(|e| &e["detail"]["list"]["filters"])
            .collect();
        for expected in [
            json!(["email=(withheld: pii)", "name=(withheld: pii)"]),
            json!(["id=(withheld: not an id)"]),
        ] {
            assert!(
                filters.contains(&&expected),
                "{backend:?}: {expected} not in {filters:?}"
            );
        }

        // No personal data anywhere, in clear or hashed; no token.
        let exported = partnerdb_store::audit::events_after(app.service.db(), 0, 100_000)
            .await
            .unwrap();
        let text: String = exported
            .iter()
            .map(|e| {
                format!(
                    "{}|{}|{}|{}",
                    e.event.detail,
                    e.event.resource_id.clone().unwrap_or_default(),
                    e.event.partner_id.clone().unwrap_or_default(),
                    e.event.principal_id.clone().unwrap_or_default()
                )
            })
            .collect();
        for secret in [
            "Zelda",
            "Quartermaine",
            "zelda@acme.example",
            "+1 555 0100",
            &pm_token,
            &app.admin_token,
        ] {
            assert!(
                !text.contains(secret),
                "{backend:?}: `{secret}` in the trail"
            );
            let hashed = partnerdb_service::auth::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                secret.as_bytes(),
            ));
            assert!(
                !text.contains(&hashed),
                "{backend:?}: hash of `{secret}` in the trail"
            );
        }
        assert_eq!(verified(&app, vec![]).await, Ok(exported.len() as i64));
    }
}

/// An update is decided on the record as it was and as it becomes: the
/// change event keeps both inputs, a plan replays both (a candidate that
/// refuses a move out of a region is caught), and a reader sees the
/// values in the classes it may read on both.
#[tokio::test]
async fn an_update_keeps_both_of_its_decisions_for_replay() {
    // The manager updates its partners in emea by one grant (#1), in apac
    // by another (#2).
    let line = r#"{ on = "partner",     can = ["read", "create", "update"], fields = ["general"], scope = "owned" },"#;
    let split = r#"{ on = "partner",     can = ["read", "create"], fields = ["general"], scope = "owned" },
  { on = "partner",     can = ["update"], fields = ["general"], scope = "owned", when = { region = "emea" } },
  { on = "partner",     can = ["update"], fields = ["general"], scope = "owned", when = { region = "apac" } },"#;
    let policy = partnerdb_service::STARTER_POLICY.replace(line, split);
    assert_ne!(policy, partnerdb_service::STARTER_POLICY);
    for backend in BACKENDS {
        let Some(app) = partnerdb_testkit::spawn_with_policy(backend, &policy).await else {
            continue;
        };
        let (pm_id, pm) = app
            .principal("pm", &["partner_manager"], None, json!({}))
            .await;
        let created = app
            .post(
                "/v1/partners",
                &pm,
                &json!({"name": "M", "region": "emea", "owner": pm_id}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let path = format!("/v1/partners/{}", created.body["id"].as_str().unwrap());
        let moved = app.patch(&path, &pm, &json!({"region": "apac"})).await;
        assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
        let query = "/v1/audit?resource=partner&action=update&decision=allow";
        let admin_view = app.get(query, &app.admin_token).await;
        let detail = &admin_view.body["items"][0]["detail"];
        assert_eq!(
            detail["input"]["resource"]["attrs"]["region"], "apac",
            "{detail}"
        );
        assert_eq!(
            detail["input_before"]["resource"]["attrs"]["region"], "emea",
            "{detail}"
        );
        assert_eq!(detail["input_before"]["principal"]["id"], pm_id.as_str());
        assert_eq!(detail["matched"], json!(["partner_manager#2"]), "{detail}");

        // Both grants served the move: both are counted as used.
        let usage = app.get("/v1/usage?kind=grant", &app.admin_token).await;
        for grant in ["partner_manager#1", "partner_manager#2"] {
            let counter = usage.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == grant)
                .unwrap_or_else(|| panic!("{backend:?}: {grant} unused in {:?}", usage.body));
            assert_eq!(counter["allows"], 1, "{backend:?}: {counter}");
        }

        // A candidate without the emea grant: the move out of emea would
        // be refused (its decision on the record as it was).
        let candidate = policy.replace(
            r#"  { on = "partner",     can = ["update"], fields = ["general"], scope = "owned", when = { region = "emea" } },
"#,
            "",
        );
        assert_ne!(candidate, policy);
        let source = partnerdb_policy::SourceFile::new("candidate", &candidate);
        let candidate = partnerdb_policy::CompiledPolicy::compile(
            partnerdb_policy::parse_policy(&source).unwrap(),
        );
        let active = app.service.active_now().await.unwrap();
        let simulation = app.service.simulate(&active, &candidate, 1).await.unwrap();
        assert_eq!(
            simulation["by_route"]["PATCH /v1/partners/{id}"]["allow_to_deny"], 1,
            "{backend:?}: {simulation}"
        );

        // The auditor may read neither record: both inputs' values hidden.
        let (_, auditor) = app.principal("aud", &["auditor"], None, json!({})).await;
        let auditor_view = app.get(query, &auditor).await;
        let hidden = &auditor_view.body["items"][0]["detail"];
        for input in ["input", "input_before"] {
            assert_eq!(
                hidden[input]["resource"]["attrs"]["region"], "hidden: not readable by you",
                "{backend:?} {input}: {hidden}"
            );
        }
    }
}

/// A change the policy allows and the service then refuses (a stale
/// `If-Match`, dependents left, a reference to no contract, a reused
/// `Idempotency-Key`, a field the table lacks), and a list the roles cover
/// refused for a parameter, leave their event, a service refusal naming
/// the reason, and no change event.
#[tokio::test]
async fn requests_refused_after_the_decision_are_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let admin = app.admin_token.clone();
        let partner = app
            .record("partners", json!({"name": "Acme", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        app.record(
            "contacts",
            json!({"partner_id": pid, "name": "Zelda Quartermaine", "email": "zelda@acme.example"}),
        )
        .await;
        let path = format!("/v1/partners/{pid}");
        let stale = app
            .request(
                Method::PATCH,
                &path,
                Some(&admin),
                Some(&json!({"credit_limit": 5})),
                &[("if-match", "\"99\"")],
            )
            .await;
        assert_eq!(
            stale.status,
            StatusCode::PRECONDITION_FAILED,
            "{:?}",
            stale.body
        );
        // Deleting a partner is high-risk: an elevation another
        // administrator approved.
        let (_, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let body =
            json!({"permissions": ["partner:delete"], "reason": "cleanup", "ttl_seconds": 600});
        let (_, elevation) = app.elevation(&admin, &second, body).await;
        let dependents = app
            .request(
                Method::DELETE,
                &path,
                Some(&admin),
                None,
                &[("x-partnerdb-elevation", &elevation)],
            )
            .await;
        assert_eq!(
            dependents.status,
            StatusCode::CONFLICT,
            "{:?}",
            dependents.body
        );
        let reference = app
            .post(
                "/v1/transactions",
                &admin,
                &json!({"partner_id": pid, "kind": "invoice", "occurred_at": "2026-01-01T00:00:00Z",
                        "amount": 1, "currency": "EUR", "contract_id": "nope"}),
            )
            .await;
        assert_eq!(
            reference.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            reference.body
        );
        let key = [("idempotency-key", "once")];
        for (name, expected) in [
            ("First", StatusCode::CREATED),
            ("Second", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let created = app
                .request(
                    Method::POST,
                    "/v1/partners",
                    Some(&admin),
                    Some(&json!({"name": name, "region": "emea"})),
                    &key,
                )
                .await;
            assert_eq!(created.status, expected, "{name}: {:?}", created.body);
        }
        let unknown = app.patch(&path, &admin, &json!({"colour": "red"})).await;
        assert_eq!(
            unknown.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            unknown.body
        );

        // Lists the roles cover, refused for a parameter: a filter on a
        // class the reader may not read (its value stays out of the
        // trail), a parameter lists do not take, a cursor of nothing.
        let (_, reader) = app
            .principal("dashboard", &["read_only"], None, json!({}))
            .await;
        for (path, token, code) in [
            (
                "/v1/contacts?email=zelda@acme.example",
                &reader,
                "field_not_readable",
            ),
            ("/v1/partners?colour=red", &admin, "unknown_parameter"),
            ("/v1/partners?cursor=garbage", &admin, "invalid_cursor"),
        ] {
            let refused = app.get(path, token).await;
            assert_eq!(refused.body["code"], code, "{path}: {:?}", refused.body);
        }

        let denied = events(&app, "&decision=deny").await;
        for (action, resource_type, resource_id, reason) in [
            ("read", "contact", "", "`email` is pii data"),
            ("read", "partner", "", "unknown query parameter `colour`"),
            ("read", "partner", "", "the cursor is invalid"),
            (
                "update",
                "partner",
                pid,
                "the record changed since it was read",
            ),
            (
                "delete",
                "partner",
                pid,
                "still has records that belong to it",
            ),
            (
                "create",
                "transaction",
                "",
                "no contract `nope` of this partner",
            ),
            ("create", "partner", "", "Idempotency-Key was already used"),
            ("update", "partner", pid, "partner has no field `colour`"),
        ] {
            let found = denied.iter().find(|e| {
                e["action"] == action
                    && e["resource_type"] == resource_type
                    && e["resource_id"].as_str().unwrap_or_default() == resource_id
                    && e["detail"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains(reason))
            });
            let event = found.unwrap_or_else(|| {
                panic!(
                    "{backend:?}: no event for {action} {resource_type} ({reason}) in {denied:#?}"
                )
            });
            assert_eq!(event["kind"], "decision", "{event}");
            assert_eq!(event["detail"]["engine"], false, "{event}");
        }
        // None of them changed anything: the only change events about the
        // partner are its creation and, for the contact, the contact's.
        let changes = events(&app, &format!("&resource_id={pid}")).await;
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .filter(|e| e["kind"] == "change")
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["resource_type"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(kinds, [("create", "partner")], "{backend:?}");
        let trail = serde_json::to_string(&events(&app, "").await).unwrap();
        assert!(
            !trail.contains("zelda@"),
            "{backend:?}: an e-mail in the trail"
        );
        assert!(verified(&app, Vec::new()).await.is_ok());
    }
}

/// Reads outside the record API leave their event too: a workflow run
/// (its trigger's own, or through the partner's read grant), an elevation
/// (its requester's own, or an approver's), the elevation list, a refused
/// elevation list, and `/v1/me`.
#[tokio::test]
async fn reads_of_runs_elevations_and_me_are_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let admin = app.admin_token.clone();
        let (pm_id, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let started = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Globex", "region": "emea"}}),
            )
            .await;
        assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
        let run = started.body["workflow"]["id"].as_str().unwrap().to_owned();
        let partner = started.body["partner"]["id"].as_str().unwrap().to_owned();
        let (second_id, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let body =
            json!({"permissions": ["partner:delete"], "reason": "cleanup", "ttl_seconds": 600});
        let (elevation, _) = app.elevation(&admin, &second, body).await;
        let (reader_id, reader) = app
            .principal("dashboard", &["read_only"], None, json!({}))
            .await;
        let (auditor_id, auditor) = app.principal("aud", &["auditor"], None, json!({})).await;
        for (path, token, status) in [
            ("/v1/policy/versions".to_owned(), &auditor, StatusCode::OK),
            ("/v1/policy/versions/1".to_owned(), &auditor, StatusCode::OK),
            (
                "/v1/policy/versions/1/plan?days=7".to_owned(),
                &auditor,
                StatusCode::OK,
            ),
            (format!("/v1/workflows/{run}"), &pm, StatusCode::OK),
            (format!("/v1/workflows/{run}"), &admin, StatusCode::OK),
            (
                format!("/v1/elevations/{elevation}"),
                &admin,
                StatusCode::OK,
            ),
            (
                format!("/v1/elevations/{elevation}"),
                &second,
                StatusCode::OK,
            ),
            (
                "/v1/elevations?status=approved".to_owned(),
                &second,
                StatusCode::OK,
            ),
            ("/v1/elevations".to_owned(), &reader, StatusCode::OK),
            (
                "/v1/elevations?colour=red".to_owned(),
                &reader,
                StatusCode::BAD_REQUEST,
            ),
            ("/v1/me".to_owned(), &reader, StatusCode::OK),
        ] {
            let answer = app.get(&path, token).await;
            assert_eq!(answer.status, status, "{path}: {:?}", answer.body);
        }
        let reads = events(&app, "&action=read").await;
        let find = |principal: &str, resource_type: &str, id: Option<&str>| {
            reads
                .iter()
                .filter(|e| {
                    e["principal_id"] == principal
                        && e["resource_type"] == resource_type
                        && e["resource_id"].as_str().filter(|s| !s.is_empty()) == id
                })
                .cloned()
                .collect::<Vec<Value>>()
        };
        // The trigger's own run: the service's rule; an administrator's
        // through the policy's partner read (the run's partner recorded).
        let own = find(&pm_id, "workflow", Some(&run));
        assert_eq!(own.len(), 1, "{backend:?} {own:#?}");
        assert_eq!(
            (
                own[0]["decision"].as_str(),
                own[0]["detail"]["engine"].as_bool()
            ),
            (Some("allow"), Some(false))
        );
        assert_eq!(own[0]["partner_id"], partner.as_str());
        let by_grant = find(&app.admin_id, "workflow", Some(&run));
        assert_eq!(by_grant.len(), 1, "{backend:?} {by_grant:#?}");
        assert_eq!(by_grant[0]["detail"]["engine"], true);
        assert!(
            !by_grant[0]["detail"]["matched"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let requester = find(&app.admin_id, "elevation", Some(&elevation));
        assert_eq!(requester.len(), 1, "{backend:?} {requester:#?}");
        assert_eq!(requester[0]["detail"]["engine"], false);
        let approver = find(&second_id, "elevation", Some(&elevation));
        assert_eq!(approver.len(), 1, "{backend:?} {approver:#?}");
        assert_eq!(approver[0]["detail"]["engine"], true);
        let lists = find(&second_id, "elevation", None);
        assert_eq!(lists.len(), 1, "{backend:?} {lists:#?}");
        assert_eq!(lists[0]["detail"]["list"]["own"], false);
        assert_eq!(lists[0]["detail"]["list"]["status"], "approved");
        // Newest first: the refused list, then the reader's own list.
        let readers: Vec<(Value, Value)> = find(&reader_id, "elevation", None)
            .iter()
            .map(|e| (e["decision"].clone(), e["detail"]["list"]["own"].clone()))
            .collect();
        assert_eq!(
            readers,
            [(json!("deny"), Value::Null), (json!("allow"), json!(true))],
            "{backend:?}"
        );
        let me = find(&reader_id, "principal", Some(&reader_id));
        assert_eq!(me.len(), 1, "{backend:?} {me:#?}");
        assert_eq!(me[0]["decision"], "allow");
        // Policy reads: the versions, one version, its plan; their grant
        // is counted as used.
        for (id, count) in [("versions", 1), ("1", 2)] {
            let policy_reads = find(&auditor_id, "policy", Some(id));
            assert_eq!(policy_reads.len(), count, "{backend:?} {policy_reads:#?}");
            for read in &policy_reads {
                assert_eq!(read["decision"], "allow", "{backend:?}");
                assert_eq!(
                    read["detail"]["matched"],
                    json!(["auditor#1"]),
                    "{backend:?}"
                );
            }
        }
        let usage = app.get("/v1/usage?kind=grant", &admin).await;
        assert!(
            usage.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["name"] == "auditor#1" && u["allows"] == 3),
            "{backend:?}: {}",
            usage.body
        );
        assert!(verified(&app, Vec::new()).await.is_ok());
    }
}

/// Refusals the service never sees (a body that is not JSON, an id, a
/// query string the HTTP layer cannot take) and refusals a step returns
/// without an event of its own each leave one deny event, naming the
/// route's resource and the problem's code; a refusal the policy made
/// leaves its own event only.
#[tokio::test]
async fn every_refusal_of_an_authenticated_request_is_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let admin = app.admin_token.clone();
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({}))
            .await;
        let partner = app
            .record("partners", json!({"name": "Acme", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        let client = reqwest::Client::new();
        let send =
            |method: Method, path: String, token: &str, body: Option<(&str, &str)>, rid: &str| {
                let mut request = client
                    .request(method, format!("{}{path}", app.base))
                    .bearer_auth(token)
                    .header("x-request-id", rid);
                if let Some((content_type, body)) = body {
                    request = request
                        .header("content-type", content_type)
                        .body(body.to_owned());
                }
                request.send()
            };
        // Request id, method, path, token, body (content type, text),
        // status, problem code (empty: any), the event's resource type.
        type Case<'a> = (
            &'a str,
            Method,
            String,
            &'a str,
            Option<(&'a str, &'a str)>,
            u16,
            &'a str,
            &'a str,
        );
        let cases: [Case<'_>; 12] = [
            // A path the router's own extractor refuses: problem+json too.
            (
                "bad-utf8",
                Method::GET,
                "/v1/partners/%FF".to_owned(),
                &admin,
                None,
                400,
                "invalid_id",
                "partner",
            ),
            // No route takes it: recorded too, for a caller that
            // authenticates.
            (
                "no-route",
                Method::GET,
                "/v1/nothing".to_owned(),
                &admin,
                None,
                404,
                "no_route",
                "route",
            ),
            (
                "no-method",
                Method::PUT,
                "/v1/partners".to_owned(),
                &admin,
                None,
                405,
                "method_not_allowed",
                "route",
            ),
            // An error text quoting free text from the request: the trail
            // keeps the reason, the quoted text withheld.
            (
                "free-text",
                Method::GET,
                "/v1/audit?resource=jane.doe%40example.com".to_owned(),
                &admin,
                None,
                400,
                "invalid_value",
                "audit",
            ),
            (
                "bad-json",
                Method::PATCH,
                format!("/v1/partners/{pid}"),
                &admin,
                Some(("application/json", "{")),
                400,
                "invalid_json",
                "partner",
            ),
            (
                "not-json",
                Method::POST,
                "/v1/partners".to_owned(),
                &admin,
                Some(("text/plain", "name=x")),
                415,
                "unsupported_media_type",
                "partner",
            ),
            (
                "bad-id",
                Method::GET,
                "/v1/contacts/no%20such%20id".to_owned(),
                &admin,
                None,
                400,
                "invalid_id",
                "contact",
            ),
            (
                "bad-cursor",
                Method::GET,
                "/v1/audit?cursor=bogus".to_owned(),
                &admin,
                None,
                400,
                "invalid_cursor",
                "audit",
            ),
            (
                "bad-status",
                Method::GET,
                "/v1/change-requests?status=sideways".to_owned(),
                &admin,
                None,
                400,
                "invalid_value",
                "change_request",
            ),
            (
                "empty-proposal",
                Method::POST,
                "/v1/policy/versions".to_owned(),
                &admin,
                Some(("application/json", "{}")),
                400,
                "",
                "policy",
            ),
            (
                "no-version",
                Method::GET,
                "/v1/policy/versions/999".to_owned(),
                &admin,
                None,
                404,
                "not_found",
                "policy",
            ),
            // The policy's refusal: its own event, none from the layer.
            (
                "policy-deny",
                Method::GET,
                "/v1/audit".to_owned(),
                &pm,
                None,
                403,
                "",
                "audit",
            ),
        ];
        for (rid, method, path, token, body, status, code, _) in &cases {
            let answer = send(method.clone(), path.clone(), token, *body, rid)
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), *status, "{backend:?} {rid}");
            let problem: Value = answer.json().await.unwrap();
            if !code.is_empty() {
                assert_eq!(problem["code"], *code, "{backend:?} {rid}: {problem}");
            }
        }
        // Without a token, the same answer and nothing written.
        let (head, _) = partnerdb_store::audit::head(app.service.db())
            .await
            .unwrap();
        let anonymous = app
            .request(Method::GET, "/v1/nothing", None, None, &[])
            .await;
        assert_eq!(anonymous.status, StatusCode::NOT_FOUND, "{backend:?}");
        assert_eq!(
            partnerdb_store::audit::head(app.service.db())
                .await
                .unwrap()
                .0,
            head,
            "{backend:?}"
        );
        let all = events(&app, "&decision=deny").await;
        for (rid, _, _, _, _, status, _, resource_type) in &cases {
            let denies: Vec<&Value> = all
                .iter()
                .filter(|e| e["detail"]["request"]["id"] == *rid)
                .collect();
            assert_eq!(denies.len(), 1, "{backend:?} {rid}: {denies:#?}");
            let deny = denies[0];
            assert_eq!(deny["resource_type"], *resource_type, "{backend:?} {rid}");
            if *rid == "policy-deny" {
                assert_eq!(deny["detail"]["engine"], true, "{backend:?}");
                assert!(deny["detail"].get("refusal").is_none(), "{backend:?}");
            } else {
                assert_eq!(deny["detail"]["engine"], false, "{backend:?} {rid}");
                assert_eq!(
                    deny["detail"]["refusal"]["status"], *status,
                    "{backend:?} {rid}"
                );
                assert!(
                    deny["detail"]["reason"]
                        .as_str()
                        .is_some_and(|r| !r.is_empty())
                );
            }
        }
        let bad_json = all
            .iter()
            .find(|e| e["detail"]["request"]["id"] == "bad-json")
            .unwrap();
        assert_eq!(bad_json["resource_id"], pid, "{backend:?}");
        assert_eq!(bad_json["action"], "update", "{backend:?}");
        // No free text from the path in the trail.
        let bad_id = all
            .iter()
            .find(|e| e["detail"]["request"]["id"] == "bad-id")
            .unwrap();
        assert_eq!(bad_id["resource_id"], Value::Null, "{backend:?}");
        let free_text = all
            .iter()
            .find(|e| e["detail"]["request"]["id"] == "free-text")
            .unwrap();
        assert_eq!(
            free_text["detail"]["reason"], "no resource type `(withheld)`",
            "{backend:?}"
        );
        assert!(
            !serde_json::to_string(&all).unwrap().contains("jane.doe"),
            "{backend:?}"
        );
        assert!(
            !bad_id.to_string().contains("no such id") && !bad_id.to_string().contains("no%20such"),
            "{backend:?}"
        );
        assert!(verified(&app, Vec::new()).await.is_ok());
    }
}

/// Principal changes the policy allows and the service refuses (the
/// separation of duties, the lockout rule, an unknown role, a missing
/// principal) leave their event, naming the rule.
#[tokio::test]
async fn principal_changes_refused_after_the_decision_are_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let admin = app.admin_token.clone();
        let me = app.admin_id.clone();
        let (pm, _) = app
            .principal("pm", &["partner_manager"], None, json!({}))
            .await;
        for (method, path, code) in [
            (
                Method::PUT,
                format!("/v1/principals/{pm}/roles/legal"),
                "separation_of_duties",
            ),
            (
                Method::DELETE,
                format!("/v1/principals/{me}/roles/admin"),
                "lockout",
            ),
            (
                Method::PUT,
                format!("/v1/principals/{pm}/roles/wizard"),
                "unknown_role",
            ),
            (
                Method::PUT,
                "/v1/principals/nobody/roles/analyst".to_owned(),
                "not_found",
            ),
        ] {
            let refused = app.request(method, &path, Some(&admin), None, &[]).await;
            assert_eq!(refused.body["code"], code, "{path}: {:?}", refused.body);
        }
        let denied = events(&app, "&decision=deny&resource=principal").await;
        for (id, reason) in [
            (pm.as_str(), "separation-of-duties rule"),
            (me.as_str(), "refused by the lockout rule"),
            (pm.as_str(), "wizard"),
            ("nobody", "principal not found"),
        ] {
            let event = refusal(&denied, id, reason, backend);
            assert_eq!(event["action"], "assign", "{event}");
            assert_eq!(event["detail"]["engine"], false, "{event}");
        }
    }
}

/// A workflow's body refused once its trigger is allowed (an onboarding
/// of a partner not in `onboarding`, an offboarding without its partner)
/// leaves a deny naming the workflow and the error.
#[tokio::test]
async fn workflow_bodies_refused_after_the_trigger_are_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        for (path, body, code) in [
            (
                "/v1/workflows/onboarding",
                json!({"partner": {"name": "X", "region": "emea", "status": "active"}}),
                "invalid_value",
            ),
            (
                "/v1/workflows/onboarding",
                json!({"partner": {"name": "X"}, "extra": 1}),
                "unknown_field",
            ),
            ("/v1/workflows/offboarding", json!({}), "missing_field"),
        ] {
            let refused = app.post(path, &app.admin_token, &body).await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{path}: {:?}",
                refused.body
            );
            assert_eq!(refused.body["code"], code, "{path}: {:?}", refused.body);
        }
        let denied = events(&app, "&decision=deny&resource=workflow").await;
        for (workflow, reason) in [
            ("onboarding", "starts in status `onboarding`"),
            ("onboarding", "extra"),
            ("offboarding", "`partner_id` is required"),
        ] {
            let event = refusal(&denied, workflow, reason, backend);
            assert_eq!(event["action"], "trigger", "{event}");
            assert_eq!(event["detail"]["engine"], false, "{event}");
        }
    }
}

/// A credential presented after its end (revoked, expired) is refused
/// with an event naming the principal, the credential and why; a token
/// that names no credential leaves none. No token appears in the trail.
#[tokio::test]
async fn credentials_refused_after_their_end_are_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (reader, _) = app
            .principal("reader", &["read_only"], None, json!({}))
            .await;
        let issue = |days: Option<i64>| {
            let body = days.map_or_else(|| json!({}), |d| json!({"expires_in_days": d}));
            let app = &app;
            let reader = reader.clone();
            async move {
                let issued = app
                    .post(
                        &format!("/v1/principals/{reader}/credentials"),
                        &app.admin_token,
                        &body,
                    )
                    .await;
                assert_eq!(issued.status, StatusCode::CREATED, "{:?}", issued.body);
                (
                    issued.body["id"].as_str().unwrap().to_owned(),
                    issued.body["token"].as_str().unwrap().to_owned(),
                )
            }
        };
        let (expiring, expiring_token) = issue(Some(1)).await;
        let (revoked, revoked_token) = issue(None).await;
        let gone = app
            .delete(
                &format!("/v1/principals/{reader}/credentials/{revoked}"),
                &app.admin_token,
            )
            .await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let refused = app.get("/v1/partners", &revoked_token).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{backend:?}");
        app.clock.advance(jiff::SignedDuration::from_hours(25));
        let refused = app.get("/v1/me", &expiring_token).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{backend:?}");
        let unknown = format!("{}{}", &revoked_token[..8], "x".repeat(40));
        assert_eq!(
            app.get("/v1/me", &unknown).await.status,
            StatusCode::UNAUTHORIZED
        );

        let all = events(&app, "").await;
        let refusals: Vec<&Value> = all
            .iter()
            .filter(|e| e["action"] == "authenticate")
            .collect();
        assert_eq!(refusals.len(), 2, "{backend:?}: {refusals:#?}");
        for (credential, why, route) in [
            (&revoked, "token revoked", "/v1/partners"),
            (&expiring, "token expired", "/v1/me"),
        ] {
            let event = refusals
                .iter()
                .find(|e| e["resource_id"] == credential.as_str())
                .unwrap_or_else(|| panic!("{backend:?}: no event for {credential}"));
            assert_eq!(event["principal_id"], reader.as_str(), "{event}");
            assert_eq!(event["resource_type"], "credential", "{event}");
            assert_eq!(event["decision"], "deny", "{event}");
            assert_eq!(event["detail"]["reason"], why, "{event}");
            assert_eq!(event["detail"]["engine"], false, "{event}");
            assert_eq!(event["detail"]["request"]["route"], route, "{event}");
        }
        let text = serde_json::to_string(&all).unwrap();
        for token in [&expiring_token, &revoked_token, &unknown] {
            assert!(
                !text.contains(token.as_str()),
                "{backend:?}: a token in the trail"
            );
        }
    }
}

/// A database initialised before policy versions were kept gets its
/// policy in force as version 1 when opened, and that version its event,
/// on the chain as every version's is.
#[tokio::test]
async fn the_adopted_policy_version_has_its_event() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        sql(&app, "DELETE FROM policy_versions").await;
        let before = events(&app, "").await.len();
        partnerdb_service::policies::adopt_unversioned(
            app.service.db(),
            partnerdb_service::STARTER_POLICY,
        )
        .await
        .unwrap();
        let all = events(&app, "").await;
        assert_eq!(
            all.len(),
            before + 2,
            "{backend:?}: the adoption and the read of the trail"
        );
        let adopted = all
            .iter()
            .find(|e| e["kind"] == "policy" && e["action"] == "adopt")
            .unwrap_or_else(|| panic!("{backend:?}: no adoption event"));
        assert_eq!(adopted["resource_type"], "policy");
        assert_eq!(adopted["detail"]["number"], 1);
        let versions = app.get("/v1/policy/versions", &app.admin_token).await;
        assert_eq!(versions.status, StatusCode::OK, "{:?}", versions.body);
        assert_eq!(
            adopted["resource_id"], versions.body["items"][0]["hash"],
            "{backend:?} {:?}",
            versions.body
        );
        // Opened again: adopted once.
        partnerdb_service::policies::adopt_unversioned(
            app.service.db(),
            partnerdb_service::STARTER_POLICY,
        )
        .await
        .unwrap();
        let adoptions = events(&app, "&action=adopt").await;
        assert_eq!(adoptions.len(), 1, "{backend:?}");
        assert!(verified(&app, Vec::new()).await.is_ok());
    }
}

/// A principal bound to a partner that holds audit:read reads that
/// partner's events only, whatever partner it asks for, and no usage
/// counters (they span every partner).
#[tokio::test]
async fn a_partner_bound_reader_sees_its_partner_only() {
    let grants = r#"  { on = "transaction", can = ["read", "create"], fields = ["general", "financial"], scope = "own_partner" },
]"#;
    let starter = partnerdb_service::STARTER_POLICY;
    assert!(starter.contains(grants));
    let policy = starter.replacen(
        grants,
        &format!(
            "{}\n  {{ on = \"audit\", can = [\"read\"] }},\n]",
            grants.trim_end_matches(']').trim_end()
        ),
        1,
    );
    for backend in BACKENDS {
        let Some(app) = partnerdb_testkit::spawn_with_policy(backend, &policy).await else {
            continue;
        };
        let own = app
            .record("partners", json!({"name": "Own", "region": "emea"}))
            .await;
        let own = own["id"].as_str().unwrap().to_owned();
        let other = app
            .record("partners", json!({"name": "Other", "region": "emea"}))
            .await;
        let other = other["id"].as_str().unwrap().to_owned();
        for id in [&own, &other] {
            let read = app
                .get(&format!("/v1/partners/{id}"), &app.admin_token)
                .await;
            assert_eq!(read.status, StatusCode::OK);
        }
        let (_, client) = app
            .principal("portal", &["api_client"], Some(&own), json!({}))
            .await;
        for query in ["", &format!("?partner={other}"), &format!("?partner={own}")] {
            let page = app.get(&format!("/v1/audit{query}"), &client).await;
            assert_eq!(page.status, StatusCode::OK, "{query}: {:?}", page.body);
            let items = page.body["items"].as_array().unwrap();
            assert!(
                items.iter().all(|e| e["partner_id"] == own.as_str()),
                "{backend:?} {query}: {items:#?}"
            );
            if query.contains(&other) {
                assert!(items.is_empty(), "{backend:?}");
            } else {
                assert!(!items.is_empty(), "{backend:?} {query}");
            }
        }
        // Another partner's client probing this partner's record: the
        // event is this partner's, the prober is not (hidden whole, in
        // the reason too); staff keep their id, not their attributes.
        let (prober_id, prober) = app
            .principal(
                "prober",
                &["api_client"],
                Some(&other),
                json!({"region": "apac"}),
            )
            .await;
        let probe = app.get(&format!("/v1/partners/{own}"), &prober).await;
        assert_eq!(probe.status, StatusCode::NOT_FOUND, "{backend:?}");
        let page = app
            .get("/v1/audit?decision=deny&resource=partner", &client)
            .await;
        let probed = &page.body["items"][0];
        assert_eq!(probed["resource_id"], own.as_str(), "{backend:?}: {probed}");
        let shown = probed.to_string();
        for secret in [prober_id.as_str(), other.as_str(), "apac"] {
            assert!(
                !shown.contains(secret),
                "{backend:?}: `{secret}` in {shown}"
            );
        }
        assert_eq!(probed["principal_id"], "hidden: not readable by you");
        let admin_view = app
            .get("/v1/audit?decision=deny&resource=partner", &app.admin_token)
            .await;
        assert_eq!(
            admin_view.body["items"][0]["principal_id"],
            prober_id.as_str(),
            "{backend:?}"
        );
        let staff = app
            .get(
                "/v1/audit?resource=partner&action=read&decision=allow",
                &client,
            )
            .await;
        let staff = &staff.body["items"][0];
        assert_eq!(
            staff["principal_id"],
            app.admin_id.as_str(),
            "{backend:?}: {staff}"
        );
        let usage = app.get("/v1/usage", &client).await;
        assert_eq!(
            usage.status,
            StatusCode::FORBIDDEN,
            "{backend:?} {:?}",
            usage.body
        );
        // The administrator, bound to none, still reads everything.
        let everything = events(&app, &format!("&partner={other}")).await;
        assert!(!everything.is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn verify_names_every_kind_of_tampering() {
    for backend in BACKENDS {
        for tamper in [
            "edit",
            "separator",
            "bytes",
            "not-text",
            "delete",
            "insert",
            "reorder",
            "far",
            "last",
            "below",
            "lowest",
            "rewrite",
        ] {
            let Some(app) = spawn(backend).await else {
                break;
            };
            for i in 0..6 {
                app.record(
                    "partners",
                    json!({"name": format!("P{i}"), "region": "emea"}),
                )
                .await;
            }
            let (head, _) = partnerdb_store::audit::head(app.service.db())
                .await
                .unwrap();
            assert!(head >= 8);
            assert_eq!(verified(&app, vec![]).await, Ok(head), "{backend:?}");
            let result = match tamper {
                "edit" => {
                    sql(
                        &app,
                        "UPDATE audit_events SET decision = 'deny' WHERE seq = 5",
                    )
                    .await;
                    verified(&app, vec![]).await
                }
                "separator" => {
                    // A field holding U+001F (the separator a packed read
                    // of verify's once joined fields with): caught like
                    // any edit.
                    let chr = match backend {
                        Backend::Sqlite => "char(31)",
                        Backend::Postgres => "chr(31)",
                    };
                    sql(
                        &app,
                        &format!(
                            "UPDATE audit_events SET action = action || {chr} || 'x' WHERE seq = 5"
                        ),
                    )
                    .await;
                    verified(&app, vec![]).await
                }
                "bytes" => {
                    // Text that is not UTF-8 (SQLite stores what it is
                    // given; PostgreSQL refuses it, so there the detail is
                    // emptied instead): caught, not read as something else.
                    let edit = match backend {
                        Backend::Sqlite => {
                            "UPDATE audit_events SET detail = CAST(X'7BFF7D' AS TEXT) WHERE seq = 5"
                        }
                        Backend::Postgres => "UPDATE audit_events SET detail = '{}' WHERE seq = 5",
                    };
                    sql(&app, edit).await;
                    verified(&app, vec![]).await
                }
                "not-text" => {
                    // A field that had no value (event 1 names no
                    // partner) given one that is not text: SQLite stores
                    // bytes that are not UTF-8, which a reader could take
                    // for no value; PostgreSQL refuses them, so there an
                    // empty text instead (which is not no value either).
                    let edit = match backend {
                        Backend::Sqlite => {
                            "UPDATE audit_events SET partner_id = CAST(X'7031FF' AS TEXT) WHERE seq = 1 AND partner_id IS NULL"
                        }
                        Backend::Postgres => {
                            "UPDATE audit_events SET partner_id = '' WHERE seq = 1 AND partner_id IS NULL"
                        }
                    };
                    let first = partnerdb_store::audit::events_after(app.service.db(), 0, 1)
                        .await
                        .unwrap();
                    assert_eq!(first[0].event.partner_id, None, "{backend:?}");
                    sql(&app, edit).await;
                    verified(&app, vec![]).await
                }
                "delete" => {
                    sql(&app, "DELETE FROM audit_events WHERE seq = 4").await;
                    verified(&app, vec![]).await
                }
                "insert" => {
                    // Make room after 3 and insert a forged event there.
                    for seq in (4..=head).rev() {
                        sql(
                            &app,
                            &format!(
                                "UPDATE audit_events SET seq = {} WHERE seq = {seq}",
                                seq + 1
                            ),
                        )
                        .await;
                    }
                    sql(&app, "INSERT INTO audit_events (seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash) \
                               SELECT 4, at, kind, principal_id, 'export', resource_type, resource_id, partner_id, decision, policy_version, detail, hash, hash FROM audit_events WHERE seq = 3").await;
                    verified(&app, vec![]).await
                }
                "reorder" => {
                    sql(&app, "UPDATE audit_events SET seq = -1 WHERE seq = 4").await;
                    sql(&app, "UPDATE audit_events SET seq = 4 WHERE seq = 5").await;
                    sql(&app, "UPDATE audit_events SET seq = 5 WHERE seq = -1").await;
                    verified(&app, vec![]).await
                }
                "far" => {
                    // An event far beyond the head: verify must jump to it
                    // (one query), not walk a trillion empty seqs.
                    sql(&app, &format!("INSERT INTO audit_events (seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash) \
                               SELECT 1000000000000, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, hash, hash FROM audit_events WHERE seq = {head}")).await;
                    verified(&app, vec![]).await
                }
                "last" => {
                    // The same at the last seq there is: verify names it
                    // (no overflow), and the trail's reads still answer
                    // once the lookups have filed it.
                    sql(&app, &format!("INSERT INTO audit_events (seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash) \
                               SELECT 9223372036854775807, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, hash, hash FROM audit_events WHERE seq = {head}")).await;
                    let result = verified(&app, vec![]).await;
                    let db = app.service.db();
                    partnerdb_store::audit::index_pending(db, 4096)
                        .await
                        .unwrap();
                    // The trail's reads, in time and by key, answer
                    // (within seconds, not walking every block below).
                    for filter in [
                        partnerdb_store::audit::AuditFilter {
                            since: Some("2000-01-01T00:00:00.000000Z".into()),
                            ..Default::default()
                        },
                        partnerdb_store::audit::AuditFilter {
                            principal_id: Some(app.admin_id.clone()),
                            ..Default::default()
                        },
                    ] {
                        let listed = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            partnerdb_store::audit::list(db, &filter, None, 5),
                        )
                        .await
                        .expect("answered within 10 s")
                        .unwrap();
                        assert!(!listed.is_empty(), "{backend:?} {filter:?}");
                    }
                    // Nothing follows the last seq: an append is refused
                    // (fail closed), not wrapped.
                    let page = app.get("/v1/audit?limit=5", &app.admin_token).await;
                    assert_eq!(
                        page.status,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{backend:?}: {:?}",
                        page.body
                    );
                    result
                }
                "below" => {
                    // A forged event below the chain's start (seq 0): the
                    // trail lists it, so verify must read it too.
                    sql(&app, "INSERT INTO audit_events (seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash) \
                               SELECT 0, at, kind, principal_id, 'export', resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash FROM audit_events WHERE seq = 1").await;
                    verified(&app, vec![]).await
                }
                "lowest" => {
                    // The same at the lowest seq there can be (a read of
                    // "seq > i64::MIN" would pass over it).
                    sql(&app, "INSERT INTO audit_events (seq, at, kind, principal_id, action, resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash) \
                               SELECT -9223372036854775808, at, kind, principal_id, 'export', resource_type, resource_id, partner_id, decision, policy_version, detail, prev_hash, hash FROM audit_events WHERE seq = 1").await;
                    verified(&app, vec![]).await
                }
                _ => {
                    // A consistent rewrite of the whole chain from event 3:
                    // only a checkpoint can tell.
                    let mut cp_tx = app.service.db().begin().await.unwrap();
                    let (seq, hash) = partnerdb_store::audit::head_in(&mut cp_tx).await.unwrap();
                    let checkpoint = app.key.sign(seq, &hash, "2026-01-01T00:00:00.000000Z");
                    partnerdb_store::audit::insert_checkpoint(&mut cp_tx, &checkpoint)
                        .await
                        .unwrap();
                    cp_tx.commit().await.unwrap();
                    rewrite_from_3(&app).await;
                    verified(&app, vec![]).await
                }
            };
            let broken = result.expect_err(tamper);
            match (tamper, &broken) {
                ("edit" | "separator" | "bytes", Break::Content { seq: 5, .. }) => {}
                ("not-text", Break::Content { seq: 1, .. }) => {}
                (
                    "delete",
                    Break::Sequence {
                        previous: 3,
                        expected: 4,
                        found: 5,
                    },
                ) => {}
                (
                    "insert",
                    Break::Content { seq: 4, .. }
                    | Break::Link { seq: 4, .. }
                    | Break::Link { seq: 5, .. },
                ) => {}
                ("reorder", Break::Link { seq: 4, .. }) => {}
                (
                    "far",
                    Break::Sequence {
                        previous,
                        expected,
                        found: 1_000_000_000_000,
                    },
                ) if *previous == head && *expected == head + 1 => {}
                (
                    "last",
                    Break::Sequence {
                        previous,
                        expected,
                        found: i64::MAX,
                    },
                ) if *previous == head && *expected == head + 1 => {}
                (
                    "below",
                    Break::Sequence {
                        previous: 0,
                        expected: 1,
                        found: 0,
                    },
                ) => {}
                (
                    "lowest",
                    Break::Sequence {
                        previous: 0,
                        expected: 1,
                        found: i64::MIN,
                    },
                ) => {}
                ("rewrite", Break::Checkpoint { .. }) => {}
                _ => panic!("{backend:?} {tamper}: unexpected {broken:?}"),
            }
        }
    }
}

#[tokio::test]
async fn exported_checkpoints_catch_a_truncated_tail() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        for i in 0..4 {
            app.record(
                "partners",
                json!({"name": format!("P{i}"), "region": "emea"}),
            )
            .await;
        }
        // Sign a checkpoint of the head now (as the checkpointer would) and
        // export it.
        let mut tx = app.service.db().begin().await.unwrap();
        let (seq, hash) = partnerdb_store::audit::head_in(&mut tx).await.unwrap();
        let checkpoint = app.key.sign(seq, &hash, "2026-01-01T00:00:00.000000Z");
        partnerdb_store::audit::insert_checkpoint(&mut tx, &checkpoint)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let exported = partnerdb_store::audit::checkpoints(app.service.db())
            .await
            .unwrap();
        assert!(exported.iter().any(|c| c.seq == seq));
        assert_eq!(verified(&app, exported.clone()).await, Ok(seq));
        // Someone removes the last two events and every checkpoint from the
        // database.
        sql(
            &app,
            &format!("DELETE FROM audit_events WHERE seq > {}", seq - 2),
        )
        .await;
        sql(&app, "DELETE FROM audit_checkpoints").await;
        assert_eq!(
            verified(&app, vec![]).await,
            Ok(seq - 2),
            "{backend:?}: the database alone cannot tell"
        );
        assert_eq!(
            verified(&app, exported.clone()).await,
            Err(Break::Truncated { last: seq - 2, seq }),
            "{backend:?}"
        );
        // Without the public key, a file's checkpoints are checked against
        // the key they name, like the stored ones: a forged signature is
        // named as such.
        let mut forged = exported[0].clone();
        forged.seq = 1;
        let keyless = verify(app.service.db(), vec![forged], None, |_| {}).await;
        assert!(
            matches!(
                keyless,
                Err(VerifyError::Broken(Break::Signature { seq: 1 }))
            ),
            "{backend:?}: {keyless:?}"
        );
    }
}

#[tokio::test]
async fn the_checkpointer_signs_the_head() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        // The test server signs every 50 events or 500 ms.
        for i in 0..3 {
            app.record(
                "partners",
                json!({"name": format!("P{i}"), "region": "emea"}),
            )
            .await;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let checkpoints = partnerdb_store::audit::checkpoints(app.service.db())
                .await
                .unwrap();
            if let Some(last) = checkpoints.last() {
                assert!(last.verify(&app.key.public()));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{backend:?}: no checkpoint signed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_checkpointer_signs_nothing_once_what_it_signed_is_altered() {
    use partnerdb_service::audit::{Signed, Tick, checkpoint_tick};
    for backend in BACKENDS {
        for tamper in ["rewrite", "checkpoints", "none"] {
            // No checkpointer of the server's own: this test ticks one.
            let Some(app) =
                spawn_configured(backend, partnerdb_service::STARTER_POLICY, |config| {
                    config.key = None;
                })
                .await
            else {
                break;
            };
            let db = app.service.db();
            for i in 0..4 {
                app.record(
                    "partners",
                    json!({"name": format!("P{i}"), "region": "emea"}),
                )
                .await;
            }
            let mut signed = Signed::load(db, &app.key).await.unwrap();
            // A tick with a checkpoint due by time.
            let tick = async |signed: &mut Signed| {
                checkpoint_tick(db, &app.key, signed, 1_000, true, app.clock.as_ref())
                    .await
                    .unwrap()
            };
            let (head, _) = partnerdb_store::audit::head(db).await.unwrap();
            assert_eq!(tick(&mut signed).await, Tick::Signed(head), "{backend:?}");
            // What a checkpointer started now would know.
            let mut restarted = Signed::load(db, &app.key).await.unwrap();
            match tamper {
                "rewrite" => rewrite_from_3(&app).await,
                "checkpoints" => sql(&app, "DELETE FROM audit_checkpoints").await,
                _ => {}
            }
            app.record("partners", json!({"name": "after", "region": "emea"}))
                .await;
            let (next_head, _) = partnerdb_store::audit::head(db).await.unwrap();
            for (who, state) in [("running", &mut signed), ("restarted", &mut restarted)] {
                let outcome = tick(state).await;
                match (tamper, who, &outcome) {
                    ("none", "running", Tick::Signed(seq)) if *seq == next_head => {}
                    // The running one signed the head just now.
                    ("none", _, Tick::Idle) => {}
                    ("rewrite" | "checkpoints", _, Tick::Refused(why)) => {
                        assert!(why.contains(&format!("event {head}")), "{why}");
                    }
                    _ => panic!("{backend:?} {tamper} {who}: {outcome:?}"),
                }
            }
            let stored = partnerdb_store::audit::checkpoints(db).await.unwrap();
            let expected: Vec<i64> = match tamper {
                "rewrite" => vec![head],
                "checkpoints" => vec![],
                _ => vec![head, next_head],
            };
            assert_eq!(
                stored.iter().map(|c| c.seq).collect::<Vec<_>>(),
                expected,
                "{backend:?} {tamper}"
            );
        }
    }
}

/// Servers sharing a key: each takes the other's latest checkpoint as its
/// own, so that the deletion of one the other signed stops it too.
#[tokio::test]
async fn servers_sharing_a_key_follow_each_others_checkpoints() {
    use partnerdb_service::audit::{Signed, Tick, checkpoint_tick};
    for backend in BACKENDS {
        let Some(app) = spawn_configured(backend, partnerdb_service::STARTER_POLICY, |config| {
            config.key = None;
        })
        .await
        else {
            continue;
        };
        let db = app.service.db();
        let tick = async |signed: &mut Signed| {
            checkpoint_tick(db, &app.key, signed, 1_000, true, app.clock.as_ref())
                .await
                .unwrap()
        };
        let (mut a, mut b) = (Signed::default(), Signed::default());
        app.record("partners", json!({"name": "P1", "region": "emea"}))
            .await;
        let (first, _) = partnerdb_store::audit::head(db).await.unwrap();
        assert_eq!(tick(&mut b).await, Tick::Signed(first), "{backend:?}");
        app.record("partners", json!({"name": "P2", "region": "emea"}))
            .await;
        let (second, _) = partnerdb_store::audit::head(db).await.unwrap();
        assert_eq!(tick(&mut a).await, Tick::Signed(second), "{backend:?}");
        // B sees A's checkpoint (nothing new to sign), then it is deleted.
        assert_eq!(tick(&mut b).await, Tick::Idle, "{backend:?}");
        sql(
            &app,
            &format!("DELETE FROM audit_checkpoints WHERE seq = {second}"),
        )
        .await;
        app.record("partners", json!({"name": "P3", "region": "emea"}))
            .await;
        for (who, signed) in [("a", &mut a), ("b", &mut b)] {
            let outcome = tick(signed).await;
            assert!(
                matches!(&outcome, Tick::Refused(why) if why.contains(&format!("event {second}"))),
                "{backend:?} {who}: {outcome:?}"
            );
        }
    }
}

/// Starts a server whose reads and denials are answered once their event
/// is committed, or on disk.
async fn spawn_answering_at(backend: Backend, durability: ReadDurability) -> Option<TestApp> {
    spawn_configured(backend, partnerdb_service::STARTER_POLICY, |config| {
        config.read_durability = durability;
    })
    .await
}

#[tokio::test]
async fn reads_answered_at_the_commit_have_their_events() {
    for backend in BACKENDS {
        let Some(app) = spawn_answering_at(backend, ReadDurability::Commit).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        // Concurrent reads, so that they share group commits, while the
        // trail is held by a transaction of the test: none is answered
        // until it lets go and their events are committed.
        let mut hold = app.service.db().begin().await.unwrap();
        if backend == Backend::Postgres {
            let mut lock = hold.sql();
            lock.push("LOCK TABLE audit_events IN EXCLUSIVE MODE");
            hold.execute(&lock).await.unwrap();
        }
        let missing = "01900000-0000-7000-8000-000000000000".to_owned();
        let mut reads = tokio::task::JoinSet::new();
        for i in 0..40 {
            let id = if i % 4 == 0 { &missing } else { pid };
            let (client, token) = (reqwest::Client::new(), app.admin_token.clone());
            let url = format!("{}/v1/partners/{id}", app.base);
            reads.spawn(async move { client.get(url).bearer_auth(token).send().await });
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            reads.try_join_next().is_none(),
            "{backend:?}: a read answered before its event was committed"
        );
        hold.commit().await.unwrap();
        let mut statuses = Vec::new();
        while let Some(read) = reads.join_next().await {
            statuses.push(read.unwrap().unwrap().status());
        }
        let found = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let not_found = statuses
            .iter()
            .filter(|s| **s == StatusCode::NOT_FOUND)
            .count();
        assert_eq!((found, not_found), (30, 10), "{backend:?}");
        for (id, answered) in [(pid, 30), (missing.as_str(), 10)] {
            let mut count = app.service.db().sql();
            count
                .push("SELECT COUNT(*) FROM audit_events WHERE action = 'read' AND resource_id = ")
                .bind(id);
            let rows = app.service.db().fetch_all(&count).await.unwrap();
            assert_eq!(
                rows[0].int(0),
                answered,
                "{backend:?}: an answer given without its event"
            );
        }
        assert_eq!(
            verified(&app, Vec::new()).await.map(|_| ()),
            Ok(()),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn an_unwritable_trail_refuses_requests() {
    for (backend, durability) in BACKENDS
        .into_iter()
        .flat_map(|b| [(b, ReadDurability::Disk), (b, ReadDurability::Commit)])
    {
        let Some(app) = spawn_answering_at(backend, durability).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        match backend {
            partnerdb_testkit::Backend::Sqlite => {
                sql(&app, "CREATE TRIGGER audit_stop BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'trail unwritable'); END").await;
            }
            partnerdb_testkit::Backend::Postgres => {
                sql(
                    &app,
                    "ALTER TABLE audit_events ADD CONSTRAINT audit_stop CHECK (seq < 0) NOT VALID",
                )
                .await;
            }
        }
        let read = app
            .get(&format!("/v1/partners/{pid}"), &app.admin_token)
            .await;
        assert_eq!(
            read.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend:?} {:?}",
            read.body
        );
        assert_eq!(read.body["code"], "audit_unavailable");
        assert!(read.body.get("name").is_none(), "no data served unrecorded");
        // Lists too, the top-level one and a partner's nested one (their
        // pages are serialized while the event commits, and not sent).
        for list in [
            "/v1/partners".to_owned(),
            format!("/v1/partners/{pid}/contacts"),
        ] {
            let listed = app.get(&list, &app.admin_token).await;
            assert_eq!(
                listed.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{backend:?} {list} {:?}",
                listed.body
            );
            assert_eq!(listed.body["code"], "audit_unavailable", "{list}");
            assert!(
                listed.body.get("items").is_none(),
                "{list}: no data served unrecorded"
            );
        }
        let created = app
            .post(
                "/v1/partners",
                &app.admin_token,
                &json!({"name": "B", "region": "emea"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::SERVICE_UNAVAILABLE);
        let updated = app
            .patch(
                &format!("/v1/partners/{pid}"),
                &app.admin_token,
                &json!({"name": "A2"}),
            )
            .await;
        assert_eq!(updated.status, StatusCode::SERVICE_UNAVAILABLE);
        // A refusal the service never sees is not answered unrecorded
        // either.
        let bad_json = reqwest::Client::new()
            .patch(format!("{}/v1/partners/{pid}", app.base))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(bad_json.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bad_id = app.get("/v1/partners/no%20id", &app.admin_token).await;
        assert_eq!(
            bad_id.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            bad_id.body
        );
        // Nothing changed.
        match backend {
            partnerdb_testkit::Backend::Sqlite => sql(&app, "DROP TRIGGER audit_stop").await,
            partnerdb_testkit::Backend::Postgres => {
                sql(&app, "ALTER TABLE audit_events DROP CONSTRAINT audit_stop").await
            }
        }
        let mut sql_read = app.service.db().sql();
        sql_read.push("SELECT COUNT(*), MAX(name) FROM partners");
        let row = app
            .service
            .db()
            .fetch_all(&sql_read)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (row.int(0), row.text(1)),
            (1, "A".to_owned()),
            "{backend:?}"
        );
        assert_eq!(
            app.get(&format!("/v1/partners/{pid}"), &app.admin_token)
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn reading_the_trail_masks_values_and_needs_audit_read() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let partner = app
            .record(
                "partners",
                json!({"name": "A", "region": "emea", "credit_limit": 100}),
            )
            .await;
        app.patch(
            &format!("/v1/partners/{}", partner["id"].as_str().unwrap()),
            &app.admin_token,
            &json!({"credit_limit": 250}),
        )
        .await;
        let (_, auditor) = app.principal("aud", &["auditor"], None, json!({})).await;
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({}))
            .await;
        assert_eq!(
            app.get("/v1/audit", &pm).await.status,
            StatusCode::FORBIDDEN
        );
        let page = app
            .get(
                "/v1/audit?resource=partner&action=update&decision=allow",
                &auditor,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let change = &page.body["items"][0]["detail"]["changes"][0];
        assert_eq!(change["field"], "credit_limit");
        assert!(
            change.get("after").is_none(),
            "{backend:?}: the auditor may not read partner financials"
        );
        let admin_view = app
            .get(
                "/v1/audit?resource=partner&action=update&decision=allow",
                &app.admin_token,
            )
            .await;
        assert_eq!(
            admin_view.body["items"][0]["detail"]["changes"][0]["after"],
            250
        );
        // The record's attributes in the decision input are its general
        // values: shown to who may read them, names only to the others.
        let attrs = |page: &Value| page["items"][0]["detail"]["input"]["resource"]["attrs"].clone();
        assert_eq!(attrs(&admin_view.body)["name"], "A", "{backend:?}");
        assert_eq!(attrs(&admin_view.body)["region"], "emea", "{backend:?}");
        let hidden = attrs(&page.body);
        assert_eq!(hidden["name"], "hidden: not readable by you", "{backend:?}");
        assert_eq!(
            hidden["region"], "hidden: not readable by you",
            "{backend:?}"
        );
        assert!(
            !page.body.to_string().contains("\"emea\""),
            "{backend:?}: no general value reaches a reader who may not read partners: {}",
            page.body
        );
        // A deny whose reason quotes the record's values (a condition not
        // met: the manager has no region) hides them alike.
        let unseen = app
            .get(
                &format!("/v1/partners/{}", partner["id"].as_str().unwrap()),
                &pm,
            )
            .await;
        assert_eq!(unseen.status, StatusCode::NOT_FOUND, "{backend:?}");
        let query = "/v1/audit?resource=partner&action=read&decision=deny&limit=1";
        let reason = |page: &Value| {
            page["items"][0]["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let admin_reason = reason(&app.get(query, &app.admin_token).await.body);
        assert!(
            admin_reason.contains("(record has emea, principal has missing)"),
            "{backend:?}: {admin_reason}"
        );
        let auditor_reason = reason(&app.get(query, &auditor).await.body);
        assert!(
            auditor_reason
                .contains("(record has hidden: not readable by you, principal has missing)")
                && !auditor_reason.contains("emea"),
            "{backend:?}: {auditor_reason}"
        );
        // Filters, and cursors bound to them.
        let creates = app
            .get(
                "/v1/audit?resource=partner&action=create&limit=1",
                &app.admin_token,
            )
            .await;
        assert_eq!(creates.body["items"][0]["action"], "create");
        let cursor = creates.body["next_cursor"].as_str().map(str::to_owned);
        if let Some(cursor) = cursor {
            let other = app
                .get(
                    &format!("/v1/audit?resource=contact&limit=1&cursor={cursor}"),
                    &app.admin_token,
                )
                .await;
            assert_eq!(other.body["code"], "invalid_cursor");
            // A value holding `&` is one filter, not two: the cursor of
            // `action=create&limit=1` split otherwise is refused.
            let smuggled = app
                .get(
                    &format!(
                        "/v1/audit?resource=partner&action=create%26limit%3D1&cursor={cursor}"
                    ),
                    &app.admin_token,
                )
                .await;
            assert_eq!(smuggled.body["code"], "invalid_cursor", "{backend:?}");
        }
        // A filter given twice is refused, not read as one of its values.
        let twice = app
            .get("/v1/audit?principal=a&principal=b", &app.admin_token)
            .await;
        assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{backend:?}");
        assert_eq!(twice.body["code"], "duplicate_parameter", "{backend:?}");
        // A list's filter values are shown in the classes the reader may
        // read on every record of the type: the finance user's search on
        // bank account and credit limit is named, not shown, to the
        // auditor; the admin sees it.
        let (_, finance) = app.principal("fin", &["finance"], None, json!({})).await;
        let search = app
            .get(
                "/v1/partners?bank_account=DE89%20SEARCHED&credit_limit.gte=150&region=emea",
                &finance,
            )
            .await;
        assert_eq!(search.status, StatusCode::OK, "{:?}", search.body);
        let filters = |page: &Value| page["items"][0]["detail"]["list"]["filters"].clone();
        let query = "/v1/audit?resource=partner&action=read&decision=allow&limit=1";
        let admin_list = app.get(query, &app.admin_token).await;
        assert_eq!(
            filters(&admin_list.body),
            json!([
                "bank_account=DE89 SEARCHED",
                "credit_limit.gte=150",
                "region=emea"
            ]),
            "{backend:?}"
        );
        let auditor_list = app.get(query, &auditor).await;
        assert_eq!(
            filters(&auditor_list.body),
            json!([
                "bank_account=(hidden: not readable by you)",
                "credit_limit.gte=(hidden: not readable by you)",
                "region=(hidden: not readable by you)"
            ]),
            "{backend:?}"
        );
        assert!(
            !auditor_list.body.to_string().contains("SEARCHED"),
            "{backend:?}"
        );
        // Usage counters.
        let usage = app.get("/v1/usage?kind=grant", &auditor).await;
        assert!(
            usage.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["name"] == "admin#0" && u["allows"].as_i64().unwrap() > 0),
            "{backend:?}"
        );
        let me = app.get("/v1/me", &auditor).await;
        assert!(me.body["usage"]["allows"].as_i64().unwrap() >= 1);
        let _ = app
            .request(
                Method::GET,
                "/v1/usage?kind=nothing",
                Some(&auditor),
                None,
                &[],
            )
            .await;
    }
}

/// The trail's lookups (by principal, partner, resource) read the lookup
/// tables up to the indexed seq and scan the events after it: paged
/// through with cursors, every filter gives exactly the events a plain
/// filter over the whole trail gives, before any indexing, with the
/// indexer part of the way, and caught up. Seqs are spaced 997 apart so
/// that the lookups cross the tables' blocks of 65,536 seqs (a chain
/// loaded as is: lookups do not verify links).
#[tokio::test]
async fn lookups_meet_the_unindexed_tail_exactly() {
    use partnerdb_audit::{Event, StoredEvent};
    use partnerdb_store::audit::{self as store, AuditFilter};
    for backend in BACKENDS {
        let Some(test_db) = partnerdb_testkit::database(backend).await else {
            continue;
        };
        let db = &test_db.db;
        let pick = |i: usize, n: usize| format!("id-{}", (i * 7 + i / 3) % n);
        let seq = |i: usize| 1 + 997 * i as i64;
        let event = |i: usize| Event {
            seq: seq(i),
            // Times out of seq order (as concurrent requests stamp
            // them), so that a time span's earliest and latest matter.
            at: {
                let t = (i * 37) % 400;
                format!("2026-12-01T10:{:02}:{:02}Z", t / 60, t % 60)
            },
            kind: "decision".into(),
            principal_id: (!i.is_multiple_of(11)).then(|| format!("principal-{}", pick(i, 5))),
            action: ["read", "update", "list"][i % 3].into(),
            resource_type: ["partner", "contract"][i % 2].into(),
            resource_id: (!i.is_multiple_of(13)).then(|| pick(i, 4)),
            partner_id: (!i.is_multiple_of(5)).then(|| format!("partner-{}", pick(i + 1, 7))),
            decision: if i.is_multiple_of(4) { "deny" } else { "allow" }.into(),
            policy_version: "v".into(),
            detail: "{}".into(),
        };
        let append = |from: usize, to: usize| async move {
            for chunk in (from..to).collect::<Vec<_>>().chunks(37) {
                let mut tx = db.begin().await.unwrap();
                let events: Vec<_> = chunk
                    .iter()
                    .map(|&i| StoredEvent {
                        event: event(i),
                        prev_hash: String::new(),
                        hash: String::new(),
                    })
                    .collect();
                store::insert_stored(&mut tx, &events).await.unwrap();
                tx.commit().await.unwrap();
            }
        };
        let filters = || {
            let f = AuditFilter::default;
            vec![
                AuditFilter {
                    principal_id: Some("principal-id-2".into()),
                    ..f()
                },
                AuditFilter {
                    partner_id: Some("partner-id-3".into()),
                    ..f()
                },
                AuditFilter {
                    resource_type: Some("contract".into()),
                    resource_id: Some("id-1".into()),
                    ..f()
                },
                AuditFilter {
                    principal_id: Some("principal-id-0".into()),
                    decision: Some("deny".into()),
                    ..f()
                },
                AuditFilter {
                    partner_id: Some("partner-id-6".into()),
                    action: Some("update".into()),
                    ..f()
                },
                AuditFilter {
                    principal_id: Some("principal-id-4".into()),
                    partner_id: Some("partner-id-1".into()),
                    ..f()
                },
                AuditFilter {
                    principal_id: Some("principal-id-1".into()),
                    since: Some("2026-12-01T10:01:00Z".into()),
                    until: Some("2026-12-01T10:03:30Z".into()),
                    ..f()
                },
                AuditFilter {
                    resource_type: Some("partner".into()),
                    ..f()
                },
                AuditFilter {
                    since: Some("2026-12-01T10:05:00Z".into()),
                    ..f()
                },
                AuditFilter {
                    until: Some("2026-12-01T10:00:40Z".into()),
                    ..f()
                },
                AuditFilter {
                    since: Some("2026-12-01T10:02:10Z".into()),
                    until: Some("2026-12-01T10:02:50Z".into()),
                    ..f()
                },
                AuditFilter {
                    since: Some("2026-12-01T10:03:00Z".into()),
                    until: Some("2026-12-01T10:04:00Z".into()),
                    action: Some("read".into()),
                    ..f()
                },
                AuditFilter {
                    partner_id: Some("partner-id-3".into()),
                    since: Some("2026-12-01T10:04:00Z".into()),
                    ..f()
                },
                AuditFilter {
                    since: Some("2026-12-01T11:00:00Z".into()),
                    ..f()
                },
                AuditFilter {
                    resource_id: Some("id-3".into()),
                    ..f()
                },
                AuditFilter {
                    principal_id: Some("nobody".into()),
                    ..f()
                },
                f(),
            ]
        };
        let check = |stage: &'static str| async move {
            let all = store::events_after(db, 0, 100_000).await.unwrap();
            // Besides the fixed filters, the keys of the events on either
            // side of the indexed seq.
            let through = store::indexed_through(db).await.unwrap();
            let mut filters = filters();
            for e in all.iter().map(|s| &s.event) {
                if e.seq == through || (e.seq > through && e.seq <= through + 997) {
                    let f = AuditFilter::default;
                    filters.push(AuditFilter {
                        principal_id: e.principal_id.clone(),
                        ..f()
                    });
                    filters.push(AuditFilter {
                        partner_id: e.partner_id.clone(),
                        ..f()
                    });
                    filters.push(AuditFilter {
                        resource_type: Some(e.resource_type.clone()),
                        resource_id: e.resource_id.clone(),
                        ..f()
                    });
                    filters.push(AuditFilter {
                        since: Some(e.at.clone()),
                        ..f()
                    });
                    filters.push(AuditFilter {
                        until: Some(e.at.clone()),
                        ..f()
                    });
                }
            }
            for filter in filters {
                let eq =
                    |want: &Option<String>, got: &Option<String>| want.is_none() || want == got;
                let expected: Vec<i64> = all
                    .iter()
                    .rev()
                    .map(|s| &s.event)
                    .filter(|e| {
                        eq(&filter.principal_id, &e.principal_id)
                            && eq(&filter.partner_id, &e.partner_id)
                            && eq(&filter.resource_type, &Some(e.resource_type.clone()))
                            && eq(&filter.resource_id, &e.resource_id)
                            && eq(&filter.action, &Some(e.action.clone()))
                            && eq(&filter.decision, &Some(e.decision.clone()))
                            && filter.since.as_ref().is_none_or(|s| e.at >= *s)
                            && filter.until.as_ref().is_none_or(|u| e.at < *u)
                    })
                    .map(|e| e.seq)
                    .collect();
                for limit in [1, 9] {
                    let mut got = Vec::new();
                    let mut before = None;
                    loop {
                        let page = store::list(db, &filter, before, limit).await.unwrap();
                        got.extend(page.iter().map(|s| s.event.seq));
                        match page.last() {
                            Some(last) if page.len() == limit => before = Some(last.event.seq),
                            _ => break,
                        }
                    }
                    assert_eq!(
                        got, expected,
                        "{backend:?}, {stage}, pages of {limit}: {filter:?}"
                    );
                }
            }
            // The first event at or after a time (where a plan's replay
            // starts), through the same spans.
            let mut times: Vec<String> = all.iter().map(|s| s.event.at.clone()).collect();
            times.extend(["2026-12-01T09:00:00Z".into(), "2026-12-01T11:00:00Z".into()]);
            for at in times {
                let expected = all
                    .iter()
                    .map(|s| &s.event)
                    .filter(|e| e.at >= at)
                    .map(|e| e.seq)
                    .min();
                assert_eq!(
                    store::first_seq_since(db, &at).await.unwrap(),
                    expected,
                    "{backend:?}, {stage}: first event since {at}"
                );
            }
        };
        append(0, 300).await;
        assert_eq!(store::indexed_through(db).await.unwrap(), 0);
        check("nothing indexed").await;
        assert_eq!(store::index_pending(db, 120).await.unwrap(), 120);
        append(300, 400).await;
        assert_eq!(store::indexed_through(db).await.unwrap(), seq(119));
        check("indexed part of the way").await;
        while store::index_pending(db, 64).await.unwrap() > 0 {}
        assert_eq!(store::indexed_through(db).await.unwrap(), seq(399));
        check("indexed to the head").await;
        // A lost watermark row: lookups scan everything, and the indexer
        // files the trail again (keys it has are kept) up to the head
        // rather than the same chunk forever.
        let mut tx = db.begin().await.unwrap();
        let mut sql = tx.sql();
        sql.push("DELETE FROM audit_indexed");
        tx.execute(&sql).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store::indexed_through(db).await.unwrap(), 0);
        check("watermark lost").await;
        let mut rounds = 0;
        while store::index_pending(db, 64).await.unwrap() > 0 {
            rounds += 1;
            assert!(rounds < 10, "the indexer does not move on");
        }
        assert_eq!(store::indexed_through(db).await.unwrap(), seq(399));
        check("indexed again").await;
    }
}

/// A read event for the writer test, its action given.
fn read_event(action: &str) -> partnerdb_store::audit::NewEvent {
    partnerdb_store::audit::NewEvent {
        at: "2026-12-08T00:00:00.000000Z".to_owned(),
        kind: "decision".to_owned(),
        principal_id: Some("p".to_owned()),
        action: action.to_owned(),
        resource_type: "partner".to_owned(),
        resource_id: Some("r".to_owned()),
        partner_id: Some("r".to_owned()),
        decision: "allow".to_owned(),
        policy_version: "1".to_owned(),
        detail: "{}".to_owned(),
        matched: vec!["admin#0".to_owned()],
    }
}

/// A batch that cannot be written fails the events queued with it (one
/// wait for the queue, not one an event), commits none of them, and the
/// batched writer goes on with the next batch. (On SQLite the first event
/// fails as it is appended, the others still queued; on PostgreSQL the
/// batch is gathered first and fails at its inserts.)
#[tokio::test]
async fn a_failed_batch_fails_what_is_queued_with_it_and_the_writer_goes_on() {
    for backend in BACKENDS {
        let Some(test) = partnerdb_testkit::database(backend).await else {
            continue;
        };
        let db = &test.db;
        let refuse = match backend {
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON audit_events WHEN NEW.action = 'boom' \
                 BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
            }
            Backend::Postgres => {
                "ALTER TABLE audit_events ADD CONSTRAINT boom_refused CHECK (action <> 'boom') NOT VALID"
            }
        };
        partnerdb_testkit::execute(db, refuse).await.unwrap();
        let writer =
            partnerdb_service::audit::AuditWriter::start(db.clone(), 4096, ReadDurability::Commit);
        // This runtime has one thread: the writer runs only once this test
        // waits, so that all four are queued when it takes the first.
        let failing = writer.submit(read_event("boom")).await.unwrap();
        let mut queued = Vec::new();
        for _ in 0..3 {
            queued.push(writer.submit(read_event("read")).await.unwrap());
        }
        for (i, pending) in std::iter::once(failing).chain(queued).enumerate() {
            match pending.committed().await {
                Err(partnerdb_service::ServiceError::AuditUnavailable(why)) => {
                    assert!(why.contains("boom"), "{backend:?} event {i}: {why}");
                }
                other => panic!("{backend:?} event {i}: {other:?}"),
            }
        }
        writer.write(read_event("read")).await.unwrap();
        let mut count = db.sql();
        count.push("SELECT action, COUNT(*) FROM audit_events GROUP BY action");
        let rows: Vec<(String, i64)> = db
            .fetch_all(&count)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.text(0), row.int(1)))
            .collect();
        assert_eq!(rows, vec![("read".to_owned(), 1)], "{backend:?}");
        let report = verify(db, Vec::new(), None, |_| {}).await.unwrap();
        assert_eq!(report.events, 1, "{backend:?}");
    }
}
