//! Webhooks and idempotency keys: signed, thin deliveries to a real receiver
//! on 127.0.0.1; retries with the same `webhook-id`; 410, 429/503 and
//! repeated exhaustion; secret rotation; test messages and redelivery;
//! endpoint management and its permissions; refusal of private targets; and
//! `Idempotency-Key` on mutations.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use journeymap::{auth::Permission, sea_orm::ConnectionTrait, webhooks::signing};
use journeymap_tests::{Options, QUIET, TestApp, on_both_backends};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

on_both_backends! {
    deliveries_are_signed_thin_and_filtered => fast_retries,
    private_targets_are_refused => default_options,
    failed_attempts_are_retried_with_the_same_webhook_id => fast_retries,
    exhausted_deliveries_fail_and_disable_the_endpoint => fast_retries,
    gone_disables_the_endpoint_at_once => fast_retries,
    retry_after_delays_the_next_attempt => fast_retries,
    rotated_secrets_sign_alongside_the_new_one => fast_retries,
    test_messages_and_redelivery => fast_retries,
    endpoints_are_managed_per_clinic_with_permission => fast_retries,
    idempotency_keys_replay_mutations_once => default_options,
    receivers_that_do_not_answer_in_time_are_retried => one_second_receivers,
    a_server_with_webhook_concurrency_0_delivers_nothing => not_delivering,
    private_targets_are_refused_at_delivery_time => strict_fast_retries,
    accepted_deliveries_settled_together_keep_their_own_attempts => fast_retries,
}

/// Receivers on 127.0.0.1 get one second to answer.
fn one_second_receivers() -> Options {
    let mut options = fast_retries();
    options.config.webhook_timeout_secs = 1;
    options
}

/// This server does not deliver (`--webhook-concurrency 0`).
fn not_delivering() -> Options {
    let mut options = fast_retries();
    options.config.webhook_concurrency = 0;
    options
}

/// Private targets refused (the default), quick retries.
fn strict_fast_retries() -> Options {
    let mut options = Options::default();
    options.config.webhook_retry_schedule = "0,0.2,0.2,0.2".into();
    options
}

const SERVER: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

/// The server's defaults: private webhook targets refused.
fn default_options() -> Options {
    Options::default()
}

/// Receivers on 127.0.0.1, and a retry schedule of four quick attempts.
fn fast_retries() -> Options {
    let mut options = Options::default();
    options.config.allow_private_webhook_targets = true;
    options.config.webhook_retry_schedule = "0,0.2,0.2,0.2".into();
    options
}

/// Attempts per delivery under [`fast_retries`].
const ATTEMPTS: usize = 4;

/// How long to wait for something asynchronous before failing.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The receiver: a minimal HTTP/1.1 server that records every request and
// answers as its script says.

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn id(&self) -> &str {
        self.header("webhook-id").unwrap_or_default()
    }

    fn timestamp(&self) -> i64 {
        self.header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .expect("a numeric webhook-timestamp")
    }

    fn signature(&self) -> &str {
        self.header("webhook-signature").unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }

    /// True when the `webhook-signature` header verifies with `secret`.
    fn verifies(&self, secret: &str) -> bool {
        signing::verify(
            secret,
            self.id(),
            self.timestamp(),
            &self.body,
            self.signature(),
        )
    }

    /// True when the single signature `part` verifies with `secret`.
    fn part_verifies(&self, secret: &str, part: &str) -> bool {
        signing::verify(secret, self.id(), self.timestamp(), &self.body, part)
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// The receiver's script: the request, and which attempt of its `webhook-id`
/// this is (1 for the first).
type Script = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver answering as `script` says.
    async fn start(script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let addr = listener.local_addr().expect("receiver address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Arc::new(script)));
        let task = tokio::spawn({
            let (log, script) = (log.clone(), script.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, script) = (log.clone(), script.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, log, script).await;
                    });
                }
            }
        });
        Self {
            url: format!("http://{addr}/hooks"),
            log,
            script,
            task,
        }
    }

    /// A receiver that accepts everything with 200.
    async fn accepting() -> Self {
        Self::start(|_, _| Reply::status(200)).await
    }

    fn set_script(&self, script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.received();
            if done(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what}; received: {:#?}",
                summary(&log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for at least `n` requests.
    async fn wait_count(&self, n: usize) -> Vec<Received> {
        self.wait_for(&format!("{n} request(s)"), |log| log.len() >= n)
            .await
    }

    /// Asserts that nothing more arrives within [`QUIET`]: `expected`
    /// requests in all once it has passed.
    async fn assert_quiet(&self, expected: usize) {
        tokio::time::sleep(QUIET).await;
        self.assert_received(expected);
    }

    /// Asserts `expected` requests in all, now.
    #[track_caller]
    fn assert_received(&self, expected: usize) {
        let log = self.received();
        assert_eq!(
            log.len(),
            expected,
            "expected {expected} request(s) in all, got {:#?}",
            summary(&log)
        );
    }
}

fn summary(log: &[Received]) -> Vec<String> {
    log.iter()
        .map(|r| {
            format!(
                "{} {} id={} type={}",
                r.method,
                r.path,
                r.id(),
                serde_json::from_slice::<Value>(&r.body)
                    .map(|b| b["type"].to_string())
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Serves one request on a connection, then closes it.
async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let script = script.lock().unwrap().clone();
    let attempt = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.iter().filter(|r| r.id() == request.id()).count()
    };
    let reply = script(&request, attempt);
    let mut head = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\nok");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Received>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "the test receiver reads Content-Length bodies only"
    );
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Received {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
    }))
}

// ---------------------------------------------------------------------------
// GraphQL helpers.

const CREATE_ENDPOINT: &str = r#"mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    secret
    endpoint { id url description eventTypes includePhi enabled disabledReason previousSecretExpiresAt createdAt }
  }
}"#;

const UPDATE_ENDPOINT: &str = r#"mutation($input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(input: $input) {
    endpoint { id url description eventTypes includePhi enabled disabledReason }
  }
}"#;

const DELETE_ENDPOINT: &str = r#"mutation($input: WebhookEndpointInput!) {
  deleteWebhookEndpoint(input: $input) { deletedEndpointId }
}"#;

const ROTATE_SECRET: &str = r#"mutation($input: RotateWebhookSecretInput!) {
  rotateWebhookSecret(input: $input) { secret endpoint { id previousSecretExpiresAt } }
}"#;

const SEND_TEST: &str = r#"mutation($input: WebhookEndpointInput!) {
  sendTestWebhook(input: $input) { delivery { id webhookId eventType status endpoint { id } } }
}"#;

const REDELIVER: &str = r#"mutation($input: RedeliverWebhookInput!) {
  redeliverWebhook(input: $input) { delivery { id webhookId eventType status } }
}"#;

const ENDPOINTS: &str = r#"query {
  webhookEndpoints { id url description eventTypes includePhi enabled disabledReason previousSecretExpiresAt }
}"#;

