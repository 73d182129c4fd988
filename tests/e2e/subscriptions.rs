//! Subscriptions over `graphql-transport-ws`: the protocol's messages and
//! close codes, live stage changes with their pathway and patient filters,
//! `journeyEvents` with its type filter, resuming from a cursor with no gap
//! and no duplicate, scopes, the credential re-check (4403), queries and
//! mutations over the socket, and tenancy.
//!
//! Subscribing has no acknowledgement: every test that needs a live
//! subscription proves it with a warm-up event first ([`warm_up`]), and every
//! "nothing else arrives" waits [`QUIET`].

use std::time::{Duration, Instant};

use journeymap_tests::{
    Options, PathwayIds, QUIET, TestApp, WsClient, WsEvent, on_both_backends, warm_up,
};
use serde_json::{Value, json};

const STAGE_CHANGED: &str = r#"subscription($after: String, $pathwayId: ID, $patientId: ID) {
  journeyStageChanged(after: $after, pathwayId: $pathwayId, patientId: $patientId) {
    id sequence cursor direction journey { id version } patient { id givenName } fromStage { key } toStage { key }
  }
}"#;

/// A journey in `pathway` that only warm-up moves touch.
async fn warm_journey(app: &TestApp, pathway: &PathwayIds) -> String {
    let patient = app.patient("Warm").await;
    app.start_journey(&patient, &pathway.id).await
}

/// Proves `client`'s stage-change operation `id` is live with moves of `warm`.
async fn go_live(app: &TestApp, client: &mut WsClient, id: &str, warm: &str, p: &PathwayIds) {
    warm_up(
        &app.url,
        &app.token,
        &mut [client],
        id,
        warm,
        [&p.consultation, &p.inquiry],
    )
    .await;
}

async fn move_to(app: &TestApp, journey: &str, stage: &str) -> Value {
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
        json!({ "input": { "journeyId": journey, "stageId": stage } }),
    )
    .await
    .data()
    .clone()
}

/// Subscribing has no acknowledgement: wait until the subscription sees a
/// first event we cause ourselves.
async fn live(app: &TestApp, client: &mut WsClient, id: &str, journey: &str, stage: &str) -> Value {
    move_to(app, journey, stage).await;
    client.next_of(id).await
}

