//! FHIR R4 read: `GET /fhir/metadata`, `/fhir/Patient/{id}` and
//! `/fhir/Patient/{id}/$everything` as `application/fhir+json`, tenant-scoped
//! and permission-checked like the API, erased patients anonymised, and every
//! resource the server emits checked against the R4B models of Python's
//! `fhir.resources` (an independent implementation; `.ci/run` installs it).

use std::io::Write;

use journeymap::auth::Permission;
use journeymap_tests::{TestApp, on_both_backends};
use serde_json::{Value, json};

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> (u16, String, Value) {
    let mut request = app.client.get(format!("{}{path}", app.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("FHIR request");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).expect("JSON");
    (status, media, body)
}

pub(crate) fn fhir_id(api_id: &str) -> String {
    api_id.replacen('_', "-", 1)
}

/// Runs the independent validator over `documents`; panics on any error.
pub(crate) fn validate_with_fhir_resources(documents: &[Value]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fhir/validate.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with fhir.resources: pip install fhir.resources==7.1.0)");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for document in documents {
            writeln!(stdin, "{document}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fhir.resources refused: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
}

async fn patients_and_their_records_read_as_valid_fhir(app: TestApp) {
    let (status, media, metadata) = get(&app, None, "/fhir/metadata").await;
    assert_eq!(status, 200);
    assert!(media.starts_with("application/fhir+json"), "{media}");
    assert_eq!(metadata["resourceType"], "CapabilityStatement");

    let pathway = app.pathway().await;
    let patient = app.patient("Zelinda").await;
    let journey = app.start_journey(&patient, &pathway.id).await;
    app.gql(
        r#"mutation($input: MoveJourneyToStageInput!) { moveJourneyToStage(input: $input) { journey { id } } }"#,
        json!({ "input": { "journeyId": journey, "stageId": pathway.consultation } }),
    )
    .await
    .data();
    app.gql(
        r#"mutation($input: LogTouchpointInput!) { logTouchpoint(input: $input) { touchpoint { id } } }"#,
        json!({ "input": { "patientId": patient, "journeyId": journey, "channel": "SMS",
            "direction": "INBOUND", "kind": "question", "summary": "asked about pricing", "emotion": 1 } }),
    )
    .await
    .data();
    app.gql(
        r#"mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { feedback { id } } }"#,
        json!({ "input": { "patientId": patient, "journeyId": journey, "kind": "NPS", "score": 9, "comment": "lovely" } }),
    )
    .await
    .data();
    app.gql(
        r#"mutation($input: RecordConsentInput!) { recordConsent(input: $input) { patient { id } } }"#,
        json!({ "input": { "patientId": patient, "channel": "SMS", "purpose": "MARKETING",
            "granted": true, "source": "intake form" } }),
    )
    .await
    .data();

    let (status, media, read) = get(
        &app,
        Some(&app.token),
        &format!("/fhir/Patient/{}", fhir_id(&patient)),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert!(media.starts_with("application/fhir+json"));
    assert_eq!(read["resourceType"], "Patient");
    assert_eq!(read["id"], fhir_id(&patient));
    assert_eq!(read["identifier"][0]["value"], patient.as_str());
    assert_eq!(read["name"][0]["given"][0], "Zelinda");
    assert_eq!(read["telecom"][0]["value"], "zelinda@example.com");

    let (status, _, bundle) = get(
        &app,
        Some(&app.token),
        &format!("/fhir/Patient/{}/$everything", fhir_id(&patient)),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");
    let types: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    for expected in [
        "Patient",
        "EpisodeOfCare",
        "Communication",
        "QuestionnaireResponse",
        "Task",
        "Consent",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    let episode = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "EpisodeOfCare")
        .unwrap()["resource"]
        .clone();
    assert_eq!(episode["id"], fhir_id(&journey));
    assert_eq!(episode["status"], "active");
    assert_eq!(episode["type"][0]["text"], "Injectables");
    assert_eq!(episode["statusHistory"].as_array().unwrap().len(), 2);
    assert_eq!(
        episode["statusHistory"][1]["extension"][0]["valueCoding"]["code"],
        "consultation"
    );

    // Erased: only what the API shows.
    app.gql(
        r#"mutation($input: ErasePatientInput!) { erasePatient(input: $input) { patient { id } } }"#,
        json!({ "input": { "patientId": patient } }),
    )
    .await
    .data();
    let (_, _, erased) = get(
        &app,
        Some(&app.token),
        &format!("/fhir/Patient/{}/$everything", fhir_id(&patient)),
    )
    .await;
    let text = erased.to_string();
    for secret in [
        "Zelinda",
        "zelinda@example.com",
        "asked about pricing",
        "lovely",
        "+14155550123",
    ] {
        assert!(!text.contains(secret), "{secret} in the erased record");
    }
    assert_eq!(
        erased["entry"][0]["resource"]["name"][0]["family"],
        "Patient"
    );

    // The audit log has the reads.
    let audit = app
        .gql(
            r#"{ auditLog(first: 100) { nodes { action } } }"#,
            json!({}),
        )
        .await;
    let actions = audit.data()["auditLog"]["nodes"].to_string();
    assert!(actions.contains("fhir.patient.read"), "{actions}");
    assert!(actions.contains("fhir.patient.everything"), "{actions}");

    validate_with_fhir_resources(&[metadata, read, bundle, erased]);
}

async fn the_fhir_door_keeps_scopes_and_tenants(app: TestApp) {
    let patient = app.patient("Ada").await;
    let path = format!("/fhir/Patient/{}", fhir_id(&patient));
    let (status, media, outcome) = get(&app, None, &path).await;
    assert_eq!(status, 401);
    assert!(media.starts_with("application/fhir+json"));
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "login");

    let journeys_only = app.token_with(&[Permission::JourneysRead]).await;
    let (status, _, outcome) = get(&app, Some(&journeys_only), &path).await;
    assert_eq!(status, 403, "{outcome}");
    let patients_only = app.token_with(&[Permission::PatientsRead]).await;
    let (status, _, _) = get(&app, Some(&patients_only), &path).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&app, Some(&patients_only), &format!("{path}/$everything")).await;
    assert_eq!(status, 403, "$everything also needs journeys:read");

    // Another clinic's patient is not found; a malformed id is refused.
    let token_b = app.clinic("b").await;
    let (status, _, outcome) = get(&app, Some(&token_b), &path).await;
    assert_eq!(status, 404, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "not-found");
    let (status, _, outcome) = get(&app, Some(&app.token), "/fhir/Patient/nope").await;
    assert_eq!(status, 400, "{outcome}");
    validate_with_fhir_resources(&[outcome]);
}

on_both_backends!(
    patients_and_their_records_read_as_valid_fhir,
    the_fhir_door_keeps_scopes_and_tenants,
);
