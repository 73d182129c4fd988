//! Bad input gets a clear error with a stable `extensions.code`, names the
//! offending input in `extensions.field`, leaks no database text, and writes
//! nothing.

use chrono::{Duration, Utc};
use journeymap_tests::{Gql, TestApp, on_both_backends};
use serde_json::{Value, json};

const CREATE_PATIENT: &str = r#"
mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id givenName email phone tags } }
}"#;

const UPDATE_PATIENT: &str = r#"
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } }
}"#;

const LOG_TOUCHPOINT: &str = r#"
mutation($input: LogTouchpointInput!) {
  logTouchpoint(input: $input) { touchpoint { id } }
}"#;

const SUBMIT_FEEDBACK: &str = r#"
mutation($input: SubmitFeedbackInput!) {
  submitFeedback(input: $input) { feedback { id kind score comment } }
}"#;

const START_JOURNEY: &str = r#"
mutation($input: StartJourneyInput!) {
  startJourney(input: $input) { journey { id } }
}"#;

const MOVE_JOURNEY: &str = r#"
mutation($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) { journey { id version currentStage { key } } }
}"#;

const COMPLETE_FOLLOW_UP: &str = r#"
mutation($input: CompleteFollowUpInput!) {
  completeFollowUp(input: $input) { followUp { id } }
}"#;

const JOURNEY_STATE: &str = r#"
query($id: ID!) {
  journey(id: $id) {
    version status currentStage { id key }
    history { id kind toStage { key } }
  }
}"#;

/// Text that only a database (or a panic) would put in an error.
const DATABASE_TEXT: &[&str] = &[
    "sql",
    "constraint",
    "syntax error at",
    "database",
    "sea_orm",
    "seaorm",
    "dberr",
    "violates",
    "duplicate key",
    "no such table",
    "panicked",
];

/// A well-formed id of `prefix` that names no record.
fn unknown_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Asserts the response is what a GraphQL error over `application/json`
/// is (HTTP 200, per the GraphQL-over-HTTP spec for that media type) and its
/// errors quote no database text.
#[track_caller]
fn assert_clean(response: &Gql, context: &str) {
    assert_eq!(
        response.status,
        reqwest::StatusCode::OK,
        "{context}: HTTP {} for {}",
        response.status,
        response.body
    );
    let text = response.body["errors"].to_string().to_lowercase();
    for needle in DATABASE_TEXT {
        assert!(
            !text.contains(needle),
            "{context}: error body quotes {needle:?}: {}",
            response.body
        );
    }
    for error in response.errors() {
        assert_ne!(
            error["extensions"]["code"], "INTERNAL",
            "{context}: internal error for bad input: {}",
            response.body
        );
    }
}

/// Asserts every error has `code` and `field` (when given) and a message,
/// and that no data came back where an error happened.
#[track_caller]
fn assert_refused(response: &Gql, code: &str, field: Option<&str>, context: &str) {
    assert_clean(response, context);
    let pretty = serde_json::to_string_pretty(&response.body).unwrap();
    let errors = response.errors();
    assert!(
        !errors.is_empty(),
        "{context}: expected {code}, got no errors: {pretty}"
    );
    let data = &response.body["data"];
    for error in &errors {
        assert_eq!(
            error["extensions"]["code"].as_str(),
            Some(code),
            "{context}: expected every error to be {code} in {pretty}"
        );
        if let Some(field) = field {
            assert_eq!(
                error["extensions"]["field"].as_str(),
                Some(field),
                "{context}: expected every error to name field {field} in {pretty}"
            );
        }
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            !message.trim().is_empty(),
            "{context}: error without a message: {pretty}"
        );
        // A request error runs nothing: no data at all. A field error leaves
        // no value where it happened.
        match error["path"].as_array() {
            Some(path) if !path.is_empty() => {
                let mut at = data;
                for segment in path {
                    at = match segment {
                        Value::String(name) => &at[name.as_str()],
                        Value::Number(index) => &at[index.as_u64().unwrap() as usize],
                        _ => &Value::Null,
                    };
                }
                assert!(
                    at.is_null(),
                    "{context}: the failed field has a value: {pretty}"
                );
            }
            _ => {
                let empty = match data {
                    Value::Null => true,
                    Value::Object(fields) => fields.values().all(Value::is_null),
                    _ => false,
                };
                assert!(empty, "{context}: data came back with the error: {pretty}");
            }
        }
    }
}

