//! Partner onboarding and offboarding on both backends: each step a
//! permission, the approval by another principal, the api client's token
//! working, and offboarding revoking it and archiving the partner.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{BACKENDS, audit_actions, spawn};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn onboarding_then_offboarding() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm_id, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        // An analyst may not trigger workflows.
        let (_, analyst) = app.principal("an", &["analyst"], None, json!({})).await;
        let refused = app
            .post(
                "/v1/workflows/onboarding",
                &analyst,
                &json!({"partner": {"name": "Nope", "region": "emea"}}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{backend:?}");

        let started = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Globex", "region": "emea"}, "contract": {"value": 50000, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(
            started.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            started.body
        );
        let run = &started.body["workflow"];
        assert_eq!(run["status"], "awaiting_approval");
        assert_eq!(started.body["partner"]["status"], "onboarding");
        assert_eq!(started.body["partner"]["owner"], pm_id.as_str());
        assert_eq!(started.body["contract"]["status"], "draft");
        assert!(
            started.body["contract"]["terms"]
                .as_str()
                .unwrap()
                .starts_with("Standard partner agreement")
        );
        let id = run["id"].as_str().unwrap().to_owned();
        let partner = started.body["partner"]["id"].as_str().unwrap().to_owned();

        // The manager cannot approve (no principal:create; and it triggered
        // it); an administrator who triggered one cannot approve its own.
        let own = app
            .post(&format!("/v1/workflows/{id}/approve"), &pm, &json!({}))
            .await;
        assert_eq!(own.status, StatusCode::FORBIDDEN);
        assert_eq!(own.body["code"], "self_approval");
        // A reader of the partner who may not make principals is refused
        // before the run is touched (no claim, nothing to give back).
        let (reader_id, reader) = app.principal("ro", &["read_only"], None, json!({})).await;
        let early = app
            .post(&format!("/v1/workflows/{id}/approve"), &reader, &json!({}))
            .await;
        assert_eq!(
            early.status,
            StatusCode::FORBIDDEN,
            "{backend:?} {:?}",
            early.body
        );
        let untouched = app.get(&format!("/v1/workflows/{id}"), &pm).await;
        assert_eq!(untouched.body["status"], "awaiting_approval", "{backend:?}");
        let denied = app
            .get(
                &format!("/v1/audit?principal={reader_id}&decision=deny"),
                &app.admin_token,
            )
            .await;
        let denied: Vec<(&str, &str)> = denied.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["resource_type"].as_str().unwrap(),
                    e["action"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(denied, [("principal", "create")], "{backend:?}");
        let reader_steps = app
            .get(
                &format!("/v1/audit?principal={reader_id}&resource=workflow"),
                &app.admin_token,
            )
            .await;
        assert_eq!(
            reader_steps.body["items"],
            json!([]),
            "{backend:?}: no claim, no hand-back"
        );
        let approved = app
            .post(
                &format!("/v1/workflows/{id}/approve"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(
            approved.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            approved.body
        );
        assert_eq!(approved.body["workflow"]["status"], "completed");
        let token = approved.body["api_client"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let again = app
            .post(
                &format!("/v1/workflows/{id}/approve"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(again.body["code"], "workflow_closed");

        // The api client sees its own partner, and no other.
        let me = app.get(&format!("/v1/partners/{partner}"), &token).await;
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        let other = app
            .record("partners", json!({"name": "Other", "region": "emea"}))
            .await;
        let hidden = app
            .get(
                &format!("/v1/partners/{}", other["id"].as_str().unwrap()),
                &token,
            )
            .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);

        // The manager may archive its partner but not revoke credentials:
        // refused before anything changes.
        let refused = app
            .post(
                "/v1/workflows/offboarding",
                &pm,
                &json!({"partner_id": partner}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{backend:?} {:?}",
            refused.body
        );
        let still = app.get(&format!("/v1/partners/{partner}"), &token).await;
        assert_eq!(
            still.status,
            StatusCode::OK,
            "{backend:?}: nothing was revoked"
        );
        // Offboarding: the token stops working, the partner is archived.
        let off = app
            .post(
                "/v1/workflows/offboarding",
                &app.admin_token,
                &json!({"partner_id": partner}),
            )
            .await;
        assert_eq!(
            off.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            off.body
        );
        assert_eq!(off.body["credentials_revoked"], 1);
        assert_eq!(off.body["partner"]["status"], "archived");
        let gone = app.get(&format!("/v1/partners/{partner}"), &token).await;
        assert_eq!(gone.status, StatusCode::UNAUTHORIZED, "{backend:?}");
        // Each step is in the trail.
        let trail = app
            .get(
                &format!("/v1/audit?resource=workflow&resource_id={id}"),
                &app.admin_token,
            )
            .await;
        let actions = audit_actions(&trail.body);
        assert!(
            actions.iter().any(|a| a == "trigger") && actions.iter().any(|a| a == "approve"),
            "{actions:?}"
        );
        // The run's own changes on the way: claimed, its API client
        // remembered (each with its event), then completed.
        let steps: Vec<&str> = trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["detail"]["step"].as_str())
            .collect();
        assert_eq!(
            steps,
            ["api_client_created", "claimed"],
            "{backend:?}: newest first"
        );
        let seen = app.get(&format!("/v1/workflows/{id}"), &pm).await;
        assert_eq!(
            seen.body["api_client_id"],
            approved.body["api_client"]["id"]
        );
    }
}

#[tokio::test]
async fn concurrent_approvals_of_an_onboarding_issue_one_client() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let mut admins = Vec::new();
        for i in 0..3 {
            admins.push(
                app.principal(&format!("admin{i}"), &["admin"], None, json!({}))
                    .await
                    .1,
            );
        }
        let started = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Initech", "region": "emea"}}),
            )
            .await;
        let id = started.body["workflow"]["id"].as_str().unwrap().to_owned();
        let partner = started.body["partner"]["id"].as_str().unwrap().to_owned();
        let app = std::sync::Arc::new(app);
        let tasks: Vec<_> = admins
            .into_iter()
            .map(|token| {
                let (app, id) = (app.clone(), id.clone());
                tokio::spawn(async move {
                    app.post(&format!("/v1/workflows/{id}/approve"), &token, &json!({}))
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            let answer = task.await.unwrap();
            if answer.status == StatusCode::OK {
                won += 1;
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::CONFLICT,
                    "{backend:?} {:?}",
                    answer.body
                );
            }
        }
        assert_eq!(won, 1, "{backend:?}");
        // One api client, with one credential.
        let principals = app.get("/v1/principals?limit=500", &app.admin_token).await;
        let clients: Vec<&serde_json::Value> = principals.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["partner_id"] == partner.as_str())
            .collect();
        assert_eq!(clients.len(), 1, "{backend:?}");
        let credentials = app
            .get(
                &format!(
                    "/v1/principals/{}/credentials",
                    clients[0]["id"].as_str().unwrap()
                ),
                &app.admin_token,
            )
            .await;
        assert_eq!(credentials.body["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_stuck_approval_is_taken_over_after_its_lease() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let (_, second) = app.principal("second", &["admin"], None, json!({})).await;
        let started = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Hooli", "region": "emea"}}),
            )
            .await;
        let id = started.body["workflow"]["id"].as_str().unwrap().to_owned();
        // An approval that stopped half-way (a timeout, a restart) left
        // its claim behind.
        let mut tx = app.service.db().begin().await.unwrap();
        let claimed = partnerdb_store::workflows::claim(
            &mut tx,
            &id,
            &app.service.now_text(),
            &app.service.time_text(-120),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(claimed);
        let held = app
            .post(&format!("/v1/workflows/{id}/approve"), &second, &json!({}))
            .await;
        assert_eq!(held.body["code"], "workflow_closed", "{backend:?}");
        app.clock.advance(jiff::SignedDuration::from_secs(121));
        let taken_over = app
            .post(&format!("/v1/workflows/{id}/approve"), &second, &json!({}))
            .await;
        assert_eq!(
            taken_over.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            taken_over.body
        );
    }
}

/// An approval refused by a step after the run was claimed gives the run
/// back, to be approved again, and both changes of the run have their
/// events: a policy without the `api_client` role refuses the partner's
/// API client (an unknown role) once the run is claimed.
#[tokio::test]
async fn an_approval_refused_after_the_claim_gives_the_run_back() {
    let starter = partnerdb_service::STARTER_POLICY;
    let start = starter.find("[roles.api_client]").unwrap();
    let end = start + starter[start + 1..].find("\n[roles.").unwrap() + 1;
    let policy = format!("{}{}", &starter[..start], &starter[end..]);
    for backend in BACKENDS {
        let Some(app) = partnerdb_testkit::spawn_with_policy(backend, &policy).await else {
            continue;
        };
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let started = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Initech", "region": "emea"}}),
            )
            .await;
        assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
        let id = started.body["workflow"]["id"].as_str().unwrap().to_owned();
        let refused = app
            .post(
                &format!("/v1/workflows/{id}/approve"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert!(
            refused.status.is_client_error(),
            "{backend:?} {:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "unknown_role", "{backend:?}");
        let run = app.get(&format!("/v1/workflows/{id}"), &pm).await;
        assert_eq!(run.body["status"], "awaiting_approval", "{backend:?}");
        let trail = app
            .get(
                &format!("/v1/audit?resource=workflow&resource_id={id}"),
                &app.admin_token,
            )
            .await;
        let steps: Vec<(&str, &str, &str)> = trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["step"].is_string())
            .map(|e| {
                (
                    e["detail"]["step"].as_str().unwrap(),
                    e["detail"]["status"]["before"].as_str().unwrap(),
                    e["detail"]["status"]["after"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("released", "approving", "awaiting_approval"),
                ("claimed", "awaiting_approval", "approving"),
            ],
            "{backend:?}: newest first"
        );
    }
}

/// A trigger that stops part way (the contract refused after the partner
/// was made) leaves its trigger in the trail: allowed, incomplete, what
/// was done and why it stopped.
#[tokio::test]
async fn a_trigger_stopped_part_way_is_recorded() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let refused = app
            .post(
                "/v1/workflows/onboarding",
                &pm,
                &json!({"partner": {"name": "Half", "region": "emea"}, "contract": {"value": "abc"}}),
            )
            .await;
        assert!(
            refused.status.is_client_error(),
            "{backend:?} {:?}",
            refused.body
        );
        let trail = app
            .get(
                "/v1/audit?resource=workflow&action=trigger&decision=allow",
                &app.admin_token,
            )
            .await;
        let stopped = trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["detail"]["incomplete"] == true)
            .unwrap_or_else(|| panic!("{backend:?}: {:?}", trail.body));
        let partner = stopped["detail"]["partner_created"].as_str().unwrap();
        assert_eq!(stopped["partner_id"], partner, "{backend:?}");
        assert_eq!(
            stopped["detail"]["stopped"]["code"], refused.body["code"],
            "{backend:?}: {stopped}"
        );
    }
}
