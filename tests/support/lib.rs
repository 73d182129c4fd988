//! The end-to-end test harness: every test gets its own database and a real
//! Journeymap server on `127.0.0.1:0`, and talks to it over HTTP like a front
//! end or a CRM would.
//!
//! Tests run on SQLite always. Their PostgreSQL twins run when the tests
//! package was built with `JOURNEYMAP_TEST_DATABASE_URL` or `CI` set (see
//! `build.rs`); each creates, and afterwards drops, its own database on the
//! server the URL names, and fails when there is none. Built without either,
//! the PostgreSQL twins are reported as ignored.

pub mod receiver;

use std::{net::SocketAddr, time::Duration};

use journeymap::{
    App, RunningServer,
    auth::{Permission, Role},
    config::{DatabaseConfig, ServeConfig},
    db::Db,
    domain::{Store, clinics},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a negative check ("nothing else arrives", "no further attempt")
/// waits before it concludes. Every such check in the suite uses this one
/// window; anything the server would still send later than this would go
/// unnoticed, so it is generous compared to the sub-second delays the tests
/// configure (retry schedules of 0.2 s, subscriptions delivered within ms).
pub const QUIET: Duration = Duration::from_secs(1);

/// How long [`warm_up`] waits for the event of one warm-up move before it
/// makes another.
const WARM_UP_STEP: Duration = Duration::from_millis(250);

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server with a fresh database and one clinic ("a") with a token
/// holding every scope.
pub struct TestApp {
    pub backend: Backend,
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    /// A token of clinic "a" with every scope.
    pub token: String,
    pub store: Store,
    /// The URL of the test's own database.
    pub database_url: String,
    server: Option<RunningServer>,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

/// Options for [`spawn_with`].
#[derive(Debug, Clone)]
pub struct Options {
    pub config: ServeConfig,
}

impl Default for Options {
    fn default() -> Self {
        let mut config = ServeConfig::new("127.0.0.1:0".parse().expect("address"));
        // Background work would add statements and events behind a test's
        // back; tests that want the sweeper turn it on.
        config.sweep_interval_secs = 0;
        // Tests send bursts of requests with one token; the rate-limit test
        // turns limiting on.
        config.rate_limit_refill_per_second = 0;
        Self { config }
    }
}

/// Starts a server on `backend` with default options.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, Options::default()).await
}

/// The PostgreSQL server URL for tests. A PostgreSQL test only runs when the
/// suite was built to run them, so a missing URL is a failure, not a skip.
#[track_caller]
pub fn postgres_url() -> String {
    if let Some(pooler) = pooler_url() {
        return pooler;
    }
    std::env::var("JOURNEYMAP_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "this PostgreSQL test must run (CI or JOURNEYMAP_TEST_DATABASE_URL was set when the \
                 tests were built) but JOURNEYMAP_TEST_DATABASE_URL is not set now; set it, e.g. \
                 JOURNEYMAP_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
            )
        })
}

