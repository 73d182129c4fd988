//! Journey rules: one active journey per pathway, moves within the pathway,
//! optimistic concurrency, history, follow-up scheduling and cancelling,
//! stalls, and the stage recorded on touchpoints and feedback.

use chrono::{Duration, SecondsFormat, Utc};
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::{Value, json};

const MOVE: &str = r#"mutation($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) {
    journey { id version status stalled currentStage { key } }
    transition { kind fromStage { key } toStage { key } note hoursInFromStage }
  }
}"#;

const JOURNEY: &str = r#"query($id: ID!) {
  journey(id: $id) {
    id status version stalled stageEnteredAt currentStage { key }
    history { kind fromStage { key } toStage { key } note }
    followUps { id status dueAt channel stage { key } cancelReason }
  }
}"#;

fn ago(hours: i64) -> String {
    (Utc::now() - Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn journey(app: &TestApp, id: &str) -> Value {
    app.gql(JOURNEY, json!({ "id": id })).await.data()["journey"].clone()
}

fn statuses(journey: &Value) -> Vec<(String, String)> {
    journey["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["stage"]["key"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn a_journey_moves_through_its_pathway(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let id = app.start_journey(&patient, &pathway.id).await;

    let started = journey(&app, &id).await;
    assert_eq!(started["status"], "ACTIVE");
    assert_eq!(started["version"], 1);
    assert_eq!(started["currentStage"]["key"], "inquiry");
    assert_eq!(started["history"][0]["kind"], "STARTED");
    assert_eq!(statuses(&started), vec![("inquiry".into(), "OPEN".into())]);

    // Forward, with the version we read.
    let moved = app
        .gql(
            MOVE,
            json!({ "input": { "journeyId": id, "stageId": pathway.consultation, "expectedVersion": 1, "note": "booked" } }),
        )
        .await;
    let payload = &moved.data()["moveJourneyToStage"];
    assert_eq!(payload["journey"]["version"], 2);
    assert_eq!(payload["journey"]["currentStage"]["key"], "consultation");
    assert_eq!(payload["transition"]["kind"], "FORWARD");
    assert_eq!(payload["transition"]["fromStage"]["key"], "inquiry");
    assert_eq!(payload["transition"]["note"], "booked");

    // The inquiry call-back (due in 2 h, cancelled on exit) is cancelled; the
    // consultation check-in is scheduled.
    let now = journey(&app, &id).await;
    assert_eq!(
        statuses(&now),
        vec![
            ("inquiry".into(), "CANCELLED".into()),
            ("consultation".into(), "OPEN".into())
        ]
    );

    // Back to inquiry, then forward again, then into the terminal stage.
    let back = app
        .gql(
            MOVE,
            json!({ "input": { "journeyId": id, "stageId": pathway.inquiry } }),
        )
        .await;
    assert_eq!(
        back.data()["moveJourneyToStage"]["transition"]["kind"],
        "BACKWARD"
    );
    app.gql(
        MOVE,
        json!({ "input": { "journeyId": id, "stageId": pathway.treatment } }),
    )
    .await
    .data();
    let done = app
        .gql(MOVE, json!({ "input": { "journeyId": id, "stageId": pathway.discharged, "expectedVersion": 4 } }))
        .await;
    assert_eq!(
        done.data()["moveJourneyToStage"]["journey"]["status"],
        "COMPLETED"
    );

    let finished = journey(&app, &id).await;
    let kinds: Vec<&str> = finished["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["STARTED", "FORWARD", "BACKWARD", "FORWARD", "FORWARD"]
    );
    // Completing cancels every open follow-up, even the one kept on stage exit.
    assert!(
        finished["followUps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] != "OPEN"),
        "{finished:#}"
    );
    assert!(
        statuses(&finished).contains(&("treatment".into(), "CANCELLED".into())),
        "the aftercare follow-up was scheduled and cancelled on completion: {finished:#}"
    );

    // An ended journey does not move.
    let refused = app
        .gql(
            MOVE,
            json!({ "input": { "journeyId": id, "stageId": pathway.inquiry } }),
        )
        .await;
    refused.assert_error("CONFLICT", Some("input.journeyId"));
}

async fn one_active_journey_per_patient_and_pathway(app: TestApp) {
    let pathway = app.pathway().await;
    let other = app.pathway_as(&app.token, "Hormones").await;
    let patient = app.patient("Bea").await;
    let first = app.start_journey(&patient, &pathway.id).await;

    let before = app.row_counts().await;
    let again = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
        )
        .await;
    again.assert_error("CONFLICT", Some("input.pathwayId"));
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused start wrote something"
    );

    // Another pathway is fine, and so is a new journey once the first ended.
    app.start_journey(&patient, &other.id).await;
    app.gql(
        "mutation($input: DropJourneyInput!) { dropJourney(input: $input) { journey { status endReason } } }",
        json!({ "input": { "journeyId": first, "reason": "price" } }),
    )
    .await
    .data();
    let second = app.start_journey(&patient, &pathway.id).await;
    assert_ne!(first, second);

    let patient_view = app
        .gql(
            "query($id: ID!) { patient(id: $id) { journeys { status pathway { name } } active: journeys(status: ACTIVE) { id } } }",
            json!({ "id": patient }),
        )
        .await;
    let data = &patient_view.data()["patient"];
    assert_eq!(data["journeys"].as_array().unwrap().len(), 3);
    assert_eq!(data["active"].as_array().unwrap().len(), 2);
}

async fn concurrent_moves_with_the_same_version_let_one_win(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Cleo").await;
    let id = app.start_journey(&patient, &pathway.id).await;
    let attempts = (0..6).map(|_| {
        app.gql(
            MOVE,
            json!({ "input": { "journeyId": id, "stageId": pathway.consultation, "expectedVersion": 1 } }),
        )
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.errors().is_empty()).count();
    let conflicts = results
        .iter()
        .filter(|r| r.code().as_deref() == Some("CONFLICT"))
        .count();
    assert_eq!((won, conflicts), (1, 5), "{results:#?}");
    let after = journey(&app, &id).await;
    assert_eq!(after["version"], 2);
    assert_eq!(after["history"].as_array().unwrap().len(), 2);
}

async fn stalls_and_the_stage_at_the_time(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Dee").await;
    // Started 30 h ago in a stage with a 24 h target: stalled.
    let started = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id stalled } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": ago(30) } }),
        )
        .await;
    let id = started.data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(started.data()["startJourney"]["journey"]["stalled"], true);
    let stalled = app
        .gql(
            "query($p: ID!) { journeys(filter: {pathwayId: $p, stalled: true}) { totalCount edges { node { id } } } }",
            json!({ "p": pathway.id }),
        )
        .await;
    assert_eq!(stalled.data()["journeys"]["totalCount"], 1);

    // Moved 10 h ago: no longer stalled (72 h target).
    let moved = app
        .gql(MOVE, json!({ "input": { "journeyId": id, "stageId": pathway.consultation, "occurredAt": ago(10) } }))
        .await;
    assert_eq!(
        moved.data()["moveJourneyToStage"]["journey"]["stalled"],
        false
    );
    let hours = moved.data()["moveJourneyToStage"]["transition"]["hoursInFromStage"]
        .as_f64()
        .unwrap();
    assert!((19.9..20.1).contains(&hours), "{hours}");

    // A touchpoint of 20 h ago belongs to inquiry, one of 1 h ago to consultation.
    let log = |at: String| {
        app.gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id stage { key } } } }",
            json!({ "input": { "patientId": patient, "journeyId": id, "channel": "PHONE", "direction": "OUTBOUND",
                               "kind": "call-back", "occurredAt": at, "emotion": -1 } }),
        )
    };
    let early = log(ago(20)).await;
    assert_eq!(
        early.data()["logTouchpoint"]["touchpoint"]["stage"]["key"],
        "inquiry"
    );
    let late = log(ago(1)).await;
    assert_eq!(
        late.data()["logTouchpoint"]["touchpoint"]["stage"]["key"],
        "consultation"
    );
    // Before the journey started: refused.
    log(ago(40))
        .await
        .assert_error("BAD_USER_INPUT", Some("input.occurredAt"));

    let feedback = app
        .gql(
            "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { stage { key } kind score } } }",
            json!({ "input": { "patientId": patient, "journeyId": id, "kind": "NPS", "score": 4, "comment": "Long wait" } }),
        )
        .await;
    assert_eq!(
        feedback.data()["submitFeedback"]["feedback"]["stage"]["key"],
        "consultation"
    );
}

