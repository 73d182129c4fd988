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
            // the inquiry call-back, cancelled by the move
            "follow_up.cancelled",
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
    assert_eq!(sequences, (1..=9).collect::<Vec<_>>());
    assert_eq!(page["totalCount"], 9);

    let cancelled = &events[3]["data"];
    assert_eq!(cancelled["followUpId"], events[2]["data"]["followUpId"]);
    assert_eq!(cancelled["journeyId"], journey.as_str());
    let changed = &events[4]["data"];
    assert_eq!(changed["journeyId"], journey.as_str());
    assert_eq!(changed["previous"]["key"], "inquiry");
    assert_eq!(changed["current"]["key"], "consultation");
    assert_eq!(changed["direction"], "FORWARD");
    assert!(changed["secondsInPrevious"].is_i64());
    assert_eq!(
        changed["cancelledFollowUpIds"],
        json!([cancelled["followUpId"]])
    );
    assert_eq!(events[8]["data"]["changedFields"], json!(["phone"]));

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
    assert_eq!(nodes(&rest).len(), 6);
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

const JOURNEY_FACTS: &str = r#"query($id: ID!) { journey(id: $id) {
  version status endReason
  history { id kind toStage { id } }
  followUps { id status dueAt }
} }"#;

async fn journey_facts(app: &TestApp, journey: &str) -> Value {
    app.gql(JOURNEY_FACTS, json!({ "id": journey }))
        .await
        .data()["journey"]
        .clone()
}

/// The one event of `event_type` about `subject`.
async fn event_about(app: &TestApp, event_type: &str, subject: &str) -> Value {
    let events = nodes(&events_page(app, None, 100, Some(vec![event_type])).await);
    let about: Vec<Value> = events
        .into_iter()
        .filter(|e| e["subject"] == subject)
        .collect();
    assert_eq!(
        about.len(),
        1,
        "one {event_type} about {subject}: {about:#?}"
    );
    about[0].clone()
}

/// The last transition of a journey's history, and the open follow-ups it
/// had before (ids), from what the API shows.
fn last_transition(facts: &Value) -> Value {
    facts["history"].as_array().unwrap().last().unwrap().clone()
}

