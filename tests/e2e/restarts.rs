//! Restarts that clients do not notice, and crashes that lose nothing: the
//! built binary as a child process, stopped with SIGTERM (as an orchestrator
//! does in a rolling restart) or killed with SIGKILL (a crash, an OOM kill, a
//! power cut of the process) while clients keep writing and listening.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use journeymap::{
    db::Db,
    sea_orm::{ConnectionTrait, Statement},
};
use journeymap_tests::{
    Backend, PathwayIds, ServerProcess, WsClient, WsEvent, fresh_database, gql_at, journey_at,
    on_both_backends, open_database, pathway_at, prepare_database, receiver::Receiver, scalar_i64,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

const MOVE: &str = "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id version } } }";

const MOVES: &str = "subscription($after: String) { journeyStageChanged(after: $after) { id sequence cursor journey { id version } } }";

/// A GraphQL call that may fail (the server is down or going away): the
/// answer's `data`, or `None` for no answer or an answer with errors.
async fn try_gql(url: &str, token: &str, query: &str, variables: Value) -> Option<Value> {
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    if answer["errors"].is_null() {
        Some(answer["data"].clone())
    } else {
        None
    }
}

const CREATE_PATIENT: &str =
    "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }";
const START_JOURNEY: &str =
    "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }";

// --- SIGTERM ------------------------------------------------------------------

/// Shutdown settings of the SIGTERM test: two seconds of "not ready" before
/// the listener closes (room for a loaded machine to answer within them),
/// four seconds of grace after.
const SHUTDOWN_ARGS: &[&str] = &[
    "--allow-private-webhook-targets",
    "--webhook-retry-schedule",
    "0,0.3,0.3,0.3",
    "--sweep-interval-secs",
    "0",
    "--shutdown-delay-secs",
    "2",
    "--shutdown-grace-secs",
    "4",
];

/// SIGTERM, one step after another: readiness turns 503 while requests are
/// still served; a request in flight (its body half sent) finishes after the
/// listener closed; a subscriber gets close code 1001; a webhook send held
/// open by its receiver gives its lease back (the production lease of 60 s),
/// so the next server sends it within seconds; the process exits 0.
async fn sigterm_drains_then_stops(backend: Backend) {
    let (database_url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&database_url).await;
    let receiver = Receiver::holding(
        Arc::new(|_: &str, _: usize| (StatusCode::OK, None)),
        Duration::ZERO,
        Arc::new(|_: &str, attempt: usize| attempt == 0),
    )
    .await;
    let mut server = ServerProcess::start(SERVER, &database_url, SHUTDOWN_ARGS).await;
    let endpoint = gql_at(
        &server.url,
        &token,
        "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }",
        json!({ "input": { "url": receiver.url, "eventTypes": ["journey.stage_changed"] } }),
    )
    .await;
    assert!(
        endpoint["data"]["createWebhookEndpoint"]["endpoint"]["id"].is_string(),
        "{endpoint}"
    );
    let pathway = pathway_at(&server.url, &token, "Injectables").await;
    for n in 0..3 {
        let (_, journey) = journey_at(
            &server.url,
            &token,
            &pathway.id,
            &format!("T{n}"),
            "Restart",
        )
        .await;
        let moved = gql_at(
            &server.url,
            &token,
            MOVE,
            json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
        )
        .await;
        assert!(moved["errors"].is_null(), "{moved}");
    }
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| r.holding_now() == 3)
            .await,
        "the three sends are in flight, held by the receiver ({} held)",
        receiver.holding_now()
    );
    // On PostgreSQL a second replica runs meanwhile: every delivery is
    // leased by the first, so it sends nothing until they are given back.
    let replica = match backend {
        Backend::Postgres => Some(ServerProcess::start(SERVER, &database_url, SHUTDOWN_ARGS).await),
        Backend::Sqlite => None,
    };

    let mut subscriber = WsClient::connect_to_with_token(server.addr, &token).await;
    subscriber.subscribe("moves", MOVES, json!({})).await;
    let body = json!({ "query": "{ viewer { clinic { slug } } }" }).to_string();
    let mut in_flight = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: journeymap\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let terminated = Instant::now();
    server.terminate();
    let client = reqwest::Client::new();
    let readiness = loop {
        let answer = client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .expect("still accepting during the delay");
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            break answer.text().await.unwrap();
        }
        assert!(
            terminated.elapsed() < Duration::from_millis(1500),
            "readiness turns 503 at once after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(readiness.contains("shutting down"), "{readiness}");
    let served = gql_at(
        &server.url,
        &token,
        "{ viewer { clinic { slug } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        served["data"]["viewer"]["clinic"]["slug"], "a",
        "requests are still served while not ready"
    );
    assert!(
        terminated.elapsed() < Duration::from_secs(2),
        "checked within the delay"
    );

    // The listener closes after the delay; the request in flight finishes.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(terminated.elapsed())).await;
    in_flight
        .write_all(&body.as_bytes()[body.len() / 2..])
        .await
        .expect("the request in flight is still read");
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        in_flight.read_to_string(&mut answer),
    )
    .await
    .expect("the request in flight is answered")
    .expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""slug":"a""#), "{answer}");

    match subscriber.next_within(Duration::from_secs(5)).await {
        Some(WsEvent::Closed(Some(1001), reason)) => {
            assert!(reason.contains("shutting down"), "{reason}")
        }
        other => panic!("expected close 1001 (going away), got {other:?}"),
    }

    let status = server
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the server exits within its delay and grace");
    assert!(status.success(), "exit status {status}");
    let stopped = terminated.elapsed();
    let db = open_database(&database_url).await;
    let leased = scalar_i64(
        &db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING' AND locked_until IS NOT NULL",
    )
    .await;
    db.close().await;
    assert_eq!(
        leased, 0,
        "the sends cut short by shutdown gave their leases back"
    );

    let survivor = match replica {
        Some(replica) => replica,
        None => ServerProcess::start(SERVER, &database_url, SHUTDOWN_ARGS).await,
    };
    let received = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().filter(|x| x.attempt >= 1).count() >= 3
        })
        .await;
    let again: BTreeSet<&str> = received
        .iter()
        .filter(|x| x.attempt >= 1)
        .map(|x| x.webhook_id.as_str())
        .collect();
    let first: BTreeSet<&str> = received
        .iter()
        .filter(|x| x.attempt == 0)
        .map(|x| x.webhook_id.as_str())
        .collect();
    assert_eq!(
        again, first,
        "each send cut short is sent again, with the same webhook-id"
    );
    assert!(
        terminated.elapsed() < stopped + Duration::from_secs(15),
        "sent again within seconds, not after the 60 s lease"
    );
    survivor.kill().await;
}

