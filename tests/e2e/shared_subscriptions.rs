//! Shared subscriptions: sockets with the same credential, document and
//! variables are served by one execution per event, each socket's reads are
//! still audited as its own, and a socket that falls behind goes on alone
//! from the event log with no gap and no duplicate.

use std::time::Duration;

use journeymap::auth::Role;
use journeymap_tests::{Options, QUIET, TestApp, WsClient, WsEvent, on_both_backends, warm_up};
use serde_json::{Value, json};

const STAGE_CHANGED: &str = r#"subscription {
  journeyStageChanged { sequence journey { id version } patient { id givenName } toStage { key } }
}"#;

const MOVE: &str = "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }";

const ACCESS_LOG: &str = r#"query($id: ID!) {
  patient(id: $id) { accessLog(first: 100) { nodes { action actorId requestId } } }
}"#;

/// The value of a metric line `name value` on `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Waits until metric `name` reads `value`.
async fn metric_becomes(app: &TestApp, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(app, name).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn subscribed(app: &TestApp, token: &str, document: &str) -> WsClient {
    let mut client = WsClient::connect_with_token(app, token).await;
    client.subscribe("1", document, json!({})).await;
    client
}

async fn move_to(app: &TestApp, journey: &str, stage: &str) -> i64 {
    let moved = app
        .gql(
            MOVE,
            json!({ "input": { "journeyId": journey, "stageId": stage } }),
        )
        .await;
    moved.data()["moveJourneyToStage"]["journey"]["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("move: {:?}", moved.data()))
}

/// Three sockets of one credential share one execution, a fourth of another
/// credential gets its own; every socket gets the event once, and each has
/// its own `patient.read` entry, under its own request.
async fn alike_subscribers_share_one_execution_and_each_is_audited(app: TestApp) {
    let p = app.pathway().await;
    let warm_patient = app.patient("Warm").await;
    let warm = app.start_journey(&warm_patient, &p.id).await;
    let coordinator = app.staff_token(Role::Coordinator).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(subscribed(&app, &app.token, STAGE_CHANGED).await);
    }
    clients.push(subscribed(&app, &coordinator, STAGE_CHANGED).await);
    let stages = [p.consultation.as_str(), p.inquiry.as_str()];
    warm_up(
        &app.url,
        &app.token,
        &mut clients.iter_mut().collect::<Vec<_>>(),
        "1",
        &warm,
        stages,
    )
    .await;
    metric_becomes(&app, "journeymap_shared_subscription_executions", 2.0).await;
    assert_eq!(metric(&app, "journeymap_subscriptions_open").await, 4.0);

    let patient = app.patient("Shared").await;
    let journey = app.start_journey(&patient, &p.id).await;
    move_to(&app, &journey, &p.consultation).await;
    let mut sequences = Vec::new();
    for client in &mut clients {
        let event = client.next_of("1").await;
        let change = &event["data"]["journeyStageChanged"];
        assert_eq!(change["patient"]["id"], patient.as_str(), "{event}");
        assert_eq!(change["patient"]["givenName"], "Shared");
        assert_eq!(change["toStage"]["key"], "consultation");
        sequences.push(change["sequence"].clone());
        assert!(
            client.next_within(QUIET).await.is_none(),
            "the event arrived once"
        );
    }
    assert!(
        sequences.iter().all(|s| *s == sequences[0]),
        "{sequences:?}"
    );

    // The audit writer flushes every 250 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reads = loop {
        let log = app.gql(ACCESS_LOG, json!({ "id": patient })).await;
        let reads: Vec<Value> = log.data()["patient"]["accessLog"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "patient.read")
            .cloned()
            .collect();
        if reads.len() >= 4 || tokio::time::Instant::now() > deadline {
            break reads;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reads.len(), 4, "one entry per socket: {reads:?}");
    let mut requests: Vec<_> = reads.iter().map(|e| e["requestId"].clone()).collect();
    requests.sort_by_key(|r| r.to_string());
    requests.dedup();
    assert_eq!(
        requests.len(),
        4,
        "each under its socket's request: {reads:?}"
    );
    let mut actors: Vec<_> = reads.iter().map(|e| e["actorId"].to_string()).collect();
    actors.sort();
    actors.dedup();
    assert_eq!(actors.len(), 2, "two credentials: {reads:?}");

    drop(clients);
    metric_becomes(&app, "journeymap_shared_subscription_executions", 0.0).await;
    metric_becomes(&app, "journeymap_subscriptions_open", 0.0).await;
}

/// A shared backlog of one event, so that a socket that stops reading is
/// detached as soon as its TCP buffers are full.
fn small_backlog() -> Options {
    let mut options = Options::default();
    options.config.ws_shared_backlog = 1;
    options
}

/// Each event's frame carries a few hundred kilobytes of touchpoint
/// summaries, so a socket that does not read fills its buffers in a few
/// events.
const HEAVY: &str = r#"subscription {
  journeyStageChanged {
    sequence journey {
      id version
      a: touchpoints(first: 30) { nodes { summary } }
      b: touchpoints(first: 30) { nodes { summary } }
      c: touchpoints(first: 30) { nodes { summary } }
      d: touchpoints(first: 30) { nodes { summary } }
    }
  }
}"#;

