//! GraphQL over HTTP: content types, media types, GET and batches; the limits
//! that refuse a request before it runs (depth, complexity, aliases, body
//! size, cost budget); what anonymous callers and errors reveal; request ids;
//! health and metrics.

use std::time::Duration;

use journeymap_tests::{Options, TestApp, on_both_backends};
use reqwest::{
    StatusCode,
    header::{self, HeaderMap},
};
use serde_json::{Value, json};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A mutation that writes a patient (and a `patient.created` event) when it runs.
const CREATE_PATIENT: &str = r#"mutation { createPatient(input: { givenName: "Ines", familyName: "Okafor" }) { patient { id } } }"#;

/// Text that only a database (or a panic) would put in an error.
const DATABASE_TEXT: &[&str] = &[
    "sql",
    "postgres",
    "database",
    "sea_orm",
    "seaorm",
    "dberr",
    "constraint",
    "violates",
    "relation",
    "no such table",
    "select ",
    "panicked",
];

/// An HTTP answer as the client sees it.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    body: Option<Value>,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).ok();
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// The body as JSON, or a failure quoting what came back.
    #[track_caller]
    fn json(&self) -> &Value {
        self.body.as_ref().unwrap_or_else(|| {
            panic!(
                "HTTP {} answered with a body that is not JSON ({:?}): {}",
                self.status,
                self.header("content-type"),
                self.text
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default().to_string()
    }

    /// The `extensions.code` of the first error.
    fn code(&self) -> Option<&str> {
        self.body.as_ref()?["errors"][0]["extensions"]["code"].as_str()
    }

    /// Asserts the status, that there are errors and every one has `code`
    /// and a message, and that nothing ran (no `data`).
    #[track_caller]
    fn assert_refused(&self, status: StatusCode, code: &str, context: &str) {
        assert_eq!(
            self.status, status,
            "{context}: expected HTTP {status}, got {} with {}",
            self.status, self.text
        );
        let errors = self.json()["errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!errors.is_empty(), "{context}: no errors in {}", self.text);
        for error in &errors {
            assert_eq!(
                error["extensions"]["code"].as_str(),
                Some(code),
                "{context}: expected every extensions.code to be {code} in {}",
                self.text
            );
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| !m.trim().is_empty()),
                "{context}: an error without a message in {}",
                self.text
            );
        }
        assert!(
            self.json()["data"].is_null(),
            "{context}: a refused request must not run: {}",
            self.text
        );
    }
}

fn graphql_url(app: &TestApp) -> String {
    format!("{}/graphql", app.url)
}

/// POSTs `body` as `application/json` with the app's token and `accept`.
async fn post_json(app: &TestApp, accept: Option<&str>, body: &Value) -> Reply {
    let mut request = app
        .client
        .post(graphql_url(app))
        .bearer_auth(&app.token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).unwrap());
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    Reply::read(request.send().await.expect("request")).await
}

/// POSTs one operation with `token` (or none).
async fn post_as(app: &TestApp, token: Option<&str>, query: &str) -> Reply {
    let mut request = app
        .client
        .post(graphql_url(app))
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await.expect("request")).await
}

/// GETs `/graphql` with `params` and extra `headers`, with the app's token.
async fn get(app: &TestApp, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
    let mut request = app
        .client
        .get(graphql_url(app))
        .bearer_auth(&app.token)
        .query(params);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request.send().await.expect("request")).await
}

