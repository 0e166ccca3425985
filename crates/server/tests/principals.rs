//! Principals, role bindings and credentials on both backends: separation
//! of duties on assignment, the lockout rule (also under concurrent
//! requests), tokens hashed, shown once, expiring (through the test clock),
//! revocable and rotatable, api clients bound to one partner.

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
async fn separation_of_duties_is_enforced_on_assignment() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, _) = app
            .principal("pm", &["partner_manager"], None, json!({}))
            .await;
        let refused = app
            .put(
                &format!("/v1/principals/{pm}/roles/legal"),
                &app.admin_token,
            )
            .await;
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
                .contains("contract maker-checker")
        );
        let principal = app
            .get(&format!("/v1/principals/{pm}"), &app.admin_token)
            .await;
        assert_eq!(
            principal.body["roles"],
            json!(["partner_manager"]),
            "{backend:?}: nothing bound"
        );
        // At creation too.
        let created = app
            .post(
                "/v1/principals",
                &app.admin_token,
                &json!({"name": "x", "roles": ["finance", "read_write"]}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CONFLICT);
        assert!(
            created.body["detail"]
                .as_str()
                .unwrap()
                .contains("transaction maker-checker")
        );
        // A compatible role is fine, and the superuser admin is exempt.
        assert_eq!(
            app.put(
                &format!("/v1/principals/{pm}/roles/analyst"),
                &app.admin_token
            )
            .await
            .status,
            StatusCode::OK
        );
        assert_eq!(
            app.put(
                &format!("/v1/principals/{pm}/roles/admin"),
                &app.admin_token
            )
            .await
            .status,
            StatusCode::OK
        );
        // Unknown roles and partner-bound roles on users are refused.
        let unknown = app
            .put(
                &format!("/v1/principals/{pm}/roles/wizard"),
                &app.admin_token,
            )
            .await;
        assert_eq!(
            (unknown.status, unknown.body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_role"))
        );
        let bound = app
            .put(
                &format!("/v1/principals/{pm}/roles/api_client"),
                &app.admin_token,
            )
            .await;
        assert_eq!(bound.body["code"], "role_needs_partner");
    }
}

#[tokio::test]
async fn the_lockout_rule_protects_the_last_administrators() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let me = app.admin_id.clone();
        // One administrator, below min_admins = 2: it may not go.
        let refused = app
            .request(
                reqwest::Method::DELETE,
                &format!("/v1/principals/{me}/roles/admin"),
                Some(&app.admin_token),
                None,
                &[],
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::CONFLICT,
            "{backend:?} {:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "lockout");
        assert!(refused.body["detail"].as_str().unwrap().contains("R13"));
        assert_eq!(
            app.delete(&format!("/v1/principals/{me}"), &app.admin_token)
                .await
                .body["code"],
            "lockout"
        );
        let credentials = app
            .get(
                &format!("/v1/principals/{me}/credentials"),
                &app.admin_token,
            )
            .await;
        let mine = credentials.body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.delete(
                &format!("/v1/principals/{me}/credentials/{mine}"),
                &app.admin_token
            )
            .await
            .body["code"],
            "lockout"
        );

        // Two more administrators (three): one may go, then no more.
        let (second, _) = app.principal("second", &["admin"], None, json!({})).await;
        let (third, _) = app.principal("third", &["admin"], None, json!({})).await;
        assert_eq!(
            app.delete(
                &format!("/v1/principals/{third}/roles/admin"),
                &app.admin_token
            )
            .await
            .status,
            StatusCode::OK
        );
        let refused = app
            .delete(
                &format!("/v1/principals/{second}/roles/admin"),
                &app.admin_token,
            )
            .await;
        assert_eq!(refused.body["code"], "lockout", "{backend:?}");
        // An administrator without a live credential does not count.
        let (fourth, _) = app.principal("fourth", &["admin"], None, json!({})).await;
        let fourth_credential = app
            .get(
                &format!("/v1/principals/{fourth}/credentials"),
                &app.admin_token,
            )
            .await
            .body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.delete(
                &format!("/v1/principals/{fourth}/credentials/{fourth_credential}"),
                &app.admin_token
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.delete(
                &format!("/v1/principals/{second}/roles/admin"),
                &app.admin_token
            )
            .await
            .body["code"],
            "lockout"
        );
    }
}

