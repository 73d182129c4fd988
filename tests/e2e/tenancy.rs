//! Tenant isolation and authentication: another clinic's ids are NOT_FOUND
//! (never FORBIDDEN, never data) in every query and mutation, refused writes
//! write nothing, lists and filters show only the caller's clinic, bad
//! credentials get 401, and scopes limit what a token may do.
//!
//! The isolation scenarios check every case and report all violations at
//! once, so one run lists every leak.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use journeymap::{
    auth::{Permission, tokens},
    domain::clinics,
};
use journeymap_tests::{PathwayIds, TestApp, on_both_backends};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

/// Everything one clinic owns, by global id.
#[derive(Debug, Clone)]
struct Tenant {
    token: String,
    pathway: PathwayIds,
    rules: Vec<String>,
    patient: String,
    journey: String,
    touchpoint: String,
    feedback: String,
    follow_up: String,
    review_request: String,
    transitions: Vec<String>,
    events: Vec<String>,
}

impl Tenant {
    /// Every id of the clinic, with what it is.
    fn ids(&self) -> Vec<(String, String)> {
        let mut ids = vec![
            ("patient".to_string(), self.patient.clone()),
            ("pathway".to_string(), self.pathway.id.clone()),
            ("stage inquiry".to_string(), self.pathway.inquiry.clone()),
            (
                "stage consultation".to_string(),
                self.pathway.consultation.clone(),
            ),
            (
                "stage treatment".to_string(),
                self.pathway.treatment.clone(),
            ),
            (
                "stage discharged".to_string(),
                self.pathway.discharged.clone(),
            ),
            ("journey".to_string(), self.journey.clone()),
            ("touchpoint".to_string(), self.touchpoint.clone()),
            ("feedback".to_string(), self.feedback.clone()),
            ("follow-up".to_string(), self.follow_up.clone()),
            ("review request".to_string(), self.review_request.clone()),
        ];
        ids.extend(
            self.rules
                .iter()
                .enumerate()
                .map(|(i, id)| (format!("follow-up rule #{i}"), id.clone())),
        );
        ids.extend(
            self.transitions
                .iter()
                .enumerate()
                .map(|(i, id)| (format!("stage transition #{i}"), id.clone())),
        );
        ids.extend(
            self.events
                .iter()
                .enumerate()
                .map(|(i, id)| (format!("event #{i}"), id.clone())),
        );
        ids
    }
}

const LOG_TOUCHPOINT: &str = r#"mutation($input: LogTouchpointInput!) {
  logTouchpoint(input: $input) { touchpoint { id } }
}"#;

const SUBMIT_FEEDBACK: &str = r#"mutation($input: SubmitFeedbackInput!) {
  submitFeedback(input: $input) { feedback { id } }
}"#;

const UPDATE_PATIENT: &str = r#"mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id givenName externalId } }
}"#;

const CREATE_PATIENT: &str = r#"mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id } }
}"#;

/// Runs a query as `token`, expecting data.
async fn read(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    app.gql_as(Some(token), query, variables)
        .await
        .data()
        .clone()
}

fn str_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string, got {value}"))
        .to_string()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list, got {value}"))
        .iter()
        .map(|item| str_of(&item[key]))
        .collect()
}

