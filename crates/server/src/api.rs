//! The `/v1` routes, and the table of operations the OpenAPI document is
//! generated from (the router and the document are built from the same
//! lists, so that they cannot drift apart).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use partnerdb_policy::ResourceType;
use partnerdb_service::records::Idempotency;
use partnerdb_store::schema::RECORD_TYPES;
use serde_json::{Value, json};

use crate::AppState;
use crate::extract::{Auth, JsonBody, OptionalJson, Path, QueryPairs, check_id, header_text};
use crate::problem::Problem;

/// The URL segment of a record type.
pub fn plural(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Partner => "partners",
        ResourceType::Contact => "contacts",
        ResourceType::Contract => "contracts",
        ResourceType::Transaction => "transactions",
        _ => "records",
    }
}

/// One documented operation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: String,
    /// Unique operation id.
    pub id: String,
    /// One line.
    pub summary: String,
    /// The record type it reads or writes, if any.
    pub record: Option<ResourceType>,
    /// Kind of body and answer.
    pub shape: Shape,
}

/// What an operation takes and answers, for the OpenAPI document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A page of records.
    List,
    /// One record (read).
    Get,
    /// A record created from a body.
    Create,
    /// A record updated from a body.
    Update,
    /// Nothing (204).
    Delete,
    /// Free-form JSON.
    Other,
}

