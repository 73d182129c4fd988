//! No N+1: the SQL statements of a nested query do not grow with the number of
//! patients it returns, neither those made while answering nor those the
//! read audit makes afterwards for it; nor do a stage change's statements grow
//! with the number of subscribers following it.

use journeymap::{
    auth::Permission,
    domain::clinics,
    seed::{self, SeedOptions},
};

use journeymap_tests::{Options, TestApp, WsClient, on_both_backends, warm_up};
use serde_json::{Value, json};

const NESTED: &str = r#"
query Nested($first: Int!) {
  patients(first: $first) {
    edges { node {
      id givenName
      journeys { status currentStage { name category } }
      touchpoints(first: 5) { edges { node { id channel emotion } } }
      feedback { edges { node { kind score } } }
    } }
  }
}"#;

/// What one nested page of `first` patients cost.
#[derive(Debug)]
struct Cost {
    /// Patients on the page.
    edges: usize,
    /// Statements made while answering.
    answering: u64,
    /// Statements the read audit made for the request afterwards.
    auditing: u64,
}

async fn statements_for(app: &TestApp, token: &str, first: usize) -> Cost {
    let request_id = format!("statements-{}", uuid::Uuid::new_v4());
    let before = app.statements().await;
    let audit_before = app.audit_statements().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .header("x-request-id", &request_id)
        .json(&json!({ "query": NESTED, "variables": { "first": first } }))
        .send()
        .await
        .expect("request");
    let body: Value = response.json().await.expect("JSON");
    let answering = app.statements().await - before;
    assert!(body.get("errors").is_none(), "{body}");
    let edges = body["data"]["patients"]["edges"].as_array().unwrap().len();

    // The read audit is written before the answer leaves: one entry naming
    // every patient on the page, indexed under each of them.
    let (entries, indexed) = audited_reads(app, &request_id).await;
    assert_eq!(
        (entries, indexed),
        (1, edges as i64),
        "read-audit entries and patients indexed for {edges} patients"
    );
    Cost {
        edges,
        answering,
        auditing: app.audit_statements().await - audit_before,
    }
}

/// `patient.read` audit entries of the request `request_id`, and the patients
/// the audit log's patient index holds for them, counted with statements the
/// server's counters do not see (`uncounted`).
async fn audited_reads(app: &TestApp, request_id: &str) -> (i64, i64) {
    use journeymap::sea_orm::ConnectionTrait;
    let db = app.db();
    let count = |sql: &'static str| {
        let statement = journeymap::db::statement(db.backend(), sql, vec![request_id.into()]);
        async move {
            let row = journeymap::db::uncounted(db.conn().query_one_raw(statement))
                .await
                .expect("count")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("n")
        }
    };
    let entries = count(
        "SELECT COUNT(*) AS n FROM audit_log WHERE request_id = ? AND action = 'patient.read'",
    )
    .await;
    let indexed = count(
        "SELECT COUNT(*) AS n FROM audit_log_patients p JOIN audit_log a ON a.id = p.audit_id \
         WHERE a.request_id = ? AND a.action = 'patient.read'",
    )
    .await;
    (entries, indexed)
}

/// No background work but the read audit: statements are counted while
/// nothing else runs (the sweeper is off by default in tests; webhook
/// workers are turned off here).
fn quiet_server() -> Options {
    let mut options = Options::default();
    options.config.webhook_concurrency = 0;
    options
}

