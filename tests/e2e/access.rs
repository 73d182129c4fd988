//! Access: staff sign-in with JWTs, rotating refresh tokens, forged and bad
//! access tokens, the role matrix with its field-level rules, tenant
//! isolation for signed-in staff, and API token management.
//!
//! The tests crate has neither `jsonwebtoken` nor `base64` nor `hmac`/`sha2`,
//! so forged tokens are built with the small helpers in [`forge`] (base64url,
//! SHA-256, SHA-512, HMAC). They check themselves against RFC 4231 vectors
//! and against the server's own tokens before anything relies on them.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use journeymap::{
    auth::{
        Permission, Role,
        jwt::{AUDIENCE, ISSUER, JwtKeys},
    },
    domain::{clinics, settings},
};
use journeymap_tests::{CREATE_PATHWAY, Gql, TestApp, on_both_backends};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

/// Just enough of base64url, SHA-2 and HMAC to forge JWTs.
mod forge {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// Base64url without padding, as JWTs use.
    pub fn b64url(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    /// Decodes unpadded base64url.
    pub fn b64url_decode(text: &str) -> Vec<u8> {
        let (mut bits, mut held, mut out) = (0u32, 0u32, Vec::new());
        for c in text.bytes() {
            let value = ALPHABET
                .iter()
                .position(|a| *a == c)
                .unwrap_or_else(|| panic!("{c:?} is not base64url"));
            bits = (bits << 6) | value as u32;
            held += 6;
            if held >= 8 {
                held -= 8;
                out.push((bits >> held) as u8);
                bits &= (1 << held) - 1;
            }
        }
        out
    }

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const K256: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    const H256: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    const K512: [u64; 80] = [
        0x428a2f98d728ae22,
        0x7137449123ef65cd,
        0xb5c0fbcfec4d3b2f,
        0xe9b5dba58189dbbc,
        0x3956c25bf348b538,
        0x59f111f1b605d019,
        0x923f82a4af194f9b,
        0xab1c5ed5da6d8118,
        0xd807aa98a3030242,
        0x12835b0145706fbe,
        0x243185be4ee4b28c,
        0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f,
        0x80deb1fe3b1696b1,
        0x9bdc06a725c71235,
        0xc19bf174cf692694,
        0xe49b69c19ef14ad2,
        0xefbe4786384f25e3,
        0x0fc19dc68b8cd5b5,
        0x240ca1cc77ac9c65,
        0x2de92c6f592b0275,
        0x4a7484aa6ea6e483,
        0x5cb0a9dcbd41fbd4,
        0x76f988da831153b5,
        0x983e5152ee66dfab,
        0xa831c66d2db43210,
        0xb00327c898fb213f,
        0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2,
        0xd5a79147930aa725,
        0x06ca6351e003826f,
        0x142929670a0e6e70,
        0x27b70a8546d22ffc,
        0x2e1b21385c26c926,
        0x4d2c6dfc5ac42aed,
        0x53380d139d95b3df,
        0x650a73548baf63de,
        0x766a0abb3c77b2a8,
        0x81c2c92e47edaee6,
        0x92722c851482353b,
        0xa2bfe8a14cf10364,
        0xa81a664bbc423001,
        0xc24b8b70d0f89791,
        0xc76c51a30654be30,
        0xd192e819d6ef5218,
        0xd69906245565a910,
        0xf40e35855771202a,
        0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8,
        0x1e376c085141ab53,
        0x2748774cdf8eeb99,
        0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63,
        0x4ed8aa4ae3418acb,
        0x5b9cca4f7763e373,
        0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc,
        0x78a5636f43172f60,
        0x84c87814a1f0ab72,
        0x8cc702081a6439ec,
        0x90befffa23631e28,
        0xa4506cebde82bde9,
        0xbef9a3f7b2c67915,
        0xc67178f2e372532b,
        0xca273eceea26619c,
        0xd186b8c721c0c207,
        0xeada7dd6cde0eb1e,
        0xf57d4f7fee6ed178,
        0x06f067aa72176fba,
        0x0a637dc5a2c898a6,
        0x113f9804bef90dae,
        0x1b710b35131c471b,
        0x28db77f523047d84,
        0x32caab7b40c72493,
        0x3c9ebe0a15c9bebc,
        0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6,
        0x597f299cfc657e2a,
        0x5fcb6fab3ad6faec,
        0x6c44198c4a475817,
    ];

    const H512: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];

    /// The message padded to whole blocks, its bit length at the end.
    fn padded(data: &[u8], block: usize) -> Vec<u8> {
        let length = block / 8;
        let mut message = data.to_vec();
        message.push(0x80);
        while message.len() % block != block - length {
            message.push(0);
        }
        let bits = (data.len() as u128) * 8;
        message.extend_from_slice(&bits.to_be_bytes()[16 - length..]);
        message
    }

    pub fn sha256(data: &[u8]) -> Vec<u8> {
        let mut state = H256;
        for block in padded(data, 64).chunks(64) {
            let mut w = [0u32; 64];
            for (word, bytes) in w.iter_mut().zip(block.chunks(4)) {
                *word = u32::from_be_bytes(bytes.try_into().unwrap());
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[i - 7])
                    .wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = state;
            for (k, w) in K256.iter().zip(w) {
                let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                let ch = (e & f) ^ (!e & g);
                let t1 = h
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(*k)
                    .wrapping_add(w);
                let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                (h, g, f, e, d, c, b, a) =
                    (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
            }
            for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = s.wrapping_add(v);
            }
        }
        state.iter().flat_map(|s| s.to_be_bytes()).collect()
    }

    pub fn sha512(data: &[u8]) -> Vec<u8> {
        let mut state = H512;
        for block in padded(data, 128).chunks(128) {
            let mut w = [0u64; 80];
            for (word, bytes) in w.iter_mut().zip(block.chunks(8)) {
                *word = u64::from_be_bytes(bytes.try_into().unwrap());
            }
            for i in 16..80 {
                let s0 = w[i - 15].rotate_right(1) ^ w[i - 15].rotate_right(8) ^ (w[i - 15] >> 7);
                let s1 = w[i - 2].rotate_right(19) ^ w[i - 2].rotate_right(61) ^ (w[i - 2] >> 6);
                w[i] = w[i - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[i - 7])
                    .wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = state;
            for (k, w) in K512.iter().zip(w) {
                let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
                let ch = (e & f) ^ (!e & g);
                let t1 = h
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(*k)
                    .wrapping_add(w);
                let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                (h, g, f, e, d, c, b, a) =
                    (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
            }
            for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = s.wrapping_add(v);
            }
        }
        state.iter().flat_map(|s| s.to_be_bytes()).collect()
    }

    fn hmac(hash: fn(&[u8]) -> Vec<u8>, block: usize, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut key = if key.len() > block {
            hash(key)
        } else {
            key.to_vec()
        };
        key.resize(block, 0);
        let inner: Vec<u8> = key
            .iter()
            .map(|b| b ^ 0x36)
            .chain(message.iter().copied())
            .collect();
        let outer: Vec<u8> = key.iter().map(|b| b ^ 0x5c).chain(hash(&inner)).collect();
        hash(&outer)
    }

    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(sha256, 64, key, message)
    }

    pub fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(sha512, 128, key, message)
    }

    /// `header.claims.signature`, the signature made by `sign` over the first two.
    pub fn jwt(
        header: &serde_json::Value,
        claims: &serde_json::Value,
        sign: impl Fn(&[u8]) -> Vec<u8>,
    ) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature))
    }

    /// The helpers agree with RFC 4231 (test case 2) and FIPS 180 ("abc").
    pub fn self_check() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha512(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha512(b"Jefe", b"what do ya want for nothing?")),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        let long_key = [0xaau8; 131];
        assert_eq!(
            hex(&hmac_sha256(
                &long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(b64url_decode(&b64url(text.as_bytes())), text.as_bytes());
        }
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
    }
}

const VIEWER: &str = "{ viewer { kind role clinic { slug } staff { id } } }";

const CREATE_PATIENT: &str = r#"mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id } }
}"#;

const REFRESH: &str = r#"mutation($token: String!) {
  refreshSession(input: { refreshToken: $token }) {
    accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt staff { id role }
  }
}"#;

