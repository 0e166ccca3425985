//! `policy propose | approve | history | show` against a real server: the
//! token from the environment or a file (never the command line), the
//! elevation from a file, refusals as exit status 1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::process::Output;

use common::{Server, init, partnerdb, starter_path};
use serde_json::{Value, json};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn versions_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let admin = init(&["--data", data_arg]);
    let server = Server::start(&["--data", data_arg]);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A second administrator with an approved elevation for policy:apply.
    let (second, elevation) = runtime.block_on(async {
        let client = reqwest::Client::new();
        server.ready(&client).await;
        let post = |token: String, path: String, body: Value| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let answer = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{path}: {}", answer.status());
                answer.json::<Value>().await.unwrap()
            }
        };
        let created = post(admin.clone(), "/v1/principals".into(), json!({"name": "second", "roles": ["admin"]})).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let credential = post(admin.clone(), format!("/v1/principals/{id}/credentials"), json!({})).await;
        let second = credential["token"].as_str().unwrap().to_owned();
        let asked = post(
            second.clone(),
            "/v1/elevations".into(),
            json!({"permissions": ["policy:apply"], "reason": "apply version 2", "ttl_seconds": 600}),
        )
        .await;
        let eid = asked["id"].as_str().unwrap().to_owned();
        post(admin.clone(), format!("/v1/elevations/{eid}/approve"), json!({})).await;
        let activated = post(second.clone(), format!("/v1/elevations/{eid}/activate"), json!({})).await;
        (second, activated["token"].as_str().unwrap().to_owned())
    });

    let policy = dir.path().join("policy.toml");
    let starter = std::fs::read_to_string(starter_path()).unwrap();
    std::fs::write(&policy, format!("{starter}\n# reviewed 2026-12\n")).unwrap();
    let policy_arg = policy.to_str().unwrap();

    // No token: refused before anything is sent (exit 2), and never a flag.
    let missing = partnerdb()
        .args([
            "policy", "propose", policy_arg, "-m", "x", "--server", &base,
        ])
        .env_remove("PARTNERDB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("PARTNERDB_TOKEN"));

    let proposed = partnerdb()
        .args([
            "policy",
            "propose",
            policy_arg,
            "-m",
            "add a review note",
            "--server",
            &base,
        ])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(proposed.status.success(), "{}", text(&proposed));
    assert!(
        text(&proposed).contains("version 2  proposed"),
        "{}",
        text(&proposed)
    );

    // An invalid policy is refused by the server: exit 1, the rule named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\nname = 1\n").unwrap();
    let refused = partnerdb()
        .args([
            "policy",
            "propose",
            bad.to_str().unwrap(),
            "-m",
            "broken",
            "--server",
            &base,
        ])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("policy_invalid"),
        "{}",
        text(&refused)
    );

    // Approved by the second administrator, token and elevation from files.
    let token_file = dir.path().join("second.token");
    let elevation_file = dir.path().join("second.elevation");
    std::fs::write(&token_file, format!("{second}\n")).unwrap();
    std::fs::write(&elevation_file, &elevation).unwrap();
    let approved = partnerdb()
        .args([
            "policy",
            "approve",
            "2",
            "--server",
            &base,
            "--token-file",
            token_file.to_str().unwrap(),
            "--elevation-file",
            elevation_file.to_str().unwrap(),
        ])
        .env_remove("PARTNERDB_TOKEN")
        .output()
        .unwrap();
    assert!(approved.status.success(), "{}", text(&approved));
    assert!(
        text(&approved).contains("version 2  active"),
        "{}",
        text(&approved)
    );

    let history = partnerdb()
        .args(["policy", "history", "--server", &base, "--json"])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    let page: Value = serde_json::from_slice(&history.stdout).unwrap();
    let states: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "superseded"]);
    let shown = partnerdb()
        .args(["policy", "show", "2", "--server", &base])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(text(&shown).contains("# reviewed 2026-12"));
    // A plan of a version that changes no permission: exit 0.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, &starter).unwrap();
    let proposed = partnerdb()
        .args([
            "policy",
            "propose",
            plain.to_str().unwrap(),
            "-m",
            "drop the note",
            "--server",
            &base,
        ])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(proposed.status.success(), "{}", text(&proposed));
    let plan = partnerdb()
        .args(["policy", "plan", "3", "--days", "1", "--server", &base])
        .env("PARTNERDB_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        text(&plan).contains("0 allow→deny, 0 deny→allow"),
        "{}",
        text(&plan)
    );
    assert!(text(&plan).contains("lockout: ok"), "{}", text(&plan));
    server.stop();
}