const DELIVERIES: &str = r#"query($endpointId: ID, $status: WebhookDeliveryStatus) {
  webhookDeliveries(endpointId: $endpointId, status: $status, first: 50) {
    totalCount
    edges { node {
      id webhookId eventType status attemptCount nextAttemptAt deliveredAt createdAt
      attempts { attemptedAt statusCode latencyMs error }
      endpoint { id }
    } }
  }
}"#;

const EVENTS: &str = r#"query($types: [String!]) {
  events(first: 100, types: $types) {
    edges { node { id type sequence occurredAt subject data } }
  }
}"#;

const MOVE: &str = r#"mutation($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) { journey { id } }
}"#;

const CREATE_PATIENT: &str = r#"mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id } }
}"#;

struct Endpoint {
    id: String,
    secret: String,
}

async fn create_endpoint(app: &TestApp, url: &str, types: &[&str], include_phi: bool) -> Endpoint {
    let created = app
        .gql(
            CREATE_ENDPOINT,
            json!({ "input": { "url": url, "eventTypes": types, "includePhi": include_phi } }),
        )
        .await;
    let payload = &created.data()["createWebhookEndpoint"];
    let secret = payload["secret"].as_str().expect("a secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    Endpoint {
        id: payload["endpoint"]["id"].as_str().unwrap().to_string(),
        secret,
    }
}

async fn endpoints(app: &TestApp) -> Vec<Value> {
    app.gql(ENDPOINTS, json!({})).await.data()["webhookEndpoints"]
        .as_array()
        .unwrap()
        .clone()
}

async fn endpoint(app: &TestApp, id: &str) -> Value {
    endpoints(app)
        .await
        .into_iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("endpoint {id} is listed"))
}

/// The endpoint's deliveries, newest first.
async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let found = app.gql(DELIVERIES, json!({ "endpointId": endpoint })).await;
    found.data()["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// Waits until the endpoint has `n` deliveries and none is pending; returns
/// them, newest first.
async fn settled_deliveries(app: &TestApp, endpoint: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = deliveries(app, endpoint).await;
        if found.len() == n && found.iter().all(|d| d["status"] != "PENDING") {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {n} settled deliveries; have {}",
            serde_json::to_string_pretty(&found).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `done` holds for the endpoint as `webhookEndpoints` shows it.
async fn endpoint_when(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = endpoint(app, id).await;
        if done(&found) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for the endpoint to be {what}: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_of(app: &TestApp, types: Option<&[&str]>) -> Vec<Value> {
    app.gql(EVENTS, json!({ "types": types })).await.data()["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// `webhook_endpoints.exhausted_deliveries` of an endpoint (a check a
/// client cannot make, for failure messages).
async fn exhausted_count(app: &TestApp, endpoint: &str) -> i64 {
    use journeymap::sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .db()
        .conn()
        .query_all_raw(Statement::from_string(
            app.db().backend(),
            "SELECT id, exhausted_deliveries AS n FROM webhook_endpoints".to_string(),
        ))
        .await
        .expect("endpoints");
    let uuid = journeymap::ids::decode_as(journeymap::ids::IdKind::WebhookEndpoint, endpoint)
        .expect("an endpoint id");
    rows.iter()
        .find(|row| row.try_get::<uuid::Uuid>("", "id").ok() == Some(uuid))
        .map(|row| i64::from(row.try_get::<i32>("", "n").expect("n")))
        .unwrap_or(-1)
}

fn status_codes(delivery: &Value) -> Vec<Value> {
    delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].clone())
        .collect()
}

async fn new_patient(app: &TestApp, token: &str, given_name: &str) -> String {
    app.patient_as(token, given_name).await
}

fn without(permission: Permission) -> Vec<Permission> {
    Permission::ALL
        .into_iter()
        .filter(|p| *p != permission)
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Delivery, signature, envelope, thin payloads, type filters, PHI opt-in.

async fn deliveries_are_signed_thin_and_filtered(app: TestApp) {
    let stage_rx = Receiver::accepting().await;
    let phi_rx = Receiver::accepting().await;
    let all_rx = Receiver::accepting().await;
    let thin = create_endpoint(&app, &stage_rx.url, &["journey.stage_changed"], false).await;
    let phi = create_endpoint(&app, &phi_rx.url, &["journey.stage_changed"], true).await;
    let all = create_endpoint(&app, &all_rx.url, &[], false).await;
    assert_ne!(
        thin.secret, phi.secret,
        "every endpoint gets its own secret"
    );
    let listed = endpoint(&app, &thin.id).await;
    assert_eq!(listed["url"], stage_rx.url.as_str());
    assert_eq!(listed["eventTypes"], json!(["journey.stage_changed"]));
    assert_eq!(listed["includePhi"], false);
    assert_eq!(listed["enabled"], true);
    assert!(listed["disabledReason"].is_null());
    assert_eq!(endpoint(&app, &phi.id).await["includePhi"], true);
    assert_eq!(endpoint(&app, &all.id).await["eventTypes"], json!([]));

    let pathway = app.pathway().await;
    let patient = app
        .gql(
            CREATE_PATIENT,
            json!({ "input": { "givenName": "Hanalei", "familyName": "Kowalczyk",
                               "email": "hanalei.k@example.com", "phone": "+1 415 555 0177" } }),
        )
        .await
        .data()["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let journey = app.start_journey(&patient, &pathway.id).await;
    app.gql(
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation,
                           "note": "Mentioned her divorce and anxiety" } }),
    )
    .await
    .data();

    let received = stage_rx.wait_count(1).await;
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks");
    assert!(
        request
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        request.headers
    );

    // webhook-id: the event's id, in the body and in `events`.
    let changed = events_of(&app, Some(&["journey.stage_changed"])).await;
    assert_eq!(changed.len(), 1);
    let event = &changed[0];
    let event_id = event["id"].as_str().unwrap();
    assert!(event_id.starts_with("evt_"), "{event_id}");
    assert_eq!(request.id(), event_id);
    let body = request.json();
    assert_eq!(body["id"], event_id);

    // The envelope, exactly.
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("an object body")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "type", "sequence", "occurredAt", "clinicId", "data"]),
        "{body}"
    );
    assert_eq!(body["type"], "journey.stage_changed");
    assert_eq!(body["sequence"], event["sequence"]);
    let clinic = app
        .gql("query { viewer { clinic { id } } }", json!({}))
        .await
        .data()["viewer"]["clinic"]["id"]
        .clone();
    assert_eq!(body["clinicId"], clinic);
    let sent_at = chrono::DateTime::parse_from_rfc3339(body["occurredAt"].as_str().unwrap())
        .expect("occurredAt is RFC 3339");
    let logged_at = chrono::DateTime::parse_from_rfc3339(event["occurredAt"].as_str().unwrap())
        .expect("events occurredAt is RFC 3339");
    assert_eq!(sent_at, logged_at);
    assert_eq!(body["data"], event["data"], "thin data is the event's data");
    assert_eq!(body["data"]["journeyId"], journey.as_str());
    assert_eq!(body["data"]["patientId"], patient.as_str());
    assert_eq!(body["data"]["current"]["key"], "consultation");

    // Signed with the endpoint's secret, and with nothing else.
    let signature = request.signature();
    assert!(
        signature.starts_with("v1,") && !signature.contains(' '),
        "one v1 signature: {signature}"
    );
    assert!(
        request.verifies(&thin.secret),
        "signature verifies with the secret"
    );
    assert!(!request.verifies(&signing::new_secret()));
    assert!(!request.verifies(&phi.secret));
    let now = chrono::Utc::now().timestamp();
    assert!(
        (request.timestamp() - now).abs() < 300,
        "webhook-timestamp {} is now ({now})",
        request.timestamp()
    );

    // Thin: no names, contact details or free text.
    let text = String::from_utf8_lossy(&request.body).to_string();
    for secret in [
        "Hanalei",
        "Kowalczyk",
        "hanalei.k@example.com",
        "4155550177",
        "divorce",
        "anxiety",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into a thin webhook: {text}"
        );
    }
    assert!(body["data"].get("patient").is_none(), "{body}");

    // The PHI endpoint gets the same event, with the patient's identity.
    let phi_request = phi_rx.wait_count(1).await[0].clone();
    assert_eq!(phi_request.id(), event_id);
    assert!(phi_request.verifies(&phi.secret));
    assert!(!phi_request.verifies(&thin.secret));
    let phi_body = phi_request.json();
    assert_eq!(phi_body["type"], "journey.stage_changed");
    let named = &phi_body["data"]["patient"];
    assert_eq!(named["givenName"], "Hanalei", "{phi_body}");
    assert_eq!(named["familyName"], "Kowalczyk", "{phi_body}");
    assert_eq!(named["email"], "hanalei.k@example.com", "{phi_body}");
    assert_eq!(phi_body["data"]["journeyId"], journey.as_str());

    // An endpoint without types gets every event written after it was made.
    let every: Vec<Value> = events_of(&app, None).await;
    let expected: BTreeSet<String> = every
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let got = all_rx
        .wait_for(&format!("{} events", expected.len()), |log| {
            log.len() >= expected.len()
        })
        .await;
    let got_ids: BTreeSet<String> = got.iter().map(|r| r.id().to_string()).collect();
    assert_eq!(got_ids, expected);
    for request in &got {
        assert!(request.verifies(&all.secret));
        let body = request.json();
        assert_eq!(body["id"], request.id());
        assert!(!String::from_utf8_lossy(&request.body).contains("Hanalei"));
    }

    // Only the type asked for: one delivery, one request, delivered at once.
    let settled = settled_deliveries(&app, &thin.id, 1).await;
    assert_eq!(settled[0]["webhookId"], event_id);
    assert_eq!(settled[0]["eventType"], "journey.stage_changed");
    assert_eq!(settled[0]["status"], "DELIVERED");
    assert_eq!(settled[0]["attemptCount"], 1);
    assert_eq!(status_codes(&settled[0]), [json!(200)]);
    assert!(settled[0]["deliveredAt"].is_string());
    assert!(settled[0]["nextAttemptAt"].is_null());
    assert_eq!(settled[0]["endpoint"]["id"], thin.id.as_str());
    stage_rx.assert_quiet(1).await;
    assert!(
        stage_rx
            .received()
            .iter()
            .all(|r| r.event_type() == "journey.stage_changed")
    );
}

