//! Outreach: each follow-up planned for its patient — a consented channel,
//! a send time inside their quiet hours and the clinic's limits, an
//! explanation and a draft — consent as history (STOP replies included), the
//! coordinator's queue, `follow_up.due` exactly once, and whether outreach
//! works, on the journey map.

use chrono::{DateTime, SecondsFormat, Utc};
use journeymap::domain::outreach::sweep;
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::{Value, json};

fn ago(hours: i64) -> String {
    stamp(Utc::now() - chrono::Duration::hours(hours))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Quiet hours of one minute, twelve hours from now: whatever the time of
/// day the suite runs, what is due now may be sent now.
async fn quiet_far_from_now(app: &TestApp) {
    let start = Utc::now() + chrono::Duration::hours(12);
    let end = start + chrono::Duration::minutes(1);
    app.gql(
        "mutation($start: String!, $end: String!) { setOutreachPolicy(input: { quietHours: { start: $start, end: $end } }) { policy { minHoursBetweenContacts } } }",
        json!({ "start": start.format("%H:%M").to_string(), "end": end.format("%H:%M").to_string() }),
    )
    .await
    .data();
}

const FOLLOW_UP: &str = "id kind purpose status channel dueAt sendAt sendable explanation message priority blockedReason";

/// A patient with the given contact details and legacy consent booleans.
async fn patient(app: &TestApp, name: &str, phone: bool, consent: Value) -> String {
    let mut input = json!({
        "givenName": name,
        "familyName": "Test",
        "email": format!("{}@example.com", name.to_lowercase()),
        "consent": consent,
    });
    if phone {
        input["phone"] = json!("+14155550123");
    }
    app.gql(
        "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
        json!({ "input": input }),
    )
    .await
    .data()["createPatient"]["patient"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A pathway whose first stage texts after `delay_hours`, with a 24 h target.
async fn sms_pathway(app: &TestApp, name: &str, delay_hours: i32) -> (String, String, String) {
    let created = app
        .gql(
            r#"mutation($name: String!, $delay: Int!) { createPathway(input: {
                name: $name,
                stages: [
                  { key: "inquiry", name: "New inquiry", category: INQUIRY, targetHours: 24,
                    followUpRules: [{ delayHours: $delay, channel: SMS, note: "Text back" }] },
                  { key: "treatment", name: "Treatment", category: TREATMENT },
                  { key: "done", name: "Done", category: DISCHARGED, terminal: true }
                ] }) { pathway { id stages { id key } } } }"#,
            json!({ "name": name, "delay": delay_hours }),
        )
        .await;
    let pathway = &created.data()["createPathway"]["pathway"];
    let stage = |key: &str| {
        pathway["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (
        pathway["id"].as_str().unwrap().to_string(),
        stage("inquiry"),
        stage("treatment"),
    )
}

async fn start(app: &TestApp, patient: &str, pathway: &str, hours_ago: i64) -> String {
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway, "occurredAt": ago(hours_ago) } }),
    )
    .await
    .data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn follow_ups_of(app: &TestApp, patient: &str) -> Vec<Value> {
    app.gql(
        &format!(
            "query($p: ID!) {{ followUps(first: 100, filter: {{ patientId: $p }}) {{ edges {{ node {{ {FOLLOW_UP} }} }} }} }}"
        ),
        json!({ "p": patient }),
    )
    .await
    .data()["followUps"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    app.gql(
        "query($t: [String!]) { events(first: 100, types: $t) { edges { node { type data } } } }",
        json!({ "t": [kind] }),
    )
    .await
    .data()["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["data"].clone())
        .collect()
}

async fn feedback(app: &TestApp, patient: &str, journey: &str, score: i32) {
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": score } }),
    )
    .await
    .data();
}

/// Every kind of reason is planned, explained in plain words, with a draft,
/// and the queue lists what may be sent now, most urgent first.
async fn the_queue_shows_every_kind_explained_with_a_draft(app: TestApp) {
    quiet_far_from_now(&app).await;
    let everything = json!({ "sms": true, "email": true, "marketing": true });
    let (pathway, inquiry, treatment) = sms_pathway(&app, "Injectables", 0).await;
    // Rebooking 1 day after treatment; a quiet journey there is won back after 2 days.
    app.gql(
        "mutation($input: SetStageCadenceInput!) { setStageCadence(input: $input) { stage { rebookAfterDays winBackAfterDays } } }",
        json!({ "input": { "stageId": treatment, "rebookAfterDays": 1, "winBackAfterDays": 2 } }),
    )
    .await
    .data();

    // Stage rule, at once; a stall: entered 30 h ago with a 24 h target, no contact.
    let ana = patient(&app, "Ana", true, everything.clone()).await;
    start(&app, &ana, &pathway, 30).await;
    // A detractor and a promoter.
    let ben = patient(&app, "Ben", true, everything.clone()).await;
    let ben_journey = start(&app, &ben, &pathway, 1).await;
    feedback(&app, &ben, &ben_journey, 3).await;
    let cy = patient(&app, "Cy", true, everything.clone()).await;
    let cy_journey = start(&app, &cy, &pathway, 1).await;
    feedback(&app, &cy, &cy_journey, 10).await;
    // In treatment since 3 days: rebooking due, and quiet for 2 days.
    let dee = patient(&app, "Dee", true, everything.clone()).await;
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": dee, "pathwayId": pathway, "stageId": treatment, "occurredAt": ago(72) } }),
    )
    .await
    .data();
    // By hand.
    let eve = patient(&app, "Eve", true, everything.clone()).await;
    start(&app, &eve, &pathway, 1).await;
    app.gql(
        &format!("mutation($input: ScheduleFollowUpInput!) {{ scheduleFollowUp(input: $input) {{ followUp {{ {FOLLOW_UP} }} }} }}"),
        json!({ "input": { "patientId": eve, "dueAt": ago(1), "channel": "EMAIL", "note": "Send the price list" } }),
    )
    .await
    .data();

    let planned = sweep::plan_time_based(&app.store, 500).await.unwrap();
    assert_eq!(planned, 3, "a stall, a rebooking and a win-back");
    // Planned once: sweeping again plans nothing new.
    assert_eq!(sweep::plan_time_based(&app.store, 500).await.unwrap(), 0);

    let all = app
        .gql(
            &format!("{{ followUps(first: 100, filter: {{ status: OPEN }}) {{ edges {{ node {{ {FOLLOW_UP} stage {{ id }} }} }} }} }}"),
            json!({}),
        )
        .await;
    let all: Vec<Value> = all.data()["followUps"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let kinds: std::collections::BTreeSet<&str> =
        all.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "MANUAL",
            "REBOOKING_DUE",
            "REVIEW_REQUEST",
            "SERVICE_RECOVERY",
            "STAGE_RULE",
            "STALLED_NUDGE",
            "WIN_BACK"
        ]
        .into_iter()
        .collect(),
        "{all:#?}"
    );
    for follow_up in &all {
        let explanation = follow_up["explanation"].as_str().unwrap();
        assert!(explanation.len() > 20, "{follow_up:#}");
        assert!(
            !explanation.contains("price list"),
            "no free text from notes: {explanation}"
        );
        let message = follow_up["message"].as_str().unwrap();
        assert!(!message.contains("{{"), "{message}");
        if follow_up["channel"] == "SMS" {
            assert!(message.chars().count() <= 320, "{message}");
            assert_eq!(
                message.ends_with("Reply STOP to opt out"),
                follow_up["purpose"] == "MARKETING",
                "{follow_up:#}"
            );
        }
        let expected_purpose = match follow_up["kind"].as_str().unwrap() {
            "REBOOKING_DUE" | "REVIEW_REQUEST" | "WIN_BACK" => "MARKETING",
            _ => "CARE",
        };
        assert_eq!(follow_up["purpose"], expected_purpose, "{follow_up:#}");
    }
    let stalled = all.iter().find(|f| f["kind"] == "STALLED_NUDGE").unwrap();
    assert!(
        stalled["explanation"]
            .as_str()
            .unwrap()
            .starts_with("Stalled 6 hours past the 1-day New inquiry target; no contact since"),
        "{stalled:#}"
    );
    assert_eq!(stalled["stage"]["id"], inquiry);
    let recovery = all
        .iter()
        .find(|f| f["kind"] == "SERVICE_RECOVERY")
        .unwrap();
    assert_eq!(recovery["priority"], 1);
    assert!(
        recovery["explanation"]
            .as_str()
            .unwrap()
            .starts_with("Gave NPS 3 on")
    );

    // The queue: sendable now, care first (the recovery call leads), then
    // marketing, each by how long it waited; pages follow on.
    let queue = app
        .gql(
            &format!("{{ followUps(first: 100, filter: {{ sendable: true }}) {{ totalCount edges {{ cursor node {{ {FOLLOW_UP} }} }} }} }}"),
            json!({}),
        )
        .await;
    let edges = queue.data()["followUps"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!edges.is_empty());
    let order: Vec<(i64, DateTime<Utc>)> = edges
        .iter()
        .map(|e| {
            (
                e["node"]["priority"].as_i64().unwrap(),
                at(e["node"]["sendAt"].as_str().unwrap()),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "most urgent first");
    assert!(edges.iter().all(|e| e["node"]["sendable"] == true));
    let first = app
        .gql(
            "{ followUps(first: 1, filter: { sendable: true }) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    let cursor = first.data()["followUps"]["edges"][0]["cursor"].clone();
    let next = app
        .gql(
            "query($after: String) { followUps(first: 1, after: $after, filter: { sendable: true }) { edges { node { id } } } }",
            json!({ "after": cursor }),
        )
        .await;
    assert_eq!(
        next.data()["followUps"]["edges"][0]["node"]["id"],
        edges[1]["node"]["id"]
    );
    // One kind.
    let reviews = app
        .gql(
            "{ followUps(first: 100, filter: { kind: REVIEW_REQUEST }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(reviews.data()["followUps"]["totalCount"], 1);
    // The patient's next thing to do.
    let next = app
        .gql(
            "query($id: ID!) { patient(id: $id) { nextFollowUp { kind } } }",
            json!({ "id": ben }),
        )
        .await;
    assert_eq!(
        next.data()["patient"]["nextFollowUp"]["kind"],
        "SERVICE_RECOVERY"
    );
}

/// Without SMS consent a patient is never planned on SMS; without marketing
/// consent, marketing is blocked, in plain words, visible and counted.
async fn without_consent_a_channel_is_never_used(app: TestApp) {
    let (pathway, _, _) = sms_pathway(&app, "Skin", 0).await;
    let ana = patient(
        &app,
        "Ana",
        true,
        json!({ "sms": false, "email": true, "marketing": false }),
    )
    .await;
    let journey = start(&app, &ana, &pathway, 0).await;
    let planned = follow_ups_of(&app, &ana).await;
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0]["status"], "OPEN");
    assert_ne!(planned[0]["channel"], "SMS", "{:#}", planned[0]);
    feedback(&app, &ana, &journey, 10).await;
    let review = follow_ups_of(&app, &ana)
        .await
        .into_iter()
        .find(|f| f["kind"] == "REVIEW_REQUEST")
        .unwrap();
    assert_eq!(review["status"], "BLOCKED", "{review:#}");
    assert_eq!(review["sendable"], false);
    let why = review["blockedReason"].as_str().unwrap();
    assert!(why.contains("no SMS consent for marketing"), "{why}");
    assert!(why.contains("no email consent for marketing"), "{why}");
    let blocked = app
        .gql(
            "{ followUps(first: 10, filter: { status: BLOCKED }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(blocked.data()["followUps"]["totalCount"], 1);
    // The legacy booleans read as before, and the new view says the same.
    let contact = app
        .gql(
            "query($id: ID!) { patient(id: $id) { consent { sms email marketing } contact { timezone ownTimezone quietHours { start end } consents { channel purpose granted source } } } }",
            json!({ "id": ana }),
        )
        .await;
    let patient = &contact.data()["patient"];
    assert_eq!(
        patient["consent"],
        json!({ "sms": false, "email": true, "marketing": false })
    );
    assert_eq!(patient["contact"]["timezone"], "America/New_York");
    assert_eq!(patient["contact"]["ownTimezone"], false);
    assert_eq!(
        patient["contact"]["quietHours"],
        json!({ "start": "21:00", "end": "08:00" })
    );
    let consent = |channel: &str, purpose: &str| {
        patient["contact"]["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == channel && c["purpose"] == purpose)
            .unwrap()
            .clone()
    };
    assert_eq!(consent("SMS", "CARE")["granted"], false);
    assert_eq!(consent("EMAIL", "CARE")["granted"], true);
    assert_eq!(consent("PHONE", "CARE")["source"], "phone number given");
    assert_eq!(consent("EMAIL", "MARKETING")["granted"], false);
}

/// A STOP reply withdraws SMS consent at once: what was planned on SMS is
/// cancelled and planned again elsewhere (or blocked), and START gives it back.
async fn a_stop_reply_blocks_sms_at_once(app: TestApp) {
    let (pathway, _, _) = sms_pathway(&app, "Peels", 3).await;
    let ana = patient(
        &app,
        "Ana",
        true,
        json!({ "sms": true, "email": false, "marketing": true }),
    )
    .await;
    let journey = start(&app, &ana, &pathway, 0).await;
    let planned = follow_ups_of(&app, &ana).await;
    assert_eq!(planned[0]["channel"], "SMS");
    let reply = app
        .gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": ana, "journeyId": journey, "channel": "SMS", "direction": "INBOUND", "kind": "reply", "summary": "  Stop " } }),
        )
        .await;
    let touchpoint = reply.data()["logTouchpoint"]["touchpoint"]["id"].clone();
    let after = follow_ups_of(&app, &ana).await;
    let old = after.iter().find(|f| f["id"] == planned[0]["id"]).unwrap();
    assert_eq!(old["status"], "CANCELLED");
    let new: Vec<&Value> = after
        .iter()
        .filter(|f| f["status"] == "OPEN" || f["status"] == "BLOCKED")
        .collect();
    assert_eq!(new.len(), 1, "{after:#?}");
    assert_ne!(new[0]["channel"], "SMS");
    assert_eq!(new[0]["explanation"], planned[0]["explanation"]);
    let cancelled = events(&app, "follow_up.cancelled").await;
    assert!(
        cancelled
            .iter()
            .any(|e| e["followUpId"] == planned[0]["id"] && e["replacedBy"] == new[0]["id"]),
        "{cancelled:#?}"
    );
    let changed = events(&app, "patient.consent_changed").await;
    let stops: Vec<&Value> = changed
        .iter()
        .filter(|e| e["source"] == "STOP reply")
        .collect();
    assert_eq!(
        stops.len(),
        2,
        "SMS for care and for marketing: {changed:#?}"
    );
    assert!(
        stops
            .iter()
            .all(|e| e["granted"] == false && e["touchpointId"] == touchpoint)
    );
    let history = app
        .gql(
            "query($id: ID!) { patient(id: $id) { consentHistory { channel purpose granted source touchpointId } contact { consents { channel purpose granted } } } }",
            json!({ "id": ana }),
        )
        .await;
    let history = history.data()["patient"].clone();
    assert!(
        history["consentHistory"].as_array().unwrap().len() >= 4,
        "{history:#}"
    );
    assert!(
        history["contact"]["consents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["channel"] == "SMS")
            .all(|c| c["granted"] == false)
    );
    // START gives back what STOP took.
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": ana, "channel": "SMS", "direction": "INBOUND", "kind": "reply", "summary": "START" } }),
    )
    .await
    .data();
    let restored = app
        .gql(
            "query($id: ID!) { patient(id: $id) { consent { sms marketing } } }",
            json!({ "id": ana }),
        )
        .await;
    assert_eq!(
        restored.data()["patient"]["consent"],
        json!({ "sms": true, "marketing": true })
    );
    // Any other text is just a reply.
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": ana, "channel": "SMS", "direction": "INBOUND", "kind": "reply", "summary": "please stop by tomorrow" } }),
    )
    .await
    .data();
    assert_eq!(
        events(&app, "patient.consent_changed").await.len(),
        changed.len() + 2
    );
}

/// A follow-up due at 23:00 in the patient's own zone is sent at 08:00 there,
/// and the clinic's frequency limits keep contacts apart.
async fn quiet_hours_and_frequency_limits_hold(app: TestApp) {
    let (pathway, _, _) = sms_pathway(&app, "Laser", 72).await;
    let ana = patient(
        &app,
        "Ana",
        true,
        json!({ "sms": true, "email": true, "marketing": true }),
    )
    .await;
    start(&app, &ana, &pathway, 0).await;
    let set = app
        .gql(
            "mutation($input: SetContactPreferencesInput!) { setContactPreferences(input: $input) { patient { contact { timezone ownTimezone } } } }",
            json!({ "input": { "patientId": ana, "timezone": "Asia/Tokyo" } }),
        )
        .await;
    assert_eq!(
        set.data()["setContactPreferences"]["patient"]["contact"]["timezone"],
        "Asia/Tokyo"
    );
    // 23:00 in Tokyo (UTC+9, no DST) on 15 January 2027.
    let due = "2027-01-15T14:00:00Z";
    let manual = app
        .gql(
            &format!("mutation($input: ScheduleFollowUpInput!) {{ scheduleFollowUp(input: $input) {{ followUp {{ {FOLLOW_UP} }} }} }}"),
            json!({ "input": { "patientId": ana, "dueAt": due, "channel": "SMS" } }),
        )
        .await;
    let manual = manual.data()["scheduleFollowUp"]["followUp"].clone();
    assert_eq!(manual["kind"], "MANUAL");
    assert_eq!(
        at(manual["dueAt"].as_str().unwrap()),
        at(due),
        "dueAt stays the clinic's intent"
    );
    // 08:00 in Tokyo on the 16th is 23:00 UTC on the 15th.
    assert_eq!(
        at(manual["sendAt"].as_str().unwrap()),
        at("2027-01-15T23:00:00Z"),
        "{manual:#}"
    );
    // A second contact that day waits 24 hours after the first.
    let second = app
        .gql(
            &format!("mutation($input: ScheduleFollowUpInput!) {{ scheduleFollowUp(input: $input) {{ followUp {{ {FOLLOW_UP} }} }} }}"),
            json!({ "input": { "patientId": ana, "dueAt": "2027-01-16T01:00:00Z", "channel": "SMS" } }),
        )
        .await;
    let second = second.data()["scheduleFollowUp"]["followUp"].clone();
    assert_eq!(
        at(second["sendAt"].as_str().unwrap()),
        at("2027-01-16T23:00:00Z"),
        "{second:#}"
    );
    // The clinic's own limit: 48 hours.
    let policy = app
        .gql(
            "mutation { setOutreachPolicy(input: { minHoursBetweenContacts: 48, quietHours: { start: \"20:00\", end: \"09:00\" } }) { policy { quietHours { start end } maxMarketingPerWeek minHoursBetweenContacts } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        policy.data()["setOutreachPolicy"]["policy"],
        json!({ "quietHours": { "start": "20:00", "end": "09:00" }, "maxMarketingPerWeek": 1, "minHoursBetweenContacts": 48 })
    );
    let read = app
        .gql(
            "{ viewer { clinic { outreachPolicy { minHoursBetweenContacts } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        read.data()["viewer"]["clinic"]["outreachPolicy"]["minHoursBetweenContacts"],
        48
    );
    let third = app
        .gql(
            &format!("mutation($input: ScheduleFollowUpInput!) {{ scheduleFollowUp(input: $input) {{ followUp {{ {FOLLOW_UP} }} }} }}"),
            json!({ "input": { "patientId": ana, "dueAt": "2027-01-17T01:00:00Z", "channel": "SMS" } }),
        )
        .await;
    let third = third.data()["scheduleFollowUp"]["followUp"].clone();
    // 48 h after the second (16th 23:00 UTC) is the 18th 23:00 UTC = 08:00 in
    // Tokyo, inside the new quiet hours: 09:00 Tokyo, 00:00 UTC on the 19th.
    assert_eq!(
        at(third["sendAt"].as_str().unwrap()),
        at("2027-01-19T00:00:00Z"),
        "{third:#}"
    );

    // One marketing message a week: two promoters' review requests.
    let (other, _, _) = sms_pathway(&app, "Peel", 1000).await;
    let ben = patient(
        &app,
        "Ben",
        true,
        json!({ "sms": true, "email": true, "marketing": true }),
    )
    .await;
    let first_journey = start(&app, &ben, &pathway, 0).await;
    let second_journey = start(&app, &ben, &other, 0).await;
    feedback(&app, &ben, &first_journey, 10).await;
    feedback(&app, &ben, &second_journey, 9).await;
    let reviews: Vec<DateTime<Utc>> = follow_ups_of(&app, &ben)
        .await
        .into_iter()
        .filter(|f| f["kind"] == "REVIEW_REQUEST")
        .map(|f| at(f["sendAt"].as_str().unwrap()))
        .collect();
    assert_eq!(reviews.len(), 2);
    assert!(
        (reviews[1] - reviews[0]).abs() >= chrono::Duration::days(7),
        "{reviews:?}"
    );
}

/// `follow_up.due` is announced once per follow-up when its send time has
/// come, also with two replicas sweeping at the same time.
async fn follow_up_due_fires_once_with_two_replicas(app: TestApp) {
    quiet_far_from_now(&app).await;
    let (pathway, _, _) = sms_pathway(&app, "Fillers", 0).await;
    for name in ["Ana", "Ben", "Cy", "Dee"] {
        let patient = patient(
            &app,
            name,
            true,
            json!({ "sms": true, "email": true, "marketing": false }),
        )
        .await;
        start(&app, &patient, &pathway, 0).await;
    }
    let other = app.second_store().await;
    let (a, b) = tokio::join!(
        sweep::announce_due(&app.store, 500),
        sweep::announce_due(&other, 500)
    );
    let due_now = app
        .gql(
            "{ followUps(first: 100, filter: { sendable: true }) { totalCount } }",
            json!({}),
        )
        .await;
    let due_now = due_now.data()["followUps"]["totalCount"].as_u64().unwrap() as usize;
    assert!(due_now > 0);
    assert_eq!(a.unwrap() + b.unwrap(), due_now);
    assert_eq!(sweep::announce_due(&app.store, 500).await.unwrap(), 0);
    let announced = events(&app, "follow_up.due").await;
    assert_eq!(announced.len(), due_now);
    let ids: std::collections::BTreeSet<&str> = announced
        .iter()
        .map(|e| e["followUpId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), due_now, "each once");
    assert!(
        announced
            .iter()
            .all(|e| e["sendAt"].is_string() && e["channel"].is_string())
    );
    assert!(
        announced.iter().all(|e| e.get("message").is_none()),
        "thin payloads"
    );
}

/// Does outreach work? The map counts per stage and kind what was planned,
/// made, blocked, answered within 72 h and followed by a move forward.
async fn the_map_shows_whether_outreach_works(app: TestApp) {
    let (pathway, inquiry, treatment) = sms_pathway(&app, "Botox", 0).await;
    let mut journeys = Vec::new();
    for (name, consent) in [
        (
            "Ana",
            json!({ "sms": true, "email": true, "marketing": false }),
        ),
        (
            "Ben",
            json!({ "sms": true, "email": true, "marketing": false }),
        ),
        (
            "Cy",
            json!({ "sms": true, "email": true, "marketing": false }),
        ),
    ] {
        let patient = patient(&app, name, true, consent).await;
        let journey = start(&app, &patient, &pathway, 10).await;
        journeys.push((patient, journey));
    }
    for (i, (patient, journey)) in journeys.iter().enumerate() {
        let follow_up = follow_ups_of(&app, patient).await[0]["id"].clone();
        if i == 2 {
            continue; // never made
        }
        app.gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "OUTBOUND", "kind": "follow-up", "occurredAt": ago(8), "completesFollowUpId": follow_up } }),
        )
        .await
        .data();
        if i == 0 {
            // Ana answers, and moves on.
            app.gql(
                "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
                json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "INBOUND", "kind": "reply", "summary": "yes please" } }),
            )
            .await
            .data();
            app.gql(
                "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
                json!({ "input": { "journeyId": journey, "stageId": treatment } }),
            )
            .await
            .data();
        }
    }
    let map = app
        .gql(
            "query($p: ID!) { journeyMap(pathwayId: $p) { stages { stage { id } outreach { kind planned sent blocked answered advanced answerRate advanceRate } } svg } }",
            json!({ "p": pathway }),
        )
        .await;
    let map = map.data()["journeyMap"].clone();
    let stage = map["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"]["id"] == inquiry)
        .unwrap()
        .clone();
    assert_eq!(
        stage["outreach"],
        json!([{ "kind": "STAGE_RULE", "planned": 3, "sent": 2, "blocked": 0, "answered": 1, "advanced": 1, "answerRate": 0.5, "advanceRate": 0.5 }]),
        "{stage:#}"
    );
    let svg = map["svg"].as_str().unwrap();
    assert!(
        svg.contains("OUTREACH") && svg.contains("2/3 made"),
        "the picture shows it"
    );
    assert!(svg.contains("50% answered"), "the picture shows it");

    // Compared with a quiet month before: the same figures, and the change.
    let compared = app
        .gql(
            "query($p: ID!, $from: DateTime!, $to: DateTime!, $c: TimeWindowInput!) { journeyMap(pathwayId: $p, from: $from, to: $to, compareTo: $c) { stages { stage { id } outreach { kind planned } previous { outreach { kind planned } } change { outreach { kind planned sent blocked answered advanced answerRate advanceRate } } } } }",
            json!({
                "p": pathway,
                "from": ago(24 * 7),
                "to": ago(-1),
                "c": { "from": ago(24 * 60), "to": ago(24 * 30) },
            }),
        )
        .await;
    let stage = compared.data()["journeyMap"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"]["id"] == inquiry)
        .unwrap()
        .clone();
    assert_eq!(
        stage["outreach"],
        json!([{ "kind": "STAGE_RULE", "planned": 3 }])
    );
    assert_eq!(stage["previous"]["outreach"], json!([]));
    assert_eq!(
        stage["change"]["outreach"],
        json!([{ "kind": "STAGE_RULE", "planned": 3.0, "sent": 2.0, "blocked": 0.0, "answered": 1.0, "advanced": 1.0, "answerRate": null, "advanceRate": null }]),
        "{stage:#}"
    );
}