#[tokio::test]
async fn concurrent_unbinding_of_the_last_two_administrators_refuses_one() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (a, _) = app.principal("a", &["admin"], None, json!({})).await;
        let (b, _) = app.principal("b", &["admin"], None, json!({})).await;
        // Three administrators, min 2: exactly one of two concurrent
        // removals may pass.
        let app = std::sync::Arc::new(app);
        let tasks: Vec<_> = [a, b]
            .into_iter()
            .map(|id| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.delete(
                        &format!("/v1/principals/{id}/roles/admin"),
                        &app.admin_token,
                    )
                    .await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap().status);
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn tokens_expire_can_be_revoked_and_rotated() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (id, _) = app
            .principal("reader", &["read_only"], None, json!({}))
            .await;
        let issued = app
            .post(
                &format!("/v1/principals/{id}/credentials"),
                &app.admin_token,
                &json!({"expires_in_days": 1}),
            )
            .await;
        assert_eq!(issued.status, StatusCode::CREATED);
        let token = issued.body["token"].as_str().unwrap().to_owned();
        let credential = issued.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
        // Listing never shows a token.
        let listed = app
            .get(
                &format!("/v1/principals/{id}/credentials"),
                &app.admin_token,
            )
            .await;
        assert!(!listed.body.to_string().contains(&token));
        assert!(
            listed.body.to_string().contains(&token[..8]),
            "the prefix identifies it"
        );

        // Rotation: the old token stops, the new one works.
        let rotated = app
            .post(
                &format!("/v1/principals/{id}/credentials/{credential}/rotate"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        assert_eq!(
            rotated.status,
            StatusCode::CREATED,
            "{backend:?} {:?}",
            rotated.body
        );
        let new_token = rotated.body["token"].as_str().unwrap().to_owned();
        assert_eq!(
            app.get("/v1/me", &token).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(app.get("/v1/me", &new_token).await.status, StatusCode::OK);

        // Expiry, through the clock: a day later it no longer works.
        app.clock.advance(jiff::SignedDuration::from_hours(23));
        assert_eq!(app.get("/v1/me", &new_token).await.status, StatusCode::OK);
        app.clock.advance(jiff::SignedDuration::from_hours(2));
        let expired = app.get("/v1/me", &new_token).await;
        assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{backend:?}");
        assert!(expired.body["detail"].as_str().unwrap().contains("expired"));

        // Revocation.
        let fresh = app
            .post(
                &format!("/v1/principals/{id}/credentials"),
                &app.admin_token,
                &json!({}),
            )
            .await;
        let fresh_token = fresh.body["token"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/v1/me", &fresh_token).await.status, StatusCode::OK);
        let revoked = app
            .delete(
                &format!(
                    "/v1/principals/{id}/credentials/{}",
                    fresh.body["id"].as_str().unwrap()
                ),
                &app.admin_token,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        assert_eq!(
            app.get("/v1/me", &fresh_token).await.status,
            StatusCode::UNAUTHORIZED
        );

        let too_long = app
            .post(
                &format!("/v1/principals/{id}/credentials"),
                &app.admin_token,
                &json!({"expires_in_days": 1000}),
            )
            .await;
        assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
        // A deleted principal's tokens stop working.
        assert_eq!(
            app.delete(&format!("/v1/principals/{id}"), &app.admin_token)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        let after = app
            .post("/v1/principals", &app.admin_token, &json!({"name": "y"}))
            .await;
        assert_eq!(after.status, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (_, token) = app.principal("x", &["analyst"], None, json!({})).await;
        let mut sql = app.service.db().sql();
        sql.push("SELECT token_hash, prefix FROM credentials");
        let rows = app.service.db().fetch_all(&sql).await.unwrap();
        assert!(rows.len() >= 2);
        for row in rows {
            assert_eq!(row.text(0).len(), 64);
            assert_ne!(row.text(0), token);
            assert!(!token.contains(&row.text(0)));
        }
        assert!(rows_contain_hash(&app, &partnerdb_service::auth::token_hash(&token)).await);
    }
}

async fn rows_contain_hash(app: &partnerdb_testkit::TestApp, hash: &str) -> bool {
    let mut sql = app.service.db().sql();
    sql.push("SELECT COUNT(*) FROM credentials WHERE token_hash = ")
        .bind(hash);
    app.service.db().fetch_all(&sql).await.unwrap()[0].int(0) == 1
}

#[tokio::test]
async fn api_clients_are_bound_to_one_existing_partner() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let missing = app
            .post(
                "/v1/principals",
                &app.admin_token,
                &json!({"name": "p", "kind": "api_client"}),
            )
            .await;
        assert_eq!(
            (missing.status, missing.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("missing_field"))
        );
        let nowhere = app
            .post(
                "/v1/principals",
                &app.admin_token,
                &json!({"name": "p", "kind": "api_client", "partner_id": "nope"}),
            )
            .await;
        assert_eq!(
            nowhere.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend:?} {:?}",
            nowhere.body
        );
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        let (id, token) = app
            .principal("portal", &["api_client"], Some(pid), json!({}))
            .await;
        let me = app.get("/v1/me", &token).await;
        assert_eq!(me.body["partner_id"], pid);
        assert_eq!(me.body["kind"], "api_client");
        assert!(
            me.body["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["narrowed_to_partner"] == true
                    || !p["permission"].as_str().unwrap().starts_with("partner"))
        );
        let user_with_partner = app
            .post(
                "/v1/principals",
                &app.admin_token,
                &json!({"name": "u", "partner_id": pid}),
            )
            .await;
        assert_eq!(user_with_partner.status, StatusCode::BAD_REQUEST);
        let _ = id;
    }
}

#[tokio::test]
async fn another_servers_revocation_reaches_this_one_within_a_second() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (id, token) = app
            .principal("reader", &["read_only"], None, json!({}))
            .await;
        assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
        // A second server on the same database revokes the token.
        let other = partnerdb_service::Service::open(
            app.service.db().clone(),
            app.clock.clone(),
            partnerdb_service::audit::AuditConfig::default(),
        )
        .await
        .unwrap();
        let admin = other.authenticate(&app.admin_token).await.unwrap();
        let credential = other.list_credentials(&admin, &id).await.unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        other
            .revoke_credential(&admin, &id, &credential)
            .await
            .unwrap();
        assert!(
            other.authenticate(&token).await.is_err(),
            "{backend:?}: at once where revoked"
        );
        // This server may still accept it from its cache, for at most the
        // cache's lifetime.
        app.clock
            .advance(jiff::SignedDuration::try_from(partnerdb_service::AUTH_CACHE_TTL).unwrap());
        assert_eq!(
            app.get("/v1/me", &token).await.status,
            StatusCode::UNAUTHORIZED,
            "{backend:?}"
        );
    }
}

