//! No N+1: the SQL statements of a nested query do not grow with the number of
//! patients it returns.

use journeymap::{
    auth::Permission,
    domain::clinics,
    seed::{self, SeedOptions},
};
use std::time::Duration;

use journeymap_tests::{TestApp, WsClient, on_both_backends};
use serde_json::json;

const NESTED: &str = r#"
query Nested($first: Int!) {
  patients(first: $first) {
    edges { node {
      id givenName
      journeys { status currentStage { name category } }
      touchpoints(first: 5) { edges { node { id channel emotion } } }
      feedback { edges { node { kind score } } }
    } }
  }
}"#;

async fn statements_for(app: &TestApp, token: &str, first: usize) -> (u64, usize) {
    let before = app.statements().await;
    let response = app
        .gql_as(Some(token), NESTED, json!({ "first": first }))
        .await;
    let after = app.statements().await;
    let edges = response.data()["patients"]["edges"]
        .as_array()
        .unwrap()
        .len();
    (after - before, edges)
}

async fn statement_count_does_not_grow_with_patients(app: TestApp) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 120,
            seed: 7,
        },
    )
    .await
    .unwrap();
    let glow = clinics::by_slug(app.db(), seed::DEMO_SLUG)
        .await
        .unwrap()
        .unwrap();
    let (_, token) = clinics::create_token(app.db(), glow.id, "n+1", &Permission::ALL, None)
        .await
        .unwrap();

    // The first request of a token also refreshes its last-used time.
    statements_for(&app, &token, 1).await;
    let (ten, ten_edges) = statements_for(&app, &token, 10).await;
    let (hundred, hundred_edges) = statements_for(&app, &token, 100).await;
    assert_eq!((ten_edges, hundred_edges), (10, 100));
    eprintln!("statements: {ten} for 10 patients, {hundred} for 100 patients");
    assert_eq!(ten, hundred, "statements grew with the page size");
    // Credential, page, journeys with their current stages, touchpoint
    // pages, feedback pages.
    assert!(hundred <= 5, "{hundred} statements for one nested page");

    // The same holds with nested connection totals.
    let counted = r#"query($first: Int!) { patients(first: $first) { totalCount edges { node {
        touchpoints(first: 2) { totalCount } feedback(first: 1) { totalCount }
        timeline(first: 1) { totalCount } accessLog(first: 1) { totalCount } } } } }"#;
    let before = app.statements().await;
    app.gql_as(Some(&token), counted, json!({ "first": 10 }))
        .await
        .data();
    let small = app.statements().await - before;
    let before = app.statements().await;
    app.gql_as(Some(&token), counted, json!({ "first": 100 }))
        .await
        .data();
    let large = app.statements().await - before;
    assert_eq!(small, large, "totals grew with the page size");
}

const STAGE_CHANGED: &str = "subscription { journeyStageChanged { id sequence journey { id version } patient { givenName } fromStage { name } toStage { name } } }";

/// Statements one stage move costs with `subscribers` sockets following it,
/// counted once every subscriber has its message.
async fn statements_of_a_fanned_out_move(
    app: &TestApp,
    journey: &str,
    stage: &str,
    subscribers: usize,
) -> u64 {
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        let mut client = WsClient::connect_with_token(app, &app.token).await;
        client.subscribe("s", STAGE_CHANGED, json!({})).await;
        clients.push(client);
    }
    // Subscriptions have no acknowledgement: let them go live first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = app.statements().await;
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
        json!({ "input": { "journeyId": journey, "stageId": stage } }),
    )
    .await
    .data();
    for client in &mut clients {
        let next = client.next_of("s").await;
        assert_eq!(
            next["data"]["journeyStageChanged"]["patient"]["givenName"],
            "Fan"
        );
    }
    app.statements().await - before
}

async fn statement_count_does_not_grow_with_subscribers(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Fan").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let one = statements_of_a_fanned_out_move(&app, &journey, &pathway.consultation, 1).await;
    let many = statements_of_a_fanned_out_move(&app, &journey, &pathway.treatment, 25).await;
    assert_eq!(
        one, many,
        "a move followed by 1 subscriber cost {one} statements, by 25 subscribers {many}"
    );
}

on_both_backends!(
    statement_count_does_not_grow_with_subscribers,
    statement_count_does_not_grow_with_patients
);
