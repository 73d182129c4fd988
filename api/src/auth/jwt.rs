//! Staff access tokens: short-lived JWTs signed with HS256 only (the
//! algorithm is pinned, so `alg: none` and HS/RS confusion are refused), with
//! `exp`, `iss` and `aud` required and a small leeway for clock skew.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The issuer of every Journeymap access token.
pub const ISSUER: &str = "journeymap";
/// The audience of every Journeymap access token.
pub const AUDIENCE: &str = "journeymap-api";
/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The staff member.
    pub sub: Uuid,
    /// The clinic.
    pub cid: Uuid,
    /// The session (refresh-token family).
    pub sid: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// A unique id of this token.
    pub jti: Uuid,
}

/// The signing key and how tokens are checked.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// How long an access token lives.
    pub ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. Never shown to clients in detail.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(#[from] jsonwebtoken::errors::Error);

impl JwtKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Issues an access token for a staff member's session.
    pub fn issue(
        &self,
        clinic: Uuid,
        staff: Uuid,
        session: Uuid,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let expires = now + self.ttl;
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: staff,
            cid: clinic,
            sid: session,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires.timestamp(),
            jti: Uuid::now_v7(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, expires)
    }

    /// Checks a token's signature, algorithm, issuer, audience and times.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        Ok(decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], Duration::minutes(15))
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let (token, _) = keys.issue(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Utc::now());
        assert!(keys.verify(&token).is_ok());
    }

    #[test]
    fn expired_foreign_and_tampered_tokens_are_refused() {
        let keys = keys();
        let (old, _) = keys.issue(
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Utc::now() - Duration::hours(1),
        );
        assert!(keys.verify(&old).is_err());
        let other = JwtKeys::new(&[8u8; 32], Duration::minutes(15));
        let (foreign, _) = other.issue(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Utc::now());
        assert!(keys.verify(&foreign).is_err());
        let (token, _) = keys.issue(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Utc::now());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            keys.verify(&format!("{none_header}.{}.", parts[1]))
                .is_err()
        );
        parts[1].push('A');
        assert!(keys.verify(&parts.join(".")).is_err());
    }
}