// ---------------------------------------------------------------------------
// 2. Private targets and other schemes are refused.

async fn private_targets_are_refused(app: TestApp) {
    let rx = Receiver::accepting().await;
    let before = app.row_counts().await;
    let private = [
        rx.url.clone(),
        "http://localhost/".to_string(),
        "http://localhost:8080/hooks".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://192.168.1.20/hooks".to_string(),
        "http://172.16.0.5/".to_string(),
        "http://[::1]/".to_string(),
        "http://0.0.0.0/".to_string(),
        "http://127.1/".to_string(),
    ];
    let schemes = [
        "ftp://crm.example.com/hooks",
        "file:///etc/passwd",
        "gopher://crm.example.com/",
        "javascript:alert(1)",
        "crm.example.com/hooks",
    ];
    for url in private.iter().map(String::as_str).chain(schemes) {
        let refused = app
            .gql(
                CREATE_ENDPOINT,
                json!({ "input": { "url": url, "eventTypes": ["patient.created"] } }),
            )
            .await;
        assert!(
            refused.body["data"].is_null()
                || refused.body["data"]["createWebhookEndpoint"].is_null(),
            "{url}: {}",
            refused.body
        );
        refused.assert_error("BAD_USER_INPUT", Some("input.url"));
    }
    assert_eq!(
        endpoints(&app).await,
        Vec::<Value>::new(),
        "nothing written"
    );
    assert_eq!(app.row_counts().await, before);

    // An endpoint with a public address cannot be pointed at a private one.
    let public = create_endpoint(
        &app,
        "https://93.184.215.14/hooks",
        &["patient.created"],
        false,
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://169.254.169.254/",
        "ftp://93.184.215.14/",
    ] {
        app.gql(
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": public.id, "url": url } }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some("input.url"));
    }
    assert_eq!(
        endpoint(&app, &public.id).await["url"],
        "https://93.184.215.14/hooks"
    );
    assert!(rx.received().is_empty());
}

/// A receiver that holds the first attempt open without answering: the
/// server gives up after `--webhook-timeout-secs` (closing the connection),
/// records the attempt as unanswered, and retries.
async fn receivers_that_do_not_answer_in_time_are_retried(app: TestApp) {
    use journeymap_tests::receiver::Receiver as HoldingReceiver;
    let rx = HoldingReceiver::holding(
        Arc::new(|_: &str, _: usize| (StatusCode::OK, None)),
        Duration::ZERO,
        Arc::new(|_: &str, attempt: usize| attempt == 0),
    )
    .await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    app.patient("Tardy").await;
    let received = rx
        .wait_for(PATIENCE, |r| r.iter().any(|x| x.attempt == 1))
        .await;
    let first = received
        .iter()
        .find(|r| r.attempt == 0)
        .expect("a first attempt");
    let second = received
        .iter()
        .find(|r| r.attempt == 1)
        .expect("a second attempt");
    assert_eq!(first.webhook_id, second.webhook_id);
    // The server hung up on the held attempt: its timeout, about a second.
    let hung_up = rx.hung_up();
    assert_eq!(hung_up.len(), 1, "{hung_up:?}");
    let gave_up_after = hung_up[0].at.duration_since(first.at);
    assert!(
        gave_up_after >= Duration::from_millis(900) && gave_up_after < Duration::from_secs(5),
        "the server gave up after {gave_up_after:?} with a 1 s timeout"
    );
    assert!(second.at >= hung_up[0].at, "retried only after giving up");

    let settled = settled_deliveries(&app, &hook.id, 1).await;
    let delivery = &settled[0];
    assert_eq!(delivery["status"], "DELIVERED", "{delivery:#}");
    assert_eq!(delivery["attemptCount"], 2);
    let attempts = delivery["attempts"].as_array().unwrap();
    let timed_out = attempts
        .iter()
        .find(|a| a["statusCode"].is_null())
        .unwrap_or_else(|| panic!("an unanswered attempt in {delivery:#}"));
    assert_eq!(timed_out["error"], "no answer within 1 s", "{timed_out}");
    assert!(
        timed_out["latencyMs"]
            .as_i64()
            .is_some_and(|ms| (900..5000).contains(&ms)),
        "{timed_out}"
    );
    assert!(
        attempts.iter().any(|a| a["statusCode"] == 200),
        "{delivery:#}"
    );
}

/// With `--webhook-concurrency 0` a server queues deliveries and sends
/// none; a delivering process on the same database sends them later.
async fn a_server_with_webhook_concurrency_0_delivers_nothing(app: TestApp) {
    let rx = Receiver::accepting().await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    app.patient("Queued").await;
    rx.assert_quiet(0).await;
    let queued = deliveries(&app, &hook.id).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["status"], "PENDING");
    assert_eq!(queued[0]["attemptCount"], 0);
    assert_eq!(queued[0]["attempts"], json!([]));

    let worker = journeymap_tests::ServerProcess::start(
        SERVER,
        &app.database_url,
        &[
            "--allow-private-webhook-targets",
            "--sweep-interval-secs",
            "0",
        ],
    )
    .await;
    let received = rx.wait_count(1).await;
    assert_eq!(received[0].id(), queued[0]["webhookId"].as_str().unwrap());
    assert!(received[0].verifies(&hook.secret));
    let settled = settled_deliveries(&app, &hook.id, 1).await;
    assert_eq!(settled[0]["status"], "DELIVERED");
    worker.kill().await;
}

