//! Records through the API on both backends: lists with filters, sort and
//! cursors; ETags; idempotent creates; nested routes; and bad input of
//! every kind answered with a 4xx problem, never a 500 and never a partial
//! write.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use partnerdb_testkit::{BACKENDS, spawn};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Status, content type and body of a raw request.
type RawAnswer = (StatusCode, Option<String>, Value);

/// One text field of every item of a page.
fn field(page: &Value, name: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[name].as_str().unwrap().to_owned())
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    field(page, "id")
}

#[tokio::test]
async fn lists_page_through_everything_with_bound_cursors() {
    fn region(i: usize) -> &'static str {
        match i {
            _ if i.is_multiple_of(5) => "emea",
            _ if i.is_multiple_of(2) => "apac",
            _ => "amer",
        }
    }
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, pm_token) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let mut mine = Vec::new();
        for i in 0..23 {
            let owner = if i % 3 == 0 {
                "someone-else".to_owned()
            } else {
                pm.clone()
            };
            let p = app
                .record("partners", json!({"name": format!("P{:02}", 22 - i), "region": region(i), "owner": owner, "status": if i % 4 == 0 { "active" } else { "prospect" }}))
                .await;
            // The manager reaches its own partners and those of its
            // region: some partners by one way, some by both.
            if i % 3 != 0 || region(i) == "emea" {
                mine.push(p["id"].as_str().unwrap().to_owned());
            }
        }
        // Page through by name, three at a time.
        let mut seen = Vec::new();
        let mut names = Vec::new();
        let mut path = "/v1/partners?sort=name&limit=3".to_owned();
        let mut first_cursor = None;
        loop {
            let page = app.get(&path, &pm_token).await;
            assert_eq!(page.status, StatusCode::OK, "{backend:?} {:?}", page.body);
            seen.extend(ids(&page.body));
            names.extend(field(&page.body, "name"));
            match page.body["next_cursor"].as_str() {
                Some(cursor) => {
                    first_cursor.get_or_insert(cursor.to_owned());
                    path = format!("/v1/partners?sort=name&limit=3&cursor={cursor}");
                }
                None => break,
            }
        }
        let mut expected = mine.clone();
        expected.sort();
        let mut got = seen.clone();
        got.sort();
        assert_eq!(got, expected, "{backend:?}: every own partner exactly once");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{backend:?}: in name order");
        // The same, newest name first.
        let mut back = Vec::new();
        let mut path = "/v1/partners?sort=-name&limit=4".to_owned();
        loop {
            let page = app.get(&path, &pm_token).await;
            back.extend(field(&page.body, "name"));
            match page.body["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/partners?sort=-name&limit=4&cursor={cursor}"),
                None => break,
            }
        }
        sorted.reverse();
        assert_eq!(
            back, sorted,
            "{backend:?}: in reverse name order, each once"
        );

        // A cursor only works for the list it was issued for.
        let cursor = first_cursor.unwrap();
        for other in [
            format!("/v1/partners?sort=-name&limit=3&cursor={cursor}"),
            format!("/v1/partners?sort=name&limit=3&status=active&cursor={cursor}"),
            format!("/v1/contacts?sort=name&limit=3&cursor={cursor}").replace("sort=name&", ""),
        ] {
            let refused = app.get(&other, &pm_token).await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{backend:?} {other}"
            );
            assert_eq!(refused.body["code"], "invalid_cursor");
        }
        let stolen = app
            .get(
                &format!("/v1/partners?sort=name&limit=3&cursor={cursor}"),
                &app.admin_token,
            )
            .await;
        assert_eq!(
            stolen.body["code"], "invalid_cursor",
            "{backend:?}: another principal's cursor"
        );

        // Filters and descending order.
        let active = app
            .get(
                "/v1/partners?status=active&sort=-created_at",
                &app.admin_token,
            )
            .await;
        let statuses = field(&active.body, "status");
        assert_eq!(statuses.len(), 6, "{backend:?}");
        assert!(statuses.iter().all(|s| s == "active"));
        let created = field(&active.body, "created_at");
        let mut desc = created.clone();
        desc.sort_by(|a, b| b.cmp(a));
        assert_eq!(created, desc);
    }
}

