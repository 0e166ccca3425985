//! The life of a policy version on both backends: proposed (check, lint
//! and separation of duties against the current bindings block it),
//! approved by another principal with an elevation (never by its author),
//! refused by the lockout rule, activated atomically and enforced at once,
//! followed by a second server on the same database, rolled back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;

use partnerdb_service::{Clock, Service};
use partnerdb_testkit::{BACKENDS, TestApp, spawn};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn starter() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policies/starter.toml"
    ))
    .unwrap()
}

const ANALYST: &str = r#"grants = [ { on = "metrics", can = ["read"] } ]"#;

/// The starter where the analyst may also read partners' general fields.
fn analyst_reads_partners() -> String {
    let text = starter();
    assert!(text.contains(ANALYST));
    text.replace(
        ANALYST,
        r#"grants = [ { on = "metrics", can = ["read"] }, { on = "partner", can = ["read"], fields = ["general"] } ]"#,
    )
}

/// An approved, activated elevation for `permission` of `token`'s
/// principal, approved by `approver`: its token.
async fn elevated(app: &TestApp, token: &str, approver: &str, permission: &str) -> String {
    let body = json!({"permissions": [permission], "reason": "policy change", "ttl_seconds": 600});
    app.elevation(token, approver, body).await.1
}

async fn post_elevated(
    app: &TestApp,
    path: &str,
    token: &str,
    elevation: &str,
) -> partnerdb_testkit::Answer {
    post_elevated_with(app, path, token, elevation, json!({})).await
}

async fn post_elevated_with(
    app: &TestApp,
    path: &str,
    token: &str,
    elevation: &str,
    body: serde_json::Value,
) -> partnerdb_testkit::Answer {
    app.request(
        Method::POST,
        path,
        Some(token),
        Some(&body),
        &[("x-partnerdb-elevation", elevation)],
    )
    .await
}

async fn propose(app: &TestApp, content: &str) -> partnerdb_testkit::Answer {
    app.post(
        "/v1/policy/versions",
        &app.admin_token,
        &json!({"content": content, "message": "test change"}),
    )
    .await
}