/// Gives the token's clinic a pathway, a patient (with `external_id`), a
/// journey with its scheduled follow-up, a touchpoint and feedback.
async fn populate(app: &TestApp, token: &str, name: &str, external_id: &str) -> Tenant {
    let pathway = app.pathway_as(token, "Injectables").await;
    let patient = app.patient_as(token, name).await;
    read(
        app,
        token,
        UPDATE_PATIENT,
        json!({ "input": { "patientId": patient, "externalId": external_id } }),
    )
    .await;
    let journey = app.start_journey_as(token, &patient, &pathway.id).await;
    let logged = read(
        app,
        token,
        LOG_TOUCHPOINT,
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE",
                           "direction": "INBOUND", "kind": "call", "summary": format!("{name} called") } }),
    )
    .await;
    let touchpoint = str_of(&logged["logTouchpoint"]["touchpoint"]["id"]);
    let submitted = read(
        app,
        token,
        SUBMIT_FEEDBACK,
        json!({ "input": { "patientId": patient, "journeyId": journey, "touchpointId": touchpoint,
                           "kind": "NPS", "score": 9, "comment": format!("{name} is happy") } }),
    )
    .await;
    let feedback = str_of(&submitted["submitFeedback"]["feedback"]["id"]);
    let follow_ups = read(
        app,
        token,
        "query($journey: ID!) { followUps(filter: {journeyId: $journey}) { nodes { id kind status } } }",
        json!({ "journey": journey }),
    )
    .await;
    let follow_ups = &follow_ups["followUps"]["nodes"];
    let kinds: Vec<(String, String)> = follow_ups
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (str_of(&f["kind"]), str_of(&f["status"])))
        .collect();
    assert_eq!(
        kinds,
        [
            ("STAGE_RULE".to_string(), "OPEN".to_string()),
            // The promoter is asked for a review, but not without marketing consent.
            ("REVIEW_REQUEST".to_string(), "BLOCKED".to_string()),
        ],
        "the standard pathway schedules one call-back on start: {follow_ups}"
    );
    let follow_up = str_of(&follow_ups[0]["id"]);
    let review_request = str_of(&follow_ups[1]["id"]);
    let history = read(
        app,
        token,
        "query($id: ID!) { journey(id: $id) { history { id kind } } }",
        json!({ "id": journey }),
    )
    .await;
    let transitions = strings(&history["journey"]["history"], "id");
    let stages = read(
        app,
        token,
        "query($id: ID!) { pathway(id: $id) { stages { followUpRules { id } } } }",
        json!({ "id": pathway.id }),
    )
    .await;
    let rules = stages["pathway"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|stage| strings(&stage["followUpRules"], "id"))
        .collect();
    let events = read(
        app,
        token,
        "{ events(first: 100) { nodes { id } } }",
        json!({}),
    )
    .await;
    let events = strings(&events["events"]["nodes"], "id");
    assert!(!events.is_empty(), "the clinic has events");
    Tenant {
        token: token.to_string(),
        pathway,
        rules,
        patient,
        journey,
        touchpoint,
        feedback,
        follow_up,
        review_request,
        transitions,
        events,
    }
}

/// Clinic "a" (the app's token) and clinic "b", each populated.
async fn two_clinics(app: &TestApp) -> (Tenant, Tenant) {
    let a = populate(app, &app.token, "Ana", "crm-a-1").await;
    let b_token = app.clinic("b").await;
    let b = populate(app, &b_token, "Bob", "crm-42").await;
    (a, b)
}

/// Violations found so far; the scenario fails with all of them at the end.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn add(&mut self, finding: String) {
        self.0.push(finding);
    }

    #[track_caller]
    fn finish(self, scenario: &str) {
        assert!(
            self.0.is_empty(),
            "{scenario}: {} violation(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}

/// True when the response carries no data for `field`.
fn no_data(body: &Value, field: &str) -> bool {
    body["data"].is_null() || body["data"][field].is_null()
}

/// A query with another clinic's id must be NOT_FOUND without data.
async fn expect_query_not_found(
    app: &TestApp,
    findings: &mut Findings,
    what: &str,
    query: &str,
    root: &str,
    id: &str,
) {
    let response = app.gql(query, json!({ "id": id })).await;
    if response.status != StatusCode::OK
        || response.code().as_deref() != Some("NOT_FOUND")
        || !no_data(&response.body, root)
    {
        findings.add(format!(
            "{root}(id: <B's {what} {id}>) with A's token → HTTP {} {}; expected HTTP 200, NOT_FOUND and `{root}` null",
            response.status.as_u16(),
            compact(&response.body)
        ));
    }
}

/// A refused mutation: what foreign id it carries, the mutation, its input
/// type, the payload selection, the input, and the field that must be named.
type Refusal<'a> = (&'a str, &'a str, &'a str, &'a str, Value, &'a str);

/// A mutation with another clinic's id must be NOT_FOUND on `field`, without
/// data, and write nothing.
async fn expect_mutation_not_found(app: &TestApp, findings: &mut Findings, refusal: Refusal<'_>) {
    let (what, name, input_type, selection, input, field) = refusal;
    let document =
        format!("mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}");
    let before = app.row_counts().await;
    let response = app.gql(&document, json!({ "input": input })).await;
    let after = app.row_counts().await;
    if response.status != StatusCode::OK
        || response.code().as_deref() != Some("NOT_FOUND")
        || response.field().as_deref() != Some(field)
        || !no_data(&response.body, name)
    {
        findings.add(format!(
            "{name} with {what}, input {} → HTTP {} {}; expected NOT_FOUND with extensions.field {field:?} and no data",
            compact(&input),
            response.status.as_u16(),
            compact(&response.body)
        ));
    }
    if before != after {
        let changed: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|((table, b), (_, a))| format!("{table} {b} → {a}"))
            .collect();
        findings.add(format!(
            "{name} with {what} wrote rows although refused: {}",
            changed.join(", ")
        ));
    }
}

