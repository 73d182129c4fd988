//! Partner API tokens: `jm_` + 32 random base62 characters + a 6-character
//! checksum, so that a leaked token can be recognised by secret scanners and a
//! mistyped one rejected without a database lookup. Only the SHA-256 of the
//! token is stored.

use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

/// Every Journeymap API token starts with this.
pub const TOKEN_PREFIX: &str = "jm_";
/// Every refresh token starts with this.
pub const REFRESH_PREFIX: &str = "jmr_";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

/// A freshly generated token: the secret (shown once) and what is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub secret: String,
    pub hash: String,
    /// The first characters, safe to display in lists.
    pub display_prefix: String,
}

/// Generates a new random token.
pub fn generate() -> NewToken {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect();
    let body = format!("{TOKEN_PREFIX}{random}");
    let secret = format!("{body}{}", checksum(&body));
    NewToken {
        hash: hash(&secret),
        display_prefix: secret[..TOKEN_PREFIX.len() + 8].to_string(),
        secret,
    }
}

/// A new refresh token and the hash that is stored.
pub fn generate_refresh() -> (String, String) {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    let token = format!("{REFRESH_PREFIX}{random}");
    let stored = hash(&token);
    (token, stored)
}

/// True when `token` has the shape and checksum of a Journeymap token.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token.is_ascii()
        && {
            let (body, sum) = token.split_at(TOKEN_PREFIX.len() + RANDOM_LEN);
            body[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
                && checksum(body) == sum
        }
}

/// Lower-case hex SHA-256 of a token, as stored.
pub fn hash(token: &str) -> String {
    hash_bytes(token.as_bytes())
}

/// Lower-case hex SHA-256 of any bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum(body: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(body.as_bytes());
    let mut value = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (0..CHECKSUM_LEN)
        .map(|_| {
            let c = ALPHABET[(value % 62) as usize] as char;
            value /= 62;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_unique() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a.secret));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(a.secret.starts_with(&a.display_prefix));
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        let token = generate().secret;
        let mut chars: Vec<char> = token.chars().collect();
        chars[5] = if chars[5] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert!(!is_well_formed(&tampered));
        assert!(!is_well_formed("jm_short"));
        assert!(!is_well_formed(""));
    }
}