/// A connection pooler in transaction mode in front of the test server
/// (`JOURNEYMAP_TEST_POOLER_URL`, PgBouncer in `.ci/run`): when set, the
/// PostgreSQL tests reach their databases through it, and only LISTEN goes
/// to the server directly (`JOURNEYMAP_TEST_DATABASE_URL`).
fn pooler_url() -> Option<String> {
    std::env::var("JOURNEYMAP_TEST_POOLER_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// The direct connection to test database `database_url` for LISTEN, when
/// the tests go through a pooler ([`pooler_url`]).
pub fn listen_url_for(database_url: &str) -> Option<String> {
    pooler_url()?;
    let direct = std::env::var("JOURNEYMAP_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())?;
    if !database_url.starts_with("postgres") {
        return None;
    }
    let name = database_url
        .split('?')
        .next()?
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())?;
    Some(with_database(&direct, name))
}

/// Creates a fresh database named `name` on the test server; fails loudly
/// when the server cannot be reached.
async fn create_postgres_database(server: &str, name: &str) -> String {
    let url = with_database(server, name);
    if let Err(error) = journeymap::db::ensure_postgres_database(&url).await {
        panic!(
            "cannot create a test database on the PostgreSQL server at {} ({error:#}); \
             is it running? (pg_ctlcluster <version> main start)",
            journeymap::db::redact(server)
        );
    }
    url
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let root = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Starts a server with `options`.
pub async fn spawn_with(backend: Backend, options: Options) -> TestApp {
    let _ = tracing_init();
    let (database_url, dir, postgres) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("journeymap.db").display()
            );
            (url, Some(dir), None)
        }
        Backend::Postgres => {
            let server = postgres_url();
            let name = format!("jmt_{}", uuid::Uuid::new_v4().simple());
            let url = create_postgres_database(&server, &name).await;
            (url, None, Some((server, name)))
        }
    };
    let mut database = DatabaseConfig::new(database_url.clone());
    database.db_max_connections = 8;
    database.listen_database_url = listen_url_for(&database_url);
    let app = App::build(&database, options.config)
        .await
        .expect("build the app");
    let store = app.store().clone();
    let clinic = clinics::create(&store.db, "Clinic A", "a", "America/New_York")
        .await
        .expect("clinic a");
    let (_, token) = clinics::create_token(&store.db, clinic.id, "test", &Permission::ALL, None)
        .await
        .expect("token a");
    let server = app.start().await.expect("start the server");
    let addr = server.addr();
    TestApp {
        backend,
        addr,
        url: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client"),
        token,
        store,
        database_url,
        server: Some(server),
        _dir: dir,
        postgres,
    }
}

fn tracing_init() -> Option<()> {
    if std::env::var("TEST_LOG").is_ok() {
        journeymap::telemetry::init(journeymap::config::LogFormat::Text);
    }
    Some(())
}

/// A GraphQL response as the client sees it.
#[derive(Debug, Clone)]
pub struct Gql {
    pub status: StatusCode,
    pub body: Value,
}

impl Gql {
    /// `data`, after asserting there are no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            serde_json::to_string_pretty(&self.body).unwrap()
        );
        &self.body["data"]
    }

    /// The errors (empty when none).
    pub fn errors(&self) -> Vec<Value> {
        self.body["errors"].as_array().cloned().unwrap_or_default()
    }

    /// The `extensions.code` of the first error.
    pub fn code(&self) -> Option<String> {
        self.errors()
            .first()
            .and_then(|e| e["extensions"]["code"].as_str())
            .map(str::to_string)
    }

    /// The `extensions.field` of the first error.
    pub fn field(&self) -> Option<String> {
        self.errors()
            .first()
            .and_then(|e| e["extensions"]["field"].as_str())
            .map(str::to_string)
    }

    /// Asserts the response carries errors and that *every* one of them has
    /// `code` (and `field`, when given) and a message. A response that mixes
    /// codes fails here: such a test must say which error it expects where.
    #[track_caller]
    pub fn assert_error(&self, code: &str, field: Option<&str>) {
        let pretty = serde_json::to_string_pretty(&self.body).unwrap();
        let errors = self.errors();
        assert!(
            !errors.is_empty(),
            "expected {code}, got no errors: {pretty}"
        );
        for error in &errors {
            assert_eq!(
                error["extensions"]["code"].as_str(),
                Some(code),
                "expected every error to be {code} in {pretty}"
            );
            if let Some(field) = field {
                assert_eq!(
                    error["extensions"]["field"].as_str(),
                    Some(field),
                    "expected every error to name field {field} in {pretty}"
                );
            }
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| !m.trim().is_empty()),
                "an error without a message in {pretty}"
            );
        }
    }
}

