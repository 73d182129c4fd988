//! List filters: patient search (names, email, phone, literal wildcards),
//! pathway, stage, tag and archived patients; journeys by pathway, stage,
//! status and stall (also after a stage's target changes); follow-ups by
//! status, lateness, due time and assignee. Every list's `totalCount` agrees
//! with its edges, and paging a filtered list shows each match exactly once.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use journeymap::auth::Role;
use journeymap_tests::{PathwayIds, TestApp, on_both_backends};
use serde_json::{Value, json};

const CREATE_PATIENT: &str = r#"mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id } }
}"#;

const UPDATE_PATIENT: &str = r#"mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } }
}"#;

const UPSERT_PATIENT: &str = r#"mutation($input: UpsertPatientInput!) {
  upsertPatientByExternalId(input: $input) { patient { id } created }
}"#;

const ERASE_PATIENT: &str = r#"mutation($input: ErasePatientInput!) {
  erasePatient(input: $input) { patient { id archived } }
}"#;

const START: &str = r#"mutation($input: StartJourneyInput!) {
  startJourney(input: $input) { journey { id } }
}"#;

const MOVE: &str = r#"mutation($input: MoveJourneyToStageInput!) {
  moveJourneyToStage(input: $input) { journey { id status } }
}"#;

const COMPLETE: &str = r#"mutation($input: CompleteJourneyInput!) {
  completeJourney(input: $input) { journey { status } }
}"#;

const DROP: &str = r#"mutation($input: DropJourneyInput!) {
  dropJourney(input: $input) { journey { status } }
}"#;

const UPDATE_STAGE: &str = r#"mutation($input: UpdateStageInput!) {
  updateStage(input: $input) { stage { targetHours } }
}"#;

