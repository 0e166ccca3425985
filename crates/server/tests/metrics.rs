//! Partner performance through the API on both backends: analysts read
//! aggregates without row access; small groups and totals that would
//! reveal them are suppressed; the figures match the records.

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
async fn analysts_read_suppressed_aggregates_without_rows() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        // Six gold partners in emea, one silver partner in emea.
        let mut expected_gold = 0;
        for i in 0..7 {
            let tier = if i < 6 { "gold" } else { "silver" };
            let p = app
                .record(
                    "partners",
                    json!({"name": format!("P{i}"), "region": "emea", "tier": tier}),
                )
                .await;
            for amount in [100, 200] {
                app.record(
                    "transactions",
                    json!({"partner_id": p["id"], "kind": "invoice", "status": "settled", "occurred_at": "2026-02-10T12:00:00Z", "amount": amount, "currency": "EUR"}),
                )
                .await;
                if tier == "gold" {
                    expected_gold += amount;
                }
            }
        }
        let (_, analyst) = app.principal("ana", &["analyst"], None, json!({})).await;
        assert_eq!(
            app.get("/v1/partners", &analyst).await.status,
            StatusCode::FORBIDDEN,
            "{backend:?}: no row access"
        );
        let report = app
            .get(
                "/v1/metrics/partner-performance?from=2026-01&to=2026-03",
                &analyst,
            )
            .await;
        assert_eq!(
            report.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            report.body
        );
        assert_eq!(report.body["min_group"], 5);
        let groups = report.body["groups"].as_array().unwrap();
        let gold = groups.iter().find(|g| g["tier"] == "gold").unwrap();
        assert_eq!(gold["month"], "2026-02");
        assert_eq!(gold["partners"], 6);
        assert_eq!(gold["transactions"], 12);
        assert_eq!(gold["revenue"]["EUR"], expected_gold, "{backend:?}");
        let silver = groups.iter().find(|g| g["tier"] == "silver").unwrap();
        assert_eq!(silver["suppressed"], true);
        assert!(silver["revenue"].is_null());
        // emea = gold + silver: publishing it would reveal silver.
        let emea = &report.body["totals"]["region"][0];
        assert_eq!(emea["suppressed"], true, "{backend:?}");
        assert_eq!(report.body["totals"]["all"]["suppressed"], true);

        let (_, client_token) = {
            let p = app.get("/v1/partners?limit=1", &app.admin_token).await;
            let pid = p.body["items"][0]["id"].as_str().unwrap().to_owned();
            app.principal("portal", &["api_client"], Some(&pid), json!({}))
                .await
        };
        assert_eq!(
            app.get("/v1/metrics/partner-performance", &client_token)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        let bad = app
            .get("/v1/metrics/partner-performance?from=2026-13", &analyst)
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let reversed = app
            .get(
                "/v1/metrics/partner-performance?from=2026-05&to=2026-01",
                &analyst,
            )
            .await;
        assert_eq!(reversed.body["code"], "invalid_range");
    }
}
