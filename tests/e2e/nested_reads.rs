//! The rows below a nested page (journeys and their current stage,
//! touchpoints, feedback) are answered in one pass when their selection is
//! plain (`graphql::plain`), and by async-graphql's resolvers otherwise. A
//! client cannot tell which: the demo clinic's answers are the same either
//! way, field for field, refusals included.

use journeymap::{
    auth::Permission,
    domain::clinics,
    seed::{self, SeedOptions},
};
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::{Value, json};

/// Every plain field of the nested types, with `__typename`, aliases,
/// cursors, page info and `nodes`.
const EVERY_PLAIN_FIELD: &str = r#"query($first: Int!) { patients(first: $first) { edges { node {
  id
  journeys {
    __typename status version stageEnteredAt stallsAt stalled hoursInStage
    startedAt endedAt endReason id{resolved}
    currentStage { __typename id key name category position targetHours terminal
      rebookAfterDays winBackAfterDays }
    stage: currentStage { label: name }
  }
  touchpoints(first: 5) {
    __typename
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { __typename cursor node { __typename channel direction kind summary
      occurredAt emotion momentOfTruth externalRef id{resolved} } }
    nodes { id when: occurredAt }
  }
  feedback(first: 3) {
    edges { cursor node { kind score comment submittedAt id{resolved} } }
    pageInfo { endCursor }
  }
  journeyTouchpoints: journeys { touchpoints(first: 2) { edges { node { kind id{resolved} } } } }
} } } }"#;

/// The page of W1 in `journeymap bench`, `{resolved}` on the patient.
const PATIENT_PAGE: &str = r#"query($first: Int!) { patients(first: $first) {
  pageInfo { endCursor hasNextPage }
  edges { node {
    id givenName familyName{resolved}
    journeys { id status stalled currentStage { id name category } }
    touchpoints(first: 5) { edges { node { id channel occurredAt emotion } } }
    feedback(first: 3) { edges { node { id kind score } } }
  } }
} }"#;

/// What a caller with only `journeys:read` may see of journeys: their
/// touchpoints, but not what staff wrote in them.
const JOURNEYS_AND_THEIR_TOUCHPOINTS: &str = r#"query($first: Int!) { journeys(first: $first) { edges { node {
  id status endReason
  touchpoints(first: 5) { edges { cursor node { kind channel summary occurredAt id{resolved}
  } } }
} } } }"#;

async fn nested_reads_answer_the_same_plain_or_resolved(app: TestApp) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 30,
            seed: 5,
        },
    )
    .await
    .expect("seed the demo clinic");
    let glow = clinics::by_slug(app.db(), seed::DEMO_SLUG)
        .await
        .unwrap()
        .unwrap();
    let (_, everything) = clinics::create_token(app.db(), glow.id, "all", &Permission::ALL, None)
        .await
        .unwrap();
    let (plain, tallies) = same_either_way(&app, &everything, EVERY_PLAIN_FIELD).await;
    assert!(plain.get("errors").is_none(), "{}", plain["errors"]);
    let edges = plain["data"]["patients"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 30);
    let count = |connection: &str| -> usize {
        edges
            .iter()
            .map(|e| e["node"][connection]["edges"].as_array().unwrap().len())
            .sum()
    };
    assert!(
        count("touchpoints") > 30 && count("feedback") > 10,
        "too few rows to compare"
    );

    // Every list of journeys, touchpoint page and feedback page is a plain
    // value: each patient's four, and the touchpoints of each journey. All
    // are answered in one pass but each patient's second list of journeys
    // (it selects their touchpoints, which load) when one has any. With the
    // fragments, only the empty ones are (the fragment is in their items).
    // The page of patients is a plain value too, answered by the resolvers
    // both times (the journeys' touchpoints are not read ahead).
    let len = |value: &Value| value.as_array().map_or(0, Vec::len);
    let (mut values, mut second_lists, mut empty) = (0, 0, 0);
    for patient in edges.iter().map(|e| &e["node"]) {
        let journeys = patient["journeyTouchpoints"].as_array().unwrap();
        values += 4 + journeys.len();
        second_lists += usize::from(!journeys.is_empty());
        let lists = [
            &patient["journeys"],
            &patient["journeyTouchpoints"],
            &patient["touchpoints"]["edges"],
            &patient["feedback"]["edges"],
        ];
        let pages = journeys.iter().map(|j| &j["touchpoints"]["edges"]);
        empty += lists
            .into_iter()
            .chain(pages)
            .filter(|v| len(v) == 0)
            .count();
    }
    let (values, second_lists, empty) = (values as u64, second_lists as u64, empty as u64);
    assert_eq!(
        tallies,
        [
            (values - second_lists, second_lists + 1),
            (empty, values - empty + 1)
        ],
        "plain values: in one pass and by the resolvers, as written and with fragments"
    );
    assert!(second_lists > 20 && empty < values / 2);

    // A page front ends page through all day: the patients' journeys,
    // touchpoints and feedback are read ahead for the whole page, which is
    // then answered in one pass (one plain value, the page, with every list
    // inside it), with the same statements as the loaders'. With a fragment
    // on the patient, the page goes to the resolvers, and each of its 90
    // lists is answered in one pass from the rows read ahead.
    let before = statements(&app).await;
    let (plain, tallies) = same_either_way(&app, &everything, PATIENT_PAGE).await;
    assert!(plain.get("errors").is_none(), "{}", plain["errors"]);
    assert_eq!(
        tallies,
        [(1, 0), (90, 1)],
        "the page in one pass, then with a fragment"
    );
    let per_request = (statements(&app).await - before) / 2.0;
    assert!(per_request <= 5.0, "{per_request} statements a page");

    // `totalCount` is counted beside the reads ahead, and the page is still
    // answered in one pass, with one statement more.
    let counted = PATIENT_PAGE.replace("pageInfo {", "totalCount pageInfo {");
    let before = statements(&app).await;
    let (plain, tallies) = same_either_way(&app, &everything, &counted).await;
    assert_eq!(plain["data"]["patients"]["totalCount"], 30, "{plain}");
    assert_eq!(tallies, [(1, 0), (90, 1)], "a counted page in one pass");
    let per_request = (statements(&app).await - before) / 2.0;
    assert!(
        per_request <= 6.0,
        "{per_request} statements a counted page"
    );

    // Free text (summaries, end reasons) needs patients:read: refused field
    // by field, the same way whichever path answers.
    let (_, journeys_only) = clinics::create_token(
        app.db(),
        glow.id,
        "journeys",
        &[Permission::JourneysRead],
        None,
    )
    .await
    .unwrap();
    let (plain, _) = same_either_way(&app, &journeys_only, JOURNEYS_AND_THEIR_TOUCHPOINTS).await;
    let errors = plain["errors"].as_array().expect("refusals");
    assert!(
        errors
            .iter()
            .any(|e| e["path"].to_string().contains("summary"))
    );
    for error in errors {
        assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{error}");
    }
    let first = &plain["data"]["journeys"]["edges"][0]["node"];
    let touchpoint = &first["touchpoints"]["edges"][0]["node"];
    assert!(touchpoint["summary"].is_null() && touchpoint["kind"].is_string());
}

