//! Subscriptions over `graphql-transport-ws`: the protocol's messages and
//! close codes, live stage changes, resuming from a cursor with no gap and
//! no duplicate, and tenancy.

use std::time::Duration;

use journeymap_tests::{TestApp, WsClient, WsEvent, on_both_backends};
use serde_json::{Value, json};

const STAGE_CHANGED: &str = r#"subscription($after: String, $pathwayId: ID) {
  journeyStageChanged(after: $after, pathwayId: $pathwayId) {
    id sequence cursor direction journey { id version } patient { givenName } fromStage { key } toStage { key }
  }
}"#;

async fn move_to(app: &TestApp, journey: &str, stage: &str) -> Value {
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
        json!({ "input": { "journeyId": journey, "stageId": stage } }),
    )
    .await
    .data()
    .clone()
}

/// Subscribing has no acknowledgement: wait until the subscription sees a
/// first event we cause ourselves.
async fn live(app: &TestApp, client: &mut WsClient, id: &str, journey: &str, stage: &str) -> Value {
    move_to(app, journey, stage).await;
    client.next_of(id).await
}

async fn stage_changes_arrive_live_and_resume_without_gaps(app: TestApp) {
    let p = app.pathway().await;
    let patient = app.patient("Lia").await;
    let journey = app.start_journey(&patient, &p.id).await;

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client.subscribe("s1", STAGE_CHANGED, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = live(&app, &mut client, "s1", &journey, &p.consultation).await;
    let event = &first["data"]["journeyStageChanged"];
    assert_eq!(event["fromStage"]["key"], "inquiry");
    assert_eq!(event["toStage"]["key"], "consultation");
    assert_eq!(event["patient"]["givenName"], "Lia");
    let cursor = event["cursor"].as_str().unwrap().to_string();

    // Disconnect; three moves happen meanwhile.
    drop(client);
    move_to(&app, &journey, &p.treatment).await;
    move_to(&app, &journey, &p.consultation).await;
    move_to(&app, &journey, &p.treatment).await;

    // Resume after the cursor: the three, in order, then live ones.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("s2", STAGE_CHANGED, json!({ "after": cursor }))
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let next = client.next_of("s2").await;
        seen.push(
            next["data"]["journeyStageChanged"]["toStage"]["key"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, ["treatment", "consultation", "treatment"]);
    let live_one = live(&app, &mut client, "s2", &journey, &p.discharged).await;
    assert_eq!(
        live_one["data"]["journeyStageChanged"]["toStage"]["key"],
        "discharged"
    );
    // Nothing else.
    assert_eq!(client.next_within(Duration::from_millis(300)).await, None);
}

async fn concurrent_commits_during_switch_over_are_not_lost(app: TestApp) {
    let p = app.pathway().await;
    let mut journeys = Vec::new();
    for n in 0..6 {
        let patient = app.patient(&format!("P{n}")).await;
        journeys.push(app.start_journey(&patient, &p.id).await);
    }
    let cursor_events = app
        .gql(
            "{ events(first: 100) { edges { node { cursor } } } }",
            json!({}),
        )
        .await;
    let cursor = cursor_events.data()["events"]["edges"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["node"]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    // Moves keep committing while the subscription replays and switches to
    // live: the socket subscribes first, the moves follow a few ms apart.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("s", STAGE_CHANGED, json!({ "after": cursor }))
        .await;
    let writer = {
        let (url, token, journeys, stage) = (
            app.url.clone(),
            app.token.clone(),
            journeys.clone(),
            p.consultation.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for journey in journeys {
                let answer: serde_json::Value = client
                    .post(format!("{url}/graphql"))
                    .bearer_auth(&token)
                    .json(&json!({ "query": "mutation($i: MoveJourneyToStageInput!) { moveJourneyToStage(input: $i) { journey { id } } }",
                                   "variables": { "i": { "journeyId": journey, "stageId": stage } } }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answers.push(answer);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    let mut sequences = Vec::new();
    for _ in 0..6 {
        let next = client.next_of("s").await;
        sequences.push(
            next["data"]["journeyStageChanged"]["sequence"]
                .as_i64()
                .unwrap(),
        );
    }
    for answer in writer.await.unwrap() {
        assert!(answer["errors"].is_null(), "a move failed: {answer}");
    }
    let mut sorted = sequences.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 6, "duplicates in {sequences:?}");
    assert_eq!(sequences, sorted, "out of order: {sequences:?}");
    assert_eq!(client.next_within(Duration::from_millis(300)).await, None);
}

async fn subscriptions_see_only_their_clinic_and_filter(app: TestApp) {
    let p = app.pathway().await;
    let other = app.pathway_as(&app.token, "Other").await;
    let b_token = app.clinic("b").await;
    let bp = app.pathway_as(&b_token, "B pathway").await;
    let b_patient = app.patient_as(&b_token, "Bo").await;
    let b_journey = app.start_journey_as(&b_token, &b_patient, &bp.id).await;

    let patient = app.patient("Ana").await;
    let mine = app.start_journey(&patient, &p.id).await;
    let elsewhere = app.start_journey(&patient, &other.id).await;

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("only", STAGE_CHANGED, json!({ "pathwayId": p.id }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Clinic B's move and the other pathway's move are not for us.
    app.gql_as(
        Some(&b_token),
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": b_journey, "stageId": bp.consultation } }),
    )
    .await
    .data();
    move_to(&app, &elsewhere, &other.consultation).await;
    move_to(&app, &mine, &p.consultation).await;
    let next = client.next_of("only").await;
    assert_eq!(
        next["data"]["journeyStageChanged"]["journey"]["id"],
        mine.as_str()
    );
    assert_eq!(client.next_within(Duration::from_millis(300)).await, None);
}

on_both_backends!(
    stage_changes_arrive_live_and_resume_without_gaps,
    concurrent_commits_during_switch_over_are_not_lost,
    subscriptions_see_only_their_clinic_and_filter,
);

async fn close_code(client: &mut WsClient) -> Option<u16> {
    loop {
        match client.next().await {
            WsEvent::Closed(code, _) => return code,
            WsEvent::Message(_) => continue,
        }
    }
}

async fn the_protocol_is_followed(app: TestApp) {
    // Ping before init: pong.
    let mut client = WsClient::connect(&app, None).await;
    client
        .send(json!({ "type": "ping", "payload": { "x": 1 } }))
        .await;
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "pong", "payload": { "x": 1 } }))
    );
    // Subscribe before ack: 4401.
    client
        .subscribe("a", "{ viewer { name } }", json!({}))
        .await;
    assert_eq!(close_code(&mut client).await, Some(4401));

    // Bad credentials: 4403; none at all: 4403.
    let mut client = WsClient::connect(&app, None).await;
    client
        .send(
            json!({ "type": "connection_init", "payload": { "authorization": "Bearer jm_nope" } }),
        )
        .await;
    assert_eq!(close_code(&mut client).await, Some(4403));
    let mut client = WsClient::connect(&app, None).await;
    client.send(json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut client).await, Some(4403));

    // Invalid messages: 4400.
    for bad in [
        "not json",
        r#"{"type":"teleport"}"#,
        r#"{"id":"1"}"#,
        r#"{"type":"subscribe","id":"1","payload":{}}"#,
    ] {
        let mut client = WsClient::connect_with_token(&app, &app.token).await;
        client.send_raw(bad).await;
        assert_eq!(close_code(&mut client).await, Some(4400), "{bad}");
    }

    // A second connection_init: 4429.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", app.token) } }))
        .await;
    assert_eq!(close_code(&mut client).await, Some(4429));

    // A duplicate operation id while the first runs: 4409.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client.subscribe("dup", STAGE_CHANGED, json!({})).await;
    client.subscribe("dup", STAGE_CHANGED, json!({})).await;
    assert_eq!(close_code(&mut client).await, Some(4409));

    // Queries and mutations work over the socket: next, then complete.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("q", "{ viewer { clinic { slug } } }", json!({}))
        .await;
    let next = client.next_of("q").await;
    assert_eq!(next["data"]["viewer"]["clinic"]["slug"], "a");
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "complete", "id": "q" }))
    );
    // A validation error is an `error` message.
    client.subscribe("bad", "{ nope }", json!({})).await;
    match client.next().await {
        WsEvent::Message(m) => {
            assert_eq!(m["type"], "error");
            assert_eq!(
                m["payload"][0]["extensions"]["code"],
                "GRAPHQL_VALIDATION_FAILED"
            );
        }
        other => panic!("{other:?}"),
    }
    // The client completes a subscription; the same id may be reused afterwards.
    client.subscribe("s", STAGE_CHANGED, json!({})).await;
    client.send(json!({ "type": "complete", "id": "s" })).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.subscribe("s", STAGE_CHANGED, json!({})).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "pong" }))
    );

    // No subprotocol: 4406.
    let mut client = WsClient::connect(&app, Some("")).await;
    assert_eq!(close_code(&mut client).await, Some(4406));
}

on_both_backends!(the_protocol_is_followed);

/// 4408 when no connection_init arrives in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_with_4408() {
    let mut options = journeymap_tests::Options::default();
    options.config.ws_init_timeout_secs = 1;
    let app = journeymap_tests::spawn_with(journeymap_tests::Backend::Sqlite, options).await;
    let mut client = WsClient::connect(&app, None).await;
    assert_eq!(close_code(&mut client).await, Some(4408));
}
