//! A patient's timeline merges transitions, touchpoints, feedback and
//! follow-ups, newest first, and pages without gaps or repeats.

use chrono::{SecondsFormat, Utc};
use entity::{DecodeRow, feedback, journeys, patients, touchpoints};
use journeymap::{
    sea_orm::{
        ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, Iterable, QueryOrder,
        QueryResult, QuerySelect, QueryTrait,
        sqlx::{Row, ValueRef},
    },
    seed::{self, SeedOptions},
};
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::json;

fn ago(hours: i64) -> String {
    (Utc::now() - chrono::Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

const TIMELINE: &str = r#"query($id: ID!, $first: Int, $after: String) {
  patient(id: $id) {
    timeline(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { at kind item {
        __typename
        ... on StageTransition { kind toStage { key } }
        ... on Touchpoint { kind }
        ... on Feedback { score }
        ... on FollowUp { status }
      } } }
    }
  }
}"#;

async fn the_timeline_merges_everything_in_time_order(app: TestApp) {
    let pathway = app.pathway().await;
    let patient = app.patient("Ada").await;
    let journey = app
        .gql(
            "mutation($input: StartJourneyInput!) { startJourney(input: $input) { journey { id } } }",
            json!({ "input": { "patientId": patient, "pathwayId": pathway.id, "occurredAt": ago(10) } }),
        )
        .await
        .data()["startJourney"]["journey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.gql(
        "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "PHONE", "direction": "OUTBOUND", "kind": "call-back", "occurredAt": ago(9) } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }",
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation, "occurredAt": ago(6) } }),
    )
    .await
    .data();
    app.gql(
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }",
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "CSAT", "score": 5, "submittedAt": ago(5) } }),
    )
    .await
    .data();

    // Everything at once: the consultation check-in is due in 42 h, first.
    let all = app
        .gql(TIMELINE, json!({ "id": patient, "first": 20 }))
        .await;
    let timeline = &all.data()["patient"]["timeline"];
    let kinds: Vec<String> = timeline["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "FOLLOW_UP",        // the consultation check-in, due in 42 h
            "FOLLOW_UP",        // a review request for the delighted patient, due in 19 h
            "FEEDBACK",         // 5 h ago
            "STAGE_TRANSITION", // moved 6 h ago
            "FOLLOW_UP",        // the inquiry call-back, due 8 h ago (cancelled by the move)
            "TOUCHPOINT",       // 9 h ago
            "STAGE_TRANSITION", // started 10 h ago
        ]
    );
    assert_eq!(timeline["totalCount"], 7);
    let ats: Vec<&str> = timeline["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["at"].as_str().unwrap())
        .collect();
    let mut sorted = ats.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ats, sorted, "not newest first");

    // Two at a time: the same seven, no repeats, no gaps.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .gql(
                TIMELINE,
                json!({ "id": patient, "first": 2, "after": after }),
            )
            .await;
        let timeline = page.data()["patient"]["timeline"].clone();
        for edge in timeline["edges"].as_array().unwrap() {
            seen.push(edge["node"]["at"].as_str().unwrap().to_string());
        }
        if timeline["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = timeline["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
    }
    assert_eq!(seen, ats);
}

on_both_backends!(the_timeline_merges_everything_in_time_order);

const TOUCHPOINT_PAGES: &str = r#"query($first: Int, $after: String) {
  patients(first: 10) {
    nodes {
      givenName
      touchpoints(first: $first, after: $after) {
        pageInfo { hasPreviousPage hasNextPage endCursor }
        nodes { kind }
      }
    }
  }
}"#;

/// Every patient of a list gets their own page of touchpoints (one
/// statement for all of them), newest first, ties broken by id, and a cursor
/// continues each patient's list where it stopped.
async fn nested_pages_are_each_patients_own(app: TestApp) {
    let ada = app.patient("Ada").await;
    let bea = app.patient("Bea").await;
    let _cy = app.patient("Cy").await;
    // Ada: five, two of them at the same moment; Bea: two.
    for (patient, kind, hours) in [
        (&ada, "a5", 5),
        (&ada, "a4", 4),
        (&ada, "a3", 3),
        (&ada, "a2", 2),
        (&ada, "a2-same-moment", 2),
        (&bea, "b9", 9),
        (&bea, "b1", 1),
    ] {
        app.gql(
            "mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }",
            json!({ "input": { "patientId": patient, "channel": "PHONE", "direction": "OUTBOUND", "kind": kind, "occurredAt": ago(hours) } }),
        )
        .await
        .data();
    }
    let pages = |answer: &journeymap_tests::Gql| {
        let mut by_name = std::collections::BTreeMap::new();
        for node in answer.data()["patients"]["nodes"].as_array().unwrap() {
            let page = &node["touchpoints"];
            let kinds: Vec<String> = page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["kind"].as_str().unwrap().to_string())
                .collect();
            by_name.insert(
                node["givenName"].as_str().unwrap().to_string(),
                (kinds, page["pageInfo"].clone()),
            );
        }
        by_name
    };

    let first = pages(&app.gql(TOUCHPOINT_PAGES, json!({ "first": 2 })).await);
    assert_eq!(first["Ada"].0.len(), 2);
    assert!(
        first["Ada"].0.iter().all(|k| k.starts_with("a2")),
        "{first:?}"
    );
    assert_eq!(first["Ada"].1["hasNextPage"], true);
    assert_eq!(first["Ada"].1["hasPreviousPage"], false);
    assert_eq!(first["Bea"].0, ["b1", "b9"]);
    assert_eq!(first["Bea"].1["hasNextPage"], false);
    assert!(first["Cy"].0.is_empty());
    assert_eq!(first["Cy"].1["hasNextPage"], false);

    // Ada's cursor, applied to everyone: Ada's next three; Bea's rows older
    // than Ada's cursor; nothing for Cy.
    let cursor = first["Ada"].1["endCursor"].as_str().unwrap().to_string();
    let next = pages(
        &app.gql(TOUCHPOINT_PAGES, json!({ "first": 2, "after": cursor }))
            .await,
    );
    assert_eq!(next["Ada"].0, ["a3", "a4"]);
    assert_eq!(next["Ada"].1["hasNextPage"], true);
    assert_eq!(next["Ada"].1["hasPreviousPage"], true);
    assert_eq!(next["Bea"].0, ["b9"]);
    let rest = pages(
        &app.gql(
            TOUCHPOINT_PAGES,
            json!({ "first": 2, "after": next["Ada"].1["endCursor"] }),
        )
        .await,
    );
    assert_eq!(rest["Ada"].0, ["a5"]);
    assert_eq!(rest["Ada"].1["hasNextPage"], false);

    // The two at the same moment come in one order, every time.
    let again = pages(&app.gql(TOUCHPOINT_PAGES, json!({ "first": 5 })).await);
    assert_eq!(again["Ada"].0[..2], first["Ada"].0[..]);
    assert_eq!(again["Ada"].0[2..], ["a3", "a4", "a5"]);
}