/// Runs `query`, expects it refused with `code` (and `field`), and checks
/// that no row was written.
async fn refused(
    app: &TestApp,
    query: &str,
    variables: Value,
    code: &str,
    field: Option<&str>,
) -> Gql {
    let context = format!("{} with {variables}", query.trim());
    let before = app.row_counts().await;
    let response = app.gql(query, variables).await;
    assert_refused(&response, code, field, &context);
    assert_eq!(
        app.row_counts().await,
        before,
        "{context}: a refused request wrote rows"
    );
    response
}

/// A valid patient input with `changes` merged in.
fn patient_input(changes: Value) -> Value {
    let mut input = json!({
        "givenName": "Ana",
        "familyName": "Lopez",
        "email": "ana@example.com",
        "phone": "+14155550123",
    });
    for (key, value) in changes.as_object().expect("an object") {
        input[key] = value.clone();
    }
    json!({ "input": input })
}

/// A valid touchpoint input for `patient` with `changes` merged in.
fn touchpoint_input(patient: &str, changes: Value) -> Value {
    let mut input = json!({
        "patientId": patient,
        "channel": "PHONE",
        "direction": "INBOUND",
        "kind": "call",
    });
    for (key, value) in changes.as_object().expect("an object") {
        input[key] = value.clone();
    }
    json!({ "input": input })
}

fn feedback_input(patient: &str, kind: &str, score: Option<i64>, comment: Option<&str>) -> Value {
    let mut input = json!({ "patientId": patient, "kind": kind });
    if let Some(score) = score {
        input["score"] = json!(score);
    }
    if let Some(comment) = comment {
        input["comment"] = json!(comment);
    }
    json!({ "input": input })
}

async fn journey_state(app: &TestApp, journey: &str) -> Value {
    app.gql(JOURNEY_STATE, json!({ "id": journey }))
        .await
        .data()["journey"]
        .clone()
}

// ---------------------------------------------------------------- patients

async fn create_patient_rejects_bad_email(app: TestApp) {
    for bad in [
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "ana@@example.com",
        "a na@example.com",
        "ana..b@example.com",
        "ana@exa_mple.com",
        "ana@example.c0m",
        ".ana@example.com",
    ] {
        refused(
            &app,
            CREATE_PATIENT,
            patient_input(json!({ "email": bad })),
            "BAD_USER_INPUT",
            Some("input.email"),
        )
        .await;
    }
    // The same rule holds on update.
    let patient = app.patient("Bea").await;
    refused(
        &app,
        UPDATE_PATIENT,
        json!({ "input": { "patientId": patient, "email": "bea@" } }),
        "BAD_USER_INPUT",
        Some("input.email"),
    )
    .await;
    // A valid address is accepted, lower-cased.
    let created = app
        .gql(
            CREATE_PATIENT,
            patient_input(json!({ "email": " Ana.Lopez+spa@Example.COM " })),
        )
        .await;
    assert_eq!(
        created.data()["createPatient"]["patient"]["email"],
        "ana.lopez+spa@example.com"
    );
}

async fn create_patient_rejects_bad_phone(app: TestApp) {
    for bad in [
        "4155550123",
        "+0123",
        "+0123456789",
        "+1",
        "+1415abc0123",
        "call me",
        "+1415555012345678",
    ] {
        refused(
            &app,
            CREATE_PATIENT,
            patient_input(json!({ "phone": bad })),
            "BAD_USER_INPUT",
            Some("input.phone"),
        )
        .await;
    }
    let created = app
        .gql(
            CREATE_PATIENT,
            patient_input(json!({ "phone": "+1 (415) 555-0123" })),
        )
        .await;
    assert_eq!(
        created.data()["createPatient"]["patient"]["phone"],
        "+14155550123"
    );
}

async fn create_patient_rejects_blank_names(app: TestApp) {
    for blank in ["", "   ", "\t"] {
        refused(
            &app,
            CREATE_PATIENT,
            patient_input(json!({ "givenName": blank })),
            "BAD_USER_INPUT",
            Some("input.givenName"),
        )
        .await;
    }
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "familyName": "" })),
        "BAD_USER_INPUT",
        Some("input.familyName"),
    )
    .await;
    // Control characters are not a name either.
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "givenName": "A\u{0}na" })),
        "BAD_USER_INPUT",
        Some("input.givenName"),
    )
    .await;
}

