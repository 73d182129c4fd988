//! The domain's one error type. The GraphQL layer maps it to
//! `extensions.code` in a single place.

use std::sync::Arc;

use sea_orm::{DbErr, SqlErr};

/// Why a domain operation did not happen. Nothing was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// No credential, or one that is not valid.
    #[error("authentication required")]
    Unauthenticated,
    /// A sign-in with a wrong clinic, email or password (which one is not said).
    #[error("wrong clinic, email or password")]
    SignInRefused,
    /// Too many attempts; try again after `retry_after`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such record in the caller's clinic (including records of other clinics).
    #[error("{entity} not found")]
    NotFound {
        entity: &'static str,
        /// The input field holding the id, when the id came from input.
        field: Option<String>,
    },
    /// Input that breaks a rule; `field` is the input path at fault.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The record changed meanwhile, or the change contradicts its state.
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// Anything unexpected; logged in full, never shown to the client.
    #[error("internal error")]
    Internal(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

/// Seconds to tell a client to wait, rounded up.
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Result of a domain operation.
pub type DomainResult<T> = Result<T, DomainError>;

/// The stable error codes of domain errors (`extensions.code`), the same in
/// GraphQL answers and HTTP error bodies.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const CONFLICT: &str = "CONFLICT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const INTERNAL: &str = "INTERNAL";
}

impl DomainError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Unauthenticated | DomainError::SignInRefused => code::UNAUTHENTICATED,
            DomainError::Forbidden(_) => code::FORBIDDEN,
            DomainError::NotFound { .. } => code::NOT_FOUND,
            DomainError::Invalid { .. } => code::BAD_USER_INPUT,
            DomainError::Conflict { .. } => code::CONFLICT,
            DomainError::RateLimited { .. } => code::RATE_LIMITED,
            DomainError::Internal(_) => code::INTERNAL,
        }
    }

    /// The input field at fault, when the error names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { field, .. } => Some(field),
            DomainError::NotFound { field, .. } | DomainError::Conflict { field, .. } => {
                field.as_deref()
            }
            _ => None,
        }
    }

    /// What the client is told: the field and the reason for bad input, the
    /// error's own words otherwise, never an internal error's details.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        DomainError::Conflict {
            field: None,
            message: message.into(),
        }
    }

    pub fn conflict_on(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Conflict {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(entity: &'static str) -> Self {
        DomainError::NotFound {
            entity,
            field: None,
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error: Box<dyn std::error::Error + Send + Sync> = error.into().into();
        DomainError::Internal(Arc::from(error))
    }

    /// Names the input field holding the id of a record that was not found or
    /// is in the wrong state, so the client knows which reference was wrong.
    pub fn referenced_by(self, field: &str) -> Self {
        match self {
            DomainError::NotFound { entity, .. } => DomainError::NotFound {
                entity,
                field: Some(field.to_string()),
            },
            DomainError::Conflict {
                field: None,
                message,
            } => DomainError::Conflict {
                field: Some(field.to_string()),
                message,
            },
            other => other,
        }
    }

    /// Prefixes the field path, e.g. `email` becomes `input.email`.
    pub fn under(self, prefix: &str) -> Self {
        match self {
            DomainError::Invalid { field, message } => DomainError::Invalid {
                field: format!("{prefix}.{field}"),
                message,
            },
            DomainError::Conflict {
                field: Some(field),
                message,
            } => DomainError::Conflict {
                field: Some(format!("{prefix}.{field}")),
                message,
            },
            DomainError::NotFound {
                entity,
                field: Some(field),
            } => DomainError::NotFound {
                entity,
                field: Some(format!("{prefix}.{field}")),
            },
            other => other,
        }
    }
}

impl From<DbErr> for DomainError {
    fn from(error: DbErr) -> Self {
        // A unique index caught a race the domain checks could not see.
        if let Some(SqlErr::UniqueConstraintViolation(_)) = error.sql_err() {
            return DomainError::conflict("the record was changed by another request; retry");
        }
        DomainError::internal(error)
    }
}

impl From<crate::ids::IdError> for DomainError {
    fn from(error: crate::ids::IdError) -> Self {
        DomainError::invalid("id", error.to_string())
    }
}
