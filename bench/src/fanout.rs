//! W3 fan-out: thousands of `graphql-transport-ws` subscribers of
//! `journeyStageChanged` while stage moves commit at a fixed rate. Every
//! subscriber measures each event from the server's `occurredAt` stamp to its
//! receipt, and the run counts the events each one should have had.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::json;
use tokio::{
    net::TcpStream,
    sync::{Mutex, Semaphore},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::HeaderValue,
        protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    Figures,
    report::percentiles,
    server::{Server, bench_cpu_seconds},
    workloads::{self, Client, Mover, PacedMoves},
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SUBSCRIPTION: &str = "subscription { journeyStageChanged { id sequence cursor occurredAt direction journey { id version } fromStage { id name } toStage { id name } } }";

const WINDOW_EVENTS: &str = r#"query($after: String) {
  events(after: $after, first: 100, types: ["journey.stage_changed"]) {
    pageInfo { endCursor hasNextPage }
    edges { node { sequence } }
  }
}"#;

/// Connections being opened at once.
const CONNECTING_AT_ONCE: usize = 200;
/// How long one connection may take to open, initialise and subscribe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the probe moves may take to reach every subscriber.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// After the last move, how long deliveries may stall before the rest count
/// as missing.
const DRAIN_STALL: Duration = Duration::from_secs(10);
/// The longest wait for deliveries after the last move.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// The issue's targets.
const TARGET_P99_MS: f64 = 250.0;
const TARGET_MEMORY_MIB: f64 = 1024.0;

/// A server message, read only as far as the benchmark needs. Building a
/// `serde_json::Value` costs five times as much per message (1.8 µs against
/// 0.35 µs, measured with this document), and the client shares two cores
/// with the server.
#[derive(Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    errors: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "journeyStageChanged", borrow)]
    event: Option<StageChanged<'a>>,
}

#[derive(Deserialize)]
struct StageChanged<'a> {
    sequence: i64,
    #[serde(rename = "occurredAt", borrow)]
    occurred_at: Cow<'a, str>,
}

/// What the subscribers report while they run, without locks.
struct Shared {
    /// Per subscriber, the highest sequence received (0 before any).
    last: Vec<AtomicI64>,
    /// Events with a higher sequence belong to the measured window.
    window_start: AtomicI64,
    /// Receipts of window events, over all subscribers.
    in_window: AtomicU64,
    /// Unix microseconds of the latest receipt of a window event.
    last_receipt_us: AtomicI64,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    first_failure: std::sync::Mutex<Option<String>>,
    /// Sockets the server closed, or that broke, before the run ended.
    closed: AtomicUsize,
    /// `error` and `complete` messages, `next` payloads with errors, and
    /// messages that could not be read.
    payload_errors: AtomicUsize,
}

impl Shared {
    fn new(subscribers: usize) -> Self {
        Self {
            last: (0..subscribers).map(|_| AtomicI64::new(0)).collect(),
            window_start: AtomicI64::new(i64::MAX),
            in_window: AtomicU64::new(0),
            last_receipt_us: AtomicI64::new(0),
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_failure: std::sync::Mutex::new(None),
            closed: AtomicUsize::new(0),
            payload_errors: AtomicUsize::new(0),
        }
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        self.first_failure
            .lock()
            .expect("failure lock")
            .get_or_insert(why);
    }

    fn heard(&self) -> usize {
        self.last.iter().filter(|l| l.load(Relaxed) > 0).count()
    }
}

/// One event as a subscriber received it: its sequence and the microseconds
/// from `occurredAt` to receipt.
type Receipt = (i64, i64);

fn text(value: &str) -> Message {
    Message::Text(value.into())
}