impl TestApp {
    /// Runs a GraphQL operation with clinic "a"'s token.
    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.gql_as(Some(&self.token), query, variables).await
    }

    /// Runs a GraphQL operation with `token` (or none).
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        Gql { status, body }
    }

    /// Creates another clinic with a full-scope token; returns the token.
    pub async fn clinic(&self, slug: &str) -> String {
        let clinic = clinics::create(
            &self.store.db,
            &format!("Clinic {slug}"),
            slug,
            "Europe/London",
        )
        .await
        .expect("clinic");
        clinics::create_token(&self.store.db, clinic.id, "test", &Permission::ALL, None)
            .await
            .expect("token")
            .1
    }

    /// A token of clinic "a" with only `permissions`.
    pub async fn token_with(&self, permissions: &[Permission]) -> String {
        let clinic = clinics::by_slug(&self.store.db, "a")
            .await
            .unwrap()
            .unwrap();
        clinics::create_token(&self.store.db, clinic.id, "scoped", permissions, None)
            .await
            .expect("token")
            .1
    }

    /// Creates a staff member of clinic `slug` with `role` and a known password;
    /// returns (email, password).
    pub async fn staff_in(&self, slug: &str, role: Role) -> (String, String) {
        let clinic = clinics::by_slug(&self.store.db, slug)
            .await
            .unwrap()
            .expect("clinic");
        let email = format!(
            "{}-{}@{slug}.example",
            role.as_str().to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let password = "correct horse battery staple".to_string();
        journeymap::domain::staff::create_from_cli(
            &self.store,
            clinic.id,
            journeymap::domain::staff::NewStaff {
                email: email.clone(),
                name: format!("{} of {slug}", role.as_str()),
                role,
                password: Some(password.clone()),
            },
        )
        .await
        .expect("staff");
        (email, password)
    }

    /// Signs in through the API; returns the whole `login` payload.
    pub async fn login(&self, clinic: &str, email: &str, password: &str) -> Gql {
        self.gql_as(
            None,
            "mutation($input: LoginInput!) { login(input: $input) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt staff { id role } } }",
            json!({ "input": { "clinic": clinic, "email": email, "password": password } }),
        )
        .await
    }

    /// A signed-in staff member of clinic "a" with `role`: their access token.
    pub async fn staff_token(&self, role: Role) -> String {
        let (email, password) = self.staff_in("a", role).await;
        let signed_in = self.login("a", &email, &password).await;
        signed_in.data()["login"]["accessToken"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// SQL statements the server has executed for requests so far (from `/metrics`).
    pub async fn statements(&self) -> u64 {
        self.counter("journeymap_db_statements_total").await
    }

    /// SQL statements the server's read-audit writer has executed so far
    /// (from `/metrics`); they run after the responses they belong to.
    pub async fn audit_statements(&self) -> u64 {
        self.counter("journeymap_db_audit_statements_total").await
    }

    /// The value of the counter `name` in `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
    }

    /// Rows in every table a client can write, to prove a refused request
    /// wrote nothing.
    pub async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        use journeymap::sea_orm::{ConnectionTrait, Statement};
        let mut counts = Vec::new();
        for table in [
            "patients",
            "pathways",
            "stages",
            "follow_up_rules",
            "journeys",
            "stage_transitions",
            "touchpoints",
            "feedback",
            "follow_ups",
            "consents",
            "outreach_templates",
            "events",
        ] {
            let row = self
                .store
                .db
                .conn()
                .query_one_raw(Statement::from_string(
                    self.store.db.backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await
                .expect("count")
                .expect("a row");
            counts.push((table, row.try_get::<i64>("", "n").expect("n")));
        }
        counts
    }

    /// Another connection pool to the test's database, as a second replica would have.
    pub async fn second_store(&self) -> Store {
        let db = Db::connect(&DatabaseConfig::new(self.database_url.clone()))
            .await
            .expect("second pool");
        Store::new(db)
    }

    /// The database, for checks a client cannot make.
    pub fn db(&self) -> &Db {
        &self.store.db
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let server = self.server.take();
        let postgres = self.postgres.take();
        // The server task ends with the test's runtime.
        drop(server);
        if let Some((server_url, name)) = postgres {
            // Drop the test database from a runtime of its own.
            drop_postgres_database(server_url, name);
        }
    }
}

/// Ids of the standard test pathway ("Injectables": inquiry → consultation →
/// treatment → discharged) and its stages, by key.
#[derive(Debug, Clone)]
pub struct PathwayIds {
    pub id: String,
    pub inquiry: String,
    pub consultation: String,
    pub treatment: String,
    pub discharged: String,
}

/// The standard test pathway: inquiry (24 h target, phone call-back after 2 h,
/// cancelled on exit), consultation (72 h target, SMS after 48 h), treatment
/// (aftercare SMS after 48 h, kept on exit), discharged (terminal).
pub const CREATE_PATHWAY: &str = r#"
mutation($name: String!) {
  createPathway(input: {
    name: $name,
    stages: [
      { key: "inquiry", name: "New inquiry", category: INQUIRY, targetHours: 24,
        followUpRules: [{ delayHours: 2, channel: PHONE, note: "Call back" }] },
      { key: "consultation", name: "Consultation", category: CONSULTATION, targetHours: 72,
        followUpRules: [{ delayHours: 48, channel: SMS, note: "Quote check-in" }] },
      { key: "treatment", name: "Treatment", category: TREATMENT,
        followUpRules: [{ delayHours: 48, channel: SMS, note: "Aftercare", cancelOnStageExit: false }] },
      { key: "discharged", name: "Discharged", category: DISCHARGED, terminal: true }
    ]
  }) { pathway { id stages { id key } } }
}"#;

impl PathwayIds {
    /// The ids in a `createPathway` answer's `data` of [`CREATE_PATHWAY`].
    fn of(data: &Value) -> Self {
        let pathway = &data["createPathway"]["pathway"];
        assert!(pathway.is_object(), "createPathway: {data}");
        let stage = |key: &str| {
            pathway["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["key"] == key)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        PathwayIds {
            id: pathway["id"].as_str().unwrap().to_string(),
            inquiry: stage("inquiry"),
            consultation: stage("consultation"),
            treatment: stage("treatment"),
            discharged: stage("discharged"),
        }
    }

    /// The id of the stage with `key`.
    pub fn stage(&self, key: &str) -> &str {
        match key {
            "inquiry" => &self.inquiry,
            "consultation" => &self.consultation,
            "treatment" => &self.treatment,
            "discharged" => &self.discharged,
            other => panic!("the test pathway has no stage {other:?}"),
        }
    }
}

/// Creates the standard test pathway on the server at `url` (a
/// [`ServerProcess`]'s).
pub async fn pathway_at(url: &str, token: &str, name: &str) -> PathwayIds {
    PathwayIds::of(&gql_at(url, token, CREATE_PATHWAY, json!({ "name": name })).await["data"])
}

/// Creates a patient on the server at `url` and starts their journey on
/// `pathway`: (patient, journey).
pub async fn journey_at(
    url: &str,
    token: &str,
    pathway: &str,
    given_name: &str,
    family_name: &str,
) -> (String, String) {
    let created = gql_at(
        url,
        token,
        "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
        json!({ "input": { "givenName": given_name, "familyName": family_name } }),
    )
    .await;
    let patient = created["data"]["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let started = gql_at(
        url,
        token,
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway } }),
    )
    .await;
    let journey = started["data"]["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    (patient, journey)
}

impl TestApp {
    /// Creates the standard test pathway in the token's clinic.
    pub async fn pathway_as(&self, token: &str, name: &str) -> PathwayIds {
        let created = self
            .gql_as(Some(token), CREATE_PATHWAY, json!({ "name": name }))
            .await;
        PathwayIds::of(created.data())
    }

    /// Creates the standard test pathway in clinic "a".
    pub async fn pathway(&self) -> PathwayIds {
        self.pathway_as(&self.token, "Injectables").await
    }

    /// Creates a patient with an email address and a phone number (so calls
    /// and emails about their care may be made; texts need consent) in the
    /// token's clinic; returns its id.
    pub async fn patient_as(&self, token: &str, given_name: &str) -> String {
        let created = self
            .gql_as(
                Some(token),
                "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
                json!({ "input": {
                    "givenName": given_name,
                    "familyName": "Test",
                    "email": format!("{}@example.com", given_name.to_lowercase()),
                    "phone": "+14155550123",
                } }),
            )
            .await;
        created.data()["createPatient"]["patient"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a patient in clinic "a".
    pub async fn patient(&self, given_name: &str) -> String {
        self.patient_as(&self.token, given_name).await
    }

    /// Starts a journey; returns its id.
    pub async fn start_journey_as(&self, token: &str, patient: &str, pathway: &str) -> String {
        let started = self
            .gql_as(
                Some(token),
                "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
                json!({ "input": { "patientId": patient, "pathwayId": pathway } }),
            )
            .await;
        started.data()["startJourney"]["journey"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Starts a journey in clinic "a".
    pub async fn start_journey(&self, patient: &str, pathway: &str) -> String {
        self.start_journey_as(&self.token, patient, pathway).await
    }
}

/// Runs each named scenario on SQLite and on PostgreSQL, as two tests
/// `name::sqlite` and `name::postgres`.
///
/// - `on_both_backends!(a, b => options)`: `async fn a(app: TestApp)` gets a
///   server started with default [`Options`]; `b` one started with the
///   options `fn options() -> Options` (a function beside the scenario) returns.
/// - `on_both_backends!(backend: c)`: `async fn c(backend: Backend)` starts
///   what it needs itself (server processes, several replicas).
///
/// The PostgreSQL twin is ignored unless the suite was built with
/// `JOURNEYMAP_TEST_DATABASE_URL` or `CI` set, and then fails without a server.
#[macro_export]
macro_rules! on_both_backends {
    (backend: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(journeymap_postgres_tests),
                ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
            )]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await;
            }
        }
    )*};
    // Scenarios driving a real browser: they need Chromium, so where it is
    // not installed (and this is not CI) they are reported as ignored.
    (browser: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(journeymap_browser_tests),
                ignore = "needs Chromium: apt-get install chromium (.ci/run installs it)"
            )]
            async fn sqlite() {
                let app = $crate::spawn_with($crate::Backend::Sqlite, $crate::Options::default()).await;
                super::$name(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                any(not(journeymap_postgres_tests), not(journeymap_browser_tests)),
                ignore = "needs Chromium and JOURNEYMAP_TEST_DATABASE_URL"
            )]
            async fn postgres() {
                let app = $crate::spawn_with($crate::Backend::Postgres, $crate::Options::default()).await;
                super::$name(app).await;
            }
        }
    )*};
    ($($name:ident $(=> $options:ident)?),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::spawn_with(
                    $crate::Backend::Sqlite,
                    $crate::__scenario_options!($($options)?),
                )
                .await;
                super::$name(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(journeymap_postgres_tests),
                ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
            )]
            async fn postgres() {
                let app = $crate::spawn_with(
                    $crate::Backend::Postgres,
                    $crate::__scenario_options!($($options)?),
                )
                .await;
                super::$name(app).await;
            }
        }
    )*};
}