#[tokio::test]
async fn transactions_filter_on_amounts_and_times() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap();
        for (amount, day) in [(100, 1), (250, 2), (999, 3), (5000, 4)] {
            app.record(
                "transactions",
                json!({"partner_id": pid, "kind": "invoice", "occurred_at": format!("2026-03-0{day}T10:00:00+02:00"), "amount": amount, "currency": "EUR"}),
            )
            .await;
        }
        let mid = app
            .get(
                "/v1/transactions?amount.gte=250&amount.lt=5000&sort=amount",
                &app.admin_token,
            )
            .await;
        let amounts: Vec<i64> = mid.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["amount"].as_i64().unwrap())
            .collect();
        assert_eq!(amounts, [250, 999], "{backend:?}");
        let late = app
            .get(
                "/v1/transactions?occurred_at.gt=2026-03-02T09:00:00Z",
                &app.admin_token,
            )
            .await;
        assert_eq!(
            late.body["items"].as_array().unwrap().len(),
            2,
            "{backend:?}: times compare in UTC"
        );
        let nested = app
            .get(
                &format!("/v1/partners/{pid}/transactions?limit=2"),
                &app.admin_token,
            )
            .await;
        assert_eq!(nested.body["items"].as_array().unwrap().len(), 2);
        assert!(nested.body["next_cursor"].is_string());
        // Stored times are normalised to UTC.
        assert_eq!(
            late.body["items"][0]["occurred_at"].as_str().unwrap().len(),
            27
        );
    }
}

