//! The journey map over a history whose every figure is known: entries,
//! exits, conversion, time in stage, stalls, blind spots, emotion, NPS,
//! overdue follow-ups, flows, a past window replayed from the history,
//! `compareTo`, and the SVG picture.

use chrono::{Duration, SecondsFormat, Utc};
use journeymap_tests::{PathwayIds, TestApp, on_both_backends};
use serde_json::{Value, json};

fn ago(hours: i64) -> String {
    (Utc::now() - Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

const DAY: i64 = 24;

async fn start(app: &TestApp, patient: &str, pathway: &str, at: String) -> String {
    app.gql(
        "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
        json!({ "input": { "patientId": patient, "pathwayId": pathway, "occurredAt": at } }),
    )
    .await
    .data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn move_to(app: &TestApp, journey: &str, stage: &str, at: String) {
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": stage, "occurredAt": at } }),
    )
    .await
    .data();
}

async fn touch(
    app: &TestApp,
    patient: &str,
    journey: &str,
    at: String,
    emotion: i32,
    moment: bool,
) {
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "IN_PERSON", "direction": "OUTBOUND",
                           "kind": "consultation", "occurredAt": at, "emotion": emotion, "momentOfTruth": moment } }),
    )
    .await
    .data();
}

async fn nps(app: &TestApp, patient: &str, journey: &str, at: String, score: i32, comment: &str) {
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": score,
                           "comment": comment, "submittedAt": at } }),
    )
    .await
    .data();
}

/// Four patients on the standard pathway:
/// - P1: started 10 d ago, consultation 9 d ago, treatment 5 d ago, discharged 3 d ago;
/// - P2: started 9 d ago, consultation 8 d ago, dropped 2 d ago (NPS 3, "Too expensive");
/// - P3: started 6 d ago, still in inquiry, never contacted (stalled, unseen);
/// - P4: started 3 d ago, consultation 2 d ago (NPS 2 there), back to inquiry 20 h ago.
async fn known_history(app: &TestApp) -> PathwayIds {
    let p = app.pathway().await;
    let (p1, p2, p3, p4) = (
        app.patient("Pia").await,
        app.patient("Quin").await,
        app.patient("Rae").await,
        app.patient("Sol").await,
    );
    let j1 = start(app, &p1, &p.id, ago(10 * DAY)).await;
    move_to(app, &j1, &p.consultation, ago(9 * DAY)).await;
    touch(app, &p1, &j1, ago(8 * DAY), -2, true).await;
    nps(
        app,
        &p1,
        &j1,
        ago(6 * DAY),
        9,
        "Great explanation of the plan",
    )
    .await;
    move_to(app, &j1, &p.treatment, ago(5 * DAY)).await;
    move_to(app, &j1, &p.discharged, ago(3 * DAY)).await;

    let j2 = start(app, &p2, &p.id, ago(9 * DAY)).await;
    move_to(app, &j2, &p.consultation, ago(8 * DAY)).await;
    touch(app, &p2, &j2, ago(7 * DAY), 0, false).await;
    nps(
        app,
        &p2,
        &j2,
        ago(3 * DAY),
        3,
        "Too expensive and nobody called back",
    )
    .await;
    app.gql(
        "mutation($input: DropJourneyInput!) { dropJourney(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": j2, "reason": "price", "occurredAt": ago(2 * DAY) } }),
    )
    .await
    .data();

    start(app, &p3, &p.id, ago(6 * DAY)).await;

    let j4 = start(app, &p4, &p.id, ago(3 * DAY)).await;
    move_to(app, &j4, &p.consultation, ago(2 * DAY)).await;
    nps(app, &p4, &j4, ago(30), 2, "Waited an hour").await;
    move_to(app, &j4, &p.inquiry, ago(20)).await;
    touch(app, &p4, &j4, ago(10), 2, false).await;
    p
}