/// The options of a scenario in [`on_both_backends!`]: the defaults, or what
/// the named function beside the scenario returns.
#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_options {
    () => {
        $crate::Options::default()
    };
    ($options:ident) => {
        super::$options()
    };
}

/// A `graphql-transport-ws` client for tests.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What the server said on a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Message(Value),
    Closed(Option<u16>, String),
}

impl WsClient {
    /// Opens `/graphql/ws` with the `graphql-transport-ws` subprotocol (or `protocol`).
    pub async fn connect(app: &TestApp, protocol: Option<&str>) -> Self {
        Self::connect_to(app.addr, protocol).await
    }

    /// Opens `/graphql/ws` on the server at `addr`.
    pub async fn connect_to(addr: SocketAddr, protocol: Option<&str>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        if let Some(protocol) = protocol
            .or(Some("graphql-transport-ws"))
            .filter(|p| !p.is_empty())
        {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocol.parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket");
        Self { socket }
    }

    /// Connects and completes `connection_init` with `token`.
    pub async fn connect_with_token(app: &TestApp, token: &str) -> Self {
        Self::connect_to_with_token(app.addr, token).await
    }

    /// Connects to the server at `addr` and completes `connection_init` with `token`.
    pub async fn connect_to_with_token(addr: SocketAddr, token: &str) -> Self {
        let mut client = Self::connect_to(addr, None).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        match client.next().await {
            WsEvent::Message(m) if m["type"] == "connection_ack" => client,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    /// Connects to `addr` and completes `connection_init`, or `None` when the
    /// server is not there (down, or shutting down).
    pub async fn try_connect_to_with_token(addr: SocketAddr, token: &str) -> Option<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{addr}/graphql/ws"),
            )
            .map(|mut request| {
                request.headers_mut().insert(
                    "sec-websocket-protocol",
                    "graphql-transport-ws".parse().unwrap(),
                );
                request
            })
            .ok()?,
        )
        .await
        .ok()?;
        let mut client = Self { socket };
        use futures::SinkExt;
        let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
        client
            .socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                init.to_string().into(),
            ))
            .await
            .ok()?;
        match client.next_within(Duration::from_secs(10)).await {
            Some(WsEvent::Message(m)) if m["type"] == "connection_ack" => Some(client),
            _ => None,
        }
    }

    pub async fn send(&mut self, message: Value) {
        use futures::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                message.to_string().into(),
            ))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, text: &str) {
        use futures::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                text.to_string().into(),
            ))
            .await
            .expect("send");
    }

    /// The next message or close, within 10 seconds.
    pub async fn next(&mut self) -> WsEvent {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a message within 10 s")
    }

    /// The next message or close within `wait`, or `None`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<WsEvent> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let message = match tokio::time::timeout(wait, self.socket.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(WsEvent::Closed(None, String::new())),
                Ok(Some(Err(_))) => return Some(WsEvent::Closed(None, String::new())),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    return Some(WsEvent::Message(serde_json::from_str(&text).expect("JSON")));
                }
                Message::Close(frame) => {
                    return Some(WsEvent::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ));
                }
                _ => continue,
            }
        }
    }

    /// Starts an operation.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next `next` payload of operation `id`, skipping other operations' messages.
    pub async fn next_of(&mut self, id: &str) -> Value {
        loop {
            match self.next().await {
                WsEvent::Message(m) if m["id"] == id && m["type"] == "next" => {
                    return m["payload"].clone();
                }
                WsEvent::Message(m) if m["id"] == id => panic!("expected next for {id}, got {m}"),
                WsEvent::Message(_) => continue,
                WsEvent::Closed(code, reason) => panic!("closed {code:?} {reason}"),
            }
        }
    }
}

