//! The audit log: every write in the transaction that makes it, reads of a
//! patient's identifying data by a background writer, filters and who may
//! look; erasure (what goes, what stays) and export (everything, audited).

use std::time::Duration;

use chrono::{DateTime, Utc};
use journeymap::auth::{Permission, Role};
use journeymap_tests::{Gql, TestApp, on_both_backends};
use serde_json::{Value, json};

const AUDIT_LOG: &str = r#"query($filter: AuditLogFilter, $first: Int) {
  auditLog(first: $first, filter: $filter) {
    totalCount
    nodes {
      action actorKind actorId staff { id }
      record { kind id } patientId patientIds requestId occurredAt
    }
  }
}"#;

const ACCESS_LOG: &str = r#"query($id: ID!) {
  patient(id: $id) {
    id
    accessLog(first: 100) {
      totalCount
      nodes { action actorKind actorId record { kind id } patientId patientIds requestId occurredAt }
    }
  }
}"#;

const MOVE: &str = r#"mutation($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) { journey { id version } }
}"#;

const LOG_TOUCHPOINT: &str = r#"mutation($input: LogTouchpointInput!) {
  logTouchpoint(input: $input) { touchpoint { id } }
}"#;

const SUBMIT_FEEDBACK: &str = r#"mutation($input: SubmitFeedbackInput!) {
  submitFeedback(input: $input) { feedback { id } }
}"#;

const ERASE: &str = r#"mutation($input: ErasePatientInput!) {
  erasePatient(input: $input) { patient { id erased givenName familyName email } }
}"#;

const EXPORT: &str = r#"mutation($input: ExportPatientInput!) {
  exportPatient(input: $input) { data }
}"#;

/// Runs `query` with `token`, sending `request_id` as `x-request-id`, and
/// checks the server kept it.
async fn gql_in_request(
    app: &TestApp,
    token: &str,
    request_id: &str,
    query: &str,
    variables: Value,
) -> Gql {
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(request_id),
        "the server did not keep the client's x-request-id"
    );
    let status = response.status();
    let body = response.json().await.expect("JSON body");
    Gql { status, body }
}

/// A request id unique to this run.
fn request_id(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// The global id of the caller with `token`.
async fn viewer_id(app: &TestApp, token: &str) -> String {
    app.gql_as(Some(token), "{ viewer { id } }", json!({}))
        .await
        .data()["viewer"]["id"]
        .as_str()
        .expect("viewer id")
        .to_string()
}

/// The audit log as `token` sees it with `filter` (first 100 entries).
async fn audit_log(app: &TestApp, token: &str, filter: Value) -> (i64, Vec<Value>) {
    let answer = app
        .gql_as(
            Some(token),
            AUDIT_LOG,
            json!({ "filter": filter, "first": 100 }),
        )
        .await;
    let log = &answer.data()["auditLog"];
    (
        log["totalCount"].as_i64().expect("totalCount"),
        log["nodes"].as_array().expect("nodes").clone(),
    )
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The entry of `action` made in request `request_id`.
fn entry<'a>(entries: &'a [Value], action: &str, request_id: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action && e["requestId"] == request_id)
        .unwrap_or_else(|| {
            panic!(
                "no {action} entry of request {request_id} in {}",
                serde_json::to_string_pretty(entries).unwrap()
            )
        })
}

fn str_of(value: &Value) -> String {
    value.as_str().expect("a string").to_string()
}

/// Asserts an entry is `action` on `kind` `id` by `actor`, about `patient`,
/// recently.
#[track_caller]
fn assert_entry(
    entry: &Value,
    action: &str,
    record: (&str, &str),
    actor: (&str, &str),
    patient: Option<&str>,
) {
    let pretty = serde_json::to_string_pretty(entry).unwrap();
    assert_eq!(entry["action"], action, "{pretty}");
    assert_eq!(entry["record"]["kind"], record.0, "{pretty}");
    assert_eq!(entry["record"]["id"], record.1, "{pretty}");
    assert_eq!(entry["actorKind"], actor.0, "{pretty}");
    assert_eq!(entry["actorId"], actor.1, "{pretty}");
    assert_eq!(entry["patientId"], json!(patient), "{pretty}");
    let at = time(&entry["occurredAt"]);
    let now = Utc::now();
    assert!(
        at <= now + chrono::Duration::seconds(5) && at >= now - chrono::Duration::minutes(5),
        "occurredAt {at} is not about now ({now}): {pretty}"
    );
}

/// Waits until `token`'s view of the audit log with `filter` holds an entry
/// matching `found`, at most ten seconds (reads are written every 250 ms).
/// The read audit writes a request's rows in one statement, after those of
/// every earlier request: once one row of a request is there, all of its
/// rows and all earlier requests' rows are.
async fn wait_for_entry(
    app: &TestApp,
    token: &str,
    filter: Value,
    found: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let (_, entries) = audit_log(app, token, filter.clone()).await;
        if entries.iter().any(&found) {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, entries) = audit_log(app, token, filter).await;
    panic!(
        "the expected entry never appeared: {}",
        serde_json::to_string_pretty(&entries).unwrap()
    );
}