#[tokio::test]
async fn a_version_is_proposed_approved_enforced_and_rolled_back() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let (_, analyst) = app.principal("an", &["analyst"], None, json!({})).await;
        let partner = app
            .record("partners", json!({"name": "P", "region": "emea"}))
            .await;
        let path = format!("/v1/partners/{}", partner["id"].as_str().unwrap());
        assert_eq!(app.get(&path, &analyst).await.status, StatusCode::NOT_FOUND);

        let proposed = propose(&app, &analyst_reads_partners()).await;
        assert_eq!(
            proposed.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            proposed.body
        );
        assert_eq!(proposed.body["number"], 2);
        assert_eq!(proposed.body["state"], "proposed");
        assert!(
            proposed.body["diff"].to_string().contains("analyst"),
            "{:?}",
            proposed.body["diff"]
        );
        // Not yet in force.
        assert_eq!(app.get(&path, &analyst).await.status, StatusCode::NOT_FOUND);

        // policy:apply is high-risk: without an elevation, refused.
        let plain = app
            .post("/v1/policy/versions/2/approve", &second, &json!({}))
            .await;
        assert_eq!(
            plain.body["code"], "elevation_required",
            "{backend:?} {:?}",
            plain.body
        );
        // Its author may not approve it, even elevated.
        let own = elevated(&app, &app.admin_token, &second, "policy:apply").await;
        let refused = post_elevated(
            &app,
            "/v1/policy/versions/2/approve",
            &app.admin_token,
            &own,
        )
        .await;
        assert_eq!(refused.body["code"], "self_approval", "{:?}", refused.body);

        let token = elevated(&app, &second, &app.admin_token, "policy:apply").await;
        let approved = post_elevated(&app, "/v1/policy/versions/2/approve", &second, &token).await;
        assert_eq!(
            approved.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            approved.body
        );
        assert_eq!(approved.body["state"], "active");
        // In force at once.
        assert_eq!(
            app.get(&path, &analyst).await.status,
            StatusCode::OK,
            "{backend:?}"
        );
        let history = app.get("/v1/policy/versions", &app.admin_token).await;
        let states: Vec<(i64, String)> = history.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["number"].as_i64().unwrap(),
                    v["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [(2, "active".to_owned()), (1, "superseded".to_owned())]
        );
        let shown = app.get("/v1/policy/versions/2", &app.admin_token).await;
        assert_eq!(shown.body["content"], analyst_reads_partners());
        // The read the analyst made is recorded with the version that decided it.
        let trail = app
            .get(
                "/v1/audit?resource=partner&action=read&decision=allow",
                &app.admin_token,
            )
            .await;
        let hash = approved.body["hash"].as_str().unwrap();
        assert_eq!(trail.body["items"][0]["policy_version"], hash);

        // Two more reads by the analyst. Every partner read it made — two
        // refused under version 1, three allowed under version 2 — is
        // allowed by the version in force (2) and would be denied by a
        // rollback to 1: five allow→deny, counted here by the test.
        for _ in 0..2 {
            assert_eq!(app.get(&path, &analyst).await.status, StatusCode::OK);
        }
        let analyst_reads = 5;

        // Rollback: version 1's text, proposed again as version 3.
        let rollback_token = elevated(&app, &app.admin_token, &second, "policy:rollback").await;
        let rolled = post_elevated(
            &app,
            "/v1/policy/versions/1/rollback",
            &app.admin_token,
            &rollback_token,
        )
        .await;
        assert_eq!(rolled.status, StatusCode::CREATED, "{:?}", rolled.body);
        assert_eq!(rolled.body["number"], 3);
        assert_eq!(rolled.body["rollback_of"], 1);
        // The plan replays the recorded decisions against version 3.
        let plan = app
            .get("/v1/policy/versions/3/plan?days=1", &app.admin_token)
            .await;
        assert_eq!(plan.status, StatusCode::OK, "{:?}", plan.body);
        let simulation = &plan.body["simulation"];
        assert_eq!(
            simulation["total"]["allow_to_deny"], analyst_reads,
            "{backend:?} {simulation}"
        );
        assert_eq!(simulation["total"]["deny_to_allow"], 0, "{simulation}");
        assert_eq!(
            simulation["by_role"]["analyst"]["allow_to_deny"],
            analyst_reads
        );
        assert_eq!(
            simulation["by_route"]["GET /v1/partners/{id}"]["allow_to_deny"],
            analyst_reads
        );
        assert_eq!(simulation["breaking"], true);
        assert_eq!(plan.body["lockout"]["ok"], true);
        // Usage-based findings against this deployment: no principal holds
        // the maintenance role.
        assert!(
            plan.body["usage_lint"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["code"] == "role-without-principal"
                    && f["message"].as_str().unwrap().contains("maintenance")),
            "{:?}",
            plan.body["usage_lint"]
        );
        let analyst_change = plan.body["principals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["roles"] == json!(["analyst"]))
            .unwrap();
        assert_eq!(analyst_change["lost"], json!(["partner:read"]));
        // Breaking: refused without an explicit acceptance.
        let refused = post_elevated(&app, "/v1/policy/versions/3/approve", &second, &token).await;
        assert_eq!(
            refused.body["code"], "breaking_change",
            "{:?}",
            refused.body
        );
        let approved = post_elevated_with(
            &app,
            "/v1/policy/versions/3/approve",
            &second,
            &token,
            json!({"accept_breaking": true}),
        )
        .await;
        assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
        assert_eq!(app.get(&path, &analyst).await.status, StatusCode::NOT_FOUND);
        let closed = post_elevated(&app, "/v1/policy/versions/3/approve", &second, &token).await;
        assert_eq!(closed.body["code"], "policy_version_closed");
    }
}

