//! `policy lint --usage` against a real deployment: principals made and
//! used through the API, then aged by moving their times back in the
//! database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{Server, init, partnerdb, starter_path as starter};
use partnerdb_store::{Db, DbOptions};
use serde_json::{Value, json};

#[test]
fn usage_findings_come_from_bindings_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let admin = init(&["--data", data_arg]);
    let server = Server::start(&["--data", data_arg]);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids = runtime.block_on(async {
        let client = reqwest::Client::new();
        server.ready(&client).await;
        let mut ids = Vec::new();
        for (name, roles) in [
            ("both", json!(["read_only", "read_write"])),
            ("idle", json!(["legal"])),
            ("active", json!(["read_only"])),
        ] {
            let created: Value = client
                .post(format!("{base}/v1/principals"))
                .bearer_auth(&admin)
                .json(&json!({"name": name, "roles": roles}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
        let issued: Value = client
            .post(format!("{base}/v1/principals/{}/credentials", ids[2]))
            .bearer_auth(&admin)
            .json(&json!({"expires_in_days": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = issued["token"].as_str().unwrap();
        // `active` reads partners (read_only#0) and nothing else.
        let listed = client
            .get(format!("{base}/v1/partners"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(listed.status().is_success());
        ids
    });
    server.stop();

    let lint = |days: &str| {
        let output = partnerdb()
            .args([
                "policy",
                "lint",
                &starter(),
                "--usage",
                "--data",
                data_arg,
                "--unused-days",
                days,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["code"].as_str().unwrap(),
                    f["message"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };

    // A young deployment: nothing is dormant or unused yet.
    let young = lint("30");
    assert!(
        young.iter().any(|f| f.starts_with("short-usage-history")),
        "{young:#?}"
    );
    assert!(
        !young
            .iter()
            .any(|f| f.starts_with("dormant") || f.starts_with("unused")),
        "{young:#?}"
    );
    assert!(
        young
            .iter()
            .any(|f| f == "role-without-principal no principal holds role \"finance\""),
        "{young:#?}"
    );
    assert!(
        !young
            .iter()
            .any(|f| f.contains("\"read_only\"") && f.starts_with("role-without")),
        "{young:#?}"
    );
    assert!(
        young.contains(&format!(
            "redundant-binding principal {} (both) holds role \"read_only\", which its role \"read_write\" already contains",
            ids[0]
        )),
        "{young:#?}"
    );
    assert!(
        young
            .iter()
            .any(|f| f.starts_with("too-few-administrators 1 principal")),
        "{young:#?}"
    );

    // Age the deployment: the trail and the principals began in 2020.
    runtime.block_on(async {
        let db = Db::connect(
            &format!("sqlite://{}", data.join("partnerdb.db").display()),
            &DbOptions::default(),
        )
        .await
        .unwrap();
        for statement in [
            "UPDATE audit_events SET at = '2020-01-01T00:00:00Z' WHERE seq = 1",
            "UPDATE principals SET created_at = '2020-01-01T00:00:00Z'",
        ] {
            let mut tx = db.begin().await.unwrap();
            let mut sql = tx.sql();
            sql.push(statement);
            tx.execute(&sql).await.unwrap();
            tx.commit().await.unwrap();
        }
        db.close().await;
    });
    let old = lint("30");
    let dormant: Vec<&String> = old
        .iter()
        .filter(|f| f.starts_with("dormant-principal"))
        .collect();
    assert_eq!(dormant.len(), 2, "{old:#?}");
    assert!(
        dormant.iter().any(|f| f.contains(&ids[0])) && dormant.iter().any(|f| f.contains(&ids[1])),
        "{old:#?}"
    );
    for role in ["legal", "read_write"] {
        assert!(
            old.iter()
                .any(|f| f.starts_with(&format!("unused-role role \"{role}\""))),
            "{old:#?}"
        );
    }
    assert!(
        !old.iter()
            .any(|f| f.starts_with("unused-role role \"read_only\"")),
        "{old:#?}"
    );
    assert!(
        !old.iter()
            .any(|f| f.starts_with("unused-role role \"admin\"")),
        "{old:#?}"
    );
    let unused_grants: Vec<&String> = old
        .iter()
        .filter(|f| f.starts_with("unused-grant grant read_only#"))
        .collect();
    assert_eq!(unused_grants.len(), 3, "{old:#?}");
    assert!(
        !unused_grants.iter().any(|f| f.contains("read_only#0")),
        "{old:#?}"
    );
    assert!(
        !old.iter().any(|f| f.starts_with("short-usage-history")),
        "{old:#?}"
    );
}
