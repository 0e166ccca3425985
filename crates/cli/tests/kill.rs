//! SIGKILL in the middle of a stream of writes: after a restart, every
//! acknowledged write has its record and its audit event, no event lacks
//! its write, and the chain verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn partnerdb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_partnerdb"))
}

fn start(data: &std::path::Path, port: u16) -> Child {
    partnerdb()
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

#[test]
fn acknowledged_writes_survive_sigkill_with_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = partnerdb()
        .args(["init", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(init.status.success());
    let stdout = String::from_utf8(init.stdout).unwrap();
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("pdb_"))
        .unwrap()
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut server = start(&data, port);
    runtime.block_on(wait_ready(&client, &base));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    runtime.block_on(async {
        let mut writers = Vec::new();
        for w in 0..8 {
            let (client, base, token, acknowledged) = (
                client.clone(),
                base.clone(),
                token.clone(),
                acknowledged.clone(),
            );
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let body = serde_json::json!({"name": format!("w{w}-{i}"), "region": "emea"});
                    let Ok(response) = client
                        .post(format!("{base}/v1/partners"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() != reqwest::StatusCode::CREATED {
                        return;
                    }
                    let Ok(created) = response.json::<serde_json::Value>().await else {
                        return;
                    };
                    acknowledged
                        .lock()
                        .unwrap()
                        .insert(created["id"].as_str().unwrap().to_owned());
                }
            }));
        }
        // Let the writes flow, then kill the server mid-stream.
        while acknowledged.lock().unwrap().len() < 150 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill().unwrap();
        server.wait().unwrap();
        for writer in writers {
            let _ = writer.await;
        }
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 150);

    // The chain verifies after the crash.
    let verify = partnerdb()
        .args([
            "audit",
            "verify",
            "--data",
            data.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let mut server = start(&data, port);
    let (records, created_events) = runtime.block_on(async {
        wait_ready(&client, &base).await;
        let mut records = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/partners?limit=500");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            records.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut events = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url =
                format!("{base}/v1/audit?resource=partner&action=create&decision=allow&limit=500");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            events.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["kind"] == "change")
                    .map(|e| e["resource_id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        (records, events)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        acknowledged.is_subset(&records),
        "an acknowledged write was lost"
    );
    assert!(
        acknowledged.is_subset(&created_events),
        "an acknowledged write has no event"
    );
    assert_eq!(
        created_events, records,
        "every event has its write and every write its event"
    );
}
