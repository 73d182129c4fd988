//! Who is calling: the bearer credential of a request, resolved once, as an
//! extractor ([`Caller`], or [`SignedIn`] for routes that need one). The
//! credential is `Authorization: Bearer <token>` on HTTP and the same string
//! in the WebSocket `connection_init` payload. A token starting `jm_` is a
//! partner API token; anything else must be a staff access token (JWT).

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
};

use super::{AppState, error::HttpError, request_id_of};
use crate::{
    auth::{Principal, tokens},
    domain::{DomainError, DomainResult, api_tokens, sessions},
};

/// What the request's credential says about the caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credential: only public fields (introspection, sign-in) work.
    Anonymous,
    /// A valid credential, its principal bound to this request's id.
    Known(Principal),
    /// A credential was sent but is not valid (unknown, revoked, expired,
    /// forged, malformed, or not a bearer token).
    Refused,
}

impl Caller {
    /// The caller's principal, if the credential was valid.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Known(principal) => Some(principal),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    /// Only a failure to check the credential (the database is down).
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        Ok(from_headers(state, &parts.headers).await?)
    }
}

/// A caller with a valid credential; anyone else is answered 401.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Principal);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Known(principal) => Ok(SignedIn(principal)),
            _ => Err(DomainError::Unauthenticated.into()),
        }
    }
}

/// The caller that `headers` name.
pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> DomainResult<Caller> {
    let caller = match headers.get(AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(value) => match value.to_str() {
            Ok(value) => from_authorization(state, value).await?,
            Err(_) => Caller::Refused,
        },
    };
    Ok(match caller {
        Caller::Known(principal) => Caller::Known(principal.in_request(request_id_of(headers))),
        other => other,
    })
}

/// Resolves an `Authorization` value (`Bearer …`).
pub async fn from_authorization(state: &AppState, value: &str) -> DomainResult<Caller> {
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Ok(Caller::Refused);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Caller::Refused);
    }
    let token = token.trim();
    let principal = if token.starts_with(tokens::TOKEN_PREFIX) {
        api_tokens::authenticate(&state.store.db, token).await?
    } else {
        sessions::authenticate(&state.store.db, &state.keys, token).await?
    };
    Ok(principal.map_or(Caller::Refused, Caller::Known))
}