#[tokio::test]
async fn idempotent_creates_replay_and_refuse_other_bodies() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let body = json!({"name": "Once", "region": "emea"});
        let key = [("idempotency-key", "create-once-1")];
        let first = app
            .request(
                Method::POST,
                "/v1/partners",
                Some(&app.admin_token),
                Some(&body),
                &key,
            )
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        let again = app
            .request(
                Method::POST,
                "/v1/partners",
                Some(&app.admin_token),
                Some(&body),
                &key,
            )
            .await;
        assert_eq!(again.status, StatusCode::CREATED, "{backend:?}");
        assert_eq!(again.body, first.body, "{backend:?}: the same answer");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        let other = app
            .request(
                Method::POST,
                "/v1/partners",
                Some(&app.admin_token),
                Some(&json!({"name": "Twice", "region": "emea"})),
                &key,
            )
            .await;
        assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(other.body["code"], "idempotency_key_reused");
        let list = app.get("/v1/partners", &app.admin_token).await;
        assert_eq!(
            list.body["items"].as_array().unwrap().len(),
            1,
            "{backend:?}: created once"
        );
        // Keys are per principal: another principal's same key is its own.
        let (_, token) = app.principal("rw", &["read_write"], None, json!({})).await;
        let theirs = app
            .request(
                Method::POST,
                "/v1/partners",
                Some(&token),
                Some(&body),
                &key,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::CREATED);
        assert_ne!(theirs.body["id"], first.body["id"]);
        // Kept 24 hours.
        app.clock.advance(jiff::SignedDuration::from_hours(25));
        let later = app
            .request(
                Method::POST,
                "/v1/partners",
                Some(&app.admin_token),
                Some(&body),
                &key,
            )
            .await;
        assert_eq!(later.status, StatusCode::CREATED);
        assert_ne!(
            later.body["id"], first.body["id"],
            "{backend:?}: an expired key is a new request"
        );
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_once() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let app = std::sync::Arc::new(app);
        let mut handles = Vec::new();
        for _ in 0..8 {
            let app = app.clone();
            handles.push(tokio::spawn(async move {
                app.request(
                    Method::POST,
                    "/v1/partners",
                    Some(&app.admin_token),
                    Some(&json!({"name": "Race", "region": "emea"})),
                    &[("idempotency-key", "race")],
                )
                .await
            }));
        }
        let mut ids = std::collections::BTreeSet::new();
        for handle in handles {
            let answer = handle.await.unwrap();
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "{backend:?} {:?}",
                answer.body
            );
            ids.insert(answer.body["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn bad_input_answers_problems_and_writes_nothing() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let token = app.admin_token.clone();
        let partner = app
            .record("partners", json!({"name": "A", "region": "emea"}))
            .await;
        let pid = partner["id"].as_str().unwrap().to_owned();
        let raw = |method: Method, path: String, body: String, content_type: &'static str| {
            let app = &app;
            let token = token.clone();
            async move {
                let client = reqwest::Client::new();
                let response = client
                    .request(method, format!("{}{path}", app.base))
                    .bearer_auth(token)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let ct = response
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: Value =
                    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
                (status, ct, body)
            }
        };
        let cases: Vec<(StatusCode, &str, RawAnswer)> = vec![
            (StatusCode::BAD_REQUEST, "invalid_json", raw(Method::POST, "/v1/partners".into(), "{\"name\": ".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_body", raw(Method::POST, "/v1/partners".into(), "[1, 2]".to_owned(), "application/json").await),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", raw(Method::POST, "/v1/partners".into(), "name=x".to_owned(), "application/x-www-form-urlencoded").await),
            (StatusCode::BAD_REQUEST, "wrong_type", raw(Method::POST, "/v1/partners".into(), "{\"name\": 5, \"region\": \"emea\"}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "unknown_field", raw(Method::POST, "/v1/partners".into(), "{\"name\": \"x\", \"region\": \"emea\", \"nmae\": 1}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "missing_field", raw(Method::POST, "/v1/partners".into(), "{\"name\": \"x\"}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_value", raw(Method::POST, "/v1/partners".into(), "{\"name\": \"x\", \"region\": \"emea\", \"status\": \"dancing\"}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "wrong_type", raw(Method::POST, "/v1/partners".into(), "{\"name\": \"x\", \"region\": \"emea\", \"credit_limit\": 10.5}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_value", raw(Method::POST, "/v1/partners".into(), "{\"name\": \"x\", \"region\": \"emea\", \"credit_currency\": \"euro\"}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "value_too_long", raw(Method::POST, "/v1/partners".into(), format!("{{\"name\": \"{}\", \"region\": \"emea\"}}", "x".repeat(201)), "application/json").await),
            (StatusCode::BAD_REQUEST, "null_not_allowed", raw(Method::PATCH, format!("/v1/partners/{pid}"), "{\"name\": null}".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "missing_field", raw(Method::POST, "/v1/contacts".into(), "{\"name\": \"x\"}".to_owned(), "application/json").await),
            (StatusCode::NOT_FOUND, "not_found", raw(Method::POST, "/v1/contacts".into(), "{\"name\": \"x\", \"partner_id\": \"nope\"}".to_owned(), "application/json").await),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference", raw(Method::POST, "/v1/transactions".into(), format!("{{\"partner_id\": \"{pid}\", \"kind\": \"invoice\", \"occurred_at\": \"2026-01-01T00:00:00Z\", \"amount\": 1, \"currency\": \"EUR\", \"contract_id\": \"nope\"}}"), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_value", raw(Method::POST, "/v1/transactions".into(), format!("{{\"partner_id\": \"{pid}\", \"kind\": \"invoice\", \"occurred_at\": \"last tuesday\", \"amount\": 1, \"currency\": \"EUR\"}}"), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_id", raw(Method::GET, "/v1/partners/a%20b".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_cursor", raw(Method::GET, "/v1/partners?cursor=xyz".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_limit", raw(Method::GET, "/v1/partners?limit=100000".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_limit", raw(Method::GET, "/v1/partners?limit=-1".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "unknown_parameter", raw(Method::GET, "/v1/partners?colour=red".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_sort", raw(Method::GET, "/v1/partners?sort=website".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "invalid_filter", raw(Method::GET, "/v1/partners?name.gt=a".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "wrong_type", raw(Method::GET, "/v1/transactions?amount.gt=lots".into(), "".to_owned(), "application/json").await),
            (StatusCode::BAD_REQUEST, "too_many_filters", raw(Method::GET, format!("/v1/partners?{}", (0..17).map(|i| format!("owner=x{i}")).collect::<Vec<_>>().join("&")), String::new(), "application/json").await),
            (StatusCode::NOT_FOUND, "no_route", raw(Method::GET, "/v1/nothing".into(), "".to_owned(), "application/json").await),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", raw(Method::PUT, "/v1/partners".into(), "{}".to_owned(), "application/json").await),
        ];
        for (i, (status, code, (got_status, content_type, body))) in cases.into_iter().enumerate() {
            assert_eq!(got_status, status, "{backend:?} case {i} ({code}): {body}");
            assert_eq!(body["code"], code, "{backend:?} case {i}: {body}");
            assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{backend:?} case {i}"
            );
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        // The body limit.
        let big = format!(
            "{{\"name\": \"{}\", \"region\": \"emea\"}}",
            "x".repeat(2 << 20)
        );
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/partners", app.base))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{backend:?}"
        );
        // Nothing was written by any of them.
        let list = app.get("/v1/partners", &app.admin_token).await;
        assert_eq!(ids(&list.body), std::slice::from_ref(&pid), "{backend:?}");
        let contacts = app.get("/v1/contacts", &app.admin_token).await;
        assert!(contacts.body["items"].as_array().unwrap().is_empty());
        let unchanged = app
            .get(&format!("/v1/partners/{pid}"), &app.admin_token)
            .await;
        assert_eq!(unchanged.header("etag"), Some("\"1\""));
    }
}

#[tokio::test]
async fn moving_a_record_needs_both_partners_and_carries_the_owner() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (pm, pm_token) = app
            .principal("pm", &["partner_manager"], None, json!({"region": "emea"}))
            .await;
        let a = app
            .record(
                "partners",
                json!({"name": "A", "region": "emea", "owner": pm}),
            )
            .await;
        let b = app
            .record(
                "partners",
                json!({"name": "B", "region": "apac", "owner": "other"}),
            )
            .await;
        let contact = app
            .record("contacts", json!({"partner_id": a["id"], "name": "Jo"}))
            .await;
        let cid = contact["id"].as_str().unwrap();
        // The manager may not move it to a partner it cannot reach.
        let refused = app
            .patch(
                &format!("/v1/contacts/{cid}"),
                &pm_token,
                &json!({"partner_id": b["id"]}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::NOT_FOUND,
            "{backend:?}: the target partner is invisible"
        );
        // The admin may; the contact then follows B's owner.
        let moved = app
            .patch(
                &format!("/v1/contacts/{cid}"),
                &app.admin_token,
                &json!({"partner_id": b["id"]}),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK);
        assert_eq!(moved.body["owner"], "other");
        assert_eq!(
            app.get(&format!("/v1/contacts/{cid}"), &pm_token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        // Changing a partner's owner carries over to its records.
        let c2 = app
            .record("contacts", json!({"partner_id": a["id"], "name": "Kim"}))
            .await;
        let handed = app
            .patch(
                &format!("/v1/partners/{}", a["id"].as_str().unwrap()),
                &app.admin_token,
                &json!({"owner": "someone"}),
            )
            .await;
        assert_eq!(handed.status, StatusCode::OK);
        let c2_now = app
            .get(
                &format!("/v1/contacts/{}", c2["id"].as_str().unwrap()),
                &app.admin_token,
            )
            .await;
        assert_eq!(c2_now.body["owner"], "someone", "{backend:?}");
        assert_eq!(
            app.get(
                &format!("/v1/contacts/{}", c2["id"].as_str().unwrap()),
                &pm_token
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
    }
}

/// A delete removes the version it read and decided on, nothing newer:
/// what a server deletes after another changed or deleted the record is
/// refused (412), with no second event about a record already gone.
#[tokio::test]
async fn a_delete_removes_only_the_version_it_read() {
    use partnerdb_policy::ResourceType;
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "D", "region": "emea"}))
            .await;
        let created = app
            .record(
                "contacts",
                json!({"partner_id": partner["id"], "name": "Dee"}),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let renamed = app
            .patch(
                &format!("/v1/contacts/{id}"),
                &app.admin_token,
                &json!({"name": "Dee Two"}),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
        let db = app.service.db();
        // As another server that read version 1 before the rename.
        let mut tx = db.begin().await.unwrap();
        let current = partnerdb_store::records::get_in(&mut tx, ResourceType::Contact, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current.version, 2);
        assert!(
            !partnerdb_store::records::delete(&mut tx, ResourceType::Contact, &id, 1)
                .await
                .unwrap(),
            "{backend:?}: a stale version must not be deleted"
        );
        assert!(
            partnerdb_store::records::delete(&mut tx, ResourceType::Contact, &id, 2)
                .await
                .unwrap()
        );
        drop(tx);
        // Nothing was committed: the API still deletes it, once.
        let deleted = app
            .request(
                Method::DELETE,
                &format!("/v1/contacts/{id}"),
                Some(&app.admin_token),
                None,
                &[],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    }
}

/// A replay is answered only while the policy still allows the create it
/// replays: a caller whose role was taken away is refused, and the
/// refusal recorded.
#[tokio::test]
async fn a_replay_after_the_role_is_gone_is_refused() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let (id, token) = app.principal("rw", &["read_write"], None, json!({})).await;
        let body = json!({"name": "Once", "region": "emea"});
        let key = [("idempotency-key", "replayed-later")];
        let create = || {
            app.request(
                Method::POST,
                "/v1/partners",
                Some(&token),
                Some(&body),
                &key,
            )
        };
        assert_eq!(create().await.status, StatusCode::CREATED, "{backend:?}");
        let bound = app
            .put(
                &format!("/v1/principals/{id}/roles/read_only"),
                &app.admin_token,
            )
            .await;
        assert!(bound.status.is_success(), "{:?}", bound.body);
        let unbound = app
            .request(
                Method::DELETE,
                &format!("/v1/principals/{id}/roles/read_write"),
                Some(&app.admin_token),
                None,
                &[],
            )
            .await;
        assert!(unbound.status.is_success(), "{:?}", unbound.body);
        let replayed = create().await;
        assert_eq!(
            replayed.status,
            StatusCode::FORBIDDEN,
            "{backend:?}: {:?}",
            replayed.body
        );
        let denies = app
            .get(
                "/v1/audit?resource=partner&action=create&decision=deny",
                &app.admin_token,
            )
            .await;
        assert!(
            denies.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["principal_id"] == id.as_str()
                    && e["detail"]["idempotent_replay"] == true),
            "{backend:?}: {:?}",
            denies.body
        );
    }
}

/// A partner moved to another region (or owner) moves its children with
/// it, each as a new version: an `If-Match` from before the move is
/// stale.
#[tokio::test]
async fn a_child_moved_with_its_partner_is_a_new_version() {
    for backend in BACKENDS {
        let Some(app) = spawn(backend).await else {
            continue;
        };
        let partner = app
            .record("partners", json!({"name": "M", "region": "emea"}))
            .await;
        let contact = app
            .record(
                "contacts",
                json!({"partner_id": partner["id"], "name": "Moved"}),
            )
            .await;
        let path = format!("/v1/contacts/{}", contact["id"].as_str().unwrap());
        let before = app.get(&path, &app.admin_token).await;
        let etag = before.header("etag").unwrap().to_owned();
        let moved = app
            .patch(
                &format!("/v1/partners/{}", partner["id"].as_str().unwrap()),
                &app.admin_token,
                &json!({"region": "apac"}),
            )
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
        let stale = app
            .request(
                Method::PATCH,
                &path,
                Some(&app.admin_token),
                Some(&json!({"name": "Still"})),
                &[("if-match", &etag)],
            )
            .await;
        assert_eq!(
            stale.status,
            StatusCode::PRECONDITION_FAILED,
            "{backend:?}: {:?}",
            stale.body
        );
        let after = app.get(&path, &app.admin_token).await;
        assert_ne!(after.header("etag"), Some(etag.as_str()), "{backend:?}");
    }
}