#[tokio::test]
async fn proposals_and_approvals_are_refused_with_the_rule_named() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        // Check errors and lint errors block a proposal.
        let invalid = propose(&app, "[policy]\nname = 1\n").await;
        assert_eq!(
            invalid.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            invalid.body
        );
        assert_eq!(invalid.body["code"], "policy_invalid");
        let no_admin = starter().replace(r#"[roles.admin]"#, "[roles.admin_removed]");
        let no_admin = no_admin.replace(
            r#"grants = [ { on = "*", can = ["*"] } ]"#,
            r#"grants = [ { on = "partner", can = ["read"] } ]"#,
        );
        let linted = propose(&app, &no_admin).await;
        assert_eq!(
            linted.body["code"], "policy_lint_errors",
            "{backend:?} {:?}",
            linted.body
        );
        assert!(linted.body["detail"].as_str().unwrap().contains("no-admin"));

        // Separation of duties against the bindings in force: finance and
        // read_only are fine together today; a version where read_only
        // also books transactions would make that principal break the
        // transaction maker-checker rule.
        let sod = starter().replace(
            r#"  { on = "transaction", can = ["read"], fields = ["general"] },
]

[roles.read_write]"#,
            r#"  { on = "transaction", can = ["read", "create"], fields = ["general"] },
]

[roles.read_write]"#,
        );
        assert_ne!(sod, starter());
        // Proposed while nobody holds both roles: accepted…
        let early = propose(&app, &sod).await;
        assert_eq!(
            early.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            early.body
        );
        let early = early.body["number"].as_i64().unwrap();
        app.principal("both", &["finance", "read_only"], None, json!({}))
            .await;
        // …but approval checks the bindings again.
        let apply = elevated(&app, &second, &app.admin_token, "policy:apply").await;
        let refused = post_elevated(
            &app,
            &format!("/v1/policy/versions/{early}/approve"),
            &second,
            &apply,
        )
        .await;
        assert_eq!(
            refused.body["code"], "separation_of_duties",
            "{backend:?} {:?}",
            refused.body
        );
        let refused = propose(&app, &sod).await;
        assert_eq!(
            refused.status,
            StatusCode::CONFLICT,
            "{backend:?} {:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "separation_of_duties");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("transaction maker-checker")
        );

        // Lockout: a version under which nobody bound holds policy:apply
        // (the admin role keeps everything else) is refused at approval.
        let lockout = starter().replace(
            r#"[roles.admin]"#,
            "[roles.policy_admin]\ndescription = \"Applies policies\"\ngrants = [ { on = \"policy\", can = [\"read\", \"propose\", \"apply\", \"rollback\"] } ]\n\n[roles.admin]",
        );
        let lockout = lockout.replace(
            r#"grants = [ { on = "*", can = ["*"] } ]"#,
            r#"grants = [ { on = "partner", can = ["*"] }, { on = "principal", can = ["*"] }, { on = "elevation", can = ["*"] } ]"#,
        );
        let proposed = propose(&app, &lockout).await;
        assert_eq!(
            proposed.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            proposed.body
        );
        let number = proposed.body["number"].as_i64().unwrap();
        let token = elevated(&app, &second, &app.admin_token, "policy:apply").await;
        let refused = post_elevated(
            &app,
            &format!("/v1/policy/versions/{number}/approve"),
            &second,
            &token,
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::CONFLICT,
            "{backend:?} {:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "lockout");
        // The refusal is in the trail.
        let trail = app
            .get(
                &format!("/v1/audit?resource=policy&resource_id={number}&decision=deny"),
                &app.admin_token,
            )
            .await;
        assert!(
            trail.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["detail"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("lockout"))),
            "{backend:?} {:?}",
            trail.body
        );
        // Rejected instead.
        let rejected = post_elevated(
            &app,
            &format!("/v1/policy/versions/{number}/reject"),
            &second,
            &token,
        )
        .await;
        assert_eq!(rejected.body["state"], "rejected", "{:?}", rejected.body);
        // Only a version that was in force can be rolled back to.
        let rollback = elevated(&app, &app.admin_token, &second, "policy:rollback").await;
        let refused = post_elevated(
            &app,
            &format!("/v1/policy/versions/{number}/rollback"),
            &app.admin_token,
            &rollback,
        )
        .await;
        assert_eq!(
            refused.body["code"], "not_a_previous_version",
            "{:?}",
            refused.body
        );
        // Stale: two proposals made against version 1; once one is in
        // force, the other must be planned and proposed again.
        let first = propose(&app, &analyst_reads_partners()).await;
        let second_proposal = propose(&app, &format!("{}\n# another change\n", starter())).await;
        let first = first.body["number"].as_i64().unwrap();
        let other = second_proposal.body["number"].as_i64().unwrap();
        let applied = post_elevated(
            &app,
            &format!("/v1/policy/versions/{first}/approve"),
            &second,
            &token,
        )
        .await;
        assert_eq!(
            applied.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            applied.body
        );
        let stale = post_elevated(
            &app,
            &format!("/v1/policy/versions/{other}/approve"),
            &second,
            &token,
        )
        .await;
        assert_eq!(
            stale.body["code"], "policy_version_stale",
            "{backend:?} {:?}",
            stale.body
        );
        // Nobody without policy:read sees versions.
        let (_, analyst) = app.principal("an", &["analyst"], None, json!({})).await;
        assert_eq!(
            app.get("/v1/policy/versions", &analyst).await.status,
            StatusCode::FORBIDDEN
        );
    }
}

