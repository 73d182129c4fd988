//! Credentials: `Authorization: Bearer <token>` on HTTP, the same string in
//! the WebSocket `connection_init` payload.

use axum::http::{HeaderMap, header::AUTHORIZATION};

use crate::{
    auth::Principal,
    domain::{DomainResult, Store, clinics},
};

/// What the request's credential says about the caller.
#[derive(Debug)]
pub enum Credential {
    /// No credential: only public fields (introspection) work.
    Anonymous,
    /// A valid credential.
    Authenticated(Principal),
    /// A credential was sent but is not valid (unknown, revoked, expired,
    /// malformed, or not a bearer token).
    Invalid,
}

/// Reads the bearer credential of `headers`.
pub async fn from_headers(store: &Store, headers: &HeaderMap) -> DomainResult<Credential> {
    match headers.get(AUTHORIZATION) {
        None => Ok(Credential::Anonymous),
        Some(value) => match value.to_str() {
            Ok(value) => from_authorization(store, value).await,
            Err(_) => Ok(Credential::Invalid),
        },
    }
}

/// Resolves an `Authorization` value (`Bearer …`).
pub async fn from_authorization(store: &Store, value: &str) -> DomainResult<Credential> {
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Ok(Credential::Invalid);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::Invalid);
    }
    Ok(
        match clinics::authenticate_token(&store.db, token.trim()).await? {
            Some(principal) => Credential::Authenticated(principal),
            None => Credential::Invalid,
        },
    )
}