const COMPLETE_FOLLOW_UP: &str = r#"mutation($input: CompleteFollowUpInput!) {
  completeFollowUp(input: $input) { followUp { status } }
}"#;

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `hours` ago, to the second (so sums of whole hours are exact).
fn ago(hours: i64) -> String {
    at(Utc::now() - Duration::hours(hours))
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time"))
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

/// Records by name, so a wrong list reads as names rather than ids.
#[derive(Default)]
struct Cast(Vec<(String, String)>);

impl Cast {
    fn add(&mut self, name: &str, id: &str) {
        self.0.push((name.to_string(), id.to_string()));
    }

    fn id(&self, name: &str) -> &str {
        &self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in the cast"))
            .1
    }

    fn name(&self, id: &str) -> String {
        self.0
            .iter()
            .find(|(_, i)| i == id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("<unknown {id}>"))
    }

    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Mismatches, gathered so one run shows every wrong filter at once.
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
            "{scenario}: {} wrong answer(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }

    /// Checks that `list(filter: …)` returns exactly `expected` (by name),
    /// each once, and that `totalCount` says as many.
    async fn expect(
        &mut self,
        app: &TestApp,
        cast: &Cast,
        list: &str,
        filter: Value,
        expected: &[&str],
    ) {
        let filter_type = match list {
            "patients" => "PatientFilter",
            "journeys" => "JourneyFilter",
            "followUps" => "FollowUpFilter",
            other => panic!("no filter type for {other}"),
        };
        let query = format!(
            "query($f: {filter_type}) {{ {list}(first: 100, filter: $f) {{ totalCount edges {{ node {{ id }} }} }} }}"
        );
        let response = app.gql(&query, json!({ "f": filter })).await;
        if !response.errors().is_empty() {
            self.add(format!(
                "{list}(filter: {filter}) failed: {}",
                response.body
            ));
            return;
        }
        let connection = &response.body["data"][list];
        let names: Vec<String> = connection["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| cast.name(e["node"]["id"].as_str().unwrap()))
            .collect();
        let unique: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = expected.iter().copied().collect();
        if unique != wanted || unique.len() != names.len() {
            self.add(format!(
                "{list}(filter: {filter}) returned {names:?}; expected {wanted:?}"
            ));
        }
        if connection["totalCount"] != json!(names.len()) {
            self.add(format!(
                "{list}(filter: {filter}) has totalCount {} but {} edges",
                connection["totalCount"],
                names.len()
            ));
        }
    }
}

async fn create_patient(app: &TestApp, input: Value) -> String {
    app.gql(CREATE_PATIENT, json!({ "input": input }))
        .await
        .data()["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts a journey (`hours_ago` in the past, or now), optionally owned by a
/// staff member; returns its id.
async fn start(
    app: &TestApp,
    patient: &str,
    pathway: &str,
    hours_ago: Option<i64>,
    owner: Option<&str>,
) -> String {
    let mut input = json!({ "patientId": patient, "pathwayId": pathway });
    if let Some(hours) = hours_ago {
        input["occurredAt"] = json!(ago(hours));
    }
    if let Some(owner) = owner {
        input["ownerId"] = json!(owner);
    }
    app.gql(START, json!({ "input": input })).await.data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn move_to(app: &TestApp, journey: &str, stage: &str, hours_ago: Option<i64>) {
    let mut input = json!({ "journeyId": journey, "stageId": stage });
    if let Some(hours) = hours_ago {
        input["occurredAt"] = json!(ago(hours));
    }
    app.gql(MOVE, json!({ "input": input })).await.data();
}

async fn complete(app: &TestApp, journey: &str) {
    let done = app
        .gql(COMPLETE, json!({ "input": { "journeyId": journey } }))
        .await;
    assert_eq!(
        done.data()["completeJourney"]["journey"]["status"],
        "COMPLETED"
    );
}

async fn drop_journey(app: &TestApp, journey: &str) {
    let dropped = app
        .gql(
            DROP,
            json!({ "input": { "journeyId": journey, "reason": "price" } }),
        )
        .await;
    assert_eq!(
        dropped.data()["dropJourney"]["journey"]["status"],
        "DROPPED"
    );
}

/// A new staff member of clinic "a": their id.
async fn staff_member(app: &TestApp, role: Role) -> String {
    let (email, _) = app.staff_in("a", role).await;
    let staff = app.gql("{ staff { id email } }", json!({})).await;
    staff.data()["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["email"] == email.as_str())
        .expect("the new staff member is listed")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------- patients

async fn patient_search_matches_names_email_and_phone_words_together(app: TestApp) {
    let mut cast = Cast::default();
    for (name, input) in [
        (
            "ana",
            json!({ "givenName": "Ana", "familyName": "Lopez", "email": "ana.lopez@example.com", "phone": "+14155550199" }),
        ),
        // Entered formatted; stored as +14155550123.
        (
            "anabel",
            json!({ "givenName": "Anabel", "familyName": "Ruiz", "email": "anabel.r@example.org", "phone": "+1 415-555-0123" }),
        ),
        (
            "bob",
            json!({ "givenName": "Bob", "familyName": "Lopez", "email": "bob@example.com" }),
        ),
        (
            "chloe",
            json!({ "givenName": "Chloé", "familyName": "Dubois", "email": "chloe.d@example.fr", "phone": "+33612345678" }),
        ),
    ] {
        let id = create_patient(&app, input).await;
        cast.add(name, &id);
    }
    let everyone = cast.names();
    let mut findings = Findings::default();
    for (search, expected) in [
        // Names: partial and case-insensitive, also beyond ASCII.
        ("ana", vec!["ana", "anabel"]),
        ("ANA", vec!["ana", "anabel"]),
        ("nAbE", vec!["anabel"]),
        ("lopez", vec!["ana", "bob"]),
        ("CHLOÉ", vec!["chloe"]),
        ("hlo", vec!["chloe"]),
        // Several words must all match, in any order, wherever they are.
        ("ana lopez", vec!["ana"]),
        ("  LOPEZ   ana ", vec!["ana"]),
        ("ana ruiz", vec!["anabel"]),
        ("ana dubois", vec![]),
        ("lopez zzz", vec![]),
        // Email.
        ("example.org", vec!["anabel"]),
        ("BOB@EXAMPLE.COM", vec!["bob"]),
        ("@example", everyone.clone()),
        // Phone: digits, E.164, or formatted the way people write numbers.
        ("4155550199", vec!["ana"]),
        ("+14155550199", vec!["ana"]),
        ("+1 (415) 555-0199", vec!["ana"]),
        ("415-555-0199", vec!["ana"]),
        ("(415) 555-0123", vec!["anabel"]),
        ("415.555.0123", vec!["anabel"]),
        ("415", vec!["ana", "anabel"]),
        ("612345678", vec!["chloe"]),
        ("lopez 0199", vec!["ana"]),
        ("5550100", vec![]),
        // A blank search is no search.
        ("   ", everyone.clone()),
    ] {
        findings
            .expect(
                &app,
                &cast,
                "patients",
                json!({ "search": search }),
                &expected,
            )
            .await;
    }

    // The search follows changes to the patient.
    app.gql(
        UPDATE_PATIENT,
        json!({ "input": { "patientId": cast.id("bob"), "familyName": "Marsh", "email": "bob.marsh@example.net" } }),
    )
    .await
    .data();
    app.gql(
        UPDATE_PATIENT,
        json!({ "input": { "patientId": cast.id("ana"), "phone": "+442071838750" } }),
    )
    .await
    .data();
    // And covers patients created or changed by a CRM upsert.
    let upserted = app
        .gql(
            UPSERT_PATIENT,
            json!({ "input": { "externalId": "crm-1", "givenName": "Dora", "familyName": "Quinn", "phone": "+14155550777" } }),
        )
        .await;
    cast.add(
        "dora",
        upserted.data()["upsertPatientByExternalId"]["patient"]["id"]
            .as_str()
            .unwrap(),
    );
    for (search, expected) in [
        ("lopez", vec!["ana"]),
        ("marsh", vec!["bob"]),
        ("example.net", vec!["bob"]),
        ("bob@example.com", vec![]),
        ("4155550199", vec![]),
        ("+44 20 7183 8750", vec!["ana"]),
        ("quinn", vec!["dora"]),
        ("555-0777", vec!["dora"]),
    ] {
        findings
            .expect(
                &app,
                &cast,
                "patients",
                json!({ "search": search }),
                &expected,
            )
            .await;
    }
    app.gql(
        UPSERT_PATIENT,
        json!({ "input": { "externalId": "crm-1", "familyName": "Quill" } }),
    )
    .await
    .data();
    for (search, expected) in [("quinn", vec![]), ("dora quill", vec!["dora"])] {
        findings
            .expect(
                &app,
                &cast,
                "patients",
                json!({ "search": search }),
                &expected,
            )
            .await;
    }
    findings.finish("patient_search_matches_names_email_and_phone_words_together");
}

async fn search_wildcards_are_matched_literally(app: TestApp) {
    let mut cast = Cast::default();
    for (name, input) in [
        (
            "percent",
            json!({ "givenName": "Dan", "familyName": "Marsh", "email": "dan50%off@example.com" }),
        ),
        (
            "underscore",
            json!({ "givenName": "Eve", "familyName": "King", "email": "eve_k@example.com" }),
        ),
        (
            "backslash",
            json!({ "givenName": "Fay", "familyName": "O\\Hara", "email": "fay@example.com" }),
        ),
        // What a wildcard would match: "50" … "off", "eve" ? "k".
        (
            "decoy",
            json!({ "givenName": "Gus", "familyName": "Evexking", "email": "gus50-off@example.com" }),
        ),
    ] {
        let id = create_patient(&app, input).await;
        cast.add(name, &id);
    }
    let mut findings = Findings::default();
    for (search, expected) in [
        ("%", vec!["percent"]),
        ("50%off", vec!["percent"]),
        ("50%", vec!["percent"]),
        ("%%", vec![]),
        ("_", vec!["underscore"]),
        ("eve_k", vec!["underscore"]),
        ("e_e", vec![]),
        ("__", vec![]),
        ("\\", vec!["backslash"]),
        ("o\\h", vec!["backslash"]),
        ("\\%", vec![]),
        ("evexk", vec!["decoy"]),
    ] {
        findings
            .expect(
                &app,
                &cast,
                "patients",
                json!({ "search": search }),
                &expected,
            )
            .await;
    }
    findings.finish("search_wildcards_are_matched_literally");
}

async fn patients_filter_by_pathway_stage_and_tag_and_hide_the_archived(app: TestApp) {
    let p = app.pathway().await;
    let q = app.pathway_as(&app.token, "Hormones").await;
    let mut cast = Cast::default();
    for (name, tags) in [
        ("ana", json!(["vip", "botox"])),
        ("bob", json!(["vip"])),
        ("cleo", json!(["botox"])),
        ("dan", json!([])),
        ("eve", json!(["VIP"])),
        ("fay", json!(["vip"])),
    ] {
        let id = create_patient(
            &app,
            json!({ "givenName": name, "familyName": "Filter", "email": format!("{name}@example.com"), "tags": tags }),
        )
        .await;
        cast.add(name, &id);
    }
    // Ana: active in consultation on P.
    let ana = start(&app, cast.id("ana"), &p.id, None, None).await;
    move_to(&app, &ana, &p.consultation, None).await;
    // Bob: dropped on P, then back on P in inquiry (two journeys, one patient).
    let bob = start(&app, cast.id("bob"), &p.id, None, None).await;
    drop_journey(&app, &bob).await;
    start(&app, cast.id("bob"), &p.id, None, None).await;
    // Cleo: completed on P while in consultation; no longer waiting there.
    let cleo = start(&app, cast.id("cleo"), &p.id, None, None).await;
    move_to(&app, &cleo, &p.consultation, None).await;
    complete(&app, &cleo).await;
    // Dan: active in consultation, but on Q.
    let dan = start(&app, cast.id("dan"), &q.id, None, None).await;
    move_to(&app, &dan, &q.consultation, None).await;
    // Eve: no journey. Fay: active in consultation on P, then erased, which
    // archives her.
    let fay = start(&app, cast.id("fay"), &p.id, None, None).await;
    move_to(&app, &fay, &p.consultation, None).await;
    let erased = app
        .gql(
            ERASE_PATIENT,
            json!({ "input": { "patientId": cast.id("fay"), "reason": "erasure request" } }),
        )
        .await;
    assert_eq!(erased.data()["erasePatient"]["patient"]["archived"], true);

    let mut findings = Findings::default();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["ana", "bob", "cleo", "dan", "eve"]),
        (
            json!({ "includeArchived": true }),
            vec!["ana", "bob", "cleo", "dan", "eve", "fay"],
        ),
        (
            json!({ "includeArchived": false }),
            vec!["ana", "bob", "cleo", "dan", "eve"],
        ),
        // A journey on the pathway, in any status; each patient once.
        (json!({ "pathwayId": p.id }), vec!["ana", "bob", "cleo"]),
        (
            json!({ "pathwayId": p.id, "includeArchived": true }),
            vec!["ana", "bob", "cleo", "fay"],
        ),
        (json!({ "pathwayId": q.id }), vec!["dan"]),
        // An active journey in the stage now.
        (json!({ "stageId": p.consultation }), vec!["ana"]),
        (
            json!({ "stageId": p.consultation, "includeArchived": true }),
            vec!["ana", "fay"],
        ),
        (json!({ "stageId": p.inquiry }), vec!["bob"]),
        (json!({ "stageId": q.consultation }), vec!["dan"]),
        (json!({ "stageId": p.treatment }), vec![]),
        (json!({ "stageId": q.inquiry }), vec![]),
        // Tags are matched the way they are stored: lower-case.
        (json!({ "tag": "vip" }), vec!["ana", "bob", "eve"]),
        (json!({ "tag": "VIP" }), vec!["ana", "bob", "eve"]),
        (json!({ "tag": "botox" }), vec!["ana", "cleo"]),
        (json!({ "tag": "vi" }), vec![]),
        (json!({ "tag": "nope" }), vec![]),
        // Filters combine.
        (
            json!({ "tag": "vip", "pathwayId": p.id }),
            vec!["ana", "bob"],
        ),
        (json!({ "tag": "vip", "search": "bob" }), vec!["bob"]),
        (
            json!({ "tag": "botox", "search": "filter" }),
            vec!["ana", "cleo"],
        ),
        (
            json!({ "stageId": p.consultation, "tag": "botox", "search": "ana", "pathwayId": p.id }),
            vec!["ana"],
        ),
        (json!({ "pathwayId": q.id, "tag": "vip" }), vec![]),
        (
            json!({ "search": "filter" }),
            vec!["ana", "bob", "cleo", "dan", "eve"],
        ),
    ];
    for (filter, expected) in cases {
        findings
            .expect(&app, &cast, "patients", filter, &expected)
            .await;
    }

    // Without a filter argument at all: the same as an empty filter.
    let unfiltered = app
        .gql(
            "{ patients(first: 100) { totalCount nodes { id archived } } }",
            json!({}),
        )
        .await;
    let unfiltered = &unfiltered.data()["patients"];
    assert_eq!(unfiltered["totalCount"], 5, "{unfiltered:#}");
    assert!(
        unfiltered["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["archived"] == false && n["id"] != cast.id("fay")),
        "an archived patient is listed by default: {unfiltered:#}"
    );
    findings.finish("patients_filter_by_pathway_stage_and_tag_and_hide_the_archived");
}

async fn a_filtered_patient_list_pages_through_every_match_once(app: TestApp) {
    // Nine matches (tag and name), among patients matching only one of the two.
    let mut matching = BTreeSet::new();
    for i in 0..9 {
        let id = create_patient(
            &app,
            json!({ "givenName": format!("Pager{i}"), "familyName": "Match", "tags": ["cohort"] }),
        )
        .await;
        matching.insert(id);
        if i % 3 == 0 {
            create_patient(
                &app,
                json!({ "givenName": format!("Pager{i}"), "familyName": "Untagged" }),
            )
            .await;
            create_patient(
                &app,
                json!({ "givenName": format!("Other{i}"), "familyName": "Tagged", "tags": ["cohort"] }),
            )
            .await;
        }
    }
    let filter = json!({ "tag": "cohort", "search": "pager" });

    let all = app
        .gql(
            "query($f: PatientFilter) { patients(first: 100, filter: $f) { totalCount nodes { id } } }",
            json!({ "f": filter }),
        )
        .await;
    let order: Vec<String> = all.data()["patients"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.data()["patients"]["totalCount"], 9);
    assert_eq!(
        order.iter().cloned().collect::<BTreeSet<_>>(),
        matching,
        "the one-page list is not the nine matches"
    );

    // Forwards, two at a time.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let page = app
            .gql(
                "query($f: PatientFilter, $after: String) { patients(first: 2, after: $after, filter: $f) {
                    totalCount pageInfo { hasNextPage endCursor } nodes { id } } }",
                json!({ "f": filter, "after": after }),
            )
            .await;
        let page = &page.data()["patients"];
        assert_eq!(page["totalCount"], 9, "every page counts all matches");
        seen.extend(
            page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap().to_string()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, order, "paging forwards");

    // Backwards, two at a time, from the end.
    let mut seen_backwards = Vec::new();
    let mut before = Value::Null;
    for _ in 0..10 {
        let page = app
            .gql(
                "query($f: PatientFilter, $before: String) { patients(last: 2, before: $before, filter: $f) {
                    totalCount pageInfo { hasPreviousPage startCursor } nodes { id } } }",
                json!({ "f": filter, "before": before }),
            )
            .await;
        let page = &page.data()["patients"];
        assert_eq!(page["totalCount"], 9, "every page counts all matches");
        let ids: Vec<String> = page["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        seen_backwards.splice(0..0, ids);
        if page["pageInfo"]["hasPreviousPage"] != true {
            break;
        }
        before = page["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(seen_backwards, order, "paging backwards");
}

// ---------------------------------------------------------------- journeys

async fn journeys_filter_by_pathway_stage_status_and_stall(app: TestApp) {
    let p = app.pathway().await;
    let q = app.pathway_as(&app.token, "Hormones").await;
    let owner = staff_member(&app, Role::Coordinator).await;
    let mut cast = Cast::default();
    let patient = |name: &'static str| {
        let app = &app;
        async move { app.patient(name).await }
    };

    // 30 h in inquiry (24 h target): stalled. The same patient is stalled on Q.
    let una = patient("Una").await;
    cast.add("stalled", &start(&app, &una, &p.id, Some(30), None).await);
    cast.add("stalled-q", &start(&app, &una, &q.id, Some(30), None).await);
    // In consultation (72 h) since now, owned by a coordinator.
    let id = start(&app, &patient("Vic").await, &p.id, None, Some(&owner)).await;
    move_to(&app, &id, &p.consultation, None).await;
    cast.add("consulting", &id);
    // 90 h in treatment, which has no target: never stalls.
    let id = start(&app, &patient("Wes").await, &p.id, Some(100), None).await;
    move_to(&app, &id, &p.treatment, Some(90)).await;
    cast.add("treating", &id);
    // Completed where it stood, 30 h into inquiry.
    let id = start(&app, &patient("Xia").await, &p.id, Some(30), None).await;
    complete(&app, &id).await;
    cast.add("completed", &id);
    // Completed by entering the terminal stage.
    let id = start(&app, &patient("Yan").await, &p.id, None, None).await;
    move_to(&app, &id, &p.discharged, None).await;
    cast.add("discharged", &id);
    // Dropped after 40 h in inquiry: past the target, but ended journeys don't stall.
    let id = start(&app, &patient("Zoe").await, &p.id, Some(40), None).await;
    drop_journey(&app, &id).await;
    cast.add("dropped", &id);

    let mut findings = Findings::default();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({}),
            vec![
                "stalled",
                "stalled-q",
                "consulting",
                "treating",
                "completed",
                "discharged",
                "dropped",
            ],
        ),
        (
            json!({ "pathwayId": p.id }),
            vec![
                "stalled",
                "consulting",
                "treating",
                "completed",
                "discharged",
                "dropped",
            ],
        ),
        (json!({ "pathwayId": q.id }), vec!["stalled-q"]),
        (
            json!({ "stageId": p.inquiry, "status": "ACTIVE" }),
            vec!["stalled"],
        ),
        (json!({ "stageId": p.consultation }), vec!["consulting"]),
        (json!({ "stageId": p.treatment }), vec!["treating"]),
        (json!({ "stageId": q.inquiry }), vec!["stalled-q"]),
        (json!({ "stageId": q.consultation }), vec![]),
        (
            json!({ "stageId": p.discharged, "status": "COMPLETED" }),
            vec!["discharged"],
        ),
        (
            json!({ "status": "ACTIVE" }),
            vec!["stalled", "stalled-q", "consulting", "treating"],
        ),
        (
            json!({ "status": "COMPLETED" }),
            vec!["completed", "discharged"],
        ),
        (json!({ "status": "DROPPED" }), vec!["dropped"]),
        (json!({ "status": "DROPPED", "pathwayId": q.id }), vec![]),
        (json!({ "stalled": true }), vec!["stalled", "stalled-q"]),
        // Not stalled: everything else, including active journeys in a stage
        // without a target and journeys that ended.
        (
            json!({ "stalled": false }),
            vec![
                "consulting",
                "treating",
                "completed",
                "discharged",
                "dropped",
            ],
        ),
        (
            json!({ "stalled": true, "pathwayId": p.id }),
            vec!["stalled"],
        ),
        (
            json!({ "stalled": false, "status": "ACTIVE" }),
            vec!["consulting", "treating"],
        ),
        (
            json!({ "stalled": false, "stageId": p.treatment }),
            vec!["treating"],
        ),
        (json!({ "stalled": true, "status": "COMPLETED" }), vec![]),
        (
            json!({ "stalled": true, "stageId": p.inquiry }),
            vec!["stalled"],
        ),
        (json!({ "ownerId": owner }), vec!["consulting"]),
        (json!({ "patientId": una }), vec!["stalled", "stalled-q"]),
    ];
    for (filter, expected) in cases {
        findings
            .expect(&app, &cast, "journeys", filter, &expected)
            .await;
    }

    // Each journey's own fields agree with the filters.
    let expected_fields = [
        ("stalled", "ACTIVE", true),
        ("stalled-q", "ACTIVE", true),
        ("consulting", "ACTIVE", false),
        ("treating", "ACTIVE", false),
        ("completed", "COMPLETED", false),
        ("discharged", "COMPLETED", false),
        ("dropped", "DROPPED", false),
    ];
    for (name, status, stalled) in expected_fields {
        let journey = app
            .gql(
                "query($id: ID!) { journey(id: $id) { status stalled } }",
                json!({ "id": cast.id(name) }),
            )
            .await;
        let journey = &journey.data()["journey"];
        if journey["status"] != status || journey["stalled"] != stalled {
            findings.add(format!(
                "journey {name} is {journey}; expected status {status}, stalled {stalled}"
            ));
        }
    }
    findings.finish("journeys_filter_by_pathway_stage_status_and_stall");
}

/// Checks, after `step`, that exactly `stalled` of `cast` are stalled: by the
/// filter both ways, by each journey's `stalled` field, and by the journey
/// map's stalled count for `stage` (holding `in_stage` of them).
async fn expect_stalled(
    findings: &mut Findings,
    app: &TestApp,
    cast: &Cast,
    step: &str,
    stalled: &[&str],
    map: (&PathwayIds, &str, &[&str]),
) {
    let others: Vec<&str> = cast
        .names()
        .into_iter()
        .filter(|n| !stalled.contains(n))
        .collect();
    let before = findings.0.len();
    findings
        .expect(app, cast, "journeys", json!({ "stalled": true }), stalled)
        .await;
    findings
        .expect(app, cast, "journeys", json!({ "stalled": false }), &others)
        .await;
    for name in cast.names() {
        let journey = app
            .gql(
                "query($id: ID!) { journey(id: $id) { stalled } }",
                json!({ "id": cast.id(name) }),
            )
            .await;
        let is_stalled = journey.data()["journey"]["stalled"] == true;
        if is_stalled != stalled.contains(&name) {
            findings.add(format!("journey {name} has stalled: {is_stalled}"));
        }
    }
    let (pathway, stage, in_stage) = map;
    let figures = app
        .gql(
            "query($p: ID!) { journeyMap(pathwayId: $p) { stages { stage { key } stalledCount } } }",
            json!({ "p": pathway.id }),
        )
        .await;
    let count = figures.data()["journeyMap"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"]["key"] == stage)
        .map(|s| s["stalledCount"].clone())
        .unwrap_or(Value::Null);
    let wanted = in_stage.iter().filter(|n| stalled.contains(n)).count();
    if count != json!(wanted) {
        findings.add(format!(
            "journeyMap stalledCount of {stage} is {count}; expected {wanted}"
        ));
    }
    for finding in &mut findings.0[before..] {
        *finding = format!("{step}: {finding}");
    }
}

async fn changing_a_stage_target_restalls_the_journeys_waiting_there(app: TestApp) {
    let p = app.pathway().await;
    let q = app.pathway_as(&app.token, "Hormones").await;
    let mut cast = Cast::default();
    // Waiting in P's inquiry (24 h target) for 50, 30 and 10 hours.
    for (name, hours) in [("50h", 50), ("30h", 30), ("10h", 10)] {
        let patient = app.patient(name).await;
        cast.add(name, &start(&app, &patient, &p.id, Some(hours), None).await);
    }
    // 30 h in consultation (72 h): another stage, not touched by inquiry's target.
    let patient = app.patient("Consulting").await;
    let id = start(&app, &patient, &p.id, Some(40), None).await;
    move_to(&app, &id, &p.consultation, Some(30)).await;
    cast.add("consulting", &id);
    // 35 h in treatment, which has no target.
    let patient = app.patient("Treating").await;
    let id = start(&app, &patient, &p.id, Some(40), None).await;
    move_to(&app, &id, &p.treatment, Some(35)).await;
    cast.add("treating", &id);
    // Completed 30 h into inquiry: ended journeys never stall.
    let patient = app.patient("Ended").await;
    let id = start(&app, &patient, &p.id, Some(30), None).await;
    complete(&app, &id).await;
    cast.add("ended", &id);
    // 30 h in Q's inquiry: the same key in another pathway, another stage.
    let patient = app.patient("Elsewhere").await;
    cast.add(
        "elsewhere",
        &start(&app, &patient, &q.id, Some(30), None).await,
    );

    let inquiry: &[&str] = &["50h", "30h", "10h"];
    let map = (&p, "inquiry", inquiry);
    let set_target = |hours: Value| {
        let app = &app;
        let stage = p.inquiry.clone();
        async move {
            let updated = app
                .gql(
                    UPDATE_STAGE,
                    json!({ "input": { "stageId": stage, "targetHours": hours } }),
                )
                .await;
            assert_eq!(updated.data()["updateStage"]["stage"]["targetHours"], hours);
        }
    };
    let mut findings = Findings::default();
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "at 24 h",
        &["50h", "30h", "elsewhere"],
        map,
    )
    .await;

    // Raising the target un-stalls the 30 h journey…
    set_target(json!(40)).await;
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "raised to 40 h",
        &["50h", "elsewhere"],
        map,
    )
    .await;
    // …and the 50 h one.
    set_target(json!(100)).await;
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "raised to 100 h",
        &["elsewhere"],
        map,
    )
    .await;
    // Lowering it stalls all three, the 10 h one too.
    set_target(json!(5)).await;
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "lowered to 5 h",
        &["50h", "30h", "10h", "elsewhere"],
        map,
    )
    .await;

    // The new target is exact: stallsAt is entry plus target hours.
    let journey = app
        .gql(
            "query($id: ID!) { journey(id: $id) { stageEnteredAt stallsAt } }",
            json!({ "id": cast.id("30h") }),
        )
        .await;
    let journey = &journey.data()["journey"];
    if journey["stallsAt"].is_null()
        || parse_time(&journey["stallsAt"])
            != parse_time(&journey["stageEnteredAt"]) + Duration::hours(5)
    {
        findings.add(format!(
            "lowered to 5 h: journey 30h is {journey}; expected stallsAt 5 h after stageEnteredAt"
        ));
    }

    // A journey entering the stage now takes the new target.
    let patient = app.patient("Late").await;
    cast.add("6h", &start(&app, &patient, &p.id, Some(6), None).await);
    let inquiry: &[&str] = &["50h", "30h", "10h", "6h"];
    let map = (&p, "inquiry", inquiry);
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "entered after the change",
        &["50h", "30h", "10h", "6h", "elsewhere"],
        map,
    )
    .await;

    // Without a target nothing in the stage stalls, and every journey there
    // is "not stalled".
    set_target(Value::Null).await;
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "target removed",
        &["elsewhere"],
        map,
    )
    .await;
    // Back to 24 h: as at the start, plus the 6 h journey (not stalled).
    set_target(json!(24)).await;
    expect_stalled(
        &mut findings,
        &app,
        &cast,
        "back to 24 h",
        &["50h", "30h", "elsewhere"],
        map,
    )
    .await;
    findings.finish("changing_a_stage_target_restalls_the_journeys_waiting_there");
}

