//! GraphQL over HTTP, per the GraphQL-over-HTTP specification:
//!
//! - `POST /graphql` with `Content-Type: application/json` (other content
//!   types are refused with 415, so a plain HTML form cannot post a mutation);
//!   a JSON object, or an array of at most `max_batch` objects.
//! - `GET /graphql?query=…` runs queries only (405 for mutations); a browser
//!   asking for HTML gets GraphiQL.
//! - `Accept: application/graphql-response+json` gets 400 for requests that do
//!   not parse or validate; `application/json` (or no `Accept`) gets 200 for
//!   every well-formed request, as the legacy format requires.

use std::time::Instant;

use async_graphql::{
    Request as GraphqlRequest, Response as GraphqlResponse, ServerError,
    http::GraphiQLSource,
    parser::types::{DocumentOperations, OperationType},
};
use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::{Value, json};
use tracing::Span;

use super::auth::{self, Credential};
use crate::{
    app::AppState,
    domain,
    graphql::{
        RequestState,
        error::{self, code, code_of},
        limits,
    },
};

/// The response media types the server can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponseJson,
    Json,
}

impl MediaType {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        })
    }
}

/// Picks the response media type from `Accept`; `None` when nothing acceptable.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    let mut json = false;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        match media.as_str() {
            "application/graphql-response+json" => return Some(MediaType::GraphqlResponseJson),
            "application/json" | "application/*" | "*/*" => json = true,
            _ => {}
        }
    }
    json.then_some(MediaType::Json)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// A response carrying only errors (a request error: nothing was executed).
fn error_response(status: StatusCode, media: MediaType, errors: Vec<ServerError>) -> Response {
    let mut response = (status, axum::Json(json!({ "errors": errors }))).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.header());
    response
}

fn plain_error(status: StatusCode, media: MediaType, message: &str, code: &str) -> Response {
    error_response(status, media, vec![error::coded(message, code, None)])
}

/// `GET /graphql`: GraphiQL for browsers, queries for everyone else.
pub async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if param("query").is_none() && wants_html(&headers) {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql/ws")
                .title("Journeymap GraphiQL")
                .header("Authorization", "Bearer <paste your jm_ token here>")
                .finish(),
        )
        .into_response();
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let mut request = GraphqlRequest::new(param("query").unwrap_or_default());
    if let Some(name) = param("operationName") {
        request = request.operation_name(name);
    }
    if let Some(variables) = param("variables") {
        match serde_json::from_str::<Value>(&variables) {
            Ok(Value::Object(map)) => {
                request =
                    request.variables(async_graphql::Variables::from_json(Value::Object(map)));
            }
            _ => {
                return plain_error(
                    StatusCode::BAD_REQUEST,
                    media,
                    "the variables parameter must be a JSON object",
                    "BAD_REQUEST",
                );
            }
        }
    }
    execute_one(&state, &headers, peer, media, request, true).await
}

/// `POST /graphql`.
pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return plain_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
                &format!(
                    "the request body is larger than {} bytes",
                    state.config.max_body_bytes
                ),
                "PAYLOAD_TOO_LARGE",
            );
        }
        Err(rejection) => {
            return plain_error(
                rejection.status(),
                media,
                &format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
                "BAD_REQUEST",
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some("application/json") {
        return plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "POST /graphql needs Content-Type: application/json",
            "UNSUPPORTED_MEDIA_TYPE",
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string).unwrap_or_default());
    // Only an idempotent request is remembered by its body.
    let body_hash = idempotency_key
        .as_ref()
        .map(|_| crate::auth::tokens::hash_bytes(&body));
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                media,
                &format!("the request body is not valid JSON: {e}"),
                "BAD_REQUEST",
            );
        }
    };
    match body {
        Value::Array(_) if idempotency_key.is_some() => plain_error(
            StatusCode::BAD_REQUEST,
            media,
            "Idempotency-Key applies to one operation; send the operations of a batch separately",
            "BAD_REQUEST",
        ),
        Value::Array(items) => {
            let max = state.config.max_batch;
            if items.is_empty() || items.len() > max {
                return plain_error(
                    StatusCode::BAD_REQUEST,
                    media,
                    &format!("a batch holds 1 to {max} operations (got {})", items.len()),
                    "BAD_REQUEST",
                );
            }
            let mut requests = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                match parse_request(item) {
                    Ok(request) => requests.push(request),
                    Err(message) => {
                        return plain_error(
                            StatusCode::BAD_REQUEST,
                            media,
                            &format!("[{index}]: {message}"),
                            "BAD_REQUEST",
                        );
                    }
                }
            }
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                let (_, answer) = execute_body(&state, &headers, peer, media, request, false).await;
                responses.push(answer.into_value());
            }
            let mut response =
                (StatusCode::OK, axum::Json(Value::Array(responses))).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, media.header());
            response
        }
        item => match parse_request(item) {
            Ok(request) => match idempotency_key {
                Some(key) => {
                    let body_hash = body_hash.unwrap_or_default();
                    idempotent(&state, &headers, peer, media, request, key, body_hash).await
                }
                None => execute_one(&state, &headers, peer, media, request, false).await,
            },
            Err(message) => plain_error(StatusCode::BAD_REQUEST, media, &message, "BAD_REQUEST"),
        },
    }
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        MediaType::Json,
        vec![error::coded(
            "Accept must allow application/graphql-response+json or application/json",
            "NOT_ACCEPTABLE",
            None,
        )],
    )
}

