//! The workloads: each drives the server over HTTP and returns its figures.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use entity::{journeys, patients, touchpoints};
use sea_orm::PaginatorTrait;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{Figures, server::Server};
use journeymap::db::Db;

/// Warm-up before a timed workload.
const WARM_UP: Duration = Duration::from_secs(2);

/// How big the benchmark clinic is.
pub struct ClinicSize {
    pub patients: u64,
    pub journeys: u64,
    pub touchpoints: u64,
}

/// Counts the clinic's rows.
pub async fn clinic_size(db: &Db, clinic: Uuid) -> anyhow::Result<ClinicSize> {
    let system = journeymap::auth::Principal::system(clinic);
    Ok(ClinicSize {
        patients: system.select::<patients::Entity>().count(db.conn()).await?,
        journeys: system.select::<journeys::Entity>().count(db.conn()).await?,
        touchpoints: system
            .select::<touchpoints::Entity>()
            .count(db.conn())
            .await?,
    })
}

/// A GraphQL client with the benchmark token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    authorization: String,
}

impl Client {
    pub fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            endpoint: format!("{url}/graphql"),
            authorization: format!("Bearer {token}"),
        })
    }

    /// Runs an operation; `Err` for transport failures, `Ok(body)` otherwise.
    pub async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("authorization", &self.authorization)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// Runs W1's nested read and reads only what the harness checks of the
    /// answer: whether it carries errors and how many patients came back.
    /// The server is measured with the same load generator on the same two
    /// cores, so its reading stays light (a full `Value` of the ~70 KB
    /// answer cost about 1 ms of the cores a request).
    pub async fn nested_page(&self, after: Option<String>) -> anyhow::Result<bool> {
        let body = self
            .http
            .post(&self.endpoint)
            .header("authorization", &self.authorization)
            .json(&json!({ "query": NESTED, "variables": { "after": after } }))
            .send()
            .await?
            .bytes()
            .await?;
        let answer: NestedAnswer = serde_json::from_slice(&body)?;
        Ok(answer.errors.is_none()
            && answer
                .data
                .and_then(|d| d.patients)
                .is_some_and(|p| !p.edges.is_empty()))
    }
}

/// What [`Client::nested_page`] reads of an answer; the rest is skipped
/// without being kept.
#[derive(serde::Deserialize)]
struct NestedAnswer {
    #[serde(default)]
    errors: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    data: Option<NestedData>,
}

#[derive(serde::Deserialize)]
struct NestedData {
    #[serde(default)]
    patients: Option<NestedPatients>,
}

#[derive(serde::Deserialize)]
struct NestedPatients {
    edges: Vec<serde::de::IgnoredAny>,
}

/// True when a GraphQL response carries errors.
pub fn failed(body: &Value) -> bool {
    body.get("errors").is_some_and(|e| !e.is_null())
}

/// Runs `workers` copies of `operation` for `duration` after a warm-up and
/// measures them.
async fn timed<F, Fut>(
    name: &str,
    server: &Server,
    workers: usize,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Figures>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let operation = Arc::new(operation);
    let warm_until = Instant::now() + WARM_UP;
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let start_gate = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let stop_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut handles = Vec::new();
    for worker in 0..workers {
        let operation = operation.clone();
        let results = results.clone();
        let gate = start_gate.clone();
        let stop_at = stop_at.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = 0u64;
            // Warm-up: not measured.
            while Instant::now() < warm_until {
                let _ = operation(worker, n).await;
                n += 1;
            }
            gate.wait().await;
            let until = stop_at
                .lock()
                .expect("lock")
                .expect("set before the gate opens");
            while Instant::now() < until {
                let started = Instant::now();
                match operation(worker, n).await {
                    Ok(true) => latencies.push(started.elapsed()),
                    _ => errors += 1,
                }
                n += 1;
            }
            let mut all = results.lock().await;
            all.0.extend(latencies);
            all.1 += errors;
        }));
    }
    // Every worker has warmed up: measure from here.
    while Instant::now() < warm_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    *stop_at.lock().expect("lock") = Some(Instant::now() + duration);
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let own_before = crate::server::own_cpu_seconds();
    let started = Instant::now();
    start_gate.wait().await;
    for handle in handles {
        handle.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    let own = crate::server::own_cpu_seconds() - own_before;
    let statements = server.statements().await? - statements_before;
    let (latencies, errors) = std::mem::take(&mut *results.lock().await);
    let requests = latencies.len();
    Ok(Figures {
        name: name.to_string(),
        requests,
        errors,
        seconds,
        statements_per_request: statements as f64 / (requests + errors).max(1) as f64,
        latencies,
        server_cpu_seconds: cpu,
        server_peak_mib: server.peak_rss_mib(),
        loadgen_cpu_seconds: own,
        loadgen_seconds: seconds,
        ..Default::default()
    })
}

