//! The server around the API: CORS for browser front ends, the request
//! timeout, readiness while the database is away or behind on migrations,
//! JSON log lines that carry the request id, and idempotency keys that
//! expire.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use journeymap::sea_orm::{ConnectionTrait, DbBackend, Statement};
use journeymap_tests::{
    Backend, Options, ServerProcess, TestApp, fresh_database, on_both_backends, prepare_database,
};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const SERVER: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

const ALLOWED: &str = "https://app.glow.example";
const REFUSED: &str = "https://evil.example";

// --- CORS ------------------------------------------------------------------

fn cors_for_one_origin() -> Options {
    let mut options = Options::default();
    options.config.cors_origins = vec![ALLOWED.into(), "https://admin.glow.example".into()];
    options
}

fn cors_for_any_origin() -> Options {
    let mut options = Options::default();
    options.config.cors_origins = vec!["*".into()];
    options
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/graphql", app.url))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .expect("preflight")
}

async fn post_from(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/graphql", app.url))
        .header(header::ORIGIN, origin)
        .bearer_auth(&app.token)
        .json(&json!({ "query": "{ viewer { name } }" }))
        .send()
        .await
        .expect("request")
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Comma-separated header values, lower-cased.
fn listed(response: &reqwest::Response, name: header::HeaderName) -> Vec<String> {
    header_of(response, name)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A listed origin may call from a browser: the preflight allows the method
/// and headers the API needs, and answers expose the request id. An origin
/// not listed gets no CORS headers, so browsers refuse to send or read.
async fn cors_allows_listed_origins_only(app: TestApp) {
    let allowed = preflight(&app, ALLOWED).await;
    assert!(allowed.status().is_success(), "{:?}", allowed.status());
    assert_eq!(
        header_of(&allowed, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ALLOWED)
    );
    let methods = listed(&allowed, header::ACCESS_CONTROL_ALLOW_METHODS);
    assert!(methods.contains(&"post".to_string()), "{methods:?}");
    let headers = listed(&allowed, header::ACCESS_CONTROL_ALLOW_HEADERS);
    for needed in ["authorization", "content-type", "idempotency-key"] {
        assert!(
            headers.contains(&needed.to_string()),
            "{needed} in {headers:?}"
        );
    }
    assert_eq!(
        header_of(&allowed, header::ACCESS_CONTROL_MAX_AGE),
        Some("600")
    );

    let answer = post_from(&app, ALLOWED).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ALLOWED)
    );
    let exposed = listed(&answer, header::ACCESS_CONTROL_EXPOSE_HEADERS);
    for needed in ["x-request-id", "idempotent-replayed", "retry-after"] {
        assert!(
            exposed.contains(&needed.to_string()),
            "{needed} in {exposed:?}"
        );
    }
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["name"], "test");

    for origin in [REFUSED, "https://app.glow.example.evil.example", "null"] {
        let refused = preflight(&app, origin).await;
        assert_eq!(
            header_of(&refused, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "preflight from {origin}"
        );
        let answer = post_from(&app, origin).await;
        assert_eq!(
            header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "POST from {origin}"
        );
    }
}

async fn cors_with_a_wildcard_allows_any_origin(app: TestApp) {
    let answer = preflight(&app, REFUSED).await;
    assert!(answer.status().is_success());
    assert_eq!(
        header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("*")
    );
    let answer = post_from(&app, REFUSED).await;
    assert_eq!(
        header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("*")
    );
}

/// Without `--cors-origins`, no origin is allowed.
async fn without_cors_origins_no_origin_is_allowed(app: TestApp) {
    let answer = preflight(&app, ALLOWED).await;
    assert_eq!(
        header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        None
    );
    let answer = post_from(&app, ALLOWED).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        None
    );
}

// --- the request timeout ------------------------------------------------------

fn one_second_timeout() -> Options {
    let mut options = Options::default();
    options.config.request_timeout_secs = 1;
    options
}

