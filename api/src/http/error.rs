//! The one way an HTTP route that is not GraphQL answers an error: the same
//! body a GraphQL client reads (`{"errors": [{"message", "extensions":
//! {"code", "field"}}]}`), with the status the code calls for.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::domain::{DomainError, error::code};

/// Codes of requests that are wrong as HTTP, before any rule is asked.
pub mod transport {
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
}

/// Why an HTTP request was not served.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A rule of the domain said no.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request itself is wrong (its method, body, media type, path).
    #[error("{message}")]
    Request {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl HttpError {
    /// A request that is wrong as HTTP.
    pub fn request(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError::Request {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The status a domain error answers with.
pub fn status_of(error: &DomainError) -> StatusCode {
    match error.code() {
        code::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        code::FORBIDDEN => StatusCode::FORBIDDEN,
        code::NOT_FOUND => StatusCode::NOT_FOUND,
        code::BAD_USER_INPUT => StatusCode::BAD_REQUEST,
        code::CONFLICT => StatusCode::CONFLICT,
        code::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code, message, field, retry_after) = match &self {
            HttpError::Request {
                status,
                code,
                message,
            } => (*status, *code, message.clone(), None, None),
            HttpError::Domain(DomainError::Internal(inner)) => {
                // Logged with the request's span (and its request id).
                tracing::error!(error = ?inner, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code::INTERNAL,
                    "internal error; quote this response's x-request-id to support".to_string(),
                    None,
                    None,
                )
            }
            HttpError::Domain(domain) => (
                status_of(domain),
                domain.code(),
                domain.public_message(),
                domain.field().map(str::to_string),
                match domain {
                    DomainError::RateLimited { retry_after, .. } => {
                        Some(crate::domain::error::retry_after_seconds(*retry_after))
                    }
                    _ => None,
                },
            ),
        };
        let mut extensions = json!({ "code": code });
        if let Some(field) = field {
            extensions["field"] = json!(field);
        }
        let mut response = (
            status,
            Json(json!({ "errors": [{ "message": message, "extensions": extensions }] })),
        )
            .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