async fn queries_with_another_clinics_ids_are_not_found(app: TestApp) {
    let (a, b) = two_clinics(&app).await;
    let mut findings = Findings::default();

    // Controls: A reads its own records by id.
    for (what, id) in a.ids() {
        let own = app
            .gql(
                "query($id: ID!) { node(id: $id) { id __typename } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(own.data()["node"]["id"], id.as_str(), "A's own {what}");
    }

    let typed = [
        (
            "patient",
            "query($id: ID!) { patient(id: $id) { id givenName email } }",
            "patient",
            &b.patient,
        ),
        (
            "pathway",
            "query($id: ID!) { pathway(id: $id) { id name stages { id } } }",
            "pathway",
            &b.pathway.id,
        ),
        (
            "journey",
            "query($id: ID!) { journey(id: $id) { id status patient { id } } }",
            "journey",
            &b.journey,
        ),
        (
            "pathway",
            "query($id: ID!) { journeyMap(pathwayId: $id) { stages { activeCount } } }",
            "journeyMap",
            &b.pathway.id,
        ),
    ];
    for (what, query, root, id) in typed {
        expect_query_not_found(&app, &mut findings, what, query, root, id).await;
    }
    for (what, id) in b.ids() {
        expect_query_not_found(
            &app,
            &mut findings,
            &what,
            "query($id: ID!) { node(id: $id) { id __typename } }",
            "node",
            &id,
        )
        .await;
    }

    findings.finish("queries_with_another_clinics_ids_are_not_found");
}

async fn mutations_with_another_clinics_ids_are_not_found_and_write_nothing(app: TestApp) {
    let (a, b) = two_clinics(&app).await;
    // A second patient of A, free to start journeys on A's pathway.
    let fresh = app.patient("Cleo").await;
    let b_events_before = read(&app, &b.token, "{ events { totalCount } }", json!({})).await;
    let mut findings = Findings::default();

    let cases: Vec<Refusal> = vec![
        (
            "B's patient",
            "updatePatient",
            "UpdatePatientInput",
            "patient { id givenName }",
            json!({ "patientId": b.patient, "givenName": "Hacked" }),
            "input.patientId",
        ),
        (
            "B's patient",
            "startJourney",
            "StartJourneyInput",
            "journey { id }",
            json!({ "patientId": b.patient, "pathwayId": a.pathway.id }),
            "input.patientId",
        ),
        (
            "B's pathway",
            "startJourney",
            "StartJourneyInput",
            "journey { id }",
            json!({ "patientId": fresh, "pathwayId": b.pathway.id }),
            "input.pathwayId",
        ),
        (
            "B's stage",
            "startJourney",
            "StartJourneyInput",
            "journey { id }",
            json!({ "patientId": fresh, "pathwayId": a.pathway.id, "stageId": b.pathway.consultation }),
            "input.stageId",
        ),
        (
            "B's journey",
            "moveJourneyToStage",
            "MoveJourneyToStageInput",
            "journey { id } transition { id }",
            json!({ "journeyId": b.journey, "stageId": a.pathway.consultation }),
            "input.journeyId",
        ),
        (
            "A's journey and B's stage",
            "moveJourneyToStage",
            "MoveJourneyToStageInput",
            "journey { id } transition { id }",
            json!({ "journeyId": a.journey, "stageId": b.pathway.consultation }),
            "input.stageId",
        ),
        (
            "B's journey",
            "completeJourney",
            "CompleteJourneyInput",
            "journey { id status }",
            json!({ "journeyId": b.journey }),
            "input.journeyId",
        ),
        (
            "B's journey",
            "dropJourney",
            "DropJourneyInput",
            "journey { id status }",
            json!({ "journeyId": b.journey, "reason": "price" }),
            "input.journeyId",
        ),
        (
            "B's patient",
            "logTouchpoint",
            "LogTouchpointInput",
            "touchpoint { id }",
            json!({ "patientId": b.patient, "channel": "SMS", "direction": "OUTBOUND", "kind": "reminder" }),
            "input.patientId",
        ),
        (
            "A's patient and B's journey",
            "logTouchpoint",
            "LogTouchpointInput",
            "touchpoint { id }",
            json!({ "patientId": a.patient, "journeyId": b.journey, "channel": "SMS",
                    "direction": "OUTBOUND", "kind": "reminder" }),
            "input.journeyId",
        ),
        (
            "A's patient and B's follow-up",
            "logTouchpoint",
            "LogTouchpointInput",
            "touchpoint { id }",
            json!({ "patientId": a.patient, "channel": "PHONE", "direction": "OUTBOUND",
                    "kind": "call-back", "completesFollowUpId": b.follow_up }),
            "input.completesFollowUpId",
        ),
        (
            "B's patient",
            "submitFeedback",
            "SubmitFeedbackInput",
            "feedback { id }",
            json!({ "patientId": b.patient, "kind": "NPS", "score": 0 }),
            "input.patientId",
        ),
        (
            "A's patient and B's journey",
            "submitFeedback",
            "SubmitFeedbackInput",
            "feedback { id }",
            json!({ "patientId": a.patient, "journeyId": b.journey, "kind": "NPS", "score": 0 }),
            "input.journeyId",
        ),
        (
            "A's patient and B's touchpoint",
            "submitFeedback",
            "SubmitFeedbackInput",
            "feedback { id }",
            json!({ "patientId": a.patient, "touchpointId": b.touchpoint, "kind": "NPS", "score": 0 }),
            "input.touchpointId",
        ),
        (
            "B's follow-up",
            "completeFollowUp",
            "CompleteFollowUpInput",
            "followUp { id status }",
            json!({ "followUpId": b.follow_up }),
            "input.followUpId",
        ),
        (
            "A's follow-up and B's touchpoint",
            "completeFollowUp",
            "CompleteFollowUpInput",
            "followUp { id status }",
            json!({ "followUpId": a.follow_up, "touchpointId": b.touchpoint }),
            "input.touchpointId",
        ),
        (
            "B's pathway",
            "updatePathway",
            "UpdatePathwayInput",
            "pathway { id name }",
            json!({ "pathwayId": b.pathway.id, "name": "Hijacked" }),
            "input.pathwayId",
        ),
        (
            "B's pathway",
            "archivePathway",
            "ArchivePathwayInput",
            "pathway { id archived }",
            json!({ "pathwayId": b.pathway.id }),
            "input.pathwayId",
        ),
        (
            "B's pathway",
            "addStage",
            "AddStageInput",
            "stage { id }",
            json!({ "pathwayId": b.pathway.id, "stage": { "key": "intake", "name": "Intake", "category": "INTAKE" } }),
            "input.pathwayId",
        ),
        (
            "B's stage",
            "updateStage",
            "UpdateStageInput",
            "stage { id name }",
            json!({ "stageId": b.pathway.inquiry, "name": "Hijacked", "targetHours": 1 }),
            "input.stageId",
        ),
        (
            "B's pathway and stages",
            "reorderStages",
            "ReorderStagesInput",
            "pathway { id stages { key } }",
            json!({ "pathwayId": b.pathway.id, "stageIds": [b.pathway.discharged, b.pathway.treatment,
                                                             b.pathway.consultation, b.pathway.inquiry] }),
            "input.pathwayId",
        ),
        (
            "B's stage",
            "setStageFollowUpRules",
            "SetStageFollowUpRulesInput",
            "stage { id followUpRules { id } }",
            json!({ "stageId": b.pathway.inquiry, "rules": [{ "delayHours": 1, "channel": "SMS", "note": "spam" }] }),
            "input.stageId",
        ),
    ];
    for case in cases {
        expect_mutation_not_found(&app, &mut findings, case).await;
    }

    // B's records are as B left them.
    let seen = read(
        &app,
        &b.token,
        r#"query($patient: ID!, $pathway: ID!, $journey: ID!, $followUp: ID!) {
          patient(id: $patient) { givenName familyName externalId
            touchpoints { totalCount } feedback { totalCount } }
          pathway(id: $pathway) { name archived
            stages { id key name targetHours terminal followUpRules { delayHours channel note } } }
          journey(id: $journey) { status version currentStage { key } history { kind } }
          followUp: node(id: $followUp) { ... on FollowUp { status completedBy { id } } }
          events { totalCount }
        }"#,
        json!({ "patient": b.patient, "pathway": b.pathway.id, "journey": b.journey, "followUp": b.follow_up }),
    )
    .await;
    let expected_stages = json!([
        { "id": b.pathway.inquiry, "key": "inquiry", "name": "New inquiry", "targetHours": 24, "terminal": false,
          "followUpRules": [{ "delayHours": 2, "channel": "PHONE", "note": "Call back" }] },
        { "id": b.pathway.consultation, "key": "consultation", "name": "Consultation", "targetHours": 72, "terminal": false,
          "followUpRules": [{ "delayHours": 48, "channel": "SMS", "note": "Quote check-in" }] },
        { "id": b.pathway.treatment, "key": "treatment", "name": "Treatment", "targetHours": null, "terminal": false,
          "followUpRules": [{ "delayHours": 48, "channel": "SMS", "note": "Aftercare" }] },
        { "id": b.pathway.discharged, "key": "discharged", "name": "Discharged", "targetHours": null, "terminal": true,
          "followUpRules": [] },
    ]);
    let expected = json!({
        "patient": { "givenName": "Bob", "familyName": "Test", "externalId": "crm-42",
                     "touchpoints": { "totalCount": 1 }, "feedback": { "totalCount": 1 } },
        "pathway": { "name": "Injectables", "archived": false, "stages": expected_stages },
        "journey": { "status": "ACTIVE", "version": 1, "currentStage": { "key": "inquiry" },
                     "history": [{ "kind": "STARTED" }] },
        "followUp": { "status": "OPEN", "completedBy": null },
        "events": b_events_before["events"],
    });
    if seen != expected {
        findings.add(format!(
            "B's records changed after A's refused mutations: B now sees {}, expected {}",
            compact(&seen),
            compact(&expected)
        ));
    }

    findings.finish("mutations_with_another_clinics_ids_are_not_found_and_write_nothing");
}