async fn stage_changes_arrive_live_and_resume_without_gaps(app: TestApp) {
    let p = app.pathway().await;
    let patient = app.patient("Lia").await;
    let journey = app.start_journey(&patient, &p.id).await;

    let warm = warm_journey(&app, &p).await;

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client.subscribe("s1", STAGE_CHANGED, json!({})).await;
    go_live(&app, &mut client, "s1", &warm, &p).await;
    let first = live(&app, &mut client, "s1", &journey, &p.consultation).await;
    let event = &first["data"]["journeyStageChanged"];
    assert_eq!(event["fromStage"]["key"], "inquiry");
    assert_eq!(event["toStage"]["key"], "consultation");
    assert_eq!(event["patient"]["givenName"], "Lia");
    let cursor = event["cursor"].as_str().unwrap().to_string();

    // Disconnect; three moves happen meanwhile.
    drop(client);
    move_to(&app, &journey, &p.treatment).await;
    move_to(&app, &journey, &p.consultation).await;
    move_to(&app, &journey, &p.treatment).await;

    // Resume after the cursor: the three, in order, then live ones.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("s2", STAGE_CHANGED, json!({ "after": cursor }))
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let next = client.next_of("s2").await;
        seen.push(
            next["data"]["journeyStageChanged"]["toStage"]["key"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, ["treatment", "consultation", "treatment"]);
    let live_one = live(&app, &mut client, "s2", &journey, &p.discharged).await;
    assert_eq!(
        live_one["data"]["journeyStageChanged"]["toStage"]["key"],
        "discharged"
    );
    // Nothing else.
    assert_eq!(client.next_within(QUIET).await, None);
}

async fn concurrent_commits_during_switch_over_are_not_lost(app: TestApp) {
    let p = app.pathway().await;
    let mut journeys = Vec::new();
    for n in 0..6 {
        let patient = app.patient(&format!("P{n}")).await;
        journeys.push(app.start_journey(&patient, &p.id).await);
    }
    let cursor_events = app
        .gql(
            "{ events(first: 100) { edges { node { cursor } } } }",
            json!({}),
        )
        .await;
    let cursor = cursor_events.data()["events"]["edges"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["node"]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    // Moves keep committing while the subscription replays and switches to
    // live: the socket subscribes first, the moves follow a few ms apart.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("s", STAGE_CHANGED, json!({ "after": cursor }))
        .await;
    let writer = {
        let (url, token, journeys, stage) = (
            app.url.clone(),
            app.token.clone(),
            journeys.clone(),
            p.consultation.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for journey in journeys {
                let answer: serde_json::Value = client
                    .post(format!("{url}/graphql"))
                    .bearer_auth(&token)
                    .json(&json!({ "query": "mutation($i: MoveJourneyToStageInput!) { moveJourneyToStage(input: $i) { journey { id } } }",
                                   "variables": { "i": { "journeyId": journey, "stageId": stage } } }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answers.push(answer);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    let mut sequences = Vec::new();
    for _ in 0..6 {
        let next = client.next_of("s").await;
        sequences.push(
            next["data"]["journeyStageChanged"]["sequence"]
                .as_i64()
                .unwrap(),
        );
    }
    for answer in writer.await.unwrap() {
        assert!(answer["errors"].is_null(), "a move failed: {answer}");
    }
    let mut sorted = sequences.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 6, "duplicates in {sequences:?}");
    assert_eq!(sequences, sorted, "out of order: {sequences:?}");
    assert_eq!(client.next_within(QUIET).await, None);
}

async fn subscriptions_see_only_their_clinic_and_filter(app: TestApp) {
    let p = app.pathway().await;
    let other = app.pathway_as(&app.token, "Other").await;
    let b_token = app.clinic("b").await;
    let bp = app.pathway_as(&b_token, "B pathway").await;
    let b_patient = app.patient_as(&b_token, "Bo").await;
    let b_journey = app.start_journey_as(&b_token, &b_patient, &bp.id).await;

    let patient = app.patient("Ana").await;
    let mine = app.start_journey(&patient, &p.id).await;
    let elsewhere = app.start_journey(&patient, &other.id).await;
    let warm = warm_journey(&app, &p).await;

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("only", STAGE_CHANGED, json!({ "pathwayId": p.id }))
        .await;
    // Live before clinic B moves: had B's move reached this subscription,
    // it would arrive before ours.
    go_live(&app, &mut client, "only", &warm, &p).await;
    // Clinic B's move and the other pathway's move are not for us.
    app.gql_as(
        Some(&b_token),
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": b_journey, "stageId": bp.consultation } }),
    )
    .await
    .data();
    move_to(&app, &elsewhere, &other.consultation).await;
    move_to(&app, &mine, &p.consultation).await;
    let next = client.next_of("only").await;
    assert_eq!(
        next["data"]["journeyStageChanged"]["journey"]["id"],
        mine.as_str()
    );
    assert_eq!(client.next_within(QUIET).await, None);

    // Clinic B's own subscriber hears B's moves, and none of A's.
    let b_warm_patient = app.patient_as(&b_token, "Bwarm").await;
    let b_warm = app
        .start_journey_as(&b_token, &b_warm_patient, &bp.id)
        .await;
    let mut b_client = WsClient::connect_with_token(&app, &b_token).await;
    b_client.subscribe("b", STAGE_CHANGED, json!({})).await;
    warm_up(
        &app.url,
        &b_token,
        &mut [&mut b_client],
        "b",
        &b_warm,
        [&bp.consultation, &bp.inquiry],
    )
    .await;
    move_to(&app, &mine, &p.treatment).await;
    app.gql_as(
        Some(&b_token),
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": b_journey, "stageId": bp.treatment } }),
    )
    .await
    .data();
    let next = b_client.next_of("b").await;
    assert_eq!(
        next["data"]["journeyStageChanged"]["journey"]["id"],
        b_journey.as_str()
    );
    assert_eq!(b_client.next_within(QUIET).await, None);
}

async fn the_patient_filter_sees_only_that_patients_journeys(app: TestApp) {
    let p = app.pathway().await;
    let other = app.pathway_as(&app.token, "Other").await;
    let ana = app.patient("Ana").await;
    let bo = app.patient("Bo").await;
    let anas = app.start_journey(&ana, &p.id).await;
    // Ana's journey on the other pathway warms the subscription up.
    let anas_other = app.start_journey(&ana, &other.id).await;
    let bos = app.start_journey(&bo, &p.id).await;

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("ana", STAGE_CHANGED, json!({ "patientId": ana }))
        .await;
    go_live(&app, &mut client, "ana", &anas_other, &other).await;
    move_to(&app, &bos, &p.consultation).await;
    move_to(&app, &anas, &p.consultation).await;
    let next = client.next_of("ana").await;
    let event = &next["data"]["journeyStageChanged"];
    assert_eq!(event["journey"]["id"], anas.as_str(), "{next}");
    assert_eq!(event["patient"]["id"], ana.as_str());
    assert_eq!(event["toStage"]["key"], "consultation");
    assert_eq!(client.next_within(QUIET).await, None);

    // Both filters at once: Ana's journeys on the standard pathway only.
    let mut both = WsClient::connect_with_token(&app, &app.token).await;
    both.subscribe(
        "both",
        STAGE_CHANGED,
        json!({ "patientId": ana, "pathwayId": p.id }),
    )
    .await;
    warm_up(
        &app.url,
        &app.token,
        &mut [&mut both],
        "both",
        &anas,
        [&p.treatment, &p.consultation],
    )
    .await;
    move_to(&app, &anas_other, &other.treatment).await;
    move_to(&app, &bos, &p.treatment).await;
    assert_eq!(both.next_within(QUIET).await, None);

    // A malformed patient id is refused like anywhere else.
    let mut bad = WsClient::connect_with_token(&app, &app.token).await;
    bad.subscribe("bad", STAGE_CHANGED, json!({ "patientId": "nope" }))
        .await;
    let refusal = operation_error(&mut bad, "bad").await;
    assert_eq!(refusal["extensions"]["code"], "BAD_USER_INPUT", "{refusal}");
    assert_eq!(refusal["extensions"]["field"], "patientId", "{refusal}");
}

const JOURNEY_EVENTS: &str = r#"subscription($types: [String!], $after: String) {
  journeyEvents(types: $types, after: $after) { id type sequence cursor occurredAt subject data }
}"#;

/// Proves `client`'s `journeyEvents` operation `id` (which must hear
/// `patient.created`) is live: creates patients until it hears the last one.
async fn events_go_live(app: &TestApp, client: &mut WsClient, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut heard: Vec<String> = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "journeyEvents {id} never went live"
        );
        let warm = app.patient("Warm").await;
        while heard.last() != Some(&warm) {
            match client.next_within(Duration::from_millis(250)).await {
                Some(WsEvent::Message(m)) if m["id"] == id && m["type"] == "next" => {
                    let event = &m["payload"]["data"]["journeyEvents"];
                    assert_eq!(event["type"], "patient.created", "during the warm-up: {m}");
                    heard.push(event["data"]["patientId"].as_str().unwrap().to_string());
                }
                None => break,
                Some(other) => panic!("during the warm-up: {other:?}"),
            }
        }
        if heard.last() == Some(&warm) {
            return;
        }
    }
}

fn event_of(payload: &Value) -> Value {
    payload["data"]["journeyEvents"].clone()
}

async fn journey_events_filter_by_type_and_resume_after_a_cursor(app: TestApp) {
    let p = app.pathway().await;
    let patient = app.patient("Ivy").await;
    let journey = app.start_journey(&patient, &p.id).await;
    let types = json!(["journey.stage_changed", "patient.created"]);

    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("ev", JOURNEY_EVENTS, json!({ "types": types }))
        .await;
    events_go_live(&app, &mut client, "ev").await;

    // A touchpoint and feedback (not asked for), a move and a new patient (asked for).
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS", "direction": "INBOUND", "kind": "question" } }),
    )
    .await
    .data();
    move_to(&app, &journey, &p.consultation).await;
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": 9 } }),
    )
    .await
    .data();
    let zoe = app.patient("Zoe").await;

    let moved = event_of(&client.next_of("ev").await);
    assert_eq!(moved["type"], "journey.stage_changed", "{moved}");
    assert_eq!(moved["subject"], journey.as_str());
    assert_eq!(moved["data"]["journeyId"], journey.as_str());
    assert_eq!(moved["data"]["current"]["key"], "consultation");
    let created = event_of(&client.next_of("ev").await);
    assert_eq!(created["type"], "patient.created", "{created}");
    assert_eq!(created["data"]["patientId"], zoe.as_str());
    assert!(created["sequence"].as_i64() > moved["sequence"].as_i64());
    assert_eq!(client.next_within(QUIET).await, None);

    // The same envelope as the event log.
    let log = app
        .gql(
            "query($types: [String!]) { events(first: 100, types: $types) { edges { node { id type sequence cursor occurredAt subject data } } } }",
            json!({ "types": types }),
        )
        .await;
    let logged: Vec<Value> = log.data()["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert!(logged.contains(&moved), "{moved} not in {logged:#?}");
    assert!(logged.contains(&created), "{created} not in {logged:#?}");

    // Disconnected: two moves, a touchpoint and a patient meanwhile.
    drop(client);
    let cursor = moved["cursor"].as_str().unwrap().to_string();
    move_to(&app, &journey, &p.treatment).await;
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE", "direction": "OUTBOUND", "kind": "aftercare" } }),
    )
    .await
    .data();
    let yan = app.patient("Yan").await;
    move_to(&app, &journey, &p.discharged).await;

    // Resumed after the move's cursor: exactly the asked-for events since,
    // in order, then live ones.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe(
            "again",
            JOURNEY_EVENTS,
            json!({ "types": types, "after": cursor }),
        )
        .await;
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(event_of(&client.next_of("again").await));
    }
    let summary: Vec<(String, Value)> = replayed
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["data"]["patientId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("patient.created".to_string(), json!(zoe)),
            ("journey.stage_changed".to_string(), json!(patient)),
            ("patient.created".to_string(), json!(yan)),
            ("journey.stage_changed".to_string(), json!(patient)),
        ],
        "{replayed:#?}"
    );
    let sequences: Vec<i64> = replayed
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert!(sequences[0] > moved["sequence"].as_i64().unwrap());
    let live_one = app.patient("Xan").await;
    let next = event_of(&client.next_of("again").await);
    assert_eq!(next["data"]["patientId"], live_one.as_str(), "{next}");
    assert_eq!(client.next_within(QUIET).await, None);

    // Unknown types are refused, naming the one at fault.
    let mut bad = WsClient::connect_with_token(&app, &app.token).await;
    bad.subscribe(
        "bad",
        JOURNEY_EVENTS,
        json!({ "types": ["patient.created", "journey.teleported"] }),
    )
    .await;
    let refusal = operation_error(&mut bad, "bad").await;
    assert_eq!(refusal["extensions"]["code"], "BAD_USER_INPUT", "{refusal}");
    assert_eq!(refusal["extensions"]["field"], "types[1]", "{refusal}");
}

