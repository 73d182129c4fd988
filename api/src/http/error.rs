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

/// What an error answers: its status, code, message, field and, when the
/// caller should wait, the seconds to wait.
struct Answer {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl HttpError {
    fn answer(&self) -> Answer {
        match self {
            HttpError::Request {
                status,
                code,
                message,
            } => Answer {
                status: *status,
                code,
                message: message.clone(),
                field: None,
                retry_after: None,
            },
            HttpError::Domain(DomainError::Internal(inner)) => {
                // Logged with the request's span (and its request id).
                tracing::error!(error = ?inner, "internal error");
                Answer {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: code::INTERNAL,
                    message: "internal error; quote this response's x-request-id to support"
                        .to_string(),
                    field: None,
                    retry_after: None,
                }
            }
            HttpError::Domain(domain) => Answer {
                status: status_of(domain),
                code: domain.code(),
                message: domain.public_message(),
                field: domain.field().map(str::to_string),
                retry_after: match domain {
                    DomainError::RateLimited { retry_after, .. } => {
                        Some(crate::domain::error::retry_after_seconds(*retry_after))
                    }
                    _ => None,
                },
            },
        }
    }

    /// The error body, `{"errors": [{"message", "extensions": {"code", "field"}}]}`
    /// (also a line of a streamed answer that failed after it began).
    pub fn body(&self) -> serde_json::Value {
        Self::body_of(&self.answer())
    }

    fn body_of(answer: &Answer) -> serde_json::Value {
        let mut extensions = json!({ "code": answer.code });
        if let Some(field) = &answer.field {
            extensions["field"] = json!(field);
        }
        json!({ "errors": [{ "message": answer.message, "extensions": extensions }] })
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        let status = answer.status;
        let mut response = (status, Json(Self::body_of(&answer))).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(seconds) = answer.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