/// Opens `/graphql/ws`, initialises with the token and subscribes.
async fn open(url: &str, authorization: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // Messages are well under a kilobyte; the default 128 KiB read buffer
    // per socket would be most of this process's memory.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    let init = json!({ "type": "connection_init", "payload": { "authorization": authorization } });
    socket.send(text(&init.to_string())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(body))) => {
                let kind = serde_json::from_str::<ServerMessage>(&body)?.kind;
                match kind.as_ref() {
                    "connection_ack" => break,
                    "ping" => socket.send(text(r#"{"type":"pong"}"#)).await?,
                    _ => anyhow::bail!("expected connection_ack, got {body}"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                anyhow::bail!("the server closed the socket ({frame:?})")
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the server closed the socket"),
        }
    }
    let subscribe = json!({ "type": "subscribe", "id": "1", "payload": { "query": SUBSCRIPTION } });
    socket.send(text(&subscribe.to_string())).await?;
    Ok(socket)
}

/// One subscriber: connects (at most [`CONNECTING_AT_ONCE`] at a time),
/// records every event until `stop`, then closes cleanly.
async fn subscriber(
    index: usize,
    url: Arc<str>,
    authorization: Arc<str>,
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Vec<Receipt> {
    let opened = {
        let _permit = gate.acquire().await;
        tokio::select! {
            _ = stop.cancelled() => return Vec::new(),
            opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&url, &authorization)) => opened,
        }
    };
    let mut socket = match opened {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => {
            shared.fail(format!("{error:#}"));
            return Vec::new();
        }
        Err(_) => {
            shared.fail(format!(
                "not subscribed within {} s",
                CONNECT_TIMEOUT.as_secs()
            ));
            return Vec::new();
        }
    };
    shared.subscribed.fetch_add(1, Relaxed);
    let mut received = Vec::new();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = socket.next() => message,
        };
        let body = match message {
            Some(Ok(Message::Text(body))) => body,
            // Ping frames are answered by tungstenite itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_) | Message::Binary(_))) | Some(Err(_)) | None => {
                shared.closed.fetch_add(1, Relaxed);
                return received;
            }
        };
        let at = Utc::now();
        let Ok(message) = serde_json::from_str::<ServerMessage>(&body) else {
            shared.payload_errors.fetch_add(1, Relaxed);
            continue;
        };
        match (message.kind.as_ref(), message.payload) {
            ("next", Some(payload)) => {
                if payload.errors.is_some() {
                    shared.payload_errors.fetch_add(1, Relaxed);
                }
                let Some(event) = payload.data.and_then(|d| d.event) else {
                    continue;
                };
                let Ok(occurred) = DateTime::parse_from_rfc3339(&event.occurred_at) else {
                    shared.payload_errors.fetch_add(1, Relaxed);
                    continue;
                };
                let latency = (at - occurred.with_timezone(&Utc))
                    .num_microseconds()
                    .unwrap_or(i64::MAX)
                    .max(0);
                received.push((event.sequence, latency));
                shared.last[index].fetch_max(event.sequence, Relaxed);
                if event.sequence > shared.window_start.load(Relaxed) {
                    shared.in_window.fetch_add(1, Relaxed);
                    shared
                        .last_receipt_us
                        .fetch_max(at.timestamp_micros(), Relaxed);
                }
            }
            ("ping", _) => {
                if socket.send(text(r#"{"type":"pong"}"#)).await.is_err() {
                    shared.closed.fetch_add(1, Relaxed);
                    return received;
                }
            }
            ("pong", _) => {}
            _ => {
                shared.payload_errors.fetch_add(1, Relaxed);
            }
        }
    }
    // End the operation, then the close handshake: the server sees a client
    // that leaves, not a connection that drops.
    let _ = socket.send(text(r#"{"type":"complete","id":"1"}"#)).await;
    let _ = socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "benchmark over".into(),
        }))
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    received
}

/// What the measured part of the run found, before the receipts are tallied.
struct Window {
    connect_seconds: f64,
    base_rss: f64,
    idle_rss: f64,
    probes: usize,
    expected: Vec<i64>,
    moves: PacedMoves,
    seconds: f64,
    drain_lag: f64,
    server_cpu: f64,
    bench_cpu: f64,
    statements: u64,
}