async fn lists_and_filters_show_only_the_callers_clinic(app: TestApp) {
    let (a, b) = two_clinics(&app).await;
    let mut findings = Findings::default();
    let b_ids: BTreeSet<String> = b.ids().into_iter().map(|(_, id)| id).collect();

    // Filters on B's pathway are empty lists in A.
    let by_pathway = app
        .gql(
            r#"query($pathway: ID!) {
              patients(filter: {pathwayId: $pathway}) { totalCount nodes { id } }
              journeys(filter: {pathwayId: $pathway}) { totalCount nodes { id } }
            }"#,
            json!({ "pathway": b.pathway.id }),
        )
        .await;
    let empty = json!({ "totalCount": 0, "nodes": [] });
    if by_pathway.body["errors"].is_array()
        || by_pathway.body["data"]["patients"] != empty
        || by_pathway.body["data"]["journeys"] != empty
    {
        findings.add(format!(
            "patients/journeys(filter: {{pathwayId: <B's pathway>}}) with A's token → {}; expected two empty lists",
            compact(&by_pathway.body)
        ));
    }

    // Other filters with B's ids: an empty list (or NOT_FOUND), never B's rows.
    let filtered = [
        (
            "patients",
            "PatientFilter",
            json!({ "stageId": b.pathway.inquiry }),
        ),
        (
            "journeys",
            "JourneyFilter",
            json!({ "stageId": b.pathway.inquiry }),
        ),
        (
            "journeys",
            "JourneyFilter",
            json!({ "patientId": b.patient }),
        ),
        (
            "followUps",
            "FollowUpFilter",
            json!({ "journeyId": b.journey }),
        ),
        (
            "followUps",
            "FollowUpFilter",
            json!({ "patientId": b.patient }),
        ),
    ];
    for (list, filter_type, filter) in filtered {
        let response = app
            .gql(
                &format!(
                    "query($filter: {filter_type}) {{ {list}(filter: $filter) {{ totalCount nodes {{ id }} }} }}"
                ),
                json!({ "filter": filter }),
            )
            .await;
        let empty_list = response.errors().is_empty() && response.body["data"][list] == empty;
        let not_found =
            response.code().as_deref() == Some("NOT_FOUND") && no_data(&response.body, list);
        if !(empty_list || not_found) {
            findings.add(format!(
                "{list}(filter: {}) with A's token → {}; expected an empty list",
                compact(&filter),
                compact(&response.body)
            ));
        }
    }

    // Unfiltered lists hold exactly A's records.
    let lists = app
        .gql(
            r#"{
              patients(first: 100) { totalCount nodes { id } }
              pathways(includeArchived: true) { id stages { id } }
              journeys(first: 100) { totalCount nodes { id history { id } } }
              followUps(first: 100) { totalCount nodes { id } }
            }"#,
            json!({}),
        )
        .await;
    let data = lists.data();
    let listed = |path: &[&str]| -> Vec<String> {
        let mut value = &data[path[0]];
        for key in &path[1..] {
            value = &value[key];
        }
        strings(value, "id")
    };
    let checks = [
        (
            "patients",
            listed(&["patients", "nodes"]),
            vec![a.patient.clone()],
        ),
        (
            "pathways",
            listed(&["pathways"]),
            vec![a.pathway.id.clone()],
        ),
        (
            "journeys",
            listed(&["journeys", "nodes"]),
            vec![a.journey.clone()],
        ),
        (
            "followUps",
            listed(&["followUps", "nodes"]),
            vec![a.follow_up.clone(), a.review_request.clone()],
        ),
    ];
    for (list, got, want) in checks {
        if got != want {
            findings.add(format!(
                "{list} with A's token listed {got:?}; expected only A's {want:?}"
            ));
        }
    }
    for (total, count) in [("patients", 1), ("journeys", 1), ("followUps", 2)] {
        if data[total]["totalCount"] != count {
            findings.add(format!(
                "{total}.totalCount with A's token is {}; expected {count} (A's only)",
                data[total]["totalCount"]
            ));
        }
    }
    let text = compact(data);
    for id in &b_ids {
        if text.contains(id.as_str()) {
            findings.add(format!("A's lists mention B's id {id}: {text}"));
        }
    }

    // The event log holds only A's events.
    let events = app
        .gql(
            "{ events(first: 100) { totalCount nodes { id subject data } } }",
            json!({}),
        )
        .await;
    let events = &events.data()["events"];
    let ids = strings(&events["nodes"], "id");
    if ids != a.events {
        findings.add(format!(
            "events with A's token listed {ids:?}; expected only A's {:?}",
            a.events
        ));
    }
    if events["totalCount"] != json!(a.events.len()) {
        findings.add(format!(
            "events.totalCount with A's token is {}; expected {} (A's only)",
            events["totalCount"],
            a.events.len()
        ));
    }
    let text = compact(events);
    for (what, id) in b.ids() {
        if text.contains(id.as_str()) {
            findings.add(format!("A's events mention B's {what} {id}"));
        }
    }
    for secret in ["Bob", "bob@example.com", "crm-42"] {
        if text.contains(secret) {
            findings.add(format!("A's events mention B's {secret:?}"));
        }
    }

    findings.finish("lists_and_filters_show_only_the_callers_clinic");
}