/// Every `/v1` operation, in documentation order.
pub fn operations() -> Vec<Operation> {
    let mut ops = Vec::new();
    let mut add = |method, path: String, id: String, summary: String, record, shape| {
        ops.push(Operation {
            method,
            path,
            id,
            summary,
            record,
            shape,
        });
    };
    for kind in RECORD_TYPES {
        let p = plural(kind);
        add(
            "GET",
            format!("/v1/{p}"),
            format!("list_{p}"),
            format!("List {p} the caller may read (filters, sort, cursor)"),
            Some(kind),
            Shape::List,
        );
        add(
            "POST",
            format!("/v1/{p}"),
            format!("create_{kind}"),
            format!("Create a {kind} (Idempotency-Key honoured)"),
            Some(kind),
            Shape::Create,
        );
        add(
            "GET",
            format!("/v1/{p}/{{id}}"),
            format!("get_{kind}"),
            format!("Read a {kind}: only the granted field classes"),
            Some(kind),
            Shape::Get,
        );
        add(
            "PATCH",
            format!("/v1/{p}/{{id}}"),
            format!("update_{kind}"),
            format!("Update fields of a {kind} (If-Match honoured)"),
            Some(kind),
            Shape::Update,
        );
        add(
            "DELETE",
            format!("/v1/{p}/{{id}}"),
            format!("delete_{kind}"),
            format!("Delete a {kind} (If-Match honoured)"),
            Some(kind),
            Shape::Delete,
        );
        if kind != ResourceType::Partner {
            add(
                "GET",
                format!("/v1/partners/{{id}}/{p}"),
                format!("list_partner_{p}"),
                format!("List a partner's {p}"),
                Some(kind),
                Shape::List,
            );
            add(
                "POST",
                format!("/v1/partners/{{id}}/{p}"),
                format!("create_partner_{kind}"),
                format!("Create a {kind} of a partner"),
                Some(kind),
                Shape::Create,
            );
        }
    }
    let other = [
        (
            "GET",
            "/v1/me",
            "me",
            "Who am I: principal, roles, effective permissions",
        ),
        (
            "GET",
            "/v1/principals",
            "list_principals",
            "List principals",
        ),
        (
            "POST",
            "/v1/principals",
            "create_principal",
            "Create a principal (user or partner-bound api_client)",
        ),
        (
            "GET",
            "/v1/principals/{id}",
            "get_principal",
            "Read a principal",
        ),
        (
            "DELETE",
            "/v1/principals/{id}",
            "delete_principal",
            "Delete a principal (lockout rule applies)",
        ),
        (
            "PUT",
            "/v1/principals/{id}/roles/{role}",
            "bind_role",
            "Bind a role (separation of duties applies)",
        ),
        (
            "DELETE",
            "/v1/principals/{id}/roles/{role}",
            "unbind_role",
            "Remove a role (lockout rule applies)",
        ),
        (
            "GET",
            "/v1/principals/{id}/credentials",
            "list_credentials",
            "List a principal's credentials (never the tokens)",
        ),
        (
            "POST",
            "/v1/principals/{id}/credentials",
            "create_credential",
            "Issue a token, shown once",
        ),
        (
            "DELETE",
            "/v1/principals/{id}/credentials/{credential}",
            "revoke_credential",
            "Revoke a credential (lockout rule applies)",
        ),
        (
            "POST",
            "/v1/principals/{id}/credentials/{credential}/rotate",
            "rotate_credential",
            "Replace a credential by a new token",
        ),
        (
            "GET",
            "/v1/contracts/{id}/change-requests",
            "list_contract_change_requests",
            "List a contract's change requests",
        ),
        (
            "POST",
            "/v1/contracts/{id}/change-requests",
            "propose_change",
            "Propose new terms for a contract (contract:propose); the contract keeps its terms until approved",
        ),
        (
            "GET",
            "/v1/change-requests",
            "list_change_requests",
            "List change requests on contracts the caller may read (status, contract, after, limit)",
        ),
        (
            "GET",
            "/v1/change-requests/{id}",
            "get_change_request",
            "Read a change request with its field-by-field diff",
        ),
        (
            "POST",
            "/v1/change-requests/{id}/approve",
            "approve_change",
            "Approve and apply (contract:approve; never by the proposer; refused when stale)",
        ),
        (
            "POST",
            "/v1/change-requests/{id}/reject",
            "reject_change",
            "Reject with a reason (contract:reject; never by the proposer)",
        ),
        (
            "POST",
            "/v1/change-requests/{id}/withdraw",
            "withdraw_change",
            "Withdraw (the proposer only)",
        ),
        (
            "POST",
            "/v1/elevations",
            "request_elevation",
            "Ask for high-risk permissions for a while, with a reason (elevation:request)",
        ),
        (
            "GET",
            "/v1/elevations",
            "list_elevations",
            "Your elevations, or every one for approvers (status, after, limit)",
        ),
        (
            "GET",
            "/v1/elevations/{id}",
            "get_elevation",
            "Read an elevation",
        ),
        (
            "POST",
            "/v1/elevations/{id}/approve",
            "approve_elevation",
            "Approve (elevation:approve; never your own)",
        ),
        (
            "POST",
            "/v1/elevations/{id}/deny",
            "deny_elevation",
            "Deny (elevation:approve; never your own)",
        ),
        (
            "POST",
            "/v1/elevations/{id}/activate",
            "activate_elevation",
            "Get the elevation token, once (the requester; send it in X-Partnerdb-Elevation)",
        ),
        (
            "POST",
            "/v1/elevations/{id}/revoke",
            "revoke_elevation",
            "Revoke (the requester or an approver)",
        ),
        (
            "POST",
            "/v1/workflows/onboarding",
            "onboard_partner",
            "Onboard a partner (workflow:trigger): the partner in status onboarding and a draft contract; its api client after approval",
        ),
        (
            "POST",
            "/v1/workflows/offboarding",
            "offboard_partner",
            "Offboard a partner (workflow:trigger): revoke its principals' credentials, archive it",
        ),
        (
            "GET",
            "/v1/workflows/{id}",
            "get_workflow",
            "Read a workflow run",
        ),
        (
            "POST",
            "/v1/workflows/{id}/approve",
            "approve_workflow",
            "Approve an onboarding (never by whoever triggered it): makes the partner's api client and its token, shown once",
        ),
        (
            "GET",
            "/v1/policy/versions",
            "list_policy_versions",
            "Policy versions, newest first (policy:read)",
        ),
        (
            "POST",
            "/v1/policy/versions",
            "propose_policy",
            "Propose a policy version: checked, linted (errors block) and checked against current bindings for separation of duties",
        ),
        (
            "GET",
            "/v1/policy/versions/{number}",
            "get_policy_version",
            "A policy version with its text (policy:read)",
        ),
        (
            "POST",
            "/v1/policy/versions/{number}/approve",
            "approve_policy",
            "Approve and activate a proposed version (policy:apply, high-risk; never its author; lockout rule applies; a breaking version needs {\"accept_breaking\": true})",
        ),
        (
            "GET",
            "/v1/policy/versions/{number}/plan",
            "plan_policy",
            "Plan a version: permission changes per role and principal, lint, lockout, and recorded decisions replayed (days)",
        ),
        (
            "POST",
            "/v1/policy/versions/{number}/reject",
            "reject_policy",
            "Reject a proposed version (policy:apply)",
        ),
        (
            "POST",
            "/v1/policy/versions/{number}/rollback",
            "rollback_policy",
            "Propose an earlier version's text again (policy:rollback, high-risk)",
        ),
        (
            "GET",
            "/v1/audit",
            "audit_trail",
            "The audit trail, newest first (audit:read; filters, cursor)",
        ),
        (
            "GET",
            "/v1/usage",
            "usage",
            "Decision counts and last use per principal, role and grant (audit:read)",
        ),
    ];
    for (method, path, id, summary) in other {
        add(
            method,
            path.to_owned(),
            id.to_owned(),
            summary.to_owned(),
            None,
            Shape::Other,
        );
    }
    ops
}

