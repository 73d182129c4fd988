//! FHIR Bulk Data export (`$export`): kick-off, polling, manifest, NDJSON
//! files, `_type` and `_since`, cancelling, expiry, tenancy, rights and the
//! audit log; every exported line of the demo clinic checked by
//! `fhir.resources` (an independent implementation).

use std::time::Duration;

use journeymap::{
    auth::{Permission, Role},
    domain::clinics,
    sea_orm::{ConnectionTrait, Statement},
    seed::{self, SeedOptions},
};
use journeymap_tests::{Options, TestApp, on_both_backends};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use super::fhir::{fhir_id, validate_with_fhir_resources};

/// A request with `token` (or none); its status, headers and body.
async fn call(
    app: &TestApp,
    method: Method,
    token: Option<&str>,
    url: &str,
    prefer: bool,
) -> (StatusCode, HeaderMap, String) {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        format!("{}{url}", app.url)
    };
    let mut request = app
        .client
        .request(method, url)
        .header("accept", "application/fhir+json");
    if prefer {
        request = request.header("prefer", "respond-async");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Kicks off `path` (with `Prefer: respond-async`); the status URL.
async fn kick_off(app: &TestApp, token: &str, path: &str) -> String {
    let (status, headers, body) = call(app, Method::GET, Some(token), path, true).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let location = headers["content-location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/fhir/bulk-status/exp_", app.url)),
        "{location}"
    );
    location
}

