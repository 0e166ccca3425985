//! Contract change requests (maker-checker) on both backends: propose,
//! diff, approve (applied and recorded atomically), reject with a reason,
//! withdraw, stale requests, and every way for a proposer to approve their
//! own change refused; concurrent approvals of one request (exactly one
//! wins).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{BACKENDS, TestApp, spawn};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A partner owned by a new partner manager, one contract of it, and a
/// legal reviewer: `(pm_token, legal_token, contract_id)`.
async fn setup(app: &TestApp) -> (String, String, String) {
    let (pm, pm_token) = app
        .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
        .await;
    let (_, legal_token) = app.principal("legal", &["legal"], None, json!({})).await;
    let partner = app
        .record(
            "partners",
            json!({"name": "Acme", "region": "emea", "owner": pm}),
        )
        .await;
    let contract = app
        .record(
            "contracts",
            json!({"partner_id": partner["id"], "title": "Supply", "value": 100000, "currency": "EUR", "terms": "net 30"}),
        )
        .await;
    (
        pm_token,
        legal_token,
        contract["id"].as_str().unwrap().to_owned(),
    )
}

async fn propose(app: &TestApp, token: &str, contract: &str, body: Value) -> Value {
    let proposed = app
        .post(
            &format!("/v1/contracts/{contract}/change-requests"),
            token,
            &body,
        )
        .await;
    assert_eq!(proposed.status, StatusCode::CREATED, "{:?}", proposed.body);
    proposed.body
}

fn diff_field<'a>(request: &'a Value, field: &str) -> Option<&'a Value> {
    request["diff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == field)
}

#[tokio::test]
async fn a_proposal_waits_for_approval_by_another_principal() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, legal, contract) = setup(&app).await;
        let request = propose(
            &app,
            &pm,
            &contract,
            json!({"value": 250000, "terms": "net 60"}),
        )
        .await;
        let id = request["id"].as_str().unwrap().to_owned();
        assert_eq!(request["status"], "pending");
        assert_eq!(request["stale"], false);
        let value = diff_field(&request, "value").unwrap();
        assert_eq!(value["current"], 100000);
        assert_eq!(value["proposed"], 250000);
        assert_eq!(value["class"], "financial");

        // The contract keeps its terms until approval.
        let before = app.get(&format!("/v1/contracts/{contract}"), &pm).await;
        assert_eq!(before.body["value"], 100000, "{backend:?}");

        // Finance may read the contract's general and financial fields,
        // not its legal ones: the diff shows only what it may read.
        let (_, finance) = app.principal("fin", &["finance"], None, json!({})).await;
        let seen = app
            .get(&format!("/v1/change-requests/{id}"), &finance)
            .await;
        assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
        assert!(diff_field(&seen.body, "value").is_some());
        assert!(diff_field(&seen.body, "terms").is_none(), "{:?}", seen.body);
        // Finance cannot approve.
        let refused = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &finance,
                &json!({}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);

        // Another manager cannot see it at all.
        let (_, other) = app
            .principal("pm2", &["partner_manager"], None, json!({"region": "apac"}))
            .await;
        let hidden = app.get(&format!("/v1/change-requests/{id}"), &other).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        let listed = app.get("/v1/change-requests", &other).await;
        assert_eq!(listed.body["items"], json!([]));
        let listed = app.get("/v1/change-requests?status=pending", &legal).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

        let approved = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(
            approved.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            approved.body
        );
        assert_eq!(approved.body["status"], "approved");
        assert_eq!(approved.body["contract"]["value"], 250000);
        let after = app.get(&format!("/v1/contracts/{contract}"), &pm).await;
        assert_eq!(after.body["value"], 250000);
        assert_eq!(after.body["terms"], "net 60");

        // Recorded with the change, in the trail.
        let trail = app
            .get(
                &format!("/v1/audit?resource=contract&resource_id={contract}&action=approve"),
                &app.admin_token,
            )
            .await;
        let event = &trail.body["items"][0];
        assert_eq!(event["kind"], "change", "{:?}", trail.body);
        assert_eq!(event["decision"], "allow");
        assert_eq!(event["detail"]["change_request"], id.as_str());
        let proposed = app
            .get(
                &format!("/v1/audit?resource=contract&resource_id={contract}&action=propose"),
                &app.admin_token,
            )
            .await;
        assert_eq!(proposed.body["items"].as_array().unwrap().len(), 1);

        // Closed: no second decision.
        let again = app
            .post(
                &format!("/v1/change-requests/{id}/reject"),
                &legal,
                &json!({"reason": "late"}),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(again.body["code"], "change_request_closed");
        // That refusal is in the trail too.
        let refusals = app
            .get(
                &format!("/v1/audit?resource=change_request&resource_id={id}&decision=deny"),
                &app.admin_token,
            )
            .await;
        assert!(
            refusals.body["items"][0]["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains("no longer pending"),
            "{backend:?} {:?}",
            refusals.body
        );
    }
}