async fn over_long_strings_name_their_field(app: TestApp) {
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "givenName": "a".repeat(101) })),
        "BAD_USER_INPUT",
        Some("input.givenName"),
    )
    .await;
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "familyName": "b".repeat(101) })),
        "BAD_USER_INPUT",
        Some("input.familyName"),
    )
    .await;
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "externalId": "x".repeat(129) })),
        "BAD_USER_INPUT",
        Some("input.externalId"),
    )
    .await;

    // At the limits, the same input is accepted.
    let created = app
        .gql(
            CREATE_PATIENT,
            patient_input(json!({ "givenName": "a".repeat(100), "externalId": "x".repeat(128) })),
        )
        .await;
    let patient = created.data()["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "summary": "s".repeat(4001) })),
        "BAD_USER_INPUT",
        Some("input.summary"),
    )
    .await;
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "kind": "k".repeat(65) })),
        "BAD_USER_INPUT",
        Some("input.kind"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        feedback_input(&patient, "COMMENT", None, Some(&"c".repeat(4001))),
        "BAD_USER_INPUT",
        Some("input.comment"),
    )
    .await;
    app.gql(
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "summary": "s".repeat(4000) })),
    )
    .await
    .data();
}

async fn create_patient_rejects_bad_tags(app: TestApp) {
    let cases: [(Value, &str); 6] = [
        (json!(["vip", "not ok"]), "input.tags[1]"),
        (json!([""]), "input.tags[0]"),
        (
            json!(["vip", "lip-filler", "x".repeat(41)]),
            "input.tags[2]",
        ),
        (json!(["émigré"]), "input.tags[0]"),
        (json!(["ok", "semi;colon"]), "input.tags[1]"),
        (
            Value::Array((0..21).map(|i| json!(format!("tag-{i}"))).collect()),
            "input.tags",
        ),
    ];
    for (tags, field) in cases {
        refused(
            &app,
            CREATE_PATIENT,
            patient_input(json!({ "tags": tags })),
            "BAD_USER_INPUT",
            Some(field),
        )
        .await;
    }
    let created = app
        .gql(
            CREATE_PATIENT,
            patient_input(json!({ "tags": ["VIP", "vip", "source:instagram"] })),
        )
        .await;
    assert_eq!(
        created.data()["createPatient"]["patient"]["tags"],
        json!(["vip", "source:instagram"])
    );
}

async fn create_patient_rejects_future_birth_date(app: TestApp) {
    let future = (Utc::now() + Duration::days(2)).date_naive().to_string();
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "birthDate": future })),
        "BAD_USER_INPUT",
        Some("input.birthDate"),
    )
    .await;
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "birthDate": "1850-01-01" })),
        "BAD_USER_INPUT",
        Some("input.birthDate"),
    )
    .await;
    app.gql(
        CREATE_PATIENT,
        patient_input(json!({ "birthDate": "1990-02-28" })),
    )
    .await
    .data();
}

/// Values a scalar cannot parse (no such date, not a time) are bad input for
/// the field that holds them, whether sent as literals or as variables.
async fn unparsable_scalars_name_their_field(app: TestApp) {
    let patient = app.patient("Ana").await;
    refused(
        &app,
        r#"mutation { createPatient(input: { givenName: "Ana", familyName: "Lopez", birthDate: "1990-02-30" }) {
            patient { id } } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("input.birthDate"),
    )
    .await;
    refused(
        &app,
        CREATE_PATIENT,
        patient_input(json!({ "birthDate": "1990-02-30" })),
        "BAD_USER_INPUT",
        Some("input.birthDate"),
    )
    .await;
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "occurredAt": "yesterday" })),
        "BAD_USER_INPUT",
        Some("input.occurredAt"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "kind": "NPS", "score": 9, "submittedAt": "not a time" } }),
        "BAD_USER_INPUT",
        Some("input.submittedAt"),
    )
    .await;
}

// ---------------------------------------------------------------- feedback