/// What principal changes leave in the trail: a creation its attributes,
/// a role bound twice the second time `bound: false`, a deletion the
/// roles and credentials that went with it.
#[tokio::test]
async fn principal_events_say_what_changed() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (id, _) = app
            .principal("fin", &["finance"], None, json!({"region": "emea"}))
            .await;
        for _ in 0..2 {
            let bound = app
                .put(
                    &format!("/v1/principals/{id}/roles/analyst"),
                    &app.admin_token,
                )
                .await;
            assert!(bound.status.is_success(), "{:?}", bound.body);
        }
        let credentials = app
            .get(
                &format!("/v1/principals/{id}/credentials"),
                &app.admin_token,
            )
            .await;
        let credential = credentials.body["items"][0]["id"]
            .as_str()
            .or_else(|| credentials.body[0]["id"].as_str())
            .unwrap_or_else(|| panic!("{:?}", credentials.body))
            .to_owned();
        let deleted = app
            .delete(&format!("/v1/principals/{id}"), &app.admin_token)
            .await;
        assert!(deleted.status.is_success(), "{:?}", deleted.body);
        let trail = app
            .get(
                &format!("/v1/audit?resource=principal&resource_id={id}&limit=50"),
                &app.admin_token,
            )
            .await;
        let changes: Vec<&serde_json::Value> = trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "principal")
            .collect();
        let of = |action: &str| -> Vec<&serde_json::Value> {
            changes
                .iter()
                .filter(|e| e["action"] == action)
                .map(|e| &e["detail"])
                .collect()
        };
        let created = of("create");
        assert_eq!(
            created[0]["principal"]["attrs"],
            json!({"region": "emea"}),
            "{backend:?}: {created:?}"
        );
        // Newest first: the second bind bound nothing.
        let binds: Vec<&serde_json::Value> = of("assign")
            .into_iter()
            .filter(|d| d["role"] == "analyst")
            .collect();
        assert_eq!(binds.len(), 2, "{backend:?}: {changes:?}");
        assert_eq!(binds[0]["bound"], false, "{backend:?}");
        assert_eq!(binds[1]["bound"], true, "{backend:?}");
        let gone = of("delete");
        assert_eq!(
            gone[0]["roles_removed"],
            json!(["analyst", "finance"]),
            "{backend:?}: {gone:?}"
        );
        assert_eq!(gone[0]["credentials_revoked"], json!([credential]));
    }
}

/// A principal bound to a partner reaches that partner's principals only
/// (R15), whatever its roles let it read.
#[tokio::test]
async fn a_partner_bound_principal_reaches_its_partners_principals_only() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let a = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let b = app
            .record("partners", json!({"name": "B", "region": "emea"}))
            .await;
        let (a_reader, a_token) = app
            .principal("a reader", &["auditor"], a["id"].as_str(), json!({}))
            .await;
        let (b_client, _) = app
            .principal("b client", &["api_client"], b["id"].as_str(), json!({}))
            .await;
        let listed = app.get("/v1/principals", &a_token).await;
        assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
        let ids: Vec<&str> = listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [a_reader.as_str()], "{backend:?}");
        for path in [
            format!("/v1/principals/{b_client}"),
            format!("/v1/principals/{b_client}/credentials"),
            format!("/v1/principals/{}", app.admin_id),
        ] {
            let other = app.get(&path, &a_token).await;
            assert_eq!(other.status, StatusCode::NOT_FOUND, "{backend:?} {path}");
        }
        let own = app
            .get(&format!("/v1/principals/{a_reader}"), &a_token)
            .await;
        assert_eq!(own.status, StatusCode::OK, "{backend:?}");
    }
}
