//! The HTTP surface: routes, middleware, health, metrics.
//!
//! Every request gets an `x-request-id` (kept if the client sent one) that
//! appears on every log line of the request and in masked error messages.

mod admission;
pub mod caller;
mod dashboard;
pub mod error;
mod fhir;
mod graphql;
mod imports;
mod journey_map;
pub mod operation;
pub mod starting;
mod state;
pub mod ws;

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    extract::{MatchedPath, State},
    http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    classify::ServerErrorsFailureClass,
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::{Span, field::Empty};

pub use admission::Admission;
pub use state::{AppState, Lifecycle};
pub use ws::SharedSubscriptions;

use crate::metrics::HttpLabels;

/// The header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of a request's headers (set by the middleware).
pub fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// Builds the router with its middleware.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let metrics = state.metrics.clone();
    let routes = Router::new()
        .route(
            "/graphql",
            get(graphql::get).post(graphql::post).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), graphql::in_turn),
            ),
        )
        .route("/graphql/ws", get(ws::upgrade))
        .route("/journey-maps/{file}", get(journey_map::svg))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(dashboard::routes())
        .route("/fhir/metadata", get(fhir::metadata))
        .route("/fhir/Patient/{id}", get(fhir::read_patient))
        .route("/fhir/Patient/{id}/$everything", get(fhir::everything))
        .route("/fhir/$export", get(fhir::export::kick_off))
        .route("/fhir/Patient/$export", get(fhir::export::kick_off))
        .route(
            "/fhir/bulk-status/{id}",
            get(fhir::export::status).delete(fhir::export::cancel),
        )
        .fallback(not_found)
        .with_state(state.clone())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout(),
        ));
    // Long transfers (a 100,000-row import, a bulk export's file) are not cut
    // by the request timeout; they stream.
    let routes = routes.merge(
        Router::new()
            .route("/imports/patients", axum::routing::post(imports::patients))
            .route("/fhir/bulk-files/{id}/{file}", get(fhir::export::file))
            .with_state(state),
    );

    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<Body>| {
            tracing::info_span!(
                "request",
                request_id = %request_id_of(request.headers()),
                method = %request.method(),
                path = %request.uri().path(),
                operation = Empty,
            )
        })
        .on_request(())
        .on_response(
            move |response: &Response<Body>, latency: Duration, _span: &Span| {
                tracing::info!(
                    status = response.status().as_u16(),
                    latency_ms = latency.as_millis() as u64,
                    "response"
                );
            },
        )
        .on_failure(
            |class: ServerErrorsFailureClass, latency: Duration, _span: &Span| match class {
                // Not ready (starting, migrating, shutting down) or timed out:
                // expected, and in the response line already; a probe
                // polling readiness must not fill the log with errors.
                ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {}
                other => tracing::error!(
                    classification = %other,
                    latency_ms = latency.as_millis() as u64,
                    "response failed"
                ),
            },
        );

    let routes = routes.layer(axum::middleware::from_fn(
        move |request: Request<Body>, next: axum::middleware::Next| {
            let metrics = metrics.clone();
            async move {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".into());
                let response = next.run(request).await;
                metrics
                    .http_responses
                    .get_or_create(&HttpLabels {
                        route,
                        status: response.status().as_u16().to_string(),
                    })
                    .inc();
                response
            }
        },
    ));

    let cors = cors(&config.cors_origins);
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(trace)
            .option_layer(cors)
            .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes)),
    )
}

/// The FHIR mapping the bulk export worker writes with.
pub fn fhir_export_render() -> crate::domain::bulk_export::worker::Render {
    fhir::export::render
}

/// CORS for browser front ends on other origins; off when no origin is configured.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                REQUEST_ID,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("prefer"),
            ])
            .expose_headers([
                REQUEST_ID,
                HeaderName::from_static("idempotent-replayed"),
                header::RETRY_AFTER,
                header::CONTENT_LOCATION,
                HeaderName::from_static("x-progress"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers, every migration is applied, and the
/// server is not shutting down.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.lifecycle.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
    } else if state.store.db.is_ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable or migrations pending\n",
        )
    }
}

/// Prometheus text exposition.
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .record_requests_now(state.admission.running(), state.admission.waiting());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.store.db),
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found: the API is at /graphql (GraphiQL in a browser); see also /healthz, /readyz, /metrics\n",
    )
}