async fn feedback_scores_are_checked_per_kind(app: TestApp) {
    let patient = app.patient("Ana").await;
    let out_of_range = [
        ("NPS", 11),
        ("NPS", -1),
        ("CSAT", 0),
        ("CSAT", 6),
        ("CES", 0),
        ("CES", 8),
    ];
    for (kind, score) in out_of_range {
        refused(
            &app,
            SUBMIT_FEEDBACK,
            feedback_input(&patient, kind, Some(score), None),
            "BAD_USER_INPUT",
            Some("input.score"),
        )
        .await;
    }
    for kind in ["NPS", "CSAT", "CES"] {
        refused(
            &app,
            SUBMIT_FEEDBACK,
            feedback_input(&patient, kind, None, Some("no score")),
            "BAD_USER_INPUT",
            Some("input.score"),
        )
        .await;
    }
    refused(
        &app,
        SUBMIT_FEEDBACK,
        feedback_input(&patient, "COMMENT", None, None),
        "BAD_USER_INPUT",
        Some("input.comment"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        feedback_input(&patient, "COMMENT", None, Some("   ")),
        "BAD_USER_INPUT",
        Some("input.comment"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        feedback_input(&patient, "COMMENT", Some(5), Some("lovely staff")),
        "BAD_USER_INPUT",
        Some("input.score"),
    )
    .await;

    // The edges of every range are accepted.
    let accepted = [
        ("NPS", 0),
        ("NPS", 10),
        ("CSAT", 1),
        ("CSAT", 5),
        ("CES", 1),
        ("CES", 7),
    ];
    for (kind, score) in accepted {
        let response = app
            .gql(
                SUBMIT_FEEDBACK,
                feedback_input(&patient, kind, Some(score), None),
            )
            .await;
        let feedback = &response.data()["submitFeedback"]["feedback"];
        assert_eq!(feedback["kind"], kind);
        assert_eq!(feedback["score"], score);
    }
    let comment = app
        .gql(
            SUBMIT_FEEDBACK,
            feedback_input(&patient, "COMMENT", None, Some("lovely staff")),
        )
        .await;
    assert_eq!(
        comment.data()["submitFeedback"]["feedback"]["score"],
        Value::Null
    );
    let count = app
        .gql(
            "query($id: ID!) { patient(id: $id) { feedback(first: 100) { totalCount } } }",
            json!({ "id": patient }),
        )
        .await;
    assert_eq!(count.data()["patient"]["feedback"]["totalCount"], 7);
}

// ---------------------------------------------------------------- touchpoints

async fn touchpoint_emotion_and_time_are_checked(app: TestApp) {
    let patient = app.patient("Ana").await;
    for emotion in [3, -3, 100] {
        refused(
            &app,
            LOG_TOUCHPOINT,
            touchpoint_input(&patient, json!({ "emotion": emotion })),
            "BAD_USER_INPUT",
            Some("input.emotion"),
        )
        .await;
    }
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339();
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "occurredAt": future })),
        "BAD_USER_INPUT",
        Some("input.occurredAt"),
    )
    .await;
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "kind": "  " })),
        "BAD_USER_INPUT",
        Some("input.kind"),
    )
    .await;
    for emotion in [-2, 2] {
        app.gql(
            LOG_TOUCHPOINT,
            touchpoint_input(&patient, json!({ "emotion": emotion })),
        )
        .await
        .data();
    }
}

// ---------------------------------------------------------------- journeys

async fn move_to_a_stage_of_another_pathway_is_refused(app: TestApp) {
    let pathway = app.pathway().await;
    let other = app.pathway_as(&app.token, "Other").await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let before = journey_state(&app, &journey).await;

    for stage in [&other.consultation, &other.inquiry] {
        refused(
            &app,
            MOVE_JOURNEY,
            json!({ "input": { "journeyId": journey, "stageId": stage } }),
            "BAD_USER_INPUT",
            Some("input.stageId"),
        )
        .await;
    }
    // Starting a journey in another pathway's stage is refused the same way.
    let second = app.patient("Bea").await;
    refused(
        &app,
        START_JOURNEY,
        json!({ "input": { "patientId": second, "pathwayId": pathway.id, "stageId": other.consultation } }),
        "BAD_USER_INPUT",
        Some("input.stageId"),
    )
    .await;
    assert_eq!(journey_state(&app, &journey).await, before);
}

