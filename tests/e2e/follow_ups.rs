//! Follow-up automation: the overdue sweeper announces each overdue follow-up
//! exactly once with the facts of the work list, detractors get a
//! service-recovery call within 24 hours for the journey's owner, stage rules
//! are replaced, and follow-ups are completed by hand or by a touchpoint.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use journeymap::auth::Role;
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

const WORK_LIST: &str = r#"{ followUps(filter: { overdue: true }, first: 100) {
  totalCount
  edges { node { id kind dueAt channel status overdue journey { id } patient { id } stage { id } assignee { id } } }
} }"#;

/// The sweep announces exactly the open follow-ups past due, each once, with
/// the facts of the coordinator's work list; done, cancelled and not-yet-due
/// ones are never announced. (Two replicas sweeping at once, as processes:
/// `replicas::two_replicas_announce_each_overdue_follow_up_once_postgres`.)
async fn the_overdue_sweep_announces_the_work_list(app: TestApp) {
    let pathway = app.pathway().await;
    let start = |patient: String, hours: i64| {
        let app = &app;
        let pathway = pathway.id.clone();
        async move {
            app.gql(
                "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id followUps { id } } } }",
                json!({ "input": { "patientId": patient, "pathwayId": pathway, "occurredAt": ago(hours) } }),
            )
            .await
            .data()["startJourney"]["journey"]
                .clone()
        }
    };
    // Three journeys started 5 h ago: their 2 h call-backs are overdue.
    for name in ["Una", "Vic", "Wes"] {
        start(app.patient(name).await, 5).await;
    }
    // One on time: due in an hour.
    start(app.patient("Xia").await, 1).await;
    // One overdue call-back done by hand, one cancelled with its journey.
    let done = start(app.patient("Yul").await, 5).await;
    app.gql(
        "mutation($input: CompleteFollowUpInput!) { completeFollowUp(input: $input) { followUp { id } } }",
        json!({ "input": { "followUpId": done["followUps"][0]["id"] } }),
    )
    .await
    .data();
    let dropped = start(app.patient("Zac").await, 5).await;
    app.gql(
        "mutation($input: DropJourneyInput!) { dropJourney(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": dropped["id"], "reason": "moved away" } }),
    )
    .await
    .data();

    let list = app.gql(WORK_LIST, json!({})).await;
    let list = list.data()["followUps"].clone();
    assert_eq!(list["totalCount"], 3, "{list:#}");
    let work: Vec<Value> = list["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();

    // A sweep announces the three; another sweep, nothing more.
    assert_eq!(sweep_overdue(&app.store, 100).await.unwrap(), 3);
    assert_eq!(sweep_overdue(&app.store, 100).await.unwrap(), 0);
    let announced = events_of(&app, "follow_up.overdue").await;
    assert_eq!(announced.len(), 3, "{announced:#?}");
    for item in &work {
        let about: Vec<&Value> = announced
            .iter()
            .filter(|e| e["data"]["followUpId"] == item["id"])
            .collect();
        assert_eq!(
            about.len(),
            1,
            "{} announced once: {announced:#?}",
            item["id"]
        );
        let data = &about[0]["data"];
        assert_eq!(data["kind"], item["kind"]);
        assert_eq!(data["kind"], "STAGE_RULE");
        assert_eq!(data["journeyId"], item["journey"]["id"]);
        assert_eq!(data["patientId"], item["patient"]["id"]);
        assert_eq!(data["stageId"], item["stage"]["id"]);
        assert_eq!(data["stageId"], pathway.inquiry.as_str());
        assert_eq!(data["channel"], item["channel"]);
        assert_eq!(data["channel"], "PHONE");
        assert_eq!(data["assigneeId"], Value::Null);
        assert_eq!(instant(&data["dueAt"]), instant(&item["dueAt"]));
        assert!(instant(&data["dueAt"]) < Utc::now());
        assert_eq!(
            (&item["status"], &item["overdue"]),
            (&json!("OPEN"), &json!(true))
        );
    }
    // Announcing does not close anything: the work list is the same.
    let after = app.gql(WORK_LIST, json!({})).await;
    assert_eq!(after.data()["followUps"], list);
}

fn instant(value: &Value) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap()
        .with_timezone(&Utc)
}

