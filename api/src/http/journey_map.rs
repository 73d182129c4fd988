//! `GET /journey-maps/{pathwayId}.svg?from=&to=`: the journey map picture, for
//! dashboards and `<img>` tags, with the same credential as the API.

use axum::{
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    AppState,
    caller::SignedIn,
    error::{HttpError, transport},
};
use crate::{
    analytics,
    domain::DomainError,
    ids::{self, IdKind},
};

/// The optional window of the picture.
#[derive(Debug, Deserialize)]
pub struct WindowParams {
    from: Option<String>,
    to: Option<String>,
}

/// Parses an optional RFC 3339 query parameter.
fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, DomainError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    DomainError::invalid(
                        name,
                        "must be an RFC 3339 time such as 2026-01-31T00:00:00Z",
                    )
                })
        })
        .transpose()
}

pub async fn svg(
    State(state): State<AppState>,
    SignedIn(principal): SignedIn,
    Path(file): Path<String>,
    Query(params): Query<WindowParams>,
) -> Result<Response, HttpError> {
    let Some(id) = file.strip_suffix(".svg") else {
        return Err(HttpError::request(
            StatusCode::NOT_FOUND,
            transport::NOT_FOUND,
            "journey maps are at /journey-maps/{pathwayId}.svg",
        ));
    };
    let pathway_id = ids::decode_as(IdKind::Pathway, id)
        .map_err(|e| DomainError::invalid("pathwayId", format!("{id:?} {e}")))?;
    let window = analytics::Window::new(
        time("from", params.from.as_deref())?,
        time("to", params.to.as_deref())?,
    )?;
    let map = analytics::journey_map(&state.store, &principal, pathway_id, window, None).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        analytics::svg::render(&map),
    )
        .into_response())
}