const SET_DISABLED: &str = r#"mutation($input: SetStaffDisabledInput!) {
  setStaffDisabled(input: $input) { staff { id disabled } }
}"#;

const CREATE_STAFF: &str = r#"mutation($input: CreateStaffInput!) {
  createStaff(input: $input) { staff { id role } }
}"#;

const CREATE_API_TOKEN: &str = r#"mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) {
    secret
    token { id name prefix scopes createdBy { id } createdAt expiresAt revokedAt }
  }
}"#;

/// A signed-in session as `login` or `refreshSession` returned it.
#[derive(Debug, Clone)]
struct Session {
    access: String,
    refresh: String,
    staff: String,
}

fn session_of(gql: &Gql, field: &str) -> Session {
    let payload = &gql.data()[field];
    let text = |key: &str| {
        payload[key]
            .as_str()
            .unwrap_or_else(|| panic!("{field}.{key} in {payload}"))
            .to_string()
    };
    Session {
        access: text("accessToken"),
        refresh: text("refreshToken"),
        staff: payload["staff"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{field}.staff.id in {payload}"))
            .to_string(),
    }
}

/// Creates a staff member of `clinic` with `role` and signs them in.
async fn signed_in(app: &TestApp, clinic: &str, role: Role) -> Session {
    let (email, password) = app.staff_in(clinic, role).await;
    session_of(&app.login(clinic, &email, &password).await, "login")
}

async fn refresh(app: &TestApp, token: &str) -> Gql {
    app.gql_as(None, REFRESH, json!({ "token": token })).await
}

/// A raw `POST /graphql` with `Authorization: Bearer <token>`.
async fn post(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
) -> (StatusCode, header::HeaderMap, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.expect("JSON body");
    (status, headers, body)
}

/// Rows of every table a request could write, and the revoked or used
/// sessions and tokens; read-audit rows (written in batches, after the
/// response) are left out, change-audit rows (written with the change) are in.
async fn counts(app: &TestApp) -> Vec<(String, i64)> {
    use journeymap::sea_orm::{ConnectionTrait, Statement};
    let mut counts: Vec<(String, i64)> = app
        .row_counts()
        .await
        .into_iter()
        .map(|(table, n)| (table.to_string(), n))
        .collect();
    for (what, sql) in [
        ("staff", "SELECT COUNT(*) AS n FROM staff"),
        (
            "disabled staff",
            "SELECT COUNT(*) AS n FROM staff WHERE disabled_at IS NOT NULL",
        ),
        ("sessions", "SELECT COUNT(*) AS n FROM staff_sessions"),
        (
            "revoked sessions",
            "SELECT COUNT(*) AS n FROM staff_sessions WHERE revoked_at IS NOT NULL",
        ),
        ("refresh tokens", "SELECT COUNT(*) AS n FROM refresh_tokens"),
        (
            "used refresh tokens",
            "SELECT COUNT(*) AS n FROM refresh_tokens WHERE used_at IS NOT NULL",
        ),
        ("api tokens", "SELECT COUNT(*) AS n FROM api_tokens"),
        (
            "revoked api tokens",
            "SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NOT NULL",
        ),
        (
            "erased patients",
            "SELECT COUNT(*) AS n FROM patients WHERE erased_at IS NOT NULL",
        ),
        (
            "audit entries of changes",
            "SELECT COUNT(*) AS n FROM audit_log WHERE action <> 'patient.read'",
        ),
    ] {
        let row = app
            .db()
            .conn()
            .query_one_raw(Statement::from_string(app.db().backend(), sql))
            .await
            .expect("count")
            .expect("a row");
        counts.push((what.to_string(), row.try_get::<i64>("", "n").expect("n")));
    }
    counts
}

/// 401 with `WWW-Authenticate: Bearer …`, UNAUTHENTICATED and no data.
#[track_caller]
fn assert_unauthorized(what: &str, status: StatusCode, headers: &header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let challenge = headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate header"))
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{what}: {body}"
    );
    assert!(
        body["data"].is_null(),
        "{what}: data with a bad credential: {body}"
    );
}

/// The token is refused for a read and for a write, and the write writes nothing.
async fn refused(app: &TestApp, what: &str, token: &str) {
    let (status, headers, body) = post(app, token, VIEWER, json!({})).await;
    assert_unauthorized(what, status, &headers, &body);
    let before = counts(app).await;
    let (status, headers, body) = post(
        app,
        token,
        CREATE_PATIENT,
        json!({ "input": { "givenName": "Mallory", "familyName": "Intruder" } }),
    )
    .await;
    assert_unauthorized(&format!("{what} (createPatient)"), status, &headers, &body);
    assert_eq!(
        counts(app).await,
        before,
        "{what}: a refused write wrote something"
    );
}

