//! FHIR Bulk Data export over HTTP, per the Bulk Data Access specification
//! (STU 2, FHIR R4):
//!
//! - `GET /fhir/$export` (and `GET /fhir/Patient/$export`, the same here:
//!   every resource is in some patient's compartment) with `Prefer:
//!   respond-async`: `202 Accepted`, `Content-Location: <status URL>`.
//!   `_type`, `_since` and `_outputFormat` (NDJSON only) are honoured; other
//!   parameters are ignored, or refused with `Prefer: handling=strict`.
//! - `GET <status URL>`: `202` with `X-Progress` and `Retry-After` while it
//!   runs, `200` with the manifest when done, `500` with an
//!   `OperationOutcome` when it failed. `DELETE <status URL>`: cancels
//!   (`202`), files deleted; the URL answers `404` after.
//! - `GET <file URL>`: `application/fhir+ndjson`, streamed part by part.
//!
//! Every answer's credential is checked the way the FHIR read checks it; the
//! rules are `domain::bulk_export`'s.

use std::collections::HashMap;

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use entity::{bulk_exports, stage_transitions};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{FhirError, fhir, signed_in, t};
use crate::{
    domain::{
        DomainError,
        bulk_export::{self, ExportRequest, Progress, worker::Batch},
    },
    http::{AppState, caller::Caller, error::HttpError},
    ids::{self, IdKind},
};

/// The media type of export files.
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";

/// Seconds a client is asked to wait between polls.
const POLL_AFTER_SECS: u64 = 2;

/// The FHIR mapping of a batch of rows: the same resources the FHIR read
/// answers, so an erased patient's exports show only what the API shows.
pub fn render(batch: Batch<'_>) -> Vec<Value> {
    match batch {
        Batch::Patients(rows) => rows.iter().map(super::patient).collect(),
        Batch::Journeys {
            journeys,
            transitions,
            pathways,
            stages,
        } => {
            let mut steps: HashMap<Uuid, Vec<&stage_transitions::Model>> = HashMap::new();
            for step in transitions {
                steps.entry(step.journey_id).or_default().push(step);
            }
            journeys
                .iter()
                .map(|journey| {
                    let steps = steps.get(&journey.id).map(Vec::as_slice).unwrap_or(&[]);
                    super::episode_of_care(journey, steps, pathways, stages)
                })
                .collect()
        }
        Batch::Touchpoints(rows) => rows.iter().map(super::communication).collect(),
        Batch::Feedback(rows) => rows.iter().map(super::questionnaire_response).collect(),
        Batch::FollowUps(rows) => rows.iter().map(super::task).collect(),
        Batch::Consents(rows) => rows.iter().map(super::consent).collect(),
    }
}

/// The address clients reach this server at: `--public-url`, or
/// `http://<Host>` of the request.
fn base_url(state: &AppState, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(url) = state
        .config
        .public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| state.config.listen.to_string());
    format!("http://{host}")
}

fn status_url(base: &str, export: Uuid) -> String {
    format!(
        "{base}/fhir/bulk-status/{}",
        IdKind::BulkExport.encode(export)
    )
}

fn file_url(base: &str, export: Uuid, resource_type: &str) -> String {
    format!(
        "{base}/fhir/bulk-files/{}/{resource_type}.ndjson",
        IdKind::BulkExport.encode(export)
    )
}

fn bad(message: impl Into<String>) -> FhirError {
    HttpError::request(StatusCode::BAD_REQUEST, "BAD_REQUEST", message).into()
}

/// The `Prefer` preferences of a request, lower-cased.
fn preferences(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A FHIR `instant` (`2026-12-01T09:30:00Z`, `…+01:00`). A `+` sent
/// unencoded in a query string arrives as a space; it is read as the `+`
/// it was.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_rfc3339(&text.replace(' ', "+")))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn information(message: String) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": message }],
    })
}