#[tokio::test]
async fn another_server_on_the_database_follows_an_activation() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        // A second service on the same database, as another server would be.
        let other = Arc::new(
            Service::open(
                app.service.db().clone(),
                app.clock.clone() as Arc<dyn Clock>,
                partnerdb_service::audit::AuditConfig::default(),
            )
            .await
            .unwrap(),
        );
        let before = other.policy_version();
        let announcements = partnerdb_store::policies::listen(app.service.db())
            .await
            .unwrap();
        assert_eq!(
            announcements.is_some(),
            backend == partnerdb_testkit::Backend::Postgres
        );
        let (_, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let proposed = propose(&app, &analyst_reads_partners()).await;
        let number = proposed.body["number"].as_i64().unwrap();
        let token = elevated(&app, &second, &app.admin_token, "policy:apply").await;
        let approved = post_elevated(
            &app,
            &format!("/v1/policy/versions/{number}/approve"),
            &second,
            &token,
        )
        .await;
        assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
        assert_eq!(other.policy_version(), before, "not before it polls");
        // With PostgreSQL the activation is also announced (LISTEN/NOTIFY).
        if let Some(mut listener) = announcements {
            // Other tests' schemas share the channel: wait for this number.
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while listener.recv().await.unwrap() != number.to_string() {}
            })
            .await
            .expect("the activation is announced");
        }
        // The other server, following as a server does, takes it up.
        let follower = tokio::spawn(other.clone().follow_policy());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while *other.policy_version() != *approved.body["hash"].as_str().unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "not followed within 2 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        follower.abort();
        assert_eq!(
            &*other.policy_version(),
            approved.body["hash"].as_str().unwrap()
        );
        assert_eq!(
            &*app.service.policy_version(),
            approved.body["hash"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn an_elevation_asked_under_an_older_policy_is_refused_at_approval() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, second) = app
            .principal("second admin", &["admin"], None, json!({}))
            .await;
        let asked = app
            .post(
                "/v1/elevations",
                &app.admin_token,
                &json!({"permissions": ["partner:delete"], "reason": "cleanup", "ttl_seconds": 600}),
            )
            .await;
        assert_eq!(asked.status, StatusCode::CREATED, "{:?}", asked.body);
        let id = asked.body["id"].as_str().unwrap().to_owned();
        // A version under which deleting partners is no longer high-risk.
        let relaxed = starter().replace(
            r#""partner:delete", "contract:delete""#,
            r#""contract:delete""#,
        );
        assert_ne!(relaxed, starter());
        let proposed = propose(&app, &relaxed).await;
        let number = proposed.body["number"].as_i64().unwrap();
        let token = elevated(&app, &second, &app.admin_token, "policy:apply").await;
        let approved = post_elevated(
            &app,
            &format!("/v1/policy/versions/{number}/approve"),
            &second,
            &token,
        )
        .await;
        assert_eq!(
            approved.status,
            StatusCode::OK,
            "{backend:?} {:?}",
            approved.body
        );
        let outdated = app
            .post(&format!("/v1/elevations/{id}/approve"), &second, &json!({}))
            .await;
        assert_eq!(outdated.status, StatusCode::CONFLICT, "{backend:?}");
        assert_eq!(
            outdated.body["code"], "elevation_outdated",
            "{:?}",
            outdated.body
        );
    }
}