/// Polls `location` until the export is done; its manifest.
async fn wait_for_manifest(app: &TestApp, token: &str, location: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, headers, body) = call(app, Method::GET, Some(token), location, false).await;
        match status {
            StatusCode::OK => {
                assert!(
                    headers["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/json")
                );
                assert!(headers.contains_key("expires"));
                return json_of(&body);
            }
            StatusCode::ACCEPTED => {
                let progress = headers["x-progress"].to_str().unwrap();
                assert!(progress == "queued" || progress.contains('%'), "{progress}");
                assert!(headers.contains_key("retry-after"));
            }
            other => panic!("polling answered {other}: {body}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the export never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Downloads a manifest's file; its resources.
async fn download(app: &TestApp, token: &str, url: &str) -> Vec<Value> {
    let (status, headers, body) = call(app, Method::GET, Some(token), url, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/fhir+ndjson");
    assert!(body.ends_with('\n') || body.is_empty());
    body.lines().map(json_of).collect()
}

/// The manifest's files by type: (type, url, count).
fn outputs(manifest: &Value) -> Vec<(String, String, u64)> {
    manifest["output"]
        .as_array()
        .expect("output")
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_string(),
                o["url"].as_str().unwrap().to_string(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every file of a finished export, by type.
async fn everything_in(app: &TestApp, token: &str, manifest: &Value) -> Vec<(String, Vec<Value>)> {
    let mut files = Vec::new();
    for (kind, url, count) in outputs(manifest) {
        let lines = download(app, token, &url).await;
        assert_eq!(lines.len() as u64, count, "{kind}: count and lines");
        assert!(
            lines.iter().all(|l| l["resourceType"] == kind.as_str()),
            "{kind}: a line of another type"
        );
        files.push((kind, lines));
    }
    files
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.db();
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(db.backend(), sql.to_string()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

fn small_parts() -> Options {
    let mut options = Options::default();
    options.config.fhir_export_batch = 25;
    options
}

/// The demo clinic's whole export (one patient erased first): every type,
/// each file's count its lines, files in several parts, every line valid for
/// `fhir.resources`, the erased patient anonymised, and the audit log naming
/// the kick-off, the patients read and the downloads.
async fn the_demo_clinic_exports_valid_fhir(app: TestApp) {
    seed::demo(
        app.db(),
        &SeedOptions {
            patients: 40,
            seed: 7,
        },
    )
    .await
    .expect("seed the demo clinic");
    let glow = clinics::by_slug(app.db(), seed::DEMO_SLUG)
        .await
        .unwrap()
        .expect("the demo clinic");
    let (_, token) = clinics::create_token(app.db(), glow.id, "bulk", &Permission::ALL, None)
        .await
        .unwrap();

    // One patient erased, with a touchpoint carrying a summary.
    let erased = scalar_id(
        &app,
        &format!(
            "SELECT patient_id FROM touchpoints WHERE summary IS NOT NULL AND clinic_id = {} \
             ORDER BY id LIMIT 1",
            uuid_literal(&app, glow.id)
        ),
    )
    .await;
    let before = app
        .gql_as(
            Some(&token),
            "query($id: ID!) { node(id: $id) { ... on Patient { givenName email } } }",
            json!({ "id": erased }),
        )
        .await;
    let name = before.data()["node"]["givenName"]
        .as_str()
        .unwrap()
        .to_string();
    app.gql_as(
        Some(&token),
        r#"mutation($input: ErasePatientInput!) { erasePatient(input: $input) { patient { id } } }"#,
        json!({ "input": { "patientId": erased } }),
    )
    .await
    .data();

    let location = kick_off(&app, &token, "/fhir/$export").await;
    let manifest = wait_for_manifest(&app, &token, &location).await;
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["error"], json!([]));
    assert_eq!(manifest["request"], format!("{}/fhir/$export", app.url));
    assert!(
        chrono::DateTime::parse_from_rfc3339(manifest["transactionTime"].as_str().unwrap()).is_ok()
    );
    let files = everything_in(&app, &token, &manifest).await;
    let kinds: Vec<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Patient",
            "EpisodeOfCare",
            "Communication",
            "QuestionnaireResponse",
            "Task",
            "Consent"
        ],
        "one file per type, in order"
    );
    let patients = &files[0].1;
    assert_eq!(
        patients.len() as i64,
        scalar(
            &app,
            &format!(
                "SELECT COUNT(*) FROM patients WHERE clinic_id = {}",
                uuid_literal(&app, glow.id)
            )
        )
        .await
    );
    assert!(patients.len() > 25, "the Patient file has several parts");
    let parts = scalar(
        &app,
        "SELECT COUNT(*) FROM bulk_export_parts WHERE resource_type = 'Patient'",
    )
    .await;
    assert_eq!(parts, (patients.len() as i64 + 24) / 25);

    // The erased patient: only what the API shows.
    let erased_fhir = fhir_id(&erased);
    let lines_about: Vec<&Value> = files
        .iter()
        .flat_map(|(_, lines)| lines)
        .filter(|l| l["id"] == erased_fhir.as_str() || l.to_string().contains(&erased_fhir))
        .collect();
    assert!(
        lines_about.len() > 1,
        "the erased patient's record is there"
    );
    let text = serde_json::to_string(&lines_about).unwrap();
    assert!(
        !text.contains(&name),
        "{name} in the erased patient's export"
    );
    let patient = patients
        .iter()
        .find(|p| p["id"] == erased_fhir.as_str())
        .unwrap();
    assert_eq!(patient["name"][0]["family"], "Patient");
    assert!(patient.get("telecom").is_none());
    for (kind, lines) in &files {
        if kind == "Communication" {
            for line in lines
                .iter()
                .filter(|l| l["subject"]["reference"] == format!("Patient/{erased_fhir}"))
            {
                assert!(line.get("payload").is_none(), "{line}");
            }
        }
    }

    // Independent validation of every line.
    let all: Vec<Value> = files.into_iter().flat_map(|(_, lines)| lines).collect();
    validate_with_fhir_resources(&all);

    // On the audit log: the kick-off, the patients read, the downloads.
    let export_id = location.rsplit('/').next().unwrap();
    let entries = audit_log(&app, &token, None).await;
    let by_export = |action: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["record"]["id"] == export_id)
            .count()
    };
    assert_eq!(by_export("fhir.export.requested"), 1);
    assert_eq!(by_export("fhir.export.downloaded"), 6);
    let about = audit_log(&app, &token, Some(&erased)).await;
    assert!(
        about.iter().any(|e| e["action"] == "fhir.export.read"),
        "{about:?}"
    );
}

/// Every entry of the audit log (about `patient`, when given), newest first.
async fn audit_log(app: &TestApp, token: &str, patient: Option<&str>) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .gql_as(
                Some(token),
                "query($after: String, $p: ID) { auditLog(first: 100, after: $after, filter: { patientId: $p }) {
                    nodes { action record { kind id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after, "p": patient }),
            )
            .await;
        let log = &page.data()["auditLog"];
        entries.extend(log["nodes"].as_array().unwrap().iter().cloned());
        if log["pageInfo"]["hasNextPage"] != true {
            return entries;
        }
        after = log["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}

/// A database literal for `id` (SQLite keeps uuids as blobs).
fn uuid_literal(app: &TestApp, id: uuid::Uuid) -> String {
    match app.backend {
        journeymap_tests::Backend::Sqlite => format!("x'{}'", id.simple()),
        journeymap_tests::Backend::Postgres => format!("'{id}'"),
    }
}

/// The patient id `sql` selects, as the API's global id.
async fn scalar_id(app: &TestApp, sql: &str) -> String {
    let db = app.db();
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(db.backend(), sql.to_string()))
        .await
        .unwrap()
        .expect("a row");
    let id: uuid::Uuid = row.try_get_by_index(0).unwrap();
    format!("pat_{}", id.simple())
}

/// `_type` picks the files; `_since` keeps what changed after it (a patient
/// created after it, one updated after it, one erased after it with their
/// touchpoint) and leaves out the rest; the patient-level `$export` is the
/// same export.
async fn type_and_since_are_honoured(app: TestApp) {
    let pathway = app.pathway().await;
    let untouched = app.patient("Una").await;
    let updated = app.patient("Ulla").await;
    app.start_journey(&untouched, &pathway.id).await;
    let erased = app.patient("Erin").await;
    app.gql(
        r#"mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }"#,
        json!({ "input": { "patientId": erased, "channel": "SMS", "direction": "INBOUND",
            "kind": "question", "summary": "before" } }),
    )
    .await
    .data();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let created = app.patient("Nova").await;
    app.gql(
        r#"mutation($input: UpdatePatientInput!) { updatePatient(input: $input) { patient { id } } }"#,
        json!({ "input": { "patientId": updated, "familyName": "Changed" } }),
    )
    .await
    .data();
    app.gql(
        r#"mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }"#,
        json!({ "input": { "patientId": created, "channel": "SMS", "direction": "INBOUND",
            "kind": "question", "summary": "after" } }),
    )
    .await
    .data();
    app.gql(
        r#"mutation($input: ErasePatientInput!) { erasePatient(input: $input) { patient { id } } }"#,
        json!({ "input": { "patientId": erased } }),
    )
    .await
    .data();

    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let location = kick_off(
        &app,
        &app.token,
        &format!("/fhir/$export?_type=Patient,Communication&_since={since_text}&_outputFormat=application%2Ffhir%2Bndjson"),
    )
    .await;
    let manifest = wait_for_manifest(&app, &app.token, &location).await;
    let files = everything_in(&app, &app.token, &manifest).await;
    let kinds: Vec<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["Patient", "Communication"]);
    let ids: Vec<&str> = files[0]
        .1
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&fhir_id(&created).as_str()), "{ids:?}");
    assert!(ids.contains(&fhir_id(&updated).as_str()), "{ids:?}");
    assert!(ids.contains(&fhir_id(&erased).as_str()), "{ids:?}");
    assert!(!ids.contains(&fhir_id(&untouched).as_str()), "{ids:?}");
    // Nova's touchpoint, made after; Erin's, made before but blanked by her
    // erasure after.
    let mut about: Vec<(String, bool)> = files[1]
        .1
        .iter()
        .map(|c| {
            (
                c["subject"]["reference"].as_str().unwrap().to_string(),
                c.get("payload").is_some(),
            )
        })
        .collect();
    about.sort();
    let mut expected = vec![
        (format!("Patient/{}", fhir_id(&created)), true),
        (format!("Patient/{}", fhir_id(&erased)), false),
    ];
    expected.sort();
    assert_eq!(about, expected);

    // The patient level, one type, everything since ever; repeated `_type`.
    let location = kick_off(
        &app,
        &app.token,
        "/fhir/Patient/$export?_type=EpisodeOfCare&_type=Patient",
    )
    .await;
    let manifest = wait_for_manifest(&app, &app.token, &location).await;
    let kinds: Vec<(String, u64)> = outputs(&manifest)
        .into_iter()
        .map(|(k, _, n)| (k, n))
        .collect();
    assert_eq!(
        kinds,
        [("Patient".to_string(), 4), ("EpisodeOfCare".to_string(), 1)]
    );
    assert!(
        manifest["request"]
            .as_str()
            .unwrap()
            .ends_with("/fhir/Patient/$export?_type=EpisodeOfCare&_type=Patient")
    );
}