/// The first error of operation `id`: an `error` message, or a `next` whose
/// payload carries errors and no data (then `complete`). Either way the
/// operation ends and the socket stays open.
async fn operation_error(client: &mut WsClient, id: &str) -> Value {
    let error = match client.next().await {
        WsEvent::Message(m) if m["id"] == id && m["type"] == "error" => m["payload"][0].clone(),
        WsEvent::Message(m) if m["id"] == id && m["type"] == "next" => {
            let payload = &m["payload"];
            assert!(
                payload["data"].is_null()
                    || payload["data"]
                        .as_object()
                        .is_some_and(|d| d.values().all(Value::is_null)),
                "data with the error: {m}"
            );
            let error = payload["errors"][0].clone();
            assert_eq!(
                client.next().await,
                WsEvent::Message(json!({ "type": "complete", "id": id })),
            );
            error
        }
        other => panic!("expected an error for {id}, got {other:?}"),
    };
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "pong" })),
        "the socket stays open after a refused operation"
    );
    error
}

async fn subscriptions_need_their_scope(app: TestApp) {
    use journeymap::auth::Permission;
    let no_journeys = app.token_with(&[Permission::EventsRead]).await;
    let no_events = app.token_with(&[Permission::JourneysRead]).await;

    let mut client = WsClient::connect_with_token(&app, &no_journeys).await;
    client.subscribe("s", STAGE_CHANGED, json!({})).await;
    let refusal = operation_error(&mut client, "s").await;
    assert_eq!(refusal["extensions"]["code"], "FORBIDDEN", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("journeys:read"),
        "the message names the permission: {refusal}"
    );
    // The same socket may still do what the token allows.
    client.subscribe("e", JOURNEY_EVENTS, json!({})).await;
    events_go_live(&app, &mut client, "e").await;

    let mut client = WsClient::connect_with_token(&app, &no_events).await;
    client.subscribe("e", JOURNEY_EVENTS, json!({})).await;
    let refusal = operation_error(&mut client, "e").await;
    assert_eq!(refusal["extensions"]["code"], "FORBIDDEN", "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap().contains("events:read"),
        "the message names the permission: {refusal}"
    );
}