/// Proves that the stage-change subscription `operation` of every client is
/// live. graphql-transport-ws has no acknowledgement of `subscribe`, and an
/// event committed before the subscription is live is (rightly) never sent
/// to it; so rather than sleeping and hoping, this moves `journey` back and
/// forth between `stages` (on the server at `url`, with `token`) until every
/// client has heard the latest move, reading past any earlier warm-up moves.
/// The operation must select `journey { id version }`, and the journey must
/// have no other activity meanwhile. Returns the journey's version after the
/// last warm-up move.
pub async fn warm_up(
    url: &str,
    token: &str,
    clients: &mut [&mut WsClient],
    operation: &str,
    journey: &str,
    stages: [&str; 2],
) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut heard = vec![0i64; clients.len()];
    // Start with whichever of the two stages the journey is not in.
    let current = gql_at(
        url,
        token,
        "query($id: ID!) { journey(id: $id) { currentStage { id } } }",
        json!({ "id": journey }),
    )
    .await;
    let first = usize::from(current["data"]["journey"]["currentStage"]["id"] == stages[0]);
    for step in first.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription {operation} never went live (warm-up moves of {journey} unheard)"
        );
        let moved = gql_at(
            url,
            token,
            "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
            json!({ "input": { "journeyId": journey, "stageId": stages[step % 2] } }),
        )
        .await;
        let version = moved["data"]["moveJourneyToStage"]["journey"]["version"]
            .as_i64()
            .unwrap_or_else(|| panic!("warm-up move: {moved}"));
        for (client, heard) in clients.iter_mut().zip(heard.iter_mut()) {
            while *heard < version {
                let Some(event) = client.next_within(WARM_UP_STEP).await else {
                    break;
                };
                let payload = match event {
                    WsEvent::Message(m) if m["id"] == operation && m["type"] == "next" => {
                        m["payload"].clone()
                    }
                    other => panic!("during the warm-up of {operation}: {other:?}"),
                };
                let event = &payload["data"]["journeyStageChanged"]["journey"];
                assert_eq!(
                    event["id"], journey,
                    "an event other than the warm-up's during the warm-up: {payload}"
                );
                *heard = event["version"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("select journey {{ version }}: {payload}"));
            }
        }
        if heard.iter().all(|h| *h == version) {
            return version;
        }
    }
    unreachable!()
}