// --- writes ------------------------------------------------------------------

async fn every_write_is_audited_with_its_request(app: TestApp) {
    let token_id = viewer_id(&app, &app.token).await;
    let owner = app.staff_token(Role::Owner).await;
    let owner_id = viewer_id(&app, &owner).await;
    let pathway = app.pathway().await;

    let create = request_id("create-patient");
    let created = gql_in_request(
        &app,
        &app.token,
        &create,
        "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
        json!({ "input": { "givenName": "Amara", "familyName": "Nwosu", "email": "amara@example.com" } }),
    )
    .await;
    let patient = str_of(&created.data()["createPatient"]["patient"]["id"]);

    let start = request_id("start-journey");
    let started = gql_in_request(
        &app,
        &app.token,
        &start,
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id version } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway.id } }),
    )
    .await;
    let journey = str_of(&started.data()["startJourney"]["journey"]["id"]);
    let version = started.data()["startJourney"]["journey"]["version"]
        .as_i64()
        .unwrap();

    let moved = request_id("move-journey");
    gql_in_request(
        &app,
        &app.token,
        &moved,
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "expectedVersion": version } }),
    )
    .await
    .data();

    // A refused write leaves no entry: the entry is part of the transaction.
    let refused = request_id("stale-move");
    gql_in_request(
        &app,
        &app.token,
        &refused,
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": pathway.treatment, "expectedVersion": version } }),
    )
    .await
    .assert_error("CONFLICT", None);

    let token_request = request_id("create-token");
    let new_token = gql_in_request(
        &app,
        &owner,
        &token_request,
        "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { token { id } secret } }",
        json!({ "input": { "name": "CRM sync", "scopes": ["patients:read"] } }),
    )
    .await;
    let new_token = str_of(&new_token.data()["createApiToken"]["token"]["id"]);

    // Visible at once: written with the change, not later.
    for reader in [&owner, &app.token] {
        let (total, entries) = audit_log(&app, reader, json!(null)).await;
        assert_eq!(total as usize, entries.len(), "more than one page");

        assert_entry(
            entry(&entries, "patient.created", &create),
            "patient.created",
            ("Patient", &patient),
            ("API_TOKEN", &token_id),
            Some(&patient),
        );
        assert_entry(
            entry(&entries, "journey.started", &start),
            "journey.started",
            ("Journey", &journey),
            ("API_TOKEN", &token_id),
            Some(&patient),
        );
        // Its follow-up is in the same request.
        let scheduled = entry(&entries, "follow_up.scheduled", &start);
        assert_eq!(scheduled["record"]["kind"], "FollowUp", "{scheduled}");
        assert_eq!(scheduled["patientId"], patient.as_str(), "{scheduled}");
        assert_entry(
            entry(&entries, "journey.stage_changed", &moved),
            "journey.stage_changed",
            ("Journey", &journey),
            ("API_TOKEN", &token_id),
            Some(&patient),
        );
        let token_entry = entry(&entries, "api_token.created", &token_request);
        assert_entry(
            token_entry,
            "api_token.created",
            ("ApiToken", &new_token),
            ("STAFF", &owner_id),
            None,
        );
        assert_eq!(
            token_entry["staff"]["id"],
            owner_id.as_str(),
            "{token_entry}"
        );

        assert!(
            entries.iter().all(|e| e["requestId"] != refused.as_str()),
            "the refused move left an entry: {}",
            serde_json::to_string_pretty(&entries).unwrap()
        );
        assert!(
            entries.iter().any(|e| e["action"] == "pathway.created"),
            "createPathway is not in the log"
        );

        // Newest first.
        let times: Vec<_> = entries.iter().map(|e| time(&e["occurredAt"])).collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "not newest first: {times:?}"
        );
        let position = |action: &str, request: &str| {
            entries
                .iter()
                .position(|e| e["action"] == action && e["requestId"] == request)
                .unwrap()
        };
        assert!(
            position("api_token.created", &token_request) < position("patient.created", &create)
        );
    }
}

// --- reads -------------------------------------------------------------------

