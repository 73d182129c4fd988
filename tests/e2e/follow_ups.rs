//! Follow-up automation: the overdue sweeper announces each overdue follow-up
//! exactly once (also with two replicas sweeping at once), and detractors
//! get a service-recovery call within 24 hours.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use journeymap::domain::follow_ups::sweep_overdue;
use journeymap_tests::{Backend, Options, TestApp, on_both_backends, spawn_with};
use serde_json::{Value, json};

fn ago(hours: i64) -> String {
    (Utc::now() - chrono::Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    app.gql(
        "query($t: [String!]) { events(first: 100, types: $t) { edges { node { type data } } } }",
        json!({ "t": [kind] }),
    )
    .await
    .data()["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn overdue_follow_ups_are_announced_exactly_once(app: TestApp) {
    let pathway = app.pathway().await;
    // Three journeys started 5 h ago: their 2 h call-backs are overdue.
    for name in ["Una", "Vic", "Wes"] {
        let patient = app.patient(name).await;
        app.gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": ago(5) } }),
        )
        .await
        .data();
    }
    // One more, on time: not overdue yet.
    let fresh = app.patient("Xia").await;
    app.start_journey(&fresh, &pathway.id).await;

    // Two replicas sweep at the same moment, twice over.
    let other = app.second_store().await;
    let (a, b) = tokio::join!(sweep_overdue(&app.store, 100), sweep_overdue(&other, 100));
    let (c, d) = tokio::join!(sweep_overdue(&app.store, 100), sweep_overdue(&other, 100));
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    assert_eq!(c.unwrap() + d.unwrap(), 0);

    let announced = events_of(&app, "follow_up.overdue").await;
    assert_eq!(announced.len(), 3, "{announced:#?}");
    let mut ids: Vec<&str> = announced
        .iter()
        .map(|e| e["data"]["followUpId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a follow-up was announced twice");

    // Done follow-ups are never announced; the work list shows the overdue ones.
    let list = app
        .gql(
            "{ followUps(filter: {overdue: true}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(list.data()["followUps"]["totalCount"], 3);
}

async fn detractors_get_a_service_recovery_call(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Yara").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let submit = |kind: &str, score: i32, journey: Option<&str>| {
        app.gql(
            "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "kind": kind, "score": score } }),
        )
    };
    // A promoter and a passive: nothing to recover.
    submit("NPS", 9, Some(&journey)).await.data();
    submit("NPS", 7, Some(&journey)).await.data();
    assert!(recovery(&app, &journey).await.is_empty());

    // A detractor: a call within 24 hours.
    submit("NPS", 4, Some(&journey)).await.data();
    let calls = recovery(&app, &journey).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["status"], "OPEN");
    assert_eq!(calls[0]["channel"], "PHONE");
    let due = chrono::DateTime::parse_from_rfc3339(calls[0]["dueAt"].as_str().unwrap()).unwrap();
    let hours = (due.with_timezone(&Utc) - Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.0..=24.1).contains(&hours), "due in {hours} h");

    // Another detractor (CSAT 2, no journey given: the active one is used)
    // while the call is still open: still one call.
    submit("CSAT", 2, None).await.data();
    assert_eq!(recovery(&app, &journey).await.len(), 1);

    let scheduled = events_of(&app, "follow_up.scheduled").await;
    assert!(
        scheduled
            .iter()
            .any(|e| e["data"]["kind"] == "SERVICE_RECOVERY")
    );
    let submitted = events_of(&app, "feedback.submitted").await;
    assert_eq!(
        submitted
            .iter()
            .filter(|e| e["data"]["detractor"] == true)
            .count(),
        2
    );
}

async fn recovery(app: &TestApp, journey: &str) -> Vec<Value> {
    app.gql(
        "query($id: ID!) { journey(id: $id) { followUps { kind status dueAt channel note } } }",
        json!({ "id": journey }),
    )
    .await
    .data()["journey"]["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "SERVICE_RECOVERY")
        .cloned()
        .collect()
}

on_both_backends!(
    overdue_follow_ups_are_announced_exactly_once,
    detractors_get_a_service_recovery_call
);

/// The server's own sweeper finds overdue follow-ups without being asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_runs() {
    let mut options = Options::default();
    options.config.sweep_interval_secs = 1;
    let app = spawn_with(Backend::Sqlite, options).await;
    let pathway = app.pathway().await;
    let patient = app.patient("Zed").await;
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": ago(3) } }),
    )
    .await
    .data();
    for _ in 0..50 {
        if !events_of(&app, "follow_up.overdue").await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sweeper did not announce the overdue follow-up");
}
