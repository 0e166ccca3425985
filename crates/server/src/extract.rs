//! Request extractors that answer problem+json when the input is wrong:
//! the bearer token, a JSON body (content type, size, syntax), the query
//! string, path ids and the conditional headers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use partnerdb_service::Caller;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::Problem;
use crate::refusal::CallerSlot;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The authenticated caller (`Authorization: Bearer <token>`), kept in
/// the request's [`CallerSlot`] too, so that a refusal the service never
/// saw is recorded ([`crate::refusal`]).
#[derive(Debug)]
pub struct Auth(pub Arc<Caller>);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Auth, Problem> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Authentication required",
                    "send `Authorization: Bearer <token>`",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Authentication required",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let request = partnerdb_service::auth::RequestInfo {
            // A client's request id goes into the audit trail only if it
            // looks like an id (no free text there); else a new one.
            id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|id| partnerdb_service::auth::is_request_id(id.as_bytes()))
                .map_or_else(partnerdb_store::new_id, str::to_owned),
            method: parts.method.to_string(),
            route: parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        };
        let mut caller = state.service.authenticate_request(token, request).await?;
        if let Some(elevation) = parts
            .headers
            .get(partnerdb_service::elevations::ELEVATION_HEADER)
        {
            let token = elevation.to_str().map(str::trim).unwrap_or_default();
            state.service.elevate(&mut caller, token).await?;
        }
        let caller = Arc::new(caller);
        if let Some(slot) = parts.extensions.get::<Arc<CallerSlot>>() {
            slot.fill(&caller);
        }
        Ok(Auth(caller))
    }
}

/// A JSON request body, with the SHA-256 of its bytes (for idempotency).
#[derive(Debug)]
pub struct JsonBody {
    /// The parsed body.
    pub value: Value,
    /// Hex SHA-256 of the raw body.
    pub hash: String,
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &AppState) -> Result<JsonBody, Problem> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let is_json = content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Body too large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Invalid JSON",
                format!("the body is not valid JSON: {e}"),
            )
            .with("line", e.line())
            .with("column", e.column())
        })?;
        let hash = partnerdb_service::auth::hex(&Sha256::digest(&bytes));
        Ok(JsonBody { value, hash })
    }
}

/// A JSON body that may be empty (then `null`).
#[derive(Debug)]
pub struct OptionalJson(pub Value);

impl FromRequest<AppState> for OptionalJson {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &AppState) -> Result<OptionalJson, Problem> {
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok());
        let empty = length == Some("0")
            || (length.is_none() && !request.headers().contains_key(header::CONTENT_TYPE));
        if empty {
            return Ok(OptionalJson(Value::Null));
        }
        Ok(OptionalJson(
            JsonBody::from_request(request, state).await?.value,
        ))
    }
}

/// The query string as name/value pairs, in order.
#[derive(Debug)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<QueryPairs, Problem> {
        let query = parts.uri.query().unwrap_or("");
        if query.len() > 8192 {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "query_too_long",
                "Query too long",
                "query strings are limited to 8192 bytes",
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "Invalid query string",
                "the query string is not valid URL-encoded text",
            )
        })?;
        Ok(QueryPairs(pairs))
    }
}

/// Decodes `a=1&b=x%20y` (`+` is a space).
fn serde_urlencoded_pairs(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(name)?, percent_decode(value)?));
    }
    Some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What a path id is, as refusals say it.
const ID_RULE: &str = "ids are 1 to 64 letters, digits, `-` or `_`";

/// Checks a path id: 1 to 64 characters of letters, digits, `-` and `_`.
pub fn check_id(id: &str) -> Result<(), Problem> {
    // Text that begins like a token is refused as an id, so that a token
    // pasted into a path never reaches the trail.
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !partnerdb_service::auth::looks_like_token(id.as_bytes());
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "Invalid id",
            format!("{ID_RULE}, and not a token"),
        ))
    }
}

/// A request header as text, if present and printable.
pub fn header_text<'a>(
    parts: &'a axum::http::HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, Problem> {
    match parts.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "Invalid header",
                format!("header `{name}` must be printable ASCII"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_strings() {
        assert_eq!(
            serde_urlencoded_pairs("a=1&b=x%20y&c=d+e&flag").unwrap(),
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "d e".into()),
                ("flag".into(), String::new())
            ]
        );
        assert!(serde_urlencoded_pairs("a=%zz").is_none());
        assert!(serde_urlencoded_pairs("a=%ff").is_none());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("0190a1b2-c3d4-7e5f").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
    }
}

/// Path parameters, as axum's `Path` reads them, with its refusals (an id
/// that is not UTF-8 once decoded, say) answered as problem+json
/// (`invalid_id`) like every other: axum's own answer is plain text.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "Invalid id",
                format!("{}; {ID_RULE}", rejection.body_text()),
            )),
        }
    }
}