async fn reads_of_identifying_data_are_recorded(app: TestApp) {
    let owner = app.staff_token(Role::Owner).await;
    let patient = app.patient("Noor").await;
    let other = app.patient("Ravi").await;
    let reader = app.token_with(&[Permission::PatientsRead]).await;
    let reader_id = viewer_id(&app, &reader).await;
    let counter = app.token_with(&[Permission::PatientsRead]).await;
    let counter_id = viewer_id(&app, &counter).await;

    // Ids, times and journeys are not identifying: no entry.
    let quiet = request_id("ids-only");
    gql_in_request(
        &app,
        &counter,
        &quiet,
        "query($id: ID!) { patient(id: $id) { id createdAt erased journeys { id } } patients { totalCount edges { node { id } } } }",
        json!({ "id": patient }),
    )
    .await
    .data();

    let read = request_id("read-patient");
    let answer = gql_in_request(
        &app,
        &reader,
        &read,
        "query($id: ID!) { patient(id: $id) { givenName familyName email } }",
        json!({ "id": patient }),
    )
    .await;
    assert_eq!(answer.data()["patient"]["givenName"], "Noor");

    let filter = json!({ "patientId": patient });
    let entries = wait_for_entry(&app, &owner, filter.clone(), |e| {
        e["action"] == "patient.read" && e["requestId"] == read.as_str()
    })
    .await;
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "patient.read")
        .collect();
    assert_eq!(
        reads.len(),
        1,
        "one request reading three fields is one read: {}",
        serde_json::to_string_pretty(&entries).unwrap()
    );
    assert_entry(
        reads[0],
        "patient.read",
        ("Patient", &patient),
        ("API_TOKEN", &reader_id),
        Some(&patient),
    );
    assert_eq!(reads[0]["requestId"], read.as_str());
    assert!(
        entries.iter().all(|e| e["patientId"] == patient.as_str()),
        "the patientId filter let other patients through"
    );
    // Ravi was not read.
    let (_, ravi) = audit_log(&app, &owner, json!({ "patientId": other })).await;
    assert!(
        ravi.iter().all(|e| e["action"] != "patient.read"),
        "a read of Ravi was recorded: {ravi:#?}"
    );

    // The token that only read ids has no entry at all.
    let (total, by_counter) = audit_log(&app, &owner, json!({ "actorId": counter_id })).await;
    assert_eq!(
        total,
        0,
        "reading only ids was recorded: {}",
        serde_json::to_string_pretty(&by_counter).unwrap()
    );

    // The patient's own access log shows the same read.
    let access = app
        .gql_as(Some(&owner), ACCESS_LOG, json!({ "id": patient }))
        .await;
    let nodes = access.data()["patient"]["accessLog"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let read_entry = entry(&nodes, "patient.read", &read);
    assert_entry(
        read_entry,
        "patient.read",
        ("Patient", &patient),
        ("API_TOKEN", &reader_id),
        Some(&patient),
    );
    assert!(nodes.iter().any(|e| e["action"] == "patient.created"));
    assert_eq!(
        access.data()["patient"]["accessLog"]["totalCount"],
        json!(nodes.len())
    );

    // Names in a list are reads too, by a staff member here.
    let owner_id = viewer_id(&app, &owner).await;
    let listed = request_id("list-names");
    gql_in_request(
        &app,
        &owner,
        &listed,
        "{ patients(first: 10) { edges { node { id familyName } } } }",
        json!({}),
    )
    .await
    .data();
    let entries = wait_for_entry(&app, &owner, json!({ "actorId": owner_id }), |e| {
        e["requestId"] == listed.as_str()
    })
    .await;
    // One entry for the request, naming both patients.
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "patient.read" && e["requestId"] == listed.as_str())
        .collect();
    assert_eq!(reads.len(), 1, "one read entry per request: {reads:?}");
    let read = reads[0];
    assert_eq!(read["actorKind"], "STAFF", "{read}");
    assert_eq!(read["patientId"], Value::Null, "{read}");
    let mut read_patients: Vec<String> = read["patientIds"]
        .as_array()
        .expect("patientIds")
        .iter()
        .map(str_of)
        .collect();
    read_patients.sort();
    let mut expected = vec![patient.clone(), other.clone()];
    expected.sort();
    assert_eq!(read_patients, expected);

    // Seen through one of them, the entry is about that patient.
    let (_, through) = audit_log(&app, &owner, json!({ "patientId": other })).await;
    let seen = through
        .iter()
        .find(|e| e["action"] == "patient.read" && e["requestId"] == listed.as_str())
        .expect("the list's read in the other patient's log");
    assert_eq!(seen["patientId"], json!(other), "{seen}");
    assert_eq!(seen["record"]["id"], json!(other), "{seen}");
}

// --- filters and access -------------------------------------------------------