async fn upsert_by_external_id_stays_in_the_callers_clinic(app: TestApp) {
    let (a, b) = two_clinics(&app).await;
    let before = app.row_counts().await;
    let upserted = app
        .gql(
            r#"mutation($input: UpsertPatientInput!) {
              upsertPatientByExternalId(input: $input) { created patient { id givenName familyName externalId } }
            }"#,
            json!({ "input": { "externalId": "crm-42", "givenName": "Cara", "familyName": "Upsert" } }),
        )
        .await;
    let payload = &upserted.data()["upsertPatientByExternalId"];
    assert_eq!(
        payload["created"], true,
        "B's externalId must not match in A: {payload}"
    );
    assert_ne!(payload["patient"]["id"], b.patient.as_str());
    assert_ne!(payload["patient"]["id"], a.patient.as_str());
    assert_eq!(payload["patient"]["givenName"], "Cara");
    assert_eq!(payload["patient"]["externalId"], "crm-42");
    let after = app.row_counts().await;
    let patients =
        |counts: &[(&str, i64)]| counts.iter().find(|(t, _)| *t == "patients").unwrap().1;
    assert_eq!(patients(&after), patients(&before) + 1, "one new patient");

    // A now has two patients; B's patient is untouched.
    let listed = read(
        &app,
        &app.token,
        "{ patients { totalCount nodes { id externalId } } }",
        json!({}),
    )
    .await;
    assert_eq!(listed["patients"]["totalCount"], 2);
    let b_side = read(
        &app,
        &b.token,
        r#"query($id: ID!) {
          patient(id: $id) { givenName familyName externalId }
          patients { totalCount }
        }"#,
        json!({ "id": b.patient }),
    )
    .await;
    assert_eq!(
        b_side,
        json!({
            "patient": { "givenName": "Bob", "familyName": "Test", "externalId": "crm-42" },
            "patients": { "totalCount": 1 }
        })
    );

    // Upserting again updates A's new patient, still not B's.
    let again = read(
        &app,
        &app.token,
        r#"mutation($input: UpsertPatientInput!) {
          upsertPatientByExternalId(input: $input) { created patient { id givenName } }
        }"#,
        json!({ "input": { "externalId": "crm-42", "givenName": "Carla" } }),
    )
    .await;
    assert_eq!(again["upsertPatientByExternalId"]["created"], false);
    assert_eq!(
        again["upsertPatientByExternalId"]["patient"]["id"],
        payload["patient"]["id"]
    );
    let b_patient = read(
        &app,
        &b.token,
        "query($id: ID!) { patient(id: $id) { givenName } }",
        json!({ "id": b.patient }),
    )
    .await;
    assert_eq!(b_patient["patient"]["givenName"], "Bob");
}