/// The token works: `viewer` answers with a staff member.
async fn works(app: &TestApp, what: &str, token: &str) -> Value {
    let (status, _, body) = post(app, token, VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
    assert!(body.get("errors").is_none(), "{what}: {body}");
    body["data"]["viewer"].clone()
}

/// The first error's message, after checking it is UNAUTHENTICATED without data.
#[track_caller]
fn unauthenticated(what: &str, gql: &Gql, field: &str) -> String {
    assert_eq!(
        gql.code().as_deref(),
        Some("UNAUTHENTICATED"),
        "{what}: {}",
        gql.body
    );
    assert!(gql.body["data"][field].is_null(), "{what}: {}", gql.body);
    gql.errors()[0]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

// ---------------------------------------------------------------- sign-in

async fn sign_in_works_and_every_wrong_credential_reads_the_same(app: TestApp) {
    let (email, password) = app.staff_in("a", Role::Coordinator).await;
    let signed_in = app.login("a", &email, &password).await;
    let session = session_of(&signed_in, "login");
    assert_eq!(signed_in.data()["login"]["staff"]["role"], "COORDINATOR");
    assert_eq!(
        session.access.split('.').count(),
        3,
        "a JWT: {}",
        session.access
    );
    assert!(session.refresh.starts_with("jmr_"), "{}", session.refresh);
    let viewer = app
        .gql_as(
            Some(&session.access),
            "{ viewer { kind role staff { id } } }",
            json!({}),
        )
        .await;
    let viewer = &viewer.data()["viewer"];
    assert_eq!(viewer["kind"], "STAFF", "{viewer}");
    assert_eq!(viewer["role"], "COORDINATOR", "{viewer}");
    assert_eq!(viewer["staff"]["id"], session.staff.as_str(), "{viewer}");

    // Wrong password, unknown email, unknown clinic: one answer, nothing written.
    let before = counts(&app).await;
    let attempts = [
        (
            "wrong password",
            "a",
            email.as_str(),
            "wrong horse battery staple",
        ),
        ("unknown email", "a", "nobody@a.example", password.as_str()),
        (
            "unknown clinic",
            "no-such-clinic",
            email.as_str(),
            password.as_str(),
        ),
        ("empty password", "a", email.as_str(), ""),
    ];
    let mut answers = Vec::new();
    for (what, clinic, email, password) in attempts {
        let refused = app.login(clinic, email, password).await;
        let message = unauthenticated(what, &refused, "login");
        assert!(
            !message.contains(email),
            "{what}: the answer names the account: {message}"
        );
        answers.push((what, message, refused.errors()[0]["extensions"].clone()));
    }
    for (what, message, extensions) in &answers[1..] {
        assert_eq!(
            (message, extensions),
            (&answers[0].1, &answers[0].2),
            "{what} answers unlike {}",
            answers[0].0
        );
    }
    assert_eq!(
        counts(&app).await,
        before,
        "a refused sign-in wrote something"
    );

    // A disabled staff member: their token stops at once, no new sign-in.
    let admin = app.staff_token(Role::Admin).await;
    let (target_email, target_password) = app.staff_in("a", Role::Practitioner).await;
    let target = session_of(
        &app.login("a", &target_email, &target_password).await,
        "login",
    );
    works(&app, "before disabling", &target.access).await;
    let disabled = app
        .gql_as(
            Some(&admin),
            SET_DISABLED,
            json!({ "input": { "staffId": target.staff, "disabled": true } }),
        )
        .await;
    let member = &disabled.data()["setStaffDisabled"]["staff"];
    assert_eq!(member["id"], target.staff.as_str());
    assert_eq!(member["disabled"], true);
    refused(
        &app,
        "the access token of a disabled staff member",
        &target.access,
    )
    .await;
    let again = app.login("a", &target_email, &target_password).await;
    let message = unauthenticated("sign-in of a disabled staff member", &again, "login");
    assert_eq!(
        (&message, &again.errors()[0]["extensions"]),
        (&answers[0].1, &answers[0].2),
        "a disabled account answers differently"
    );
    let refreshed = refresh(&app, &target.refresh).await;
    unauthenticated(
        "refresh of a disabled staff member",
        &refreshed,
        "refreshSession",
    );
    // The admin is unaffected.
    works(&app, "the admin", &admin).await;
}

// --------------------------------------------------------------- refresh

async fn refresh_rotates_and_reuse_revokes_the_session(app: TestApp) {
    let (email, password) = app.staff_in("a", Role::Coordinator).await;
    let first = session_of(&app.login("a", &email, &password).await, "login");
    // Another session of the same person, on another device.
    let other = session_of(&app.login("a", &email, &password).await, "login");

    let rotated = refresh(&app, &first.refresh).await;
    let second = session_of(&rotated, "refreshSession");
    assert_ne!(second.refresh, first.refresh, "the refresh token rotates");
    assert_ne!(second.access, first.access, "a new access token");
    assert_eq!(second.staff, first.staff);
    assert!(second.refresh.starts_with("jmr_"));
    let viewer = works(&app, "the refreshed access token", &second.access).await;
    assert_eq!(viewer["staff"]["id"], first.staff.as_str());

    // The rotated-out refresh token again: refused, and the session is over.
    let before = counts(&app).await;
    let reused = refresh(&app, &first.refresh).await;
    unauthenticated(
        "reuse of a rotated refresh token",
        &reused,
        "refreshSession",
    );
    let after = counts(&app).await;
    assert_eq!(
        after
            .iter()
            .find(|(what, _)| what == "revoked sessions")
            .unwrap()
            .1,
        before
            .iter()
            .find(|(what, _)| what == "revoked sessions")
            .unwrap()
            .1
            + 1,
        "reuse revokes exactly the one session"
    );
    refused(&app, "the newest access token after reuse", &second.access).await;
    refused(&app, "the first access token after reuse", &first.access).await;
    let newest = refresh(&app, &second.refresh).await;
    unauthenticated(
        "the newest refresh token after reuse",
        &newest,
        "refreshSession",
    );
    // The person's other session goes on.
    works(&app, "another session of the same person", &other.access).await;
    let other = session_of(&refresh(&app, &other.refresh).await, "refreshSession");
    works(&app, "the other session, refreshed", &other.access).await;

    // Garbage refresh tokens are refused too.
    for (what, token) in [
        (
            "an unknown refresh token",
            format!("jmr_{}", "x".repeat(48)),
        ),
        ("an access token as refresh token", other.access.clone()),
        ("an API token as refresh token", app.token.clone()),
        ("an empty refresh token", String::new()),
    ] {
        unauthenticated(what, &refresh(&app, &token).await, "refreshSession");
    }

    // Logout ends the session at once: access token 401, refresh token refused.
    let ended = app
        .gql_as(
            Some(&other.access),
            "mutation { logout { ended } }",
            json!({}),
        )
        .await;
    assert_eq!(ended.data()["logout"]["ended"], true);
    refused(&app, "the access token after logout", &other.access).await;
    let after_logout = refresh(&app, &other.refresh).await;
    unauthenticated(
        "the refresh token after logout",
        &after_logout,
        "refreshSession",
    );

    // Logout by refresh token, from the session itself.
    let third = session_of(&app.login("a", &email, &password).await, "login");
    let fourth = session_of(&app.login("a", &email, &password).await, "login");
    let ended = app
        .gql_as(
            Some(&fourth.access),
            "mutation($token: String) { logout(input: { refreshToken: $token }) { ended } }",
            json!({ "token": third.refresh }),
        )
        .await;
    assert_eq!(ended.data()["logout"]["ended"], true);
    refused(
        &app,
        "an access token of a session ended by its refresh token",
        &third.access,
    )
    .await;
    works(&app, "the session that ended the other", &fourth.access).await;

    // Nobody ends someone else's session.
    let stranger = signed_in(&app, "a", Role::Owner).await;
    let before = counts(&app).await;
    let refused_logout = app
        .gql_as(
            Some(&stranger.access),
            "mutation($token: String) { logout(input: { refreshToken: $token }) { ended } }",
            json!({ "token": fourth.refresh }),
        )
        .await;
    refused_logout.assert_error("FORBIDDEN", None);
    assert_eq!(
        counts(&app).await,
        before,
        "a refused logout wrote something"
    );
    works(&app, "a session someone else tried to end", &fourth.access).await;
}

// ---------------------------------------------------------- forged tokens

async fn forged_and_bad_access_tokens_are_refused(app: TestApp) {
    forge::self_check();
    let secret = settings::signing_key(app.db())
        .await
        .expect("the signing key");
    let owner = signed_in(&app, "a", Role::Owner).await;

    // The helpers reproduce the server's own signature, so the secret is the
    // one the server signs with.
    let (input, signature) = owner.access.rsplit_once('.').unwrap();
    let (header_part, payload_part) = input.split_once('.').unwrap();
    assert_eq!(
        forge::b64url(&forge::hmac_sha256(&secret, input.as_bytes())),
        signature,
        "HMAC-SHA256 of the server's token with settings::signing_key"
    );
    let header: Value = serde_json::from_slice(&forge::b64url_decode(header_part)).unwrap();
    assert_eq!(header["alg"], "HS256", "{header}");
    let claims: Value = serde_json::from_slice(&forge::b64url_decode(payload_part)).unwrap();
    assert_eq!(forge::b64url(claims.to_string().as_bytes()), payload_part);
    assert_eq!(claims["iss"], ISSUER, "{claims}");
    assert_eq!(claims["aud"], AUDIENCE, "{claims}");

    let now = Utc::now().timestamp();
    let live = json!({
        "iss": ISSUER, "aud": AUDIENCE,
        "sub": claims["sub"], "cid": claims["cid"], "sid": claims["sid"],
        "iat": now, "nbf": now, "exp": now + 600, "jti": Uuid::now_v7(),
    });
    let hs256 = json!({ "alg": "HS256", "typ": "JWT" });
    let real = |input: &[u8]| forge::hmac_sha256(&secret, input);

    // The control: a token signed here with the real secret and right claims works.
    let control = forge::jwt(&hs256, &live, real);
    let viewer = works(&app, "a correctly signed token", &control).await;
    assert_eq!(viewer["kind"], "STAFF");
    assert_eq!(viewer["role"], "OWNER");
    assert_eq!(viewer["staff"]["id"], owner.staff.as_str());

    let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = live.clone();
        change(claims.as_object_mut().unwrap());
        claims
    };
    let sub: Uuid = serde_json::from_value(claims["sub"].clone()).unwrap();
    let cid: Uuid = serde_json::from_value(claims["cid"].clone()).unwrap();
    let sid: Uuid = serde_json::from_value(claims["sid"].clone()).unwrap();
    app.clinic("b").await;
    let clinic_b = clinics::by_slug(app.db(), "b").await.unwrap().unwrap().id;

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "alg none without a signature",
        format!(
            "{}.{}.",
            forge::b64url(br#"{"alg":"none","typ":"JWT"}"#),
            forge::b64url(live.to_string().as_bytes())
        ),
    ));
    cases.push((
        "alg none with the real signature",
        forge::jwt(&json!({ "alg": "none", "typ": "JWT" }), &live, real),
    ));
    let (foreign, _) =
        JwtKeys::new(&[0x5a; 64], Duration::minutes(15)).issue(cid, sub, sid, Utc::now());
    cases.push(("HS256 signed with a wrong secret", foreign));
    cases.push((
        "HS256 signed with a wrong secret (hand-made)",
        forge::jwt(&hs256, &live, |input: &[u8]| {
            forge::hmac_sha256(b"not the secret the server signs with", input)
        }),
    ));
    cases.push((
        "alg RS256 (HMAC signature with the real secret)",
        forge::jwt(&json!({ "alg": "RS256", "typ": "JWT" }), &live, real),
    ));
    cases.push((
        "alg HS512 signed with the real secret",
        forge::jwt(
            &json!({ "alg": "HS512", "typ": "JWT" }),
            &live,
            |input: &[u8]| forge::hmac_sha512(&secret, input),
        ),
    ));
    cases.push((
        "alg HS384 with an HS256 signature",
        forge::jwt(&json!({ "alg": "HS384", "typ": "JWT" }), &live, real),
    ));
    cases.push((
        "wrong aud",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("aud".into(), json!("another-api"));
            }),
            real,
        ),
    ));
    cases.push((
        "wrong iss",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("iss".into(), json!("someone-else"));
            }),
            real,
        ),
    ));
    cases.push((
        "missing exp",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.remove("exp");
            }),
            real,
        ),
    ));
    cases.push((
        "missing aud",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.remove("aud");
            }),
            real,
        ),
    ));
    cases.push((
        "expired an hour ago",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("iat".into(), json!(now - 7200));
                c.insert("nbf".into(), json!(now - 7200));
                c.insert("exp".into(), json!(now - 3600));
            }),
            real,
        ),
    ));
    let (expired, _) = JwtKeys::new(&secret, Duration::minutes(15)).issue(
        cid,
        sub,
        sid,
        Utc::now() - Duration::minutes(75),
    );
    cases.push(("expired an hour ago (issued by the server's code)", expired));
    cases.push((
        "expired 40 s ago (past the 30 s leeway)",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("iat".into(), json!(now - 940));
                c.insert("nbf".into(), json!(now - 940));
                c.insert("exp".into(), json!(now - 40));
            }),
            real,
        ),
    ));
    cases.push((
        "nbf 60 s ahead (past the 30 s leeway)",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("nbf".into(), json!(now + 60));
            }),
            real,
        ),
    ));
    cases.push((
        "nbf an hour ahead",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("nbf".into(), json!(now + 3600));
                c.insert("exp".into(), json!(now + 7200));
            }),
            real,
        ),
    ));
    let tamper = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = claims.clone();
        change(claims.as_object_mut().unwrap());
        format!(
            "{header_part}.{}.{signature}",
            forge::b64url(claims.to_string().as_bytes())
        )
    };
    cases.push((
        "payload tampered: cid of another clinic, signature kept",
        tamper(&|c| {
            c.insert("cid".into(), json!(clinic_b));
        }),
    ));
    cases.push((
        "payload tampered: exp a day later, signature kept",
        tamper(&|c| {
            let exp = c["exp"].as_i64().unwrap();
            c.insert("exp".into(), json!(exp + 86_400));
        }),
    ));
    cases.push((
        "payload tampered: another jti, signature kept",
        tamper(&|c| {
            c.insert("jti".into(), json!(Uuid::now_v7()));
        }),
    ));
    cases.push(("signature removed", format!("{input}.")));
    cases.push(("header and payload only", input.to_string()));
    cases.push((
        "signature of another token",
        format!("{input}.{}", control.rsplit_once('.').unwrap().1),
    ));

    // A live token whose session was logged out, and one made afterwards
    // for that session with the real secret.
    let ended = signed_in(&app, "a", Role::Owner).await;
    let logout = app
        .gql_as(
            Some(&ended.access),
            "mutation { logout { ended } }",
            json!({}),
        )
        .await;
    assert_eq!(logout.data()["logout"]["ended"], true);
    let ended_claims: Value = serde_json::from_slice(&forge::b64url_decode(
        ended.access.split('.').nth(1).unwrap(),
    ))
    .unwrap();
    cases.push((
        "a valid token of a logged-out session",
        ended.access.clone(),
    ));
    cases.push((
        "a fresh token for a logged-out session",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("sub".into(), ended_claims["sub"].clone());
                c.insert("sid".into(), ended_claims["sid"].clone());
            }),
            real,
        ),
    ));
    cases.push((
        "a fresh token for a session that does not exist",
        forge::jwt(
            &hs256,
            &with(&|c| {
                c.insert("sid".into(), json!(Uuid::now_v7()));
            }),
            real,
        ),
    ));

    for (what, token) in &cases {
        refused(&app, what, token).await;
    }

    // Within the leeway for clock skew, a token still works.
    for (what, claims) in [
        (
            "expired 10 s ago (within the 30 s leeway)",
            with(&|c| {
                c.insert("iat".into(), json!(now - 910));
                c.insert("nbf".into(), json!(now - 910));
                c.insert("exp".into(), json!(now - 10));
            }),
        ),
        (
            "nbf 10 s ahead (within the 30 s leeway)",
            with(&|c| {
                c.insert("nbf".into(), json!(now + 10));
            }),
        ),
    ] {
        let viewer = works(&app, what, &forge::jwt(&hs256, &claims, real)).await;
        assert_eq!(viewer["staff"]["id"], owner.staff.as_str(), "{what}");
    }

    // None of that touched the real session.
    works(&app, "the real session afterwards", &owner.access).await;
    works(&app, "the control token afterwards", &control).await;
}