async fn audit_log_filters_narrow_the_log(app: TestApp) {
    let owner = app.staff_token(Role::Owner).await;
    let owner_id = viewer_id(&app, &owner).await;
    let token_id = viewer_id(&app, &app.token).await;

    let p1 = app.patient("Ana").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p2 = app.patient_as(&owner, "Bea").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p3 = app.patient("Cleo").await;

    let (_, all) = audit_log(&app, &owner, json!(null)).await;
    let created_at = |patient: &str| {
        time(
            &all.iter()
                .find(|e| e["action"] == "patient.created" && e["patientId"] == patient)
                .unwrap()["occurredAt"],
        )
    };
    let (t1, t2, t3) = (created_at(&p1), created_at(&p2), created_at(&p3));
    assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");
    let created = |entries: &[Value]| -> Vec<String> {
        let mut ids: Vec<String> = entries
            .iter()
            .filter(|e| e["action"] == "patient.created")
            .map(|e| str_of(&e["patientId"]))
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<_>>()
    };

    // By patient.
    let (total, entries) = audit_log(&app, &owner, json!({ "patientId": p2 })).await;
    assert_eq!(total as usize, entries.len());
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["patientId"] == p2.as_str()),
        "{entries:#?}"
    );
    assert_eq!(created(&entries), vec![p2.clone()]);

    // By actor.
    let (_, entries) = audit_log(&app, &owner, json!({ "actorId": owner_id })).await;
    assert!(
        entries.iter().all(|e| e["actorId"] == owner_id.as_str()),
        "{entries:#?}"
    );
    assert_eq!(created(&entries), vec![p2.clone()]);
    let (_, entries) = audit_log(&app, &owner, json!({ "actorId": token_id })).await;
    assert!(
        entries.iter().all(|e| e["actorId"] == token_id.as_str()),
        "{entries:#?}"
    );
    assert_eq!(created(&entries), sorted(vec![&p1, &p3]));

    // By time: `from` inclusive, `to` exclusive.
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let (_, entries) = audit_log(&app, &owner, json!({ "from": at(t2) })).await;
    assert!(
        entries.iter().all(|e| time(&e["occurredAt"]) >= t2),
        "{entries:#?}"
    );
    assert_eq!(created(&entries), sorted(vec![&p2, &p3]));
    let (_, entries) = audit_log(&app, &owner, json!({ "to": at(t2) })).await;
    assert!(
        entries.iter().all(|e| time(&e["occurredAt"]) < t2),
        "{entries:#?}"
    );
    assert_eq!(created(&entries), vec![p1.clone()]);
    let (_, entries) = audit_log(&app, &owner, json!({ "from": at(t2), "to": at(t3) })).await;
    assert_eq!(created(&entries), vec![p2.clone()]);
    let (total, _) = audit_log(
        &app,
        &owner,
        json!({ "from": at(Utc::now() + chrono::Duration::hours(1)) }),
    )
    .await;
    assert_eq!(total, 0);

    // Filters combine.
    let (_, entries) = audit_log(
        &app,
        &owner,
        json!({ "actorId": token_id, "from": at(t2), "patientId": p3 }),
    )
    .await;
    assert_eq!(created(&entries), vec![p3.clone()]);
    let (total, _) = audit_log(
        &app,
        &owner,
        json!({ "actorId": owner_id, "patientId": p1 }),
    )
    .await;
    assert_eq!(total, 0);

    // A malformed id is bad input, not an empty page.
    let bad = app
        .gql_as(
            Some(&owner),
            AUDIT_LOG,
            json!({ "filter": { "patientId": "nonsense" } }),
        )
        .await;
    bad.assert_error("BAD_USER_INPUT", Some("filter.patientId"));
    assert!(
        bad.body["data"].is_null() || bad.body["data"]["auditLog"].is_null(),
        "{}",
        bad.body
    );
}

async fn the_audit_log_needs_audit_read(app: TestApp) {
    let patient = app.patient("Ines").await;
    let coordinator = app.staff_token(Role::Coordinator).await;
    let scoped = app
        .token_with(&[Permission::PatientsRead, Permission::JourneysRead])
        .await;
    for (who, token) in [
        ("a coordinator", &coordinator),
        ("a token without audit:read", &scoped),
    ] {
        let answer = app
            .gql_as(Some(token), AUDIT_LOG, json!({ "first": 10 }))
            .await;
        answer.assert_error("FORBIDDEN", None);
        assert!(
            answer.body["data"]["auditLog"].is_null(),
            "{who} saw the audit log: {}",
            answer.body
        );

        let answer = app
            .gql_as(Some(token), ACCESS_LOG, json!({ "id": patient }))
            .await;
        answer.assert_error("FORBIDDEN", None);
        assert!(
            answer.body["data"]["patient"]["accessLog"].is_null(),
            "{who} saw the access log: {}",
            answer.body
        );
        assert!(
            !answer.body.to_string().contains("patient.created"),
            "{who} saw entries: {}",
            answer.body
        );
    }

    for role in [Role::Admin, Role::Owner] {
        let token = app.staff_token(role).await;
        let (total, _) = audit_log(&app, &token, json!(null)).await;
        assert!(total > 0, "{role} sees an empty log");
        let answer = app
            .gql_as(Some(&token), ACCESS_LOG, json!({ "id": patient }))
            .await;
        assert!(answer.data()["patient"]["accessLog"]["totalCount"].as_i64() > Some(0));
    }
}

// --- erasure -------------------------------------------------------------------

