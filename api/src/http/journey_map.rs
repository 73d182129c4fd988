//! `GET /journey-maps/{pathwayId}.svg?from=&to=`: the journey map picture, for
//! dashboards and `<img>` tags, with the same credential as the API.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::{self, Credential};
use crate::{
    analytics,
    domain::DomainError,
    http::AppState,
    ids::{self, IdKind},
};

/// The optional window of the picture.
#[derive(Debug, Deserialize)]
pub struct WindowParams {
    from: Option<String>,
    to: Option<String>,
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Parses an optional RFC 3339 query parameter; the error is the message to send.
fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    format!("{name} must be an RFC 3339 time such as 2026-01-31T00:00:00Z\n")
                })
        })
        .transpose()
}

pub async fn svg(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(params): Query<WindowParams>,
) -> Response {
    let Some(id) = file.strip_suffix(".svg") else {
        return text(
            StatusCode::NOT_FOUND,
            "journey maps are at /journey-maps/{pathwayId}.svg\n",
        );
    };
    let principal = match auth::from_headers(&state.store, &state.keys, &headers).await {
        Ok(Credential::Authenticated(principal)) => principal,
        Ok(_) => {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "a valid Authorization: Bearer credential is required\n",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    };
    let Ok(pathway_id) = ids::decode_as(IdKind::Pathway, id) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a pathway id\n"),
        );
    };
    let (from, to) = match (
        time("from", params.from.as_deref()),
        time("to", params.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(message), _) | (_, Err(message)) => return text(StatusCode::BAD_REQUEST, message),
    };
    let result = match analytics::Window::new(from, to) {
        Ok(window) => {
            analytics::journey_map(&state.store, &principal, pathway_id, window, None).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(map) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            analytics::svg::render(&map),
        )
            .into_response(),
        Err(DomainError::NotFound { .. }) => text(StatusCode::NOT_FOUND, "pathway not found\n"),
        Err(DomainError::Forbidden(message)) => text(StatusCode::FORBIDDEN, format!("{message}\n")),
        Err(DomainError::Invalid { field, message }) => {
            text(StatusCode::BAD_REQUEST, format!("{field}: {message}\n"))
        }
        Err(e) => {
            tracing::error!(error = ?e, "journey map failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}