// ------------------------------------------------------------ role matrix

/// Everything the role matrix acts on, made with clinic "a"'s full token.
struct Fixture {
    pathway: journeymap_tests::PathwayIds,
    patient: String,
    journey: String,
    touchpoint: String,
    feedback: String,
}

const EMAIL: &str = "shared@example.com";
const PHONE: &str = "+14155550123";
const SUMMARY: &str = "Called about the quote";
const COMMENT: &str = "Lovely staff";

async fn fixture(app: &TestApp) -> Fixture {
    let pathway = app.pathway().await;
    let created = app
        .gql(
            CREATE_PATIENT,
            json!({ "input": { "givenName": "Shared", "familyName": "Patient", "email": EMAIL, "phone": PHONE } }),
        )
        .await;
    let patient = created.data()["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let journey = app.start_journey(&patient, &pathway.id).await;
    let logged = app
        .gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE",
                               "direction": "INBOUND", "kind": "call", "summary": SUMMARY } }),
        )
        .await;
    let touchpoint = logged.data()["logTouchpoint"]["touchpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let submitted = app
        .gql(
            "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS",
                               "score": 9, "comment": COMMENT } }),
        )
        .await;
    let feedback = submitted.data()["submitFeedback"]["feedback"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    Fixture {
        pathway,
        patient,
        journey,
        touchpoint,
        feedback,
    }
}

/// One thing the matrix tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ReadPatients,
    ReadPatient,
    ReadJourneys,
    ReadJourney,
    ReadJourneyMap,
    CreatePatient,
    LogTouchpoint,
    SubmitFeedback,
    MoveJourneyToStage,
    CreatePathway,
    CreateStaff,
    CreateApiToken,
    ApiTokens,
    AuditLog,
    Events,
    ExportPatient,
    ErasePatient,
}

impl Op {
    const ALL: [Op; 17] = [
        Op::ReadPatients,
        Op::ReadPatient,
        Op::ReadJourneys,
        Op::ReadJourney,
        Op::ReadJourneyMap,
        Op::CreatePatient,
        Op::LogTouchpoint,
        Op::SubmitFeedback,
        Op::MoveJourneyToStage,
        Op::CreatePathway,
        Op::CreateStaff,
        Op::CreateApiToken,
        Op::ApiTokens,
        Op::AuditLog,
        Op::Events,
        Op::ExportPatient,
        Op::ErasePatient,
    ];