/// `GET /fhir/$export`, `GET /fhir/Patient/$export`: the kick-off.
pub async fn kick_off(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let prefer = preferences(&headers);
    if !prefer.iter().any(|p| p == "respond-async") {
        return Err(bad(
            "a bulk export runs in the background: send the header Prefer: respond-async",
        ));
    }
    let strict = prefer.iter().any(|p| p == "handling=strict");
    let mut request = ExportRequest::default();
    let mut seen_since = false;
    for (name, value) in &params {
        match name.as_str() {
            "_outputFormat"
                if !matches!(
                    value.trim(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) =>
            {
                return Err(bad(format!(
                    "_outputFormat: {value:?} is not supported; this server writes \
                     application/fhir+ndjson"
                )));
            }
            "_outputFormat" => {}
            "_type" => request
                .types
                .extend(value.split(',').map(|t| t.trim().to_string())),
            "_since" => {
                if seen_since {
                    return Err(bad("_since: give it once"));
                }
                seen_since = true;
                request.since = Some(instant(value).ok_or_else(|| {
                    bad(format!(
                        "_since: {value:?} is not a FHIR instant such as 2026-12-01T09:30:00Z"
                    ))
                })?);
            }
            other if strict => {
                return Err(bad(format!(
                    "{other}: this server does not support the parameter (Prefer: handling=strict)"
                )));
            }
            _ => {}
        }
    }
    let base = base_url(&state, &headers, &uri);
    request.request_url = format!(
        "{base}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let export = bulk_export::kick_off(&state.store, &principal, request).await?;
    let location = status_url(&base, export.id);
    let mut response = fhir(
        StatusCode::ACCEPTED,
        information(format!(
            "export {} queued; poll the Content-Location",
            IdKind::BulkExport.encode(export.id)
        )),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, value);
    }
    Ok(response)
}

/// The export an id names; a malformed id names none.
fn export_id(id: &str) -> Result<Uuid, FhirError> {
    ids::decode_as(IdKind::BulkExport, id).map_err(|_| DomainError::not_found("export").into())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn manifest(base: &str, export: &bulk_exports::Model, files: &[bulk_export::ExportFile]) -> Value {
    json!({
        "transactionTime": t(bulk_export::transaction_time(export)),
        "request": export.request_url,
        "requiresAccessToken": true,
        "output": files.iter().map(|f| json!({
            "type": f.resource_type.name(),
            "url": file_url(base, export.id, f.resource_type.name()),
            "count": f.resources,
        })).collect::<Vec<_>>(),
        "error": [],
    })
}

/// `GET /fhir/bulk-status/{id}`: where the export stands.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let id = export_id(&id)?;
    Ok(
        match bulk_export::status(&state.store, &principal, id).await? {
            Progress::Running(export) => {
                let mut response = StatusCode::ACCEPTED.into_response();
                let headers = response.headers_mut();
                if let Ok(progress) = HeaderValue::from_str(&bulk_export::progress_text(&export)) {
                    headers.insert("x-progress", progress);
                }
                headers.insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECS));
                response
            }
            Progress::Done(export, files) => {
                let base = base_url(&state, &headers, &uri);
                let mut response = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    manifest(&base, &export, &files).to_string(),
                )
                    .into_response();
                if let Some(expires) = export.expires_at
                    && let Ok(value) = HeaderValue::from_str(&http_date(expires))
                {
                    response.headers_mut().insert(header::EXPIRES, value);
                }
                response
            }
            Progress::Failed(export) => fhir(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{ "severity": "fatal", "code": "exception",
                        "diagnostics": export.error.unwrap_or_else(|| "the export failed".into()) }],
                }),
            ),
        },
    )
}

/// `DELETE /fhir/bulk-status/{id}`: cancels the export, or deletes its files.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let id = export_id(&id)?;
    bulk_export::cancel(&state.store, &principal, id).await?;
    Ok(fhir(
        StatusCode::ACCEPTED,
        information(format!(
            "export {} cancelled; its files are deleted",
            IdKind::BulkExport.encode(id)
        )),
    ))
}

/// `GET /fhir/bulk-files/{id}/{Type}.ndjson`: one file, streamed.
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let id = export_id(&id)?;
    let resource_type = name
        .strip_suffix(".ndjson")
        .ok_or(DomainError::not_found("file"))?;
    let (export, file) = bulk_export::file(&state.store, &principal, id, resource_type).await?;
    let db = state.store.db.clone();
    let body = async_stream::stream! {
        for part in 0..file.parts {
            match bulk_export::part(&db, &export, &file, part).await {
                Ok(lines) => yield Ok::<_, std::io::Error>(Bytes::from(lines)),
                Err(error) => {
                    tracing::error!(?error, export = %export.id, part, "reading a bulk export file failed");
                    yield Err(std::io::Error::other("the export file could not be read"));
                    return;
                }
            }
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, FHIR_NDJSON)],
        Body::from_stream(body),
    )
        .into_response())
}