async fn follow_ups_are_completed_by_hand_or_by_a_touchpoint(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Eve").await;
    let id = app.start_journey(&patient, &pathway.id).await;
    let open = journey(&app, &id).await["followUps"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let logged = app
        .gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": id, "channel": "PHONE", "direction": "OUTBOUND",
                               "kind": "call-back", "completesFollowUpId": open } }),
        )
        .await;
    let touchpoint = logged.data()["logTouchpoint"]["touchpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let follow_up = app
        .gql(
            "query($id: ID!) { node(id: $id) { ... on FollowUp { status overdue completedBy { id } } } }",
            json!({ "id": open }),
        )
        .await;
    assert_eq!(follow_up.data()["node"]["status"], "DONE");
    assert_eq!(
        follow_up.data()["node"]["completedBy"]["id"],
        touchpoint.as_str()
    );

    // Completing it again is a conflict and writes nothing.
    let before = app.row_counts().await;
    app.gql(
        "mutation($input: CompleteFollowUpInput!) { completeFollowUp(input: $input) { followUp { id } } }",
        json!({ "input": { "followUpId": open } }),
    )
    .await
    .assert_error("CONFLICT", None);
    assert_eq!(app.row_counts().await, before);

    // The work list: overdue follow-ups only.
    let late = app.patient("Fay").await;
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": late, "pathwayId": pathway.id, "occurredAt": ago(5) } }),
    )
    .await
    .data();
    let overdue = app
        .gql(
            "{ followUps(filter: {overdue: true}) { totalCount edges { node { overdue patient { givenName } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(overdue.data()["followUps"]["totalCount"], 1);
    assert_eq!(
        overdue.data()["followUps"]["edges"][0]["node"]["patient"]["givenName"],
        "Fay"
    );
    assert_eq!(
        overdue.data()["followUps"]["edges"][0]["node"]["overdue"],
        true
    );
}