on_both_backends!(nested_pages_are_each_patients_own);

/// The rows the hot reads decode (the demo clinic's patients, journeys,
/// touchpoints and feedback, NULLs among them) start with their entity's
/// columns, so they are decoded by position, to exactly what SeaORM's by-name
/// decoder gives; the same rows with their columns reversed do not, and are
/// decoded by name, to the same models.
async fn hot_rows_decode_by_position_as_by_name(app: TestApp) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 30,
            seed: 3,
        },
    )
    .await
    .expect("seed the demo clinic");
    let conn = app.db().conn();
    same_either_way::<patients::Entity>(conn, patients::Model::COLUMNS).await;
    same_either_way::<journeys::Entity>(conn, journeys::Model::COLUMNS).await;
    same_either_way::<touchpoints::Entity>(conn, touchpoints::Model::COLUMNS).await;
    same_either_way::<feedback::Entity>(conn, feedback::Model::COLUMNS).await;
}

/// Every row of `E`, in the entity's column order and reversed, ordered by id
/// (each entity's first column).
async fn same_either_way<E>(conn: &DatabaseConnection, layout: &[&str])
where
    E: EntityTrait,
    E::Model: DecodeRow + PartialEq + std::fmt::Debug,
{
    let id = E::Column::iter().next().expect("an id column");
    let backend = conn.get_database_backend();
    let in_order = E::find().order_by_asc(id).into_query();
    let rows = conn.query_all_raw(backend.build(&in_order)).await.unwrap();
    assert!(rows.len() > 10, "{}: too few rows to compare", layout[0]);
    assert!(
        rows.iter().any(has_null),
        "{layout:?}: no NULL to decode in the seeded rows"
    );
    let mut reversed = E::find().select_only();
    for column in E::Column::iter().collect::<Vec<_>>().into_iter().rev() {
        reversed = reversed.column(column);
    }
    let reversed = reversed.order_by_asc(id).into_query();
    let reversed_rows = conn.query_all_raw(backend.build(&reversed)).await.unwrap();
    assert_eq!(reversed_rows.len(), rows.len());
    for (row, reversed_row) in rows.iter().zip(&reversed_rows) {
        assert!(
            starts_with(row, layout),
            "{layout:?}: not decoded by position"
        );
        assert!(!starts_with(reversed_row, layout));
        let by_position = E::Model::decode_row(row).unwrap();
        assert_eq!(by_position, E::Model::from_query_result(row, "").unwrap());
        assert_eq!(by_position, E::Model::decode_row(reversed_row).unwrap());
    }
}

/// Whether the row's columns start with `layout` (the by-position condition).
fn starts_with(row: &QueryResult, layout: &[&str]) -> bool {
    match (row.try_as_pg_row(), row.try_as_sqlite_row()) {
        (Some(row), _) => entity::decode_row::lays_out(row.columns(), layout),
        (_, Some(row)) => entity::decode_row::lays_out(row.columns(), layout),
        _ => panic!("a row of neither PostgreSQL nor SQLite"),
    }
}

/// Whether any column of the row is NULL.
fn has_null(row: &QueryResult) -> bool {
    match (row.try_as_pg_row(), row.try_as_sqlite_row()) {
        (Some(row), _) => (0..row.len()).any(|i| row.try_get_raw(i).unwrap().is_null()),
        (_, Some(row)) => (0..row.len()).any(|i| row.try_get_raw(i).unwrap().is_null()),
        _ => panic!("a row of neither PostgreSQL nor SQLite"),
    }
}

on_both_backends!(hot_rows_decode_by_position_as_by_name);