/// Options with the WebSocket credential re-checked every second.
fn fast_recheck() -> Options {
    let mut options = Options::default();
    options.config.ws_recheck_secs = 1;
    options
}

const CREATE_TOKEN: &str = r#"mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { secret token { id expiresAt } }
}"#;

/// A socket closes with 4403 within about one re-check interval of its
/// credential being revoked, disabled or expiring; a socket whose credential
/// stays good stays open.
async fn revoked_disabled_and_expired_credentials_are_closed_with_4403(app: TestApp) {
    let p = app.pathway().await;
    let warm = warm_journey(&app, &p).await;
    let create = |expires_at: Option<String>| {
        app.gql(
            CREATE_TOKEN,
            json!({ "input": { "name": "socket", "scopes": ["journeys:read"], "expiresAt": expires_at } }),
        )
    };
    let (email, password) = app
        .staff_in("a", journeymap::auth::Role::Practitioner)
        .await;
    let signed_in = app.login("a", &email, &password).await;
    let staff_token = signed_in.data()["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let staff_id = signed_in.data()["login"]["staff"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = create(None).await;
    let revoked = &revoked.data()["createApiToken"];
    let kept = create(None).await;
    let kept = kept.data()["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // Made last, so that it is still good when its socket opens.
    let expiring = create(Some(
        (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339(),
    ))
    .await;
    let expiring = expiring.data()["createApiToken"]["secret"]
        .as_str()
        .unwrap()
        .to_string();

    let mut sockets = Vec::new();
    for token in [
        revoked["secret"].as_str().unwrap(),
        expiring.as_str(),
        staff_token.as_str(),
        kept.as_str(),
    ] {
        let mut client = WsClient::connect_with_token(&app, token).await;
        client.subscribe("s", STAGE_CHANGED, json!({})).await;
        sockets.push(client);
    }
    {
        let mut all: Vec<&mut WsClient> = sockets.iter_mut().collect();
        warm_up(
            &app.url,
            &app.token,
            &mut all,
            "s",
            &warm,
            [&p.consultation, &p.inquiry],
        )
        .await;
    }
    let [revoked_socket, expiring_socket, staff_socket, kept_socket] = &mut sockets[..] else {
        unreachable!()
    };

    let started = Instant::now();
    app.gql(
        "mutation($input: RevokeApiTokenInput!) { revokeApiToken(input: $input) { token { revokedAt } } }",
        json!({ "input": { "tokenId": revoked["token"]["id"] } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: SetStaffDisabledInput!) { setStaffDisabled(input: $input) { staff { id } } }",
        json!({ "input": { "staffId": staff_id, "disabled": true } }),
    )
    .await
    .data();
    for (what, socket) in [
        ("revoked token", revoked_socket),
        ("disabled staff member", staff_socket),
    ] {
        assert_eq!(
            close_code(socket).await,
            Some(4403),
            "the socket of a {what}"
        );
    }
    // One re-check interval (1 s), plus scheduling slack.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );
    // The token expiring 3 s after it was made: closed once it has expired.
    assert_eq!(
        close_code(expiring_socket).await,
        Some(4403),
        "an expired token"
    );

    // The token that is still good keeps its socket, and it still hears moves.
    let version =
        move_to(&app, &warm, &p.treatment).await["moveJourneyToStage"]["journey"]["version"]
            .clone();
    let next = kept_socket.next_of("s").await;
    assert_eq!(
        next["data"]["journeyStageChanged"]["journey"]["version"],
        version
    );
}

/// Mutations work over the socket too: one `next` with the payload, then
/// `complete`, and the write is as real as over HTTP; bad input is refused
/// with the same error and writes nothing.
async fn mutations_work_over_the_socket(app: TestApp) {
    const CREATE: &str = "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id givenName email } } }";
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe(
            "m",
            CREATE,
            json!({ "input": { "givenName": "Sock", "familyName": "Et", "email": "Sock@Example.com" } }),
        )
        .await;
    let next = client.next_of("m").await;
    assert!(next.get("errors").is_none(), "{next}");
    let patient = &next["data"]["createPatient"]["patient"];
    assert_eq!(patient["givenName"], "Sock");
    assert_eq!(patient["email"], "sock@example.com");
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "complete", "id": "m" }))
    );
    let id = patient["id"].as_str().unwrap();
    let read = app
        .gql(
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(read.data()["patient"]["givenName"], "Sock");
    let events = app
        .gql(
            r#"{ events(first: 10, types: ["patient.created"]) { edges { node { data } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        events.data()["events"]["edges"][0]["node"]["data"]["patientId"],
        id
    );

    let before = app.row_counts().await;
    client
        .subscribe(
            "bad",
            CREATE,
            json!({ "input": { "givenName": "Sock", "familyName": "Et", "email": "sock@" } }),
        )
        .await;
    let refusal = operation_error(&mut client, "bad").await;
    assert_eq!(refusal["extensions"]["code"], "BAD_USER_INPUT", "{refusal}");
    assert_eq!(refusal["extensions"]["field"], "input.email", "{refusal}");
    assert_eq!(
        app.row_counts().await,
        before,
        "a refused mutation wrote rows"
    );
}

on_both_backends!(
    stage_changes_arrive_live_and_resume_without_gaps,
    concurrent_commits_during_switch_over_are_not_lost,
    subscriptions_see_only_their_clinic_and_filter,
    the_patient_filter_sees_only_that_patients_journeys,
    journey_events_filter_by_type_and_resume_after_a_cursor,
    subscriptions_need_their_scope,
    revoked_disabled_and_expired_credentials_are_closed_with_4403 => fast_recheck,
    mutations_work_over_the_socket,
);

async fn close_code(client: &mut WsClient) -> Option<u16> {
    loop {
        match client.next().await {
            WsEvent::Closed(code, _) => return code,
            WsEvent::Message(_) => continue,
        }
    }
}

async fn the_protocol_is_followed(app: TestApp) {
    // Ping before init: pong.
    let mut client = WsClient::connect(&app, None).await;
    client
        .send(json!({ "type": "ping", "payload": { "x": 1 } }))
        .await;
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "pong", "payload": { "x": 1 } }))
    );
    // Subscribe before ack: 4401.
    client
        .subscribe("a", "{ viewer { name } }", json!({}))
        .await;
    assert_eq!(close_code(&mut client).await, Some(4401));

    // Bad credentials: 4403; none at all: 4403.
    let mut client = WsClient::connect(&app, None).await;
    client
        .send(
            json!({ "type": "connection_init", "payload": { "authorization": "Bearer jm_nope" } }),
        )
        .await;
    assert_eq!(close_code(&mut client).await, Some(4403));
    let mut client = WsClient::connect(&app, None).await;
    client.send(json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut client).await, Some(4403));

    // Invalid messages: 4400.
    for bad in [
        "not json",
        r#"{"type":"teleport"}"#,
        r#"{"id":"1"}"#,
        r#"{"type":"subscribe","id":"1","payload":{}}"#,
    ] {
        let mut client = WsClient::connect_with_token(&app, &app.token).await;
        client.send_raw(bad).await;
        assert_eq!(close_code(&mut client).await, Some(4400), "{bad}");
    }

    // A second connection_init: 4429.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", app.token) } }))
        .await;
    assert_eq!(close_code(&mut client).await, Some(4429));

    // A duplicate operation id while the first runs: 4409.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client.subscribe("dup", STAGE_CHANGED, json!({})).await;
    client.subscribe("dup", STAGE_CHANGED, json!({})).await;
    assert_eq!(close_code(&mut client).await, Some(4409));

    // Queries and mutations work over the socket: next, then complete.
    let mut client = WsClient::connect_with_token(&app, &app.token).await;
    client
        .subscribe("q", "{ viewer { clinic { slug } } }", json!({}))
        .await;
    let next = client.next_of("q").await;
    assert_eq!(next["data"]["viewer"]["clinic"]["slug"], "a");
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "complete", "id": "q" }))
    );
    // A validation error is an `error` message.
    client.subscribe("bad", "{ nope }", json!({})).await;
    match client.next().await {
        WsEvent::Message(m) => {
            assert_eq!(m["type"], "error");
            assert_eq!(
                m["payload"][0]["extensions"]["code"],
                "GRAPHQL_VALIDATION_FAILED"
            );
        }
        other => panic!("{other:?}"),
    }
    // The client completes a subscription; the same id may be reused
    // afterwards. The server handles a socket's messages in order, so the
    // pong proves the `complete` was handled before the second `subscribe`.
    client.subscribe("s", STAGE_CHANGED, json!({})).await;
    client.send(json!({ "type": "complete", "id": "s" })).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(
        client.next().await,
        WsEvent::Message(json!({ "type": "pong" }))
    );
    client.subscribe("s", STAGE_CHANGED, json!({})).await;
    // The reused id is a live subscription (no 4409), hearing moves.
    let p = app.pathway().await;
    let warm = warm_journey(&app, &p).await;
    go_live(&app, &mut client, "s", &warm, &p).await;

    // No subprotocol: 4406.
    let mut client = WsClient::connect(&app, Some("")).await;
    assert_eq!(close_code(&mut client).await, Some(4406));
}

on_both_backends!(the_protocol_is_followed);

/// 4408 when no connection_init arrives in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_with_4408() {
    let mut options = journeymap_tests::Options::default();
    options.config.ws_init_timeout_secs = 1;
    let app = journeymap_tests::spawn_with(journeymap_tests::Backend::Sqlite, options).await;
    let mut client = WsClient::connect(&app, None).await;
    assert_eq!(close_code(&mut client).await, Some(4408));
}