const PATIENT_FULL: &str = r#"query($id: ID!) {
  patient(id: $id) {
    id givenName familyName email phone birthDate externalId source tags erased
    journeys { id status version currentStage { key } history { id kind fromStage { key } toStage { key } note } }
    touchpoints(first: 50) { totalCount nodes { id channel direction kind emotion momentOfTruth summary externalRef stage { key } } }
    feedback(first: 50) { totalCount nodes { id kind score comment stage { key } } }
    followUps { id status channel note }
  }
}"#;

const MAP: &str = r#"query($p: ID!) {
  journeyMap(pathwayId: $p) {
    stages {
      stage { key }
      activeCount enteredCount exitedCount movedForwardCount movedBackCount completedCount droppedCount
      stalledCount touchpointCount averageEmotion momentsOfTruth nps npsResponses csat csatResponses
      overdueFollowUps channelMix { channel count }
    }
    flows { from { key } to { key } kind count }
  }
}"#;

/// What identifies the erased patient: none of it may remain.
const SECRETS: &[&str] = &[
    "Zelinda",
    "Quarrington",
    "zelinda.q@example.com",
    "4155550199",
    "1987-06-05",
    "crm-zq-771",
    "zq-vip",
    "instagram-zq",
    "filler pricing",
    "loved the clinic",
    "parking was hard",
    "prefers mornings",
    "sms-zq-1",
];

fn assert_no_secrets(value: &Value, context: &str) {
    let text = value.to_string();
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{context}: {secret:?} survived the erasure: {}",
            serde_json::to_string_pretty(value).unwrap()
        );
    }
}

/// The journey facts that must survive an erasure.
fn facts(patient: &Value) -> Value {
    let strip = |list: &Value, keep: &[&str]| -> Value {
        Value::Array(
            list.as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    Value::Object(
                        keep.iter()
                            .map(|k| (k.to_string(), item[*k].clone()))
                            .collect(),
                    )
                })
                .collect(),
        )
    };
    json!({
        "journeys": patient["journeys"].as_array().unwrap().iter().map(|j| json!({
            "id": j["id"], "status": j["status"], "currentStage": j["currentStage"],
            "history": strip(&j["history"], &["id", "kind", "fromStage", "toStage"]),
        })).collect::<Vec<_>>(),
        "touchpoints": strip(
            &patient["touchpoints"]["nodes"],
            &["id", "channel", "direction", "kind", "emotion", "momentOfTruth", "stage"],
        ),
        "feedback": strip(&patient["feedback"]["nodes"], &["id", "kind", "score", "stage"]),
        "followUps": strip(&patient["followUps"], &["id", "status", "channel"]),
    })
}

