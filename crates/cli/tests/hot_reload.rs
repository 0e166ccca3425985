//! Three server processes on one PostgreSQL database under continuous
//! load: a policy version approved through one is enforced by all three
//! within a second, and no request is decided by a mix of versions (each
//! recorded decision agrees with the version its event names).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, init, starter_path};
use partnerdb_testkit::{Backend, database};
use serde_json::{Value, json};

const ANALYST: &str = r#"grants = [ { on = "metrics", can = ["read"] } ]"#;

#[test]
fn three_servers_switch_within_a_second_and_never_mix_versions() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(database(Backend::Postgres)) else {
        eprintln!("PostgreSQL skipped: PARTNERDB_TEST_PG_URL is not set");
        return;
    };
    let url = format!(
        "{}?options=-c%20search_path%3D{}",
        db.url,
        db.schema.as_deref().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let key_arg = key.to_str().unwrap();
    let admin = init(&["--database-url", &url, "--signing-key", key_arg]);
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&["--database-url", &url, "--signing-key", key_arg]))
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let starter = std::fs::read_to_string(starter_path()).unwrap();
    assert!(starter.contains(ANALYST));
    let candidate = starter.replace(
        ANALYST,
        r#"grants = [ { on = "metrics", can = ["read"] }, { on = "partner", can = ["read"], fields = ["general"] } ]"#,
    );

    runtime.block_on(async move {
        let client = reqwest::Client::new();
        for server in &servers {
            server.ready(&client).await;
        }
        let call = |method: reqwest::Method,
                    base: String,
                    path: String,
                    token: String,
                    body: Option<Value>,
                    elevation: Option<String>| {
            let client = client.clone();
            async move {
                let mut request = client
                    .request(method, format!("{base}{path}"))
                    .bearer_auth(token);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                if let Some(elevation) = elevation {
                    request = request.header("x-partnerdb-elevation", elevation);
                }
                let answer = request.send().await.unwrap();
                let status = answer.status();
                (status, answer.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let post = |base: &str, path: &str, token: &str, body: Value| {
            call(
                reqwest::Method::POST,
                base.to_owned(),
                path.to_owned(),
                token.to_owned(),
                Some(body),
                None,
            )
        };
        let one = bases[0].clone();
        let (_, partner) = post(
            &one,
            "/v1/partners",
            &admin,
            json!({"name": "P", "region": "emea"}),
        )
        .await;
        let partner = partner["id"].as_str().unwrap().to_owned();
        let (_, analyst) = post(
            &one,
            "/v1/principals",
            &admin,
            json!({"name": "an", "roles": ["analyst"]}),
        )
        .await;
        let analyst_id = analyst["id"].as_str().unwrap().to_owned();
        let (_, credential) = post(
            &one,
            &format!("/v1/principals/{analyst_id}/credentials"),
            &admin,
            json!({}),
        )
        .await;
        let analyst = credential["token"].as_str().unwrap().to_owned();
        let (_, second) = post(
            &one,
            "/v1/principals",
            &admin,
            json!({"name": "second", "roles": ["admin"]}),
        )
        .await;
        let second_id = second["id"].as_str().unwrap().to_owned();
        let (_, credential) = post(
            &one,
            &format!("/v1/principals/{second_id}/credentials"),
            &admin,
            json!({}),
        )
        .await;
        let second = credential["token"].as_str().unwrap().to_owned();
        let (_, asked) = post(
            &one,
            "/v1/elevations",
            &second,
            json!({"permissions": ["policy:apply"], "reason": "r", "ttl_seconds": 600}),
        )
        .await;
        let eid = asked["id"].as_str().unwrap().to_owned();
        post(
            &one,
            &format!("/v1/elevations/{eid}/approve"),
            &admin,
            json!({}),
        )
        .await;
        let (_, active) = post(
            &one,
            &format!("/v1/elevations/{eid}/activate"),
            &second,
            json!({}),
        )
        .await;
        let elevation = active["token"].as_str().unwrap().to_owned();
        let (status, proposed) = post(
            &one,
            "/v1/policy/versions",
            &admin,
            json!({"content": candidate, "message": "analysts read partners"}),
        )
        .await;
        assert!(status.is_success(), "{proposed}");
        let number = proposed["number"].as_i64().unwrap();
        let new_hash = proposed["hash"].as_str().unwrap().to_owned();

        // Continuous load on all three: the analyst reads the partner.
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for base in bases.clone() {
            let (client, stop, analyst, partner) = (
                client.clone(),
                stop.clone(),
                analyst.clone(),
                partner.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let status = client
                        .get(format!("{base}/v1/partners/{partner}"))
                        .bearer_auth(&analyst)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    answers.push((sent, status.as_u16()));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                answers
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, approved) = call(
            reqwest::Method::POST,
            one.clone(),
            format!("/v1/policy/versions/{number}/approve"),
            second.clone(),
            Some(json!({})),
            Some(elevation),
        )
        .await;
        assert!(status.is_success(), "{approved}");
        let approved_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.store(true, Ordering::Relaxed);
        for (server, task) in load.into_iter().enumerate() {
            let answers = task.await.unwrap();
            assert!(
                answers.iter().any(|(_, s)| *s == 404),
                "server {server}: some reads before"
            );
            // Every read sent a second or more after the approval answered
            // is decided by the new version.
            let late: Vec<_> = answers
                .iter()
                .filter(|(sent, _)| *sent >= approved_at + Duration::from_secs(1))
                .collect();
            assert!(!late.is_empty());
            assert!(
                late.iter().all(|(_, s)| *s == 200),
                "server {server} still refused a second after the approval"
            );
        }

        // No mix: each recorded decision agrees with the version it names.
        let mut cursor: Option<String> = None;
        let mut checked = 0;
        loop {
            let mut path = format!("/v1/audit?principal={analyst_id}&resource=partner&limit=500");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = call(
                reqwest::Method::GET,
                one.clone(),
                path,
                admin.clone(),
                None,
                None,
            )
            .await;
            assert!(status.is_success(), "{page}");
            for event in page["items"].as_array().unwrap() {
                let allowed = event["decision"] == "allow";
                let new = event["policy_version"] == new_hash.as_str();
                assert_eq!(
                    allowed, new,
                    "a decision disagrees with its version: {event}"
                );
                checked += 1;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert!(checked > 100, "{checked}");
    });
}