async fn move_to_the_current_stage_is_refused(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let before = journey_state(&app, &journey).await;
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": journey, "stageId": pathway.inquiry } }),
        "BAD_USER_INPUT",
        Some("input.stageId"),
    )
    .await;
    assert_eq!(journey_state(&app, &journey).await, before);
}

async fn stale_expected_version_is_a_conflict(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;

    // Never was at version 7.
    let fresh = journey_state(&app, &journey).await;
    assert_eq!(fresh["version"], 1);
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "expectedVersion": 7 } }),
        "CONFLICT",
        Some("input.expectedVersion"),
    )
    .await;
    assert_eq!(journey_state(&app, &journey).await, fresh);

    // Moved meanwhile: version 1 is stale now.
    let moved = app
        .gql(
            MOVE_JOURNEY,
            json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(moved.data()["moveJourneyToStage"]["journey"]["version"], 2);
    let before = journey_state(&app, &journey).await;
    assert_eq!(before["history"].as_array().unwrap().len(), 2);
    let response = refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": journey, "stageId": pathway.treatment, "expectedVersion": 1 } }),
        "CONFLICT",
        Some("input.expectedVersion"),
    )
    .await;
    let after = journey_state(&app, &journey).await;
    assert_eq!(after, before, "a CONFLICT changed the journey");
    assert_eq!(after["version"], 2);
    assert_eq!(after["currentStage"]["key"], "consultation");
    assert!(
        response.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("version"),
        "the message should say why: {}",
        response.body
    );
}

// ---------------------------------------------------------------- enums

async fn unknown_enum_values_are_bad_input(app: TestApp) {
    let patient = app.patient("Ana").await;

    // As literals.
    refused(
        &app,
        r#"mutation($patientId: ID!) {
          logTouchpoint(input: { patientId: $patientId, channel: FAX, direction: INBOUND, kind: "call" }) {
            touchpoint { id } } }"#,
        json!({ "patientId": patient }),
        "BAD_USER_INPUT",
        Some("input.channel"),
    )
    .await;
    refused(
        &app,
        r#"mutation($patientId: ID!) {
          submitFeedback(input: { patientId: $patientId, kind: STARS, score: 5 }) {
            feedback { id } } }"#,
        json!({ "patientId": patient }),
        "BAD_USER_INPUT",
        Some("input.kind"),
    )
    .await;
    refused(
        &app,
        r#"mutation {
          createPatient(input: { givenName: "Ana", familyName: "Lopez", preferredChannel: FAX }) {
            patient { id } } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("input.preferredChannel"),
    )
    .await;
    refused(
        &app,
        "{ journeys(filter: { status: PAUSED }) { totalCount } }",
        json!({}),
        "BAD_USER_INPUT",
        Some("filter.status"),
    )
    .await;

    // Through variables.
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "channel": "FAX" })),
        "BAD_USER_INPUT",
        Some("input.channel"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "kind": "STARS", "score": 5 } }),
        "BAD_USER_INPUT",
        Some("input.kind"),
    )
    .await;
    // Enum values are case-sensitive.
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&patient, json!({ "channel": "phone" })),
        "BAD_USER_INPUT",
        Some("input.channel"),
    )
    .await;
    refused(
        &app,
        "query($status: JourneyStatus) { journeys(filter: { status: $status }) { totalCount } }",
        json!({ "status": "PAUSED" }),
        "BAD_USER_INPUT",
        Some("filter.status"),
    )
    .await;
}

// ---------------------------------------------------------------- paging

