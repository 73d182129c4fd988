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
//!
//! Every operation runs through [`super::operation`].

use std::{net::SocketAddr, time::Instant};

use async_graphql::{
    Request as GraphqlRequest, Response as GraphqlResponse, ServerError, http::GraphiQLSource,
    parser::types::OperationType,
};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, RawQuery, Request, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Response},
};
use serde_json::{Value, json};
use tracing::Span;

use super::{
    AppState, admission,
    caller::Caller,
    error::transport,
    operation::{self, Refusal},
    request_id_of,
};
use crate::{
    auth::Principal,
    domain::{self, values::IdempotencyKey},
    graphql::error::{self, code, code_of},
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

    /// The status of an answer that ran nothing: 400 in the new format, 200
    /// in the legacy one.
    fn request_error_status(self) -> StatusCode {
        match self {
            MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        }
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

/// An answer that is only errors, in the negotiated media type.
/// `wait`: seconds for `Retry-After`.
fn error_response(
    status: StatusCode,
    media: MediaType,
    errors: Vec<ServerError>,
    wait: Option<u64>,
) -> Response {
    respond(
        status,
        media,
        serde_json::to_vec(&json!({ "errors": errors })).unwrap_or_default(),
        wait,
    )
}

fn plain_error(status: StatusCode, media: MediaType, message: &str, code: &str) -> Response {
    error_response(status, media, vec![error::coded(message, code, None)], None)
}

fn not_acceptable() -> Response {
    plain_error(
        StatusCode::NOT_ACCEPTABLE,
        MediaType::Json,
        "Accept must allow application/graphql-response+json or application/json",
        transport::NOT_ACCEPTABLE,
    )
}

/// One answer with its media type and the headers its status calls for.
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

/// What one HTTP request carries besides its operations.
struct Context<'a> {
    app: &'a AppState,
    caller: &'a Caller,
    request_id: String,
    peer: SocketAddr,
    media: MediaType,
}

/// Runs `request` when its turn comes (see [`super::admission`]), holding
/// the permit until its response is written; refused when too many already
/// wait: 503 `OVERLOADED` with `Retry-After`, before its body is read.
pub async fn in_turn(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let turn = match app.admission.admit().await {
        Ok(turn) => turn,
        Err(refusal) => {
            let media = negotiate(request.headers()).unwrap_or(MediaType::Json);
            let wait = admission::RETRY_AFTER;
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                media,
                vec![error::coded_retry_after(
                    refusal.to_string(),
                    code::OVERLOADED,
                    wait,
                )],
                Some(domain::error::retry_after_seconds(wait)),
            );
        }
    };
    let response = next.run(request).await;
    drop(turn);
    response
}

/// `GET /graphql`: GraphiQL for browsers, queries for everyone else.
pub async fn get(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
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
        return Html(graphiql_page()).into_response();
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
                    transport::BAD_REQUEST,
                );
            }
        }
    }
    let cx = Context {
        app: &app,
        caller: &caller,
        request_id: request_id_of(&headers),
        peer,
        media,
    };
    let (status, answer) = execute(&cx, request, true).await;
    answer.into_response(status, media)
}

/// `POST /graphql`.
pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
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
                    app.config.max_body_bytes
                ),
                transport::PAYLOAD_TOO_LARGE,
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
                transport::BAD_REQUEST,
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
            transport::UNSUPPORTED_MEDIA_TYPE,
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
                transport::BAD_REQUEST,
            );
        }
    };
    let cx = Context {
        app: &app,
        caller: &caller,
        request_id: request_id_of(&headers),
        peer,
        media,
    };
    match body {
        Value::Array(_) if idempotency_key.is_some() => plain_error(
            StatusCode::BAD_REQUEST,
            media,
            "Idempotency-Key applies to one operation; send the operations of a batch separately",
            transport::BAD_REQUEST,
        ),
        Value::Array(items) => batch(&cx, items).await,
        item => match parse_request(item) {
            Ok(request) => match (idempotency_key, cx.caller.principal()) {
                (Some(key), Some(principal)) => {
                    idempotent(&cx, principal, request, key, body_hash.unwrap_or_default()).await
                }
                _ => {
                    let (status, answer) = execute(&cx, request, false).await;
                    answer.into_response(status, media)
                }
            },
            Err(message) => plain_error(
                StatusCode::BAD_REQUEST,
                media,
                &message,
                transport::BAD_REQUEST,
            ),
        },
    }
}