fn follow_up_ids(facts: &Value, status: &str) -> Vec<Value> {
    facts["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == status)
        .map(|f| f["id"].clone())
        .collect()
}

async fn journeys_completed_and_dropped_announce_their_facts(app: TestApp) {
    let p = app.pathway().await;
    let (ana, bea, cy) = (
        app.patient("Ana").await,
        app.patient("Bea").await,
        app.patient("Cy").await,
    );

    // Completed by hand in consultation, with a note.
    let completed = app.start_journey(&ana, &p.id).await;
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": completed, "stageId": p.consultation } }),
    )
    .await
    .data();
    let open = follow_up_ids(&journey_facts(&app, &completed).await, "OPEN");
    assert_eq!(open.len(), 1, "the consultation's SMS check-in is open");
    app.gql(
        "mutation($input: CompleteJourneyInput!) { completeJourney(input: $input) { journey { status } } }",
        json!({ "input": { "journeyId": completed, "expectedVersion": 2, "note": "booked a package" } }),
    )
    .await
    .data();
    let facts = journey_facts(&app, &completed).await;
    assert_eq!(facts["status"], "COMPLETED");
    let transition = last_transition(&facts);
    assert_eq!(transition["kind"], "COMPLETED");
    let event = event_about(&app, "journey.completed", &completed).await;
    let data = &event["data"];
    assert_eq!(data["journeyId"], completed.as_str());
    assert_eq!(data["patientId"], ana.as_str());
    assert_eq!(data["pathwayId"], p.id.as_str());
    assert_eq!(data["transitionId"], transition["id"]);
    assert_eq!(
        data["stage"],
        json!({ "stageId": p.consultation, "key": "consultation", "name": "Consultation", "category": "CONSULTATION", "position": 1 })
    );
    assert_eq!(data["status"], "COMPLETED");
    assert_eq!(data["reason"], "booked a package");
    assert_eq!(data["version"], facts["version"]);
    assert_eq!(data["version"], 3);
    assert_eq!(data["cancelledFollowUpIds"], json!(open), "{data}");
    let cancelled = follow_up_ids(&facts, "CANCELLED");
    assert!(open.iter().all(|id| cancelled.contains(id)), "{facts}");
    assert!(data["occurredAt"].is_string());
    assert!(!data.to_string().contains("Ana"), "no names in {data}");

    // Dropped in inquiry, with a reason.
    let dropped = app.start_journey(&bea, &p.id).await;
    let open = follow_up_ids(&journey_facts(&app, &dropped).await, "OPEN");
    assert_eq!(open.len(), 1, "the inquiry's call-back is open");
    app.gql(
        "mutation($input: DropJourneyInput!) { dropJourney(input: $input) { journey { status } } }",
        json!({ "input": { "journeyId": dropped, "reason": "price" } }),
    )
    .await
    .data();
    let facts = journey_facts(&app, &dropped).await;
    assert_eq!(
        (&facts["status"], &facts["endReason"]),
        (&json!("DROPPED"), &json!("price"))
    );
    let event = event_about(&app, "journey.dropped", &dropped).await;
    let data = &event["data"];
    assert_eq!(data["journeyId"], dropped.as_str());
    assert_eq!(data["patientId"], bea.as_str());
    assert_eq!(data["transitionId"], last_transition(&facts)["id"]);
    assert_eq!(data["stage"]["stageId"], p.inquiry.as_str());
    assert_eq!(data["stage"]["key"], "inquiry");
    assert_eq!(data["status"], "DROPPED");
    assert_eq!(data["reason"], "price");
    assert_eq!(data["version"], 2);
    assert_eq!(data["cancelledFollowUpIds"], json!(open));

    // Completed by entering the terminal stage: a stage change and a completion.
    let finished = app.start_journey(&cy, &p.id).await;
    let move_to = |stage: &str| {
        app.gql(
            "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
            json!({ "input": { "journeyId": finished, "stageId": stage } }),
        )
    };
    move_to(&p.consultation).await.data();
    move_to(&p.treatment).await.data();
    // Treatment's aftercare SMS is the one follow-up open when it ends.
    let open = follow_up_ids(&journey_facts(&app, &finished).await, "OPEN");
    assert_eq!(open.len(), 1);
    move_to(&p.discharged).await.data();
    let facts = journey_facts(&app, &finished).await;
    assert_eq!(facts["status"], "COMPLETED");
    let event = event_about(&app, "journey.completed", &finished).await;
    let data = &event["data"];
    assert_eq!(data["stage"]["key"], "discharged");
    assert_eq!(data["stage"]["stageId"], p.discharged.as_str());
    assert_eq!(data["status"], "COMPLETED");
    assert_eq!(data["reason"], Value::Null);
    assert_eq!(data["version"], 4);
    // The move into the terminal stage is the transition it reports.
    assert_eq!(data["transitionId"], last_transition(&facts)["id"]);
    assert_eq!(
        last_transition(&facts)["toStage"]["id"],
        p.discharged.as_str()
    );
    // A completed journey cancels every open follow-up, even one kept on exit.
    assert_eq!(data["cancelledFollowUpIds"], json!(open), "{data}");
    assert!(follow_up_ids(&facts, "OPEN").is_empty(), "{facts}");
}

/// An RFC 3339 time as an instant (the API and the events may write the same
/// instant with different numbers of fraction digits).
fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .with_timezone(&chrono::Utc)
}

async fn completed_follow_ups_announce_how(app: TestApp) {
    let p = app.pathway().await;
    let patient = app.patient("Dee").await;
    // Started 5 h ago: the 2 h call-back is late.
    let late = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": p.id,
                               "occurredAt": (chrono::Utc::now() - chrono::Duration::hours(5)).to_rfc3339() } }),
        )
        .await;
    let journey = late.data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let call_back = journey_facts(&app, &journey).await["followUps"][0].clone();

    // Closed by the touchpoint that did it.
    let touchpoint = app
        .gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE",
                               "direction": "OUTBOUND", "kind": "call-back", "completesFollowUpId": call_back["id"] } }),
        )
        .await;
    let touchpoint = touchpoint.data()["logTouchpoint"]["touchpoint"]["id"].clone();
    let event = event_about(
        &app,
        "follow_up.completed",
        call_back["id"].as_str().unwrap(),
    )
    .await;
    let data = &event["data"];
    assert_eq!(data["followUpId"], call_back["id"]);
    assert_eq!(data["journeyId"], journey.as_str());
    assert_eq!(data["patientId"], patient.as_str());
    assert_eq!(data["touchpointId"], touchpoint);
    assert_eq!(instant(&data["dueAt"]), instant(&call_back["dueAt"]));
    assert!(data["completedAt"].is_string());
    assert_eq!(data["late"], true, "{data}");

    // Closed by hand, on time: no touchpoint.
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": p.consultation } }),
    )
    .await
    .data();
    let check_in = journey_facts(&app, &journey).await["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["status"] == "OPEN")
        .cloned()
        .expect("the consultation's check-in");
    app.gql(
        "mutation($input: CompleteFollowUpInput!) { completeFollowUp(input: $input) { followUp { id } } }",
        json!({ "input": { "followUpId": check_in["id"] } }),
    )
    .await
    .data();
    let event = event_about(
        &app,
        "follow_up.completed",
        check_in["id"].as_str().unwrap(),
    )
    .await;
    let data = &event["data"];
    assert_eq!(data["followUpId"], check_in["id"]);
    assert_eq!(data["touchpointId"], Value::Null);
    assert_eq!(instant(&data["dueAt"]), instant(&check_in["dueAt"]));
    assert_eq!(data["late"], false, "{data}");
}