// ---------------------------------------------------------------- follow-ups

/// The follow-ups of a journey: (stage key, id, dueAt).
async fn follow_ups_of(app: &TestApp, journey: &str) -> Vec<(String, String, Value)> {
    let found = app
        .gql(
            "query($id: ID!) { journey(id: $id) { followUps { id dueAt stage { key } } } }",
            json!({ "id": journey }),
        )
        .await;
    found.data()["journey"]["followUps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["stage"]["key"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
                f["dueAt"].clone(),
            )
        })
        .collect()
}

async fn follow_ups_filter_by_status_overdue_due_time_and_assignee(app: TestApp) {
    let p = app.pathway().await;
    let alex = staff_member(&app, Role::Coordinator).await;
    let blair = staff_member(&app, Role::Practitioner).await;
    let nobody = staff_member(&app, Role::Practitioner).await;
    let mut cast = Cast::default();

    // Started 5 h ago: the 2 h call-back is 3 h late (Alex's).
    let late = start(
        &app,
        &app.patient("Late").await,
        &p.id,
        Some(5),
        Some(&alex),
    )
    .await;
    cast.add("late", &follow_ups_of(&app, &late).await[0].1);
    // Started now: due in 2 h (Blair's).
    let soon = start(&app, &app.patient("Soon").await, &p.id, None, Some(&blair)).await;
    cast.add("soon", &follow_ups_of(&app, &soon).await[0].1);
    // Started 10 h ago and done by hand: past due, but not overdue.
    let done = start(&app, &app.patient("Done").await, &p.id, Some(10), None).await;
    let (_, done_id, done_due) = follow_ups_of(&app, &done).await.remove(0);
    let completed = app
        .gql(
            COMPLETE_FOLLOW_UP,
            json!({ "input": { "followUpId": done_id } }),
        )
        .await;
    assert_eq!(
        completed.data()["completeFollowUp"]["followUp"]["status"],
        "DONE"
    );
    cast.add("done", &done_id);
    // Started 4 h ago and dropped: the call-back is cancelled.
    let dropped = start(&app, &app.patient("Dropped").await, &p.id, Some(4), None).await;
    cast.add("dropped", &follow_ups_of(&app, &dropped).await[0].1);
    drop_journey(&app, &dropped).await;
    // Started now (Alex's) and moved on: the call-back is cancelled on exit,
    // the 48 h consultation check-in is open.
    let moved = start(&app, &app.patient("Moved").await, &p.id, None, Some(&alex)).await;
    move_to(&app, &moved, &p.consultation, None).await;
    for (stage, id, _) in follow_ups_of(&app, &moved).await {
        cast.add(&format!("moved-{stage}"), &id);
    }

    let now = Utc::now();
    let in_hours = |hours: i64| at(now + Duration::hours(hours));
    let done_due = parse_time(&done_due);
    let mut findings = Findings::default();
    let all = vec![
        "late",
        "soon",
        "done",
        "dropped",
        "moved-inquiry",
        "moved-consultation",
    ];
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), all.clone()),
        (
            json!({ "status": "OPEN" }),
            vec!["late", "soon", "moved-consultation"],
        ),
        (json!({ "status": "DONE" }), vec!["done"]),
        (
            json!({ "status": "CANCELLED" }),
            vec!["dropped", "moved-inquiry"],
        ),
        (json!({ "overdue": true }), vec!["late"]),
        (
            json!({ "overdue": false }),
            vec![
                "soon",
                "done",
                "dropped",
                "moved-inquiry",
                "moved-consultation",
            ],
        ),
        (json!({ "overdue": true, "status": "DONE" }), vec![]),
        (
            json!({ "overdue": false, "status": "OPEN" }),
            vec!["soon", "moved-consultation"],
        ),
        // Due strictly before the given time, whatever the status.
        (
            json!({ "dueBefore": in_hours(0) }),
            vec!["late", "done", "dropped"],
        ),
        (
            json!({ "dueBefore": in_hours(24) }),
            vec!["late", "soon", "done", "dropped", "moved-inquiry"],
        ),
        (json!({ "dueBefore": in_hours(72) }), all.clone()),
        (json!({ "dueBefore": in_hours(-24) }), vec![]),
        (
            json!({ "dueBefore": in_hours(0), "status": "OPEN" }),
            vec!["late"],
        ),
        (
            json!({ "dueBefore": in_hours(0), "overdue": false }),
            vec!["done", "dropped"],
        ),
        (json!({ "dueBefore": at(done_due) }), vec![]),
        (
            json!({ "dueBefore": at(done_due + Duration::seconds(1)) }),
            vec!["done"],
        ),
        // The same instant written with another offset.
        (
            json!({ "dueBefore": (done_due + Duration::seconds(1))
                .with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap())
                .to_rfc3339() }),
            vec!["done"],
        ),
        // Follow-ups take the journey owner as assignee.
        (
            json!({ "assigneeId": alex }),
            vec!["late", "moved-inquiry", "moved-consultation"],
        ),
        (json!({ "assigneeId": blair }), vec!["soon"]),
        (json!({ "assigneeId": nobody }), vec![]),
        (
            json!({ "assigneeId": alex, "status": "OPEN" }),
            vec!["late", "moved-consultation"],
        ),
        (json!({ "assigneeId": alex, "overdue": true }), vec!["late"]),
        (json!({ "assigneeId": blair, "overdue": true }), vec![]),
        (
            json!({ "assigneeId": alex, "dueBefore": in_hours(24) }),
            vec!["late", "moved-inquiry"],
        ),
    ];
    for (filter, expected) in cases {
        findings
            .expect(&app, &cast, "followUps", filter, &expected)
            .await;
    }

    // What the filters say matches each follow-up's own fields, and the list
    // is soonest due first.
    let listed = app
        .gql(
            "{ followUps(first: 100) { nodes { id status overdue dueAt assignee { id } } } }",
            json!({}),
        )
        .await;
    let nodes = listed.data()["followUps"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let expected_fields = [
        ("late", "OPEN", true, Some(&alex)),
        ("soon", "OPEN", false, Some(&blair)),
        ("done", "DONE", false, None),
        ("dropped", "CANCELLED", false, None),
        ("moved-inquiry", "CANCELLED", false, Some(&alex)),
        ("moved-consultation", "OPEN", false, Some(&alex)),
    ];
    for (name, status, overdue, assignee) in expected_fields {
        let node = nodes.iter().find(|n| n["id"] == cast.id(name));
        let ok = node.is_some_and(|n| {
            n["status"] == status
                && n["overdue"] == overdue
                && n["assignee"]["id"].as_str() == assignee.map(String::as_str)
        });
        if !ok {
            findings.add(format!(
                "follow-up {name} is {node:?}; expected {status}, overdue {overdue}, assignee {assignee:?}"
            ));
        }
    }
    let due: Vec<DateTime<Utc>> = nodes.iter().map(|n| parse_time(&n["dueAt"])).collect();
    if !due.is_sorted() {
        findings.add(format!("followUps are not soonest due first: {due:?}"));
    }

    // Paging a filtered work list shows every match once, in order.
    let filter = json!({ "overdue": false });
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let page = app
            .gql(
                "query($f: FollowUpFilter, $after: String) { followUps(first: 2, after: $after, filter: $f) {
                    totalCount pageInfo { hasNextPage endCursor } nodes { id } } }",
                json!({ "f": filter, "after": after }),
            )
            .await;
        let page = &page.data()["followUps"];
        assert_eq!(page["totalCount"], 5, "every page counts all matches");
        seen.extend(
            page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| cast.name(n["id"].as_str().unwrap())),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let in_order: Vec<String> = nodes
        .iter()
        .map(|n| cast.name(n["id"].as_str().unwrap()))
        .filter(|n| n != "late")
        .collect();
    if seen != in_order {
        findings.add(format!(
            "followUps(filter: {{overdue: false}}) paged two at a time gave {seen:?}; expected {in_order:?}"
        ));
    }
    findings.finish("follow_ups_filter_by_status_overdue_due_time_and_assignee");
}