/// The `journeymap` command as a separate process, on a database of a test's
/// (for tests that kill it, or run several replicas).
pub struct ServerProcess {
    child: tokio::process::Child,
    pub url: String,
    pub addr: SocketAddr,
    logs: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

impl ServerProcess {
    /// Starts `journeymap serve` on `database_url` with extra arguments and
    /// waits until it is ready. `binary` is `env!("CARGO_BIN_EXE_journeymap-under-test")`.
    /// Its log goes to the test's stderr (at `TEST_SERVER_LOG`, default `warn`).
    pub async fn start(binary: &str, database_url: &str, extra: &[&str]) -> Self {
        let filter = std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into());
        Self::spawn(binary, database_url, extra, &filter, false).await
    }

    /// Like [`ServerProcess::start`], keeping every line the server logs (at
    /// `filter`, a `RUST_LOG` value) for [`ServerProcess::logs`].
    pub async fn start_logged(
        binary: &str,
        database_url: &str,
        extra: &[&str],
        filter: &str,
    ) -> Self {
        Self::spawn(binary, database_url, extra, filter, true).await
    }

    /// The lines the server has logged so far (see [`ServerProcess::start_logged`]).
    pub fn logs(&self) -> Vec<String> {
        self.logs
            .as_ref()
            .map(|logs| logs.lock().expect("logs").clone())
            .unwrap_or_default()
    }