/// Requests the open loop lets be in flight before it counts a scheduled
/// one as not sent (the server is that far behind).
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 2_000;

/// Starts `operation` at a fixed `rate` for `duration`, whether or not the
/// earlier ones have answered, and measures each from the moment it was
/// scheduled: a server that falls behind shows in the latencies instead of
/// slowing the load (no coordinated omission).
async fn open_loop<F, Fut>(
    name: &str,
    server: &Server,
    rate: f64,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Figures>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send + 'static,
{
    let rate = rate.max(1.0);
    let operation = Arc::new(operation);
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let own_before = crate::server::own_cpu_seconds();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut not_sent = 0usize;
    let mut n = 0u64;
    while started.elapsed() < duration {
        let scheduled = ticks.tick().await.into_std();
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= OPEN_LOOP_MAX_IN_FLIGHT {
            not_sent += 1;
            continue;
        }
        in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let operation = operation.clone();
        let in_flight = in_flight.clone();
        handles.push(tokio::spawn(async move {
            let ok = matches!(operation(n).await, Ok(true));
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            (ok, scheduled.elapsed())
        }));
        n += 1;
    }
    let mut figures = Figures {
        name: name.to_string(),
        ..Default::default()
    };
    for handle in handles {
        match handle.await {
            Ok((true, latency)) => {
                figures.requests += 1;
                figures.latencies.push(latency);
            }
            _ => figures.errors += 1,
        }
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.server_cpu_seconds = server.cpu_seconds() - cpu_before;
    figures.loadgen_cpu_seconds = crate::server::own_cpu_seconds() - own_before;
    figures.loadgen_seconds = figures.seconds;
    figures.statements_per_request = (server.statements().await? - statements_before) as f64
        / (figures.requests + figures.errors).max(1) as f64;
    figures.server_peak_mib = server.peak_rss_mib();
    figures.notes.push(format!(
        "open loop at {rate:.0}/s, latency from the scheduled send time{}",
        if not_sent > 0 {
            format!("; {not_sent} not sent ({OPEN_LOOP_MAX_IN_FLIGHT} already in flight)")
        } else {
            String::new()
        }
    ));
    Ok(figures)
}

/// The share of the closed-loop throughput the open loop offers.
const OPEN_LOOP_SHARE: f64 = 0.8;

const NESTED: &str = r#"query Nested($after: String) {
  patients(first: 50, after: $after) {
    pageInfo { endCursor hasNextPage }
    edges { node {
      id givenName familyName
      journeys { id status stalled currentStage { id name category } }
      touchpoints(first: 5) { edges { node { id channel occurredAt emotion } } }
      feedback(first: 3) { edges { node { id kind score } } }
    } }
  }
}"#;

/// W1: pages of 50 patients with their journeys, current stages, last five
/// touchpoints and last three feedback.
pub async fn nested_read(
    client: &Client,
    server: &Server,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Figures>> {
    // Twenty pages to cycle through, as front ends page.
    let mut cursors: Vec<Option<String>> = vec![None];
    while cursors.len() < 20 {
        let body = client
            .gql(
                NESTED,
                json!({ "after": cursors.last().cloned().flatten() }),
            )
            .await?;
        let page = &body["data"]["patients"]["pageInfo"];
        match page["endCursor"].as_str() {
            Some(cursor) if page["hasNextPage"] == true => cursors.push(Some(cursor.to_string())),
            _ => break,
        }
    }
    let pages = cursors.len();
    let cursors = Arc::new(cursors);
    let cursors_for_open = cursors.clone();
    let client_for_open = client.clone();
    let client = client.clone();
    let mut figures = timed(
        &format!("W1 nested read: patients(first: 50) with journeys, stages, touchpoints(first: 5), feedback(first: 3) — {workers} connections"),
        server,
        workers,
        duration,
        move |worker, n| {
            let client = client.clone();
            let cursors = cursors.clone();
            async move {
                let after = cursors[(worker + n as usize) % cursors.len()].clone();
                client.nested_page(after).await
            }
        },
    )
    .await?;
    figures
        .notes
        .push(format!("{pages} pages of 50 patients cycled"));
    let rate = figures.throughput() * OPEN_LOOP_SHARE;
    let client = client_for_open.clone();
    let cursors = cursors_for_open.clone();
    let open = open_loop(
        &format!(
            "W1 nested read, open loop at {:.0}% of that",
            OPEN_LOOP_SHARE * 100.0
        ),
        server,
        rate,
        duration,
        move |n| {
            let client = client.clone();
            let cursors = cursors.clone();
            async move {
                let after = cursors[n as usize % cursors.len()].clone();
                client.nested_page(after).await
            }
        },
    )
    .await?;
    Ok(vec![figures, open])
}

const ACTIVE_JOURNEYS: &str = r#"query($after: String) {
  journeys(first: 100, after: $after, filter: {status: ACTIVE}) {
    pageInfo { endCursor hasNextPage }
    edges { node { id version currentStage { id } pathway { stages { id terminal } } } }
  }
}"#;

const MOVE: &str = r#"mutation Move($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) { journey { id version } }
}"#;