async fn erasure_removes_identity_and_keeps_journey_facts(app: TestApp) {
    let owner = app.staff_token(Role::Owner).await;
    let owner_id = viewer_id(&app, &owner).await;
    let pathway = app.pathway().await;
    let created = app
        .gql(
            "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
            json!({ "input": {
                "givenName": "Zelinda", "familyName": "Quarrington",
                "email": "zelinda.q@example.com", "phone": "+1 415 555 0199",
                "birthDate": "1987-06-05", "externalId": "crm-zq-771",
                "tags": ["zq-vip"], "source": "instagram-zq", "preferredChannel": "SMS",
                "consent": { "sms": true, "email": true, "marketing": true },
            } }),
        )
        .await;
    let patient = str_of(&created.data()["createPatient"]["patient"]["id"]);
    let journey = app.start_journey(&patient, &pathway.id).await;
    app.gql(
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "note": "Zelinda prefers mornings" } }),
    )
    .await
    .data();
    app.gql(
        LOG_TOUCHPOINT,
        json!({ "input": {
            "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "INBOUND",
            "kind": "question", "summary": "Zelinda asked about filler pricing", "emotion": 1,
            "momentOfTruth": true, "externalRef": "sms-zq-1",
        } }),
    )
    .await
    .data();
    app.gql(
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": 9, "comment": "Zelinda loved the clinic" } }),
    )
    .await
    .data();
    app.gql(
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "CSAT", "score": 2, "comment": "parking was hard" } }),
    )
    .await
    .data();
    // Someone else on the same pathway, untouched by the erasure.
    let bystander = app.patient("Bystander").await;
    app.start_journey(&bystander, &pathway.id).await;

    let before = app.gql(PATIENT_FULL, json!({ "id": patient })).await;
    let before = before.data()["patient"].clone();
    assert_eq!(before["givenName"], "Zelinda");
    assert_eq!(before["touchpoints"]["totalCount"], 1);
    assert_eq!(before["feedback"]["totalCount"], 2);
    let map_before = app.gql(MAP, json!({ "p": pathway.id })).await.data()["journeyMap"].clone();

    // Only privacy:manage may erase.
    let coordinator = app.staff_token(Role::Coordinator).await;
    app.gql_as(
        Some(&coordinator),
        ERASE,
        json!({ "input": { "patientId": patient } }),
    )
    .await
    .assert_error("FORBIDDEN", None);

    let erase_request = request_id("erase");
    let erased = gql_in_request(
        &app,
        &owner,
        &erase_request,
        ERASE,
        json!({ "input": { "patientId": patient, "reason": "erasure request" } }),
    )
    .await;
    let payload = &erased.data()["erasePatient"]["patient"];
    assert_eq!(payload["id"], patient.as_str());
    assert_eq!(payload["erased"], true);
    assert!(payload["email"].is_null());
    assert_no_secrets(payload, "the erasePatient payload");

    // Through the API: identity and free text gone, journey facts kept.
    let after = app.gql(PATIENT_FULL, json!({ "id": patient })).await;
    let after = after.data()["patient"].clone();
    assert_no_secrets(&after, "patient(id:)");
    assert_eq!(after["erased"], true);
    for field in ["email", "phone", "birthDate", "externalId", "source"] {
        assert!(after[field].is_null(), "{field} kept: {after:#}");
    }
    assert_eq!(after["tags"], json!([]));
    assert_eq!(facts(&after), facts(&before), "journey facts changed");
    let touchpoint = &after["touchpoints"]["nodes"][0];
    assert!(touchpoint["summary"].is_null(), "{touchpoint}");
    assert_eq!(touchpoint["channel"], "SMS");
    assert_eq!(touchpoint["emotion"], 1);
    for feedback in after["feedback"]["nodes"].as_array().unwrap() {
        assert!(feedback["comment"].is_null(), "{feedback}");
        assert!(feedback["score"].is_i64(), "{feedback}");
    }
    let history = after["journeys"][0]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|h| h["note"].is_null()), "{history:?}");

    // Through the export: the same.
    let export = app
        .gql_as(
            Some(&owner),
            EXPORT,
            json!({ "input": { "patientId": patient } }),
        )
        .await;
    let data = export.data()["exportPatient"]["data"].clone();
    assert_no_secrets(&data, "exportPatient");
    for field in ["email", "phone", "birthDate", "externalId", "source"] {
        assert!(
            data["patient"][field].is_null(),
            "{field} exported: {data:#}"
        );
    }
    assert_eq!(data["patient"]["tags"], json!([]));
    assert!(data["patient"]["erasedAt"].is_string(), "{data:#}");
    assert_eq!(data["journeys"].as_array().unwrap().len(), 1);
    assert_eq!(data["journeys"][0]["history"].as_array().unwrap().len(), 2);
    assert_eq!(data["touchpoints"][0]["channel"], "SMS", "{data:#}");
    assert_eq!(data["touchpoints"][0]["emotion"], 1, "{data:#}");
    assert!(data["touchpoints"][0]["summary"].is_null());
    let scores: Vec<&Value> = data["feedback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["score"])
        .collect();
    assert_eq!(scores, [&json!(9), &json!(2)]);
    assert!(
        data["feedback"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["comment"].is_null())
    );

    // The erasure is an event and an audit entry.
    let events = app
        .gql(
            r#"{ events(types: ["patient.erased"]) { nodes { type subject data } } }"#,
            json!({}),
        )
        .await;
    let events = events.data()["events"]["nodes"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["patientId"], patient.as_str());
    // The rest of the log keeps the facts but not the CRM id.
    let log = app
        .gql("{ events(first: 100) { nodes { type data } } }", json!({}))
        .await;
    let log = log.data()["events"]["nodes"].clone();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "patient.created"),
        "{log:#}"
    );
    assert_no_secrets(&log, "the event log after erasure");
    let (_, entries) = audit_log(&app, &owner, json!({ "patientId": patient })).await;
    assert_entry(
        entry(&entries, "patient.erased", &erase_request),
        "patient.erased",
        ("Patient", &patient),
        ("STAFF", &owner_id),
        Some(&patient),
    );

    // The journey map counts the same.
    let map_after = app.gql(MAP, json!({ "p": pathway.id })).await.data()["journeyMap"].clone();
    assert_eq!(
        map_after, map_before,
        "the journey map changed with the erasure"
    );

    // Once erased, always erased: no second erasure, no new records.
    let rows = app.row_counts().await;
    app.gql_as(
        Some(&owner),
        ERASE,
        json!({ "input": { "patientId": patient } }),
    )
    .await
    .assert_error("CONFLICT", None);
    app.gql(
        LOG_TOUCHPOINT,
        json!({ "input": { "patientId": patient, "channel": "PHONE", "direction": "OUTBOUND", "kind": "call" } }),
    )
    .await
    .assert_error("CONFLICT", None);
    app.gql(
        LOG_TOUCHPOINT,
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "EMAIL", "direction": "OUTBOUND", "kind": "reminder", "summary": "New text" } }),
    )
    .await
    .assert_error("CONFLICT", None);
    app.gql(
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "kind": "NPS", "score": 10 } }),
    )
    .await
    .assert_error("CONFLICT", None);
    app.gql(
        "mutation($input: UpdatePatientInput!) { updatePatient(input: $input) { patient { id } } }",
        json!({ "input": { "patientId": patient, "givenName": "Zelinda" } }),
    )
    .await
    .assert_error("CONFLICT", None);
    assert_eq!(app.row_counts().await, rows, "a refused change wrote rows");

    // The bystander is untouched.
    let bystander = app.gql(PATIENT_FULL, json!({ "id": bystander })).await;
    assert_eq!(bystander.data()["patient"]["givenName"], "Bystander");
    assert_eq!(bystander.data()["patient"]["erased"], false);

    // Not found by what identified the patient (the bystander is).
    let mut findings = Vec::new();
    for (filter, expected) in [
        (json!({ "search": "Zelinda" }), 0),
        (json!({ "search": "Quarrington" }), 0),
        (json!({ "search": "4155550199" }), 0),
        (json!({ "search": "Bystander" }), 1),
        (json!({ "tag": "zq-vip" }), 0),
    ] {
        let mut filter = filter;
        filter["includeArchived"] = json!(true);
        let found = app
            .gql(
                "query($f: PatientFilter) { patients(filter: $f) { totalCount } }",
                json!({ "f": filter }),
            )
            .await;
        if found.body["data"]["patients"]["totalCount"] != expected {
            findings.push(format!(
                "patients(filter: {filter}) expected totalCount {expected}, got {}",
                found.body
            ));
        }
    }
    assert!(findings.is_empty(), "{findings:#?}");
}