    /// The top-level field of the operation.
    fn field(self) -> &'static str {
        match self {
            Op::ReadPatients => "patients",
            Op::ReadPatient => "patient",
            Op::ReadJourneys => "journeys",
            Op::ReadJourney => "journey",
            Op::ReadJourneyMap => "journeyMap",
            Op::CreatePatient => "createPatient",
            Op::LogTouchpoint => "logTouchpoint",
            Op::SubmitFeedback => "submitFeedback",
            Op::MoveJourneyToStage => "moveJourneyToStage",
            Op::CreatePathway => "createPathway",
            Op::CreateStaff => "createStaff",
            Op::CreateApiToken => "createApiToken",
            Op::ApiTokens => "apiTokens",
            Op::AuditLog => "auditLog",
            Op::Events => "events",
            Op::ExportPatient => "exportPatient",
            Op::ErasePatient => "erasePatient",
        }
    }

    fn writes(self) -> bool {
        !matches!(
            self,
            Op::ReadPatients
                | Op::ReadPatient
                | Op::ReadJourneys
                | Op::ReadJourney
                | Op::ReadJourneyMap
                | Op::ApiTokens
                | Op::AuditLog
                | Op::Events
        )
    }

    /// Who may do it: the matrix of `Role::permissions` written out.
    fn allowed(self, role: Role) -> bool {
        use Role::*;
        let roles: &[Role] = match self {
            Op::ReadJourneys | Op::ReadJourney | Op::ReadJourneyMap => {
                &[Owner, Admin, Coordinator, Practitioner, Viewer]
            }
            Op::ReadPatients
            | Op::ReadPatient
            | Op::LogTouchpoint
            | Op::SubmitFeedback
            | Op::MoveJourneyToStage => &[Owner, Admin, Coordinator, Practitioner],
            Op::CreatePatient => &[Owner, Admin, Coordinator],
            Op::CreatePathway
            | Op::CreateStaff
            | Op::CreateApiToken
            | Op::ApiTokens
            | Op::AuditLog
            | Op::Events
            | Op::ExportPatient
            | Op::ErasePatient => &[Owner, Admin],
        };
        roles.contains(&role)
    }
}

/// What one role acts on of its own: a journey to move and a patient to export and erase.
struct Own {
    journey: String,
    patient: String,
}

async fn attempt(app: &TestApp, token: &str, role: Role, op: Op, fx: &Fixture, own: &Own) -> Gql {
    let name = role.as_str().to_lowercase();
    let (query, variables) = match op {
        Op::ReadPatients => ("{ patients { totalCount nodes { id } } }".to_string(), json!({})),
        Op::ReadPatient => (
            "query($id: ID!) { patient(id: $id) { id givenName email phone } }".to_string(),
            json!({ "id": fx.patient }),
        ),
        Op::ReadJourneys => (
            "{ journeys { totalCount nodes { id patient { givenName } } } }".to_string(),
            json!({}),
        ),
        Op::ReadJourney => (
            "query($id: ID!) { journey(id: $id) { id status currentStage { key } patient { givenName } } }"
                .to_string(),
            json!({ "id": fx.journey }),
        ),
        Op::ReadJourneyMap => (
            "query($id: ID!) { journeyMap(pathwayId: $id) { stages { activeCount enteredCount } } }"
                .to_string(),
            json!({ "id": fx.pathway.id }),
        ),
        Op::CreatePatient => (
            CREATE_PATIENT.to_string(),
            json!({ "input": { "givenName": format!("By {name}"), "familyName": "Test" } }),
        ),
        Op::LogTouchpoint => (
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }"
                .to_string(),
            json!({ "input": { "patientId": fx.patient, "journeyId": fx.journey, "channel": "SMS",
                               "direction": "OUTBOUND", "kind": "check-in",
                               "summary": format!("Checked in ({name})") } }),
        ),
        Op::SubmitFeedback => (
            "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }"
                .to_string(),
            json!({ "input": { "patientId": fx.patient, "journeyId": fx.journey, "kind": "CSAT", "score": 5 } }),
        ),
        Op::MoveJourneyToStage => (
            "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id currentStage { key } } } }"
                .to_string(),
            json!({ "input": { "journeyId": own.journey, "stageId": fx.pathway.consultation } }),
        ),
        Op::CreatePathway => (
            CREATE_PATHWAY.to_string(),
            json!({ "name": format!("Pathway of the {name}") }),
        ),
        Op::CreateStaff => (
            CREATE_STAFF.to_string(),
            json!({ "input": { "email": format!("made-by-{name}@a.example"), "name": format!("Made by {name}"),
                               "role": "VIEWER", "password": "correct horse battery staple" } }),
        ),
        Op::CreateApiToken => (
            CREATE_API_TOKEN.to_string(),
            json!({ "input": { "name": format!("Token of the {name}"), "scopes": ["journeys:read"] } }),
        ),
        Op::ApiTokens => ("{ apiTokens { id prefix scopes } }".to_string(), json!({})),
        Op::AuditLog => (
            "{ auditLog { totalCount nodes { action } } }".to_string(),
            json!({}),
        ),
        Op::Events => (
            "{ events { totalCount nodes { id type } } }".to_string(),
            json!({}),
        ),
        Op::ExportPatient => (
            "mutation($input: ExportPatientInput!) { exportPatient(input: $input) { data } }".to_string(),
            json!({ "input": { "patientId": own.patient } }),
        ),
        Op::ErasePatient => (
            "mutation($input: ErasePatientInput!) { erasePatient(input: $input) { patient { id erased } } }"
                .to_string(),
            json!({ "input": { "patientId": own.patient, "reason": "erasure request" } }),
        ),
    };
    app.gql_as(Some(token), &query, variables).await
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}