/// A request stuck behind the database (another connection holds the lock
/// it needs) is answered 503 once `--request-timeout-secs` has passed, and
/// what it would have written is not written.
async fn requests_running_too_long_get_503(app: TestApp) {
    let before = app.row_counts().await;
    let blocker = app.second_store().await;
    let lock = blocker.db.begin_write().await.expect("a write transaction");
    if app.backend == Backend::Postgres {
        lock.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "LOCK TABLE patients IN ACCESS EXCLUSIVE MODE",
        ))
        .await
        .expect("lock patients");
    }
    // SQLite: the open write transaction holds the database's write lock.

    let started = Instant::now();
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&app.token)
        .header("x-request-id", "slow-request-1")
        .json(&json!({ "query": r#"mutation { createPatient(input: { givenName: "Slow", familyName: "Lane" }) { patient { id } } }"# }))
        .send()
        .await
        .expect("request");
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header_of(&response, header::HeaderName::from_static("x-request-id")),
        Some("slow-request-1")
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}, with a 1 s timeout"
    );

    drop(lock);
    blocker.db.close().await;
    // The abandoned request wrote nothing, and the server goes on.
    assert_eq!(
        app.row_counts().await,
        before,
        "a timed-out mutation wrote rows"
    );
    app.patient("Quick").await;
}

// --- readiness ----------------------------------------------------------------