    async fn spawn(
        binary: &str,
        database_url: &str,
        extra: &[&str],
        filter: &str,
        keep_logs: bool,
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .args(extra)
            .env("RUST_LOG", filter)
            .env(
                "JOURNEYMAP_LISTEN_DATABASE_URL",
                listen_url_for(database_url).unwrap_or_default(),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(if keep_logs {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::inherit()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start the server process");
        let logs = child.stderr.take().map(|stderr| {
            let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let kept = logs.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.lock().expect("logs").push(line);
                }
            });
            logs
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("Journeymap is serving at ") {
                    return rest.trim().trim_end_matches("/graphql").to_string();
                }
            }
            panic!("the server process exited before serving");
        })
        .await
        .expect("the server process serves within 60 s");
        // Keep draining stdout so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = url.trim_start_matches("http://").parse().expect("address");
        Self {
            child,
            url,
            addr,
            logs,
        }
    }

    /// Sends SIGTERM, as an orchestrator does before a restart.
    pub fn terminate(&self) {
        use nix::{
            sys::signal::{Signal, kill},
            unistd::Pid,
        };
        let pid = self.child.id().expect("the server process is running");
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM");
    }

    /// How the process exited, once it has within `wait` (`None` if it is
    /// still running then).
    pub async fn exited_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(wait, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("wait for the server process"))
    }

    /// Kills the process at once (SIGKILL): no graceful shutdown.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// A fresh database for process tests: (URL, guard).