on_both_backends!(backend: sigterm_drains_then_stops);

// --- rolling restart ------------------------------------------------------------

/// The replicas a load balancer would send to: those not shutting down.
#[derive(Clone, Default)]
struct Rotation(Arc<Mutex<Vec<(String, std::net::SocketAddr)>>>);

impl Rotation {
    fn add(&self, server: &ServerProcess) {
        self.0
            .lock()
            .unwrap()
            .push((server.url.clone(), server.addr));
    }

    fn remove(&self, server: &ServerProcess) {
        self.0.lock().unwrap().retain(|(url, _)| *url != server.url);
    }

    /// The `n`th replica in rotation (round robin), if any is.
    fn pick(&self, n: usize) -> Option<(String, std::net::SocketAddr)> {
        let replicas = self.0.lock().unwrap();
        (!replicas.is_empty()).then(|| replicas[n % replicas.len()].clone())
    }
}

/// A subscriber stays subscribed while every replica is restarted in turn
/// (SIGTERM, then a new process): each time its replica goes away it is told
/// so (1001), reconnects to one in rotation and resumes from its cursor. A
/// writer keeps moving journeys through it all. The subscriber ends with
/// exactly the clinic's stage changes, in order: none missed, none twice.
/// On PostgreSQL two replicas share the database; on SQLite the one process
/// is restarted twice (the subscriber waits for it to come back).
async fn a_subscriber_keeps_receiving_across_a_rolling_restart(backend: Backend) {
    let (database_url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&database_url).await;
    let args = &[
        "--sweep-interval-secs",
        "0",
        "--shutdown-delay-secs",
        "1",
        "--shutdown-grace-secs",
        "3",
    ];
    let replicas = match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    };
    let rotation = Rotation::default();
    let mut servers = Vec::new();
    for _ in 0..replicas {
        let server = ServerProcess::start(SERVER, &database_url, args).await;
        rotation.add(&server);
        servers.push(server);
    }
    let pathway = pathway_at(&servers[0].url, &token, "Injectables").await;
    let mut journeys = Vec::new();
    for n in 0..4 {
        journeys.push(
            journey_at(
                &servers[0].url,
                &token,
                &pathway.id,
                &format!("R{n}"),
                "Restart",
            )
            .await
            .1,
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<(String, i64)>::new()));
    let writer = {
        let (rotation, stop, acknowledged, token) = (
            rotation.clone(),
            stop.clone(),
            acknowledged.clone(),
            token.clone(),
        );
        let stages = [pathway.consultation.clone(), pathway.treatment.clone()];
        let journeys = journeys.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Some((url, _)) = rotation.pick(n) else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let journey = &journeys[n % journeys.len()];
                let stage = &stages[(n / journeys.len()) % 2];
                if let Some(data) = try_gql(
                    &url,
                    &token,
                    MOVE,
                    json!({ "input": { "journeyId": journey, "stageId": stage } }),
                )
                .await
                {
                    let moved = &data["moveJourneyToStage"]["journey"];
                    acknowledged.lock().unwrap().insert((
                        moved["id"].as_str().unwrap().to_string(),
                        moved["version"].as_i64().unwrap(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let heard = Arc::new(Mutex::new(Vec::<Value>::new()));
    let going_away = Arc::new(Mutex::new(0usize));
    let listener = {
        let (rotation, stop, heard, going_away, token) = (
            rotation.clone(),
            stop.clone(),
            heard.clone(),
            going_away.clone(),
            token.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0usize;
            let mut cursor = Value::Null;
            'connect: while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Some((_, addr)) = rotation.pick(n) else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(mut client) = WsClient::try_connect_to_with_token(addr, &token).await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                client
                    .subscribe("moves", MOVES, json!({ "after": cursor }))
                    .await;
                loop {
                    match client.next_within(Duration::from_millis(500)).await {
                        None if stop.load(Ordering::Relaxed) => break 'connect,
                        None => continue,
                        Some(WsEvent::Message(m)) if m["type"] == "next" => {
                            let event = m["payload"]["data"]["journeyStageChanged"].clone();
                            assert!(event.is_object(), "{m}");
                            cursor = event["cursor"].clone();
                            heard.lock().unwrap().push(event);
                        }
                        Some(WsEvent::Message(m)) => panic!("unexpected message {m}"),
                        Some(WsEvent::Closed(code, reason)) => {
                            assert_eq!(code, Some(1001), "closed with {code:?} {reason}");
                            *going_away.lock().unwrap() += 1;
                            continue 'connect;
                        }
                    }
                }
            }
        })
    };

    // Restart every replica in turn (on SQLite the one replica, twice),
    // starting with the one the subscriber joined.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let restarts = if replicas == 1 { 2 } else { replicas };
    for n in 0..restarts {
        let mut old = servers.remove(n % replicas);
        rotation.remove(&old);
        old.terminate();
        let status = old
            .exited_within(Duration::from_secs(15))
            .await
            .expect("a replica stops within its delay and grace");
        assert!(status.success(), "exit status {status}");
        let new = ServerProcess::start(SERVER, &database_url, args).await;
        rotation.add(&new);
        servers.insert(n % replicas, new);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    // The log is the truth: every stage change it holds, in order.
    let mut logged = Vec::new();
    let mut logged_moves = BTreeSet::new();
    let mut after = Value::Null;
    loop {
        let page = gql_at(
            &servers[0].url,
            &token,
            "query($after: String) { events(after: $after, first: 100, types: [\"journey.stage_changed\"]) { edges { cursor node { id data } } pageInfo { hasNextPage } } }",
            json!({ "after": after }),
        )
        .await;
        let events = &page["data"]["events"];
        let edges = events["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"));
        for edge in edges {
            let node = &edge["node"];
            logged.push(node["id"].as_str().unwrap().to_string());
            logged_moves.insert((
                node["data"]["journeyId"].as_str().unwrap().to_string(),
                node["data"]["version"].as_i64().unwrap(),
            ));
        }
        if events["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while heard.lock().unwrap().len() < logged.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    listener.abort();
    let heard = heard.lock().unwrap().clone();
    let heard_ids: Vec<String> = heard
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let heard_set: BTreeSet<&String> = heard_ids.iter().collect();
    assert_eq!(heard_set.len(), heard_ids.len(), "no event heard twice");
    assert_eq!(
        heard_ids, logged,
        "the subscriber heard exactly the log's stage changes, in order"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 20,
        "the writer kept writing: {} moves",
        acknowledged.len()
    );
    let missing: Vec<_> = acknowledged.difference(&logged_moves).collect();
    assert!(
        missing.is_empty(),
        "acknowledged moves missing from the log: {missing:?}"
    );
    let going_away = *going_away.lock().unwrap();
    assert!(
        going_away >= 1,
        "the subscriber's replica went away at least once"
    );
    for server in servers {
        server.kill().await;
    }
}

on_both_backends!(backend: a_subscriber_keeps_receiving_across_a_rolling_restart);

// --- crash loop -------------------------------------------------------------------

/// A write the server acknowledged, named as its event names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Write {
    Patient(String),
    Journey(String),
    /// A stage move: the journey and its version after the move.
    Move(String, i64),
    Touchpoint(String),
    Feedback(String),
}

impl Write {
    /// The write an event in the log records, if it is one of these kinds.
    fn of_event(event_type: &str, data: &Value) -> Option<Self> {
        let id = |key: &str| data[key].as_str().map(str::to_string);
        Some(match event_type {
            "patient.created" => Write::Patient(id("patientId")?),
            "journey.started" => Write::Journey(id("journeyId")?),
            "journey.stage_changed" => Write::Move(id("journeyId")?, data["version"].as_i64()?),
            "touchpoint.logged" => Write::Touchpoint(id("touchpointId")?),
            "feedback.submitted" => Write::Feedback(id("feedbackId")?),
            _ => return None,
        })
    }
}

/// One client's writes: patients with their journeys, moves, touchpoints
/// and feedback, in turn, against whichever server is up, until `stop`.
/// Each acknowledged write is recorded; a write whose answer never came (the
/// server died under it) is not, whether or not it committed.
async fn keep_writing(
    client: usize,
    current: Arc<Mutex<Option<String>>>,
    token: String,
    pathway: Arc<PathwayIds>,
    acknowledged: Arc<Mutex<Vec<Write>>>,
    stop: Arc<AtomicBool>,
) {
    let mut mine: Vec<(String, String)> = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Some(url) = current.lock().unwrap().clone() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        n += 1;
        let write = if mine.is_empty() || n.is_multiple_of(4) {
            let Some(created) = try_gql(
                &url,
                &token,
                CREATE_PATIENT,
                json!({ "input": { "givenName": format!("C{client}n{n}"), "familyName": "Crash" } }),
            )
            .await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let patient = created["createPatient"]["patient"]["id"]
                .as_str()
                .unwrap()
                .to_string();
            acknowledged
                .lock()
                .unwrap()
                .push(Write::Patient(patient.clone()));
            try_gql(
                &url,
                &token,
                START_JOURNEY,
                json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
            )
            .await
            .map(|started| {
                let journey = started["startJourney"]["journey"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                mine.push((patient, journey.clone()));
                Write::Journey(journey)
            })
        } else {
            let (patient, journey) = mine[n % mine.len()].clone();
            match n % 4 {
                1 => {
                    let stage = ["consultation", "treatment"][(n / 4) % 2];
                    try_gql(
                        &url,
                        &token,
                        MOVE,
                        json!({ "input": { "journeyId": journey, "stageId": pathway.stage(stage) } }),
                    )
                    .await
                    .map(|moved| {
                        let journey = &moved["moveJourneyToStage"]["journey"];
                        Write::Move(
                            journey["id"].as_str().unwrap().to_string(),
                            journey["version"].as_i64().unwrap(),
                        )
                    })
                }
                2 => try_gql(
                    &url,
                    &token,
                    "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
                    json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS",
                                       "direction": "OUTBOUND", "kind": "check-in", "summary": "How are you feeling?" } }),
                )
                .await
                .map(|logged| {
                    Write::Touchpoint(logged["logTouchpoint"]["touchpoint"]["id"].as_str().unwrap().to_string())
                }),
                _ => try_gql(
                    &url,
                    &token,
                    "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
                    json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "CSAT", "score": 4 } }),
                )
                .await
                .map(|submitted| {
                    Write::Feedback(submitted["submitFeedback"]["feedback"]["id"].as_str().unwrap().to_string())
                }),
            }
        };
        match write {
            Some(write) => acknowledged.lock().unwrap().push(write),
            // Moving to the stage it is in already, or the server died.
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The clinic's log read on from `after` (its events' ids, sequences, types
/// and data), checked as it is read: every sequence number one more than the
/// one before, from 1.
struct LogReader {
    after: Value,
    last_sequence: i64,
    ids: BTreeSet<String>,
    writes: BTreeSet<Write>,
    transitions: BTreeSet<String>,
}

impl LogReader {
    fn new() -> Self {
        Self {
            after: Value::Null,
            last_sequence: 0,
            ids: BTreeSet::new(),
            writes: BTreeSet::new(),
            transitions: BTreeSet::new(),
        }
    }

    async fn read_on(&mut self, url: &str, token: &str) {
        loop {
            let page = gql_at(
                url,
                token,
                "query($after: String) { events(after: $after, first: 100) { edges { cursor node { id type sequence data } } pageInfo { hasNextPage } } }",
                json!({ "after": self.after }),
            )
            .await;
            let events = &page["data"]["events"];
            let edges = events["edges"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"));
            for edge in edges {
                let node = &edge["node"];
                let sequence = node["sequence"].as_i64().unwrap();
                assert_eq!(
                    sequence,
                    self.last_sequence + 1,
                    "the sequence goes on without a gap or a repeat: {node}"
                );
                self.last_sequence = sequence;
                assert!(
                    self.ids.insert(node["id"].as_str().unwrap().to_string()),
                    "an event logged twice: {node}"
                );
                let event_type = node["type"].as_str().unwrap();
                if let Some(write) = Write::of_event(event_type, &node["data"]) {
                    self.writes.insert(write);
                }
                if event_type == "journey.stage_changed" {
                    self.transitions
                        .insert(node["data"]["transitionId"].as_str().unwrap().to_string());
                }
                self.after = edge["cursor"].clone();
            }
            if events["pageInfo"]["hasNextPage"] != true {
                return;
            }
        }
    }
}

/// The row ids of `table`, as API ids would decode to them.
async fn row_ids(db: &Db, table: &str) -> BTreeSet<uuid::Uuid> {
    db.conn()
        .query_all_raw(Statement::from_string(
            db.backend(),
            format!("SELECT id FROM {table}"),
        ))
        .await
        .expect("ids")
        .iter()
        .map(|row| row.try_get::<uuid::Uuid>("", "id").expect("a uuid"))
        .collect()
}

fn uuid_of(api_id: &str) -> uuid::Uuid {
    journeymap::ids::decode(api_id).expect("an API id").1
}

/// After each restart, for every write acknowledged so far: its row is
/// there, its event is in the log, the log has no gap or repeat, and every
/// event has its webhook delivery, queued or done.
async fn check_nothing_lost(
    database_url: &str,
    url: &str,
    token: &str,
    acknowledged: &[Write],
    log: &mut LogReader,
) {
    log.read_on(url, token).await;
    let missing: Vec<&Write> = acknowledged
        .iter()
        .filter(|w| !log.writes.contains(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes without their event: {missing:?}"
    );
    let db = open_database(database_url).await;
    let tables = [
        ("patients", Vec::new()),
        ("journeys", Vec::new()),
        ("touchpoints", Vec::new()),
        ("feedback", Vec::new()),
        ("stage_transitions", Vec::new()),
    ];
    let mut expected: BTreeMap<&str, Vec<uuid::Uuid>> = tables.into_iter().collect();
    for write in acknowledged {
        let (table, id) = match write {
            Write::Patient(id) => ("patients", id),
            Write::Journey(id) => ("journeys", id),
            Write::Touchpoint(id) => ("touchpoints", id),
            Write::Feedback(id) => ("feedback", id),
            Write::Move(..) => continue,
        };
        expected.get_mut(table).unwrap().push(uuid_of(id));
    }
    expected
        .get_mut("stage_transitions")
        .unwrap()
        .extend(log.transitions.iter().map(|id| uuid_of(id)));
    for (table, ids) in &expected {
        let present = row_ids(&db, table).await;
        let lost = ids.iter().filter(|id| !present.contains(id)).count();
        assert_eq!(lost, 0, "{lost} acknowledged {table} rows lost");
    }
    let undelivered = scalar_i64(
        &db,
        "SELECT COUNT(*) FROM events e WHERE NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)",
    )
    .await;
    assert_eq!(undelivered, 0, "every event has its webhook delivery");
    let neither = scalar_i64(
        &db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status NOT IN ('PENDING', 'DELIVERED')",
    )
    .await;
    assert_eq!(neither, 0, "every delivery is queued or done");
    db.close().await;
}

/// Three clients write patients, journeys, moves, touchpoints and feedback
/// while the server is killed with SIGKILL at random moments, five times,
/// and started again each time. After every restart nothing acknowledged is
/// missing (see [`check_nothing_lost`]).
async fn a_crash_loop_loses_nothing(backend: Backend) {
    let (database_url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&database_url).await;
    let receiver = Receiver::start(
        Arc::new(|_: &str, _: usize| (StatusCode::OK, None)),
        Duration::ZERO,
    )
    .await;
    let args = &[
        "--allow-private-webhook-targets",
        "--sweep-interval-secs",
        "0",
    ];
    let mut server = ServerProcess::start(SERVER, &database_url, args).await;
    let endpoint = gql_at(
        &server.url,
        &token,
        "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }",
        json!({ "input": { "url": receiver.url } }),
    )
    .await;
    assert!(
        endpoint["data"]["createWebhookEndpoint"]["endpoint"]["id"].is_string(),
        "{endpoint}"
    );
    let pathway = Arc::new(pathway_at(&server.url, &token, "Injectables").await);
    let current = Arc::new(Mutex::new(Some(server.url.clone())));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|client| {
            tokio::spawn(keep_writing(
                client,
                current.clone(),
                token.clone(),
                pathway.clone(),
                acknowledged.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut log = LogReader::new();
    let mut before = 0;
    for round in 1..=5 {
        let pause = 400 + (uuid::Uuid::new_v4().as_u128() % 1200) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill().await;
        *current.lock().unwrap() = None;
        server = ServerProcess::start(SERVER, &database_url, args).await;
        *current.lock().unwrap() = Some(server.url.clone());
        let snapshot = acknowledged.lock().unwrap().clone();
        assert!(
            snapshot.len() > before,
            "round {round}: writes were acknowledged before the kill"
        );
        before = snapshot.len();
        check_nothing_lost(&database_url, &server.url, &token, &snapshot, &mut log).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let all = acknowledged.lock().unwrap().clone();
    check_nothing_lost(&database_url, &server.url, &token, &all, &mut log).await;
    let kinds: BTreeSet<&str> = all
        .iter()
        .map(|w| match w {
            Write::Patient(_) => "patient",
            Write::Journey(_) => "journey",
            Write::Move(..) => "move",
            Write::Touchpoint(_) => "touchpoint",
            Write::Feedback(_) => "feedback",
        })
        .collect();
    assert_eq!(kinds.len(), 5, "every kind of write was made: {kinds:?}");
    server.kill().await;
}

on_both_backends!(backend: a_crash_loop_loses_nothing);