/// A plan's usage findings and counts per principal name principals and
/// when they last acted: shown to a reader of the trail, not to one that
/// may only read the policy.
#[tokio::test]
async fn a_plan_shows_usage_only_to_readers_of_the_trail() {
    let policy = format!(
        "{}\n[roles.reviewer]\ndescription = \"Reads the policy and its plans\"\ngrants = [ {{ on = \"policy\", can = [\"read\"] }} ]\n",
        starter()
    );
    for backend in BACKENDS {
        let Some(app) = partnerdb_testkit::spawn_with_policy(backend, &policy).await else {
            continue;
        };
        let (_, reviewer) = app
            .principal("policy reviewer", &["reviewer"], None, json!({}))
            .await;
        app.principal("Jane Doe", &["read_only", "read_write"], None, json!({}))
            .await;
        let path = "/v1/policy/versions/1/plan";
        let admin_plan = app.get(path, &app.admin_token).await;
        assert_eq!(admin_plan.status, StatusCode::OK, "{:?}", admin_plan.body);
        assert!(
            admin_plan.body["usage_lint"]
                .to_string()
                .contains("Jane Doe"),
            "{backend:?}: {}",
            admin_plan.body["usage_lint"]
        );
        assert_eq!(admin_plan.body["usage_lint_redacted"], false);
        let plan = app.get(path, &reviewer).await;
        assert_eq!(plan.status, StatusCode::OK, "{:?}", plan.body);
        assert_eq!(plan.body["usage_lint"], json!([]), "{backend:?}");
        assert_eq!(plan.body["usage_lint_redacted"], true);
        assert_eq!(plan.body["simulation"]["by_principal"], json!({}));
        assert!(
            !plan.body.to_string().contains("Jane Doe"),
            "{backend:?}: {}",
            plan.body
        );
    }
}

/// A refused proposal's diagnostics quote the proposed text (its messages
/// and the line under them): the trail keeps their codes and positions
/// only.
#[tokio::test]
async fn a_refused_proposal_leaves_its_text_out_of_the_trail() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let content = format!(
            "{}\n[roles.x]\ndescription = \"ask Jane Doe\"\ngrants = [ {{ on = \"contrac\", can = [\"read\"] }} ] # +44 7700 900123\n",
            starter()
        );
        let refused = propose(&app, &content).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "policy_invalid");
        assert!(
            refused.body["detail"].as_str().unwrap().contains("7700"),
            "the answer shows the line: {:?}",
            refused.body
        );
        let events = partnerdb_store::audit::events_after(app.service.db(), 0, 10_000)
            .await
            .unwrap();
        let refusal = events
            .iter()
            .find(|e| e.event.detail.contains("policy_invalid"))
            .unwrap_or_else(|| panic!("{backend:?}: no refusal event"));
        assert!(
            refusal
                .event
                .detail
                .contains("the proposed policy was refused (policy_invalid): error["),
            "{}",
            refusal.event.detail
        );
        for event in &events {
            for text in ["7700", "Jane", "contrac\\\""] {
                assert!(
                    !event.event.detail.contains(text),
                    "{backend:?}: `{text}` in {}",
                    event.event.detail
                );
            }
        }
    }
}
