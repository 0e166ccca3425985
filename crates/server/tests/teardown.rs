//! The test kit's own teardown: a PostgreSQL test's schema is dropped when
//! its app is, even while one of the app's transactions is still open on
//! it (the test's runtime is blocked in the drop, so that transaction can
//! never end by itself; the server's indexer, audit writer and checkpointer
//! are often in one). Without this the drop waited forever for the locks.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

#[tokio::test]
async fn a_schema_is_dropped_while_a_transaction_of_its_app_is_open() {
    let Some(app) = partnerdb_testkit::spawn(partnerdb_testkit::Backend::Postgres).await else {
        return;
    };
    let db = app.service.db().clone();
    let (opened, open) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = db.begin().await.unwrap();
        let mut sql = tx.sql();
        sql.push("SELECT seq FROM audit_events LIMIT 1");
        tx.fetch_all(&sql).await.unwrap();
        let _ = opened.send(());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(tx);
    });
    open.await.unwrap();
    // Dropped on a thread of its own, so that a drop that waits forever
    // fails the test instead of hanging it.
    let started = Instant::now();
    let dropping = std::thread::spawn(move || drop(app));
    while !dropping.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the schema's drop waits for the open transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