/// A journey moved back and forth between two non-terminal stages of its
/// pathway, with `expectedVersion` (W2, W3 and W4 move journeys this way).
pub struct Mover {
    journey: String,
    version: i64,
    here: String,
    there: String,
}

impl Mover {
    /// Moves the journey to its other stage: `Ok(true)` when the move
    /// committed, `Ok(false)` when the server refused it.
    pub async fn step(&mut self, client: &Client) -> anyhow::Result<bool> {
        let body = client
            .gql(
                MOVE,
                json!({ "input": { "journeyId": self.journey, "stageId": self.there, "expectedVersion": self.version } }),
            )
            .await?;
        if failed(&body) {
            return Ok(false);
        }
        self.version = body["data"]["moveJourneyToStage"]["journey"]["version"]
            .as_i64()
            .unwrap_or(self.version + 1);
        std::mem::swap(&mut self.here, &mut self.there);
        Ok(true)
    }
}

/// Finds active journeys, each on a pathway with another non-terminal stage
/// to move to: at least `wanted` of them when the clinic has that many.
pub async fn movers(client: &Client, wanted: usize) -> anyhow::Result<Vec<Mover>> {
    let mut movers = Vec::new();
    let mut after: Option<String> = None;
    while movers.len() < wanted {
        let body = client
            .gql(ACTIVE_JOURNEYS, json!({ "after": after }))
            .await?;
        let page = &body["data"]["journeys"];
        for edge in page["edges"].as_array().context("no journeys")? {
            let node = &edge["node"];
            let here = node["currentStage"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let there = node["pathway"]["stages"]
                .as_array()
                .and_then(|stages| {
                    stages
                        .iter()
                        .find(|s| s["terminal"] == false && s["id"] != here.as_str())
                        .and_then(|s| s["id"].as_str())
                })
                .map(str::to_string);
            if let Some(there) = there {
                movers.push(Mover {
                    journey: node["id"].as_str().unwrap_or_default().to_string(),
                    version: node["version"].as_i64().unwrap_or(1),
                    here,
                    there,
                });
            }
        }
        match page["pageInfo"]["endCursor"].as_str() {
            Some(cursor) if page["pageInfo"]["hasNextPage"] == true => {
                after = Some(cursor.to_string())
            }
            _ => break,
        }
    }
    Ok(movers)
}

/// Stage moves made at a fixed rate, and how they went.
pub struct PacedMoves {
    /// Moves that committed.
    pub committed: usize,
    /// Moves refused or failed.
    pub failed: usize,
    /// Ticks without a move because every journey had one in flight (the
    /// server is behind the rate).
    pub skipped: usize,
    /// Seconds from the first move to the last answer.
    pub seconds: f64,
    /// Time of each committed move from its scheduled start to its answer.
    pub latencies: Vec<Duration>,
}

/// Starts `rate` moves per second for `duration`, each on the next free
/// journey of `movers` (a journey whose last move is still in flight is
/// skipped, so `expectedVersion` never races), and waits for every answer.
pub async fn paced_moves(
    client: &Client,
    movers: &[Arc<Mutex<Mover>>],
    rate: u32,
    duration: Duration,
) -> PacedMoves {
    let mut tally = PacedMoves {
        committed: 0,
        failed: 0,
        skipped: 0,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    if movers.is_empty() || rate == 0 {
        return tally;
    }
    // The default (burst) behaviour catches up on ticks missed while this
    // task was busy, which keeps the rate fixed over the whole run.
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let started = Instant::now();
    let mut next = 0usize;
    let mut inflight = Vec::new();
    while started.elapsed() < duration {
        let scheduled = ticks.tick().await.into_std();
        let free = (0..movers.len()).find_map(|offset| {
            movers[(next + offset) % movers.len()]
                .clone()
                .try_lock_owned()
                .ok()
                .map(|guard| (offset, guard))
        });
        let Some((offset, mut mover)) = free else {
            tally.skipped += 1;
            continue;
        };
        next += offset + 1;
        let client = client.clone();
        inflight.push(tokio::spawn(async move {
            let committed = matches!(mover.step(&client).await, Ok(true));
            (committed, scheduled.elapsed())
        }));
    }
    for handle in inflight {
        match handle.await {
            Ok((true, latency)) => {
                tally.committed += 1;
                tally.latencies.push(latency);
            }
            _ => tally.failed += 1,
        }
    }
    tally.seconds = started.elapsed().as_secs_f64();
    tally
}

/// W2: `moveJourneyToStage` on active journeys, each worker with journeys of
/// its own, alternating between two stages with `expectedVersion`.
pub async fn stage_moves(
    client: &Client,
    server: &Server,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Figures>> {
    let movers = movers(client, workers * 50).await?;
    anyhow::ensure!(
        movers.len() >= workers,
        "too few active journeys to move ({})",
        movers.len()
    );
    let per_worker = movers.len() / workers;
    let mut shares: Vec<Arc<Mutex<Vec<Mover>>>> = Vec::new();
    let mut movers = movers.into_iter();
    for _ in 0..workers {
        shares.push(Arc::new(Mutex::new(
            movers.by_ref().take(per_worker).collect(),
        )));
    }
    let shares = Arc::new(shares);
    let open_shares = shares.clone();
    let open_client = client.clone();
    let client = client.clone();
    let closed = timed(
        &format!("W2 stage moves: moveJourneyToStage with expectedVersion, events included — {workers} connections"),
        server,
        workers,
        duration,
        move |worker, n| {
            let client = client.clone();
            let shares = shares.clone();
            async move {
                let mut mine = shares[worker].lock().await;
                let index = n as usize % mine.len();
                mine[index].step(&client).await
            }
        },
    )
    .await?;

    // Open loop: the same journeys, each moved by whichever tick finds it free.
    let mut movers = Vec::new();
    for share in open_shares.iter() {
        movers.extend(
            std::mem::take(&mut *share.lock().await)
                .into_iter()
                .map(|m| Arc::new(Mutex::new(m))),
        );
    }
    let rate = closed.throughput() * OPEN_LOOP_SHARE;
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let own_before = crate::server::own_cpu_seconds();
    let paced = paced_moves(&open_client, &movers, rate.max(1.0) as u32, duration).await;
    let open = Figures {
        name: format!(
            "W2 stage moves, open loop at {:.0}% of that",
            OPEN_LOOP_SHARE * 100.0
        ),
        requests: paced.committed,
        errors: paced.failed,
        seconds: paced.seconds,
        statements_per_request: (server.statements().await? - statements_before) as f64
            / (paced.committed + paced.failed).max(1) as f64,
        server_cpu_seconds: server.cpu_seconds() - cpu_before,
        server_peak_mib: server.peak_rss_mib(),
        loadgen_cpu_seconds: crate::server::own_cpu_seconds() - own_before,
        loadgen_seconds: paced.seconds,
        notes: vec![format!(
            "open loop at {rate:.0}/s, latency from the scheduled send time{}",
            if paced.skipped > 0 {
                format!(
                    "; {} ticks without a free journey (all {} in flight)",
                    paced.skipped,
                    movers.len()
                )
            } else {
                String::new()
            }
        )],
        latencies: paced.latencies,
        ..Default::default()
    };
    Ok(vec![closed, open])
}

const MAP: &str = r#"query Map($p: ID!) {
  journeyMap(pathwayId: $p) {
    stages {
      stage { id name }
      activeCount enteredCount exitedCount movedForwardCount movedBackCount droppedCount
      conversionRate medianHoursInStage p90HoursInStage stalledCount blindSpotCount
      touchpointCount touchpointsPerJourney channelMix { channel count } averageEmotion momentsOfTruth
      nps csat overdueFollowUps painPoints { score comment }
    }
    flows { from { id } to { id } kind count }
    svg
  }
}"#;

/// W5: the full journey map (figures and SVG) of every pathway, one at a time.
pub async fn journey_map(
    client: &Client,
    server: &Server,
    rounds: usize,
) -> anyhow::Result<Figures> {
    let body = client.gql("{ pathways { id name } }", json!({})).await?;
    let pathways: Vec<(String, String)> = body["data"]["pathways"]
        .as_array()
        .context("no pathways")?
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_string(),
                p["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // One untimed round warms caches, as a dashboard's first load would.
    for (id, _) in &pathways {
        client.gql(MAP, json!({ "p": id })).await?;
    }
    let statements_before = server.statements().await?;
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let mut figures = Figures {
        name: format!(
            "W5 journey map: journeyMap (all figures and the SVG) of {} pathways × {rounds} rounds",
            pathways.len()
        ),
        ..Default::default()
    };
    let mut worst: Vec<(String, f64)> = pathways
        .iter()
        .map(|(_, name)| (name.clone(), 0.0))
        .collect();
    for _ in 0..rounds {
        for (i, (id, _)) in pathways.iter().enumerate() {
            let t = Instant::now();
            let body = client.gql(MAP, json!({ "p": id })).await?;
            let elapsed = t.elapsed();
            if failed(&body) {
                figures.errors += 1;
            } else {
                figures.requests += 1;
                figures.latencies.push(elapsed);
                worst[i].1 = worst[i].1.max(elapsed.as_secs_f64() * 1000.0);
            }
        }
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.server_cpu_seconds = server.cpu_seconds() - cpu_before;
    figures.statements_per_request = (server.statements().await? - statements_before) as f64
        / (figures.requests + figures.errors).max(1) as f64;
    figures.server_peak_mib = server.peak_rss_mib();
    figures.notes.push(format!(
        "slowest per pathway: {}",
        worst
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.0} ms"))
            .collect::<Vec<_>>()
            .join(" · ")
    ));
    Ok(figures)
}