async fn page_sizes_are_limited(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;

    let cases = [
        ("{ patients(first: 101) { totalCount } }", "first"),
        ("{ patients(first: -1) { totalCount } }", "first"),
        ("{ patients(last: 101) { totalCount } }", "last"),
        ("{ patients(last: -1) { totalCount } }", "last"),
        ("{ patients(first: 2147483647) { totalCount } }", "first"),
        ("{ journeys(first: 101) { totalCount } }", "first"),
        ("{ followUps(first: 101) { totalCount } }", "first"),
        ("{ events(first: 101) { totalCount } }", "first"),
        (
            "{ patients { edges { node { touchpoints(first: 101) { totalCount } } } } }",
            "first",
        ),
        (
            "{ patients { edges { node { feedback(first: -3) { totalCount } } } } }",
            "first",
        ),
    ];
    for (query, field) in cases {
        refused(&app, query, json!({}), "BAD_USER_INPUT", Some(field)).await;
    }
    refused(
        &app,
        "query($id: ID!) { journey(id: $id) { touchpoints(first: 101) { totalCount } } }",
        json!({ "id": journey }),
        "BAD_USER_INPUT",
        Some("first"),
    )
    .await;
    refused(
        &app,
        "query($first: Int) { patients(first: $first) { totalCount } }",
        json!({ "first": 101 }),
        "BAD_USER_INPUT",
        Some("first"),
    )
    .await;

    // 0 and 100 are fine.
    let ok = app
        .gql(
            r#"{ a: patients(first: 100) { totalCount } b: patients(first: 0) { edges { cursor } }
                 c: patients(last: 100) { totalCount }
                 patients { edges { node { touchpoints(first: 100) { totalCount } } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(ok.data()["a"]["totalCount"], 1);
    assert_eq!(ok.data()["b"]["edges"], json!([]));
}

// ---------------------------------------------------------------- ids

async fn malformed_ids_are_bad_input(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let upper = format!("pat_{}", "ABCDEF0123456789".repeat(2));

    for bad in [
        "nope",
        "pat_zz",
        "",
        "pat_",
        upper.as_str(),
        journey.as_str(),
    ] {
        refused(
            &app,
            "query($id: ID!) { patient(id: $id) { id } }",
            json!({ "id": bad }),
            "BAD_USER_INPUT",
            Some("id"),
        )
        .await;
    }
    for bad in ["nope", "jny_zz", patient.as_str()] {
        refused(
            &app,
            "query($id: ID!) { journey(id: $id) { id } }",
            json!({ "id": bad }),
            "BAD_USER_INPUT",
            Some("id"),
        )
        .await;
    }
    refused(
        &app,
        "query($id: ID!) { pathway(id: $id) { id } }",
        json!({ "id": patient }),
        "BAD_USER_INPUT",
        Some("id"),
    )
    .await;
    let unknown_kind = format!("xyz_{}", uuid::Uuid::new_v4().simple());
    for bad in ["nope", "pat_zz", unknown_kind.as_str()] {
        refused(
            &app,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": bad }),
            "BAD_USER_INPUT",
            Some("id"),
        )
        .await;
    }
    // As a literal, too.
    refused(
        &app,
        r#"{ node(id: "nope") { id } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("id"),
    )
    .await;
    refused(
        &app,
        r#"{ journeys(filter: { patientId: "nope" }) { totalCount } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("filter.patientId"),
    )
    .await;
    refused(
        &app,
        "query($id: ID!) { journeyMap(pathwayId: $id) { svg } }",
        json!({ "id": journey }),
        "BAD_USER_INPUT",
        Some("pathwayId"),
    )
    .await;

    // In mutation inputs.
    for bad in ["nope", "pat_zz", journey.as_str()] {
        refused(
            &app,
            LOG_TOUCHPOINT,
            touchpoint_input(bad, json!({})),
            "BAD_USER_INPUT",
            Some("input.patientId"),
        )
        .await;
        refused(
            &app,
            START_JOURNEY,
            json!({ "input": { "patientId": bad, "pathwayId": pathway.id } }),
            "BAD_USER_INPUT",
            Some("input.patientId"),
        )
        .await;
        refused(
            &app,
            SUBMIT_FEEDBACK,
            json!({ "input": { "patientId": bad, "kind": "NPS", "score": 9 } }),
            "BAD_USER_INPUT",
            Some("input.patientId"),
        )
        .await;
        refused(
            &app,
            UPDATE_PATIENT,
            json!({ "input": { "patientId": bad, "givenName": "Bea" } }),
            "BAD_USER_INPUT",
            Some("input.patientId"),
        )
        .await;
    }
    refused(
        &app,
        START_JOURNEY,
        json!({ "input": { "patientId": patient, "pathwayId": "pwy_zz" } }),
        "BAD_USER_INPUT",
        Some("input.pathwayId"),
    )
    .await;
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": journey, "stageId": pathway.id } }),
        "BAD_USER_INPUT",
        Some("input.stageId"),
    )
    .await;
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": "nope", "stageId": pathway.consultation } }),
        "BAD_USER_INPUT",
        Some("input.journeyId"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "journeyId": "nope", "kind": "NPS", "score": 9 } }),
        "BAD_USER_INPUT",
        Some("input.journeyId"),
    )
    .await;
    refused(
        &app,
        COMPLETE_FOLLOW_UP,
        json!({ "input": { "followUpId": "nope" } }),
        "BAD_USER_INPUT",
        Some("input.followUpId"),
    )
    .await;
}