async fn pathways_are_managed(app: TestApp) {
    let pathway = app.pathway().await;
    let reordered = app
        .gql(
            "mutation($input: ReorderStagesInput!) { reorderStages(input: $input) { pathway { stages { key position } } } }",
            json!({ "input": { "pathwayId": pathway.id, "stageIds": [pathway.inquiry, pathway.treatment, pathway.consultation, pathway.discharged] } }),
        )
        .await;
    let keys: Vec<&str> = reordered.data()["reorderStages"]["pathway"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["inquiry", "treatment", "consultation", "discharged"]);

    app.gql(
        "mutation($input: UpdatePathwayInput!) { updatePathway(input: $input) { pathway { name } } }",
        json!({ "input": { "pathwayId": pathway.id, "name": "Botox & fillers" } }),
    )
    .await
    .data();
    let added = app
        .gql(
            "mutation($input: AddStageInput!) { addStage(input: $input) { stage { key position } } }",
            json!({ "input": { "pathwayId": pathway.id, "position": 1, "stage": { "key": "intake", "name": "Intake", "category": "INTAKE" } } }),
        )
        .await;
    assert_eq!(added.data()["addStage"]["stage"]["position"], 1);

    app.gql(
        "mutation($input: ArchivePathwayInput!) { archivePathway(input: $input) { pathway { archived } } }",
        json!({ "input": { "pathwayId": pathway.id } }),
    )
    .await
    .data();
    let listed = app
        .gql(
            "{ pathways { id } all: pathways(includeArchived: true) { name archived } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.data()["pathways"].as_array().unwrap().len(), 0);
    assert_eq!(listed.data()["all"][0]["name"], "Botox & fillers");
    let patient = app.patient("Gia").await;
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
    )
    .await
    .assert_error("CONFLICT", Some("input.pathwayId"));
}

on_both_backends!(
    a_journey_moves_through_its_pathway,
    one_active_journey_per_patient_and_pathway,
    concurrent_moves_with_the_same_version_let_one_win,
    stalls_and_the_stage_at_the_time,
    follow_ups_are_completed_by_hand_or_by_a_touchpoint,
    pathways_are_managed,
);