/// A JSON array of operations, answered as an array in the same order.
async fn batch(cx: &Context<'_>, items: Vec<Value>) -> Response {
    let max = cx.app.config.max_batch;
    if items.is_empty() || items.len() > max {
        return plain_error(
            StatusCode::BAD_REQUEST,
            cx.media,
            &format!("a batch holds 1 to {max} operations (got {})", items.len()),
            transport::BAD_REQUEST,
        );
    }
    let mut requests = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match parse_request(item) {
            Ok(request) => requests.push(request),
            Err(message) => {
                return plain_error(
                    StatusCode::BAD_REQUEST,
                    cx.media,
                    &format!("[{index}]: {message}"),
                    transport::BAD_REQUEST,
                );
            }
        }
    }
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        let (_, answer) = execute(cx, request, false).await;
        responses.push(answer.into_value());
    }
    respond(
        StatusCode::OK,
        cx.media,
        serde_json::to_vec(&Value::Array(responses)).unwrap_or_default(),
        None,
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

/// Runs a mutation sent with an `Idempotency-Key` at most once per key and
/// body; a repeat gets the first answer (marked `Idempotent-Replayed: true`).
async fn idempotent(
    cx: &Context<'_>,
    principal: &Principal,
    request: GraphqlRequest,
    key: String,
    body_hash: String,
) -> Response {
    let db = &cx.app.store.db;
    let checked = operation::prepare(
        cx.app,
        Some(principal.clone()),
        &cx.request_id,
        Some(cx.peer.ip()),
        request,
        false,
    );
    let mut prepared = match checked {
        Ok(prepared) => prepared,
        Err(refusal) => return refused(cx, refusal).into_response(StatusCode::OK, cx.media),
    };
    // Queries are idempotent anyway.
    if prepared.kind() != Some(OperationType::Mutation) {
        let (status, answer) = run(cx, prepared).await;
        return answer.into_response(status, cx.media);
    }
    let keep_for = chrono::Duration::seconds(
        cx.app.config.idempotency_key_ttl_secs.clamp(1, 7 * 86_400) as i64,
    );
    let claim = match IdempotencyKey::parse(&key) {
        Ok(key) => domain::idempotency::claim(db, principal, &key, &body_hash, keep_for).await,
        Err(invalid) => Err(invalid),
    };
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => {
            let status = super::error::status_of(&error);
            return error_response(
                status,
                cx.media,
                vec![error::of_domain(&error, &cx.request_id)],
                None,
            );
        }
    };
    match claim {
        domain::idempotency::Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = respond(status, cx.media, body.to_string().into_bytes(), None);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        domain::idempotency::Claim::Proceed(id) => {
            let (status, answer) = run(cx, prepared).await;
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
                domain::idempotency::release(db, principal, id).await
            } else {
                domain::idempotency::complete(db, principal, id, status.as_u16(), &body).await
            };
            if let Err(error) = stored {
                tracing::error!(?error, "storing an idempotent response failed");
            }
            let wait = (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| retry_after(&body))
                .flatten();
            respond(status, cx.media, body.to_string().into_bytes(), wait)
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

/// Checks, authenticates and runs one operation; `queries_only` for GET.
async fn execute(
    cx: &Context<'_>,
    request: GraphqlRequest,
    queries_only: bool,
) -> (StatusCode, Answer) {
    let started = Instant::now();
    let principal = cx.caller.principal().cloned();
    let checked = operation::prepare(
        cx.app,
        principal,
        &cx.request_id,
        Some(cx.peer.ip()),
        request,
        queries_only,
    );
    let prepared = match checked {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let name = "anonymous";
            let answer = refused(cx, refusal);
            cx.app
                .metrics
                .record_operation(name, answer.outcome(), started.elapsed());
            return (answer.status(cx.media), answer);
        }
    };
    if matches!(cx.caller, Caller::Refused) {
        let answer = Answer::Refused(
            StatusCode::UNAUTHORIZED,
            error::coded(
                "the credential is not valid: unknown, revoked or expired",
                code::UNAUTHENTICATED,
                None,
            ),
        );
        cx.app
            .metrics
            .record_operation(&prepared.name, code::UNAUTHENTICATED, started.elapsed());
        return (StatusCode::UNAUTHORIZED, answer);
    }
    run(cx, prepared).await
}

/// Runs a checked operation and measures it.
async fn run(cx: &Context<'_>, prepared: operation::Operation) -> (StatusCode, Answer) {
    let started = Instant::now();
    let name = prepared.name.clone();
    Span::current().record("operation", name.as_str());
    let response = prepared.run(cx.app).await;
    let outcome = response
        .errors
        .first()
        .and_then(code_of)
        .unwrap_or("ok")
        .to_string();
    cx.app
        .metrics
        .record_operation(&name, &outcome, started.elapsed());
    let request_error = operation::is_request_error(&response);
    let rate_limited = response.data == async_graphql::Value::Null
        && response
            .errors
            .iter()
            .any(|e| code_of(e) == Some(code::RATE_LIMITED));
    let status = if rate_limited {
        StatusCode::TOO_MANY_REQUESTS
    } else if request_error {
        cx.media.request_error_status()
    } else {
        StatusCode::OK
    };
    let answer = if request_error {
        Answer::Errors(response.errors)
    } else {
        Answer::Executed(Box::new(response))
    };
    (status, answer)
}

/// The answer to an operation refused before it ran.
fn refused(cx: &Context<'_>, refusal: Refusal) -> Answer {
    match refusal {
        Refusal::NotAQuery(e) => Answer::Refused(StatusCode::METHOD_NOT_ALLOWED, e),
        Refusal::Parse(e) | Refusal::Invalid(e) => {
            Answer::Refused(cx.media.request_error_status(), e)
        }
    }
}

/// The body of an answer to one operation.
enum Answer {
    /// Refused before it ran, with its own status.
    Refused(StatusCode, ServerError),
    /// Ran nothing: errors only.
    Errors(Vec<ServerError>),
    /// The executed operation's response, serialized straight to bytes:
    /// building a `serde_json::Value` of a large response first costs as
    /// much again.
    Executed(Box<GraphqlResponse>),
}

impl Answer {
    fn status(&self, media: MediaType) -> StatusCode {
        match self {
            Answer::Refused(status, _) => *status,
            Answer::Errors(_) => media.request_error_status(),
            Answer::Executed(_) => StatusCode::OK,
        }
    }

    fn outcome(&self) -> &str {
        match self {
            Answer::Refused(_, e) => code_of(e).unwrap_or("error"),
            Answer::Errors(errors) => errors.first().and_then(code_of).unwrap_or("error"),
            Answer::Executed(response) => response.errors.first().and_then(code_of).unwrap_or("ok"),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Answer::Refused(_, e) => json!({ "errors": [e] }),
            Answer::Errors(errors) => json!({ "errors": errors }),
            Answer::Executed(response) => serde_json::to_value(&*response)
                .unwrap_or_else(|_| json!({ "errors": [{ "message": "internal error" }] })),
        }
    }

    fn into_response(self, status: StatusCode, media: MediaType) -> Response {
        let wait = match &self {
            Answer::Errors(errors) if status == StatusCode::TOO_MANY_REQUESTS => errors
                .iter()
                .find_map(|e| e.extensions.as_ref()?.get("retryAfterSeconds").cloned())
                .and_then(|v| match v {
                    async_graphql::Value::Number(n) => n.as_u64(),
                    _ => None,
                }),
            _ => None,
        };
        let body = match &self {
            Answer::Executed(response) => serde_json::to_vec(&**response),
            Answer::Refused(_, e) => serde_json::to_vec(&json!({ "errors": [e] })),
            Answer::Errors(errors) => serde_json::to_vec(&json!({ "errors": errors })),
        };
        let body =
            body.unwrap_or_else(|_| br#"{"errors":[{"message":"internal error"}]}"#.to_vec());
        respond(status, media, body, wait)
    }
}

/// GraphiQL's page. Its scripts come from a CDN (no maintained crate serves
/// them from the binary), so the page says so while they load, and points to
/// the dashboard, which works offline. React's production builds, not the
/// development builds the page names by default.
fn graphiql_page() -> String {
    GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql/ws")
        .title("Journeymap GraphiQL")
        .header("Authorization", "Bearer <paste your jm_ token here>")
        .finish()
        .replace("umd/react.development.js", "umd/react.production.min.js")
        .replace("umd/react-dom.development.js", "umd/react-dom.production.min.js")
        .replace(
            r#"<div id="graphiql">Loading...</div>"#,
            r#"<div id="graphiql"><p style="font: 16px/1.5 system-ui, sans-serif; margin: 2rem; max-width: 40rem">Loading GraphiQL&hellip; GraphiQL needs internet: its scripts come from unpkg.com. Without internet, use the clinic dashboard at <a href="/dashboard">/dashboard</a>, which Journeymap serves itself.</p></div>"#,
        )
}

#[cfg(test)]
mod graphiql_tests {
    #[test]
    fn graphiql_says_it_needs_internet_and_uses_production_builds() {
        let page = super::graphiql_page();
        assert!(page.contains("GraphiQL needs internet"));
        assert!(page.contains(r#"href="/dashboard""#));
        assert!(!page.contains("development.js"), "{page}");
        assert!(page.contains("react.production.min.js"));
    }
}