/// The answer to `document` with `typename: __typename` at `{resolved}`,
/// after checking it is the same with `... { typename: __typename }` there:
/// the fragment sends each nested value back to the resolvers without
/// changing what is selected. (`{resolved}` ends its line, so that the
/// locations of errors do not move.) Also
/// returns how each request's plain values were answered (in one pass, by
/// the resolvers), from `/metrics`.
async fn same_either_way(app: &TestApp, token: &str, document: &str) -> (Value, [(u64, u64); 2]) {
    let mut answers = Vec::new();
    let mut tallies = [(0, 0); 2];
    for (tally, typename) in tallies
        .iter_mut()
        .zip([" typename: __typename", " ... { typename: __typename }"])
    {
        let before = plain_values(app).await;
        let answer = app
            .gql_as(
                Some(token),
                &document.replace("{resolved}", typename),
                json!({ "first": 30 }),
            )
            .await;
        answers.push(answer.body);
        let after = plain_values(app).await;
        *tally = (after.0 - before.0, after.1 - before.1);
    }
    let [plain, resolved] = &mut answers[..] else {
        unreachable!()
    };
    // Hours in a stage count on between the two requests.
    let (plain_hours, resolved_hours) = (take_hours(plain), take_hours(resolved));
    assert_eq!(plain_hours.len(), resolved_hours.len());
    for (a, b) in plain_hours.iter().zip(&resolved_hours) {
        assert!((a - b).abs() <= 0.011, "hours in stage {a} and {b}");
    }
    sort_errors(plain);
    sort_errors(resolved);
    assert_eq!(plain, resolved);
    (answers.swap_remove(0), tallies)
}

/// The server's count of plain values answered in one pass and by the
/// resolvers (0 until the first).
async fn plain_values(app: &TestApp) -> (u64, u64) {
    let metrics = app.metrics().await;
    let count = |answered_by: &str| {
        let series =
            format!("journeymap_graphql_plain_values_total{{answered_by=\"{answered_by}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (count("one_pass"), count("resolvers"))
}

/// SQL statements the server made so far (`/metrics`).
async fn statements(app: &TestApp) -> f64 {
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix("journeymap_db_statements_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("journeymap_db_statements_total in /metrics")
}

/// Removes every `hoursInStage` from `value`, returning them in order.
fn take_hours(value: &mut Value) -> Vec<f64> {
    let mut hours = Vec::new();
    fn walk(value: &mut Value, hours: &mut Vec<f64>) {
        match value {
            Value::Object(map) => {
                if let Some(h) = map.remove("hoursInStage") {
                    hours.push(h.as_f64().expect("hours are a number"));
                }
                map.values_mut().for_each(|v| walk(v, hours));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, hours)),
            _ => {}
        }
    }
    walk(value, &mut hours);
    hours
}

/// Errors come in the order their fields finish: compare them as a set.
fn sort_errors(body: &mut Value) {
    if let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) {
        errors.sort_by_key(|e| e.to_string());
    }
}

on_both_backends!(nested_reads_answer_the_same_plain_or_resolved);
