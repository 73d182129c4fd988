//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! of "id.timestamp.body">`, keyed with the base64-decoded part of a
//! `whsec_…` secret. During a secret rotation both secrets sign, separated by
//! a space.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Every signing secret starts with this.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new random signing secret.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// The MAC of `id.timestamp.body`, as Standard Webhooks signs it.
fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `v1,…` signature of one message with one secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = key_of(secret).unwrap_or_default();
    let signature = mac(&key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(signature))
}

/// True when any `v1` signature of a `webhook-signature` header matches —
/// what a receiver checks (also with a tolerance on the timestamp).
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = key_of(secret) else {
        return false;
    };
    header.split_whitespace().any(|signature| {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(&key, id, timestamp, body)
            .verify_slice(&expected)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let secret = new_secret();
        let signature = sign(&secret, "evt_1", 1_700_000_000, br#"{"a":1}"#);
        assert!(verify(
            &secret,
            "evt_1",
            1_700_000_000,
            br#"{"a":1}"#,
            &signature
        ));
        assert!(!verify(
            &secret,
            "evt_1",
            1_700_000_001,
            br#"{"a":1}"#,
            &signature
        ));
        assert!(!verify(
            &secret,
            "evt_1",
            1_700_000_000,
            br#"{"a":2}"#,
            &signature
        ));
        assert!(!verify(
            &new_secret(),
            "evt_1",
            1_700_000_000,
            br#"{"a":1}"#,
            &signature
        ));
        let both = format!(
            "{} {signature}",
            sign(&new_secret(), "evt_1", 1_700_000_000, br#"{"a":1}"#)
        );
        assert!(verify(
            &secret,
            "evt_1",
            1_700_000_000,
            br#"{"a":1}"#,
            &both
        ));
    }

    #[test]
    fn matches_the_standard_webhooks_example() {
        // From the Standard Webhooks specification's test vectors.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