/// Reads one GraphQL-over-HTTP request object.
fn parse_request(value: Value) -> Result<GraphqlRequest, String> {
    let Value::Object(map) = value else {
        return Err("a GraphQL request is a JSON object with a query".into());
    };
    match map.get("query") {
        Some(Value::String(_)) => {}
        Some(_) => return Err("query must be a string".into()),
        None => return Err("the request has no query".into()),
    }
    if let Some(variables) = map.get("variables")
        && !matches!(variables, Value::Object(_) | Value::Null)
    {
        return Err("variables must be a JSON object".into());
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| format!("invalid GraphQL request: {e}"))
}

async fn execute_one(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
    request: GraphqlRequest,
    read_only: bool,
) -> Response {
    let (status, answer) = execute_body(state, headers, peer, media, request, read_only).await;
    let wait = match &answer {
        Answer::Built(body) if status == StatusCode::TOO_MANY_REQUESTS => retry_after(body),
        _ => None,
    };
    respond(status, media, answer.into_bytes(), wait)
}

/// An operation's answer with its media type and the headers its status
/// calls for.
fn respond(status: StatusCode, media: MediaType, body: Vec<u8>, wait: Option<u64>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.header());
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(seconds) = wait {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Runs a mutation sent with an `Idempotency-Key` at most once per key and
/// body; a repeat gets the first answer (marked `Idempotent-Replayed: true`).
async fn idempotent(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
    mut request: GraphqlRequest,
    key: String,
    body_hash: String,
) -> Response {
    let is_mutation = operation_type(&mut request) == Some(OperationType::Mutation);
    let principal = match auth::from_headers(&state.store, &state.keys, headers).await {
        Ok(Credential::Authenticated(principal)) => Some(principal),
        _ => None,
    };
    let (Some(principal), true) = (principal, is_mutation) else {
        // Queries are idempotent anyway; bad credentials are answered as usual.
        return execute_one(state, headers, peer, media, request, false).await;
    };
    let keep_for = chrono::Duration::seconds(
        state.config.idempotency_key_ttl_secs.clamp(1, 7 * 86_400) as i64,
    );
    let claim =
        match domain::idempotency::claim(&state.store.db, &principal, &key, &body_hash, keep_for)
            .await
        {
            Ok(claim) => claim,
            Err(domain::DomainError::Invalid { field, message }) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    media,
                    vec![error::coded(
                        format!("{field}: {message}"),
                        code::BAD_USER_INPUT,
                        Some(&field),
                    )],
                );
            }
            Err(domain::DomainError::Conflict { field, message }) => {
                return error_response(
                    StatusCode::CONFLICT,
                    media,
                    vec![error::coded(message, code::CONFLICT, field.as_deref())],
                );
            }
            Err(other) => {
                tracing::error!(error = ?other, "idempotency key lookup failed");
                return plain_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    media,
                    "internal error",
                    code::INTERNAL,
                );
            }
        };
    match claim {
        domain::idempotency::Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = respond(status, media, body.to_string().into_bytes(), None);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        domain::idempotency::Claim::Proceed(id) => {
            let (status, answer) = execute_body(state, headers, peer, media, request, false).await;
            let body = answer.into_value();
            let retryable = body["errors"].as_array().is_some_and(|errors| {
                errors.iter().any(|e| {
                    matches!(
                        e["extensions"]["code"].as_str(),
                        Some(code::INTERNAL | code::RATE_LIMITED | code::UNAUTHENTICATED)
                    )
                })
            });
            let stored = if retryable {
                domain::idempotency::release(&state.store.db, &principal, id).await
            } else {
                domain::idempotency::complete(
                    &state.store.db,
                    &principal,
                    id,
                    status.as_u16(),
                    &body,
                )
                .await
            };
            if let Err(error) = stored {
                tracing::error!(?error, "storing an idempotent response failed");
            }
            let wait = (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| retry_after(&body))
                .flatten();
            respond(status, media, body.to_string().into_bytes(), wait)
        }
    }
}

/// The `retryAfterSeconds` of a rate-limited answer.
fn retry_after(body: &Value) -> Option<u64> {
    body["errors"]
        .as_array()?
        .iter()
        .find_map(|e| e["extensions"]["retryAfterSeconds"].as_u64())
}

/// The name an operation is logged and measured under.
fn operation_name(request: &mut GraphqlRequest) -> String {
    if let Some(name) = &request.operation_name {
        return name.clone();
    }
    match request.parsed_query().map(|doc| &doc.operations) {
        Ok(DocumentOperations::Single(_)) | Err(_) => "anonymous".into(),
        Ok(DocumentOperations::Multiple(ops)) => ops
            .keys()
            .next()
            .map_or("anonymous".into(), |n| n.to_string()),
    }
}

