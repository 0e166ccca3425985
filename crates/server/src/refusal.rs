//! Every refusal an authenticated caller receives has its audit event.
//!
//! The service records the refusals it decides (the policy's, and its
//! own rules'). What it never sees is refused here: a body that is not
//! JSON, a query string, a header or an id that cannot be read; and a
//! step that returns a refusal without recording it. A layer on the `/v1`
//! routes hands each request a slot the [`Auth`](crate::extract::Auth)
//! extractor fills with the caller; when the answer is a 4xx problem and
//! no deny event was made for the request, the layer records one (the
//! route's resource, the problem's code and detail) and waits for its
//! commit before answering. If the trail cannot be written, the answer is
//! the trail's 503 instead (fail closed).

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use partnerdb_service::Caller;
use partnerdb_service::audit::Refusal;

use crate::AppState;
use crate::extract::Auth;
use crate::problem::Problem;

/// The caller of a request, once authenticated.
#[derive(Debug, Default)]
pub struct CallerSlot(OnceLock<Arc<Caller>>);

impl CallerSlot {
    /// Keeps the request's caller.
    pub fn fill(&self, caller: &Arc<Caller>) {
        let _ = self.0.set(Arc::clone(caller));
    }
}

/// What a problem answer said, kept on the response for this layer.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The problem's code.
    pub code: &'static str,
    /// Its detail.
    pub detail: String,
}

/// The layer: see the module's documentation.
pub async fn record_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let slot = Arc::new(CallerSlot::default());
    // Cheap clones (shared bytes): the route's parameters are read from
    // the path only for a refusal.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut request = request;
    request.extensions_mut().insert(Arc::clone(&slot));
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() || status == StatusCode::UNAUTHORIZED {
        return response;
    }
    let Some(caller) = slot.0.get() else {
        return response;
    };
    if caller.deny_recorded() {
        return response;
    }
    let (code, reason) = response
        .extensions()
        .get::<Answered>()
        .map_or(("refused", "refused"), |a| (a.code, a.detail.as_str()));
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    let target = route_target(&method, route, uri.path());
    let refusal = Refusal {
        action: &target.action,
        resource_type: target.resource_type,
        resource_id: target.resource_id.as_deref(),
        // A partner named in the path is not confirmed by anything here:
        // the event names none, so that it never reaches that partner's
        // own readers of the trail.
        partner_id: None,
        status: status.as_u16(),
        code,
        reason,
    };
    match state.service.record_refusal(caller, &refusal).await {
        Ok(()) => response,
        Err(error) => Problem::from(error).into_response(),
    }
}

/// Answers a request no route takes (no such route, or not that method)
/// with `problem`, and records the refusal like any other when the request
/// carries a token that authenticates: an authenticated caller's probes of
/// routes that do not exist are in the trail too. Without a token the
/// answer is the same and nothing is written; with one that does not
/// authenticate, the answer is its 401.
pub async fn refuse_unrouted(state: &AppState, mut parts: Parts, problem: Problem) -> Response {
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        return problem.into_response();
    }
    let caller = match Auth::from_request_parts(&mut parts, state).await {
        Ok(Auth(caller)) => caller,
        Err(rejection) => return rejection.into_response(),
    };
    let target = route_target(&parts.method, "", parts.uri.path());
    let refusal = Refusal {
        action: &target.action,
        resource_type: target.resource_type,
        resource_id: None,
        partner_id: None,
        status: problem.status.as_u16(),
        code: problem.code,
        reason: &problem.detail,
    };
    match state.service.record_refusal(&caller, &refusal).await {
        Ok(()) => problem.into_response(),
        Err(error) => Problem::from(error).into_response(),
    }
}

/// What a route is about, for its refusals' events.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    action: String,
    resource_type: &'static str,
    resource_id: Option<String>,
}

/// The resource type of a collection segment of a route.
fn collection(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "partners" => "partner",
        "contacts" => "contact",
        "contracts" => "contract",
        "transactions" => "transaction",
        "change-requests" => "change_request",
        "elevations" => "elevation",
        "principals" | "me" => "principal",
        "credentials" => "credential",
        "roles" => "binding",
        "policy" | "versions" => "policy",
        "audit" | "usage" => "audit",
        "metrics" => "metrics",
        "workflows" => "workflow",
        _ => return None,
    })
}

