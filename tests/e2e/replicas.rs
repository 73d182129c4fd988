//! Whole server processes: several replicas on one PostgreSQL database
//! (subscriptions fan out between them, the overdue sweep announces each
//! follow-up once), and a server killed with SIGKILL while it holds leased
//! webhook deliveries. Nothing committed may be lost on the way to
//! subscribers and receivers.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use journeymap::{
    config::DatabaseConfig,
    db::Db,
    sea_orm::{ConnectionTrait, Statement},
};
use journeymap_tests::{
    Backend, PathwayIds, QUIET, ServerProcess, WsClient, fresh_database, gql_at, journey_at,
    on_both_backends, pathway_at, prepare_database,
    receiver::{Received, Receiver},
    warm_up,
};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

/// Seconds a claimed delivery stays leased in the SIGKILL test: short, so a
/// killed server's deliveries are taken over within seconds rather than the
/// production minute, and long enough to tell a takeover from a retry, and
/// for a second replica to start on a loaded machine (through a pooler too)
/// before the first one's leases run out.
const LEASE_SECS: u64 = 8;

/// A short retry schedule and lease of [`LEASE_SECS`].
const DELIVERY_ARGS: &[&str] = &[
    "--allow-private-webhook-targets",
    "--webhook-retry-schedule",
    "0,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
    "--webhook-lease-secs",
    "8",
    "--sweep-interval-secs",
    "0",
];

const MOVE: &str = "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }";

/// Creates a patient and starts their journey; returns the journey id.
async fn start_journey(url: &str, token: &str, pathway: &PathwayIds, name: &str) -> String {
    journey_at(url, token, &pathway.id, name, "Replica").await.1
}

async fn move_to(url: &str, token: &str, journey: &str, stage: &str) {
    let moved = gql_at(
        url,
        token,
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": stage } }),
    )
    .await;
    assert!(moved["errors"].is_null(), "{moved}");
}

/// Every event id of `event_type` in the clinic's log, in order.
async fn event_ids(url: &str, token: &str, event_type: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = gql_at(
            url,
            token,
            "query($after: String, $types: [String!]) { events(after: $after, first: 100, types: $types) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
            json!({ "after": after, "types": [event_type] }),
        )
        .await;
        let events = &page["data"]["events"];
        let edges = events["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"));
        ids.extend(
            edges
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_string()),
        );
        if events["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
}

async fn two_replicas_share_subscriptions() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let token = prepare_database(&database_url).await;
    let a = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let b = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;

    let pathway = pathway_at(&b.url, &token, "Injectables").await;
    let journey = start_journey(&b.url, &token, &pathway, "Noor").await;
    let warm = start_journey(&b.url, &token, &pathway, "Warm").await;

    // Subscribed on A; every move is made on B.
    let mut client = WsClient::connect_to_with_token(a.addr, &token).await;
    client
        .subscribe(
            "moves",
            "subscription { journeyStageChanged { sequence journey { id version } toStage { key } } }",
            json!({}),
        )
        .await;
    // Live on A for moves made on B (the NOTIFY relay included).
    warm_up(
        &b.url,
        &token,
        &mut [&mut client],
        "moves",
        &warm,
        [&pathway.consultation, &pathway.inquiry],
    )
    .await;
    let route = [
        "consultation",
        "treatment",
        "consultation",
        "treatment",
        "discharged",
    ];
    for key in route {
        move_to(&b.url, &token, &journey, pathway.stage(key)).await;
    }
    let mut heard = Vec::new();
    let mut last_sequence = 0;
    for _ in route {
        let next = tokio::time::timeout(Duration::from_secs(10), client.next_of("moves"))
            .await
            .expect("a move made on replica B reaches a subscriber on replica A within 10 s");
        let event = &next["data"]["journeyStageChanged"];
        assert_eq!(event["journey"]["id"], journey.as_str());
        let sequence = event["sequence"].as_i64().unwrap();
        assert!(sequence > last_sequence, "in commit order: {next}");
        last_sequence = sequence;
        heard.push(event["toStage"]["key"].as_str().unwrap().to_string());
    }
    assert_eq!(heard, route);
    assert_eq!(client.next_within(QUIET).await, None, "nothing twice");
    a.kill().await;
    b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_move_on_one_replica_reaches_subscribers_on_another_postgres() {
    two_replicas_share_subscriptions().await;
}