/// W3: `subscribers` subscribers of `journeyStageChanged` while `rate` stage
/// moves per second commit for `duration`.
pub async fn fan_out(
    client: &Client,
    server: &Server,
    token: &str,
    subscribers: usize,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Figures> {
    anyhow::ensure!(
        subscribers > 0 && rate > 0,
        "W3 needs at least one subscriber and one move per second"
    );
    // Distinct journeys for every move of the run where the clinic has them.
    let wanted = rate as usize * duration.as_secs().max(1) as usize + 100;
    let movers: Vec<Arc<Mutex<Mover>>> = workloads::movers(client, wanted)
        .await?
        .into_iter()
        .map(|m| Arc::new(Mutex::new(m)))
        .collect();
    anyhow::ensure!(!movers.is_empty(), "no active journeys to move");

    let shared = Arc::new(Shared::new(subscribers));
    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let url: Arc<str> = format!("{}/graphql/ws", server.url.replacen("http://", "ws://", 1)).into();
    let authorization: Arc<str> = format!("Bearer {token}").into();
    let base_rss = server.rss_mib();
    eprintln!("W3: connecting {subscribers} subscribers…");
    let connecting = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|index| {
            tokio::spawn(subscriber(
                index,
                url.clone(),
                authorization.clone(),
                gate.clone(),
                shared.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let window = measure(
        client, server, &shared, &movers, rate, duration, connecting, base_rss,
    )
    .await;

    // Close every socket, also when the run failed.
    stop.cancel();
    let closing = Instant::now();
    let mut received = Vec::with_capacity(subscribers);
    for task in tasks {
        received.push(task.await.unwrap_or_default());
    }
    let close_seconds = closing.elapsed().as_secs_f64();
    let window = window?;

    // Tally: the first receipt of each expected event per subscriber.
    let expected = &window.expected;
    let mut latencies = Vec::with_capacity(subscribers * expected.len());
    let (mut delivered, mut missing, mut short, mut duplicates) = (0usize, 0usize, 0usize, 0usize);
    for mut receipts in received {
        // Stable: a duplicate sorts after the first receipt.
        receipts.sort_by_key(|(sequence, _)| *sequence);
        let mut got = 0;
        let mut previous = None;
        for (sequence, latency) in receipts {
            if previous == Some(sequence) {
                duplicates += 1;
                continue;
            }
            previous = Some(sequence);
            if expected.binary_search(&sequence).is_ok() {
                got += 1;
                latencies.push(Duration::from_micros(latency as u64));
            }
        }
        delivered += got;
        if got < expected.len() {
            short += 1;
            missing += expected.len() - got;
        }
    }
    let closed = shared.closed.load(Relaxed);
    let payload_errors = shared.payload_errors.load(Relaxed);
    let peak = server.peak_rss_mib();
    let mut figures = Figures {
        name: format!(
            "W3 fan-out: journeyStageChanged to {subscribers} graphql-ws subscribers, {rate} stage moves/s for {} s",
            duration.as_secs()
        ),
        requests: delivered,
        errors: closed + payload_errors,
        seconds: window.seconds,
        statements_per_request: window.statements as f64 / delivered.max(1) as f64,
        server_cpu_seconds: window.server_cpu,
        server_peak_mib: peak,
        unit: "message",
        latencies,
        ..Default::default()
    };
    let p99 = figures.percentile(99.0);
    let moves = &window.moves;
    figures.notes = vec![
        format!(
            "latency = receipt − occurredAt (the move's transaction time) over every (subscriber, event) pair; {delivered} pairs"
        ),
        format!(
            "connected and subscribed {subscribers} in {:.1} s ({:.0}/s, {CONNECTING_AT_ONCE} at a time); {} probe moves until every subscriber had an event",
            window.connect_seconds,
            subscribers as f64 / window.connect_seconds.max(1e-9),
            window.probes
        ),
        format!(
            "server memory {:.1} MiB before connecting, {:.1} MiB with all subscribers connected and idle ({:.0} KiB per subscriber)",
            window.base_rss,
            window.idle_rss,
            (window.idle_rss - window.base_rss) * 1024.0 / subscribers as f64
        ),
        format!(
            "moves: {} committed in {:.1} s = {:.1} moves/s (asked {rate}/s), {} failed, {} ticks skipped (every journey busy); move latency {}",
            moves.committed,
            moves.seconds,
            moves.committed as f64 / moves.seconds.max(1e-9),
            moves.failed,
            moves.skipped,
            percentiles(&moves.latencies)
        ),
        format!(
            "delivered {delivered} of {} expected ({subscribers} subscribers × {} events in the log): {missing} missing at {short} subscribers, {duplicates} duplicates",
            subscribers * expected.len(),
            expected.len()
        ),
        format!(
            "last delivery {:.2} s after the last move answered; errors: {closed} sockets closed by the server, {payload_errors} error payloads",
            window.drain_lag
        ),
        format!(
            "bench process (client) CPU {:.1} s ({:.0}% of one core); sockets closed cleanly in {close_seconds:.1} s",
            window.bench_cpu,
            window.bench_cpu / window.seconds.max(1e-9) * 100.0
        ),
        format!(
            "target delivery p99 ≤ {TARGET_P99_MS:.0} ms with server memory ≤ 1 GiB: {} (p99 {p99:.1} ms, peak {peak:.1} MiB{})",
            if p99 <= TARGET_P99_MS && peak <= TARGET_MEMORY_MIB && missing == 0 {
                "met"
            } else {
                "NOT met"
            },
            if missing > 0 {
                ", deliveries missing"
            } else {
                ""
            }
        ),
    ];
    Ok(figures)
}

/// Waits for the subscribers, probes until each has an event, then drives
/// the moves and waits for their deliveries.
#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &Client,
    server: &Server,
    shared: &Shared,
    movers: &[Arc<Mutex<Mover>>],
    rate: u32,
    duration: Duration,
    connecting: Instant,
    base_rss: f64,
) -> anyhow::Result<Window> {
    let subscribers = shared.last.len();
    let mut reported = Instant::now();
    while shared.subscribed.load(Relaxed) + shared.failed.load(Relaxed) < subscribers {
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "W3: {} of {subscribers} subscribed…",
                shared.subscribed.load(Relaxed)
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let failed = shared.failed.load(Relaxed);
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {subscribers} subscribers could not connect and subscribe (first failure: {})",
            shared
                .first_failure
                .lock()
                .expect("failure lock")
                .clone()
                .unwrap_or_default()
        );
    }

    // A subscription gets no acknowledgement: an event delivered is the only
    // sign it is live. Probe with a move a second until every subscriber has one.
    eprintln!("W3: {subscribers} subscribed in {connect_seconds:.1} s; probing…");
    let probing = Instant::now();
    let mut probes = 0;
    while shared.heard() < subscribers {
        if probing.elapsed() > PROBE_TIMEOUT {
            anyhow::bail!(
                "after {} s of probe moves only {} of {subscribers} subscribers had received an event ({} sockets closed by the server, {} error payloads)",
                PROBE_TIMEOUT.as_secs(),
                shared.heard(),
                shared.closed.load(Relaxed),
                shared.payload_errors.load(Relaxed)
            );
        }
        let _ = movers[probes % movers.len()]
            .lock()
            .await
            .step(client)
            .await;
        probes += 1;
        let waited = Instant::now();
        while shared.heard() < subscribers && waited.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every subscriber at the last probe: the window starts after it.
    let window_start = loop {
        let max = shared
            .last
            .iter()
            .map(|l| l.load(Relaxed))
            .max()
            .unwrap_or(0);
        let behind = shared.last.iter().filter(|l| l.load(Relaxed) < max).count();
        if behind == 0 {
            break max;
        }
        if probing.elapsed() > PROBE_TIMEOUT * 2 {
            anyhow::bail!(
                "{behind} of {subscribers} subscribers did not receive the last probe event ({} sockets closed by the server)",
                shared.closed.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shared.window_start.store(window_start, Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = server.rss_mib();

    eprintln!(
        "W3: every subscriber live after {probes} probes; {rate} moves/s for {} s…",
        duration.as_secs()
    );
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let bench_cpu_before = bench_cpu_seconds();
    let started_us = Utc::now().timestamp_micros();
    let moves = workloads::paced_moves(client, movers, rate, duration).await;
    let moves_done = Instant::now();

    // The window's events, from the log: what every subscriber should get.
    let mut expected = Vec::new();
    let mut after = journeymap::events::log::cursor(window_start);
    loop {
        let body = client.gql(WINDOW_EVENTS, json!({ "after": after })).await?;
        anyhow::ensure!(
            !workloads::failed(&body),
            "cannot read the event log: {}",
            body["errors"]
        );
        let page = &body["data"]["events"];
        expected.extend(
            page["edges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["node"]["sequence"].as_i64()),
        );
        match page["pageInfo"]["endCursor"].as_str() {
            Some(cursor) if page["pageInfo"]["hasNextPage"] == true => after = cursor.to_string(),
            _ => break,
        }
    }
    expected.sort_unstable();

    // Wait for the deliveries while they make progress.
    let target = (subscribers * expected.len()) as u64;
    let mut seen = shared.in_window.load(Relaxed);
    let mut progressed = Instant::now();
    while seen < target && progressed.elapsed() < DRAIN_STALL && moves_done.elapsed() < DRAIN_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = shared.in_window.load(Relaxed);
        if now != seen {
            seen = now;
            progressed = Instant::now();
        }
    }
    let last_receipt_us = shared.last_receipt_us.load(Relaxed);
    let delivering = (last_receipt_us - started_us).max(0) as f64 / 1e6;
    Ok(Window {
        connect_seconds,
        base_rss,
        idle_rss,
        probes,
        expected,
        seconds: delivering.max(moves.seconds),
        drain_lag: (delivering - moves.seconds).max(0.0),
        moves,
        server_cpu: server.cpu_seconds() - cpu_before,
        bench_cpu: bench_cpu_seconds() - bench_cpu_before,
        statements: server.statements().await? - statements_before,
    })
}