/// `/readyz` answers 503 while a migration is not applied (as when a newer
/// replica's migration is half rolled out), 200 again once it is; `/healthz`
/// says the process lives all along.
async fn readiness_needs_every_migration(app: TestApp) {
    let ready = |app: &TestApp| {
        let request = app.client.get(format!("{}/readyz", app.url));
        async move { request.send().await.expect("readyz").status() }
    };
    assert_eq!(ready(&app).await, StatusCode::OK);
    let db = app.db();
    let newest = db
        .conn()
        .query_one_raw(Statement::from_string(
            db.backend(),
            "SELECT version, applied_at FROM seaql_migrations ORDER BY version DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .expect("a migration");
    let version: String = newest.try_get("", "version").unwrap();
    let applied_at: i64 = newest.try_get("", "applied_at").unwrap();
    let sql =
        |text: &str| journeymap::db::statement(db.backend(), text, vec![version.clone().into()]);
    db.conn()
        .execute_raw(sql("DELETE FROM seaql_migrations WHERE version = ?"))
        .await
        .unwrap();
    assert_eq!(ready(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "INSERT INTO seaql_migrations (version, applied_at) VALUES (?, ?)",
            vec![version.clone().into(), applied_at.into()],
        ))
        .await
        .unwrap();
    assert_eq!(ready(&app).await, StatusCode::OK);
}

/// A TCP proxy in front of PostgreSQL that the test can cut: while cut, it
/// closes every connection it carries and every new one at once.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, watch) = tokio::sync::watch::channel(0u64);
        let is_cut = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cutting = watch.clone();
                // Only a cut after this connection was made ends it.
                cutting.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cutting.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `/readyz` answers 503 while PostgreSQL cannot be reached, and 200 again
/// when it can; the process stays alive (`/healthz`) and serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn readiness_follows_the_database_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let token = prepare_database(&database_url).await;
    let url = reqwest::Url::parse(&database_url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(target).await;
    let mut proxied = url.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.port)).unwrap();
    let server = ServerProcess::start(
        SERVER,
        proxied.as_str(),
        &["--sweep-interval-secs", "0", "--webhook-concurrency", "0"],
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let status = |path: &'static str| {
        let request = client.get(format!("{}{path}", server.url));
        async move { request.send().await.expect(path).status() }
    };
    assert_eq!(status("/readyz").await, StatusCode::OK);

    proxy.cut();
    let started = Instant::now();
    assert_eq!(status("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "readyz took {:?} to say so",
        started.elapsed()
    );
    assert_eq!(status("/healthz").await, StatusCode::OK);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("/readyz").await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "not ready again 20 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer =
        journeymap_tests::gql_at(&server.url, &token, "{ viewer { name } }", json!({})).await;
    assert_eq!(answer["data"]["viewer"]["name"], "test", "{answer}");
    server.kill().await;
}

// --- logs ---------------------------------------------------------------------

/// With `--log-format json`, the server logs one JSON object per line, and
/// every line of a request carries its request id (the client's, or the one
/// the server made and answered with) and the GraphQL operation name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_request_id() {
    let (database_url, _guard) = fresh_database(Backend::Sqlite).await;
    let token = prepare_database(&database_url).await;
    let server = ServerProcess::start_logged(
        SERVER,
        &database_url,
        &["--log-format", "json", "--sweep-interval-secs", "0"],
        "info,sqlx=warn,sea_orm=warn",
    )
    .await;
    let client = reqwest::Client::new();
    let chosen = "log-check-7f3a";
    let response = client
        .post(format!("{}/graphql", server.url))
        .bearer_auth(&token)
        .header("x-request-id", chosen)
        .json(&json!({ "query": "query Hello { viewer { name } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let made = client
        .post(format!("{}/graphql", server.url))
        .bearer_auth(&token)
        .json(&json!({ "query": "query Again { viewer { name } }" }))
        .send()
        .await
        .unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_string();

    // The response line of each request is logged after the response; wait for both.
    let lines_of = |id: &str| -> Vec<Value> {
        server
            .logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line.to_string().contains(id))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(lines_of(chosen).iter().any(|l| l["message"] == "response")
        && lines_of(&made).iter().any(|l| l["message"] == "response"))
    {
        assert!(Instant::now() < deadline, "log lines: {:#?}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = server.logs();
    for line in &logs {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(parsed["timestamp"].is_string(), "{line}");
        assert!(parsed["level"].is_string(), "{line}");
    }
    for (id, operation) in [(chosen, "Hello"), (made.as_str(), "Again")] {
        let lines = lines_of(id);
        assert!(!lines.is_empty(), "no line carries {id}: {logs:#?}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], id, "{line}");
            assert_eq!(line["span"]["operation"], operation, "{line}");
            assert_eq!(line["span"]["path"], "/graphql", "{line}");
        }
        let response = lines
            .iter()
            .find(|l| l["message"] == "response")
            .unwrap_or_else(|| panic!("the response line of {id}: {lines:#?}"));
        assert_eq!(response["status"], 200, "{response}");
    }
    server.kill().await;
}

// --- idempotency keys ---------------------------------------------------------

fn one_second_keys() -> Options {
    let mut options = Options::default();
    options.config.idempotency_key_ttl_secs = 1;
    options
}

async fn post_keyed(app: &TestApp, key: &str, given_name: &str) -> (StatusCode, bool, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", key)
        .json(&json!({
            "query": "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
            "variables": { "input": { "givenName": given_name, "familyName": "Key" } },
        }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, response.json().await.expect("JSON"))
}

async fn patients(app: &TestApp) -> i64 {
    app.gql("{ patients { totalCount } }", json!({}))
        .await
        .data()["patients"]["totalCount"]
        .as_i64()
        .unwrap()
}

/// Within `--idempotency-key-ttl-secs` a key replays its first answer (and a
/// different body is a CONFLICT); after it, the key is forgotten and the same
/// request runs again.
async fn idempotency_keys_expire(app: TestApp) {
    let (status, replayed, first) = post_keyed(&app, "key-1", "Ivo").await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{first}");
    let remembered_until = Instant::now() + Duration::from_secs(1);
    let (status, replayed, again) = post_keyed(&app, "key-1", "Ivo").await;
    assert!(
        Instant::now() < remembered_until,
        "the replay came too late to test"
    );
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(again, first);
    let (status, _, other) = post_keyed(&app, "key-1", "Someone else").await;
    assert_eq!(status, StatusCode::CONFLICT, "{other}");
    assert_eq!(other["errors"][0]["extensions"]["code"], "CONFLICT");
    assert_eq!(patients(&app).await, 1);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, replayed, later) = post_keyed(&app, "key-1", "Ivo").await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{later}");
    assert_ne!(
        later["data"]["createPatient"]["patient"]["id"],
        first["data"]["createPatient"]["patient"]["id"],
        "an expired key runs the request again"
    );
    assert_eq!(patients(&app).await, 2);
    // And is remembered afresh.
    let (_, replayed, again) = post_keyed(&app, "key-1", "Ivo").await;
    assert!(replayed);
    assert_eq!(again, later);
}

on_both_backends!(
    cors_allows_listed_origins_only => cors_for_one_origin,
    cors_with_a_wildcard_allows_any_origin => cors_for_any_origin,
    without_cors_origins_no_origin_is_allowed,
    requests_running_too_long_get_503 => one_second_timeout,
    readiness_needs_every_migration,
    idempotency_keys_expire => one_second_keys,
);