/// The sequences of the next `count` events of operation "1".
async fn sequences_of(client: &mut WsClient, count: usize) -> Vec<i64> {
    let mut sequences = Vec::new();
    while sequences.len() < count {
        let event = match client.next_within(Duration::from_secs(30)).await {
            Some(WsEvent::Message(m)) if m["type"] == "next" => m,
            other => panic!("after {} events: {other:?}", sequences.len()),
        };
        sequences.push(
            event["payload"]["data"]["journeyStageChanged"]["sequence"]
                .as_i64()
                .unwrap_or_else(|| panic!("{event}")),
        );
    }
    sequences
}

/// One of two sockets sharing an execution stops reading while 40 heavy
/// events commit: it is detached and goes on alone, the other stays in the
/// shared execution, and both get every event once, in order.
async fn a_socket_that_falls_behind_goes_on_alone_without_gap_or_duplicate(app: TestApp) {
    let p = app.pathway().await;
    let patient = app.patient("Heavy").await;
    let journey = app.start_journey(&patient, &p.id).await;
    let summary = "x".repeat(4000);
    for _ in 0..30 {
        app.gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": {
                "patientId": patient, "journeyId": journey, "channel": "PHONE",
                "direction": "OUTBOUND", "kind": "call", "summary": summary,
            } }),
        )
        .await
        .data();
    }
    let mut reader = subscribed(&app, &app.token, HEAVY).await;
    let mut idle = subscribed(&app, &app.token, HEAVY).await;
    let stages = [p.consultation.as_str(), p.inquiry.as_str()];
    warm_up(
        &app.url,
        &app.token,
        &mut [&mut reader, &mut idle],
        "1",
        &journey,
        stages,
    )
    .await;
    metric_becomes(&app, "journeymap_shared_subscription_executions", 1.0).await;
    let current = app
        .gql(
            "query($id: ID!) { journey(id: $id) { currentStage { id } } }",
            json!({ "id": journey }),
        )
        .await;
    let from = usize::from(current.data()["journey"]["currentStage"]["id"] == stages[0]);

    // The reader keeps reading; `idle` reads nothing until every move is in.
    const MOVES: usize = 40;
    let reading = tokio::spawn(async move {
        let sequences = sequences_of(&mut reader, MOVES).await;
        (reader, sequences)
    });
    for step in 0..MOVES {
        let stage = stages[(from + step) % 2];
        move_to(&app, &journey, stage).await;
    }
    let (mut reader, read) = reading.await.expect("reader");
    assert!(
        metric(&app, "journeymap_shared_subscription_detached_total").await >= 1.0,
        "the idle socket was detached"
    );
    let behind = sequences_of(&mut idle, MOVES).await;
    assert_eq!(
        behind, read,
        "the detached socket got every event once, in order"
    );
    assert!(
        read.windows(2).all(|w| w[1] > w[0]),
        "in the log's order: {read:?}"
    );
    for client in [&mut reader, &mut idle] {
        assert!(client.next_within(QUIET).await.is_none(), "nothing more");
    }
    // The reader is still served by the shared execution.
    assert_eq!(
        metric(&app, "journeymap_shared_subscription_executions").await,
        1.0
    );
}

on_both_backends!(
    alike_subscribers_share_one_execution_and_each_is_audited,
    a_socket_that_falls_behind_goes_on_alone_without_gap_or_duplicate => small_backlog,
);