#[tokio::test]
async fn a_proposer_never_approves_their_own_change() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, _, contract) = setup(&app).await;
        // The administrator holds both contract:propose and contract:approve
        // (a superuser role): it may propose, but not approve or reject what
        // it proposed — not with this token, not with a second one.
        let request = propose(
            &app,
            &app.admin_token,
            &contract,
            json!({"title": "Supply v2"}),
        )
        .await;
        let id = request["id"].as_str().unwrap();
        let second = app
            .post(
                &format!("/v1/principals/{}/credentials", app.admin_id),
                &app.admin_token,
                &json!({}),
            )
            .await;
        let second = second.body["token"].as_str().unwrap().to_owned();
        for token in [app.admin_token.as_str(), second.as_str()] {
            for (action, body) in [("approve", json!({})), ("reject", json!({"reason": "no"}))] {
                let refused = app
                    .post(&format!("/v1/change-requests/{id}/{action}"), token, &body)
                    .await;
                assert_eq!(
                    refused.status,
                    StatusCode::FORBIDDEN,
                    "{backend:?} {action}: {:?}",
                    refused.body
                );
                assert_eq!(refused.body["code"], "self_approval");
            }
        }
        // Through a second role bound after proposing: still the proposer.
        let (_, _) = app.principal("spare", &["admin"], None, json!({})).await;
        let bound = app
            .put(
                &format!("/v1/principals/{}/roles/legal", app.admin_id),
                &app.admin_token,
            )
            .await;
        assert!(bound.status.is_success(), "{:?}", bound.body);
        let refused = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(refused.body["code"], "self_approval");
        let unchanged = app
            .get(&format!("/v1/contracts/{contract}"), &app.admin_token)
            .await;
        assert_eq!(unchanged.body["title"], "Supply");
        // The refusals are in the trail.
        let denied = app
            .get(
                &format!("/v1/audit?resource_id={contract}&decision=deny"),
                &app.admin_token,
            )
            .await;
        assert!(denied.body["items"].as_array().unwrap().len() >= 5);
        // Another principal may.
        let (_, legal) = app.principal("legal2", &["legal"], None, json!({})).await;
        let approved = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    }
}

