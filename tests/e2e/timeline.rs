//! A patient's timeline merges transitions, touchpoints, feedback and
//! follow-ups, newest first, and pages without gaps or repeats.

use chrono::{SecondsFormat, Utc};
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::json;

fn ago(hours: i64) -> String {
    (Utc::now() - chrono::Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

const TIMELINE: &str = r#"query($id: ID!, $first: Int, $after: String) {
  patient(id: $id) {
    timeline(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { at kind item {
        __typename
        ... on StageTransition { kind toStage { key } }
        ... on Touchpoint { kind }
        ... on Feedback { score }
        ... on FollowUp { status }
      } } }
    }
  }
}"#;

async fn the_timeline_merges_everything_in_time_order(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ada").await;
    let journey = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": ago(10) } }),
        )
        .await
        .data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE", "direction": "OUTBOUND", "kind": "call-back", "occurredAt": ago(9) } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "occurredAt": ago(6) } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "CSAT", "score": 5, "submittedAt": ago(5) } }),
    )
    .await
    .data();

    // Everything at once: the consultation check-in is due in 42 h, first.
    let all = app
        .gql(TIMELINE, json!({ "id": patient, "first": 20 }))
        .await;
    let timeline = &all.data()["patient"]["timeline"];
    let kinds: Vec<String> = timeline["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "FOLLOW_UP",        // the consultation check-in, due in 42 h
            "FOLLOW_UP",        // a review request for the delighted patient, due in 19 h
            "FEEDBACK",         // 5 h ago
            "STAGE_TRANSITION", // moved 6 h ago
            "FOLLOW_UP",        // the inquiry call-back, due 8 h ago (cancelled by the move)
            "TOUCHPOINT",       // 9 h ago
            "STAGE_TRANSITION", // started 10 h ago
        ]
    );
    assert_eq!(timeline["totalCount"], 7);
    let ats: Vec<&str> = timeline["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["at"].as_str().unwrap())
        .collect();
    let mut sorted = ats.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted, "not newest first");

    // Two at a time: the same seven, no repeats, no gaps.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .gql(
                TIMELINE,
                json!({ "id": patient, "first": 2, "after": after }),
            )
            .await;
        let timeline = page.data()["patient"]["timeline"].clone();
        for edge in timeline["edges"].as_array().unwrap() {
            seen.push(edge["node"]["at"].as_str().unwrap().to_string());
        }
        if timeline["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = timeline["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
    }
    assert_eq!(seen, ats);
}

on_both_backends!(the_timeline_merges_everything_in_time_order);
