//! The server end to end on both backends: health, authentication, a
//! record's life, masking, lists.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{BACKENDS, spawn};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn health_auth_and_a_partner_life() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let health = app
            .request(reqwest::Method::GET, "/healthz", None, None, &[])
            .await;
        assert_eq!(health.status, StatusCode::OK);
        let ready = app
            .request(reqwest::Method::GET, "/readyz", None, None, &[])
            .await;
        assert_eq!(ready.status, StatusCode::OK, "{backend:?}");

        let anonymous = app
            .request(reqwest::Method::GET, "/v1/partners", None, None, &[])
            .await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.body["code"], "unauthenticated");
        assert_eq!(
            anonymous.header("content-type"),
            Some("application/problem+json")
        );
        let bad = app.get("/v1/partners", "pdb_not-a-real-token").await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

        let (pm, pm_token) = app
            .principal(
                "maria",
                &["partner_manager"],
                None,
                json!({"region": "emea"}),
            )
            .await;
        let acme = app
            .record("partners", json!({"name": "Acme", "region": "emea", "owner": pm, "credit_limit": 500000, "bank_account": "DE00 1234"}))
            .await;
        let id = acme["id"].as_str().unwrap();
        assert_eq!(acme["credit_limit"], 500000);

        // The manager sees general fields only.
        let seen = app.get(&format!("/v1/partners/{id}"), &pm_token).await;
        assert_eq!(seen.status, StatusCode::OK, "{backend:?} {:?}", seen.body);
        assert_eq!(seen.body["name"], "Acme");
        assert!(seen.body.get("credit_limit").is_none());
        assert!(seen.body.get("bank_account").is_none());
        assert_eq!(seen.header("etag"), Some("\"1\""));

        // Writing a financial field is refused, naming field and class.
        let refused = app
            .patch(
                &format!("/v1/partners/{id}"),
                &pm_token,
                &json!({"credit_limit": 1}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body["code"], "field_not_writable");
        assert_eq!(refused.body["field"], "credit_limit");
        assert_eq!(refused.body["class"], "financial");

        // A stale If-Match is refused; the right one works.
        let stale = app
            .request(
                reqwest::Method::PATCH,
                &format!("/v1/partners/{id}"),
                Some(&pm_token),
                Some(&json!({"website": "https://acme.example"})),
                &[("if-match", "\"7\"")],
            )
            .await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
        let updated = app
            .request(
                reqwest::Method::PATCH,
                &format!("/v1/partners/{id}"),
                Some(&pm_token),
                Some(&json!({"website": "https://acme.example"})),
                &[("if-match", "\"1\"")],
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
        assert_eq!(updated.header("etag"), Some("\"2\""));

        // Lists are scoped: another manager's partner is absent.
        let other = app
            .record(
                "partners",
                json!({"name": "Globex", "region": "apac", "owner": "someone-else"}),
            )
            .await;
        let list = app.get("/v1/partners", &pm_token).await;
        assert_eq!(list.status, StatusCode::OK);
        let ids: Vec<&str> = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id]);
        let hidden = app
            .get(
                &format!("/v1/partners/{}", other["id"].as_str().unwrap()),
                &pm_token,
            )
            .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
        let missing = app.get("/v1/partners/does-not-exist", &pm_token).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(hidden.body["detail"], missing.body["detail"]);

        let openapi = app
            .request(reqwest::Method::GET, "/openapi.json", None, None, &[])
            .await;
        assert_eq!(
            openapi.body["components"]["schemas"]["Partner"]["properties"]["credit_limit"]["anyOf"]
                [0]["x-partnerdb-class"],
            "financial"
        );
    }
}