async fn unknown_ids_are_not_found(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;

    refused(
        &app,
        "query($id: ID!) { patient(id: $id) { id } }",
        json!({ "id": unknown_id("pat") }),
        "NOT_FOUND",
        None,
    )
    .await;
    refused(
        &app,
        "query($id: ID!) { journey(id: $id) { id } }",
        json!({ "id": unknown_id("jny") }),
        "NOT_FOUND",
        None,
    )
    .await;
    for prefix in ["pat", "jny", "pwy", "stg"] {
        refused(
            &app,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": unknown_id(prefix) }),
            "NOT_FOUND",
            None,
        )
        .await;
    }
    // Another clinic's patient is NOT_FOUND too.
    let other = app.clinic("b").await;
    let theirs = app.patient_as(&other, "Cho").await;
    refused(
        &app,
        "query($id: ID!) { patient(id: $id) { id } }",
        json!({ "id": theirs }),
        "NOT_FOUND",
        None,
    )
    .await;

    // In mutation inputs, the field holding the id is named.
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&unknown_id("pat"), json!({})),
        "NOT_FOUND",
        Some("input.patientId"),
    )
    .await;
    refused(
        &app,
        LOG_TOUCHPOINT,
        touchpoint_input(&theirs, json!({})),
        "NOT_FOUND",
        Some("input.patientId"),
    )
    .await;
    refused(
        &app,
        START_JOURNEY,
        json!({ "input": { "patientId": patient, "pathwayId": unknown_id("pwy") } }),
        "NOT_FOUND",
        Some("input.pathwayId"),
    )
    .await;
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": journey, "stageId": unknown_id("stg") } }),
        "NOT_FOUND",
        Some("input.stageId"),
    )
    .await;
    refused(
        &app,
        MOVE_JOURNEY,
        json!({ "input": { "journeyId": unknown_id("jny"), "stageId": pathway.consultation } }),
        "NOT_FOUND",
        Some("input.journeyId"),
    )
    .await;
    refused(
        &app,
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": unknown_id("pat"), "kind": "NPS", "score": 9 } }),
        "NOT_FOUND",
        Some("input.patientId"),
    )
    .await;
}

// ---------------------------------------------------------------- cursors

