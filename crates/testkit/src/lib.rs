//! Test support: [`spawn`] starts the real server on a random port against
//! a fresh database — a temporary SQLite file, or a new schema in the
//! PostgreSQL named by `PARTNERDB_TEST_PG_URL` — with an administrator and
//! its token, and hands back a small HTTP client.
//!
//! Without `PARTNERDB_TEST_PG_URL`, PostgreSQL tests print that they
//! skipped; with `CI=true` a missing or unreachable PostgreSQL fails them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support fails loudly"
)]

use std::sync::Arc;

use partnerdb_service::{Clock, ManualClock, Service};
use partnerdb_store::{Db, DbOptions};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The databases the suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Both backends (PostgreSQL is skipped inside [`spawn`] when absent).
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

enum Guard {
    Dir(#[allow(dead_code, reason = "kept for its Drop")] tempfile::TempDir),
    Schema { url: String, schema: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Schema { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // Drop the schema from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    if let Ok(db) = Db::connect(
                        &url,
                        &DbOptions {
                            max_connections: 1,
                            schema: None,
                        },
                    )
                    .await
                    {
                        drop_schema(&db, &schema).await;
                        db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Drops a test's schema. The test's runtime is blocked in this drop, so
/// its background tasks (audit writer, indexer, checkpointer) cannot finish
/// a transaction they have open on the schema's tables: waiting for their
/// locks would never end. After a short wait their sessions are ended and
/// the drop is tried again.
async fn drop_schema(db: &Db, schema: &str) {
    for _ in 0..3 {
        let dropped = async {
            let mut tx = db.begin().await?;
            for statement in [
                "SET LOCAL lock_timeout = '2s'".to_owned(),
                format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ] {
                let mut sql = tx.sql();
                sql.push(&statement);
                tx.execute(&sql).await?;
            }
            tx.commit().await
        }
        .await;
        if dropped.is_ok() {
            return;
        }
        let _ = execute(
            db,
            &format!(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                 JOIN pg_class c ON c.oid = l.relation \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{schema}' AND l.pid <> pg_backend_pid()"
            ),
        )
        .await;
    }
}

/// Runs one statement in a transaction of its own (a schema, a trigger, a
/// constraint a test adds).
pub async fn execute(db: &Db, statement: &str) -> Result<(), partnerdb_store::StoreError> {
    let mut tx = db.begin().await?;
    let mut sql = tx.sql();
    sql.push(statement);
    tx.execute(&sql).await?;
    tx.commit().await
}

/// The PostgreSQL URL for tests, or `None` (skip) outside CI.
pub fn postgres_url() -> Option<String> {
    match std::env::var("PARTNERDB_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but PARTNERDB_TEST_PG_URL is not set: PostgreSQL tests cannot run");
            }
            eprintln!("skipping PostgreSQL: PARTNERDB_TEST_PG_URL is not set");
            None
        }
    }
}

/// A fresh, migrated, empty database, and what keeps it alive.
#[allow(missing_debug_implementations, reason = "test support")]
pub struct TestDb {
    /// The handle.
    pub db: Db,
    /// Its URL (with the schema for PostgreSQL in `options`).
    pub url: String,
    /// The PostgreSQL schema, if any.
    pub schema: Option<String>,
    _guard: Guard,
}

/// A fresh database on `backend`; `None` when PostgreSQL is skipped.
pub async fn database(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("partnerdb.db").display());
            let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
            db.migrate().await.unwrap();
            Some(TestDb {
                db,
                url,
                schema: None,
                _guard: Guard::Dir(dir),
            })
        }
        Backend::Postgres => {
            let url = postgres_url()?;
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = Db::connect(
                &url,
                &DbOptions {
                    max_connections: 1,
                    schema: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at PARTNERDB_TEST_PG_URL is unreachable: {e}"));
            execute(&admin, &format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            admin.close().await;
            let options = DbOptions {
                max_connections: 4,
                schema: Some(schema.clone()),
            };
            let db = Db::connect(&url, &options).await.unwrap();
            db.migrate().await.unwrap();
            Some(TestDb {
                db,
                url: url.clone(),
                schema: Some(schema.clone()),
                _guard: Guard::Schema { url, schema },
            })
        }
    }
}

/// A running server with an administrator.
#[allow(missing_debug_implementations, reason = "test support")]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The administrator's token.
    pub admin_token: String,
    /// The administrator's id.
    pub admin_id: String,
    /// The service behind the server (for seeding).
    pub service: Arc<Service>,
    /// The test clock.
    pub clock: Arc<ManualClock>,
    /// The checkpoint signing key.
    pub key: Arc<partnerdb_audit::CheckpointKey>,
    /// Which backend.
    pub backend: Backend,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as JSON (`null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The actions of the events in a page of `/v1/audit`, newest first.
pub fn audit_actions(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

/// Starts the server on `backend` with the starter policy and a manual
/// clock set to now; `None` when PostgreSQL is skipped.
pub async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_with_policy(backend, partnerdb_service::STARTER_POLICY).await
}

/// [`spawn`] with another policy.
pub async fn spawn_with_policy(backend: Backend, policy: &str) -> Option<TestApp> {
    spawn_configured(backend, policy, |_| {}).await
}

/// [`spawn_with_policy`] with the audit settings changed by `configure`.
pub async fn spawn_configured(
    backend: Backend,
    policy: &str,
    configure: impl FnOnce(&mut partnerdb_service::audit::AuditConfig),
) -> Option<TestApp> {
    let test_db = database(backend).await?;
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
    let credential = partnerdb_service::bootstrap(&test_db.db, policy, "test admin", &*clock)
        .await
        .unwrap();
    let key = Arc::new(partnerdb_audit::CheckpointKey::from_seed(
        *uuid::Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk::<32>()
            .unwrap(),
    ));
    let mut config = partnerdb_service::audit::AuditConfig {
        key: Some(key.clone()),
        checkpoint_every: 50,
        checkpoint_interval: std::time::Duration::from_millis(500),
        ..partnerdb_service::audit::AuditConfig::default()
    };
    configure(&mut config);
    let service = Arc::new(
        Service::open(test_db.db.clone(), clock.clone() as Arc<dyn Clock>, config)
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let state = partnerdb_server::AppState {
        service: service.clone(),
    };
    tokio::spawn(partnerdb_server::serve(listener, state, async {
        let _ = stop.await;
    }));
    Some(TestApp {
        base,
        admin_token: credential.token,
        admin_id: credential.principal_id,
        service,
        clock,
        key,
        backend,
        client: reqwest::Client::new(),
        shutdown: Some(shutdown),
        _db: test_db,
    })
}

impl TestApp {
    /// Sends a request; `token` as bearer, `body` as JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None, &[])
            .await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    /// PUT without a body.
    pub async fn put(&self, path: &str, token: &str) -> Answer {
        self.request(Method::PUT, path, Some(token), None, &[])
            .await
    }

    /// Creates a principal with roles through the API (as the
    /// administrator) and a token for it: `(id, token)`.
    pub async fn principal(
        &self,
        name: &str,
        roles: &[&str],
        partner_id: Option<&str>,
        attrs: Value,
    ) -> (String, String) {
        let mut body = serde_json::json!({"name": name, "roles": roles, "attrs": attrs});
        if let Some(partner) = partner_id {
            body["kind"] = Value::from("api_client");
            body["partner_id"] = Value::from(partner);
        }
        let created = self.post("/v1/principals", &self.admin_token, &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let credential = self
            .post(
                &format!("/v1/principals/{id}/credentials"),
                &self.admin_token,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(
            credential.status,
            StatusCode::CREATED,
            "{:?}",
            credential.body
        );
        (id, credential.body["token"].as_str().unwrap().to_owned())
    }

    /// Requests an elevation (`body`) with `token`, has `approver` approve
    /// it and activates it; returns `(id, elevation token)`.
    pub async fn elevation(&self, token: &str, approver: &str, body: Value) -> (String, String) {
        let requested = self.post("/v1/elevations", token, &body).await;
        assert_eq!(
            requested.status,
            StatusCode::CREATED,
            "{:?}",
            requested.body
        );
        assert_eq!(requested.body["status"], "pending");
        let id = requested.body["id"].as_str().unwrap().to_owned();
        let empty = serde_json::json!({});
        let approved = self
            .post(&format!("/v1/elevations/{id}/approve"), approver, &empty)
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
        let activated = self
            .post(&format!("/v1/elevations/{id}/activate"), token, &empty)
            .await;
        assert_eq!(
            activated.status,
            StatusCode::CREATED,
            "{:?}",
            activated.body
        );
        (id, activated.body["token"].as_str().unwrap().to_owned())
    }

    /// Creates a record as the administrator; returns its JSON.
    pub async fn record(&self, plural: &str, body: Value) -> Value {
        let created = self
            .post(&format!("/v1/{plural}"), &self.admin_token, &body)
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{plural}: {:?}",
            created.body
        );
        created.body
    }
}