/// Two replicas writing one clinic at once: a reader paging the log on one
/// of them never sees a number before the numbers below it, and the numbers
/// run without a gap. Within a process one numbering round runs at a time
/// per clinic; across replicas only the clinic's numbering lock orders them
/// (the test fails once it is taken out of `journeymap_number_events`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn two_replicas_writing_one_clinic_number_in_order_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let token = prepare_database(&database_url).await;
    let a = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let b = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let pathway = pathway_at(&a.url, &token, "Injectables").await;
    let mut journeys = Vec::new();
    for n in 0..8 {
        journeys.push(start_journey(&a.url, &token, &pathway, &format!("Writer {n}")).await);
    }
    let events = r#"query($after: String) { events(after: $after, first: 50) {
      pageInfo { endCursor } edges { node { sequence } } } }"#;
    let first_page = gql_at(&a.url, &token, events, json!({ "after": null })).await;
    let before = first_page["data"]["events"]["edges"]
        .as_array()
        .unwrap()
        .len() as i64;
    let done = std::sync::atomic::AtomicBool::new(false);
    let writers = async {
        let writer = |n: usize| {
            let url = if n.is_multiple_of(2) { &a.url } else { &b.url };
            let (token, pathway, journey) = (&token, &pathway, &journeys[n]);
            async move {
                for step in 0..10_u32 {
                    let key = if step.is_multiple_of(2) {
                        "consultation"
                    } else {
                        "treatment"
                    };
                    move_to(url, token, journey, pathway.stage(key)).await;
                }
            }
        };
        futures::future::join_all((0..journeys.len()).map(writer)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = async {
        let mut seen: Vec<i64> = Vec::new();
        let mut cursor = Value::Null;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let page = gql_at(&a.url, &token, events, json!({ "after": cursor })).await;
            let page = &page["data"]["events"];
            let edges = page["edges"].as_array().expect("a page").clone();
            for edge in &edges {
                journeymap_tests::saw_next(&mut seen, edge["node"]["sequence"].as_i64().unwrap());
            }
            if !page["pageInfo"]["endCursor"].is_null() {
                cursor = page["pageInfo"]["endCursor"].clone();
            }
            if finished && edges.is_empty() {
                break seen;
            }
        }
    };
    let ((), seen) = futures::join!(writers, reader);
    // Every move emits its stage change (and may plan or cancel follow-ups):
    // at least the 80 moves' events after the setup's, all of them in order.
    assert!(seen.len() as i64 >= before + 80, "{} events", seen.len());
    assert_eq!(seen, (1..=seen.len() as i64).collect::<Vec<_>>());
    a.kill().await;
    b.kill().await;
}

/// Claimed deliveries of `database_url` still leased now: (message id, leased until).
async fn leased_deliveries(database_url: &str) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let db = Db::connect(&DatabaseConfig::new(database_url.to_string()))
        .await
        .expect("connect");
    let rows = db
        .conn()
        .query_all_raw(Statement::from_string(
            db.backend(),
            "SELECT message_id, locked_until FROM webhook_deliveries \
             WHERE status = 'PENDING' AND locked_until IS NOT NULL",
        ))
        .await
        .expect("deliveries");
    db.close().await;
    let now = chrono::Utc::now();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "message_id").unwrap(),
                row.try_get::<chrono::DateTime<chrono::Utc>>("", "locked_until")
                    .unwrap(),
            )
        })
        .filter(|(_, until)| *until > now)
        .collect()
}