fn with_etag(etag: &str, status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn idempotency(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &JsonBody,
) -> Result<Option<Idempotency>, Problem> {
    let Some(key) = header_text(headers, "idempotency-key")? else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > 200 {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "Invalid header",
            "Idempotency-Key must be 1 to 200 printable characters",
        ));
    }
    Ok(Some(Idempotency {
        key: key.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        body_hash: body.hash.clone(),
    }))
}

async fn create_response(
    state: &AppState,
    caller: &partnerdb_service::Caller,
    kind: ResourceType,
    headers: &HeaderMap,
    path: &str,
    body: JsonBody,
    route_partner: Option<&str>,
) -> Result<Response, Problem> {
    let key = idempotency(headers, "POST", path, &body)?;
    let created = state
        .service
        .create_record(caller, kind, &body.value, route_partner, key.as_ref())
        .await?;
    let id = created.view.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut response = with_etag(&created.view.etag, StatusCode::CREATED, created.view.body);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/{}/{id}", plural(kind))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn record_routes(kind: ResourceType) -> (MethodRouter<AppState>, MethodRouter<AppState>) {
    let collection =
        get(
            move |State(state): State<AppState>,
                  Auth(caller): Auth,
                  QueryPairs(params): QueryPairs| async move {
                // Serialized while the list's event commits; sent after.
                let page = state
                    .service
                    .list_records_recorded(&caller, kind, &params, None)
                    .await?;
                Ok::<_, Problem>(page.finish(|page| Json(page).into_response()).await?)
            },
        )
        .post(
            move |State(state): State<AppState>,
                  Auth(caller): Auth,
                  headers: HeaderMap,
                  body: JsonBody| async move {
                let path = format!("/v1/{}", plural(kind));
                create_response(&state, &caller, kind, &headers, &path, body, None).await
            },
        );
    let item = get(
        move |State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
            check_id(&id)?;
            // Serialized while the read's event commits; sent after.
            let view = state.service.get_record_recorded(&caller, kind, &id).await?;
            Ok::<_, Problem>(
                view.finish(|view| with_etag(&view.etag, StatusCode::OK, view.body))
                    .await?,
            )
        },
    )
    .patch(
        move |State(state): State<AppState>,
              Auth(caller): Auth,
              Path(id): Path<String>,
              headers: HeaderMap,
              body: JsonBody| async move {
            check_id(&id)?;
            let if_match = header_text(&headers, "if-match")?;
            let view = state
                .service
                .update_record(&caller, kind, &id, &body.value, if_match)
                .await?;
            Ok::<_, Problem>(with_etag(&view.etag, StatusCode::OK, view.body))
        },
    )
    .delete(
        move |State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>, headers: HeaderMap| async move {
            check_id(&id)?;
            let if_match = header_text(&headers, "if-match")?;
            state.service.delete_record(&caller, kind, &id, if_match).await?;
            Ok::<_, Problem>(StatusCode::NO_CONTENT)
        },
    );
    (collection, item)
}

fn nested_routes(kind: ResourceType) -> MethodRouter<AppState> {
    get(
        move |State(state): State<AppState>,
              Auth(caller): Auth,
              Path(partner): Path<String>,
              QueryPairs(params): QueryPairs| async move {
            check_id(&partner)?;
            let page = state
                .service
                .list_records_recorded(&caller, kind, &params, Some(&partner))
                .await?;
            Ok::<_, Problem>(page.finish(|page| Json(page).into_response()).await?)
        },
    )
    .post(
        move |State(state): State<AppState>,
              Auth(caller): Auth,
              Path(partner): Path<String>,
              headers: HeaderMap,
              body: JsonBody| async move {
            check_id(&partner)?;
            let path = format!("/v1/partners/{partner}/{}", plural(kind));
            create_response(&state, &caller, kind, &headers, &path, body, Some(&partner)).await
        },
    )
}

