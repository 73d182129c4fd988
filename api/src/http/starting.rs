//! What the listen address answers while the process is still starting
//! (waiting for another replica's migrations, applying its own, seeding the
//! demo): alive on `/healthz`, not ready on `/readyz`, 503 for everything
//! else, so a load balancer sends it nothing until it can serve.

use axum::{Router, http::StatusCode, routing::get};

/// The router served until migrations are applied.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(not_ready))
        .fallback(not_ready)
}

async fn not_ready() -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "1")],
        "not ready: starting (migrations not yet applied)\n",
    )
}