#[tokio::test]
async fn stale_withdrawn_and_rejected_requests() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, legal, contract) = setup(&app).await;
        // Stale: the contract changes under the request.
        let request = propose(&app, &pm, &contract, json!({"value": 1})).await;
        let id = request["id"].as_str().unwrap();
        let changed = app
            .patch(
                &format!("/v1/contracts/{contract}"),
                &app.admin_token,
                &json!({"title": "Renamed"}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK);
        let seen = app.get(&format!("/v1/change-requests/{id}"), &legal).await;
        assert_eq!(seen.body["stale"], true);
        let refused = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{backend:?}");
        assert_eq!(refused.body["code"], "change_request_stale");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("version 1 then, 2 now"),
            "{:?}",
            refused.body
        );
        let value = app.get(&format!("/v1/contracts/{contract}"), &pm).await;
        assert_eq!(value.body["value"], 100000);

        // Withdraw: the author only.
        let request = propose(&app, &pm, &contract, json!({"value": 2})).await;
        let id = request["id"].as_str().unwrap();
        let refused = app
            .post(
                &format!("/v1/change-requests/{id}/withdraw"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body["code"], "not_proposer");
        let withdrawn = app
            .post(
                &format!("/v1/change-requests/{id}/withdraw"),
                &pm,
                &json!({}),
            )
            .await;
        assert_eq!(
            withdrawn.body["status"], "withdrawn",
            "{:?}",
            withdrawn.body
        );
        let closed = app
            .post(
                &format!("/v1/change-requests/{id}/approve"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(closed.body["code"], "change_request_closed");

        // Reject: needs a reason.
        let request = propose(&app, &pm, &contract, json!({"value": 3})).await;
        let id = request["id"].as_str().unwrap();
        let missing = app
            .post(
                &format!("/v1/change-requests/{id}/reject"),
                &legal,
                &json!({}),
            )
            .await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert_eq!(missing.body["path"], "/reason");
        let rejected = app
            .post(
                &format!("/v1/change-requests/{id}/reject"),
                &legal,
                &json!({"reason": "value too low"}),
            )
            .await;
        assert_eq!(rejected.body["status"], "rejected", "{:?}", rejected.body);
        assert_eq!(rejected.body["reason"], "value too low");
        // The free-text reason is not in the trail.
        let trail = app
            .get(
                &format!("/v1/audit?resource_id={contract}&action=reject"),
                &app.admin_token,
            )
            .await;
        assert!(!trail.body.to_string().contains("value too low"));
        let listed = app
            .get(
                &format!("/v1/contracts/{contract}/change-requests?status=rejected"),
                &pm,
            )
            .await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

        // Bad proposals.
        for (body, code) in [
            (json!({}), "empty_change"),
            (json!({"nope": 1}), "unknown_field"),
            (json!({"partner_id": "x"}), "read_only_field"),
            (json!({"value": "lots"}), "wrong_type"),
        ] {
            let bad = app
                .post(
                    &format!("/v1/contracts/{contract}/change-requests"),
                    &pm,
                    &body,
                )
                .await;
            assert_eq!(
                bad.status,
                StatusCode::BAD_REQUEST,
                "{body}: {:?}",
                bad.body
            );
            assert_eq!(bad.body["code"], code, "{body}");
        }
        // Legal may read but not propose; an analyst cannot see contracts.
        let refused = app
            .post(
                &format!("/v1/contracts/{contract}/change-requests"),
                &legal,
                &json!({"value": 5}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let (_, analyst) = app.principal("an", &["analyst"], None, json!({})).await;
        let hidden = app
            .post(
                &format!("/v1/contracts/{contract}/change-requests"),
                &analyst,
                &json!({"value": 5}),
            )
            .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn concurrent_approvals_of_one_request_one_wins() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, _, contract) = setup(&app).await;
        let app = std::sync::Arc::new(app);
        let mut reviewers = Vec::new();
        for i in 0..4 {
            reviewers.push(
                app.principal(&format!("legal{i}"), &["legal"], None, json!({}))
                    .await
                    .1,
            );
        }
        for round in 0..3 {
            let request = propose(&app, &pm, &contract, json!({"value": 1000 + round})).await;
            let id = request["id"].as_str().unwrap().to_owned();
            let tasks: Vec<_> = reviewers
                .iter()
                .map(|token| {
                    let (app, token, id) = (app.clone(), token.clone(), id.clone());
                    tokio::spawn(async move {
                        app.post(
                            &format!("/v1/change-requests/{id}/approve"),
                            &token,
                            &json!({}),
                        )
                        .await
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.unwrap());
            }
            let won = answers
                .iter()
                .filter(|a| a.status == StatusCode::OK)
                .count();
            assert_eq!(won, 1, "{backend:?}: {answers:?}");
            for lost in answers.iter().filter(|a| a.status != StatusCode::OK) {
                assert_eq!(lost.status, StatusCode::CONFLICT, "{:?}", lost.body);
            }
            let contract = app.get(&format!("/v1/contracts/{contract}"), &pm).await;
            assert_eq!(contract.body["value"], 1000 + round);
        }
    }
}