/// The errors of `gql` as (path, code).
fn error_paths(gql: &Gql) -> BTreeSet<(String, String)> {
    gql.errors()
        .iter()
        .map(|e| {
            (
                compact(&e["path"]),
                e["extensions"]["code"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

const FIELD_LEVEL: &str = r#"query($journey: ID!, $touchpoint: ID!, $feedback: ID!) {
  journey(id: $journey) { id patient { givenName familyName email phone } }
  journeys { nodes { id patient { givenName } } }
  tp: node(id: $touchpoint) { id ... on Touchpoint { kind summary } }
  fb: node(id: $feedback) { id ... on Feedback { score comment } }
}"#;

async fn roles_may_do_what_their_permissions_allow(app: TestApp) {
    let fx = fixture(&app).await;
    let mut findings: Vec<String> = Vec::new();

    for role in Role::ALL {
        let name = role.as_str();
        let token = app.staff_token(role).await;
        let viewer = works(&app, name, &token).await;
        assert_eq!(viewer["role"], name, "{viewer}");
        let mover = app.patient(&format!("Mover{}", name.to_lowercase())).await;
        let own = Own {
            journey: app.start_journey(&mover, &fx.pathway.id).await,
            patient: app
                .patient(&format!("Erasable{}", name.to_lowercase()))
                .await,
        };

        // Field-level rules: names for everyone with journeys:read, contact
        // details and free text only with patients:read.
        let read = app
            .gql_as(
                Some(&token),
                FIELD_LEVEL,
                json!({ "journey": fx.journey, "touchpoint": fx.touchpoint, "feedback": fx.feedback }),
            )
            .await;
        let data = &read.body["data"];
        let patient = &data["journey"]["patient"];
        let names_ok = patient["givenName"] == "Shared"
            && patient["familyName"] == "Patient"
            && data["journeys"]["nodes"].as_array().is_some_and(|nodes| {
                !nodes.is_empty() && nodes.iter().all(|n| n["patient"]["givenName"].is_string())
            })
            && data["tp"]["kind"] == "call"
            && data["fb"]["score"] == 9;
        if !names_ok {
            findings.push(format!(
                "{name}: names, kinds and scores should show: {}",
                compact(&read.body)
            ));
        }
        let private = [
            (
                "[\"journey\",\"patient\",\"email\"]",
                &patient["email"],
                EMAIL,
            ),
            (
                "[\"journey\",\"patient\",\"phone\"]",
                &patient["phone"],
                PHONE,
            ),
            ("[\"tp\",\"summary\"]", &data["tp"]["summary"], SUMMARY),
            ("[\"fb\",\"comment\"]", &data["fb"]["comment"], COMMENT),
        ];
        if role == Role::Viewer {
            let expected: BTreeSet<(String, String)> = private
                .iter()
                .map(|(path, _, _)| (path.to_string(), "FORBIDDEN".to_string()))
                .collect();
            if error_paths(&read) != expected
                || private.iter().any(|(_, value, _)| !value.is_null())
            {
                findings.push(format!(
                    "{name}: email, phone, touchpoint summary and feedback comment should be FORBIDDEN \
                     field errors (the rest present): {}",
                    compact(&read.body)
                ));
            }
        } else if !read.errors().is_empty()
            || private
                .iter()
                .any(|(_, value, expected)| value.as_str() != Some(*expected))
        {
            findings.push(format!(
                "{name}: contact details and free text should show: {}",
                compact(&read.body)
            ));
        }

        for op in Op::ALL {
            let before = counts(&app).await;
            let answer = attempt(&app, &token, role, op, &fx, &own).await;
            let field = op.field();
            if op.allowed(role) {
                if !answer.errors().is_empty() || answer.body["data"][field].is_null() {
                    findings.push(format!(
                        "{name} {field}: should be allowed, got {}",
                        compact(&answer.body)
                    ));
                }
            } else {
                if answer.code().as_deref() != Some("FORBIDDEN")
                    || !answer.body["data"][field].is_null()
                {
                    findings.push(format!(
                        "{name} {field}: should be FORBIDDEN without data, got {}",
                        compact(&answer.body)
                    ));
                }
                if op.writes() && counts(&app).await != before {
                    findings.push(format!("{name} {field}: refused, but wrote something"));
                }
            }
        }
    }

    // Nobody hands out more authority than they hold.
    let admin = app.staff_token(Role::Admin).await;
    let before = counts(&app).await;
    let refused_owner = app
        .gql_as(
            Some(&admin),
            CREATE_STAFF,
            json!({ "input": { "email": "new-owner@a.example", "name": "New Owner",
                               "role": "OWNER", "password": "correct horse battery staple" } }),
        )
        .await;
    if refused_owner.code().as_deref() != Some("FORBIDDEN")
        || !refused_owner.body["data"]["createStaff"].is_null()
    {
        findings.push(format!(
            "ADMIN createStaff(role: OWNER): should be FORBIDDEN, got {}",
            compact(&refused_owner.body)
        ));
    }
    if counts(&app).await != before {
        findings.push("ADMIN createStaff(role: OWNER): refused, but wrote something".into());
    }
    let made = app
        .gql_as(
            Some(&admin),
            CREATE_STAFF,
            json!({ "input": { "email": "new-admin@a.example", "name": "New Admin",
                               "role": "ADMIN", "password": "correct horse battery staple" } }),
        )
        .await;
    if made.body["data"]["createStaff"]["staff"]["role"] != "ADMIN" {
        findings.push(format!(
            "ADMIN createStaff(role: ADMIN): should work, got {}",
            compact(&made.body)
        ));
    }
    let owner = app.staff_token(Role::Owner).await;
    let made = app
        .gql_as(
            Some(&owner),
            CREATE_STAFF,
            json!({ "input": { "email": "second-owner@a.example", "name": "Second Owner",
                               "role": "OWNER", "password": "correct horse battery staple" } }),
        )
        .await;
    if made.body["data"]["createStaff"]["staff"]["role"] != "OWNER" {
        findings.push(format!(
            "OWNER createStaff(role: OWNER): should work, got {}",
            compact(&made.body)
        ));
    }

    // No token gets a scope its creator lacks.
    let coordinator = app.staff_token(Role::Coordinator).await;
    let token_manager = app
        .token_with(&[Permission::TokensManage, Permission::PatientsRead])
        .await;
    let beyond = [
        (
            "COORDINATOR",
            coordinator.as_str(),
            json!(["webhooks:manage"]),
        ),
        (
            "COORDINATOR",
            coordinator.as_str(),
            json!(["patients:read"]),
        ),
        (
            "token with tokens:manage + patients:read",
            token_manager.as_str(),
            json!(["patients:write"]),
        ),
        (
            "token with tokens:manage + patients:read",
            token_manager.as_str(),
            json!(["patients:read", "patients:write"]),
        ),
        (
            "token with tokens:manage + patients:read",
            token_manager.as_str(),
            json!(["tokens:manage", "staff:manage"]),
        ),
    ];
    for (who, token, scopes) in beyond {
        let before = counts(&app).await;
        let answer = app
            .gql_as(
                Some(token),
                CREATE_API_TOKEN,
                json!({ "input": { "name": "Beyond", "scopes": scopes } }),
            )
            .await;
        if answer.code().as_deref() != Some("FORBIDDEN")
            || !answer.body["data"]["createApiToken"].is_null()
        {
            findings.push(format!(
                "{who} createApiToken({scopes}): should be FORBIDDEN, got {}",
                compact(&answer.body)
            ));
        }
        if counts(&app).await != before {
            findings.push(format!(
                "{who} createApiToken({scopes}): refused, but wrote something"
            ));
        }
    }
    // Within its own rights, the same token may mint.
    let within = app
        .gql_as(
            Some(&token_manager),
            CREATE_API_TOKEN,
            json!({ "input": { "name": "Within", "scopes": ["patients:read"] } }),
        )
        .await;
    if within.body["data"]["createApiToken"]["token"]["scopes"] != json!(["patients:read"]) {
        findings.push(format!(
            "token with tokens:manage + patients:read createApiToken([patients:read]): should work, got {}",
            compact(&within.body)
        ));
    }

    assert!(
        findings.is_empty(),
        "role matrix: {} finding(s):\n{}",
        findings.len(),
        findings.join("\n")
    );
}

// ------------------------------------------------------- tenant isolation

async fn staff_of_another_clinic_get_not_found(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Alice").await;
    let journey = app.start_journey(&patient, &pathway.id).await;

    app.clinic("b").await;
    let b = signed_in(&app, "b", Role::Owner).await;
    let viewer = works(&app, "clinic b's owner", &b.access).await;
    assert_eq!(viewer["clinic"]["slug"], "b", "{viewer}");
    assert_eq!(viewer["role"], "OWNER", "{viewer}");

    const STATE: &str = "query($p: ID!, $j: ID!) { patient(id: $p) { givenName updatedAt } \
                         journey(id: $j) { version currentStage { key } history { id } } }";
    let state = app
        .gql(STATE, json!({ "p": patient, "j": journey }))
        .await
        .data()
        .clone();

    let mut findings: Vec<String> = Vec::new();
    let queries = [
        (
            "patient",
            "query($id: ID!) { patient(id: $id) { id givenName } }",
            patient.clone(),
        ),
        (
            "journey",
            "query($id: ID!) { journey(id: $id) { id status } }",
            journey.clone(),
        ),
        (
            "pathway",
            "query($id: ID!) { pathway(id: $id) { id name } }",
            pathway.id.clone(),
        ),
        (
            "node",
            "query($id: ID!) { node(id: $id) { id } }",
            patient.clone(),
        ),
        (
            "node",
            "query($id: ID!) { node(id: $id) { id } }",
            journey.clone(),
        ),
        (
            "node",
            "query($id: ID!) { node(id: $id) { id } }",
            pathway.id.clone(),
        ),
        (
            "node",
            "query($id: ID!) { node(id: $id) { id } }",
            pathway.consultation.clone(),
        ),
    ];
    for (field, query, id) in queries {
        let answer = app
            .gql_as(Some(&b.access), query, json!({ "id": id }))
            .await;
        if answer.code().as_deref() != Some("NOT_FOUND") || !answer.body["data"][field].is_null() {
            findings.push(format!(
                "{field}({id}): should be NOT_FOUND, got {}",
                compact(&answer.body)
            ));
        }
    }

    let mutations = [
        (
            "updatePatient",
            "mutation($input: UpdatePatientInput!) { updatePatient(input: $input) { patient { id givenName } } }",
            json!({ "input": { "patientId": patient, "givenName": "Mallory" } }),
        ),
        (
            "moveJourneyToStage",
            "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
            json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
        ),
        (
            "startJourney",
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
        ),
        (
            "logTouchpoint",
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "channel": "PHONE", "direction": "OUTBOUND", "kind": "call" } }),
        ),
    ];
    for (field, query, variables) in mutations {
        let before = counts(&app).await;
        let answer = app.gql_as(Some(&b.access), query, variables.clone()).await;
        if answer.code().as_deref() != Some("NOT_FOUND") || !answer.body["data"][field].is_null() {
            findings.push(format!(
                "{field}({}): should be NOT_FOUND, got {}",
                compact(&variables),
                compact(&answer.body)
            ));
        }
        if counts(&app).await != before {
            findings.push(format!("{field}: refused, but wrote something"));
        }
    }

    // Clinic b's lists hold none of clinic a's rows.
    let lists = app
        .gql_as(
            Some(&b.access),
            "{ patients { totalCount } journeys { totalCount } pathways { id } }",
            json!({}),
        )
        .await;
    if lists.body["data"]
        != json!({ "patients": { "totalCount": 0 }, "journeys": { "totalCount": 0 }, "pathways": [] })
    {
        findings.push(format!("clinic b's lists: {}", compact(&lists.body)));
    }

    // Clinic a's data are as they were.
    let now = app
        .gql(STATE, json!({ "p": patient, "j": journey }))
        .await
        .data()
        .clone();
    assert_eq!(now, state, "clinic a's patient and journey changed");
    assert_eq!(state["patient"]["givenName"], "Alice", "{state}");
    assert_eq!(
        state["journey"]["currentStage"]["key"], "inquiry",
        "{state}"
    );

    assert!(
        findings.is_empty(),
        "tenant isolation for staff: {} finding(s):\n{}",
        findings.len(),
        findings.join("\n")
    );
}

// ------------------------------------------------------------ API tokens

async fn api_tokens_are_shown_once_work_and_stop_when_revoked(app: TestApp) {
    let admin = signed_in(&app, "a", Role::Admin).await;
    let created = app
        .gql_as(
            Some(&admin.access),
            CREATE_API_TOKEN,
            json!({ "input": { "name": "HubSpot sync", "scopes": ["patients:read", "journeys:read"] } }),
        )
        .await;
    let payload = &created.data()["createApiToken"];
    let secret = payload["secret"].as_str().expect("the secret").to_string();
    let token = &payload["token"];
    let id = token["id"].as_str().unwrap().to_string();
    let prefix = token["prefix"].as_str().unwrap().to_string();
    assert!(secret.starts_with("jm_"), "{secret}");
    assert_eq!(secret.len(), 3 + 32 + 6, "{secret}");
    assert!(
        secret.starts_with(&prefix) && prefix.len() < secret.len() && prefix.len() >= 4,
        "prefix {prefix:?} of {secret:?}"
    );
    assert!(id.starts_with("tok_"), "{id}");
    assert_eq!(token["name"], "HubSpot sync");
    assert_eq!(token["scopes"], json!(["journeys:read", "patients:read"]));
    assert_eq!(token["createdBy"]["id"], admin.staff.as_str());
    assert!(token["revokedAt"].is_null());
    assert!(token["expiresAt"].is_null());

    // The list shows prefix, scopes and creator, never the secret.
    let list_query = "{ apiTokens { id name prefix scopes createdBy { id name } createdAt expiresAt lastUsedAt revokedAt } }";
    let listed = app.gql_as(Some(&admin.access), list_query, json!({})).await;
    let listed = listed.data().clone();
    let entry = listed["apiTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the new token in {listed}"))
        .clone();
    assert_eq!(entry["prefix"], prefix.as_str());
    assert_eq!(entry["scopes"], json!(["journeys:read", "patients:read"]));
    assert_eq!(entry["createdBy"]["id"], admin.staff.as_str());
    let text = compact(&listed);
    assert!(!text.contains(&secret), "the list shows a secret: {text}");
    assert!(
        !text.contains(&secret[prefix.len()..]),
        "the list shows the secret's tail: {text}"
    );

    // The token works, within its scopes.
    let (status, _, body) = post(
        &app,
        &secret,
        "{ viewer { kind name role scopes } patients { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["viewer"]["kind"], "API_TOKEN");
    assert_eq!(body["data"]["viewer"]["name"], "HubSpot sync");
    assert!(body["data"]["viewer"]["role"].is_null());
    assert_eq!(
        body["data"]["viewer"]["scopes"],
        json!(["patients:read", "journeys:read"])
    );
    let before = counts(&app).await;
    let write = app
        .gql_as(
            Some(&secret),
            CREATE_PATIENT,
            json!({ "input": { "givenName": "Eve", "familyName": "Test" } }),
        )
        .await;
    write.assert_error("FORBIDDEN", None);
    assert_eq!(
        counts(&app).await,
        before,
        "a refused write wrote something"
    );

    // Revoked: the next request is refused.
    let revoked = app
        .gql_as(
            Some(&admin.access),
            "mutation($input: RevokeApiTokenInput!) { revokeApiToken(input: $input) { token { id revokedAt } } }",
            json!({ "input": { "tokenId": id } }),
        )
        .await;
    let revoked = &revoked.data()["revokeApiToken"]["token"];
    assert_eq!(revoked["id"], id.as_str());
    assert!(revoked["revokedAt"].is_string(), "{revoked}");
    refused(&app, "a revoked API token", &secret).await;
    let listed = app.gql_as(Some(&admin.access), list_query, json!({})).await;
    let entry = listed.data()["apiTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("a revoked token stays listed");
    assert!(entry["revokedAt"].is_string(), "{entry}");

    // Everyone else goes on.
    works(&app, "the admin", &admin.access).await;
    app.gql("{ viewer { kind } }", json!({})).await.data();
}

// ------------------------------------------------------------ expiry, throttle

/// Signs in; the whole answer.
async fn try_login(app: &TestApp, clinic: &str, email: &str, password: &str) -> Gql {
    app.login(clinic, email, password).await
}

/// The wait a RATE_LIMITED answer names, after checking its shape: the
/// message names what is limited, no data came back.
#[track_caller]
fn throttled_for(answer: &Gql, what: &str) -> u64 {
    answer.assert_error("RATE_LIMITED", None);
    let error = &answer.errors()[0];
    assert!(
        error["message"].as_str().unwrap().contains(what),
        "the refusal names the {what}: {error}"
    );
    assert!(answer.body["data"].is_null(), "{}", answer.body);
    error["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfterSeconds: {error}"))
}

/// Attempts a budget of `burst` a minute has regained since `since`.
fn refilled(since: std::time::Instant, burst: u64) -> u64 {
    since.elapsed().as_secs() / (60 / burst) + 1
}

/// Ten sign-in attempts a minute per account, thirty per address (budgets
/// that refill one attempt every 6 s and 2 s): past them, an attempt is
/// RATE_LIMITED with the wait, even with the right password, runs no
/// password check and starts no session; another account is not held up by
/// one account's limit, but is by its address's.
async fn sign_in_attempts_are_throttled(app: TestApp) {
    let (email, password) = app.staff_in("a", Role::Coordinator).await;
    let (other_email, other_password) = app.staff_in("a", Role::Viewer).await;
    let started = std::time::Instant::now();
    // Every attempt that is not refused spends from the address's budget too.
    let mut from_address = 0;

    let mut failed = 0;
    let mut throttled = loop {
        let answer = try_login(&app, "a", &email, "not the password!").await;
        if answer.code().as_deref() == Some("RATE_LIMITED") {
            break answer;
        }
        answer.assert_error("UNAUTHENTICATED", None);
        failed += 1;
        from_address += 1;
        assert!(
            failed <= 10 + refilled(started, 10),
            "{failed} failed sign-ins in {:?} and none refused",
            started.elapsed()
        );
    };
    assert!(failed >= 10, "refused after only {failed} attempts");
    // Until the account's next attempt is over a second away, so that the
    // checks below all happen before it.
    while throttled_for(&throttled, "account") < 2 {
        // A refill lets one through (and spends it); the next is refused again.
        loop {
            throttled = try_login(&app, "a", &email, "not the password!").await;
            if throttled.code().as_deref() == Some("RATE_LIMITED") {
                break;
            }
            from_address += 1;
        }
    }
    let before = counts(&app).await;
    for who in [email.clone(), email.to_uppercase()] {
        let refused = try_login(&app, "a", &who, &password).await;
        let wait = throttled_for(&refused, "account");
        assert!((1..=6).contains(&wait), "retry after {wait} s");
    }
    assert_eq!(
        counts(&app).await,
        before,
        "a throttled sign-in wrote something"
    );

    // Another account signs in.
    session_of(
        &try_login(&app, "a", &other_email, &other_password).await,
        "login",
    );
    from_address += 1;

    // Accounts that do not exist, until the address is refused.
    let mut n = 0;
    let mut throttled = loop {
        n += 1;
        let answer = try_login(
            &app,
            "a",
            &format!("nobody{n}@a.example"),
            "wrong password!",
        )
        .await;
        if answer.code().as_deref() == Some("RATE_LIMITED") {
            break answer;
        }
        answer.assert_error("UNAUTHENTICATED", None);
        from_address += 1;
        assert!(
            from_address <= 30 + refilled(started, 30),
            "{from_address} sign-ins from one address in {:?} and none refused",
            started.elapsed()
        );
    };
    assert!(
        from_address >= 30,
        "the address was refused after {from_address}"
    );
    while throttled_for(&throttled, "address") < 2 {
        // A refill lets one through (and spends it); the next is refused again.
        loop {
            n += 1;
            throttled = try_login(
                &app,
                "a",
                &format!("nobody{n}@a.example"),
                "wrong password!",
            )
            .await;
            if throttled.code().as_deref() == Some("RATE_LIMITED") {
                break;
            }
        }
    }
    // Now even the other account's right password is refused, for the address.
    let refused = try_login(&app, "a", &other_email, &other_password).await;
    let wait = throttled_for(&refused, "address");
    assert!((1..=2).contains(&wait), "retry after {wait} s");
}

/// Sessions (and so refresh tokens) that live two seconds.
fn short_sessions() -> journeymap_tests::Options {
    let mut options = journeymap_tests::Options::default();
    options.config.refresh_token_ttl_secs = 2;
    options
}

fn instant(value: &Value) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// A refresh token works until its session's end (refreshing does not move
/// it), and is refused after, rotating nothing.
async fn refresh_tokens_expire_with_their_session(app: TestApp) {
    let (email, password) = app.staff_in("a", Role::Admin).await;
    let signed_in = try_login(&app, "a", &email, &password).await;
    let login = signed_in.data()["login"].clone();
    let ends = instant(&login["refreshTokenExpiresAt"]);
    let lifetime = ends - Utc::now();
    assert!(
        lifetime <= Duration::seconds(2) && lifetime > Duration::zero(),
        "the session ends in {lifetime}"
    );

    let rotated = refresh(&app, login["refreshToken"].as_str().unwrap()).await;
    let rotated = rotated.data()["refreshSession"].clone();
    assert_eq!(
        instant(&rotated["refreshTokenExpiresAt"]),
        ends,
        "refreshing does not extend the session"
    );

    // Past the end: refused, like any bad refresh token, and nothing changes.
    let wait = (ends - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    let before = counts(&app).await;
    let expired = refresh(&app, rotated["refreshToken"].as_str().unwrap()).await;
    let message = unauthenticated("an expired refresh token", &expired, "refreshSession");
    let unknown = refresh(&app, "jmr_doesnotexist").await;
    assert_eq!(
        message,
        unauthenticated("an unknown refresh token", &unknown, "refreshSession"),
        "an expired refresh token reads like any other bad one"
    );
    assert_eq!(
        counts(&app).await,
        before,
        "an expired refresh rotated something"
    );
}

/// `createApiToken` with `expiresAt`: the token works until then, is listed
/// with it, and is refused after; an `expiresAt` in the past is bad input.
async fn api_tokens_stop_at_their_expiry(app: TestApp) {
    let expires_at = Utc::now() + Duration::seconds(2);
    let created = app
        .gql(
            CREATE_API_TOKEN,
            json!({ "input": { "name": "short-lived", "scopes": ["journeys:read"], "expiresAt": expires_at.to_rfc3339() } }),
        )
        .await;
    let payload = &created.data()["createApiToken"];
    let secret = payload["secret"].as_str().unwrap().to_string();
    let id = payload["token"]["id"].clone();
    assert_eq!(
        instant(&payload["token"]["expiresAt"]).timestamp_micros(),
        expires_at.timestamp_micros()
    );
    let listed = app.gql("{ apiTokens { id expiresAt } }", json!({})).await;
    let entry = listed.data()["apiTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .expect("listed");
    assert_eq!(entry["expiresAt"], payload["token"]["expiresAt"]);

    let (status, _, body) = post(&app, &secret, "{ viewer { name } }", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["viewer"]["name"], "short-lived");

    let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    let (status, headers, body) = post(&app, &secret, "{ viewer { name } }", json!({})).await;
    assert_unauthorized("an API token past its expiresAt", status, &headers, &body);

    let before = counts(&app).await;
    app.gql(
        CREATE_API_TOKEN,
        json!({ "input": { "name": "born expired", "scopes": ["journeys:read"],
                           "expiresAt": (Utc::now() - Duration::minutes(1)).to_rfc3339() } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.expiresAt"));
    assert_eq!(counts(&app).await, before, "a refused token was made");
}

/// Clinic B's owner, and a full-scope token of B, try clinic A's ids on the
/// privacy and administration mutations: NOT_FOUND every time, and nothing
/// of A's changes.
async fn another_clinics_ids_are_not_found_for_privacy_and_admin(app: TestApp) {
    let patient = app.patient("Alma").await;
    let a_staff = signed_in(&app, "a", Role::Coordinator).await;
    let a_token = app
        .gql(
            CREATE_API_TOKEN,
            json!({ "input": { "name": "A's sync", "scopes": ["journeys:read"] } }),
        )
        .await;
    let a_token = a_token.data()["createApiToken"].clone();
    let a_token_id = a_token["token"]["id"].as_str().unwrap().to_string();
    let a_secret = a_token["secret"].as_str().unwrap().to_string();

    let b_token = app.clinic("b").await;
    let b_owner = signed_in(&app, "b", Role::Owner).await;
    let attempts = [
        (
            "erasePatient",
            "mutation($input: ErasePatientInput!) { erasePatient(input: $input) { patient { id } } }",
            json!({ "input": { "patientId": patient, "reason": "request" } }),
            "input.patientId",
        ),
        (
            "exportPatient",
            "mutation($input: ExportPatientInput!) { exportPatient(input: $input) { data } }",
            json!({ "input": { "patientId": patient } }),
            "input.patientId",
        ),
        (
            "revokeApiToken",
            "mutation($input: RevokeApiTokenInput!) { revokeApiToken(input: $input) { token { id } } }",
            json!({ "input": { "tokenId": a_token_id } }),
            "input.tokenId",
        ),
        (
            "setStaffDisabled",
            SET_DISABLED,
            json!({ "input": { "staffId": a_staff.staff, "disabled": true } }),
            "input.staffId",
        ),
    ];
    for (caller, credential) in [
        ("clinic b's owner", &b_owner.access),
        ("clinic b's token", &b_token),
    ] {
        for (field, mutation, variables, at) in &attempts {
            let before = counts(&app).await;
            let answer = app
                .gql_as(Some(credential), mutation, variables.clone())
                .await;
            answer.assert_error("NOT_FOUND", Some(at));
            assert!(
                answer.body["data"].is_null() || answer.body["data"][field].is_null(),
                "{caller}, {field}: {}",
                answer.body
            );
            let text = answer.body.to_string();
            assert!(!text.contains("Alma"), "{caller}, {field} leaked: {text}");
            assert_eq!(
                counts(&app).await,
                before,
                "{caller}, {field}: wrote something"
            );
        }
    }

    // Clinic a's patient, token and staff member are as they were.
    let kept = app
        .gql(
            "query($id: ID!) { patient(id: $id) { givenName erased archived } }",
            json!({ "id": patient }),
        )
        .await;
    assert_eq!(
        kept.data()["patient"],
        json!({ "givenName": "Alma", "erased": false, "archived": false })
    );
    works(&app, "clinic a's staff member", &a_staff.access).await;
    let (status, _, body) = post(&app, &a_secret, "{ viewer { name } }", json!({})).await;
    assert_eq!(
        (status, &body["data"]["viewer"]["name"]),
        (StatusCode::OK, &json!("A's sync")),
        "{body}"
    );
}

on_both_backends!(
    sign_in_works_and_every_wrong_credential_reads_the_same,
    refresh_rotates_and_reuse_revokes_the_session,
    forged_and_bad_access_tokens_are_refused,
    roles_may_do_what_their_permissions_allow,
    staff_of_another_clinic_get_not_found,
    api_tokens_are_shown_once_work_and_stop_when_revoked,
    sign_in_attempts_are_throttled,
    refresh_tokens_expire_with_their_session => short_sessions,
    api_tokens_stop_at_their_expiry,
    another_clinics_ids_are_not_found_for_privacy_and_admin,
);