/// A name in /etc/hosts (other than `localhost`, which URLs may not name at
/// all) that resolves to a loopback address.
fn loopback_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let ip: std::net::IpAddr = fields.next()?.parse().ok()?;
            ip.is_loopback().then(|| fields.collect::<Vec<_>>())
        })
        .flatten()
        .find(|name| {
            *name != "localhost"
                && !name.ends_with(".localdomain")
                && name.contains(|c: char| c.is_ascii_alphabetic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "this test needs a name other than localhost for 127.0.0.1 in /etc/hosts:\n{hosts}"
            )
        })
}

/// An endpoint saved by a server that allows private targets (a lab
/// replica) is still refused by one that does not, at delivery: for a
/// loopback address in the URL, and for a name that resolves to one (the
/// check is in the delivery client's resolver, so DNS cannot smuggle it in).
/// Nothing reaches the receiver; each attempt records why.
async fn private_targets_are_refused_at_delivery_time(app: TestApp) {
    let rx = Receiver::accepting().await;
    let port = rx
        .url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let by_name = format!("http://{}:{port}/hooks", loopback_name());
    let lab = journeymap_tests::ServerProcess::start(
        SERVER,
        &app.database_url,
        &[
            "--allow-private-webhook-targets",
            "--webhook-concurrency",
            "0",
            "--sweep-interval-secs",
            "0",
        ],
    )
    .await;
    let mut hooks = Vec::new();
    for url in [rx.url.clone(), by_name.clone()] {
        let created = journeymap_tests::gql_at(
            &lab.url,
            &app.token,
            CREATE_ENDPOINT,
            json!({ "input": { "url": url, "eventTypes": ["patient.created"] } }),
        )
        .await;
        let id = created["data"]["createWebhookEndpoint"]["endpoint"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the lab saves {url}: {created}"))
            .to_string();
        hooks.push((url, id));
    }
    // This (strict) server refuses the same URLs when they are saved here.
    app.gql(
        CREATE_ENDPOINT,
        json!({ "input": { "url": by_name, "eventTypes": ["patient.created"] } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.url"));

    app.patient("Private").await;
    for (url, id) in &hooks {
        let settled = settled_deliveries(&app, id, 1).await;
        let delivery = &settled[0];
        assert_eq!(delivery["status"], "FAILED", "{url}: {delivery:#}");
        assert_eq!(delivery["attemptCount"], ATTEMPTS);
        for attempt in delivery["attempts"].as_array().unwrap() {
            assert!(attempt["statusCode"].is_null(), "{url}: {attempt}");
            let error = attempt["error"].as_str().unwrap_or_default();
            let expected = if url == &rx.url {
                "refused target: the URL points at a private or loopback address".to_string()
            } else {
                format!(
                    "refused target: {} resolves to no public address",
                    loopback_name()
                )
            };
            assert_eq!(error, expected, "{url}: {attempt}");
        }
    }
    rx.assert_received(0);
    lab.kill().await;
}

// ---------------------------------------------------------------------------
// 3. Retries keep the webhook-id; exhaustion fails, then disables.

async fn failed_attempts_are_retried_with_the_same_webhook_id(app: TestApp) {
    let rx = Receiver::start(|_, attempt| {
        if attempt <= 2 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    app.patient("Ruth").await;

    let received = rx.wait_count(3).await;
    let id = received[0].id().to_string();
    assert!(id.starts_with("evt_"), "{id}");
    for request in &received {
        assert_eq!(
            request.id(),
            id,
            "every attempt carries the same webhook-id"
        );
        assert!(request.verifies(&hook.secret), "every attempt is signed");
        assert_eq!(
            request.body, received[0].body,
            "every attempt sends the same body"
        );
    }

    let settled = settled_deliveries(&app, &hook.id, 1).await;
    let delivery = &settled[0];
    assert_eq!(delivery["webhookId"], id.as_str());
    assert_eq!(delivery["status"], "DELIVERED");
    assert_eq!(delivery["attemptCount"], 3);
    assert_eq!(status_codes(delivery), [json!(500), json!(500), json!(200)]);
    let attempts = delivery["attempts"].as_array().unwrap();
    for attempt in attempts {
        assert!(
            attempt["latencyMs"].as_i64().is_some_and(|l| l >= 0),
            "{attempt}"
        );
        assert!(attempt["attemptedAt"].is_string(), "{attempt}");
    }
    assert!(attempts[0]["error"].is_string(), "{delivery}");
    assert!(attempts[1]["error"].is_string(), "{delivery}");
    assert!(attempts[2]["error"].is_null(), "{delivery}");
    assert!(delivery["deliveredAt"].is_string());
    rx.assert_quiet(3).await;
    assert_eq!(endpoint(&app, &hook.id).await["enabled"], true);
}

async fn exhausted_deliveries_fail_and_disable_the_endpoint(app: TestApp) {
    let rx = Receiver::start(|_, _| Reply::status(500)).await;
    let watcher = Receiver::accepting().await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    let watch = create_endpoint(&app, &watcher.url, &["webhook_endpoint.disabled"], false).await;

    // One delivery exhausts the schedule and fails; the endpoint stays on.
    app.patient("Exhausted1").await;
    let settled = settled_deliveries(&app, &hook.id, 1).await;
    assert_eq!(settled[0]["status"], "FAILED", "{}", settled[0]);
    assert_eq!(settled[0]["attemptCount"], ATTEMPTS as i64);
    assert_eq!(status_codes(&settled[0]), vec![json!(500); ATTEMPTS]);
    assert!(settled[0]["deliveredAt"].is_null());
    let received = rx.wait_count(ATTEMPTS).await;
    assert!(received.iter().all(|r| r.id() == received[0].id()));
    rx.assert_quiet(ATTEMPTS).await;
    let still = endpoint(&app, &hook.id).await;
    assert_eq!(
        still["enabled"], true,
        "one exhausted delivery does not disable: {still}"
    );

    // Four more in a row (written back to back, so they fail side by side).
    for n in 2..=5 {
        app.patient(&format!("Exhausted{n}")).await;
    }
    let settled = settled_deliveries(&app, &hook.id, 5).await;
    for delivery in &settled {
        assert_eq!(delivery["status"], "FAILED", "{delivery}");
        assert_eq!(delivery["attemptCount"], ATTEMPTS as i64, "{delivery}");
    }
    // The server's own count of exhausted deliveries in a row, to explain a
    // failure below.
    let counted = exhausted_count(&app, &hook.id).await;
    let disabled = endpoint_when(
        &app,
        &hook.id,
        &format!("disabled after 5 exhausted deliveries (the server counted {counted})"),
        |e| e["enabled"] == false,
    )
    .await;
    assert!(
        disabled["disabledReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{disabled}"
    );

    // The disabling is an event, in the log and on the other endpoint.
    let events = events_of(&app, Some(&["webhook_endpoint.disabled"])).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["endpointId"], hook.id.as_str());
    assert_eq!(events[0]["subject"], hook.id.as_str());
    let notice = watcher.wait_count(1).await[0].clone();
    assert_eq!(notice.id(), events[0]["id"].as_str().unwrap());
    assert_eq!(notice.json()["type"], "webhook_endpoint.disabled");
    assert_eq!(notice.json()["data"]["endpointId"], hook.id.as_str());
    assert!(notice.verifies(&watch.secret));

    // Nothing more goes to the disabled endpoint.
    let sent = rx.received().len();
    assert_eq!(sent, 5 * ATTEMPTS);
    app.patient("AfterDisable").await;
    rx.assert_quiet(sent).await;
    assert_eq!(deliveries(&app, &hook.id).await.len(), 5);
    watcher.assert_received(1);

    // Enabled again (the receiver fixed): delivered, and the count starts
    // over, so one more exhausted delivery does not disable it again.
    rx.set_script(|_, _| Reply::status(200));
    let on = app
        .gql(
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook.id, "enabled": true } }),
        )
        .await;
    assert_eq!(
        on.data()["updateWebhookEndpoint"]["endpoint"]["enabled"],
        true
    );
    app.patient("Fixed").await;
    let settled = settled_deliveries(&app, &hook.id, 6).await;
    assert_eq!(settled[0]["status"], "DELIVERED", "{}", settled[0]);
    rx.set_script(|_, _| Reply::status(500));
    app.patient("BrokenOnce").await;
    let settled = settled_deliveries(&app, &hook.id, 7).await;
    assert_eq!(settled[0]["status"], "FAILED", "{}", settled[0]);
    let still = endpoint(&app, &hook.id).await;
    assert_eq!(
        still["enabled"], true,
        "the count restarted on enabling: {still}"
    );
}

// ---------------------------------------------------------------------------
// 4. 410 Gone; Retry-After on 429 and 503.

async fn gone_disables_the_endpoint_at_once(app: TestApp) {
    let rx = Receiver::start(|_, _| Reply::status(410)).await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    app.patient("Gone").await;

    let settled = settled_deliveries(&app, &hook.id, 1).await;
    assert_eq!(settled[0]["status"], "FAILED", "{}", settled[0]);
    assert_eq!(
        status_codes(&settled[0]),
        [json!(410)],
        "no retry after 410"
    );
    let disabled = endpoint_when(&app, &hook.id, "disabled", |e| e["enabled"] == false).await;
    assert!(
        disabled["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{disabled}"
    );
    let events = events_of(&app, Some(&["webhook_endpoint.disabled"])).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["endpointId"], hook.id.as_str());

    rx.assert_quiet(1).await;
    app.patient("AfterGone").await;
    rx.assert_quiet(1).await;
    assert_eq!(deliveries(&app, &hook.id).await.len(), 1);
}

async fn retry_after_delays_the_next_attempt(app: TestApp) {
    let throttled = Receiver::start(|_, attempt| {
        if attempt == 1 {
            Reply::status(429).with("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let unavailable = Receiver::start(|_, attempt| {
        if attempt == 1 {
            Reply::status(503).with("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let first = create_endpoint(&app, &throttled.url, &["patient.created"], false).await;
    let second = create_endpoint(&app, &unavailable.url, &["patient.created"], false).await;
    app.patient("Patience").await;

    for (rx, hook, code) in [(&throttled, &first, 429), (&unavailable, &second, 503)] {
        let received = rx.wait_count(2).await;
        assert_eq!(received[0].id(), received[1].id());
        let gap = received[1].at - received[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "after {code} with Retry-After: 1 the next attempt came after {gap:?} (the schedule says 0.2 s)"
        );
        let settled = settled_deliveries(&app, &hook.id, 1).await;
        assert_eq!(settled[0]["status"], "DELIVERED", "{}", settled[0]);
        assert_eq!(status_codes(&settled[0]), [json!(code), json!(200)]);
        assert_eq!(endpoint(&app, &hook.id).await["enabled"], true);
    }
}

// ---------------------------------------------------------------------------
// 5. Secret rotation.

async fn rotated_secrets_sign_alongside_the_new_one(app: TestApp) {
    let rx = Receiver::accepting().await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    app.patient("BeforeRotation").await;
    let before = rx.wait_count(1).await[0].clone();
    assert!(!before.signature().contains(' '), "{}", before.signature());
    assert!(before.verifies(&hook.secret));

    let rotated = app
        .gql(ROTATE_SECRET, json!({ "input": { "endpointId": hook.id } }))
        .await;
    let payload = &rotated.data()["rotateWebhookSecret"];
    let new_secret = payload["secret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, hook.secret);
    let expires = chrono::DateTime::parse_from_rfc3339(
        payload["endpoint"]["previousSecretExpiresAt"]
            .as_str()
            .expect("previousSecretExpiresAt"),
    )
    .unwrap()
    .with_timezone(&chrono::Utc);
    let grace = expires - chrono::Utc::now();
    assert!(
        grace > chrono::Duration::hours(23) && grace <= chrono::Duration::hours(24),
        "a 24 h grace period by default, got {grace}"
    );

    app.patient("DuringGrace").await;
    let during = rx.wait_count(2).await[1].clone();
    let parts: Vec<&str> = during.signature().split(' ').collect();
    assert_eq!(
        parts.len(),
        2,
        "two space-separated signatures: {:?}",
        during.signature()
    );
    assert!(parts.iter().all(|p| p.starts_with("v1,")), "{parts:?}");
    let by_new: Vec<bool> = parts
        .iter()
        .map(|p| during.part_verifies(&new_secret, p))
        .collect();
    let by_old: Vec<bool> = parts
        .iter()
        .map(|p| during.part_verifies(&hook.secret, p))
        .collect();
    assert_eq!(
        by_new.iter().filter(|v| **v).count(),
        1,
        "one signature by the new secret"
    );
    assert_eq!(
        by_old.iter().filter(|v| **v).count(),
        1,
        "one signature by the old secret"
    );
    assert_ne!(
        by_new, by_old,
        "the two signatures come from different secrets"
    );
    assert!(during.verifies(&new_secret) && during.verifies(&hook.secret));
    assert!(!during.verifies(&signing::new_secret()));

    // Without grace, only the newest secret signs.
    let again = app
        .gql(
            ROTATE_SECRET,
            json!({ "input": { "endpointId": hook.id, "gracePeriodHours": 0 } }),
        )
        .await;
    let newest = again.data()["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    app.patient("AfterRotation").await;
    let after = rx.wait_count(3).await[2].clone();
    assert!(!after.signature().contains(' '), "{}", after.signature());
    assert!(after.verifies(&newest));
    assert!(!after.verifies(&new_secret));
    assert!(!after.verifies(&hook.secret));

    app.gql(
        ROTATE_SECRET,
        json!({ "input": { "endpointId": hook.id, "gracePeriodHours": 200 } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.gracePeriodHours"));
}

// ---------------------------------------------------------------------------
// 6. Test messages and redelivery.

async fn test_messages_and_redelivery(app: TestApp) {
    let rx = Receiver::accepting().await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;

    // A test message, although the endpoint asked only for patient.created.
    let sent = app
        .gql(SEND_TEST, json!({ "input": { "endpointId": hook.id } }))
        .await;
    let test = sent.data()["sendTestWebhook"]["delivery"].clone();
    assert_eq!(test["eventType"], "webhook.test");
    assert_eq!(test["endpoint"]["id"], hook.id.as_str());
    let request = rx.wait_count(1).await[0].clone();
    assert_eq!(request.id(), test["webhookId"].as_str().unwrap());
    assert!(request.verifies(&hook.secret));
    let body = request.json();
    assert_eq!(body["type"], "webhook.test");
    assert_eq!(body["id"], request.id());
    assert_eq!(body["data"]["endpointId"], hook.id.as_str());
    for key in ["id", "type", "sequence", "occurredAt", "clinicId", "data"] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }

    // Redelivery of a delivered event: the same webhook-id and body.
    app.patient("Again").await;
    let first = rx
        .wait_for("the patient.created delivery", |log| {
            log.iter().any(|r| r.event_type() == "patient.created")
        })
        .await
        .into_iter()
        .find(|r| r.event_type() == "patient.created")
        .unwrap();
    assert!(first.id().starts_with("evt_"));
    let settled = settled_deliveries(&app, &hook.id, 2).await;
    let delivery = settled
        .iter()
        .find(|d| d["eventType"] == "patient.created")
        .unwrap()
        .clone();
    assert_eq!(delivery["status"], "DELIVERED");
    assert_eq!(delivery["webhookId"], first.id());

    let redelivered = app
        .gql(
            REDELIVER,
            json!({ "input": { "deliveryId": delivery["id"] } }),
        )
        .await;
    let queued = &redelivered.data()["redeliverWebhook"]["delivery"];
    assert_eq!(queued["id"], delivery["id"]);
    assert_eq!(queued["webhookId"], first.id());
    let received = rx
        .wait_for("the redelivery", |log| {
            log.iter().filter(|r| r.id() == first.id()).count() == 2
        })
        .await;
    let again: Vec<&Received> = received.iter().filter(|r| r.id() == first.id()).collect();
    assert_eq!(again[1].body, first.body, "the same message");
    assert!(again[1].verifies(&hook.secret));
    let resettled = settled_deliveries(&app, &hook.id, 2).await;
    let delivery = resettled
        .iter()
        .find(|d| d["id"] == delivery["id"])
        .unwrap();
    assert_eq!(delivery["status"], "DELIVERED");
    assert_eq!(delivery["attemptCount"], 2);
    assert_eq!(status_codes(delivery), [json!(200), json!(200)]);
    rx.assert_quiet(3).await;

    // While a worker holds the delivery's lease it is being sent: redelivering
    // then would let a second worker send it at the same time.
    let uuid = journeymap::ids::decode_as(
        journeymap::ids::IdKind::WebhookDelivery,
        delivery["id"].as_str().unwrap(),
    )
    .unwrap();
    let db = app.db();
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "UPDATE webhook_deliveries SET locked_until = ? WHERE id = ?",
            vec![
                (chrono::Utc::now() + chrono::Duration::minutes(5)).into(),
                uuid.into(),
            ],
        ))
        .await
        .unwrap();
    app.gql(
        REDELIVER,
        json!({ "input": { "deliveryId": delivery["id"] } }),
    )
    .await
    .assert_error("CONFLICT", Some("input.deliveryId"));
    rx.assert_quiet(3).await;
    let unchanged = settled_deliveries(&app, &hook.id, 2).await;
    let unchanged = unchanged
        .iter()
        .find(|d| d["id"] == delivery["id"])
        .unwrap();
    assert_eq!(
        (&unchanged["status"], &unchanged["attemptCount"]),
        (&json!("DELIVERED"), &json!(2))
    );
}

// ---------------------------------------------------------------------------
// 7. Management, tenancy and permission.

async fn endpoints_are_managed_per_clinic_with_permission(app: TestApp) {
    let rx = Receiver::accepting().await;
    let created = app
        .gql(
            CREATE_ENDPOINT,
            json!({ "input": { "url": rx.url, "eventTypes": ["patient.created"], "description": "CRM sync" } }),
        )
        .await;
    let hook_id = created.data()["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        created.data()["createWebhookEndpoint"]["endpoint"]["description"],
        "CRM sync"
    );
    let pathway = app.pathway().await;

    // Event types.
    app.gql(
        UPDATE_ENDPOINT,
        json!({ "input": { "endpointId": hook_id, "eventTypes": ["journey.teleported"] } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("input.eventTypes[0]"));
    let updated = app
        .gql(
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id, "eventTypes": ["journey.started", "patient.created"] } }),
        )
        .await;
    let types: BTreeSet<String> = serde_json::from_value(
        updated.data()["updateWebhookEndpoint"]["endpoint"]["eventTypes"].clone(),
    )
    .unwrap();
    assert_eq!(
        types,
        BTreeSet::from(["journey.started".to_string(), "patient.created".to_string()])
    );
    let patient = app.patient("Managed").await;
    app.start_journey(&patient, &pathway.id).await;
    let received = rx.wait_count(2).await;
    let got: BTreeSet<String> = received.iter().map(Received::event_type).collect();
    assert_eq!(
        got,
        BTreeSet::from(["journey.started".to_string(), "patient.created".to_string()])
    );
    rx.assert_quiet(2).await;

    // Disabled: nothing is sent.
    let off = app
        .gql(
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id, "enabled": false } }),
        )
        .await;
    let endpoint_off = &off.data()["updateWebhookEndpoint"]["endpoint"];
    assert_eq!(endpoint_off["enabled"], false);
    assert!(endpoint_off["disabledReason"].is_string(), "{endpoint_off}");
    app.patient("WhileOff").await;
    rx.assert_quiet(2).await;

    // Enabled again: sent again.
    let on = app
        .gql(
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id, "enabled": true } }),
        )
        .await;
    let endpoint_on = &on.data()["updateWebhookEndpoint"]["endpoint"];
    assert_eq!(endpoint_on["enabled"], true);
    assert!(endpoint_on["disabledReason"].is_null(), "{endpoint_on}");
    let back = app.patient("BackOn").await;
    let received = rx
        .wait_for("the patient.created of BackOn", |log| {
            log.iter()
                .any(|r| r.json()["data"]["patientId"] == back.as_str())
        })
        .await;
    assert!(
        received
            .iter()
            .all(|r| ["patient.created", "journey.started"].contains(&r.event_type().as_str())),
        "{:#?}",
        summary(&received)
    );
    let delivered =
        settled_deliveries(&app, &hook_id, deliveries(&app, &hook_id).await.len()).await;
    let delivery_id = delivered[0]["id"].as_str().unwrap().to_string();

    // Another clinic sees none of it, and its events do not reach clinic a.
    let other = app.clinic("b").await;
    let sent_before = rx.received().len();
    let not_found = |what: &str, gql: &journeymap_tests::Gql| {
        assert_eq!(
            gql.code().as_deref(),
            Some("NOT_FOUND"),
            "{what} of another clinic's endpoint: {}",
            gql.body
        );
    };
    let answer = app
        .gql_as(
            Some(&other),
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id, "enabled": false } }),
        )
        .await;
    not_found("updateWebhookEndpoint", &answer);
    let answer = app
        .gql_as(
            Some(&other),
            DELETE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    not_found("deleteWebhookEndpoint", &answer);
    let answer = app
        .gql_as(
            Some(&other),
            ROTATE_SECRET,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    not_found("rotateWebhookSecret", &answer);
    let answer = app
        .gql_as(
            Some(&other),
            SEND_TEST,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    not_found("sendTestWebhook", &answer);
    let answer = app
        .gql_as(
            Some(&other),
            REDELIVER,
            json!({ "input": { "deliveryId": delivery_id } }),
        )
        .await;
    not_found("redeliverWebhook", &answer);
    let theirs = app.gql_as(Some(&other), ENDPOINTS, json!({})).await;
    assert_eq!(theirs.data()["webhookEndpoints"], json!([]));
    let theirs = app
        .gql_as(Some(&other), DELIVERIES, json!({ "endpointId": hook_id }))
        .await;
    assert_eq!(theirs.data()["webhookDeliveries"]["totalCount"], 0);
    new_patient(&app, &other, "OtherClinic").await;
    rx.assert_quiet(sent_before).await;
    let mine = endpoint(&app, &hook_id).await;
    assert_eq!(mine["enabled"], true, "{mine}");

    // Without webhooks:manage: FORBIDDEN, for reads and writes.
    let limited = app.token_with(&without(Permission::WebhooksManage)).await;
    let forbidden = |what: &str, gql: &journeymap_tests::Gql| {
        assert_eq!(
            gql.code().as_deref(),
            Some("FORBIDDEN"),
            "{what} without webhooks:manage: {}",
            gql.body
        );
    };
    let answer = app
        .gql_as(
            Some(&limited),
            CREATE_ENDPOINT,
            json!({ "input": { "url": rx.url, "eventTypes": [] } }),
        )
        .await;
    forbidden("createWebhookEndpoint", &answer);
    let answer = app
        .gql_as(
            Some(&limited),
            UPDATE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id, "enabled": false } }),
        )
        .await;
    forbidden("updateWebhookEndpoint", &answer);
    let answer = app
        .gql_as(
            Some(&limited),
            DELETE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    forbidden("deleteWebhookEndpoint", &answer);
    let answer = app
        .gql_as(
            Some(&limited),
            ROTATE_SECRET,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    forbidden("rotateWebhookSecret", &answer);
    let answer = app
        .gql_as(
            Some(&limited),
            SEND_TEST,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    forbidden("sendTestWebhook", &answer);
    let answer = app
        .gql_as(
            Some(&limited),
            REDELIVER,
            json!({ "input": { "deliveryId": delivery_id } }),
        )
        .await;
    forbidden("redeliverWebhook", &answer);
    let answer = app.gql_as(Some(&limited), ENDPOINTS, json!({})).await;
    forbidden("webhookEndpoints", &answer);
    let answer = app.gql_as(Some(&limited), DELIVERIES, json!({})).await;
    forbidden("webhookDeliveries", &answer);
    assert_eq!(endpoints(&app).await.len(), 1);
    assert_eq!(endpoint(&app, &hook_id).await["enabled"], true);

    // Delete: gone with its history; nothing is sent any more.
    let deleted = app
        .gql(
            DELETE_ENDPOINT,
            json!({ "input": { "endpointId": hook_id } }),
        )
        .await;
    assert_eq!(
        deleted.data()["deleteWebhookEndpoint"]["deletedEndpointId"],
        hook_id.as_str()
    );
    assert_eq!(endpoints(&app).await, Vec::<Value>::new());
    let history = app.gql(DELIVERIES, json!({ "endpointId": hook_id })).await;
    assert_eq!(history.data()["webhookDeliveries"]["totalCount"], 0);
    let sent = rx.received().len();
    app.patient("AfterDelete").await;
    rx.assert_quiet(sent).await;
    app.gql(
        DELETE_ENDPOINT,
        json!({ "input": { "endpointId": hook_id } }),
    )
    .await
    .assert_error("NOT_FOUND", None);
    app.gql(
        UPDATE_ENDPOINT,
        json!({ "input": { "endpointId": hook_id, "enabled": true } }),
    )
    .await
    .assert_error("NOT_FOUND", None);
}

// ---------------------------------------------------------------------------
// 8. Idempotency keys.

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }
}

async fn post_keyed(app: &TestApp, token: &str, key: Option<&str>, body: &Value) -> Answer {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON body");
    Answer {
        status,
        headers,
        body,
    }
}

fn create_patient_body(given_name: &str) -> Value {
    json!({
        "query": CREATE_PATIENT,
        "variables": { "input": { "givenName": given_name, "familyName": "Idem" } },
    })
}

async fn patients_count(app: &TestApp) -> i64 {
    app.row_counts()
        .await
        .into_iter()
        .find(|(table, _)| *table == "patients")
        .unwrap()
        .1
}

async fn idempotency_keys_replay_mutations_once(app: TestApp) {
    let token = app.token.clone();

    // The same key and body: one patient, the same answer, marked replayed.
    let body = create_patient_body("Ida");
    let first = post_keyed(&app, &token, Some("key-1"), &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.get("errors").is_none(), "{}", first.body);
    assert!(!first.replayed());
    let second = post_keyed(&app, &token, Some("key-1"), &body).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body, first.body, "the first answer again");
    assert!(second.replayed(), "idempotent-replayed: true on a replay");
    assert_eq!(patients_count(&app).await, 1);

    // The same key with another body: CONFLICT, nothing written.
    let before = app.row_counts().await;
    let other = post_keyed(&app, &token, Some("key-1"), &create_patient_body("Otto")).await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);
    assert_eq!(other.code(), Some("CONFLICT"), "{}", other.body);
    assert_eq!(
        other.body["errors"][0]["extensions"]["field"], "Idempotency-Key",
        "{}",
        other.body
    );
    assert!(!other.replayed());
    assert_eq!(app.row_counts().await, before);

    // A query with a key is simply run; it does not take the key.
    let query = json!({ "query": "query { patients(first: 5) { totalCount } }" });
    for _ in 0..2 {
        let answer = post_keyed(&app, &token, Some("key-q"), &query).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(
            answer.body["data"]["patients"]["totalCount"], 1,
            "{}",
            answer.body
        );
        assert!(!answer.replayed());
    }
    let after_query = post_keyed(&app, &token, Some("key-q"), &create_patient_body("Quinn")).await;
    assert_eq!(after_query.status, StatusCode::OK, "{}", after_query.body);
    assert!(
        after_query.body.get("errors").is_none(),
        "{}",
        after_query.body
    );
    assert!(!after_query.replayed());
    assert_eq!(patients_count(&app).await, 2);

    // Keys belong to one credential: another token of the clinic, and a
    // token of another clinic, use "key-1" for themselves.
    let second_token = app.token_with(&Permission::ALL).await;
    let theirs = post_keyed(
        &app,
        &second_token,
        Some("key-1"),
        &create_patient_body("Sol"),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert!(theirs.body.get("errors").is_none(), "{}", theirs.body);
    assert!(!theirs.replayed());
    assert_ne!(theirs.body, first.body);
    let same_body = post_keyed(&app, &second_token, Some("key-1"), &body).await;
    assert_eq!(same_body.status, StatusCode::CONFLICT, "{}", same_body.body);
    let other_clinic = app.clinic("b").await;
    let elsewhere = post_keyed(&app, &other_clinic, Some("key-1"), &body).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.body);
    assert!(elsewhere.body.get("errors").is_none(), "{}", elsewhere.body);
    assert!(!elsewhere.replayed());
    assert_ne!(elsewhere.body, first.body, "a patient of clinic b");
    assert_eq!(patients_count(&app).await, 4);
    // The first credential still replays its own answer.
    let mine = post_keyed(&app, &token, Some("key-1"), &body).await;
    assert!(mine.replayed());
    assert_eq!(mine.body, first.body);

    // A batch with a key: 400, nothing run.
    let before = app.row_counts().await;
    let batch = json!([create_patient_body("Batch1"), create_patient_body("Batch2")]);
    let answer = post_keyed(&app, &token, Some("key-batch"), &batch).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(app.row_counts().await, before);

    // Concurrent requests with one new key: one runs; the others replay it
    // or are told it is still running.
    let body = create_patient_body("Rush");
    let answers = futures::future::join_all(
        (0..6).map(|_| post_keyed(&app, &token, Some("key-rush"), &body)),
    )
    .await;
    let ok: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .collect();
    assert!(!ok.is_empty());
    for answer in &answers {
        match answer.status {
            StatusCode::OK => assert_eq!(answer.body, ok[0].body),
            StatusCode::CONFLICT => assert_eq!(answer.code(), Some("CONFLICT"), "{}", answer.body),
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert_eq!(
        ok.iter().filter(|a| !a.replayed()).count(),
        1,
        "exactly one request ran"
    );
    assert_eq!(patients_count(&app).await, 5);
}

// ---------------------------------------------------------------------------
// Accepted sends are settled in batches (one transaction for many): each
// delivery still gets its own attempt, status code and attempt time.

async fn accepted_deliveries_settled_together_keep_their_own_attempts(app: TestApp) {
    use journeymap::sea_orm::Statement;
    // 200, 201 or 202, by the webhook-id, so the status each delivery
    // records can be checked against the one its receiver gave.
    fn status_for(id: &str) -> u16 {
        200 + (id.bytes().map(u16::from).sum::<u16>() % 3)
    }
    let rx = Receiver::start(|r, _| Reply::status(status_for(r.id()))).await;
    let hook = create_endpoint(&app, &rx.url, &["patient.created"], false).await;
    const N: usize = 40;
    // Created side by side, so that sends end side by side and settle together.
    let names: Vec<String> = (0..N).map(|n| format!("Batch{n}")).collect();
    futures::future::join_all(names.iter().map(|name| app.patient(name))).await;
    let settled = settled_deliveries(&app, &hook.id, N).await;
    let received = rx.wait_count(N).await;
    assert_eq!(received.len(), N, "each delivery was sent once");
    for delivery in &settled {
        let id = delivery["webhookId"].as_str().unwrap();
        assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
        assert_eq!(delivery["attemptCount"], 1, "{delivery}");
        assert!(delivery["deliveredAt"].is_string(), "{delivery}");
        assert!(delivery["nextAttemptAt"].is_null(), "{delivery}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{delivery}");
        assert_eq!(attempts[0]["statusCode"], status_for(id), "{delivery}");
        assert!(attempts[0]["error"].is_null(), "{delivery}");
    }
    // Settled together: the deliveries of one batch share the moment it was
    // written (one settled alone has a `deliveredAt` of its own).
    let mut delivered_at: Vec<&str> = settled
        .iter()
        .map(|d| d["deliveredAt"].as_str().unwrap())
        .collect();
    delivered_at.sort_unstable();
    delivered_at.dedup();
    assert!(
        delivered_at.len() < N,
        "each of the {N} deliveries was settled on its own: {delivered_at:?}"
    );
    // The delivery rows' own record of their last attempt matches it.
    let rows = app
        .db()
        .conn()
        .query_all_raw(Statement::from_string(
            app.db().backend(),
            "SELECT d.message_id, d.last_status_code, d.locked_until IS NULL AS unlocked, \
                    d.last_attempt_at = a.attempted_at AS same_time, a.status_code \
             FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id"
                .to_string(),
        ))
        .await
        .expect("deliveries");
    assert_eq!(rows.len(), N);
    for row in rows {
        let id: String = row.try_get("", "message_id").unwrap();
        let last: Option<i32> = row.try_get("", "last_status_code").unwrap();
        let attempt: Option<i32> = row.try_get("", "status_code").unwrap();
        let unlocked: bool = row.try_get("", "unlocked").unwrap();
        let same_time: bool = row.try_get("", "same_time").unwrap();
        assert_eq!(last, Some(i32::from(status_for(&id))), "{id}");
        assert_eq!(attempt, last, "{id}");
        assert!(
            unlocked && same_time,
            "{id}: lease given back, attempt time recorded"
        );
    }
    rx.assert_quiet(N).await;
}