/// Many stage changes, delivered by a server that is killed with SIGKILL
/// while it holds them: the receiver holds every first attempt open, so at
/// the kill each delivery is leased by the process that dies, mid-request.
/// The deliveries must come again, after their lease, from the server that
/// takes over (on PostgreSQL a second replica that joined while the first
/// held everything; on SQLite the restarted process), with the same
/// `webhook-id`, body and a valid signature, and none may be lost; the
/// survivor keeps serving and delivering meanwhile.
async fn nothing_is_lost_when_a_server_is_killed(backend: Backend) {
    let (database_url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&database_url).await;
    // First attempts: held open until the kill, and, were one answered
    // (those made after the kill), refused with 500. Later attempts: 200.
    let receiver = Receiver::holding(
        Arc::new(|_: &str, attempt: usize| {
            if attempt == 0 {
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            } else {
                (StatusCode::OK, None)
            }
        }),
        Duration::ZERO,
        Arc::new(|_: &str, attempt: usize| attempt == 0),
    )
    .await;

    let doomed = ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await;
    let endpoint = gql_at(
        &doomed.url,
        &token,
        "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id } } }",
        json!({ "input": { "url": receiver.url, "eventTypes": ["journey.stage_changed"] } }),
    )
    .await;
    let secret = endpoint["data"]["createWebhookEndpoint"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{endpoint}"))
        .to_string();
    let endpoint_id = endpoint["data"]["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let pathway = pathway_at(&doomed.url, &token, "Injectables").await;
    let route = ["consultation", "treatment", "consultation", "treatment"];
    let mut journeys = Vec::new();
    for n in 0..12 {
        journeys.push(start_journey(&doomed.url, &token, &pathway, &format!("Patient{n}")).await);
    }
    for key in route {
        for journey in &journeys {
            move_to(&doomed.url, &token, journey, pathway.stage(key)).await;
        }
    }
    let before_kill = journeys.len() * route.len();

    // The doomed server claims every delivery (48, under its concurrency of
    // 64) and the receiver holds each first attempt open.
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| r.holding_now() == before_kill)
            .await,
        "{} of {before_kill} first attempts held",
        receiver.holding_now()
    );
    let held: BTreeSet<String> = receiver
        .received()
        .iter()
        .filter(|r| r.held)
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(held.len(), before_kill, "one held attempt per event");

    // On PostgreSQL a second replica joins now: everything is leased by the
    // doomed one, so it may take nothing over yet.
    let replica = match backend {
        Backend::Postgres => Some(ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await),
        Backend::Sqlite => None,
    };
    // The database agrees: each held delivery is claimed, its lease running.
    let leased = leased_deliveries(&database_url).await;
    let leased_ids: BTreeSet<String> = leased.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        leased_ids, held,
        "the doomed server holds a lease on every delivery in flight"
    );
    assert_eq!(
        receiver.received().len(),
        before_kill,
        "nobody sent a leased delivery a second time"
    );

    doomed.kill().await;
    let killed_at = Instant::now();
    // Its sockets closed under every held request: it died holding them.
    assert!(
        receiver
            .wait_until(Duration::from_secs(10), |r| r.hung_up().len()
                == before_kill)
            .await,
        "{} of {before_kill} held requests saw the killed server hang up",
        receiver.hung_up().len()
    );
    receiver.release();
    let survivor = match replica {
        Some(replica) => replica,
        None => ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await,
    };

    // The survivor serves and delivers new work meanwhile.
    for journey in &journeys {
        move_to(&survivor.url, &token, journey, &pathway.discharged).await;
    }
    let expected = before_kill + journeys.len();
    let events = event_ids(&survivor.url, &token, "journey.stage_changed").await;
    assert_eq!(events.len(), expected, "every committed move has its event");

    // Delivered = an attempt after the first reached the receiver (the
    // first was held, or refused).
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            events
                .iter()
                .all(|id| r.iter().any(|x| x.webhook_id == *id && x.attempt >= 1))
        })
        .await;
    let mut by_id: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for request in &received {
        by_id
            .entry(request.webhook_id.as_str())
            .or_default()
            .push(request);
    }
    for id in &events {
        let attempts = by_id
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            attempts.len() >= 2,
            "event {id} was not delivered: {} attempt(s) reached the receiver",
            attempts.len()
        );
        for attempt in attempts {
            assert!(
                attempt.verifies(&secret),
                "event {id}: a signature does not verify"
            );
            assert_eq!(
                attempt.body, attempts[0].body,
                "event {id}: every attempt carries the same body"
            );
            let body = attempt.json();
            assert_eq!(body["id"], id.as_str());
            assert_eq!(body["type"], "journey.stage_changed");
        }
        if held.contains(id) {
            // Taken over once the lease ran out, not retried at once.
            let taken_over = attempts[1].at.duration_since(attempts[0].at);
            assert!(
                taken_over >= Duration::from_secs(LEASE_SECS) - Duration::from_millis(500),
                "event {id}: sent again {taken_over:?} after the held attempt, within its {LEASE_SECS} s lease"
            );
            assert!(
                attempts[1].at > killed_at,
                "event {id}: sent again before the kill"
            );
        }
    }
    assert!(
        by_id.keys().all(|id| events.iter().any(|e| e == id)),
        "only the endpoint's event type was sent"
    );

    // The server's own record agrees once the last settlements are written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = gql_at(
            &survivor.url,
            &token,
            "query($e: ID) { webhookDeliveries(endpointId: $e, status: DELIVERED, first: 1) { totalCount } }",
            json!({ "e": endpoint_id }),
        )
        .await;
        let count = delivered["data"]["webhookDeliveries"]["totalCount"].as_u64();
        if count == Some(expected as u64) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries recorded as DELIVERED: {delivered}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    survivor.kill().await;
}

