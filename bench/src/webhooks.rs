//! W4 webhooks: a backlog of signed `journey.stage_changed` deliveries,
//! queued while no process delivers, drained by a second server process into
//! a receiver inside this process; then, optionally, live moves through that
//! server with their end-to-end delivery latency.

use std::{
    borrow::Cow,
    collections::HashSet,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    Figures,
    report::percentiles,
    server::{Server, bench_cpu_seconds},
    workloads::{self, Client, Mover, failed},
};
use journeymap::{config::DatabaseConfig, webhooks::signing};

/// Marks the endpoint this workload creates, so that a rerun removes one an
/// interrupted run left behind.
const DESCRIPTION: &str = "journeymap bench W4";
/// The receiver checks the signature of every this-many distinct deliveries.
const VERIFY_EVERY: usize = 100;
/// How long deliveries may stall before the rest count as missing.
const STALL: Duration = Duration::from_secs(15);
/// The target (issue 13: keep the 2,642/s of 2026-11-24, at least 2,500/s).
const TARGET_PER_SECOND: f64 = 2500.0;

const ENDPOINTS: &str = "{ webhookEndpoints { id description } }";

const CREATE: &str = r#"mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { id } }
}"#;

const DELETE: &str = r#"mutation($input: WebhookEndpointInput!) {
  deleteWebhookEndpoint(input: $input) { deletedEndpointId }
}"#;

const PENDING: &str = r#"query($endpoint: ID!) {
  webhookDeliveries(endpointId: $endpoint, status: PENDING, first: 1) { totalCount }
}"#;

/// What the receiver has seen.
#[derive(Default)]
struct Log {
    /// `webhook-id`s received.
    seen: HashSet<String>,
    /// When each distinct delivery arrived, in order.
    receipts: Vec<Instant>,
    /// Record receipt − `occurredAt` (set for the live phase).
    live: bool,
    live_latencies: Vec<Duration>,
    duplicates: usize,
    verified: usize,
    bad_signatures: usize,
    /// Requests without the Standard Webhooks headers or with an unreadable body.
    malformed: usize,
}

/// The local receiver's state.
#[derive(Default)]
struct Receiver {
    secret: OnceLock<String>,
    log: std::sync::Mutex<Log>,
}

impl Receiver {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("receiver lock")
    }

    fn distinct(&self) -> usize {
        self.log().receipts.len()
    }
}

/// Only what the receiver reads of a delivery's body.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "occurredAt", borrow)]
    occurred_at: Cow<'a, str>,
}

/// Answers 204 at once, after noting the delivery.
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Utc::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header("webhook-signature"),
    ) else {
        receiver.log().malformed += 1;
        return StatusCode::NO_CONTENT;
    };
    let (check, live) = {
        let mut log = receiver.log();
        if !log.seen.insert(id.to_string()) {
            log.duplicates += 1;
            return StatusCode::NO_CONTENT;
        }
        log.receipts.push(Instant::now());
        (log.receipts.len() % VERIFY_EVERY == 1, log.live)
    };
    if check {
        let valid = receiver
            .secret
            .get()
            .is_some_and(|secret| signing::verify(secret, id, timestamp, &body, signature));
        let mut log = receiver.log();
        log.verified += 1;
        if !valid {
            log.bad_signatures += 1;
        }
    }
    if live {
        let occurred = serde_json::from_slice::<Envelope>(&body)
            .ok()
            .and_then(|e| DateTime::parse_from_rfc3339(&e.occurred_at).ok());
        let mut log = receiver.log();
        match occurred {
            Some(at) => {
                let latency = (now - at.with_timezone(&Utc)).to_std().unwrap_or_default();
                log.live_latencies.push(latency);
            }
            None => log.malformed += 1,
        }
    }
    StatusCode::NO_CONTENT
}

/// Settings of W4.
pub struct WebhookRun<'a> {
    /// The database, for the delivering server.
    pub database: &'a DatabaseConfig,
    /// The benchmark token.
    pub token: &'a str,
    /// Events in the backlog.
    pub events: usize,
    /// Connections building the backlog.
    pub workers: usize,
    /// Moves per second of the live phase (0: no live phase).
    pub live_rate: u32,
    /// Length of the live phase.
    pub duration: Duration,
}