async fn malformed_cursors_are_bad_input(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    app.start_journey(&patient, &pathway.id).await;
    let cases = [
        (r#"{ patients(after: "garbage") { totalCount } }"#, "after"),
        (
            r#"{ patients(before: "garbage") { totalCount } }"#,
            "before",
        ),
        // Valid base64 ("hello"), not a cursor.
        (r#"{ patients(after: "aGVsbG8") { totalCount } }"#, "after"),
        (r#"{ patients(after: "") { totalCount } }"#, "after"),
        (r#"{ patients(after: "!!!") { totalCount } }"#, "after"),
        (r#"{ journeys(after: "garbage") { totalCount } }"#, "after"),
        (r#"{ followUps(after: "garbage") { totalCount } }"#, "after"),
        (r#"{ events(after: "garbage") { totalCount } }"#, "after"),
        (
            r#"{ patients { edges { node { touchpoints(after: "garbage") { totalCount } } } } }"#,
            "after",
        ),
        (
            r#"{ patients { edges { node { feedback(after: "garbage") { totalCount } } } } }"#,
            "after",
        ),
    ];
    for (query, field) in cases {
        refused(&app, query, json!({}), "BAD_USER_INPUT", Some(field)).await;
    }
    refused(
        &app,
        "query($after: String) { patients(after: $after) { totalCount } }",
        json!({ "after": "garbage" }),
        "BAD_USER_INPUT",
        Some("after"),
    )
    .await;

    // A real cursor works.
    let first = app
        .gql(
            "{ patients(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = first.data()["patients"]["pageInfo"]["endCursor"].clone();
    app.gql(
        "query($after: String) { patients(after: $after) { totalCount } }",
        json!({ "after": cursor }),
    )
    .await
    .data();
}

// ---------------------------------------------------------------- documents

async fn broken_documents_are_refused(app: TestApp) {
    app.patient("Ana").await;
    for broken in [
        "{ patients { edges { node { id }",
        "query { patients(first: ) { totalCount } }",
        "mutation { createPatient(input: { givenName: \"Ana\" ",
        "this is not graphql",
        "",
    ] {
        refused(&app, broken, json!({}), "GRAPHQL_PARSE_FAILED", None).await;
    }
    for invalid in [
        "{ nope }",
        "{ patients { bogus } }",
        "{ patients(size: 3) { totalCount } }",
        "{ patients }",
        "{ patient(id: $undeclared) { id } }",
    ] {
        refused(&app, invalid, json!({}), "GRAPHQL_VALIDATION_FAILED", None).await;
    }
    // A required input field left out is bad input for that argument.
    refused(
        &app,
        r#"mutation { createPatient(input: { givenName: "Ana" }) { patient { id } } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("input.familyName"),
    )
    .await;
    refused(
        &app,
        r#"{ patients(first: "ten") { totalCount } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("first"),
    )
    .await;
    refused(
        &app,
        "query($first: Int) { patients(first: $first) { totalCount } }",
        json!({ "first": "ten" }),
        "BAD_USER_INPUT",
        Some("first"),
    )
    .await;
    refused(
        &app,
        r#"mutation { createPatient(input: { givenName: 5, familyName: "Lopez" }) { patient { id } } }"#,
        json!({}),
        "BAD_USER_INPUT",
        Some("input.givenName"),
    )
    .await;
    refused(
        &app,
        LOG_TOUCHPOINT,
        json!({ "input": { "patientId": "pat_x", "channel": "PHONE", "direction": "INBOUND", "kind": "call", "emotion": "happy" } }),
        "BAD_USER_INPUT",
        Some("input.emotion"),
    )
    .await;
}

async fn over_deep_queries_are_refused(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    app.start_journey(&patient, &pathway.id).await;

    // journeys → edges → node, then patient → journeys repeated.
    let nested = |rounds: usize| {
        let mut query = String::from("{ journeys { edges { node { ");
        for _ in 0..rounds {
            query.push_str("patient { journeys { ");
        }
        query.push_str("id ");
        for _ in 0..rounds {
            query.push_str("} } ");
        }
        query.push_str("} } } }");
        query
    };
    // Within the limit, the query runs.
    let shallow = app.gql(&nested(2), json!({})).await;
    assert_clean(&shallow, "shallow query");
    shallow.data();

    for rounds in [6, 10, 30] {
        let query = nested(rounds);
        refused(&app, &query, json!({}), "GRAPHQL_VALIDATION_FAILED", None).await;
    }

    // Fragments do not hide the depth.
    let fragments = r#"
      query { journeys { edges { node { ...J } } } }
      fragment J on Journey { patient { journeys { patient { journeys { ...K } } } } }
      fragment K on Journey { patient { journeys { patient { journeys { ...L } } } } }
      fragment L on Journey { patient { journeys { patient { journeys { id } } } } }
    "#;
    refused(
        &app,
        fragments,
        json!({}),
        "GRAPHQL_VALIDATION_FAILED",
        None,
    )
    .await;
}

on_both_backends!(
    create_patient_rejects_bad_email,
    create_patient_rejects_bad_phone,
    create_patient_rejects_blank_names,
    over_long_strings_name_their_field,
    create_patient_rejects_bad_tags,
    create_patient_rejects_future_birth_date,
    unparsable_scalars_name_their_field,
    feedback_scores_are_checked_per_kind,
    touchpoint_emotion_and_time_are_checked,
    move_to_a_stage_of_another_pathway_is_refused,
    move_to_the_current_stage_is_refused,
    stale_expected_version_is_a_conflict,
    unknown_enum_values_are_bad_input,
    page_sizes_are_limited,
    malformed_ids_are_bad_input,
    unknown_ids_are_not_found,
    malformed_cursors_are_bad_input,
    broken_documents_are_refused,
    over_deep_queries_are_refused,
);