pub async fn fresh_database(backend: Backend) -> (String, DatabaseGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("journeymap.db").display()
            );
            (
                url,
                DatabaseGuard {
                    _dir: Some(dir),
                    postgres: None,
                },
            )
        }
        Backend::Postgres => {
            let server = postgres_url();
            let name = format!("jmt_{}", uuid::Uuid::new_v4().simple());
            let url = create_postgres_database(&server, &name).await;
            (
                url,
                DatabaseGuard {
                    _dir: None,
                    postgres: Some((server, name)),
                },
            )
        }
    }
}

/// Drops a process test's database when the test ends.
pub struct DatabaseGuard {
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        if let Some((server_url, name)) = self.postgres.take() {
            drop_postgres_database(server_url, name);
        }
    }
}

fn drop_postgres_database(server_url: String, name: String) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async move {
            use journeymap::sea_orm::sqlx::{Connection, PgConnection};
            let mut conn = PgConnection::connect(&with_database(&server_url, "postgres"))
                .await
                .ok()?;
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            journeymap::sea_orm::sqlx::raw_sql(journeymap::sea_orm::sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .ok()?;
            Some(())
        })
    })
    .join();
}

/// Prepares a database for process tests: migrated, with clinic "a" and a
/// full-scope token, which it returns.
pub async fn prepare_database(database_url: &str) -> String {
    let db = Db::connect(&DatabaseConfig::new(database_url.to_string()))
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    let clinic = clinics::create(&db, "Clinic A", "a", "America/New_York")
        .await
        .expect("clinic");
    let (_, token) = clinics::create_token(&db, clinic.id, "test", &Permission::ALL, None)
        .await
        .expect("token");
    db.close().await;
    token
}

/// Opens the database at `url` (a process test's, to check what the server
/// wrote).
pub async fn open_database(url: &str) -> Db {
    Db::connect(&DatabaseConfig::new(url.to_string()))
        .await
        .expect("connect")
}

/// The value `sql` answers (one row, one column) on `db`.
pub async fn scalar<T: journeymap::sea_orm::TryGetable>(db: &Db, sql: &str) -> T {
    use journeymap::sea_orm::ConnectionTrait;
    db.conn()
        .query_one_raw(journeymap::sea_orm::Statement::from_string(
            db.backend(),
            sql,
        ))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index::<T>(0)
        .expect("a value of the expected type")
}

/// The integer `sql` answers (one row, one column) on `db`.
pub async fn scalar_i64(db: &Db, sql: &str) -> i64 {
    scalar(db, sql).await
}

/// Adds the event number a reader of the log just saw to those it saw
/// before, asserting it is the next one: a reader never sees a number before
/// the numbers below it.
pub fn saw_next(seen: &mut Vec<i64>, sequence: i64) {
    let expected = seen.last().map_or(1, |last| last + 1);
    assert_eq!(
        sequence,
        expected,
        "the reader saw {sequence} right after {:?}",
        seen.last()
    );
    seen.push(sequence);
}

/// A GraphQL call to any server URL.
pub async fn gql_at(url: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}