/// Bad kick-offs are refused with an `OperationOutcome` and queue nothing;
/// a second export while one runs is 429 with `Retry-After`; an export that
/// could not be written answers 500 with an `OperationOutcome`.
async fn kick_offs_that_are_refused(app: TestApp) {
    let refused = |status: StatusCode, body: &str, says: &str| {
        let outcome = json_of(body);
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{body}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains(says),
            "{says} in {body}"
        );
        (status, outcome)
    };
    let (status, _, body) = call(&app, Method::GET, Some(&app.token), "/fhir/$export", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, missing_prefer) = refused(status, &body, "Prefer: respond-async");
    for (query, says) in [
        ("_type=Patient,Observation", "\"Observation\""),
        ("_since=yesterday", "_since"),
        ("_outputFormat=application/fhir%2Bjson", "_outputFormat"),
    ] {
        let (status, _, body) = call(
            &app,
            Method::GET,
            Some(&app.token),
            &format!("/fhir/$export?{query}"),
            true,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        refused(status, &body, says);
    }
    // Strict handling refuses what it would otherwise ignore.
    let strict = app
        .client
        .get(format!(
            "{}/fhir/$export?_typeFilter=Patient%3Factive%3Dtrue",
            app.url
        ))
        .bearer_auth(&app.token)
        .header("prefer", "respond-async, handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), StatusCode::BAD_REQUEST);

    let (status, headers, body) = call(&app, Method::GET, None, "/fhir/$export", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    let journeys_only = app.token_with(&[Permission::JourneysRead]).await;
    let (status, _, body) = call(
        &app,
        Method::GET,
        Some(&journeys_only),
        "/fhir/$export",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, forbidden) = refused(status, &body, "patients:read");
    let patients_only = app.token_with(&[Permission::PatientsRead]).await;
    let (status, _, body) = call(
        &app,
        Method::GET,
        Some(&patients_only),
        "/fhir/$export?_type=Communication",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A viewer sees journeys, not patients.
    let viewer = app.staff_token(Role::Viewer).await;
    let (status, _, body) = call(&app, Method::GET, Some(&viewer), "/fhir/$export", true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM bulk_exports").await,
        0,
        "nothing was queued"
    );

    // One at a time per clinic: another replica's export is running.
    let clinic = clinics::by_slug(app.db(), "a").await.unwrap().unwrap();
    let (requester, requester_token) =
        clinics::create_token(app.db(), clinic.id, "bulk", &Permission::ALL, None)
            .await
            .unwrap();
    let running = uuid::Uuid::now_v7();
    let db = app.db();
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "INSERT INTO bulk_exports (id, clinic_id, requested_by_kind, requested_by_id, \
             request_url, types, status, resources_total, resources_done, types_done, attempts, \
             locked_until, created_at) \
             VALUES (?, ?, 'API_TOKEN', ?, 'x', 'Patient', 'RUNNING', 0, 0, 0, 1, ?, ?)",
            vec![
                running.into(),
                clinic.id.into(),
                requester.id.into(),
                (chrono::Utc::now() + chrono::Duration::hours(1)).into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await
        .unwrap();
    let (status, headers, body) = call(
        &app,
        Method::GET,
        Some(&patients_only),
        "/fhir/$export?_type=Patient",
        true,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    let (_, busy) = refused(status, &body, "one export runs at a time");
    // Another clinic is not held up.
    let token_b = app.clinic("b").await;
    kick_off(&app, &token_b, "/fhir/$export").await;

    // Its replica died, and it was taken over too often: it fails, and the
    // status URL says so with a 500 and an OperationOutcome (never the
    // database's words).
    db.conn()
        .execute_raw(journeymap::db::statement(
            db.backend(),
            "UPDATE bulk_exports SET locked_until = ?, attempts = 3 WHERE id = ?",
            vec![
                (chrono::Utc::now() - chrono::Duration::seconds(1)).into(),
                running.into(),
            ],
        ))
        .await
        .unwrap();
    let location = format!("{}/fhir/bulk-status/exp_{}", app.url, running.simple());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let (status, headers, body) =
            call(&app, Method::GET, Some(&requester_token), &location, false).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/fhir+json")
            );
            break json_of(&body);
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["issue"][0]["code"], "exception", "{failed}");
    assert!(
        failed["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("could not be finished"),
        "{failed}"
    );
    // The clinic may export again.
    kick_off(&app, &patients_only, "/fhir/$export?_type=Patient").await;

    validate_with_fhir_resources(&[missing_prefer, forbidden, busy, failed]);
}

/// An export is its requester's (an API token, or a staff member's
/// session): another clinic, and another credential of the same clinic, are
/// told it is not there; a credential without the right is refused.
/// `DELETE` cancels: files gone, the status URL 404.
async fn exports_are_private_and_cancellable(app: TestApp) {
    app.patient("Ada").await;
    let location = kick_off(&app, &app.token, "/fhir/$export").await;
    let manifest = wait_for_manifest(&app, &app.token, &location).await;
    let (_, file, _) = outputs(&manifest).into_iter().next().expect("a file");
    assert_eq!(download(&app, &app.token, &file).await.len(), 1);

    let token_b = app.clinic("b").await;
    let colleague = app.token_with(&Permission::ALL).await;
    for (who, token) in [("clinic b", &token_b), ("another token of a", &colleague)] {
        for (method, url) in [
            (Method::GET, &location),
            (Method::GET, &file),
            (Method::DELETE, &location),
        ] {
            let (status, _, body) = call(&app, method.clone(), Some(token), url, false).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{who} {method} {url}: {body}"
            );
            assert_eq!(json_of(&body)["issue"][0]["code"], "not-found");
        }
    }
    let journeys_only = app.token_with(&[Permission::JourneysRead]).await;
    let (status, _, _) = call(&app, Method::GET, Some(&journeys_only), &location, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&app, Method::GET, None, &file, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        Method::GET,
        Some(&app.token),
        &format!("{}/fhir/bulk-status/exp_nope", app.url),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, body) = call(&app, Method::DELETE, Some(&app.token), &location, false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for url in [&location, &file] {
        let (status, _, _) = call(&app, Method::GET, Some(&app.token), url, false).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url} after DELETE");
    }
    let (status, _, _) = call(&app, Method::DELETE, Some(&app.token), &location, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "cancelled twice");
    // A staff member's export, polled and downloaded with their session.
    let coordinator = app.staff_token(Role::Coordinator).await;
    let theirs = kick_off(&app, &coordinator, "/fhir/$export?_type=Patient").await;
    let manifest = wait_for_manifest(&app, &coordinator, &theirs).await;
    let (_, file_of_theirs, _) = outputs(&manifest).into_iter().next().expect("a file");
    assert_eq!(download(&app, &coordinator, &file_of_theirs).await.len(), 1);
    let (status, _, _) = call(&app, Method::GET, Some(&app.token), &theirs, false).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the token does not see the staff member's"
    );
    let (status, _, _) = call(&app, Method::DELETE, Some(&coordinator), &theirs, false).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM bulk_export_parts").await,
        0,
        "the files are deleted"
    );
    let audit = app
        .gql("{ auditLog(first: 100) { nodes { action } } }", json!({}))
        .await;
    assert!(
        audit.data().to_string().contains("fhir.export.cancelled"),
        "{}",
        audit.data()
    );
    // The clinic may export again at once.
    kick_off(&app, &app.token, "/fhir/$export").await;
}

fn quick_expiry() -> Options {
    let mut options = Options::default();
    options.config.fhir_export_ttl_secs = 3;
    options
}

/// Files expire after the configured time: the status URL and the files
/// answer 404, and the files are deleted from the database.
async fn exports_expire(app: TestApp) {
    app.patient("Eve").await;
    let location = kick_off(&app, &app.token, "/fhir/$export?_type=Patient").await;
    let manifest = wait_for_manifest(&app, &app.token, &location).await;
    let (_, file, _) = outputs(&manifest).into_iter().next().expect("a file");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = call(&app, Method::GET, Some(&app.token), &file, false).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, _) = call(&app, Method::GET, Some(&app.token), &location, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while scalar(&app, "SELECT COUNT(*) FROM bulk_export_parts").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM bulk_exports WHERE status = 'EXPIRED'"
        )
        .await,
        1
    );
}

on_both_backends!(
    the_demo_clinic_exports_valid_fhir => small_parts,
    type_and_since_are_honoured,
    kick_offs_that_are_refused,
    exports_are_private_and_cancellable,
    exports_expire => quick_expiry,
);
