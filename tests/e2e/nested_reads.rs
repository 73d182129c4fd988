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
    startedAt endedAt endReason id{include}
    currentStage { __typename id key name category position targetHours terminal
      rebookAfterDays winBackAfterDays }
    stage: currentStage { label: name }
  }
  touchpoints(first: 5) {
    __typename
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { __typename cursor node { __typename channel direction kind summary
      occurredAt emotion momentOfTruth externalRef id{include} } }
    nodes { id when: occurredAt }
  }
  feedback(first: 3) {
    edges { cursor node { kind score comment submittedAt id{include} } }
    pageInfo { endCursor }
  }
  journeyTouchpoints: journeys { touchpoints(first: 2) { edges { node { kind id{include} } } } }
} } } }"#;

/// What a caller with only `journeys:read` may see of journeys: their
/// touchpoints, but not what staff wrote in them.
const JOURNEYS_AND_THEIR_TOUCHPOINTS: &str = r#"query($first: Int!) { journeys(first: $first) { edges { node {
  id status endReason
  touchpoints(first: 5) { edges { cursor node { kind channel summary occurredAt id{include}
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
    let plain = same_either_way(&app, &everything, EVERY_PLAIN_FIELD).await;
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
    let plain = same_either_way(&app, &journeys_only, JOURNEYS_AND_THEIR_TOUCHPOINTS).await;
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

/// The answer to `document` (its `{include}` removed) after checking it is
/// the same with `@include(if: true)` there, which sends each nested value
/// back to the resolvers without changing what is selected. (`{include}`
/// ends its line, so that the locations of errors do not move.)
async fn same_either_way(app: &TestApp, token: &str, document: &str) -> Value {
    let mut answers = Vec::new();
    for include in ["", " @include(if: true)"] {
        let answer = app
            .gql_as(
                Some(token),
                &document.replace("{include}", include),
                json!({ "first": 30 }),
            )
            .await;
        answers.push(answer.body);
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
    answers.swap_remove(0)
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
