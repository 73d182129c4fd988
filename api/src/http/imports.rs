//! `POST /imports/patients`: the CSV import over HTTP (`text/csv`,
//! `?dryRun=true`), with a credential holding `patients:write`. The body is
//! streamed into the import, never held whole; the answer is the import's
//! report as JSON once the last row is written, or, with `Accept:
//! application/x-ndjson`, a line of progress after every batch of 500 rows
//! and the report as the last line.

use axum::{
    Json,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
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
    if !wants_progress(&headers) {
        let report =
            imports::patients(&state.store, &principal, Box::new(reader), options, &|_| {}).await?;
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    // Progress after every batch, the report last. The import runs on its
    // own task; the answer waits for its first word, so a file refused
    // whole still gets its status.
    let (updates, mut received) = mpsc::unbounded_channel::<Update>();
    let store = state.store.clone();
    tokio::spawn(async move {
        let progress = updates.clone();
        let reported = std::sync::atomic::AtomicU64::new(0);
        let result = imports::patients(&store, &principal, Box::new(reader), options, &move |at| {
            // One line per batch: the end of the file reports again.
            if reported.swap(at.rows, std::sync::atomic::Ordering::Relaxed) != at.rows {
                let _ = progress.send(Update::Progress(at));
            }
        })
        .await;
        let _ = updates.send(Update::Done(result));
    });
    let first = match received.recv().await {
        Some(Update::Done(Err(error))) => return Err(error.into()),
        Some(update) => update,
        None => {
            return Err(DomainError::internal(anyhow::anyhow!(
                "the import task ended without a word"
            ))
            .into());
        }
    };
    // Until the line that ends the answer (the report, or an error).
    let lines = futures::stream::unfold(
        (Some(first), received, false),
        |(next, mut received, ended)| async move {
            if ended {
                return None;
            }
            let update = match next {
                Some(update) => update,
                None => received.recv().await?,
            };
            let (line, done) = update.line();
            Some((
                Ok::<_, std::convert::Infallible>(format!("{line}\n")),
                (None, received, done),
            ))
        },
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, NDJSON)],
        Body::from_stream(lines),
    )
        .into_response())
}

/// The media type of the answer with progress.
const NDJSON: &str = "application/x-ndjson";

/// Whether the client asked for progress lines (`Accept: application/x-ndjson`).
fn wants_progress(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.split(';').next().map(str::trim) == Some(NDJSON))
}

/// What the import task tells the answer.
enum Update {
    Progress(imports::Progress),
    Done(Result<imports::ImportReport, DomainError>),
}

impl Update {
    /// The answer's line for this update, and whether it is the last.
    fn line(self) -> (serde_json::Value, bool) {
        match self {
            Update::Progress(at) => (
                serde_json::json!({ "progress": { "rows": at.rows, "bytes": at.bytes } }),
                false,
            ),
            Update::Done(Ok(report)) => (serde_json::json!({ "report": report }), true),
            Update::Done(Err(error)) => (HttpError::from(error).body(), true),
        }
    }
}