/// A raw `POST /graphql` with the given `Authorization` header (or none).
async fn post(
    app: &TestApp,
    authorization: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, header::HeaderMap, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.url))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.expect("JSON body");
    (status, headers, body)
}

const VIEWER: &str = "{ viewer { kind name clinic { slug } } }";

/// The credential is refused with 401, `WWW-Authenticate` and UNAUTHENTICATED,
/// for a read and for a write, and the write writes nothing.
#[track_caller]
fn assert_unauthorized(what: &str, status: StatusCode, headers: &header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let challenge = headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate header"))
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{what}: {body}"
    );
    assert!(
        body["data"].is_null(),
        "{what}: data with a bad credential: {body}"
    );
}

async fn refused_everywhere(app: &TestApp, what: &str, authorization: &str) {
    let (status, headers, body) = post(app, Some(authorization), VIEWER, json!({})).await;
    assert_unauthorized(what, status, &headers, &body);

    let before = app.row_counts().await;
    let (status, headers, body) = post(
        app,
        Some(authorization),
        CREATE_PATIENT,
        json!({ "input": { "givenName": "Mallory", "familyName": "Intruder" } }),
    )
    .await;
    assert_unauthorized(&format!("{what} (createPatient)"), status, &headers, &body);
    assert_eq!(
        app.row_counts().await,
        before,
        "{what}: a refused write wrote something"
    );
}

