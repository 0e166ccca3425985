//! Bare reads for the load benchmark only (cargo feature `bench-bare`,
//! never in a default build): the same storage reads as the API, with no
//! authentication, no decision and no masking, so that the benchmark can
//! measure what enforcement costs. Never enable this feature in a build
//! that serves real data.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use partnerdb_policy::{FieldClass, FieldSet, GrantRef, ResourceType, RowCondition, RowFilter};
use partnerdb_service::records::{Page, Visible, render};
use partnerdb_store::records::{self, ListQuery, Sort};

use crate::AppState;
use crate::api::plural;
use crate::problem::Problem;

/// Every row, or those of one partner or one owner: the rows a scoped list
/// reads, without deciding anything, so that enforcement is measured
/// against a read of the same rows.
fn rows(partner_id: Option<String>, owner: Option<String>) -> RowFilter {
    RowFilter {
        conditions: vec![RowCondition {
            partner_id,
            owner,
            attrs: Vec::new(),
            fields: FieldSet::from_iter(FieldClass::ALL.iter().copied()),
            grant: GrantRef { role: 0, grant: 0 },
        }],
    }
}

/// `/_bench/bare/{plural}/{id}` and `/_bench/bare/{plural}` (the first 20 by
/// id; `?partner_id=` or `?owner=` for those of one partner or owner).
pub fn routes() -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for kind in partnerdb_store::schema::RECORD_TYPES {
        router = router
            .route(
                &format!("/_bench/bare/{}/{{id}}", plural(kind)),
                get(
                    move |State(state): State<AppState>, Path(id): Path<String>| async move {
                        one(state, kind, id).await
                    },
                ),
            )
            .route(
                &format!("/_bench/bare/{}", plural(kind)),
                get(
                    move |State(state): State<AppState>, Query(only): Query<Only>| async move {
                        page(state, kind, only).await
                    },
                ),
            );
    }
    router
}

async fn one(
    state: AppState,
    kind: ResourceType,
    id: String,
) -> Result<Json<serde_json::Value>, Problem> {
    let record = records::get(state.service.db(), kind, &id)
        .await
        .map_err(partnerdb_service::ServiceError::from)?
        .ok_or(partnerdb_service::ServiceError::NotFound("record"))?;
    Ok(Json(render(
        &record,
        FieldSet::from_iter(FieldClass::ALL.iter().copied()),
    )))
}

/// The rows a bare page reads.
#[derive(serde::Deserialize)]
struct Only {
    partner_id: Option<String>,
    owner: Option<String>,
}

async fn page(state: AppState, kind: ResourceType, only: Only) -> Result<Json<Page>, Problem> {
    let scope = rows(only.partner_id, only.owner);
    let (rows, _) = records::list(
        state.service.db(),
        &ListQuery {
            kind,
            scope: &scope,
            filters: &[],
            sort: Sort {
                column: "id",
                descending: false,
            },
            after: None,
            limit: 20,
        },
    )
    .await
    .map_err(partnerdb_service::ServiceError::from)?;
    let all = FieldSet::from_iter(FieldClass::ALL.iter().copied());
    let items: Vec<_> = rows.into_iter().map(|r| Visible::new(r, all)).collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}