async fn detractors_get_a_service_recovery_call(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Yara").await;
    // The journey is owned by a coordinator: the call is theirs to make.
    let (email, password) = app.staff_in("a", Role::Coordinator).await;
    let owner = app.login("a", &email, &password).await;
    let owner = owner.data()["login"]["staff"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let journey = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id owner { id } } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "ownerId": owner } }),
        )
        .await;
    assert_eq!(
        journey.data()["startJourney"]["journey"]["owner"]["id"],
        owner.as_str()
    );
    let journey = journey.data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
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
    assert_eq!(
        calls[0]["assignee"]["id"],
        owner.as_str(),
        "assigned to the journey's owner"
    );
    let due = chrono::DateTime::parse_from_rfc3339(calls[0]["dueAt"].as_str().unwrap()).unwrap();
    let hours = (due.with_timezone(&Utc) - Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.0..=24.1).contains(&hours), "due in {hours} h");

    // Another detractor (CSAT 2, no journey given: the active one is used)
    // while the call is still open: still one call.
    submit("CSAT", 2, None).await.data();
    assert_eq!(recovery(&app, &journey).await.len(), 1);

    let scheduled = events_of(&app, "follow_up.scheduled").await;
    let recovery_events: Vec<&Value> = scheduled
        .iter()
        .filter(|e| e["data"]["kind"] == "SERVICE_RECOVERY")
        .collect();
    assert_eq!(recovery_events.len(), 1, "{scheduled:#?}");
    assert_eq!(recovery_events[0]["data"]["journeyId"], journey.as_str());
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
        "query($id: ID!) { journey(id: $id) { followUps { kind status dueAt channel note assignee { id } } } }",
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

const SET_RULES: &str = r#"mutation($input: SetStageFollowUpRulesInput!) {
  setStageFollowUpRules(input: $input) { stage { id key followUpRules { delayHours channel note cancelOnStageExit } } }
}"#;