const MAP: &str = r#"query($p: ID!, $from: DateTime, $to: DateTime, $compareTo: TimeWindowInput) {
  journeyMap(pathwayId: $p, from: $from, to: $to, compareTo: $compareTo) {
    pathway { name }
    stages {
      stage { key }
      activeCount enteredCount exitedCount movedForwardCount movedBackCount completedCount droppedCount
      conversionRate medianHoursInStage p90HoursInStage stalledCount blindSpotCount
      touchpointCount touchpointsPerJourney channelMix { channel count }
      averageEmotion momentsOfTruth nps npsResponses csat csatResponses overdueFollowUps
      painPoints { kind score comment }
      previous { enteredCount activeCount }
      change { enteredCount activeCount nps }
    }
    flows { from { key } to { key } kind count }
    svg
  }
}"#;

fn stage<'a>(map: &'a Value, key: &str) -> &'a Value {
    map["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"]["key"] == key)
        .unwrap()
}

fn approx(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 0.05)
}

async fn the_map_tells_the_known_story(app: TestApp) {
    let p = known_history(&app).await;
    let map = app.gql(MAP, json!({ "p": p.id })).await;
    let map = &map.data()["journeyMap"];

    let inquiry = stage(map, "inquiry");
    assert_eq!(inquiry["enteredCount"], 5, "{inquiry:#}"); // four starts and one move back
    assert_eq!(inquiry["movedForwardCount"], 3);
    assert_eq!(inquiry["activeCount"], 2); // P3 and P4
    assert_eq!(inquiry["stalledCount"], 1); // P3: 6 days against a 24 h target
    assert_eq!(inquiry["blindSpotCount"], 1); // P3 was never contacted
    assert!(approx(&inquiry["conversionRate"], 0.6), "{inquiry:#}"); // 3 of 5 entries moved on
    assert!(approx(&inquiry["medianHoursInStage"], 24.0), "{inquiry:#}");
    assert_eq!(inquiry["overdueFollowUps"], 2); // P3's and P4's call-backs
    assert!(approx(&inquiry["averageEmotion"], 2.0));
    // P4's in-person touchpoint 10 h ago, after moving back.
    assert_eq!(inquiry["touchpointCount"], 1);
    assert!(approx(&inquiry["touchpointsPerJourney"], 1.0));
    assert_eq!(
        inquiry["channelMix"],
        json!([{ "channel": "IN_PERSON", "count": 1 }])
    );
    assert_eq!(inquiry["completedCount"], 0);
    assert_eq!(
        (&inquiry["csat"], &inquiry["csatResponses"]),
        (&Value::Null, &json!(0))
    );

    let consultation = stage(map, "consultation");
    assert_eq!(consultation["enteredCount"], 3);
    assert_eq!(consultation["exitedCount"], 3);
    assert_eq!(
        (
            &consultation["movedForwardCount"],
            &consultation["movedBackCount"],
            &consultation["droppedCount"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    assert!(
        approx(&consultation["conversionRate"], 0.3333),
        "{consultation:#}"
    );
    assert!(
        approx(&consultation["medianHoursInStage"], 96.0),
        "{consultation:#}"
    ); // of 24, 96, 144
    assert!(
        approx(&consultation["p90HoursInStage"], 144.0),
        "{consultation:#}"
    );
    assert!(approx(&consultation["averageEmotion"], -1.0)); // -2 and 0
    assert_eq!(consultation["momentsOfTruth"], 1);
    // P1's and P2's touchpoints: one each.
    assert_eq!(consultation["touchpointCount"], 2);
    assert!(approx(&consultation["touchpointsPerJourney"], 1.0));
    assert_eq!(
        consultation["channelMix"],
        json!([{ "channel": "IN_PERSON", "count": 2 }])
    );
    assert_eq!(consultation["completedCount"], 0); // P2 was dropped there, not completed
    assert!(approx(&consultation["nps"], -33.3), "{consultation:#}"); // one promoter, two detractors
    assert_eq!(consultation["npsResponses"], 3);
    // P4's NPS 2 asked for a service-recovery call, now overdue; P2's was
    // cancelled when P2's journey was dropped.
    assert_eq!(consultation["overdueFollowUps"], 1);
    assert_eq!(
        consultation["painPoints"],
        json!([
            { "kind": "NPS", "score": 2, "comment": "Waited an hour" },
            { "kind": "NPS", "score": 3, "comment": "Too expensive and nobody called back" }
        ])
    );
    assert_eq!(consultation["activeCount"], 0);

    let treatment = stage(map, "treatment");
    assert_eq!(
        (&treatment["enteredCount"], &treatment["exitedCount"]),
        (&json!(1), &json!(1))
    );
    assert!(approx(&treatment["conversionRate"], 1.0));
    assert!(approx(&treatment["medianHoursInStage"], 48.0));
    assert_eq!(treatment["touchpointCount"], 0);
    assert!(
        treatment["touchpointsPerJourney"].is_null(),
        "{treatment:#}"
    );
    assert_eq!(treatment["channelMix"], json!([]));
    assert_eq!(treatment["completedCount"], 0);
    let discharged = stage(map, "discharged");
    assert_eq!(discharged["enteredCount"], 1);
    // P1 was completed by a forward move into the terminal stage: a flow
    // into "discharged", not a completion by hand in a stage (which
    // `completedCount` counts; see the test of touchpoints and CSAT).
    assert_eq!(discharged["completedCount"], 0, "{discharged:#}");

    let flows: Vec<(String, String, String, i64)> = map["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["from"]["key"].as_str().unwrap().to_string(),
                f["to"]["key"].as_str().unwrap_or("-").to_string(),
                f["kind"].as_str().unwrap().to_string(),
                f["count"].as_i64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("inquiry", "consultation", "FORWARD", 3),
        ("consultation", "treatment", "FORWARD", 1),
        ("consultation", "inquiry", "BACKWARD", 1),
        ("consultation", "-", "DROPPED", 1),
        ("treatment", "discharged", "FORWARD", 1),
    ] {
        let expected = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.to_string(),
            expected.3,
        );
        assert!(
            flows.contains(&expected),
            "missing flow {expected:?} in {flows:?}"
        );
    }
    assert_eq!(flows.len(), 5);

    let svg = map["svg"].as_str().unwrap();
    let texts = svg_texts(svg);
    for text in [
        "Injectables",
        "New inquiry",
        "Consultation",
        "Waited an hour",
        "1 unseen",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(text)),
            "the picture has no text {text:?}: {texts:?}"
        );
    }
}