/// Bad input gets BAD_USER_INPUT with the field, and writes nothing.
async fn bad_outreach_input_is_refused_and_writes_nothing(app: TestApp) {
    let (_, inquiry, _) = sms_pathway(&app, "Facials", 1).await;
    let no_phone = app
        .gql(
            "mutation { createPatient(input: { givenName: \"Ana\", familyName: \"Test\", email: \"ana@example.com\" }) { patient { id } } }",
            json!({}),
        )
        .await;
    let ana = no_phone.data()["createPatient"]["patient"]["id"].clone();
    let before = app.row_counts().await;
    let cases = [
        (
            "mutation($p: ID!) { setContactPreferences(input: { patientId: $p, timezone: \"Mars/Olympus\" }) { patient { id } } }",
            "input.timezone",
        ),
        (
            "mutation($p: ID!) { setContactPreferences(input: { patientId: $p, quietHours: { start: \"9pm\", end: \"08:00\" } }) { patient { id } } }",
            "input.quietHours.start",
        ),
        (
            "mutation { setOutreachPolicy(input: { quietHours: { start: \"21:00\", end: \"25:00\" } }) { policy { maxMarketingPerWeek } } }",
            "input.quietHours.end",
        ),
        (
            "mutation { setOutreachPolicy(input: { maxMarketingPerWeek: -1 }) { policy { maxMarketingPerWeek } } }",
            "input.maxMarketingPerWeek",
        ),
        (
            "mutation { setOutreachTemplate(input: { kind: STAGE_RULE, channel: SMS, body: \"Hi {{firstName}}\" }) { template { body } } }",
            "input.body",
        ),
        (
            "mutation($long: String!) { setOutreachTemplate(input: { kind: STAGE_RULE, channel: SMS, body: $long }) { template { body } } }",
            "input.body",
        ),
        (
            "mutation($p: ID!) { recordConsent(input: { patientId: $p, channel: SMS, purpose: CARE, granted: true, source: \"form\" }) { patient { id } } }",
            "input.channel",
        ),
        (
            "mutation($p: ID!) { recordConsent(input: { patientId: $p, channel: IN_PERSON, purpose: CARE, granted: true, source: \"form\" }) { patient { id } } }",
            "input.channel",
        ),
        (
            "mutation($s: ID!) { setStageCadence(input: { stageId: $s, rebookAfterDays: 0 }) { stage { id } } }",
            "input.rebookAfterDays",
        ),
        (
            "mutation($s: ID!) { setStageCadence(input: { stageId: $s, winBackAfterDays: 1200 }) { stage { id } } }",
            "input.winBackAfterDays",
        ),
        (
            "mutation($p: ID!) { scheduleFollowUp(input: { patientId: $p, dueAt: \"2026-12-24T10:00:00Z\", channel: EMAIL }) { followUp { id } } }",
            "input.journeyId",
        ),
    ];
    for (document, field) in cases {
        let answer = app
            .gql(
                document,
                json!({ "p": ana, "s": inquiry, "long": "x".repeat(321) }),
            )
            .await;
        answer.assert_error("BAD_USER_INPUT", Some(field));
    }
    assert_eq!(app.row_counts().await, before, "nothing was written");
    let policy = app
        .gql("{ viewer { clinic { outreachPolicy { quietHours { start end } maxMarketingPerWeek } } } }", json!({}))
        .await;
    assert_eq!(
        policy.data()["viewer"]["clinic"]["outreachPolicy"],
        json!({ "quietHours": { "start": "21:00", "end": "08:00" }, "maxMarketingPerWeek": 1 })
    );
    // A template that is fine is used for plans from then on.
    app.gql(
        "mutation { setOutreachTemplate(input: { kind: STAGE_RULE, channel: EMAIL, body: \"Dear {{givenName}}, about your {{stageName}} at {{clinicName}} on {{dueDate}}.\" }) { template { custom } } }",
        json!({}),
    )
    .await
    .data();
    let (pathway, _, _) = sms_pathway(&app, "Masks", 0).await;
    start(&app, ana.as_str().unwrap(), &pathway, 0).await;
    let planned = follow_ups_of(&app, ana.as_str().unwrap()).await;
    assert!(
        planned[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Dear Ana, about your New inquiry at Clinic A on "),
        "{:#}",
        planned[0]
    );
}

/// A change to the clinic's outreach configuration is planned with from the
/// next change on, on the same server at once, though the server keeps the
/// configuration in memory between changes
/// (`domain::outreach::configuration`): a template, a pathway's name, a
/// stage's rules, the policy. The server is told it hears every
/// notification, so it keeps the configuration on SQLite too, where no
/// notification ever comes: there only the writer's own invalidation after
/// each change keeps planning current.
async fn configuration_changes_are_planned_with_at_once(app: TestApp) {
    app.db().configuration().set_listening(true);
    quiet_far_from_now(&app).await;
    let sms = json!({ "sms": true });
    let (pathway, _, treatment) = sms_pathway(&app, "Peels", 0).await;
    let first_message = |planned: Vec<Value>| planned[0]["message"].as_str().unwrap().to_string();

    // The first plan reads the configuration (and keeps it).
    let ana = patient(&app, "Ana", true, sms.clone()).await;
    start(&app, &ana, &pathway, 0).await;
    let drafted = first_message(follow_ups_of(&app, &ana).await);
    assert!(drafted.starts_with("Hi Ana, it's Clinic A."), "{drafted}");

    app.gql(
        "mutation { setOutreachTemplate(input: { kind: STAGE_RULE, channel: SMS, body: \"Hello {{givenName}}, your {{pathwayName}} check-in.\" }) { template { custom } } }",
        json!({}),
    )
    .await
    .data();
    let bo = patient(&app, "Bo", true, sms.clone()).await;
    start(&app, &bo, &pathway, 0).await;
    assert_eq!(
        first_message(follow_ups_of(&app, &bo).await),
        "Hello Bo, your Peels check-in."
    );

    app.gql(
        "mutation($input: UpdatePathwayInput!) { updatePathway(input: $input) { pathway { name } } }",
        json!({ "input": { "pathwayId": pathway, "name": "Chemical peels" } }),
    )
    .await
    .data();
    let cy = patient(&app, "Cy", true, sms.clone()).await;
    let journey = start(&app, &cy, &pathway, 0).await;
    assert_eq!(
        first_message(follow_ups_of(&app, &cy).await),
        "Hello Cy, your Chemical peels check-in."
    );

    // Treatment had no rules; now it texts at once.
    app.gql(
        "mutation($input: SetStageFollowUpRulesInput!) { setStageFollowUpRules(input: $input) { stage { id } } }",
        json!({ "input": { "stageId": treatment, "rules": [{ "delayHours": 0, "channel": "SMS", "note": "Aftercare" }] } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
        json!({ "input": { "journeyId": journey, "stageId": treatment } }),
    )
    .await
    .data();
    let open: Vec<Value> = follow_ups_of(&app, &cy)
        .await
        .into_iter()
        .filter(|f| f["status"] == "OPEN")
        .collect();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(
        open[0]["message"],
        "Hello Cy, your Chemical peels check-in."
    );

    // Quiet all day but one minute, sixteen hours or so away in the clinic's
    // zone: nothing planned from now on is sent within the hour.
    let start_at = Utc::now() + chrono::Duration::hours(12);
    let end_at = start_at - chrono::Duration::minutes(1);
    app.gql(
        "mutation($start: String!, $end: String!) { setOutreachPolicy(input: { quietHours: { start: $start, end: $end } }) { policy { minHoursBetweenContacts } } }",
        json!({ "start": start_at.format("%H:%M").to_string(), "end": end_at.format("%H:%M").to_string() }),
    )
    .await
    .data();
    let dee = patient(&app, "Dee", true, sms).await;
    start(&app, &dee, &pathway, 0).await;
    let planned = follow_ups_of(&app, &dee).await;
    assert!(
        at(planned[0]["sendAt"].as_str().unwrap()) > Utc::now() + chrono::Duration::hours(1),
        "{:#}",
        planned[0]
    );
}

on_both_backends!(
    the_queue_shows_every_kind_explained_with_a_draft,
    without_consent_a_channel_is_never_used,
    a_stop_reply_blocks_sms_at_once,
    quiet_hours_and_frequency_limits_hold,
    follow_up_due_fires_once_with_two_replicas,
    the_map_shows_whether_outreach_works,
    bad_outreach_input_is_refused_and_writes_nothing,
    configuration_changes_are_planned_with_at_once,
);