/// W4: builds a backlog of `run.events` deliveries through the main server
/// (which does not deliver) with `client`, then measures how fast a fresh delivering server drains it.
pub async fn webhooks(client: &Client, run: &WebhookRun<'_>) -> anyhow::Result<Figures> {
    anyhow::ensure!(run.events > 0, "W4 needs at least one event");
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        async move { serve.await }
    });

    // An endpoint an interrupted run left would receive this run's events too.
    let body = client.gql(ENDPOINTS, json!({})).await?;
    for endpoint in body["data"]["webhookEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if endpoint["description"] == DESCRIPTION {
            delete(client, endpoint["id"].as_str().unwrap_or_default()).await?;
        }
    }
    let body = client
        .gql(
            CREATE,
            json!({ "input": { "url": url, "eventTypes": ["journey.stage_changed"], "description": DESCRIPTION } }),
        )
        .await?;
    anyhow::ensure!(
        !failed(&body),
        "cannot create the webhook endpoint: {}",
        body["errors"]
    );
    let created = &body["data"]["createWebhookEndpoint"];
    let endpoint = created["endpoint"]["id"]
        .as_str()
        .context("no endpoint id")?
        .to_string();
    let secret = created["secret"].as_str().context("no secret")?.to_string();
    let _ = receiver.secret.set(secret);

    let figures = measure(client, run, &receiver, &endpoint).await;

    // Leave the database as it was: deleting the endpoint deletes its deliveries.
    let deleted = delete(client, &endpoint).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    let figures = figures?;
    deleted?;
    Ok(figures)
}

async fn delete(client: &Client, endpoint: &str) -> anyhow::Result<()> {
    let body = client
        .gql(DELETE, json!({ "input": { "endpointId": endpoint } }))
        .await?;
    anyhow::ensure!(
        !failed(&body),
        "cannot delete the webhook endpoint: {}",
        body["errors"]
    );
    Ok(())
}

/// Waits until the receiver has `wanted` distinct deliveries, or deliveries
/// stall for [`STALL`].
async fn await_deliveries(receiver: &Receiver, wanted: usize) {
    let mut seen = receiver.distinct();
    let mut progressed = Instant::now();
    while seen < wanted && progressed.elapsed() < STALL {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = receiver.distinct();
        if now != seen {
            seen = now;
            progressed = Instant::now();
        }
    }
}

