//! The one mapping from errors to GraphQL `extensions.code`.
//!
//! Resolvers return domain errors with `?`; async-graphql keeps the original
//! error as the `source` of its `ServerError`, and [`finalize`] turns it into a
//! stable code (and the offending `field`) once, after execution. Errors that
//! async-graphql raises itself (validation, argument coercion) are classified
//! here too. Anything unexpected is logged in full and sent masked.

use std::time::Duration;

use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};

use crate::domain::DomainError;

/// The stable error codes of the API: the domain's, and GraphQL's own.
pub mod code {
    pub use crate::domain::error::code::*;
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// Too many requests running and waiting: try again shortly.
    pub const OVERLOADED: &str = "OVERLOADED";
}

/// An error with a code and no source, for failures outside resolvers.
pub fn coded(message: impl Into<String>, code: &str, field: Option<&str>) -> ServerError {
    let mut error = ServerError::new(message, None);
    set(&mut error, code, field);
    error
}

/// A refusal with a code that says how long to wait before trying again
/// (`extensions.retryAfterSeconds`, whole seconds rounded up).
pub fn coded_retry_after(message: impl Into<String>, code: &str, wait: Duration) -> ServerError {
    let mut error = coded(message, code, None);
    if let Some(extensions) = error.extensions.as_mut() {
        extensions.set(
            "retryAfterSeconds",
            crate::domain::error::retry_after_seconds(wait),
        );
    }
    error
}

fn set(error: &mut ServerError, code: &str, field: Option<&str>) {
    let extensions = error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    extensions.set("code", code);
    if let Some(field) = field {
        extensions.set("field", field);
    }
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get("code").is_some())
}

/// The code of an error, once classified.
pub fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

/// Classifies every error of a response. `request_id` is quoted in masked
/// internal errors so support can find the log line.
pub fn finalize(mut response: Response, request_id: &str) -> Response {
    for error in &mut response.errors {
        classify(error, request_id);
    }
    drop_complexity_echoes(&mut response.errors);
    response
}

/// An argument literal of the wrong type (`patients(first: "ten")`) is
/// reported by validation as BAD_USER_INPUT on its field, and then again by
/// async-graphql's complexity visitor as `Expected input type …`, without a
/// field. One mistake gets one error: the echo is dropped.
fn drop_complexity_echoes(errors: &mut Vec<ServerError>) {
    let reported = errors
        .iter()
        .any(|e| e.path.is_empty() && code_of(e) == Some(code::BAD_USER_INPUT));
    if reported {
        errors.retain(|e| {
            !(e.path.is_empty()
                && code_of(e) == Some(code::GRAPHQL_VALIDATION_FAILED)
                && e.message.starts_with("Expected input type "))
        });
    }
}

/// Gives one error its code (and field), masking internal details.
pub fn classify(error: &mut ServerError, request_id: &str) {
    if has_code(error) {
        return;
    }
    if let Some(domain) = error.source::<DomainError>().cloned() {
        apply_domain(error, &domain, request_id);
        return;
    }
    if error.path.is_empty() && error.source.is_none() {
        // Raised by validation, before anything ran.
        if let Some(field) = invalid_argument(&error.message) {
            set(error, code::BAD_USER_INPUT, Some(&field));
        } else {
            set(error, code::GRAPHQL_VALIDATION_FAILED, None);
        }
        return;
    }
    if error.message.starts_with("Failed to parse")
        || error.message.starts_with("Invalid value for argument")
    {
        let field = invalid_argument(&error.message);
        set(error, code::BAD_USER_INPUT, field.as_deref());
        return;
    }
    tracing::error!(message = %error.message, path = ?error.path, "unclassified GraphQL error");
    mask(error, request_id);
}

fn mask(error: &mut ServerError, request_id: &str) {
    error.message = format!("internal error; quote request id {request_id} to support");
    error.source = None;
    set(error, code::INTERNAL, None);
    if let Some(extensions) = error.extensions.as_mut() {
        extensions.set("requestId", request_id);
    }
}

fn apply_domain(error: &mut ServerError, domain: &DomainError, request_id: &str) {
    if let DomainError::Internal(inner) = domain {
        tracing::error!(error = ?inner, path = ?error.path, "internal error");
        mask(error, request_id);
        return;
    }
    error.message = domain.public_message();
    set(error, domain.code(), domain.field());
    if let DomainError::RateLimited { retry_after, .. } = domain
        && let Some(extensions) = error.extensions.as_mut()
    {
        extensions.set(
            "retryAfterSeconds",
            crate::domain::error::retry_after_seconds(*retry_after),
        );
    }
}

/// A domain error as a GraphQL error outside any resolver (an HTTP request
/// refused before it ran).
pub fn of_domain(domain: &DomainError, request_id: &str) -> ServerError {
    let mut error = ServerError::new(domain.to_string(), None);
    apply_domain(&mut error, domain, request_id);
    error
}

/// The argument path named by async-graphql's validation messages:
/// `Invalid value for argument "input.score", …`, and, for a missing or
/// unknown input field, `… "input", field "familyName" of type … is required`.
fn invalid_argument(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Invalid value for argument \"")?;
    let (path, rest) = rest.split_once('"')?;
    let nested = rest
        .split_once("field \"")
        .and_then(|(_, after)| after.split_once('"'))
        .map(|(field, _)| field);
    Some(match nested {
        Some(field) => format!("{path}.{field}"),
        None => path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_paths_are_extracted() {
        assert_eq!(
            invalid_argument(r#"Invalid value for argument "input.channel", enumeration type "Channel" does not contain the value "FAX""#)
                .as_deref(),
            Some("input.channel")
        );
        assert_eq!(invalid_argument("Unknown field \"x\""), None);
        assert_eq!(
            invalid_argument(r#"Invalid value for argument "input", field "familyName" of type "CreatePatientInput" is required but not provided"#)
                .as_deref(),
            Some("input.familyName")
        );
    }

    #[test]
    fn domain_errors_get_codes_and_internal_ones_are_masked() {
        let mut error = ServerError::new("x", None);
        apply_domain(
            &mut error,
            &DomainError::invalid("input.email", "bad"),
            "req-1",
        );
        assert_eq!(code_of(&error), Some(code::BAD_USER_INPUT));

        let mut error = ServerError::new("connection refused at 10.0.0.3", None);
        apply_domain(
            &mut error,
            &DomainError::internal(anyhow::anyhow!("db down")),
            "req-2",
        );
        assert_eq!(code_of(&error), Some(code::INTERNAL));
        assert!(!error.message.contains("10.0.0.3"));
        assert!(error.message.contains("req-2"));
    }

    #[test]
    fn a_wrong_argument_literal_is_one_error() {
        let response = Response::from_errors(vec![
            ServerError::new(
                r#"Invalid value for argument "first", expected type "Int""#,
                None,
            ),
            ServerError::new(r#"Expected input type "Int", found "ten"."#, None),
        ]);
        let response = finalize(response, "req-1");
        assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
        assert_eq!(code_of(&response.errors[0]), Some(code::BAD_USER_INPUT));
        // Alone (no field reported), the message stays a validation error.
        let alone = finalize(
            Response::from_errors(vec![ServerError::new(
                r#"Expected input type "Int", found "ten"."#,
                None,
            )]),
            "req-2",
        );
        assert_eq!(
            code_of(&alone.errors[0]),
            Some(code::GRAPHQL_VALIDATION_FAILED)
        );
    }
}