on_both_backends!(backend: nothing_is_lost_when_a_server_is_killed);

fn hours_ago(hours: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339()
}

const OVERDUE_EVENTS: &str =
    r#"{ events(first: 100, types: ["follow_up.overdue"]) { edges { node { subject data } } } }"#;

/// Two replicas, each sweeping every second from the moment it starts, find
/// the same overdue follow-ups at once: each is announced exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn two_replicas_announce_each_overdue_follow_up_once_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let token = prepare_database(&database_url).await;
    // The history is laid out while nothing sweeps.
    let setup = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let pathway = pathway_at(&setup.url, &token, "Injectables").await;
    let mut overdue_journeys = BTreeSet::new();
    for name in ["Una", "Vic", "Wes", "Xio"] {
        let patient = gql_at(
            &setup.url,
            &token,
            "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
            json!({ "input": { "givenName": name, "familyName": "Sweep", "phone": "+14155550123" } }),
        )
        .await["data"]["createPatient"]["patient"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Started 5 h ago: the 2 h call-back is 3 h overdue.
        let started = gql_at(
            &setup.url,
            &token,
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": hours_ago(5) } }),
        )
        .await;
        overdue_journeys.insert(
            started["data"]["startJourney"]["journey"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{started}"))
                .to_string(),
        );
    }
    // One of them is called back (completed by hand) before anyone sweeps.
    let open = gql_at(
        &setup.url,
        &token,
        "{ followUps(filter: { overdue: true }, first: 100) { edges { node { id journey { id } } } } }",
        json!({}),
    )
    .await;
    let open = open["data"]["followUps"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(open.len(), 4, "{open:?}");
    let done = open[0]["node"].clone();
    let completed = gql_at(
        &setup.url,
        &token,
        "mutation($input: CompleteFollowUpInput!) { completeFollowUp(input: $input) { followUp { status } } }",
        json!({ "input": { "followUpId": done["id"] } }),
    )
    .await;
    assert_eq!(
        completed["data"]["completeFollowUp"]["followUp"]["status"], "DONE",
        "{completed}"
    );
    overdue_journeys.remove(done["journey"]["id"].as_str().unwrap());
    setup.kill().await;

    // Both replicas start at once; each sweeps on start and every second.
    let args = ["--sweep-interval-secs", "1", "--webhook-concurrency", "0"];
    let started = Instant::now();
    let (a, b) = tokio::join!(
        ServerProcess::start(SERVER, &database_url, &args),
        ServerProcess::start(SERVER, &database_url, &args)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = gql_at(&a.url, &token, OVERDUE_EVENTS, json!({})).await;
        let n = found["data"]["events"]["edges"]
            .as_array()
            .map_or(0, Vec::len);
        if n >= overdue_journeys.len() {
            break;
        }
        assert!(Instant::now() < deadline, "announced: {found}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let both replicas sweep a few more times each before counting.
    let swept_for = started.elapsed();
    if swept_for < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_secs(3) - swept_for).await;
    }
    tokio::time::sleep(QUIET).await;

    let announced = gql_at(&b.url, &token, OVERDUE_EVENTS, json!({})).await;
    let announced = announced["data"]["events"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    let journeys: Vec<&str> = announced
        .iter()
        .map(|e| e["node"]["data"]["journeyId"].as_str().unwrap())
        .collect();
    assert_eq!(
        journeys.len(),
        overdue_journeys.len(),
        "each overdue follow-up announced once: {announced:#?}"
    );
    assert_eq!(
        journeys
            .iter()
            .map(|j| j.to_string())
            .collect::<BTreeSet<_>>(),
        overdue_journeys,
        "the announced follow-ups are the open overdue ones, the completed one left out"
    );
    let ids: BTreeSet<&str> = announced
        .iter()
        .map(|e| e["node"]["data"]["followUpId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        announced.len(),
        "a follow-up was announced twice"
    );
    assert!(!ids.contains(done["id"].as_str().unwrap()));
    a.kill().await;
    b.kill().await;
}

/// `{ viewer { kind } }` on `url` with `token`: the kind, or the refusal's
/// HTTP status.
async fn viewer_kind(url: &str, token: &str) -> Result<String, StatusCode> {
    let response = reqwest::Client::new()
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ viewer { kind } }" }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    match body["data"]["viewer"]["kind"].as_str() {
        Some(kind) if status == StatusCode::OK => Ok(kind.to_string()),
        _ => Err(status),
    }
}

/// SQL statements `url`'s server made for requests so far (`/metrics`).
async fn statements_at(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix("journeymap_db_statements_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("journeymap_db_statements_total in /metrics:\n{text}")) as u64
}

/// Waits until `url` refuses `token` (401), for at most `within`.
async fn refused_within(url: &str, token: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        match viewer_kind(url, token).await {
            Err(StatusCode::UNAUTHORIZED) => return,
            answer if Instant::now() >= deadline => {
                panic!("{what}: still answered {answer:?} after {within:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A new API token with `patients:read`, created on `url`: its secret and id.
async fn new_token_at(url: &str, admin: &str, name: &str) -> (String, Value) {
    let created = gql_at(
        url,
        admin,
        "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { secret token { id } } }",
        json!({ "input": { "name": name, "scopes": ["patients:read"] } }),
    )
    .await;
    let secret = created["data"]["createApiToken"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    (
        secret,
        created["data"]["createApiToken"]["token"]["id"].clone(),
    )
}

/// Uses each (credential, viewer kind) on `url` until the server answers them
/// all without a statement: from memory, once its relay listens.
async fn until_answered_from_memory(url: &str, credentials: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (credential, kind) in credentials {
            assert_eq!(viewer_kind(url, credential).await.as_deref(), Ok(*kind));
        }
        let before = statements_at(url).await;
        for (credential, kind) in credentials {
            for _ in 0..3 {
                assert_eq!(viewer_kind(url, credential).await.as_deref(), Ok(*kind));
            }
        }
        if statements_at(url).await == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still looks credentials up after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Credentials a replica resolved moments ago come from its memory
/// (`auth::credentials`), and still stop working everywhere when they are
/// revoked on another replica: the revoking commit notifies every replica,
/// which forgets what it resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_credential_revoked_on_one_replica_stops_working_on_another_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let admin = prepare_database(&database_url).await;
    let a = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let b = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;

    let (secret, token_id) = new_token_at(&a.url, &admin, "CRM sync").await;
    let staff = gql_at(
        &a.url,
        &admin,
        "mutation($input: CreateStaffInput!) { createStaff(input: $input) { staff { id } } }",
        json!({ "input": { "email": "coordinator@clinic.example", "name": "Rosa Coordinator",
                           "role": "COORDINATOR", "password": "correct horse battery" } }),
    )
    .await;
    let staff_id = staff["data"]["createStaff"]["staff"]["id"].clone();
    assert!(staff_id.is_string(), "{staff}");
    let login: Value = reqwest::Client::new()
        .post(format!("{}/graphql", b.url))
        .json(&json!({
            "query": "mutation($input: LoginInput!) { login(input: $input) { accessToken } }",
            "variables": { "input": { "clinic": "a", "email": "coordinator@clinic.example",
                                      "password": "correct horse battery" } },
        }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("JSON");
    let access = login["data"]["login"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{login}"))
        .to_string();

    // B resolves each credential once (its relay is listening by now), then
    // answers it without a statement.
    until_answered_from_memory(&b.url, &[(&secret, "API_TOKEN"), (&access, "STAFF")]).await;

    // Revoked and disabled on A: refused on B at once (PostgreSQL's
    // notification, not the cache's 30 s lifetime).
    let revoked = gql_at(
        &a.url,
        &admin,
        "mutation($input: RevokeApiTokenInput!) { revokeApiToken(input: $input) { token { revokedAt } } }",
        json!({ "input": { "tokenId": token_id } }),
    )
    .await;
    assert!(revoked["errors"].is_null(), "{revoked}");
    refused_within(
        &b.url,
        &secret,
        Duration::from_secs(3),
        "a token revoked on A, on B",
    )
    .await;
    assert_eq!(
        viewer_kind(&b.url, &access).await.as_deref(),
        Ok("STAFF"),
        "a revocation forgets answers, not credentials"
    );
    let disabled = gql_at(
        &a.url,
        &admin,
        "mutation($input: SetStaffDisabledInput!) { setStaffDisabled(input: $input) { staff { disabled } } }",
        json!({ "input": { "staffId": staff_id, "disabled": true } }),
    )
    .await;
    assert!(disabled["errors"].is_null(), "{disabled}");
    refused_within(
        &b.url,
        &access,
        Duration::from_secs(3),
        "staff disabled on A, on B",
    )
    .await;
    assert_eq!(
        viewer_kind(&b.url, &admin).await.as_deref(),
        Ok("API_TOKEN")
    );
    a.kill().await;
    b.kill().await;
}

/// A credential changed behind Journeymap's back (an operator's `UPDATE`)
/// stops working too: PostgreSQL's triggers notify every replica. And a
/// replica that lost its notification connection may have missed such a
/// notification: it forgets every credential it resolved. Here a second token
/// is revoked with the triggers off, then the LISTEN connections are cut: the
/// token stops working well before the cache's 30 s lifetime. (A listener
/// that reconnected silently, as sqlx's `PgListener::recv` does, kept
/// answering it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn credentials_changed_behind_the_servers_back_stop_working_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let admin = prepare_database(&database_url).await;
    let server = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let (crm, _) = new_token_at(&server.url, &admin, "CRM sync").await;
    let (marketing, _) = new_token_at(&server.url, &admin, "Marketing sync").await;
    let secrets = [crm, marketing];
    until_answered_from_memory(
        &server.url,
        &[(&secrets[0], "API_TOKEN"), (&secrets[1], "API_TOKEN")],
    )
    .await;

    let db = Db::connect(&DatabaseConfig::new(database_url.clone()))
        .await
        .expect("connect");
    db.conn()
        .execute_unprepared("UPDATE api_tokens SET revoked_at = now() WHERE name = 'CRM sync'")
        .await
        .expect("revoke by hand");
    refused_within(
        &server.url,
        &secrets[0],
        Duration::from_secs(3),
        "a token revoked by hand",
    )
    .await;
    assert_eq!(
        viewer_kind(&server.url, &secrets[1]).await.as_deref(),
        Ok("API_TOKEN")
    );

    // With the triggers off (`session_replication_role`), nobody is told.
    db.conn()
        .execute_unprepared(
            "BEGIN; SET LOCAL session_replication_role = replica; \
             UPDATE api_tokens SET revoked_at = now() WHERE name = 'Marketing sync'; COMMIT",
        )
        .await
        .expect("revoke without a notification");
    db.conn()
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .await
        .expect("cut the LISTEN connection");
    refused_within(
        &server.url,
        &secrets[1],
        Duration::from_secs(5),
        "a token revoked while the notifications were cut",
    )
    .await;
    db.close().await;
    server.kill().await;
}

/// The draft message of the first follow-up planned for a new patient's
/// journey on `pathway`, started on `url`.
async fn drafted_at(url: &str, token: &str, pathway: &PathwayIds, name: &str) -> String {
    let (patient, _) = journey_at(url, token, &pathway.id, name, "Replica").await;
    let planned = gql_at(
        url,
        token,
        "query($p: ID!) { followUps(first: 5, filter: { patientId: $p }) { edges { node { message } } } }",
        json!({ "p": patient }),
    )
    .await;
    planned["data"]["followUps"]["edges"][0]["node"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{planned}"))
        .to_string()
}

/// Starts journeys on `url` until their draft begins with `wanted`, for at
/// most `within`.
async fn drafted_within(
    url: &str,
    token: &str,
    pathway: &PathwayIds,
    wanted: &str,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    for n in 0.. {
        let drafted = drafted_at(url, token, pathway, &format!("Wait{n}")).await;
        if drafted.starts_with(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?} still drafted {drafted:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A clinic's outreach configuration a replica keeps in memory
/// (`domain::outreach::configuration`) follows a change made on another
/// replica, or by SQL by hand, at once: the commit notifies every replica
/// (migration 000016), not the 30 s lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn outreach_configuration_changed_elsewhere_is_planned_with_postgres() {
    let (database_url, _guard) = fresh_database(Backend::Postgres).await;
    let admin = prepare_database(&database_url).await;
    let a = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let b = ServerProcess::start(SERVER, &database_url, &["--sweep-interval-secs", "0"]).await;
    let pathway = pathway_at(&a.url, &admin, "Replica care").await;
    let db = Db::connect(&DatabaseConfig::new(database_url.clone()))
        .await
        .expect("connect");
    assert!(
        drafted_at(&b.url, &admin, &pathway, "Ana")
            .await
            .starts_with("Call Ana")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Set on A: B plans with it within moments.
        let set = gql_at(
            &a.url,
            &admin,
            "mutation { setOutreachTemplate(input: { kind: STAGE_RULE, channel: PHONE, body: \"Ring {{givenName}} (set on A).\" }) { template { custom } } }",
            json!({}),
        )
        .await;
        assert!(set["errors"].is_null(), "{set}");
        drafted_within(&b.url, &admin, &pathway, "Ring", Duration::from_secs(3)).await;
        // Deleted with the triggers off (`session_replication_role`): B,
        // once its relay listens, still plans with what it kept.
        db.conn()
            .execute_unprepared(
                "BEGIN; SET LOCAL session_replication_role = replica; \
                 DELETE FROM outreach_templates; COMMIT",
            )
            .await
            .expect("delete without a notification");
        if drafted_at(&b.url, &admin, &pathway, "Bo")
            .await
            .starts_with("Ring Bo")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still reads the configuration for every change after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Changed by hand, with the triggers on: B plans with it at once.
    db.conn()
        .execute_unprepared(
            "INSERT INTO outreach_templates (id, clinic_id, kind, channel, body, updated_at) \
             SELECT gen_random_uuid(), id, 'STAGE_RULE', 'PHONE', 'Phone {{givenName}} (set by hand).', now() \
             FROM clinics",
        )
        .await
        .expect("a template by hand");
    drafted_within(&b.url, &admin, &pathway, "Phone", Duration::from_secs(3)).await;
    db.close().await;
    a.kill().await;
    b.kill().await;
}