/// The route's resource: that of its last collection, with the id that
/// follows it in `path` (as sent, if it looks like an id: no free text in
/// the trail; percent-encoded text never does, so it is not decoded); the
/// action from the method, or the verb that ends the route.
fn route_target(method: &Method, route: &str, path: &str) -> Target {
    let segments: Vec<(&str, &str)> = route
        .trim_start_matches("/v1/")
        .split('/')
        .zip(path.trim_start_matches("/v1/").split('/'))
        .filter(|(segment, _)| !segment.is_empty())
        .collect();
    let mut target = Target {
        action: String::new(),
        resource_type: "route",
        resource_id: None,
    };
    let mut verb = None;
    for (i, &(segment, value)) in segments.iter().enumerate() {
        if let Some(kind) = collection(segment) {
            target.resource_type = kind;
            target.resource_id = None;
            verb = None;
            if segment == "usage" {
                target.resource_id = Some("usage".to_owned());
            }
        } else if segment.starts_with('{') {
            target.resource_id = Some(value)
                .filter(|v| partnerdb_service::auth::is_request_id(v.as_bytes()))
                .map(str::to_owned);
        } else if i + 1 == segments.len() {
            verb = Some(segment);
        }
    }
    target.action = match (method.as_str(), verb) {
        ("GET", _) => "read".to_owned(),
        ("POST", Some("onboarding" | "offboarding")) => {
            target.resource_id = verb.map(str::to_owned);
            "trigger".to_owned()
        }
        ("POST", Some(verb)) => verb.to_owned(),
        ("POST", None) => "create".to_owned(),
        ("PUT", _) if target.resource_type == "binding" => "bind".to_owned(),
        ("DELETE", _) if target.resource_type == "binding" => "unbind".to_owned(),
        ("PATCH" | "PUT", _) => "update".to_owned(),
        ("DELETE", _) => "delete".to_owned(),
        (other, _) => other.to_ascii_lowercase(),
    };
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target of `route` requested with `params` in its path.
    fn target(method: Method, route: &str, params: &[(&str, &str)]) -> Target {
        let path = params.iter().fold(route.to_owned(), |path, (name, value)| {
            path.replace(&format!("{{{name}}}"), value)
        });
        route_target(&method, route, &path)
    }

    fn expect(action: &str, kind: &'static str, id: Option<&str>) -> Target {
        Target {
            action: action.to_owned(),
            resource_type: kind,
            resource_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn routes_name_their_resource_and_action() {
        let cases = [
            (
                target(Method::PATCH, "/v1/partners/{id}", &[("id", "p1")]),
                expect("update", "partner", Some("p1")),
            ),
            (
                target(Method::POST, "/v1/partners/{id}/contacts", &[("id", "p1")]),
                expect("create", "contact", None),
            ),
            (
                target(
                    Method::GET,
                    "/v1/contracts/{id}/change-requests",
                    &[("id", "c1")],
                ),
                expect("read", "change_request", None),
            ),
            (
                target(
                    Method::POST,
                    "/v1/change-requests/{id}/approve",
                    &[("id", "r1")],
                ),
                expect("approve", "change_request", Some("r1")),
            ),
            (
                target(
                    Method::POST,
                    "/v1/principals/{id}/credentials/{credential}/rotate",
                    &[("id", "u1"), ("credential", "k1")],
                ),
                expect("rotate", "credential", Some("k1")),
            ),
            (
                target(
                    Method::PUT,
                    "/v1/principals/{id}/roles/{role}",
                    &[("id", "u1"), ("role", "admin")],
                ),
                expect("bind", "binding", Some("admin")),
            ),
            (
                target(
                    Method::GET,
                    "/v1/policy/versions/{number}/plan",
                    &[("number", "3")],
                ),
                expect("read", "policy", Some("3")),
            ),
            (
                target(Method::POST, "/v1/workflows/onboarding", &[]),
                expect("trigger", "workflow", Some("onboarding")),
            ),
            (
                target(Method::GET, "/v1/usage", &[]),
                expect("read", "audit", Some("usage")),
            ),
            (
                target(Method::GET, "/v1/me", &[]),
                expect("read", "principal", None),
            ),
            // Free text in an id stays out of the trail.
            (
                target(
                    Method::GET,
                    "/v1/partners/{id}",
                    &[("id", "Jane Doe <jane@x>")],
                ),
                expect("read", "partner", None),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn path_parameters_are_read_from_the_path_as_sent() {
        assert_eq!(
            target(
                Method::POST,
                "/v1/principals/{id}/credentials/{credential}/rotate",
                &[("id", "u1"), ("credential", "k1")]
            ),
            expect("rotate", "credential", Some("k1"))
        );
        // Percent-encoded text is not decoded into an id.
        assert_eq!(
            target(
                Method::GET,
                "/v1/contacts/{id}",
                &[("id", "no%20such%20id")]
            ),
            expect("read", "contact", None)
        );
    }

    #[test]
    fn every_documented_route_has_a_resource_type() {
        for op in crate::api::operations() {
            let method = Method::from_bytes(op.method.as_bytes()).unwrap();
            let got = route_target(&method, &op.path, &op.path);
            assert_ne!(got.resource_type, "route", "{} {}", op.method, op.path);
            assert!(!got.action.is_empty(), "{} {}", op.method, op.path);
        }
    }
}