// --- export ----------------------------------------------------------------------

async fn export_holds_everything_and_is_audited(app: TestApp) {
    let owner = app.staff_token(Role::Owner).await;
    let owner_id = viewer_id(&app, &owner).await;
    let token_id = viewer_id(&app, &app.token).await;
    let pathway = app.pathway().await;
    let patient = app.patient("Odile").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    app.gql(
        MOVE,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "note": "Booked a consult" } }),
    )
    .await
    .data();
    app.gql(
        LOG_TOUCHPOINT,
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE", "direction": "OUTBOUND", "kind": "call", "summary": "Discussed aftercare", "emotion": -1 } }),
    )
    .await
    .data();
    app.gql(
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": 4, "comment": "Felt rushed" } }),
    )
    .await
    .data();
    // A read, so the access log holds one.
    let read = request_id("read-before-export");
    gql_in_request(
        &app,
        &app.token,
        &read,
        "query($id: ID!) { patient(id: $id) { givenName } }",
        json!({ "id": patient }),
    )
    .await
    .data();
    wait_for_entry(&app, &owner, json!({ "patientId": patient }), |e| {
        e["requestId"] == read.as_str()
    })
    .await;

    let full = app.gql(PATIENT_FULL, json!({ "id": patient })).await;
    let full = full.data()["patient"].clone();

    // Only privacy:manage may export.
    let coordinator = app.staff_token(Role::Coordinator).await;
    let refused = app
        .gql_as(
            Some(&coordinator),
            EXPORT,
            json!({ "input": { "patientId": patient } }),
        )
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert!(
        !refused.body.to_string().contains("Odile"),
        "{}",
        refused.body
    );

    let export_request = request_id("export");
    let export = gql_in_request(
        &app,
        &owner,
        &export_request,
        EXPORT,
        json!({ "input": { "patientId": patient } }),
    )
    .await;
    let data = export.data()["exportPatient"]["data"].clone();
    let pretty = serde_json::to_string_pretty(&data).unwrap();
    assert_eq!(data["format"], "journeymap.patient-export.v1", "{pretty}");
    assert!(data["exportedAt"].is_string(), "{pretty}");

    let exported = &data["patient"];
    assert_eq!(exported["id"], patient.as_str(), "{pretty}");
    assert_eq!(exported["givenName"], "Odile");
    assert_eq!(exported["familyName"], "Test");
    assert_eq!(exported["email"], "odile@example.com");
    assert!(exported["erasedAt"].is_null());

    let journeys = data["journeys"].as_array().expect("journeys");
    assert_eq!(journeys.len(), 1, "{pretty}");
    assert_eq!(journeys[0]["id"], journey.as_str());
    assert_eq!(journeys[0]["pathwayId"], pathway.id.as_str());
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| str_of(&item["id"]))
            .collect()
    };
    assert_eq!(
        ids(&journeys[0]["history"]),
        ids(&full["journeys"][0]["history"]),
        "{pretty}"
    );
    assert_eq!(journeys[0]["history"][1]["note"], "Booked a consult");
    assert_eq!(
        journeys[0]["history"][1]["toStageId"],
        pathway.consultation.as_str()
    );

    assert_eq!(
        ids(&data["touchpoints"]),
        ids(&full["touchpoints"]["nodes"])
    );
    assert_eq!(data["touchpoints"][0]["summary"], "Discussed aftercare");
    assert_eq!(data["touchpoints"][0]["emotion"], -1);
    assert_eq!(ids(&data["feedback"]), ids(&full["feedback"]["nodes"]));
    assert_eq!(data["feedback"][0]["score"], 4);
    assert_eq!(data["feedback"][0]["comment"], "Felt rushed");
    let mut exported_follow_ups = ids(&data["followUps"]);
    let mut follow_ups = ids(&full["followUps"]);
    exported_follow_ups.sort();
    follow_ups.sort();
    assert!(!follow_ups.is_empty());
    assert_eq!(exported_follow_ups, follow_ups, "{pretty}");

    let access = data["accessLog"].as_array().expect("accessLog");
    let created = access
        .iter()
        .find(|a| a["action"] == "patient.created")
        .unwrap_or_else(|| panic!("no patient.created in the access log: {pretty}"));
    assert_eq!(created["actorId"], token_id.as_str());
    let read_entry = access
        .iter()
        .find(|a| a["action"] == "patient.read" && a["requestId"] == read.as_str())
        .unwrap_or_else(|| panic!("no patient.read in the access log: {pretty}"));
    assert_eq!(read_entry["actorKind"], "API_TOKEN");
    assert_eq!(read_entry["actorId"], token_id.as_str());

    // The export itself is recorded, in its request.
    let (_, entries) = audit_log(&app, &owner, json!({ "patientId": patient })).await;
    assert_entry(
        entry(&entries, "patient.exported", &export_request),
        "patient.exported",
        ("Patient", &patient),
        ("STAFF", &owner_id),
        Some(&patient),
    );
    assert!(
        entries
            .iter()
            .all(|e| !(e["action"] == "patient.exported" && e["actorId"] != owner_id.as_str())),
        "the refused export was recorded: {entries:#?}"
    );
}