/// Parses `svg` as XML (it must be a well-formed `<svg>` document in the SVG
/// namespace) and returns the text of its `<text>`/`<tspan>`/`<title>`
/// elements, entities decoded.
fn svg_texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("the SVG is not well-formed XML ({e}): {svg}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{svg}");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg"),
        "{svg}"
    );
    root.descendants()
        .filter(|n| n.is_element() && matches!(n.tag_name().name(), "text" | "tspan" | "title"))
        .map(|n| {
            n.descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect::<String>()
        })
        .collect()
}

/// Touchpoints by channel and CSAT, over a history the test lays out:
/// - A: inquiry 5 d ago (two phone calls), consultation 4 d ago (three SMS and
///   an email, CSAT 5), treatment 1 d ago (a portal message, CSAT 4), still there;
/// - B: inquiry 3 d ago (one SMS), consultation 2 d ago (an email and a call,
///   CSAT 2), completed by hand in consultation 1 d ago;
/// - C: inquiry 2 d ago, never contacted.
async fn touchpoints_channels_and_csat_are_counted_per_stage(app: TestApp) {
    let p = app.pathway().await;
    let (a, b, c) = (
        app.patient("Ada").await,
        app.patient("Ben").await,
        app.patient("Cy").await,
    );
    let ja = start(&app, &a, &p.id, ago(5 * DAY)).await;
    touch_by(&app, &a, &ja, "PHONE", ago(5 * DAY - 2)).await;
    touch_by(&app, &a, &ja, "PHONE", ago(5 * DAY - 4)).await;
    move_to(&app, &ja, &p.consultation, ago(4 * DAY)).await;
    for hours in [90, 80, 70] {
        touch_by(&app, &a, &ja, "SMS", ago(hours)).await;
    }
    touch_by(&app, &a, &ja, "EMAIL", ago(60)).await;
    csat(&app, &a, &ja, 5, ago(50)).await;
    move_to(&app, &ja, &p.treatment, ago(DAY)).await;
    touch_by(&app, &a, &ja, "PORTAL", ago(10)).await;
    csat(&app, &a, &ja, 4, ago(5)).await;

    let jb = start(&app, &b, &p.id, ago(3 * DAY)).await;
    touch_by(&app, &b, &jb, "SMS", ago(60)).await;
    move_to(&app, &jb, &p.consultation, ago(2 * DAY)).await;
    touch_by(&app, &b, &jb, "EMAIL", ago(40)).await;
    touch_by(&app, &b, &jb, "PHONE", ago(36)).await;
    csat(&app, &b, &jb, 2, ago(30)).await;
    app.gql(
        "mutation($input: CompleteJourneyInput!) { completeJourney(input: $input) { journey { status } } }",
        json!({ "input": { "journeyId": jb, "occurredAt": ago(DAY) } }),
    )
    .await
    .data();

    start(&app, &c, &p.id, ago(2 * DAY)).await;

    let map = app.gql(MAP, json!({ "p": p.id })).await;
    let map = &map.data()["journeyMap"];

    let inquiry = stage(map, "inquiry");
    assert_eq!(inquiry["touchpointCount"], 3, "{inquiry:#}");
    // A and B were touched there (C never was): 3 touchpoints over 2 journeys.
    assert!(
        approx(&inquiry["touchpointsPerJourney"], 1.5),
        "{inquiry:#}"
    );
    assert_eq!(
        inquiry["channelMix"],
        json!([{ "channel": "PHONE", "count": 2 }, { "channel": "SMS", "count": 1 }])
    );
    assert_eq!(
        (&inquiry["csat"], &inquiry["csatResponses"]),
        (&Value::Null, &json!(0))
    );
    assert_eq!(inquiry["completedCount"], 0);

    let consultation = stage(map, "consultation");
    assert_eq!(consultation["touchpointCount"], 6, "{consultation:#}");
    assert!(
        approx(&consultation["touchpointsPerJourney"], 3.0),
        "{consultation:#}"
    );
    assert_eq!(
        consultation["channelMix"],
        json!([
            { "channel": "SMS", "count": 3 },
            { "channel": "EMAIL", "count": 2 },
            { "channel": "PHONE", "count": 1 }
        ])
    );
    assert!(approx(&consultation["csat"], 3.5), "{consultation:#}"); // 5 and 2
    assert_eq!(consultation["csatResponses"], 2);
    assert_eq!(consultation["npsResponses"], 0);
    assert!(consultation["nps"].is_null());
    assert_eq!(consultation["completedCount"], 1, "{consultation:#}"); // B

    let treatment = stage(map, "treatment");
    assert_eq!(treatment["touchpointCount"], 1);
    assert!(approx(&treatment["touchpointsPerJourney"], 1.0));
    assert_eq!(
        treatment["channelMix"],
        json!([{ "channel": "PORTAL", "count": 1 }])
    );
    assert!(approx(&treatment["csat"], 4.0), "{treatment:#}");
    assert_eq!(treatment["csatResponses"], 1);
    assert_eq!(treatment["completedCount"], 0);
    assert_eq!(stage(map, "discharged")["completedCount"], 0);
}

