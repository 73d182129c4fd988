//! `POST /imports/patients`: the CSV import over HTTP (`text/csv`,
//! `?dryRun=true`), with a credential holding `patients:write`. The body is
//! streamed into the import, never held whole; the answer is the import's
//! report as JSON once the last row is written.

use axum::{
    Json,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{
    AppState,
    caller::SignedIn,
    error::{HttpError, transport},
};
use crate::domain::{
    DomainError,
    imports::{self, ImportOptions, MAX_IMPORT_BYTES},
};

/// The query string of an import.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportParams {
    /// `true` validates everything and writes nothing.
    dry_run: Option<String>,
}

fn dry_run(value: Option<&str>) -> Result<bool, DomainError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(DomainError::invalid("dryRun", "must be true or false")),
    }
}

/// Imports the patients of a CSV body.
pub async fn patients(
    State(state): State<AppState>,
    SignedIn(principal): SignedIn,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let options = ImportOptions {
        dry_run: dry_run(params.dry_run.as_deref())?,
    };
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(media.as_deref(), Some("text/csv") | Some("application/csv")) {
        return Err(HttpError::request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            transport::UNSUPPORTED_MEDIA_TYPE,
            "send the file as Content-Type: text/csv (UTF-8)",
        ));
    }
    if let Some(charset) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.to_ascii_lowercase()
                .split("charset=")
                .nth(1)
                .map(str::to_string)
        })
        && !matches!(charset.trim_matches('"'), "utf-8" | "utf8" | "us-ascii")
    {
        return Err(HttpError::request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            transport::UNSUPPORTED_MEDIA_TYPE,
            format!("the file must be UTF-8, not {charset}"),
        ));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|length| length > MAX_IMPORT_BYTES) {
        return Err(HttpError::request(
            StatusCode::PAYLOAD_TOO_LARGE,
            transport::PAYLOAD_TOO_LARGE,
            format!(
                "file: is over the import limit of {} MiB; split it into smaller files",
                MAX_IMPORT_BYTES / (1024 * 1024)
            ),
        ));
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let report =
        imports::patients(&state.store, &principal, Box::new(reader), options, &|_| {}).await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}
