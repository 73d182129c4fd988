//! Credentials: `Authorization: Bearer <token>` on HTTP, the same string in
//! the WebSocket `connection_init` payload. A token starting `jm_` is a
//! partner API token; anything else must be a staff access token (JWT).

use axum::http::{HeaderMap, header::AUTHORIZATION};

use crate::{
    auth::{Principal, jwt::JwtKeys, tokens},
    domain::{DomainResult, Store, clinics, staff},
};

/// What the request's credential says about the caller.
#[derive(Debug)]
pub enum Credential {
    /// No credential: only public fields (introspection, sign-in) work.
    Anonymous,
    /// A valid credential.
    Authenticated(Principal),
    /// A credential was sent but is not valid (unknown, revoked, expired,
    /// forged, malformed, or not a bearer token).
    Invalid,
}

/// Reads the bearer credential of `headers`.
pub async fn from_headers(
    store: &Store,
    keys: &JwtKeys,
    headers: &HeaderMap,
) -> DomainResult<Credential> {
    match headers.get(AUTHORIZATION) {
        None => Ok(Credential::Anonymous),
        Some(value) => match value.to_str() {
            Ok(value) => from_authorization(store, keys, value).await,
            Err(_) => Ok(Credential::Invalid),
        },
    }
}

/// Resolves an `Authorization` value (`Bearer …`).
pub async fn from_authorization(
    store: &Store,
    keys: &JwtKeys,
    value: &str,
) -> DomainResult<Credential> {
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Ok(Credential::Invalid);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::Invalid);
    }
    let token = token.trim();
    let principal = if token.starts_with(tokens::TOKEN_PREFIX) {
        clinics::authenticate_token(&store.db, token).await?
    } else {
        staff::authenticate(&store.db, keys, token).await?
    };
    Ok(match principal {
        Some(principal) => Credential::Authenticated(principal),
        None => Credential::Invalid,
    })
}
