//! `GET /dashboard`: the clinic's live journey-map page, served by the binary.
//!
//! The page is three files written for Journeymap (HTML, one script, one
//! style sheet) and an icon, compiled into the binary: it needs no internet
//! and no build step. It talks only to this server's own GraphQL API, over
//! HTTP and `graphql-transport-ws`, with the signed-in staff member's tokens,
//! so it shows exactly what the API lets that role see.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles
//! and connections from this origin only), refuses framing, sends no
//! referrer and forbids content sniffing.

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use super::AppState;

const INDEX_HTML: &str = include_str!("../../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../../assets/dashboard/app.css");
const ICON_SVG: &str = include_str!("../../../assets/dashboard/icon.svg");

/// The dashboard's routes, and `GET /` leading browsers to it.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/app.css", get(style))
        .route("/dashboard/icon.svg", get(icon))
}

/// The policy of every dashboard answer. `connect-src` names the page's own
/// origin and its WebSocket twin (the socket of the live feed), nothing else.
fn content_security_policy(headers: &HeaderMap) -> HeaderValue {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    let sockets = match host {
        Some(host) => format!(" ws://{host} wss://{host}"),
        None => String::new(),
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// One of the page's files with the security headers.
fn asset(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(headers),
            ),
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    asset(&headers, "text/html; charset=utf-8", INDEX_HTML)
}

async fn script(headers: HeaderMap) -> Response {
    asset(&headers, "text/javascript; charset=utf-8", APP_JS)
}

async fn style(headers: HeaderMap) -> Response {
    asset(&headers, "text/css; charset=utf-8", APP_CSS)
}

async fn icon(headers: HeaderMap) -> Response {
    asset(&headers, "image/svg+xml", ICON_SVG)
}

/// Does the client prefer a web page (a browser's address bar)?
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// `GET /`: browsers go to the dashboard; other clients learn where things are.
async fn root(headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        Redirect::to("/dashboard").into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            "not found: the API is at /graphql (GraphiQL in a browser), the dashboard at /dashboard; see also /healthz, /readyz, /metrics\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_this_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let policy = content_security_policy(&headers);
        let policy = policy.to_str().unwrap();
        assert!(policy.contains("script-src 'self';"));
        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe"));
    }

    #[test]
    fn a_strange_host_adds_no_source() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("evil.example; script-src *"),
        );
        let policy = content_security_policy(&headers);
        assert!(policy.to_str().unwrap().contains("connect-src 'self';"));
    }
}
