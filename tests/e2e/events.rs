//! The outbox: every mutation writes its events in its own transaction, with
//! a per-clinic sequence that is gap-free and in commit order, and `events`
//! pages through the log.

use std::collections::BTreeSet;

use journeymap_tests::{TestApp, on_both_backends};
use serde_json::{Value, json};

const EVENTS: &str = r#"query($after: String, $first: Int, $types: [String!]) {
  events(after: $after, first: $first, types: $types) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id type sequence cursor occurredAt subject data } }
  }
}"#;

async fn events_page(
    app: &TestApp,
    after: Option<&str>,
    first: i32,
    types: Option<Vec<&str>>,
) -> Value {
    app.gql(
        EVENTS,
        json!({ "after": after, "first": first, "types": types }),
    )
    .await
    .data()["events"]
        .clone()
}

fn nodes(page: &Value) -> Vec<Value> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn every_mutation_writes_its_event(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Hana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "INBOUND", "kind": "question", "summary": "Asked about numbing cream" } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "COMMENT", "comment": "Lovely staff, long wait" } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: UpdatePatientInput!) { updatePatient(input: $input) { patient { id } } }",
        json!({ "input": { "patientId": patient, "phone": "+1 415 555 0100" } }),
    )
    .await
    .data();

    let page = events_page(&app, None, 100, None).await;
    let events = nodes(&page);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "patient.created",
            "journey.started",
            "follow_up.scheduled",
            "journey.stage_changed",
            "follow_up.scheduled",
            "touchpoint.logged",
            "feedback.submitted",
            "patient.updated",
        ]
    );
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=8).collect::<Vec<_>>());
    assert_eq!(page["totalCount"], 8);

    let changed = &events[3]["data"];
    assert_eq!(changed["journeyId"], journey.as_str());
    assert_eq!(changed["previous"]["key"], "inquiry");
    assert_eq!(changed["current"]["key"], "consultation");
    assert_eq!(changed["direction"], "FORWARD");
    assert!(changed["secondsInPrevious"].is_i64());
    assert_eq!(changed["cancelledFollowUpIds"].as_array().unwrap().len(), 1);
    assert_eq!(events[7]["data"]["changedFields"], json!(["phone"]));

    // Payloads carry ids and journey facts, never names, contact data or comments.
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        "Hana",
        "hana@example.com",
        "4155550100",
        "numbing",
        "Lovely staff",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into an event payload"
        );
    }

    // Paging by cursor, and filtering by type.
    let first = events_page(&app, None, 3, None).await;
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    assert_eq!(cursor, nodes(&first)[2]["cursor"].as_str().unwrap());
    let rest = events_page(&app, Some(&cursor), 100, None).await;
    assert_eq!(nodes(&rest)[0]["sequence"], 4);
    assert_eq!(nodes(&rest).len(), 5);
    let scheduled = events_page(&app, None, 100, Some(vec!["follow_up.scheduled"])).await;
    assert_eq!(nodes(&scheduled).len(), 2);
    app.gql(EVENTS, json!({ "types": ["journey.teleported"] }))
        .await
        .assert_error("BAD_USER_INPUT", Some("types[0]"));
}

async fn concurrent_writes_get_gap_free_unique_sequences(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ivy").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let writes = (0..24).map(|n| {
        app.gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "CHAT", "direction": "INBOUND", "kind": format!("message-{n}") } }),
        )
    });
    for result in futures::future::join_all(writes).await {
        result.data();
    }
    let events = nodes(&events_page(&app, None, 100, None).await);
    let sequences: BTreeSet<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences.len(), events.len(), "duplicate sequence numbers");
    assert_eq!(
        sequences,
        (1..=events.len() as i64).collect(),
        "gaps in the sequence"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "touchpoint.logged")
            .count(),
        24
    );
}

on_both_backends!(
    every_mutation_writes_its_event,
    concurrent_writes_get_gap_free_unique_sequences
);
