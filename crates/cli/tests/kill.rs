//! SIGKILL in the middle of a stream of writes (creates and updates):
//! after a restart, every acknowledged write has its record and its audit
//! event, no event lacks its write, and the chain verifies; and in the middle of a stream of
//! reads answered at their event's commit: every answered read has its
//! event. And every start is recorded with how durable its read events
//! are.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, init, partnerdb};

/// A data directory made by `init`, its admin token, and a client.
struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    token: String,
    client: reqwest::Client,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&["--data", data.to_str().unwrap()]);
    Setup {
        _dir: dir,
        data,
        token,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    }
}

/// `partnerdb serve --data DIR MORE…`, ready.
async fn serve(setup: &Setup, more: &[&str]) -> Server {
    let mut args = vec!["--data", setup.data.to_str().unwrap()];
    args.extend_from_slice(more);
    let server = Server::start(&args);
    server.ready(&setup.client).await;
    server
}

/// The JSON answer to a request.
async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Every item of a listing, page after page (`path` has a query).
async fn all_items(setup: &Setup, base: &str, path: &str) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}{path}&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json(setup.client.get(&url).bearer_auth(&setup.token)).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// SIGKILLs the server once `done` holds `count` answers, then lets the
/// clients' tasks see their requests fail.
async fn kill_once(
    server: Server,
    done: &Mutex<BTreeSet<String>>,
    count: usize,
    clients: Vec<tokio::task::JoinHandle<()>>,
) {
    while done.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop();
    for client in clients {
        let _ = client.await;
    }
}

/// `audit verify` passes on the data directory.
fn assert_verifies(data: &Path) {
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
}

#[test]
fn acknowledged_writes_survive_sigkill_with_their_events() {
    let setup = setup();
    let (client, token) = (&setup.client, &setup.token);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let server = runtime.block_on(serve(&setup, &[]));
    let base = server.base.clone();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    // Partners whose rename (an update, after its create) was answered.
    let renamed = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    runtime.block_on(async {
        let mut writers = Vec::new();
        for w in 0..8 {
            let (client, base, token, acknowledged, renamed) = (
                client.clone(),
                base.clone(),
                token.clone(),
                acknowledged.clone(),
                renamed.clone(),
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
                    let id = created["id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().insert(id.clone());
                    let Ok(response) = client
                        .patch(format!("{base}/v1/partners/{id}"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"name": format!("w{w}-{i} renamed")}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() != reqwest::StatusCode::OK
                        || response.bytes().await.is_err()
                    {
                        return;
                    }
                    renamed.lock().unwrap().insert(id);
                }
            }));
        }
        // Let the writes flow, then kill the server mid-stream.
        kill_once(server, &acknowledged, 150, writers).await;
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    let renamed = renamed.lock().unwrap().clone();
    assert!(!renamed.is_empty());

    // The chain verifies after the crash.
    assert_verifies(&setup.data);

    let (records, created_events, renamed_records, renamed_events) = runtime.block_on(async {
        let server = serve(&setup, &[]).await;
        let partners = all_items(&setup, &server.base, "/v1/partners?").await;
        let records: BTreeSet<String> = partners
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        let renamed_records: BTreeSet<String> = partners
            .iter()
            .filter(|p| p["name"].as_str().unwrap().ends_with(" renamed"))
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        let renamed_events: BTreeSet<String> = all_items(
            &setup,
            &server.base,
            "/v1/audit?resource=partner&action=update&decision=allow",
        )
        .await
        .iter()
        .filter(|e| e["kind"] == "change")
        .map(|e| e["resource_id"].as_str().unwrap().to_owned())
        .collect();
        let events: BTreeSet<String> = all_items(
            &setup,
            &server.base,
            "/v1/audit?resource=partner&action=create&decision=allow",
        )
        .await
        .iter()
        .filter(|e| e["kind"] == "change")
        .map(|e| e["resource_id"].as_str().unwrap().to_owned())
        .collect();
        server.stop();
        (records, events, renamed_records, renamed_events)
    });
    assert!(
        renamed.is_subset(&renamed_records),
        "an acknowledged update was lost"
    );
    assert_eq!(
        renamed_events, renamed_records,
        "every update has its event and every event its update"
    );
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
    // And still after the restart, which appended to the chain (its start
    // and the reads above).
    assert_verifies(&setup.data);
}

/// Reads answered once their event is committed, not yet synced
/// (`--read-event-durability commit`): a crash of the server loses none
/// of their events (what is committed is in the operating system's
/// hands), and the chain verifies.
#[test]
fn reads_answered_at_the_commit_keep_their_events_through_sigkill() {
    let setup = setup();
    let (client, token) = (&setup.client, &setup.token);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(serve(&setup, &["--read-event-durability", "commit"]));
    let base = server.base.clone();
    let partner = runtime.block_on(async {
        let created = json(
            client
                .post(format!("{base}/v1/partners"))
                .bearer_auth(token)
                .json(&serde_json::json!({"name": "read me", "region": "emea"})),
        )
        .await;
        created["id"].as_str().unwrap().to_owned()
    });
    // Each read carries its own request id; the answered ones are kept.
    let answered = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    runtime.block_on(async {
        let mut readers = Vec::new();
        for r in 0..8 {
            let (client, url, token, answered) = (
                client.clone(),
                format!("{base}/v1/partners/{partner}"),
                token.clone(),
                answered.clone(),
            );
            readers.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("read-{r}-{i}");
                    let Ok(response) = client
                        .get(&url)
                        .bearer_auth(&token)
                        .header("x-request-id", &id)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if response.status() != reqwest::StatusCode::OK
                        || response.bytes().await.is_err()
                    {
                        return;
                    }
                    answered.lock().unwrap().insert(id);
                }
            }));
        }
        kill_once(server, &answered, 1000, readers).await;
    });
    let answered = answered.lock().unwrap().clone();
    assert_verifies(&setup.data);

    let recorded: BTreeSet<String> = runtime.block_on(async {
        let server = serve(&setup, &[]).await;
        let recorded = all_items(
            &setup,
            &server.base,
            &format!("/v1/audit?resource=partner&resource_id={partner}&action=read"),
        )
        .await
        .iter()
        .filter_map(|e| e["detail"]["request"]["id"].as_str().map(str::to_owned))
        .collect();
        server.stop();
        recorded
    });
    let lost: Vec<&String> = answered.difference(&recorded).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered reads have no event, e.g. {:?}",
        lost.len(),
        answered.len(),
        lost.first()
    );
    assert_verifies(&setup.data);
}

/// Every start is in the trail with how durable its read events are, so
/// that an auditor can tell which of them a crash of the operating system
/// could have lost.
#[test]
fn each_start_records_how_durable_its_read_events_are() {
    let setup = setup();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The default, then the other mode.
    runtime.block_on(serve(&setup, &[])).stop();
    let server = runtime.block_on(serve(&setup, &["--read-event-durability", "disk"]));
    let starts = runtime.block_on(all_items(&setup, &server.base, "/v1/audit?action=start"));
    let recorded: Vec<(&str, &str, &str)> = starts
        .iter()
        .map(|event| {
            (
                event["resource_type"].as_str().unwrap(),
                event["decision"].as_str().unwrap(),
                event["detail"]["read_event_durability"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        recorded,
        [("server", "allow", "disk"), ("server", "allow", "commit")],
        "{starts:#?}"
    );
    assert!(
        starts
            .iter()
            .all(|event| event["principal_id"].is_null() && event["kind"] == "service"),
        "{starts:#?}"
    );
    server.stop();
    assert_verifies(&setup.data);
}