/// The `/v1` router.
pub fn v1() -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for kind in RECORD_TYPES {
        let (collection, item) = record_routes(kind);
        let p = plural(kind);
        router = router
            .route(&format!("/v1/{p}"), collection)
            .route(&format!("/v1/{p}/{{id}}"), item);
        if kind != ResourceType::Partner {
            router = router.route(&format!("/v1/partners/{{id}}/{p}"), nested_routes(kind));
        }
    }
    router
        .route(
            "/v1/me",
            get(|State(state): State<AppState>, Auth(caller): Auth| async move {
                Ok::<_, Problem>(Json(state.service.me(&caller).await?))
            }),
        )
        .route(
            "/v1/contracts/{id}/change-requests",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>, QueryPairs(params): QueryPairs| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.list_changes(&caller, &params, Some(&id)).await?))
            })
            .post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>, body: JsonBody| async move {
                check_id(&id)?;
                let request = state.service.propose_change(&caller, &id, &body.value).await?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(request)))
            }),
        )
        .route(
            "/v1/change-requests",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.list_changes(&caller, &params, None).await?))
            }),
        )
        .route(
            "/v1/change-requests/{id}",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.get_change(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/change-requests/{id}/approve",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.approve_change(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/change-requests/{id}/reject",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>, body: JsonBody| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.reject_change(&caller, &id, &body.value).await?))
            }),
        )
        .route(
            "/v1/change-requests/{id}/withdraw",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.withdraw_change(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/elevations",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.list_elevations(&caller, &params).await?))
            })
            .post(|State(state): State<AppState>, Auth(caller): Auth, body: JsonBody| async move {
                let elevation = state.service.request_elevation(&caller, &body.value).await?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(elevation)))
            }),
        )
        .route(
            "/v1/elevations/{id}",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.get_elevation(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/elevations/{id}/approve",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.decide_on_elevation(&caller, &id, true).await?))
            }),
        )
        .route(
            "/v1/elevations/{id}/deny",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.decide_on_elevation(&caller, &id, false).await?))
            }),
        )
        .route(
            "/v1/elevations/{id}/activate",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(state.service.activate_elevation(&caller, &id).await?)))
            }),
        )
        .route(
            "/v1/elevations/{id}/revoke",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                state.service.revoke_elevation(&caller, &id).await?;
                Ok::<_, Problem>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/v1/workflows/onboarding",
            post(|State(state): State<AppState>, Auth(caller): Auth, body: JsonBody| async move {
                Ok::<_, Problem>((StatusCode::CREATED, Json(state.service.onboard(&caller, &body.value).await?)))
            }),
        )
        .route(
            "/v1/workflows/offboarding",
            post(|State(state): State<AppState>, Auth(caller): Auth, body: JsonBody| async move {
                Ok::<_, Problem>((StatusCode::CREATED, Json(state.service.offboard(&caller, &body.value).await?)))
            }),
        )
        .route(
            "/v1/workflows/{id}",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.get_workflow(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/workflows/{id}/approve",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.approve_workflow(&caller, &id).await?))
            }),
        )
        .route(
            "/v1/policy/versions",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.list_policy_versions(&caller, &params).await?))
            })
            .post(|State(state): State<AppState>, Auth(caller): Auth, body: JsonBody| async move {
                Ok::<_, Problem>((StatusCode::CREATED, Json(state.service.propose_policy(&caller, &body.value).await?)))
            }),
        )
        .route(
            "/v1/policy/versions/{number}",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(number): Path<String>| async move {
                let number = version_number(&number)?;
                Ok::<_, Problem>(Json(state.service.get_policy_version(&caller, number).await?))
            }),
        )
        .route(
            "/v1/policy/versions/{number}/approve",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(number): Path<String>, OptionalJson(body): OptionalJson| async move {
                let number = version_number(&number)?;
                Ok::<_, Problem>(Json(state.service.approve_policy(&caller, number, &body).await?))
            }),
        )
        .route(
            "/v1/policy/versions/{number}/plan",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(number): Path<String>, QueryPairs(params): QueryPairs| async move {
                let number = version_number(&number)?;
                Ok::<_, Problem>(Json(state.service.plan_policy(&caller, number, &params).await?))
            }),
        )
        .route(
            "/v1/policy/versions/{number}/reject",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(number): Path<String>| async move {
                let number = version_number(&number)?;
                Ok::<_, Problem>(Json(state.service.reject_policy(&caller, number).await?))
            }),
        )
        .route(
            "/v1/policy/versions/{number}/rollback",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path(number): Path<String>, OptionalJson(body): OptionalJson| async move {
                let number = version_number(&number)?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(state.service.rollback_policy(&caller, number, &body).await?)))
            }),
        )
        .route(
            "/v1/audit",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.audit_trail(&caller, &params).await?))
            }),
        )
        .route(
            "/v1/usage",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.usage(&caller, &params).await?))
            }),
        )
        .route(
            "/v1/metrics/partner-performance",
            get(|State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                Ok::<_, Problem>(Json(state.service.partner_performance(&caller, &params).await?))
            }),
        )
        .route(
            "/v1/principals",
            get(
                |State(state): State<AppState>, Auth(caller): Auth, QueryPairs(params): QueryPairs| async move {
                    let mut after = None;
                    let mut limit = 100;
                    for (name, value) in &params {
                        match name.as_str() {
                            "after" => after = Some(value.clone()),
                            "limit" => {
                                limit = value.parse().map_err(|_| {
                                    Problem::new(StatusCode::BAD_REQUEST, "invalid_limit", "Invalid request", "`limit` must be a number from 1 to 500")
                                })?;
                            }
                            _ => {
                                return Err(Problem::new(StatusCode::BAD_REQUEST, "unknown_parameter", "Invalid request", format!("unknown query parameter `{name}`")).with("path", name.clone()));
                            }
                        }
                    }
                    let items = state.service.list_principals(&caller, after.as_deref(), limit).await?;
                    let next = if items.len() == limit { items.last().and_then(|p| p["id"].as_str()).map(str::to_owned) } else { None };
                    Ok::<_, Problem>(Json(json!({"items": items, "next_after": next})))
                },
            )
            .post(|State(state): State<AppState>, Auth(caller): Auth, body: JsonBody| async move {
                let principal = state.service.create_principal(&caller, &body.value).await?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(principal)))
            }),
        )
        .route(
            "/v1/principals/{id}",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                Ok::<_, Problem>(Json(state.service.get_principal(&caller, &id).await?))
            })
            .delete(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                state.service.delete_principal(&caller, &id).await?;
                Ok::<_, Problem>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/v1/principals/{id}/roles/{role}",
            put(|State(state): State<AppState>, Auth(caller): Auth, Path((id, role)): Path<(String, String)>| async move {
                check_id(&id)?;
                check_id(&role)?;
                Ok::<_, Problem>(Json(state.service.bind_role(&caller, &id, &role).await?))
            })
            .delete(|State(state): State<AppState>, Auth(caller): Auth, Path((id, role)): Path<(String, String)>| async move {
                check_id(&id)?;
                check_id(&role)?;
                Ok::<_, Problem>(Json(state.service.unbind_role(&caller, &id, &role).await?))
            }),
        )
        .route(
            "/v1/principals/{id}/credentials",
            get(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>| async move {
                check_id(&id)?;
                let items = state.service.list_credentials(&caller, &id).await?;
                Ok::<_, Problem>(Json(json!({"items": items})))
            })
            .post(|State(state): State<AppState>, Auth(caller): Auth, Path(id): Path<String>, OptionalJson(body): OptionalJson| async move {
                check_id(&id)?;
                let credential = state.service.create_credential(&caller, &id, &body).await?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(new_credential_json(&credential))))
            }),
        )
        .route(
            "/v1/principals/{id}/credentials/{credential}",
            delete(|State(state): State<AppState>, Auth(caller): Auth, Path((id, credential)): Path<(String, String)>| async move {
                check_id(&id)?;
                check_id(&credential)?;
                state.service.revoke_credential(&caller, &id, &credential).await?;
                Ok::<_, Problem>(StatusCode::NO_CONTENT)
            }),
        )
        .route(
            "/v1/principals/{id}/credentials/{credential}/rotate",
            post(|State(state): State<AppState>, Auth(caller): Auth, Path((id, credential)): Path<(String, String)>| async move {
                check_id(&id)?;
                check_id(&credential)?;
                let new = state.service.rotate_credential(&caller, &id, &credential).await?;
                Ok::<_, Problem>((StatusCode::CREATED, Json(new_credential_json(&new))))
            }),
        )
}

fn version_number(text: &str) -> Result<i64, Problem> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "Invalid request",
            "a policy version is a positive number",
        )
        .with("path", "number")
    })
}

fn new_credential_json(credential: &partnerdb_service::principals::NewCredential) -> Value {
    json!({
        "id": credential.id,
        "principal_id": credential.principal_id,
        "token": credential.token,
        "expires_at": credential.expires_at,
        "note": "the token is shown once; store it now",
    })
}