/// The type of the operation that will run, if the document parsed.
fn operation_type(request: &mut GraphqlRequest) -> Option<OperationType> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    match &doc.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).map(|op| op.node.ty),
            None if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
            None => None,
        },
    }
}

async fn execute_body(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    media: MediaType,
    mut request: GraphqlRequest,
    read_only: bool,
) -> (StatusCode, Answer) {
    let started = Instant::now();
    let request_id = request_id(headers);
    let operation = operation_name(&mut request);
    Span::current().record("operation", operation.as_str());
    let finish = |status: StatusCode, outcome: &str, body: Answer| {
        state
            .metrics
            .record_operation(&operation, outcome, started.elapsed());
        (status, body)
    };

    if let Err(mut parse_error) = request.parsed_query().map(|_| ()) {
        error::classify(&mut parse_error, &request_id);
        let mut e = error::coded(
            parse_error.message.clone(),
            code::GRAPHQL_PARSE_FAILED,
            None,
        );
        e.locations = parse_error.locations;
        let status = match media {
            MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        };
        return finish(
            status,
            code::GRAPHQL_PARSE_FAILED,
            Answer::Built(json!({ "errors": [e] })),
        );
    }
    if let Err(e) = limits::check_aliases(&mut request, state.config.max_aliases) {
        let status = match media {
            MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        };
        return finish(
            status,
            code::GRAPHQL_VALIDATION_FAILED,
            Answer::Built(json!({ "errors": [e] })),
        );
    }
    if read_only && operation_type(&mut request).is_some_and(|ty| ty != OperationType::Query) {
        let e = error::coded(
            "only queries may be sent with GET; use POST",
            "METHOD_NOT_ALLOWED",
            None,
        );
        return finish(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Answer::Built(json!({ "errors": [e] })),
        );
    }

    let principal = match auth::from_headers(&state.store, &state.keys, headers).await {
        Ok(Credential::Anonymous) => None,
        Ok(Credential::Authenticated(principal)) => Some(principal.in_request(request_id.clone())),
        Ok(Credential::Invalid) => {
            let e = error::coded(
                "the credential is not valid: unknown, revoked or expired",
                code::UNAUTHENTICATED,
                None,
            );
            return finish(
                StatusCode::UNAUTHORIZED,
                code::UNAUTHENTICATED,
                Answer::Built(json!({ "errors": [e] })),
            );
        }
        Err(e) => {
            let mut error = error::coded("", code::INTERNAL, None);
            error.source = Some(std::sync::Arc::new(e));
            error.extensions = None;
            error::classify(&mut error, &request_id);
            return finish(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL,
                Answer::Built(json!({ "errors": [error] })),
            );
        }
    };

    let schema = match principal {
        Some(_) => &state.schemas.authenticated,
        None => &state.schemas.anonymous,
    };
    let (request_state, queue) = RequestState::new(
        &state.store,
        principal.clone(),
        request_id.clone(),
        Some(peer.ip()),
    );
    let reads = request_state.patients_read.clone();
    let response = error::finalize(
        crate::graphql::execute(schema, request, request_state, queue).await,
        &request_id,
    );
    if let Some(principal) = &principal {
        state.audit.flush_reads(principal, &reads).await;
    }
    let outcome = response
        .errors
        .first()
        .and_then(code_of)
        .unwrap_or("ok")
        .to_string();
    let request_error = is_request_error(&response);
    let rate_limited = response.data == async_graphql::Value::Null
        && response
            .errors
            .iter()
            .any(|e| code_of(e) == Some(code::RATE_LIMITED));
    let status = match (media, request_error) {
        _ if rate_limited => StatusCode::TOO_MANY_REQUESTS,
        (MediaType::GraphqlResponseJson, true) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = if request_error {
        Answer::Built(json!({ "errors": response.errors }))
    } else {
        Answer::Executed(Box::new(response))
    };
    finish(status, &outcome, body)
}

/// The body of an answer to one operation.
enum Answer {
    /// JSON the endpoint built itself: errors before or instead of execution.
    Built(Value),
    /// The executed operation's response, serialized straight to bytes:
    /// building a `serde_json::Value` of a large response first costs as
    /// much again.
    Executed(Box<GraphqlResponse>),
}

impl Answer {
    fn into_value(self) -> Value {
        match self {
            Answer::Built(value) => value,
            Answer::Executed(response) => serde_json::to_value(&*response)
                .unwrap_or_else(|_| json!({ "errors": [{ "message": "internal error" }] })),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let bytes = match &self {
            Answer::Built(value) => serde_json::to_vec(value),
            Answer::Executed(response) => serde_json::to_vec(&**response),
        };
        bytes.unwrap_or_else(|_| br#"{"errors":[{"message":"internal error"}]}"#.to_vec())
    }
}

/// True when nothing ran: the operation failed validation.
fn is_request_error(response: &GraphqlResponse) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| e.path.is_empty() && e.source.is_none())
        && response.errors.iter().all(|e| {
            matches!(
                code_of(e),
                Some(code::GRAPHQL_VALIDATION_FAILED | code::BAD_USER_INPUT | code::RATE_LIMITED)
            )
        })
}
