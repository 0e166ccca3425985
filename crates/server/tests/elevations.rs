//! Short-lived elevation on both backends: request, approval by another
//! principal only, a separate token used with the principal's own, exactly
//! the permissions and partner asked for, expiry through the test clock,
//! revocation, and the trail of every step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{Answer, BACKENDS, TestApp, audit_actions, spawn};
use reqwest::{Method, StatusCode};
use serde_json::json;

const HEADER: &str = "x-partnerdb-elevation";

async fn delete_with(app: &TestApp, path: &str, token: &str, elevation: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = elevation.map(|e| (HEADER, e)).into_iter().collect();
    app.request(Method::DELETE, path, Some(token), None, &headers)
        .await
}

#[tokio::test]
async fn an_elevation_unlocks_exactly_what_was_approved() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, approver) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let p = app
            .record("partners", json!({"name": "P", "region": "emea"}))
            .await;
        let q = app
            .record("partners", json!({"name": "Q", "region": "emea"}))
            .await;
        let (p, q) = (p["id"].as_str().unwrap(), q["id"].as_str().unwrap());

        // Without an elevation: refused, and told how to get one.
        let refused = app
            .delete(&format!("/v1/partners/{p}"), &app.admin_token)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{backend:?}");
        assert_eq!(refused.body["code"], "elevation_required");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("POST /v1/elevations"),
            "{:?}",
            refused.body
        );

        // Asking for it: validated.
        for (body, code) in [
            (
                json!({"permissions": ["partner:read"], "reason": "r", "ttl_seconds": 60}),
                "not_high_risk",
            ),
            (
                json!({"permissions": ["partner:*"], "reason": "r", "ttl_seconds": 60}),
                "invalid_permission",
            ),
            (
                json!({"permissions": ["partner:delete"], "reason": "r", "ttl_seconds": 3601}),
                "ttl_too_long",
            ),
            (
                json!({"permissions": ["partner:delete"], "ttl_seconds": 60}),
                "missing_field",
            ),
        ] {
            let bad = app.post("/v1/elevations", &app.admin_token, &body).await;
            assert_eq!(bad.body["code"], code, "{backend:?} {body}: {:?}", bad.body);
        }
        let (_, pm) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let pointless = app
            .post(
                "/v1/elevations",
                &pm,
                &json!({"permissions": ["partner:delete"], "reason": "r", "ttl_seconds": 60}),
            )
            .await;
        assert_eq!(
            pointless.body["code"], "not_granted",
            "{:?}",
            pointless.body
        );

        // Never approved by its requester, nor by a role without
        // elevation:approve.
        let requested = app
            .post(
                "/v1/elevations",
                &app.admin_token,
                &json!({"permissions": ["partner:delete"], "partner_id": p, "reason": "cleanup of a duplicate", "ttl_seconds": 600}),
            )
            .await;
        let id = requested.body["id"].as_str().unwrap().to_owned();
        let own = app
            .post(
                &format!("/v1/elevations/{id}/approve"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(own.status, StatusCode::FORBIDDEN);
        assert_eq!(own.body["code"], "self_approval");
        let (_, finance) = app.principal("fin", &["finance"], None, json!({})).await;
        let hidden = app
            .post(
                &format!("/v1/elevations/{id}/approve"),
                &finance,
                &json!({}),
            )
            .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{:?}", hidden.body);
        let not_yet = app
            .post(
                &format!("/v1/elevations/{id}/activate"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(not_yet.body["code"], "elevation_not_active");
        let approved = app
            .post(
                &format!("/v1/elevations/{id}/approve"),
                &approver,
                &json!({}),
            )
            .await;
        assert_eq!(approved.body["status"], "approved", "{:?}", approved.body);
        // Only the requester gets the token, once.
        let theirs = app
            .post(
                &format!("/v1/elevations/{id}/activate"),
                &approver,
                &json!({}),
            )
            .await;
        assert_eq!(theirs.body["code"], "not_requester");
        let activated = app
            .post(
                &format!("/v1/elevations/{id}/activate"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        let token = activated.body["token"].as_str().unwrap().to_owned();
        let again = app
            .post(
                &format!("/v1/elevations/{id}/activate"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(again.body["code"], "elevation_token_issued");

        // Outside its scope: another partner, another permission.
        let other = delete_with(
            &app,
            &format!("/v1/partners/{q}"),
            &app.admin_token,
            Some(&token),
        )
        .await;
        assert_eq!(other.body["code"], "elevation_required", "{backend:?}");
        let contract = app
            .record("contracts", json!({"partner_id": q, "title": "C"}))
            .await;
        let cid = contract["id"].as_str().unwrap();
        let other = delete_with(
            &app,
            &format!("/v1/contracts/{cid}"),
            &app.admin_token,
            Some(&token),
        )
        .await;
        assert_eq!(other.body["code"], "elevation_required");
        // The elevation token alone authenticates nothing; with another
        // principal's token it is refused.
        let alone = app
            .request(Method::GET, "/v1/me", Some(&token), None, &[])
            .await;
        assert_eq!(alone.status, StatusCode::UNAUTHORIZED);
        let borrowed = app
            .request(
                Method::GET,
                "/v1/me",
                Some(&approver),
                None,
                &[(HEADER, &token)],
            )
            .await;
        assert_eq!(borrowed.status, StatusCode::FORBIDDEN);
        assert_eq!(borrowed.body["code"], "elevation_invalid");
        // A made-up token answers the same, and both attempts are recorded.
        let forged = app
            .request(
                Method::GET,
                "/v1/me",
                Some(&approver),
                None,
                &[
                    (HEADER, "pde_made_up"),
                    ("x-request-id", "free text, not an id"),
                ],
            )
            .await;
        assert_eq!(forged.body, borrowed.body);
        let attempts = app
            .get(
                "/v1/audit?resource=elevation&action=use&decision=deny",
                &app.admin_token,
            )
            .await;
        let attempts = attempts.body["items"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{backend:?} {attempts:?}");
        // The client's request id was not an id: the trail has one of ours.
        assert!(!attempts[0].to_string().contains("free text"));
        // Answers are never cached.
        assert_eq!(forged.header("cache-control"), Some("no-store"));

        // Within it: allowed, and recorded as elevated.
        let deleted_contract = app.delete(&format!("/v1/contracts/{cid}"), &approver).await;
        assert_eq!(deleted_contract.body["code"], "elevation_required");
        let gone = delete_with(
            &app,
            &format!("/v1/partners/{p}"),
            &app.admin_token,
            Some(&token),
        )
        .await;
        assert_eq!(
            gone.status,
            StatusCode::NO_CONTENT,
            "{backend:?} {:?}",
            gone.body
        );
        let trail = app
            .get(
                &format!("/v1/audit?resource=partner&resource_id={p}&action=delete&decision=allow"),
                &app.admin_token,
            )
            .await;
        let event = &trail.body["items"][0];
        assert_eq!(
            event["detail"]["input"]["elevated"], true,
            "{:?}",
            trail.body
        );
        assert_eq!(event["detail"]["input"]["elevation"], id.as_str());
        let steps = app
            .get(
                &format!("/v1/audit?resource=elevation&resource_id={id}"),
                &app.admin_token,
            )
            .await;
        let actions = audit_actions(&steps.body);
        for step in ["request", "approve", "activate"] {
            assert!(
                actions.iter().any(|a| a == step),
                "{backend:?} {step}: {actions:?}"
            );
        }
        assert!(
            !steps.body.to_string().contains("cleanup of a duplicate"),
            "the free-text reason stays out of the trail"
        );
    }
}

#[tokio::test]
async fn an_elevation_ends_when_it_expires_or_is_revoked() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, approver) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let p = app
            .record("partners", json!({"name": "P", "region": "emea"}))
            .await;
        let p = p["id"].as_str().unwrap();
        let mut contracts = Vec::new();
        for i in 0..4 {
            let c = app
                .record(
                    "contracts",
                    json!({"partner_id": p, "title": format!("C{i}")}),
                )
                .await;
            contracts.push(c["id"].as_str().unwrap().to_owned());
        }
        let (id, token) = app
            .elevation(
                &app.admin_token,
                &approver,
                json!({"permissions": ["contract:delete"], "reason": "r", "ttl_seconds": 60}),
            )
            .await;
        let delete = |i: usize| {
            let (app, token, path) = (
                &app,
                token.clone(),
                format!("/v1/contracts/{}", contracts[i]),
            );
            async move { delete_with(app, &path, &app.admin_token, Some(&token)).await }
        };
        assert_eq!(
            delete(0).await.status,
            StatusCode::NO_CONTENT,
            "{backend:?}"
        );
        // One second before the end: still valid; one second after: not.
        app.clock.advance(jiff::SignedDuration::from_secs(59));
        assert_eq!(
            delete(1).await.status,
            StatusCode::NO_CONTENT,
            "{backend:?}"
        );
        app.clock.advance(jiff::SignedDuration::from_secs(2));
        let expired = delete(2).await;
        assert_eq!(expired.status, StatusCode::FORBIDDEN);
        assert_eq!(expired.body["code"], "elevation_expired");
        let seen = app
            .get(&format!("/v1/elevations/{id}"), &app.admin_token)
            .await;
        assert_eq!(seen.body["status"], "expired");
        // The expiry itself is recorded, once, whoever sweeps.
        // (The server's own sweeper may have marked it first.)
        assert!(app.service.sweep_expired_elevations().await.unwrap() <= 1);
        assert_eq!(app.service.sweep_expired_elevations().await.unwrap(), 0);
        let expiry = app
            .get(
                &format!("/v1/audit?resource=elevation&resource_id={id}&action=expire"),
                &app.admin_token,
            )
            .await;
        assert_eq!(
            expiry.body["items"].as_array().unwrap().len(),
            1,
            "{backend:?}"
        );
        let seen = app
            .get(&format!("/v1/elevations/{id}"), &app.admin_token)
            .await;
        assert_eq!(seen.body["status"], "expired");

        // Revoked: refused at once.
        let (id, token) = app
            .elevation(
                &app.admin_token,
                &approver,
                json!({"permissions": ["contract:delete"], "reason": "r", "ttl_seconds": 600}),
            )
            .await;
        let revoked = app
            .post(
                &format!("/v1/elevations/{id}/revoke"),
                &approver,
                &json!({}),
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
        let refused = delete_with(
            &app,
            &format!("/v1/contracts/{}", contracts[2]),
            &app.admin_token,
            Some(&token),
        )
        .await;
        assert_eq!(refused.body["code"], "elevation_revoked", "{backend:?}");
        let trail = app
            .get(
                &format!("/v1/audit?resource=elevation&resource_id={id}"),
                &app.admin_token,
            )
            .await;
        let actions = audit_actions(&trail.body);
        assert!(
            actions.iter().any(|a| a == "revoke") && actions.iter().any(|a| a == "use"),
            "{actions:?}"
        );
        // A listing shows the requester its own.
        let listed = app.get("/v1/elevations", &app.admin_token).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    }
}