/// A reader paging `events(after:)` while writers commit concurrently sees
/// every event exactly once, each page starting right after the last one it
/// saw: a number is never visible before the numbers below it.
async fn a_reader_following_concurrent_writers_misses_nothing(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Rhea").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let before = nodes(&events_page(&app, None, 100, None).await).len() as i64;
    let done = std::sync::atomic::AtomicBool::new(false);
    let writers = async {
        let writer = |w: usize| {
            let (app, patient, journey) = (&app, &patient, &journey);
            async move {
                for n in 0..12 {
                    app.gql(
                        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
                        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "CHAT", "direction": "INBOUND", "kind": format!("w{w}-{n}") } }),
                    )
                    .await
                    .data();
                }
            }
        };
        futures::future::join_all((0..8).map(writer)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = async {
        let mut seen: Vec<i64> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let page = events_page(&app, cursor.as_deref(), 50, None).await;
            for node in nodes(&page) {
                journeymap_tests::saw_next(&mut seen, node["sequence"].as_i64().unwrap());
            }
            if let Some(end) = page["pageInfo"]["endCursor"].as_str() {
                cursor = Some(end.to_string());
            }
            if finished && page["pageInfo"]["hasNextPage"] == false && nodes(&page).is_empty() {
                break seen;
            }
        }
    };
    let ((), seen) = futures::join!(writers, reader);
    assert_eq!(seen, (1..=before + 96).collect::<Vec<_>>());
}

/// A writer that stopped between its commit and its numbering (PostgreSQL)
/// leaves its events waiting: the sweeper numbers them next in the clinic's
/// sequence and they reach the log; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeymap_postgres_tests),
    ignore = "set JOURNEYMAP_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn events_left_waiting_by_a_stopped_writer_are_numbered_postgres() {
    use journeymap::sea_orm::ConnectionTrait;
    let app = journeymap_tests::spawn_app(journeymap_tests::Backend::Postgres).await;
    let pathway = app.pathway().await;
    let patient = app.patient("Orla").await;
    app.start_journey(&patient, &pathway.id).await;
    let before = nodes(&events_page(&app, None, 100, None).await);
    let last = before.last().unwrap()["sequence"].as_i64().unwrap();
    let clinic =
        journeymap_tests::scalar::<uuid::Uuid>(app.db(), "SELECT id FROM clinics WHERE slug = 'a'")
            .await;
    // What a writer killed right after its commit leaves: its event, with
    // the placeholder number, written a while ago.
    let left = journeymap::ids::new_id();
    let statement = journeymap::db::statement(
        app.db().backend(),
        "INSERT INTO events (id, clinic_id, sequence, event_type, subject, data, occurred_at) \
         VALUES (?, ?, -1048577, 'patient.updated', ?, ?, ?)",
        vec![
            left.into(),
            clinic.into(),
            patient.clone().into(),
            journeymap::sea_orm::Value::Json(Some(Box::new(json!({ "patientId": patient })))),
            (chrono::Utc::now() - chrono::Duration::seconds(10)).into(),
        ],
    );
    journeymap::db::uncounted(app.db().conn().execute_raw(statement))
        .await
        .expect("leave an event waiting");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let after = nodes(&events_page(&app, None, 100, None).await);
        if after.len() > before.len() {
            let numbered = after.last().unwrap();
            assert_eq!(numbered["sequence"], last + 1, "{numbered}");
            assert_eq!(numbered["type"], "patient.updated");
            assert_eq!(after.len(), before.len() + 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the waiting event was never numbered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

on_both_backends!(
    every_mutation_writes_its_event,
    a_reader_following_concurrent_writers_misses_nothing,
    concurrent_writes_get_gap_free_unique_sequences,
    journeys_completed_and_dropped_announce_their_facts,
    completed_follow_ups_announce_how,
);
