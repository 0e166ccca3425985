//! Errors as RFC 9457 problem+json, each with a stable `code`, and for
//! input errors the offending field path.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use partnerdb_service::ServiceError;
use partnerdb_store::StoreError;
use serde_json::{Map, Value};

/// A problem response.
#[derive(Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Short summary for the code.
    pub title: &'static str,
    /// What happened, for people.
    pub detail: String,
    /// More members (field, class, path, …).
    pub extra: Map<String, Value>,
}

impl Problem {
    /// A problem without extra members.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            code,
            title,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// Adds a member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Problem {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let answered = crate::refusal::Answered {
            code: self.code,
            detail: self.detail.clone(),
        };
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::from(format!("https://partnerdb.dev/problems/{}", self.code)),
        );
        body.insert("title".into(), Value::from(self.title));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("code".into(), Value::from(self.code));
        body.insert("detail".into(), Value::from(self.detail));
        body.extend(self.extra);
        let mut response = (self.status, Value::Object(body).to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response.extensions_mut().insert(answered);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"partnerdb\""),
            );
        }
        response
    }
}

/// Codes answered with 422 (well-formed but unacceptable) rather than 400.
const UNPROCESSABLE: &[&str] = &[
    "invalid_reference",
    "partner_mismatch",
    "unknown_role",
    "role_needs_partner",
];

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Problem {
        let code = error.code();
        let detail = error.to_string();
        match error {
            ServiceError::Unauthenticated(_) => Problem::new(
                StatusCode::UNAUTHORIZED,
                code,
                "Authentication required",
                format!("{detail}; send `Authorization: Bearer <token>`"),
            ),
            ServiceError::Forbidden { .. } => {
                Problem::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
            }
            ServiceError::Field { field, class, .. } => {
                Problem::new(StatusCode::FORBIDDEN, code, "Field not allowed", detail)
                    .with("field", field.clone())
                    .with("path", format!("/{field}"))
                    .with("class", class.name())
            }
            ServiceError::ElevationRequired { permission } => Problem::new(
                StatusCode::FORBIDDEN,
                code,
                "Elevation required",
                format!(
                    "{permission} is high-risk: it needs an active elevation. Request one with POST /v1/elevations {{\"permissions\": [\"{permission}\"], \"reason\": \"…\", \"ttl_seconds\": 900}} (optionally \"partner_id\"); once another principal with elevation:approve approves it, POST /v1/elevations/{{id}}/activate and send the token in X-Partnerdb-Elevation with your own bearer token"
                ),
            )
            .with("permission", permission),
            ServiceError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, code, "Not found", detail),
            ServiceError::Invalid { path, .. } => {
                let status = if UNPROCESSABLE.contains(&code) {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::BAD_REQUEST
                };
                Problem::new(status, code, "Invalid request", detail).with("path", path)
            }
            ServiceError::Conflict { .. } => Problem::new(StatusCode::CONFLICT, code, "Conflict", detail),
            ServiceError::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                code,
                "Precondition failed",
                detail,
            )
            .with("etag", current),
            ServiceError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Idempotency key reused",
                detail,
            ),
            ServiceError::AuditUnavailable(reason) => {
                tracing::error!(%reason, "request refused: the audit trail cannot be written");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code,
                    "Audit trail unavailable",
                    "the audit trail cannot be written, so the request is refused rather than served unrecorded; nothing was changed",
                )
            }
            ServiceError::Store(StoreError::Reference) | ServiceError::Store(StoreError::Conflict) => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict", detail)
            }
            ServiceError::Store(StoreError::Sync(why)) => {
                tracing::error!(%why, "a change's commit could not be synced to disk");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_failed",
                    "Storage unavailable",
                    "the change was committed but could not be synced to disk: it may or may not be kept; this server refuses writes until it is restarted",
                )
            }
            ServiceError::Store(store) => {
                tracing::error!(error = %store, "storage failed");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_failed",
                    "Storage unavailable",
                    "the database could not complete the request; nothing was changed",
                )
            }
        }
    }
}