/// A stage's rules are replaced; journeys entering it afterwards get the new
/// follow-ups, and bad rules are refused naming the field, writing nothing.
async fn stage_follow_up_rules_are_replaced(app: TestApp) {
    let pathway = app.pathway().await;
    let set = app
        .gql(
            SET_RULES,
            json!({ "input": { "stageId": pathway.consultation, "rules": [
                { "delayHours": 1, "channel": "EMAIL", "note": "Send the prep guide" },
                { "delayHours": 24, "channel": "SMS", "note": "Any questions?", "cancelOnStageExit": false }
            ] } }),
        )
        .await;
    let stage = &set.data()["setStageFollowUpRules"]["stage"];
    assert_eq!(stage["id"], pathway.consultation.as_str());
    assert_eq!(
        stage["followUpRules"],
        json!([
            { "delayHours": 1, "channel": "EMAIL", "note": "Send the prep guide", "cancelOnStageExit": true },
            { "delayHours": 24, "channel": "SMS", "note": "Any questions?", "cancelOnStageExit": false }
        ])
    );
    // Read back the same.
    let read = app
        .gql(
            "query($id: ID!) { pathway(id: $id) { stages { key followUpRules { delayHours channel } } } }",
            json!({ "id": pathway.id }),
        )
        .await;
    let consultation = read.data()["pathway"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "consultation")
        .unwrap()
        .clone();
    assert_eq!(
        consultation["followUpRules"],
        json!([{ "delayHours": 1, "channel": "EMAIL" }, { "delayHours": 24, "channel": "SMS" }])
    );

    // A journey entering the stage now gets the two new follow-ups, not the
    // old 48 h SMS.
    let patient = app.patient("Rue").await;
    // Rue agreed to texts about her care; without that the SMS would go by
    // another channel (`outreach::texts_need_consent_and_stop_withdraws_it`).
    app.gql(
        "mutation($input: RecordConsentInput!) { recordConsent(input: $input) { patient { id } } }",
        json!({ "input": { "patientId": patient, "channel": "SMS", "purpose": "CARE", "granted": true, "source": "intake form" } }),
    )
    .await
    .data();
    let journey = app.start_journey(&patient, &pathway.id).await;
    let moved_at = Utc::now();
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
    )
    .await
    .data();
    let follow_ups = app
        .gql(
            "query($id: ID!) { journey(id: $id) { followUps { status channel note dueAt stage { id } } } }",
            json!({ "id": journey }),
        )
        .await;
    let open: Vec<Value> = follow_ups.data()["journey"]["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "OPEN")
        .cloned()
        .collect();
    let mut seen: Vec<(String, i64)> = open
        .iter()
        .map(|f| {
            let hours = (instant(&f["dueAt"]) - moved_at).num_minutes() as f64 / 60.0;
            (
                f["channel"].as_str().unwrap().to_string(),
                hours.round() as i64,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("EMAIL".to_string(), 1), ("SMS".to_string(), 24)],
        "{open:#?}"
    );
    assert!(
        open.iter()
            .all(|f| f["stage"]["id"] == pathway.consultation.as_str())
    );

    // Bad rules: refused with the field at fault, nothing written.
    let before = app.row_counts().await;
    for (rules, field) in [
        (
            json!([{ "delayHours": -1, "channel": "SMS" }]),
            "input.rules[0].delayHours",
        ),
        (
            Value::Array(
                (0..11)
                    .map(|_| json!({ "delayHours": 1, "channel": "SMS" }))
                    .collect(),
            ),
            "input.rules",
        ),
        (
            json!([{ "delayHours": 1, "channel": "SMS" }, { "delayHours": 2, "channel": "SMS", "note": "x".repeat(1001) }]),
            "input.rules[1].note",
        ),
    ] {
        app.gql(
            SET_RULES,
            json!({ "input": { "stageId": pathway.consultation, "rules": rules } }),
        )
        .await
        .assert_error("BAD_USER_INPUT", Some(field));
    }
    // Another clinic's stage is not found.
    let other = app.clinic("b").await;
    app.gql_as(
        Some(&other),
        SET_RULES,
        json!({ "input": { "stageId": pathway.consultation, "rules": [] } }),
    )
    .await
    .assert_error("NOT_FOUND", Some("input.stageId"));
    assert_eq!(app.row_counts().await, before, "refused rules wrote rows");
}

/// `completeFollowUp` without a touchpoint closes it by hand: DONE, when,
/// and `completedBy` null; with one, `completedBy` is that touchpoint; twice
/// is a CONFLICT.
async fn follow_ups_are_completed_by_hand_or_by_a_touchpoint(app: TestApp) {
    const COMPLETE: &str = r#"mutation($input: CompleteFollowUpInput!) {
      completeFollowUp(input: $input) { followUp { id status overdue completedAt completedBy { id } } }
    }"#;
    let pathway = app.pathway().await;
    let patient = app.patient("Hal").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let call_back = app
        .gql(
            "query($id: ID!) { journey(id: $id) { followUps { id status } } }",
            json!({ "id": journey }),
        )
        .await;
    let call_back = call_back.data()["journey"]["followUps"][0]["id"].clone();

    let before = Utc::now();
    let done = app
        .gql(COMPLETE, json!({ "input": { "followUpId": call_back } }))
        .await;
    let done = &done.data()["completeFollowUp"]["followUp"];
    assert_eq!(done["id"], call_back);
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["overdue"], false);
    assert_eq!(done["completedBy"], Value::Null, "done by hand: {done}");
    let at = instant(&done["completedAt"]);
    assert!(
        at >= before - chrono::Duration::seconds(1) && at <= Utc::now(),
        "{done}"
    );

    let before = app.row_counts().await;
    app.gql(COMPLETE, json!({ "input": { "followUpId": call_back } }))
        .await
        .assert_error("CONFLICT", None);
    assert_eq!(
        app.row_counts().await,
        before,
        "a second completion wrote rows"
    );

    // With the touchpoint that fulfilled it.
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
    )
    .await
    .data();
    let check_in = app
        .gql(
            "query($id: ID!) { journey(id: $id) { followUps { id status } } }",
            json!({ "id": journey }),
        )
        .await;
    let check_in = check_in.data()["journey"]["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["status"] == "OPEN")
        .unwrap()["id"]
        .clone();
    let touchpoint = app
        .gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "OUTBOUND", "kind": "check-in" } }),
        )
        .await;
    let touchpoint = touchpoint.data()["logTouchpoint"]["touchpoint"]["id"].clone();
    let done = app
        .gql(
            COMPLETE,
            json!({ "input": { "followUpId": check_in, "touchpointId": touchpoint } }),
        )
        .await;
    let done = &done.data()["completeFollowUp"]["followUp"];
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["completedBy"]["id"], touchpoint);
}

on_both_backends!(
    the_overdue_sweep_announces_the_work_list,
    detractors_get_a_service_recovery_call,
    stage_follow_up_rules_are_replaced,
    follow_ups_are_completed_by_hand_or_by_a_touchpoint,
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