async fn missing_and_invalid_credentials_are_refused(app: TestApp) {
    // No credential: a GraphQL error on HTTP 200.
    let (status, _, body) = post(&app, None, VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");
    let before = app.row_counts().await;
    let (status, _, body) = post(
        &app,
        None,
        CREATE_PATIENT,
        json!({ "input": { "givenName": "Mallory", "familyName": "Intruder" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(
        app.row_counts().await,
        before,
        "an anonymous write wrote something"
    );

    // The control: the real token works.
    let (status, _, body) = post(
        &app,
        Some(&format!("Bearer {}", app.token)),
        VIEWER,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["viewer"]["clinic"]["slug"], "a", "{body}");

    let mut tampered: Vec<char> = app.token.chars().collect();
    tampered[5] = if tampered[5] == 'a' { 'b' } else { 'a' };
    let tampered: String = tampered.into_iter().collect();
    let unknown = tokens::generate().secret;
    assert!(tokens::is_well_formed(&unknown));
    let cases = [
        ("malformed token", "Bearer not-a-token".to_string()),
        ("short jm_ token", "Bearer jm_short".to_string()),
        ("token with a broken checksum", format!("Bearer {tampered}")),
        ("empty bearer token", "Bearer ".to_string()),
        ("scheme without a token", "Bearer".to_string()),
        ("unknown well-formed token", format!("Bearer {unknown}")),
        ("Basic scheme", "Basic YWRtaW46aHVudGVyMg==".to_string()),
        (
            "a valid token under the Basic scheme",
            format!("Basic {}", app.token),
        ),
        (
            "a valid token under another scheme",
            format!("Token {}", app.token),
        ),
        ("a valid token without a scheme", app.token.clone()),
    ];
    for (what, authorization) in cases {
        refused_everywhere(&app, what, &authorization).await;
    }
}

/// Revokes `token` the way a clinic admin does (`revokeApiToken`), which
/// takes effect on the very next request. (A revocation by hand in SQL takes
/// PostgreSQL's notification to reach the server: `replicas.rs`.)
async fn revoke(app: &TestApp, token: uuid::Uuid) {
    let revoked = app
        .gql(
            "mutation($input: RevokeApiTokenInput!) { revokeApiToken(input: $input) { token { revokedAt } } }",
            json!({ "input": { "tokenId": journeymap::ids::IdKind::ApiToken.encode(token) } }),
        )
        .await;
    assert!(
        revoked.data()["revokeApiToken"]["token"]["revokedAt"].is_string(),
        "the token was revoked"
    );
}

async fn revoked_and_expired_tokens_are_refused(app: TestApp) {
    let clinic = clinics::by_slug(app.db(), "a").await.unwrap().unwrap();

    // A live token works until it is revoked.
    let (token, secret) =
        clinics::create_token(app.db(), clinic.id, "to revoke", &Permission::ALL, None)
            .await
            .unwrap();
    let bearer = format!("Bearer {secret}");
    let (status, _, body) = post(&app, Some(&bearer), VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["viewer"]["name"], "to revoke", "{body}");

    revoke(&app, token.id).await;
    refused_everywhere(&app, "revoked token", &bearer).await;

    // A token past its expiry is refused; one before it works.
    let (_, expired) = clinics::create_token(
        app.db(),
        clinic.id,
        "expired",
        &Permission::ALL,
        Some(Utc::now() - Duration::hours(1)),
    )
    .await
    .unwrap();
    refused_everywhere(&app, "expired token", &format!("Bearer {expired}")).await;
    let (_, live) = clinics::create_token(
        app.db(),
        clinic.id,
        "expires tomorrow",
        &Permission::ALL,
        Some(Utc::now() + Duration::days(1)),
    )
    .await
    .unwrap();
    let (status, _, body) = post(&app, Some(&format!("Bearer {live}")), VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["viewer"]["name"], "expires tomorrow", "{body}");

    // The other tokens of the clinic still work.
    app.gql(VIEWER, json!({})).await.data();
}

async fn scopes_limit_what_a_token_may_do(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Dee").await;
    app.start_journey(&patient, &pathway.id).await;
    let event = read(
        &app,
        &app.token,
        "{ events(first: 1) { nodes { id } } }",
        json!({}),
    )
    .await;
    let event = str_of(&event["events"]["nodes"][0]["id"]);

    // Read-only patients: reads work, writes are FORBIDDEN and write nothing.
    let reader = app.token_with(&[Permission::PatientsRead]).await;
    let listed = read(
        &app,
        &reader,
        "query($id: ID!) { patients { totalCount nodes { id } } patient(id: $id) { givenName } }",
        json!({ "id": patient }),
    )
    .await;
    assert_eq!(listed["patients"]["totalCount"], 1);
    assert_eq!(listed["patients"]["nodes"][0]["id"], patient.as_str());
    assert_eq!(listed["patient"]["givenName"], "Dee");
    let before = app.row_counts().await;
    let refused = app
        .gql_as(
            Some(&reader),
            CREATE_PATIENT,
            json!({ "input": { "givenName": "Eli", "familyName": "Test" } }),
        )
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert_eq!(refused.status, StatusCode::OK);
    assert!(
        no_data(&refused.body, "createPatient"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused createPatient wrote something"
    );
    let refused = app
        .gql_as(
            Some(&reader),
            UPDATE_PATIENT,
            json!({ "input": { "patientId": patient, "givenName": "Changed" } }),
        )
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused updatePatient wrote something"
    );
    let name = read(
        &app,
        &app.token,
        "query($id: ID!) { patient(id: $id) { givenName } }",
        json!({ "id": patient }),
    )
    .await;
    assert_eq!(name["patient"]["givenName"], "Dee");

    let all_but = |missing: Permission| -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| *p != missing)
            .collect()
    };

    // Without analytics:read, no journey map.
    const MAP: &str = "query($id: ID!) { journeyMap(pathwayId: $id) { stages { activeCount } } }";
    read(&app, &app.token, MAP, json!({ "id": pathway.id })).await;
    let no_analytics = app.token_with(&all_but(Permission::AnalyticsRead)).await;
    let refused = app
        .gql_as(Some(&no_analytics), MAP, json!({ "id": pathway.id }))
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert!(no_data(&refused.body, "journeyMap"), "{:?}", refused.body);

    // Without events:read, no event log and no events by id.
    let no_events = app.token_with(&all_but(Permission::EventsRead)).await;
    let refused = app
        .gql_as(
            Some(&no_events),
            "{ events { totalCount nodes { id type } } }",
            json!({}),
        )
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert!(no_data(&refused.body, "events"), "{:?}", refused.body);
    let refused = app
        .gql_as(
            Some(&no_events),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": event }),
        )
        .await;
    refused.assert_error("FORBIDDEN", None);
    assert!(no_data(&refused.body, "node"), "{:?}", refused.body);
}

on_both_backends!(
    queries_with_another_clinics_ids_are_not_found,
    mutations_with_another_clinics_ids_are_not_found_and_write_nothing,
    lists_and_filters_show_only_the_callers_clinic,
    upsert_by_external_id_stays_in_the_callers_clinic,
    missing_and_invalid_credentials_are_refused,
    revoked_and_expired_tokens_are_refused,
    scopes_limit_what_a_token_may_do,
);