async fn touch_by(app: &TestApp, patient: &str, journey: &str, channel: &str, at: String) {
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": channel,
                           "direction": "OUTBOUND", "kind": "check-in", "occurredAt": at } }),
    )
    .await
    .data();
}

async fn csat(app: &TestApp, patient: &str, journey: &str, score: i32, at: String) {
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "CSAT", "score": score,
                           "submittedAt": at } }),
    )
    .await
    .data();
}

/// Text the clinic controls (a stage's name, a patient's comment) is escaped
/// in the picture: the SVG stays well-formed and shows the text as typed.
async fn the_picture_escapes_what_the_clinic_typed(app: TestApp) {
    const NASTY: &str = r#"<&"'>"#;
    let stage_name = format!("Consult {NASTY} room");
    let comment = format!("Rude {NASTY} staff");
    let created = app
        .gql(
            r#"mutation($name: String!) { createPathway(input: { name: "Skin", stages: [
                { key: "inquiry", name: "Inquiry", category: INQUIRY },
                { key: "consult", name: $name, category: CONSULTATION },
                { key: "done", name: "Done", category: DISCHARGED, terminal: true }
            ] }) { pathway { id stages { id key } } } }"#,
            json!({ "name": stage_name }),
        )
        .await;
    let pathway = &created.data()["createPathway"]["pathway"];
    let id = pathway["id"].as_str().unwrap().to_string();
    let consult = pathway["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "consult")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let patient = app.patient("Eli").await;
    let journey = start(&app, &patient, &id, ago(3 * DAY)).await;
    move_to(&app, &journey, &consult, ago(2 * DAY)).await;
    nps(&app, &patient, &journey, ago(DAY), 1, &comment).await;

    let map = app.gql(MAP, json!({ "p": id })).await;
    let from_graphql = map.data()["journeyMap"]["svg"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .client
        .get(format!("{}/journey-maps/{id}.svg", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let from_http = response.text().await.unwrap();
    for (door, svg) in [("journeyMap.svg", &from_graphql), ("GET .svg", &from_http)] {
        let texts = svg_texts(svg);
        assert!(
            texts.iter().any(|t| t.contains(&stage_name)),
            "{door}: no text shows the stage name {stage_name:?}: {texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains(&comment)),
            "{door}: no text shows the comment {comment:?}: {texts:?}"
        );
        // Escaped in the markup: the raw characters never appear unescaped.
        assert!(!svg.contains(NASTY), "{door}: unescaped {NASTY:?} in {svg}");
        assert!(
            svg.contains("&lt;&amp;"),
            "{door}: expected the escaped form in {svg}"
        );
    }
}

async fn a_past_window_is_replayed_and_compared(app: TestApp) {
    let p = known_history(&app).await;
    // Four days ago: P1 in treatment, P2 stalled in consultation (96 h of 72),
    // P3 stalled and unseen in inquiry (48 h of 24); P4 had not started.
    let map = app
        .gql(
            MAP,
            json!({ "p": p.id, "from": ago(30 * DAY), "to": ago(4 * DAY) }),
        )
        .await;
    let map = &map.data()["journeyMap"];
    let inquiry = stage(map, "inquiry");
    assert_eq!(
        (
            &inquiry["activeCount"],
            &inquiry["stalledCount"],
            &inquiry["blindSpotCount"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{inquiry:#}"
    );
    let consultation = stage(map, "consultation");
    assert_eq!(
        (
            &consultation["activeCount"],
            &consultation["stalledCount"],
            &consultation["blindSpotCount"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{consultation:#}"
    );
    assert_eq!(stage(map, "treatment")["activeCount"], 1);
    assert_eq!(inquiry["enteredCount"], 3); // P1, P2, P3 started before then
    assert!(inquiry["change"].is_null());

    // Now against the month before: nothing happened then.
    let compared = app
        .gql(
            MAP,
            json!({ "p": p.id, "compareTo": { "from": ago(60 * DAY), "to": ago(30 * DAY) } }),
        )
        .await;
    let inquiry = stage(&compared.data()["journeyMap"], "inquiry").clone();
    assert_eq!(
        inquiry["previous"],
        json!({ "enteredCount": 0, "activeCount": 0 })
    );
    assert_eq!(inquiry["change"]["enteredCount"], 5.0);
    assert_eq!(inquiry["change"]["activeCount"], 2.0);
    assert!(inquiry["change"]["nps"].is_null());

    // Bad windows are refused.
    app.gql(MAP, json!({ "p": p.id, "from": ago(1), "to": ago(2) }))
        .await
        .assert_error("BAD_USER_INPUT", Some("from"));
    app.gql(
        MAP,
        json!({ "p": p.id, "compareTo": { "from": ago(1), "to": ago(2) } }),
    )
    .await
    .assert_error("BAD_USER_INPUT", Some("compareTo.from"));
}

/// A pathway none of whose stages has a target: nothing can stall, and a past
/// window still replays (its stall test once became `CASE ELSE 0 END`).
async fn a_pathway_without_targets_maps_past_windows(app: TestApp) {
    let created = app
        .gql(
            r#"mutation { createPathway(input: { name: "Wellness", stages: [
                { key: "inquiry", name: "Inquiry", category: INQUIRY },
                { key: "care", name: "Ongoing care", category: ONGOING_CARE },
                { key: "done", name: "Discharged", category: DISCHARGED, terminal: true }
            ] }) { pathway { id stages { id key } } } }"#,
            json!({}),
        )
        .await;
    let pathway = &created.data()["createPathway"]["pathway"];
    let id = pathway["id"].as_str().unwrap().to_string();
    let patient = app.patient("Noor").await;
    start(&app, &patient, &id, ago(10 * DAY)).await;

    let past = app
        .gql(
            MAP,
            json!({ "p": id, "from": ago(30 * DAY), "to": ago(2 * DAY) }),
        )
        .await;
    let inquiry = stage(&past.data()["journeyMap"], "inquiry");
    assert_eq!(
        (
            &inquiry["activeCount"],
            &inquiry["stalledCount"],
            &inquiry["blindSpotCount"]
        ),
        (&json!(1), &json!(0), &json!(0)),
        "{inquiry:#}"
    );
    let compared = app
        .gql(
            MAP,
            json!({ "p": id, "compareTo": { "from": ago(30 * DAY), "to": ago(2 * DAY) } }),
        )
        .await;
    assert_eq!(
        stage(&compared.data()["journeyMap"], "inquiry")["previous"]["activeCount"],
        1
    );
}

async fn the_picture_is_served_with_the_same_credential(app: TestApp) {
    let p = known_history(&app).await;
    let url = format!("{}/journey-maps/{}.svg", app.url, p.id);
    let response = app
        .client
        .get(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    let body = response.text().await.unwrap();
    assert!(
        svg_texts(&body).iter().any(|t| t.contains("Consultation")),
        "{body}"
    );

    let windowed = app
        .client
        .get(format!("{url}?from={}&to={}", ago(30 * DAY), ago(4 * DAY)))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(windowed.status(), 200);
    // The window ends before P4's feedback: the picture is of the window.
    let windowed = windowed.text().await.unwrap();
    let texts = svg_texts(&windowed);
    assert!(
        texts.iter().any(|t| t.contains("Consultation"))
            && !texts.iter().any(|t| t.contains("Waited an hour")),
        "{windowed}"
    );

    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    let other = app.clinic("other").await;
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(&other)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = app
        .client
        .get(format!("{url}?from=yesterday"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let not_a_pathway = app
        .client
        .get(format!(
            "{}/journey-maps/pat_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b.svg",
            app.url
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_pathway.status(), 400);
}

on_both_backends!(
    the_map_tells_the_known_story,
    touchpoints_channels_and_csat_are_counted_per_stage,
    the_picture_escapes_what_the_clinic_typed,
    a_past_window_is_replayed_and_compared,
    the_picture_is_served_with_the_same_credential,
    a_pathway_without_targets_maps_past_windows,
);