/// Requests answering at the same moment each get their own `patient.read`
/// entry, naming exactly the patients that request read, before their answer
/// leaves (on PostgreSQL their entries share inserts).
async fn concurrent_reads_are_each_recorded(app: TestApp) {
    let owner = app.staff_token(Role::Owner).await;
    let reader = app.token_with(&[Permission::PatientsRead]).await;
    let reader_id = viewer_id(&app, &reader).await;
    let mut patients = Vec::new();
    for n in 0..8 {
        patients.push(app.patient(&format!("Concurrent{n}")).await);
    }
    let audit_before = app.audit_statements().await;
    // 40 requests at once, request i reading patients i % 8 and (i + 3) % 8.
    let requests: Vec<(String, [String; 2])> = (0..40)
        .map(|i| {
            (
                request_id(&format!("concurrent-{i}")),
                [patients[i % 8].clone(), patients[(i + 3) % 8].clone()],
            )
        })
        .collect();
    let answers = futures::future::join_all(requests.iter().map(|(id, read)| {
        gql_in_request(
            &app,
            &reader,
            id,
            "query($a: ID!, $b: ID!) { a: patient(id: $a) { givenName } b: patient(id: $b) { familyName } }",
            json!({ "a": read[0], "b": read[1] }),
        )
    }))
    .await;
    for answer in &answers {
        assert!(answer.data()["a"]["givenName"].is_string());
    }
    let statements = app.audit_statements().await - audit_before;
    assert!(
        (1..=40).contains(&statements),
        "40 requests' entries took {statements} statements"
    );

    // Every answer had left after its entry was written: no waiting here.
    let (total, entries) = audit_log(&app, &owner, json!({ "actorId": reader_id })).await;
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "patient.read")
        .collect();
    assert_eq!(total, 40, "{entries:#?}");
    assert_eq!(reads.len(), 40);
    for (id, read) in &requests {
        let entry = entry(&entries, "patient.read", id);
        let mut named: Vec<String> = entry["patientIds"]
            .as_array()
            .unwrap_or_else(|| panic!("entry of {id} names no patients: {entry:#}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        named.sort();
        let mut expected = read.to_vec();
        expected.sort();
        assert_eq!(named, expected, "request {id}");
    }
    // And each patient's own access log has the reads of it: 10 each.
    for patient in &patients {
        let access = app
            .gql_as(Some(&owner), ACCESS_LOG, json!({ "id": patient }))
            .await;
        let reads = access.data()["patient"]["accessLog"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "patient.read" && e["actorId"] == reader_id.as_str())
            .count();
        assert_eq!(reads, 10, "reads of {patient}");
    }
}

on_both_backends!(
    every_write_is_audited_with_its_request,
    concurrent_reads_are_each_recorded,
    reads_of_identifying_data_are_recorded,
    audit_log_filters_narrow_the_log,
    the_audit_log_needs_audit_read,
    erasure_removes_identity_and_keeps_journey_facts,
    export_holds_everything_and_is_audited,
);
