//! `partnerdb audit tail` and `audit export` on a trail longer than one
//! page of the store's reads (1,000 events).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{Server, init, partnerdb};

fn run(args: &[&str]) -> String {
    let out = partnerdb().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs one statement on a data directory's SQLite database, in a
/// transaction (as a hand at the database would).
fn edit_sqlite(db_path: &std::path::Path, statement: &str) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = partnerdb_store::Db::connect(
            &format!("sqlite://{}", db_path.display()),
            &partnerdb_store::DbOptions::default(),
        )
        .await
        .unwrap();
        let mut tx = db.begin().await.unwrap();
        let mut sql = tx.sql();
        sql.push(statement);
        tx.execute(&sql).await.unwrap();
        tx.commit().await.unwrap();
    });
}

#[test]
fn tail_prints_the_latest_events_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let token = init(&["--data", data]);
    let server = Server::start(&["--data", data]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        server.ready(&client).await;
        // Each read is a decision event.
        for _ in 0..1_300 {
            let response = client
                .get(format!("{}/v1/partners?limit=1", server.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    });
    server.stop();

    let verify: serde_json::Value =
        serde_json::from_str(&run(&["audit", "verify", "--data", data, "--json"])).unwrap();
    let head = verify["events"].as_i64().unwrap();
    assert!(head > 1_300, "{verify}");

    let tail = run(&["audit", "tail", "--data", data, "-n", "1200"]);
    let seqs: Vec<i64> = tail
        .lines()
        .map(|line| line.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs.len(), 1_200, "{tail}");
    assert_eq!(seqs.first(), Some(&(head - 1_199)));
    assert_eq!(seqs.last(), Some(&head), "the latest event is printed");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));

    let jsonl = run(&["audit", "export", "--data", data]);
    assert_eq!(jsonl.lines().count() as i64, head);
    let csv = run(&["audit", "export", "--data", data, "--format", "csv"]);
    // A header, then a line an event (details hold no raw line breaks).
    assert_eq!(csv.lines().count() as i64, head + 1);
    assert!(csv.starts_with("seq,at,kind,"));
}

/// The commands that only read a database do not migrate it: a schema
/// this build does not match is refused, named, and left as it is.
#[test]
fn reading_commands_refuse_a_schema_they_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    init(&["--data", data]);
    let db_path = dir.path().join("data/partnerdb.db");
    let edit = |statement: &str| edit_sqlite(&db_path, statement);
    run(&["audit", "verify", "--data", data]);
    let refused = |args: &[&str]| {
        let out = partnerdb().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A migration of a newer build.
    edit(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'newer', 1, X'00', 0)",
    );
    let stderr = refused(&["audit", "export", "--data", data]);
    assert!(stderr.contains("newer than this partnerdb's"), "{stderr}");
    edit("DELETE FROM _sqlx_migrations WHERE version = 99990101000000");
    run(&["audit", "verify", "--data", data]);
    // One migration not applied: older.
    edit(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    );
    let stderr = refused(&["audit", "verify", "--data", data]);
    assert!(stderr.contains("older than this partnerdb's"), "{stderr}");
    // And left as it was: still older.
    let stderr = refused(&["audit", "tail", "--data", data]);
    assert!(stderr.contains("older than this partnerdb's"), "{stderr}");
}

/// `audit verify --json` names a break by kind and seq, as well as in
/// words, and exits 1.
#[test]
fn verify_json_names_the_break_by_kind_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    init(&["--data", data]);
    edit_sqlite(
        &dir.path().join("data/partnerdb.db"),
        "UPDATE audit_events SET action = 'export' WHERE seq = 1",
    );
    let out = partnerdb()
        .args(["audit", "verify", "--data", data, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["kind"], "content", "{report}");
    assert_eq!(report["seq"], 1, "{report}");
    assert!(
        report["broken"]
            .as_str()
            .unwrap()
            .contains("event 1 was altered"),
        "{report}"
    );
}
