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
    /// How long a sign-in session (and so its refresh tokens) lives.
    pub session_ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused. Never shown to clients in detail.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(#[from] jsonwebtoken::errors::Error);

/// How long a signed-in session lasts at most, refreshes included, unless
/// the server is configured otherwise ([`JwtKeys::with_session_ttl`]).
pub const SESSION_DAYS: i64 = 30;

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
            session_ttl: Duration::days(SESSION_DAYS),
        }
    }

    /// The same keys with sessions lasting `session_ttl`.
    pub fn with_session_ttl(mut self, session_ttl: Duration) -> Self {
        self.session_ttl = session_ttl;
        self
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
    use jsonwebtoken::errors::ErrorKind;

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], Duration::minutes(15))
    }

    fn issue_at(keys: &JwtKeys, at: DateTime<Utc>) -> String {
        keys.issue(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), at)
            .0
    }

    /// Signs `claims` (as JSON) with the test key, for tokens `issue` never makes.
    fn signed(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap()
    }

    fn claims_at(now: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE,
            "sub": Uuid::now_v7(), "cid": Uuid::now_v7(), "sid": Uuid::now_v7(),
            "iat": now, "nbf": now, "exp": now + 900, "jti": Uuid::now_v7(),
        })
    }

    /// Why `token` was refused; panics when it was accepted.
    #[track_caller]
    fn refusal(keys: &JwtKeys, token: &str) -> ErrorKind {
        match keys.verify(token) {
            Ok(claims) => panic!("accepted: {claims:?}"),
            Err(InvalidToken(error)) => error.into_kind(),
        }
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let keys = keys();
        let (clinic, staff, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let (token, expires) = keys.issue(clinic, staff, session, now);
        let claims = keys.verify(&token).expect("a fresh token verifies");
        assert_eq!(
            (claims.cid, claims.sub, claims.sid),
            (clinic, staff, session)
        );
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, AUDIENCE)
        );
        assert_eq!(claims.exp, expires.timestamp());
        assert_eq!(claims.exp - claims.iat, 15 * 60);
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let keys = keys();
        let ttl = keys.ttl.num_seconds();
        let leeway = LEEWAY_SECS as i64;
        // Expired 10 s ago: within the 30 s of clock skew, still accepted.
        let recent = issue_at(&keys, Utc::now() - Duration::seconds(ttl + leeway - 20));
        assert!(keys.verify(&recent).is_ok());
        // Expired 40 s ago: past the leeway.
        let stale = issue_at(&keys, Utc::now() - Duration::seconds(ttl + leeway + 10));
        assert_eq!(refusal(&keys, &stale), ErrorKind::ExpiredSignature);
        let old = issue_at(&keys, Utc::now() - Duration::hours(1));
        assert_eq!(refusal(&keys, &old), ErrorKind::ExpiredSignature);
    }

    #[test]
    fn not_before_allows_the_leeway_and_no_more() {
        let keys = keys();
        let now = Utc::now().timestamp();
        let mut soon = claims_at(now);
        soon["nbf"] = (now + 20).into();
        assert!(keys.verify(&signed(soon)).is_ok());
        let mut later = claims_at(now);
        later["nbf"] = (now + 60).into();
        assert_eq!(refusal(&keys, &signed(later)), ErrorKind::ImmatureSignature);
    }

    #[test]
    fn foreign_and_tampered_tokens_are_refused() {
        let keys = keys();
        let other = JwtKeys::new(&[8u8; 32], Duration::minutes(15));
        let foreign = issue_at(&other, Utc::now());
        assert_eq!(refusal(&keys, &foreign), ErrorKind::InvalidSignature);

        let token = issue_at(&keys, Utc::now());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        // A changed payload no longer matches its signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["cid"] = serde_json::json!(Uuid::now_v7());
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            refusal(&keys, &parts.join(".")),
            ErrorKind::InvalidSignature
        );
    }

    #[test]
    fn only_hs256_is_accepted() {
        let keys = keys();
        let payload = URL_SAFE_NO_PAD.encode(claims_at(Utc::now().timestamp()).to_string());
        // `alg: none` is no algorithm jsonwebtoken knows: the header does not parse.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(matches!(
            refusal(&keys, &format!("{none_header}.{payload}.")),
            ErrorKind::Json(_)
        ));
        // HS512 with the right key: the pinned algorithm refuses it.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims_at(Utc::now().timestamp()),
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(refusal(&keys, &hs512), ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn issuer_audience_and_required_claims_are_checked() {
        let keys = keys();
        let now = Utc::now().timestamp();
        let mut wrong_issuer = claims_at(now);
        wrong_issuer["iss"] = "someone-else".into();
        assert_eq!(
            refusal(&keys, &signed(wrong_issuer)),
            ErrorKind::InvalidIssuer
        );
        let mut wrong_audience = claims_at(now);
        wrong_audience["aud"] = "another-api".into();
        assert_eq!(
            refusal(&keys, &signed(wrong_audience)),
            ErrorKind::InvalidAudience
        );
        // Every claim of [`Claims`] is required; a token without one does not
        // even decode into them.
        for claim in ["exp", "iss", "aud", "nbf", "sub", "jti"] {
            let mut missing = claims_at(now);
            missing.as_object_mut().unwrap().remove(claim);
            match refusal(&keys, &signed(missing)) {
                ErrorKind::Json(error) => assert!(
                    error
                        .to_string()
                        .contains(&format!("missing field `{claim}`")),
                    "without {claim}: {error}"
                ),
                other => panic!("without {claim}: {other:?}"),
            }
        }
    }
}