async fn statement_count_does_not_grow_with_patients(app: TestApp) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 120,
            seed: 7,
        },
    )
    .await
    .unwrap();
    let glow = clinics::by_slug(app.db(), seed::DEMO_SLUG)
        .await
        .unwrap()
        .unwrap();
    let (_, token) = clinics::create_token(app.db(), glow.id, "n+1", &Permission::ALL, None)
        .await
        .unwrap();

    // The first request of a token also refreshes its last-used time.
    statements_for(&app, &token, 1).await;
    let ten = statements_for(&app, &token, 10).await;
    let hundred = statements_for(&app, &token, 100).await;
    assert_eq!((ten.edges, hundred.edges), (10, 100));
    eprintln!("statements: {ten:?} for 10 patients, {hundred:?} for 100 patients");
    assert_eq!(
        ten.answering, hundred.answering,
        "statements grew with the page size"
    );
    // Credential, page, journeys with their current stages, touchpoint
    // pages, feedback pages.
    assert!(
        hundred.answering <= 5,
        "{} statements for one nested page",
        hundred.answering
    );
    // The read audit of the page (one entry naming 10 or 100 patients) is one insert.
    assert_eq!(
        (ten.auditing, hundred.auditing),
        (1, 1),
        "read-audit statements grew with the page size"
    );

    // The same holds with nested connection totals.
    let counted = r#"query($first: Int!) { patients(first: $first) { totalCount edges { node {
        touchpoints(first: 2) { totalCount } feedback(first: 1) { totalCount }
        timeline(first: 1) { totalCount } accessLog(first: 1) { totalCount } } } } }"#;
    let before = app.statements().await;
    app.gql_as(Some(&token), counted, json!({ "first": 10 }))
        .await
        .data();
    let small = app.statements().await - before;
    let before = app.statements().await;
    app.gql_as(Some(&token), counted, json!({ "first": 100 }))
        .await
        .data();
    let large = app.statements().await - before;
    assert_eq!(small, large, "totals grew with the page size");
}

const STAGE_CHANGED: &str = "subscription { journeyStageChanged { id sequence journey { id version } patient { givenName } fromStage { name } toStage { name } } }";

/// Statements one stage move costs with `subscribers` sockets following it,
/// counted once every subscriber has its message.
async fn statements_of_a_fanned_out_move(
    app: &TestApp,
    journey: &str,
    stage: &str,
    subscribers: usize,
    warm: (&str, [&str; 2]),
) -> u64 {
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        let mut client = WsClient::connect_with_token(app, &app.token).await;
        client.subscribe("s", STAGE_CHANGED, json!({})).await;
        clients.push(client);
    }
    // Subscriptions have no acknowledgement: prove them all live first.
    {
        let mut all: Vec<&mut WsClient> = clients.iter_mut().collect();
        warm_up(&app.url, &app.token, &mut all, "s", warm.0, warm.1).await;
    }
    // A token's last-used time is refreshed at most once a minute, by
    // whichever request comes first after that: on a slow machine that could
    // be the measured move of one run and not the other. Hold it off.
    hold_off_last_used(app).await;
    let before = app.statements().await;
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { version } } }",
        json!({ "input": { "journeyId": journey, "stageId": stage } }),
    )
    .await
    .data();
    for client in &mut clients {
        let next = client.next_of("s").await;
        assert_eq!(
            next["data"]["journeyStageChanged"]["patient"]["givenName"],
            "Fan"
        );
    }
    app.statements().await - before
}

/// Marks every token as used a day from now, so no request refreshes its
/// last-used time while statements are counted.
async fn hold_off_last_used(app: &TestApp) {
    use journeymap::sea_orm::ConnectionTrait;
    let db = app.db();
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    let statement = journeymap::db::statement(
        db.backend(),
        "UPDATE api_tokens SET last_used_at = ?",
        vec![later.into()],
    );
    journeymap::db::uncounted(db.conn().execute_raw(statement))
        .await
        .expect("hold off last-used refreshes");
}

async fn statement_count_does_not_grow_with_subscribers(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Fan").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    let warm_patient = app.patient("Warm").await;
    let warm_journey = app.start_journey(&warm_patient, &pathway.id).await;
    let warm = (
        warm_journey.as_str(),
        [pathway.consultation.as_str(), pathway.inquiry.as_str()],
    );
    let one = statements_of_a_fanned_out_move(&app, &journey, &pathway.consultation, 1, warm).await;
    // Under load a subscriber can fall behind the bus and catch up from the
    // log (one read, by design): the least of three moves is the move's own
    // cost. A per-subscriber statement would show in every one of them.
    let mut many = u64::MAX;
    for stage in [
        &pathway.treatment,
        &pathway.consultation,
        &pathway.treatment,
    ] {
        many = many.min(statements_of_a_fanned_out_move(&app, &journey, stage, 25, warm).await);
        if many <= one {
            break;
        }
    }
    assert_eq!(
        one, many,
        "a move followed by 1 subscriber cost {one} statements, by 25 subscribers {many}"
    );
}

on_both_backends!(
    statement_count_does_not_grow_with_subscribers,
    statement_count_does_not_grow_with_patients => quiet_server,
);