async fn measure(
    client: &Client,
    run: &WebhookRun<'_>,
    receiver: &Receiver,
    endpoint: &str,
) -> anyhow::Result<Figures> {
    // The backlog: moves through the main server, which does not deliver.
    let movers: Vec<Arc<Mutex<Mover>>> = workloads::movers(client, run.workers * 50)
        .await?
        .into_iter()
        .map(|m| Arc::new(Mutex::new(m)))
        .collect();
    anyhow::ensure!(!movers.is_empty(), "no active journeys to move");
    let workers = run.workers.clamp(1, movers.len());
    eprintln!(
        "W4: queueing {} deliveries with {workers} connections…",
        run.events
    );
    let tickets = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let building = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..workers {
        // Each worker moves journeys of its own.
        let mine: Vec<_> = movers
            .iter()
            .skip(worker)
            .step_by(workers)
            .cloned()
            .collect();
        let (client, tickets, refused, events) =
            (client.clone(), tickets.clone(), refused.clone(), run.events);
        handles.push(tokio::spawn(async move {
            let mut next = 0;
            let mut committed = 0usize;
            'tickets: while tickets.fetch_add(1, Relaxed) < events {
                for _ in 0..5 {
                    let mut mover = mine[next % mine.len()].lock().await;
                    next += 1;
                    if matches!(mover.step(&client).await, Ok(true)) {
                        committed += 1;
                        continue 'tickets;
                    }
                    refused.fetch_add(1, Relaxed);
                }
            }
            committed
        }));
    }
    let mut backlog = 0;
    for handle in handles {
        backlog += handle.await?;
    }
    let build_seconds = building.elapsed().as_secs_f64();
    let pending = client
        .gql(PENDING, json!({ "endpoint": endpoint }))
        .await?["data"]["webhookDeliveries"]["totalCount"]
        .as_i64()
        .unwrap_or(-1);
    let early = receiver.distinct();

    // The drain: a fresh server with delivery on.
    eprintln!("W4: {pending} deliveries pending; starting the delivering server…");
    let spawned = Instant::now();
    let deliverer = Server::start(run.database, &["--allow-private-webhook-targets"]).await?;
    let ready = Instant::now();
    let bench_cpu_before = bench_cpu_seconds();
    await_deliveries(receiver, early + backlog).await;
    let server_cpu = deliverer.cpu_seconds();
    let bench_cpu = bench_cpu_seconds() - bench_cpu_before;
    let drained_at = Instant::now();
    let (receipts, duplicates_drain) = {
        let log = receiver.log();
        (log.receipts.clone(), log.duplicates)
    };
    let delivered = receipts.len().saturating_sub(early).min(backlog);
    let drain = &receipts[early..early + delivered];
    let last = drain.last().copied().unwrap_or(drained_at);
    let seconds = last.saturating_duration_since(ready).as_secs_f64();
    let before_ready = drain.iter().filter(|r| **r < ready).count();
    let first_ms = drain
        .first()
        .map(|r| r.saturating_duration_since(spawned).as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    let mut per_second: Vec<usize> = Vec::new();
    for receipt in drain {
        let second = receipt.saturating_duration_since(ready).as_secs() as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    let rate = delivered as f64 / seconds.max(1e-9);

    // Live: moves through the delivering server, so that its workers are
    // woken by their own commits as in a one-process deployment.
    let mut live_note = None;
    if run.live_rate > 0 {
        eprintln!(
            "W4: live phase, {} moves/s for {} s…",
            run.live_rate,
            run.duration.as_secs()
        );
        receiver.log().live = true;
        let before = receiver.distinct();
        let live_client = Client::new(&deliverer.url, run.token)?;
        let moves =
            workloads::paced_moves(&live_client, &movers, run.live_rate, run.duration).await;
        await_deliveries(receiver, before + moves.committed).await;
        let log = receiver.log();
        live_note = Some(format!(
            "live: {} moves committed at {:.1}/s through the delivering server ({} failed); {} of {} delivered, receipt − occurredAt {}",
            moves.committed,
            moves.committed as f64 / moves.seconds.max(1e-9),
            moves.failed + moves.skipped,
            log.receipts.len() - before,
            moves.committed,
            percentiles(&log.live_latencies)
        ));
    }
    let peak = deliverer.peak_rss_mib();
    let ready_ms = deliverer.ready_ms;
    deliverer.stop().await;

    let log = receiver.log();
    let mut figures = Figures {
        name: format!(
            "W4 webhooks: {} journey.stage_changed deliveries drained from a backlog by a fresh server (64 in flight) to a local receiver",
            run.events
        ),
        requests: delivered,
        errors: log.bad_signatures + log.malformed,
        seconds,
        // The server does not count the statements of delivery, which is
        // background work.
        statements_per_request: f64::NAN,
        server_cpu_seconds: server_cpu,
        server_peak_mib: peak,
        unit: "delivery",
        ..Default::default()
    };
    let shown = per_second.len().min(30);
    figures.notes = vec![
        format!(
            "backlog: {backlog} stage moves in {build_seconds:.1} s ({:.0} moves/s, {workers} connections) through the main server, which does not deliver; {} refused; {pending} deliveries pending",
            backlog as f64 / build_seconds.max(1e-9),
            refused.load(Relaxed)
        ),
        format!(
            "drain: the delivering server was ready {ready_ms:.0} ms after spawning, its first delivery arrived {first_ms:.0} ms after spawning ({before_ready} before ready); delivery {delivered} of {backlog} arrived {seconds:.2} s after ready: {rate:.0} deliveries/s",
        ),
        format!(
            "deliveries per second after ready: {}{}",
            per_second[..shown]
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" · "),
            if per_second.len() > shown {
                " · …"
            } else {
                ""
            }
        ),
        format!(
            "receiver: {} duplicates during the drain ({} in all), {} malformed; signatures checked on every {VERIFY_EVERY}th delivery: {} checked, {} invalid",
            duplicates_drain, log.duplicates, log.malformed, log.verified, log.bad_signatures
        ),
        format!(
            "server CPU is the delivering server's from its start to the last delivery of the backlog; bench process (client and receiver) CPU {bench_cpu:.1} s ({:.0}% of one core)",
            bench_cpu / seconds.max(1e-9) * 100.0
        ),
    ];
    figures.notes.extend(live_note);
    figures.notes.push(format!(
        "target ≥ {TARGET_PER_SECOND:.0} deliveries/s: {} ({rate:.0} deliveries/s{})",
        if rate >= TARGET_PER_SECOND && delivered == backlog {
            "met"
        } else {
            "NOT met"
        },
        if delivered < backlog {
            format!(", {} not delivered", backlog - delivered)
        } else {
            String::new()
        }
    ));
    Ok(figures)
}