// ---------------------------------------------------------------- bad input

/// Bad filter input not already covered by validation.rs (malformed
/// `journeys(filter: {patientId})` and unknown `status` values are).
async fn bad_filter_input_names_the_field(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ana").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let mut findings = Findings::default();
    let long = "a".repeat(101);
    let cases: Vec<(String, Value, &str)> = vec![
        // Ids of the wrong kind, or no id at all.
        (
            r#"{ patients(filter: { pathwayId: "nope" }) { totalCount } }"#.into(),
            json!({}),
            "filter.pathwayId",
        ),
        (
            "query($f: PatientFilter) { patients(filter: $f) { totalCount } }".into(),
            json!({ "f": { "stageId": pathway.id } }),
            "filter.stageId",
        ),
        (
            "query($f: JourneyFilter) { journeys(filter: $f) { totalCount } }".into(),
            json!({ "f": { "pathwayId": pathway.inquiry } }),
            "filter.pathwayId",
        ),
        (
            r#"{ journeys(filter: { stageId: "stg_zz" }) { totalCount } }"#.into(),
            json!({}),
            "filter.stageId",
        ),
        (
            "query($f: JourneyFilter) { journeys(filter: $f) { totalCount } }".into(),
            json!({ "f": { "ownerId": patient } }),
            "filter.ownerId",
        ),
        (
            "query($f: FollowUpFilter) { followUps(filter: $f) { totalCount } }".into(),
            json!({ "f": { "assigneeId": patient } }),
            "filter.assigneeId",
        ),
        (
            r#"{ followUps(filter: { journeyId: "nope" }) { totalCount } }"#.into(),
            json!({}),
            "filter.journeyId",
        ),
        (
            "query($f: FollowUpFilter) { followUps(filter: $f) { totalCount } }".into(),
            json!({ "f": { "patientId": journey } }),
            "filter.patientId",
        ),
        // Search text: at most 100 characters, no control characters.
        (
            "query($f: PatientFilter) { patients(filter: $f) { totalCount } }".into(),
            json!({ "f": { "search": long } }),
            "filter.search",
        ),
        (
            "query($f: PatientFilter) { patients(filter: $f) { totalCount } }".into(),
            json!({ "f": { "search": "ana\u{7}" } }),
            "filter.search",
        ),
        // A tag that no patient could carry.
        (
            "query($f: PatientFilter) { patients(filter: $f) { totalCount } }".into(),
            json!({ "f": { "tag": "not ok" } }),
            "filter.tag",
        ),
        (
            "query($f: PatientFilter) { patients(filter: $f) { totalCount } }".into(),
            json!({ "f": { "tag": "t".repeat(41) } }),
            "filter.tag",
        ),
        // Values of the wrong type.
        (
            r#"{ followUps(filter: { dueBefore: "tomorrow" }) { totalCount } }"#.into(),
            json!({}),
            "filter.dueBefore",
        ),
        (
            r#"{ followUps(filter: { dueBefore: "2026-02-30T10:00:00Z" }) { totalCount } }"#.into(),
            json!({}),
            "filter.dueBefore",
        ),
        (
            r#"{ journeys(filter: { stalled: "yes" }) { totalCount } }"#.into(),
            json!({}),
            "filter.stalled",
        ),
        (
            "{ followUps(filter: { status: LATE }) { totalCount } }".into(),
            json!({}),
            "filter.status",
        ),
        (
            "{ patients(filter: { includeArchived: 1 }) { totalCount } }".into(),
            json!({}),
            "filter.includeArchived",
        ),
    ];
    for (query, variables, field) in cases {
        let response = app.gql(&query, variables.clone()).await;
        let list_data = ["patients", "journeys", "followUps"]
            .iter()
            .any(|list| !response.body["data"][list].is_null());
        if response.code().as_deref() != Some("BAD_USER_INPUT")
            || response.field().as_deref() != Some(field)
            || list_data
        {
            findings.add(format!(
                "{query} with {variables} → {}; expected BAD_USER_INPUT on {field} and no data",
                response.body
            ));
        }
    }

    // At the limits, the same filters are fine.
    let ok = app
        .gql(
            "query($a: PatientFilter, $b: PatientFilter) { a: patients(filter: $a) { totalCount } b: patients(filter: $b) { totalCount } }",
            json!({ "a": { "search": "a".repeat(100) }, "b": { "tag": "t".repeat(40) } }),
        )
        .await;
    if !ok.errors().is_empty()
        || ok.body["data"]["a"]["totalCount"] != 0
        || ok.body["data"]["b"]["totalCount"] != 0
    {
        findings.add(format!(
            "a 100-character search and a 40-character tag → {}; expected empty lists",
            ok.body
        ));
    }
    findings.finish("bad_filter_input_names_the_field");
}

on_both_backends!(
    patient_search_matches_names_email_and_phone_words_together,
    search_wildcards_are_matched_literally,
    patients_filter_by_pathway_stage_and_tag_and_hide_the_archived,
    a_filtered_patient_list_pages_through_every_match_once,
    journeys_filter_by_pathway_stage_status_and_stall,
    changing_a_stage_target_restalls_the_journeys_waiting_there,
    follow_ups_filter_by_status_overdue_due_time_and_assignee,
    bad_filter_input_names_the_field,
);