/// Asserts nothing was written since `before`.
async fn assert_nothing_written(app: &TestApp, before: &[(&'static str, i64)], context: &str) {
    let after = app.row_counts().await;
    assert_eq!(before, after.as_slice(), "{context}: rows were written");
}

/// Asserts a body quotes no database text.
fn assert_no_database_text(text: &str, context: &str) {
    let lower = text.to_lowercase();
    for needle in DATABASE_TEXT {
        assert!(
            !lower.contains(needle),
            "{context}: the answer quotes {needle:?}: {text}"
        );
    }
}

// --- GraphQL over HTTP --------------------------------------------------

async fn post_needs_a_json_content_type(app: TestApp) {
    let before = app.row_counts().await;
    let body = serde_json::to_string(&json!({ "query": CREATE_PATIENT })).unwrap();
    let form = format!(
        "query={}",
        url_encode(CREATE_PATIENT) // a plain HTML form would post this
    );
    let cases: [(Option<&str>, String); 4] = [
        (Some("text/plain"), body.clone()),
        (Some("text/plain;charset=UTF-8"), body.clone()),
        (Some("application/x-www-form-urlencoded"), form),
        (None, body.clone()),
    ];
    for (content_type, payload) in cases {
        let mut request = app
            .client
            .post(graphql_url(&app))
            .bearer_auth(&app.token)
            .body(payload);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = Reply::read(request.send().await.expect("request")).await;
        let context = format!("POST with Content-Type {content_type:?}");
        reply.assert_refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            &context,
        );
        assert_nothing_written(&app, &before, &context).await;
    }

    // The same mutation as application/json runs (and writes).
    let reply = post_json(&app, None, &json!({ "query": CREATE_PATIENT })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.json()["data"]["createPatient"]["patient"]["id"].is_string(),
        "{}",
        reply.text
    );
    let after = app.row_counts().await;
    assert_ne!(
        before, after,
        "the JSON request should have written a patient"
    );
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn malformed_json_is_a_bad_request(app: TestApp) {
    let before = app.row_counts().await;
    for accept in [None, Some("application/json"), Some(GRAPHQL_RESPONSE_JSON)] {
        for (what, payload) in [
            ("truncated JSON", r#"{"query": "{ viewer { name } }""#.to_string()),
            (
                "truncated mutation",
                r#"{"query": "mutation { createPatient(input: {givenName: \"A\", familyName: \"B\"}) { patient { id } } }""#.to_string(),
            ),
            ("not JSON", "query { viewer { name } }".to_string()),
            ("a JSON string", r#""{ viewer { name } }""#.to_string()),
            ("no query", r#"{"variables": {}}"#.to_string()),
            ("a query that is not a string", r#"{"query": 5}"#.to_string()),
        ] {
            let mut request = app
                .client
                .post(graphql_url(&app))
                .bearer_auth(&app.token)
                .header(header::CONTENT_TYPE, "application/json")
                .body(payload);
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            let reply = Reply::read(request.send().await.expect("request")).await;
            let context = format!("{what} with Accept {accept:?}");
            reply.assert_refused(StatusCode::BAD_REQUEST, "BAD_REQUEST", &context);
        }
    }
    assert_nothing_written(&app, &before, "malformed bodies").await;
}

async fn graphql_response_json_gets_http_status_codes(app: TestApp) {
    let ok = json!({ "query": "{ viewer { name } }" });
    let parse_error = json!({ "query": "{ viewer { name " });
    let validation_error = json!({ "query": "{ viewer { name nope } }" });

    // application/graphql-response+json: the answer says so, and requests
    // that do not parse or validate are 400.
    let reply = post_json(&app, Some(GRAPHQL_RESPONSE_JSON), &ok).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.content_type().starts_with(GRAPHQL_RESPONSE_JSON),
        "content type {}",
        reply.content_type()
    );
    assert_eq!(reply.json()["data"]["viewer"]["name"], "test");

    let reply = post_json(&app, Some(GRAPHQL_RESPONSE_JSON), &parse_error).await;
    reply.assert_refused(
        StatusCode::BAD_REQUEST,
        "GRAPHQL_PARSE_FAILED",
        "parse error with graphql-response+json",
    );
    assert!(reply.content_type().starts_with(GRAPHQL_RESPONSE_JSON));

    let reply = post_json(&app, Some(GRAPHQL_RESPONSE_JSON), &validation_error).await;
    reply.assert_refused(
        StatusCode::BAD_REQUEST,
        "GRAPHQL_VALIDATION_FAILED",
        "unknown field with graphql-response+json",
    );
    assert!(reply.content_type().starts_with(GRAPHQL_RESPONSE_JSON));

    // Preferred among several.
    let reply = post_json(
        &app,
        Some("application/json;q=0.9, application/graphql-response+json"),
        &validation_error,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply.content_type().starts_with(GRAPHQL_RESPONSE_JSON));

    // application/json (and no Accept at all): 200 with errors.
    for accept in [Some("application/json"), None] {
        for (what, body, code) in [
            ("parse error", &parse_error, "GRAPHQL_PARSE_FAILED"),
            (
                "unknown field",
                &validation_error,
                "GRAPHQL_VALIDATION_FAILED",
            ),
        ] {
            let reply = post_json(&app, accept, body).await;
            let context = format!("{what} with Accept {accept:?}");
            reply.assert_refused(StatusCode::OK, code, &context);
            assert!(
                reply.content_type().starts_with("application/json"),
                "{context}: content type {}",
                reply.content_type()
            );
        }
        let reply = post_json(&app, accept, &ok).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.content_type().starts_with("application/json"));
        assert_eq!(reply.json()["data"]["viewer"]["name"], "test");
    }
}

async fn unacceptable_accept_is_406(app: TestApp) {
    let before = app.row_counts().await;
    let reply = post_json(&app, Some("text/xml"), &json!({ "query": CREATE_PATIENT })).await;
    reply.assert_refused(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "POST with Accept: text/xml",
    );
    assert_nothing_written(&app, &before, "POST with Accept: text/xml").await;

    let reply = post_json(
        &app,
        Some("application/json;q=0"),
        &json!({ "query": "{ viewer { name } }" }),
    )
    .await;
    reply.assert_refused(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "POST with Accept: application/json;q=0",
    );

    let reply = get(
        &app,
        &[("query", "{viewer{name}}")],
        &[("accept", "text/xml")],
    )
    .await;
    reply.assert_refused(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "GET with Accept: text/xml",
    );
}

async fn get_runs_queries(app: TestApp) {
    let reply = get(&app, &[("query", "{viewer{name}}")], &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.json()["data"]["viewer"]["name"],
        "test",
        "{}",
        reply.text
    );

    app.patient("Gia").await;
    let reply = get(
        &app,
        &[
            (
                "query",
                "query Other { viewer { name } } query Count($first: Int) { patients(first: $first) { totalCount edges { node { id } } } }",
            ),
            ("operationName", "Count"),
            ("variables", r#"{"first": 1}"#),
        ],
        &[("accept", GRAPHQL_RESPONSE_JSON)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.json()["data"]["patients"]["totalCount"],
        1,
        "{}",
        reply.text
    );
    assert!(reply.content_type().starts_with(GRAPHQL_RESPONSE_JSON));

    let reply = get(
        &app,
        &[("query", "{viewer{name}}"), ("variables", "[1]")],
        &[],
    )
    .await;
    reply.assert_refused(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        "GET with variables that are not an object",
    );
}

async fn get_refuses_mutations(app: TestApp) {
    let before = app.row_counts().await;
    let named = format!(
        "query Q {{ viewer {{ name }} }} {}",
        CREATE_PATIENT.replacen("mutation", "mutation M", 1)
    );
    for params in [
        vec![("query", CREATE_PATIENT)],
        vec![("query", named.as_str()), ("operationName", "M")],
    ] {
        let reply = get(&app, &params, &[]).await;
        reply.assert_refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("GET {params:?}"),
        );
        let allow = reply
            .header("allow")
            .unwrap_or_default()
            .to_ascii_uppercase();
        assert!(
            allow.split(',').any(|m| m.trim() == "POST"),
            "GET with a mutation: Allow is {allow:?}"
        );
        assert_nothing_written(&app, &before, "GET with a mutation").await;
    }
}

async fn get_serves_graphiql_to_browsers(app: TestApp) {
    let reply = Reply::read(
        app.client
            .get(graphql_url(&app))
            .header(
                header::ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.content_type().starts_with("text/html"),
        "content type {}",
        reply.content_type()
    );
    let page = reply.text.to_lowercase();
    assert!(
        page.contains("<html") && page.contains("graphiql"),
        "{page}"
    );
}

async fn batches_run_up_to_max_batch(app: TestApp) {
    let max = Options::default().config.max_batch;
    let batch: Vec<Value> = (0..max)
        .map(|_| json!({ "query": "{ viewer { name } }" }))
        .collect();
    let reply = post_json(&app, None, &Value::Array(batch)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let answers = reply
        .json()
        .as_array()
        .expect("an array of answers")
        .clone();
    assert_eq!(answers.len(), max);
    for answer in &answers {
        assert_eq!(answer["data"]["viewer"]["name"], "test", "{answer}");
    }

    // Mutations in a batch run, in order.
    let before = app.row_counts().await;
    let reply = post_json(
        &app,
        None,
        &json!([{ "query": CREATE_PATIENT }, { "query": "{ patients { totalCount } }" }]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let answers = reply
        .json()
        .as_array()
        .expect("an array of answers")
        .clone();
    assert!(answers[0]["data"]["createPatient"]["patient"]["id"].is_string());
    assert_eq!(answers[1]["data"]["patients"]["totalCount"], 1);
    assert_ne!(before, app.row_counts().await);

    // One more than allowed: refused whole, nothing runs.
    let before = app.row_counts().await;
    let too_many: Vec<Value> = (0..=max)
        .map(|_| json!({ "query": CREATE_PATIENT }))
        .collect();
    for accept in [None, Some(GRAPHQL_RESPONSE_JSON)] {
        let reply = post_json(&app, accept, &Value::Array(too_many.clone())).await;
        reply.assert_refused(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("a batch of {} with Accept {accept:?}", max + 1),
        );
    }
    assert_nothing_written(&app, &before, "an over-long batch").await;

    let reply = post_json(&app, None, &json!([])).await;
    reply.assert_refused(StatusCode::BAD_REQUEST, "BAD_REQUEST", "an empty batch");
}

// --- limits ---------------------------------------------------------------

/// `createPatient { patient { journeys { patient { journeys { … id } } } } }`:
/// `levels` fields deep, `createPatient` and the final `id` included.
fn deep_mutation(levels: usize) -> String {
    let mut selection = "id".to_string();
    for level in (1..levels.saturating_sub(1)).rev() {
        let name = if level % 2 == 1 {
            "patient"
        } else {
            "journeys"
        };
        selection = format!("{name} {{ {selection} }}");
    }
    format!(
        r#"mutation {{ createPatient(input: {{ givenName: "Deep", familyName: "Query" }}) {{ {selection} }} }}"#
    )
}

async fn over_deep_queries_are_refused(app: TestApp) {
    let max = Options::default().config.max_query_depth;
    let before = app.row_counts().await;

    let query = deep_mutation(max + 4);
    for (accept, status) in [
        (None, StatusCode::OK),
        (Some(GRAPHQL_RESPONSE_JSON), StatusCode::BAD_REQUEST),
    ] {
        let reply = post_json(&app, accept, &json!({ "query": query })).await;
        reply.assert_refused(
            status,
            "GRAPHQL_VALIDATION_FAILED",
            &format!("a mutation nested {} deep with Accept {accept:?}", max + 4),
        );
        let message = reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(message.contains("deep"), "unclear message: {message}");
    }
    assert_nothing_written(&app, &before, "an over-deep mutation").await;

    // A query well within the limit runs.
    let reply = post_json(
        &app,
        None,
        &json!({ "query": "{ patients { edges { node { journeys { patient { id } } } } } }" }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json()["errors"].is_null(), "{}", reply.text);
}

async fn over_complex_queries_are_refused(app: TestApp) {
    let before = app.row_counts().await;
    // 100 patients × 100 touchpoints each: ~40,000 against 20,000.
    let query = "{ patients(first: 100) { edges { node { id touchpoints(first: 100) { edges { node { id summary } } } } } } }";
    let reply = post_json(&app, None, &json!({ "query": query })).await;
    reply.assert_refused(
        StatusCode::OK,
        "GRAPHQL_VALIDATION_FAILED",
        "nested connections of 100",
    );
    let message = reply.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(message.contains("complex"), "unclear message: {message}");

    let mutation = r#"mutation { createPatient(input: { givenName: "Costly", familyName: "Query" }) {
      patient { touchpoints(first: 100) { edges { node { patient { touchpoints(first: 100) { edges { node { id } } } } } } } }
    } }"#;
    let reply = post_json(
        &app,
        Some(GRAPHQL_RESPONSE_JSON),
        &json!({ "query": mutation }),
    )
    .await;
    reply.assert_refused(
        StatusCode::BAD_REQUEST,
        "GRAPHQL_VALIDATION_FAILED",
        "an over-complex mutation",
    );
    assert_nothing_written(&app, &before, "an over-complex mutation").await;

    // Smaller pages of the same shape run.
    let reply = post_json(
        &app,
        None,
        &json!({ "query": "{ patients(first: 10) { edges { node { id touchpoints(first: 10) { edges { node { id summary } } } } } } }" }),
    )
    .await;
    assert!(reply.json()["errors"].is_null(), "{}", reply.text);
}

async fn alias_bombs_are_refused(app: TestApp) {
    let max = Options::default().config.max_aliases;
    let before = app.row_counts().await;
    let bomb: String = (0..50)
        .map(|i| format!("a{i}: viewer {{ name }}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(50 > max);
    let query = format!("{{ {bomb} }}");
    for token in [Some(app.token.as_str()), None] {
        let reply = post_as(&app, token, &query).await;
        reply.assert_refused(
            StatusCode::OK,
            "GRAPHQL_VALIDATION_FAILED",
            &format!("50 aliases (token: {})", token.is_some()),
        );
        let message = reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(message.contains("alias"), "unclear message: {message}");
    }

    // Aliases hidden in a fragment count too.
    let fragment = format!("{{ ...F }} fragment F on Query {{ {bomb} }}");
    let reply = post_as(&app, Some(&app.token), &fragment).await;
    reply.assert_refused(
        StatusCode::OK,
        "GRAPHQL_VALIDATION_FAILED",
        "50 aliases in a fragment",
    );

    let mutation: String = (0..50)
        .map(|i| {
            format!(
                r#"p{i}: createPatient(input: {{ givenName: "Alias{i}", familyName: "Bomb" }}) {{ patient {{ id }} }}"#
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let reply = post_json(
        &app,
        Some(GRAPHQL_RESPONSE_JSON),
        &json!({ "query": format!("mutation {{ {mutation} }}") }),
    )
    .await;
    reply.assert_refused(
        StatusCode::BAD_REQUEST,
        "GRAPHQL_VALIDATION_FAILED",
        "50 aliased createPatient",
    );
    assert_nothing_written(&app, &before, "an alias bomb").await;

    // A few aliases are fine.
    let few: String = (0..5)
        .map(|i| format!("a{i}: viewer {{ name }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let reply = post_as(&app, Some(&app.token), &format!("{{ {few} }}")).await;
    assert_eq!(reply.json()["data"]["a4"]["name"], "test", "{}", reply.text);
}

async fn oversized_bodies_are_413(app: TestApp) {
    let max = Options::default().config.max_body_bytes;
    let before = app.row_counts().await;
    let body = json!({
        "query": "mutation($input: CreatePatientInput!) { createPatient(input: $input) { patient { id } } }",
        "variables": { "input": { "givenName": "Big", "familyName": "Body", "source": "x".repeat(max + 1024) } },
    });
    let reply = post_json(&app, None, &body).await;
    reply.assert_refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        &format!("a body of {} bytes", max + 1024),
    );
    assert!(
        reply.content_type().starts_with("application/json"),
        "413 as {:?}",
        reply.content_type()
    );
    assert_nothing_written(&app, &before, "an oversized body").await;
    assert!(
        reply.header("x-request-id").is_some(),
        "413 without x-request-id"
    );
}

// --- admission ------------------------------------------------------------

/// One operation at a time and none waiting: whatever arrives while one runs
/// is refused.
fn one_at_a_time() -> Options {
    let mut options = Options::default();
    options.config.max_concurrent_requests = 1;
    options.config.max_waiting_requests = 0;
    options
}

fn patients_in(counts: &[(&'static str, i64)]) -> i64 {
    counts
        .iter()
        .find(|(table, _)| *table == "patients")
        .map(|(_, n)| *n)
        .expect("a patients count")
}

async fn a_full_server_refuses_with_overloaded(app: TestApp) {
    let before = app.row_counts().await;
    let read = "{ patients(first: 50) { edges { node { id givenName journeys { id currentStage { name } } touchpoints(first: 5) { edges { node { id } } } } } } }";
    let create = r#"mutation { createPatient(input: { givenName: "Over", familyName: "Loaded" }) { patient { id } } }"#;
    let replies = futures::future::join_all((0..60).map(|i| {
        let query = if i % 4 == 0 { create } else { read };
        let app = &app;
        async move { (query == create, post_as(app, Some(&app.token), query).await) }
    }))
    .await;
    let (mut answered, mut refused, mut created) = (0, 0, 0);
    for (is_create, reply) in &replies {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            reply.assert_refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "OVERLOADED",
                "an operation beyond the limit",
            );
            assert_eq!(retry_after_seconds(reply), 1, "{}", reply.text);
            assert_eq!(
                reply.header("retry-after"),
                Some("1"),
                "{:?}",
                reply.headers
            );
            assert_no_database_text(&reply.text, "OVERLOADED");
            refused += 1;
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            assert!(reply.json()["errors"].is_null(), "{}", reply.text);
            answered += 1;
            created += usize::from(*is_create);
        }
    }
    assert!(answered >= 1, "nothing was answered");
    assert!(
        refused >= 1,
        "60 operations at once against a limit of one running and none waiting were all answered"
    );
    // A refused mutation wrote nothing; an answered one its patient.
    let after = app.row_counts().await;
    assert_eq!(
        patients_in(&after) - patients_in(&before),
        created as i64,
        "patients written by {created} answered mutations"
    );
    // The gate is open again, and /metrics says nothing runs or waits.
    let reply = post_as(&app, Some(&app.token), read).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let metrics = app.metrics().await;
    for gauge in [
        "journeymap_graphql_requests_running 0",
        "journeymap_graphql_requests_waiting 0",
    ] {
        assert!(
            metrics.contains(gauge),
            "no `{gauge}` in /metrics:\n{metrics}"
        );
    }
}

/// The value of the gauge `name` in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no gauge {name} in /metrics:\n{metrics}"))
}

async fn operations_wait_their_turn_within_the_queue(app: TestApp) {
    // One runs, the others wait (the default queue holds them): all answered,
    // and /metrics, read meanwhile (it is not gated), saw them waiting.
    let read = "{ patients(first: 50) { edges { node { id givenName journeys { id currentStage { name } } touchpoints(first: 5) { edges { node { id } } } } } } }";
    let done = std::sync::atomic::AtomicBool::new(false);
    let burst = async {
        let replies =
            futures::future::join_all((0..60).map(|_| post_as(&app, Some(&app.token), read))).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        replies
    };
    let watch = async {
        let (mut most_waiting, mut most_running) = (0, 0);
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let metrics = app.metrics().await;
            most_waiting = most_waiting.max(gauge(&metrics, "journeymap_graphql_requests_waiting"));
            most_running = most_running.max(gauge(&metrics, "journeymap_graphql_requests_running"));
        }
        (most_waiting, most_running)
    };
    let (replies, (most_waiting, most_running)) = tokio::join!(burst, watch);
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(reply.json()["errors"].is_null(), "{}", reply.text);
    }
    assert!(
        most_waiting >= 1,
        "60 requests against a limit of one: none seen waiting"
    );
    assert!(
        most_running <= 1,
        "{most_running} requests ran at once against a limit of one"
    );
}

fn one_at_a_time_with_a_queue() -> Options {
    let mut options = Options::default();
    options.config.max_concurrent_requests = 1;
    options
}

// --- rate limiting --------------------------------------------------------

fn small_budget() -> Options {
    let mut options = Options::default();
    options.config.rate_limit_capacity = 200;
    options.config.rate_limit_refill_per_second = 100;
    options
}

/// Costs about 100 (33 patients × 3 fields + 1).
const QUERY_COST_100: &str = "{ patients(first: 33) { edges { node { id } } } }";

/// Sends `QUERY_COST_100` with `token` until it is refused; returns the refusal.
async fn spend_until_refused(app: &TestApp, token: &str) -> Reply {
    for _ in 0..20 {
        let reply = post_as(app, Some(token), QUERY_COST_100).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS || reply.code() == Some("RATE_LIMITED") {
            return reply;
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(reply.json()["errors"].is_null(), "{}", reply.text);
    }
    panic!("20 requests of cost ~100 against a budget of 200 were never refused");
}

fn retry_after_seconds(reply: &Reply) -> u64 {
    reply.json()["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("no extensions.retryAfterSeconds in {}", reply.text))
}

async fn answers_report_their_cost(app: TestApp) {
    let reply = post_as(&app, Some(&app.token), QUERY_COST_100).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let cost = &reply.json()["extensions"]["cost"];
    let requested = cost["requested"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cost in {}", reply.text));
    assert!((90..=110).contains(&requested), "cost {cost}");
    assert_eq!(cost["capacity"], 200, "{cost}");
    let remaining = cost["remaining"].as_u64().expect("remaining");
    assert!(remaining <= 200 - requested, "{cost}");

    let cheap = post_as(&app, Some(&app.token), "{ viewer { name } }").await;
    let cheap_cost = &cheap.json()["extensions"]["cost"];
    assert!(
        cheap_cost["requested"].as_u64().is_some_and(|c| c < 10),
        "{cheap_cost}"
    );
}

async fn spent_budgets_are_refused_with_retry_after(app: TestApp) {
    let refused = spend_until_refused(&app, &app.token).await;
    refused.assert_refused(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "a spent budget",
    );
    let wait = retry_after_seconds(&refused);
    assert!((1..=3).contains(&wait), "retryAfterSeconds {wait}");

    // A mutation costing more than is left is not run either.
    let before = app.row_counts().await;
    let costly = r#"mutation { createPatient(input: { givenName: "Rate", familyName: "Limited" }) {
      patient { id touchpoints(first: 62) { edges { node { id } } } } } }"#;
    let reply = post_as(&app, Some(&app.token), costly).await;
    reply.assert_refused(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "a mutation over the spent budget",
    );
    assert_nothing_written(&app, &before, "a rate-limited mutation").await;

    let header = refused.header("retry-after").unwrap_or_else(|| {
        panic!(
            "429 without a Retry-After header; headers: {:?}",
            refused.headers
        )
    });
    let header: u64 = header
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {header:?} is not a number of seconds"));
    assert_eq!(header, wait, "Retry-After and retryAfterSeconds disagree");
}

async fn spent_budgets_recover_after_the_wait(app: TestApp) {
    let refused = spend_until_refused(&app, &app.token).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    let wait = retry_after_seconds(&refused);
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(50)).await;
    let reply = post_as(&app, Some(&app.token), QUERY_COST_100).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "after waiting {wait} s: {}",
        reply.text
    );
    assert!(reply.json()["errors"].is_null(), "{}", reply.text);
    assert!(reply.json()["extensions"]["cost"]["remaining"].is_u64());
}

async fn budgets_are_per_credential(app: TestApp) {
    let refused = spend_until_refused(&app, &app.token).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );

    let other = app.token_with(&journeymap::auth::Permission::ALL).await;
    let reply = post_as(&app, Some(&other), QUERY_COST_100).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another token: {}",
        reply.text
    );
    assert!(reply.json()["errors"].is_null(), "{}", reply.text);
    let cost = &reply.json()["extensions"]["cost"];
    assert!(
        cost["remaining"].as_u64().is_some_and(|r| r >= 90),
        "another token's budget looks spent: {cost}"
    );

    let staff = app.staff_token(journeymap::auth::Role::Owner).await;
    let reply = post_as(&app, Some(&staff), QUERY_COST_100).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a staff member: {}",
        reply.text
    );
}

// --- what errors reveal ----------------------------------------------------

async fn anonymous_callers_get_no_suggestions(app: TestApp) {
    let typo = "{ viwer { name } }";
    let anonymous = post_as(&app, None, typo).await;
    assert_eq!(
        anonymous.code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        anonymous.text
    );
    assert!(
        !anonymous.text.contains("Did you mean"),
        "an anonymous caller got a suggestion: {}",
        anonymous.text
    );
    let anonymous = post_as(&app, None, "{ viewer { nme } }").await;
    assert!(
        !anonymous.text.contains("Did you mean"),
        "an anonymous caller got a suggestion: {}",
        anonymous.text
    );

    let signed_in = post_as(&app, Some(&app.token), typo).await;
    assert_eq!(
        signed_in.code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        signed_in.text
    );
    assert!(
        signed_in.text.contains("Did you mean"),
        "a signed-in caller may get suggestions: {}",
        signed_in.text
    );
}

async fn errors_quote_no_internals(app: TestApp) {
    for authorization in [
        "Bearer jm_doesnotexist0000000000000000",
        "Bearer not-a-token",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "Basic dXNlcjpwYXNz",
    ] {
        let reply = Reply::read(
            app.client
                .post(graphql_url(&app))
                .header(header::AUTHORIZATION, authorization)
                .json(&json!({ "query": CREATE_PATIENT }))
                .send()
                .await
                .expect("request"),
        )
        .await;
        let context = format!("Authorization: {authorization}");
        reply.assert_refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &context);
        assert_no_database_text(&reply.text, &context);
    }

    // Without an Accept header the answer is application/json: 200 with errors.
    for (query, code) in [
        ("{ viewer { name nope } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ patient(id: 5) { id } }", "BAD_USER_INPUT"),
        (
            "{ patient(id: \"pat_'; DROP TABLE patients; --\") { givenName } }",
            "BAD_USER_INPUT",
        ),
        (
            "mutation { createPatient(input: { givenName: \"A\" }) { patient { id } } }",
            "BAD_USER_INPUT",
        ),
    ] {
        let reply = post_as(&app, Some(&app.token), query).await;
        reply.assert_refused(StatusCode::OK, code, query);
        assert_no_database_text(&reply.text, query);
    }
}

// --- request ids, health, metrics ------------------------------------------

async fn request_ids_are_returned_and_echoed(app: TestApp) {
    let reply = post_as(&app, Some(&app.token), "{ viewer { name } }").await;
    let generated = reply
        .header("x-request-id")
        .expect("x-request-id")
        .to_string();
    assert!(!generated.is_empty());
    let again = post_as(&app, Some(&app.token), "{ viewer { name } }").await;
    assert_ne!(
        again.header("x-request-id"),
        Some(generated.as_str()),
        "request ids must differ"
    );

    let mine = "client-chosen-id-42";
    for request in [
        app.client
            .post(graphql_url(&app))
            .bearer_auth(&app.token)
            .json(&json!({ "query": "{ viewer { name } }" })),
        app.client
            .post(graphql_url(&app))
            .bearer_auth(&app.token)
            .header(header::CONTENT_TYPE, "text/plain")
            .body("{}"),
        app.client.post(graphql_url(&app)).bearer_auth("jm_wrong"),
        app.client.get(format!("{}/healthz", app.url)),
        app.client.get(format!("{}/nowhere", app.url)),
    ] {
        let reply = Reply::read(
            request
                .header("x-request-id", mine)
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(
            reply.header("x-request-id"),
            Some(mine),
            "HTTP {}: {}",
            reply.status,
            reply.text
        );
    }
    let unauthorized = Reply::read(
        app.client
            .post(graphql_url(&app))
            .bearer_auth("jm_wrong")
            .json(&json!({ "query": "{ viewer { name } }" }))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert!(unauthorized.header("x-request-id").is_some());
}

async fn health_readiness_and_metrics(app: TestApp) {
    let healthz = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);

    let reply = post_as(&app, Some(&app.token), "query Hello { viewer { name } }").await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    for name in [
        "journeymap_graphql_requests_total",
        "journeymap_db_statements_total",
        "journeymap_http_responses_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    assert!(
        text.lines()
            .any(|line| line.starts_with("journeymap_graphql_requests_total")
                && line.contains("Hello")
                && line.contains("ok")),
        "the Hello operation is not counted:\n{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("journeymap_http_responses_total")
                && line.contains("/graphql")
                && line.contains("200")),
        "HTTP responses of /graphql are not counted:\n{text}"
    );
}

on_both_backends!(
    post_needs_a_json_content_type,
    malformed_json_is_a_bad_request,
    graphql_response_json_gets_http_status_codes,
    unacceptable_accept_is_406,
    get_runs_queries,
    get_refuses_mutations,
    get_serves_graphiql_to_browsers,
    batches_run_up_to_max_batch,
    over_deep_queries_are_refused,
    over_complex_queries_are_refused,
    alias_bombs_are_refused,
    oversized_bodies_are_413,
    anonymous_callers_get_no_suggestions,
    errors_quote_no_internals,
    request_ids_are_returned_and_echoed,
    health_readiness_and_metrics,
);

on_both_backends!(
    a_full_server_refuses_with_overloaded => one_at_a_time,
    operations_wait_their_turn_within_the_queue => one_at_a_time_with_a_queue,
);

on_both_backends!(
    answers_report_their_cost => small_budget,
    spent_budgets_are_refused_with_retry_after => small_budget,
    spent_budgets_recover_after_the_wait => small_budget,
    budgets_are_per_credential => small_budget,
);
