//! partnerdb's HTTP/JSON API: the `/v1` routes over the service, errors as
//! problem+json, `/healthz`, `/readyz` and `/openapi.json`.
//!
//! **Architecture invariant:** this is the only crate that knows HTTP; it
//! authenticates and parses, then hands plain values to the service, which
//! decides. Every failure answers problem+json, a panic included.

pub mod api;
#[cfg(feature = "bench-bare")]
pub mod bare;
pub mod extract;
pub mod openapi;
pub mod problem;
pub mod refusal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use partnerdb_service::Service;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::problem::Problem;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Internal error",
        "the server failed to handle the request; nothing was changed",
    )
    .into_response()
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "Not found",
        "no such route; see /openapi.json",
    )
}

/// The whole application.
pub fn router(state: AppState) -> axum::Router {
    let request_id = HeaderName::from_static("x-request-id");
    // Every refusal of an authenticated request has its event.
    let routes = api::v1().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        refusal::record_refusals,
    ));
    #[cfg(feature = "bench-bare")]
    let routes = {
        tracing::warn!(
            "built with the bench-bare feature: /_bench/bare/ serves reads without authentication; benchmarks only"
        );
        routes.merge(bare::routes())
    };
    routes
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(|State(state): State<AppState>| async move {
                match state.service.db().ping().await {
                    Ok(()) => Ok(Json(serde_json::json!({"status": "ready"}))),
                    Err(_) => Err(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_ready",
                        "Not ready",
                        "the database does not answer",
                    )),
                }
            }),
        )
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(
            |State(state): State<AppState>, parts: axum::http::request::Parts| async move {
                refusal::refuse_unrouted(&state, parts, not_found().await).await
            },
        )
        .method_not_allowed_fallback(
            |State(state): State<AppState>, parts: axum::http::request::Parts| async move {
                let problem = Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Method not allowed",
                    "this route does not take that method; see /openapi.json",
                );
                refusal::refuse_unrouted(&state, parts, problem).await
            },
        )
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // A client's request id is kept only if it looks like one (it goes
        // into logs and the audit trail); else one of ours replaces it.
        .layer(axum::middleware::map_request(drop_odd_request_id))
        // Answers carry records and, once, tokens: never cached.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("x-partnerdb-elevation"),
        ]))
        .with_state(state)
}

async fn drop_odd_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let odd = request
        .headers()
        .get("x-request-id")
        .is_some_and(|id| !partnerdb_service::auth::is_request_id(id.as_bytes()));
    if odd {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// How often the WAL is copied back into the database beside the commits
/// (SQLite). The commit that finds the WAL at SQLite's limit copies what
/// this has not copied yet, holding the writer meanwhile: at 100 ms that
/// was a 23–34 ms stall about once a second under load (the p99 of every
/// read); at 20 ms the p99 at the commit fell from 15–16 ms to
/// 3.9 ms, the throughput the same (BENCHMARKS.md §4, twelfth session).
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Activations made through other servers sharing the database, and
    // elevations reaching their end.
    let follower = tokio::spawn(state.service.clone().follow_policy());
    let sweeper = tokio::spawn(state.service.clone().expire_elevations());
    let checkpointer = tokio::spawn({
        let service = state.service.clone();
        async move {
            let mut tick = tokio::time::interval(WAL_CHECKPOINT_EVERY);
            loop {
                tick.tick().await;
                if let Err(error) = service.db().checkpoint_wal().await {
                    tracing::debug!(%error, "WAL checkpoint skipped");
                }
            }
        }
    });
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    follower.abort();
    sweeper.abort();
    checkpointer.abort();
    served
}
