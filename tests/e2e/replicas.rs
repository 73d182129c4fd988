//! Whole server processes: several replicas on one PostgreSQL database, and
//! a server killed with SIGKILL in the middle of webhook delivery. Nothing
//! committed may be lost on the way to subscribers and receivers.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::http::StatusCode;
use journeymap_tests::{
    Backend, CREATE_PATHWAY, ServerProcess, WsClient, fresh_database, gql_at, prepare_database,
    receiver::{Received, Receiver},
};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_journeymap-under-test");

/// A short retry schedule and lease so a killed server's deliveries are
/// taken over within seconds rather than the production minute.
const DELIVERY_ARGS: &[&str] = &[
    "--allow-private-webhook-targets",
    "--webhook-retry-schedule",
    "0,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
    "--webhook-lease-secs",
    "2",
    "--sweep-interval-secs",
    "0",
];

const MOVE: &str = "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }";

/// A pathway's id and its stage ids by key.
struct Pathway {
    id: String,
    stages: BTreeMap<String, String>,
}

async fn create_pathway(url: &str, token: &str) -> Pathway {
    let created = gql_at(url, token, CREATE_PATHWAY, json!({ "name": "Injectables" })).await;
    let pathway = &created["data"]["createPathway"]["pathway"];
    assert!(pathway.is_object(), "{created}");
    Pathway {
        id: pathway["id"].as_str().unwrap().to_string(),
        stages: pathway["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key"].as_str().unwrap().to_string(),
                    s["id"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    }
}

/// Creates a patient and starts their journey; returns the journey id.
async fn start_journey(url: &str, token: &str, pathway: &Pathway, name: &str) -> String {
    let patient = gql_at(
        url,
        token,
        "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
        json!({ "input": { "givenName": name, "familyName": "Replica" } }),
    )
    .await;
    let patient = patient["data"]["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{patient}"))
        .to_string();
    let journey = gql_at(
        url,
        token,
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
    )
    .await;
    journey["data"]["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{journey}"))
        .to_string()
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

    let pathway = create_pathway(&b.url, &token).await;
    let journey = start_journey(&b.url, &token, &pathway, "Noor").await;

    // Subscribed on A; every move is made on B.
    let mut client = WsClient::connect_to_with_token(a.addr, &token).await;
    client
        .subscribe(
            "moves",
            "subscription { journeyStageChanged { sequence journey { id } toStage { key } } }",
            json!({}),
        )
        .await;
    // The subscription has no acknowledgement; give it a moment to go live.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let route = [
        "consultation",
        "treatment",
        "consultation",
        "treatment",
        "discharged",
    ];
    for key in route {
        move_to(&b.url, &token, &journey, &pathway.stages[key]).await;
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

/// Many stage changes, a receiver that refuses every first attempt, and the
/// server killed with SIGKILL while deliveries are in flight. On PostgreSQL
/// a second replica keeps working meanwhile; on SQLite the one process is
/// restarted. Every event must arrive, signed, with one stable `webhook-id`.
async fn nothing_is_lost_when_a_server_is_killed(backend: Backend) {
    let (database_url, _guard) = fresh_database(backend).await;
    let token = prepare_database(&database_url).await;
    let receiver = Receiver::start(
        Arc::new(|_: &str, attempt: usize| {
            if attempt == 0 {
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            } else {
                (StatusCode::OK, None)
            }
        }),
        // Slow answers keep deliveries in flight when the server dies.
        Duration::from_millis(150),
    )
    .await;

    let first = ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await;
    let second = match backend {
        Backend::Postgres => Some(ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await),
        Backend::Sqlite => None,
    };
    let endpoint = gql_at(
        &first.url,
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

    let pathway = create_pathway(&first.url, &token).await;
    let route = [
        "consultation",
        "treatment",
        "consultation",
        "treatment",
        "discharged",
    ];
    let mut journeys = Vec::new();
    for n in 0..12 {
        journeys.push(start_journey(&first.url, &token, &pathway, &format!("Patient{n}")).await);
    }
    // Moves alternate between the replicas where there are two.
    let urls: Vec<&str> = std::iter::once(first.url.as_str())
        .chain(second.as_ref().map(|s| s.url.as_str()))
        .collect();
    for (step, key) in route.iter().enumerate() {
        for (n, journey) in journeys.iter().enumerate() {
            let url = urls[(step + n) % urls.len()];
            move_to(url, &token, journey, &pathway.stages[*key]).await;
        }
    }
    let expected = journeys.len() * route.len();

    // Kill the first server while deliveries are under way.
    let in_flight = receiver
        .wait_for(Duration::from_secs(15), |r| r.len() >= 10)
        .await;
    assert!(in_flight.len() >= 10, "deliveries started");
    first.kill().await;
    let killed_at = receiver.received().len();
    assert!(
        killed_at < expected * 2,
        "the server was killed before every delivery was done ({killed_at} requests)"
    );
    let restarted = ServerProcess::start(SERVER, &database_url, DELIVERY_ARGS).await;

    let events = event_ids(&restarted.url, &token, "journey.stage_changed").await;
    assert_eq!(events.len(), expected, "every committed move has its event");

    // Delivered = a second attempt reached the receiver (the first always fails).
    let received = receiver
        .wait_for(Duration::from_secs(60), |r| {
            let mut attempts: BTreeMap<&str, usize> = BTreeMap::new();
            for request in r {
                *attempts.entry(request.webhook_id.as_str()).or_default() += 1;
            }
            events
                .iter()
                .all(|id| attempts.get(id.as_str()).is_some_and(|n| *n >= 2))
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
    }
    assert!(
        by_id.keys().all(|id| events.iter().any(|e| e == id)),
        "only the endpoint's event type was sent"
    );

    // The server's own record agrees once the last settlements are written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = gql_at(
            &restarted.url,
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
    restarted.kill().await;
    if let Some(second) = second {
        second.kill().await;
    }
}

journeymap_tests::on_both_backends!(backend: nothing_is_lost_when_a_server_is_killed);
