//! FHIR R4 read: `GET /fhir/metadata`, `GET /fhir/Patient/{id}` and
//! `GET /fhir/Patient/{id}/$everything`, as `application/fhir+json`, with the
//! same credentials, scopes and tenancy as the API (the domain checks them).
//!
//! Mapping: patient → `Patient`, journey → `EpisodeOfCare` (status,
//! `statusHistory` from the stage history, type = pathway), touchpoint →
//! `Communication`, feedback → `QuestionnaireResponse` (NPS/CSAT/CES as
//! items), follow-up → `Task`, consent → `Consent`. A FHIR id is the API id
//! with `-` for `_` (`pat_0193…` ↔ `pat-0193…`, 36 characters), and the API
//! id is also carried as an `identifier`.
//!
//! The Bulk Data `$export` is [`export`]'s.

pub mod export;

use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use entity::{
    consents, feedback, follow_ups, journeys, pathways, stage_transitions, stages, touchpoints,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{AppState, caller::Caller, error::HttpError, error::status_of};
use crate::{
    domain::{DomainError, interop},
    events::stamp,
    ids::{self, IdKind},
};

/// The media type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// The `identifier.system` of API ids.
pub const ID_SYSTEM: &str = "urn:journeymap:id";
/// The `identifier.system` of a patient's CRM id.
pub const EXTERNAL_ID_SYSTEM: &str = "urn:journeymap:external-id";

/// The FHIR id of a record: its API id with `-` for `_`.
pub fn fhir_id(kind: IdKind, id: Uuid) -> String {
    format!("{}-{}", kind.prefix(), id.simple())
}

/// The record id of a FHIR id of `kind` (the API id is accepted too).
pub fn parse_fhir_id(kind: IdKind, id: &str) -> Result<Uuid, DomainError> {
    let api = id.replacen('-', "_", 1);
    ids::decode_as(kind, &api).map_err(|e| DomainError::invalid("id", format!("{id:?} {e}")))
}

/// An answer of the FHIR door.
fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// An error as an `OperationOutcome`.
pub struct FhirError(HttpError);

impl<E: Into<HttpError>> From<E> for FhirError {
    fn from(error: E) -> Self {
        FhirError(error.into())
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let mut retry_after_secs = None;
        let (status, code, message) = match &self.0 {
            HttpError::Request {
                status, message, ..
            } => (*status, "invalid", message.clone()),
            HttpError::Domain(DomainError::Internal(inner)) => {
                tracing::error!(error = ?inner, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error; quote this response's x-request-id to support".into(),
                )
            }
            HttpError::Domain(domain) => {
                if let DomainError::RateLimited { retry_after, .. } = domain {
                    retry_after_secs =
                        Some(crate::domain::error::retry_after_seconds(*retry_after));
                }
                let status = status_of(domain);
                let code = match status {
                    StatusCode::UNAUTHORIZED => "login",
                    StatusCode::FORBIDDEN => "forbidden",
                    StatusCode::NOT_FOUND => "not-found",
                    StatusCode::CONFLICT => "conflict",
                    StatusCode::TOO_MANY_REQUESTS => "throttled",
                    _ => "invalid",
                };
                (status, code, domain.public_message())
            }
        };
        let mut response = fhir(
            status,
            json!({
                "resourceType": "OperationOutcome",
                "issue": [{ "severity": "error", "code": code, "diagnostics": message }],
            }),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(seconds) = retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

fn t(at: DateTime<Utc>) -> String {
    stamp::format(at)
}

fn reference(kind: IdKind, resource: &str, id: Uuid) -> Value {
    json!({ "reference": format!("{resource}/{}", fhir_id(kind, id)) })
}

fn identifier(kind: IdKind, id: Uuid) -> Value {
    json!({ "system": ID_SYSTEM, "value": kind.encode(id) })
}

/// A `Patient`. Erased patients show what the API shows: the anonymised
/// name, no contact details.
pub fn patient(row: &entity::patients::Model) -> Value {
    let mut identifiers = vec![identifier(IdKind::Patient, row.id)];
    if let Some(external) = &row.external_id {
        identifiers.push(json!({ "system": EXTERNAL_ID_SYSTEM, "value": external }));
    }
    let mut telecom = Vec::new();
    if let Some(email) = &row.email {
        telecom.push(json!({ "system": "email", "value": email }));
    }
    if let Some(phone) = &row.phone {
        telecom.push(json!({ "system": "phone", "value": phone }));
    }
    let mut resource = json!({
        "resourceType": "Patient",
        "id": fhir_id(IdKind::Patient, row.id),
        "meta": { "lastUpdated": t(row.updated_at) },
        "identifier": identifiers,
        "active": row.archived_at.is_none(),
        "name": [{ "family": row.family_name, "given": [row.given_name] }],
    });
    if !telecom.is_empty() {
        resource["telecom"] = json!(telecom);
    }
    if let Some(birth) = row.birth_date {
        resource["birthDate"] = json!(birth.to_string());
    }
    resource
}

/// The resources of a patient's record, `Patient` first.
pub fn record(record: &interop::PatientRecord) -> Vec<Value> {
    let mut out = vec![patient(&record.patient)];
    for journey in &record.journeys {
        let steps: Vec<_> = record
            .transitions
            .iter()
            .filter(|s| s.journey_id == journey.id)
            .collect();
        out.push(episode_of_care(
            journey,
            &steps,
            &record.pathways,
            &record.stages,
        ));
    }
    out.extend(record.touchpoints.iter().map(communication));
    out.extend(record.feedback.iter().map(questionnaire_response));
    out.extend(record.follow_ups.iter().map(task));
    out.extend(record.consents.iter().map(consent));
    out
}

/// An `EpisodeOfCare`: a journey with its stage history (`steps`, oldest
/// first), named after its pathway (among `pathways`, its stages among
/// `stages`).
pub fn episode_of_care(
    journey: &journeys::Model,
    steps: &[&stage_transitions::Model],
    pathways: &[pathways::Model],
    stages: &[stages::Model],
) -> Value {
    let stage_name = |id: Uuid| {
        stages
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.key.clone(), s.name.clone()))
            .unwrap_or_default()
    };
    let pathway = pathways
        .iter()
        .find(|p| p.id == journey.pathway_id)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let status = match journey.status.as_str() {
        "ACTIVE" => "active",
        "COMPLETED" => "finished",
        _ => "cancelled",
    };
    let history: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (key, name) = stage_name(step.to_stage_id);
            let end = steps
                .get(i + 1)
                .map(|next| next.occurred_at)
                .or(journey.ended_at);
            let last = i + 1 == steps.len();
            let mut period = json!({ "start": t(step.occurred_at) });
            if let Some(end) = end {
                period["end"] = json!(t(end));
            }
            json!({
                "extension": [{ "url": "urn:journeymap:stage", "valueCoding": {
                    "system": "urn:journeymap:stage-key", "code": key, "display": name } }],
                "status": if last { status } else { "active" },
                "period": period,
            })
        })
        .collect();
    let mut period = json!({ "start": t(journey.started_at) });
    if let Some(end) = journey.ended_at {
        period["end"] = json!(t(end));
    }
    let mut episode = json!({
        "resourceType": "EpisodeOfCare",
        "id": fhir_id(IdKind::Journey, journey.id),
        "meta": { "lastUpdated": t(journey.updated_at) },
        "identifier": [identifier(IdKind::Journey, journey.id)],
        "status": status,
        "type": [{ "coding": [{ "system": ID_SYSTEM,
            "code": IdKind::Pathway.encode(journey.pathway_id), "display": pathway }],
            "text": pathway }],
        "patient": reference(IdKind::Patient, "Patient", journey.patient_id),
        "period": period,
    });
    if !history.is_empty() {
        episode["statusHistory"] = json!(history);
    }
    episode
}

/// A `Communication`: a touchpoint.
pub fn communication(touchpoint: &touchpoints::Model) -> Value {
    let subject = || reference(IdKind::Patient, "Patient", touchpoint.patient_id);
    let mut resource = json!({
        "resourceType": "Communication",
        "id": fhir_id(IdKind::Touchpoint, touchpoint.id),
        "identifier": [identifier(IdKind::Touchpoint, touchpoint.id)],
        "status": "completed",
        "category": [{ "coding": [{ "system": "urn:journeymap:touchpoint-kind",
            "code": touchpoint.kind }] }],
        "medium": [{ "coding": [{ "system": "urn:journeymap:channel",
            "code": touchpoint.channel }] }],
        "subject": subject(),
        "sent": t(touchpoint.occurred_at),
    });
    if touchpoint.direction == "INBOUND" {
        resource["sender"] = subject();
    } else {
        resource["recipient"] = json!([subject()]);
    }
    if let Some(summary) = &touchpoint.summary {
        resource["payload"] = json!([{ "contentString": summary }]);
    }
    resource
}

/// A `QuestionnaireResponse`: feedback, its score and comment as items.
pub fn questionnaire_response(given: &feedback::Model) -> Value {
    let mut items = Vec::new();
    if let Some(score) = given.score {
        items.push(
            json!({ "linkId": given.kind.to_lowercase(), "text": given.kind,
            "answer": [{ "valueInteger": score }] }),
        );
    }
    if let Some(comment) = &given.comment {
        items.push(json!({ "linkId": "comment", "text": "Comment",
            "answer": [{ "valueString": comment }] }));
    }
    let mut resource = json!({
        "resourceType": "QuestionnaireResponse",
        "id": fhir_id(IdKind::Feedback, given.id),
        "identifier": identifier(IdKind::Feedback, given.id),
        "status": "completed",
        "subject": reference(IdKind::Patient, "Patient", given.patient_id),
        "authored": t(given.submitted_at),
    });
    if !items.is_empty() {
        resource["item"] = json!(items);
    }
    resource
}

/// A `Task`: a follow-up.
pub fn task(follow_up: &follow_ups::Model) -> Value {
    let status = match follow_up.status.as_str() {
        "OPEN" => "requested",
        "DONE" => "completed",
        "BLOCKED" => "on-hold",
        _ => "cancelled",
    };
    let mut resource = json!({
        "resourceType": "Task",
        "id": fhir_id(IdKind::FollowUp, follow_up.id),
        "identifier": [identifier(IdKind::FollowUp, follow_up.id)],
        "status": status,
        "intent": "plan",
        "code": { "coding": [{ "system": "urn:journeymap:follow-up-kind",
            "code": follow_up.kind }] },
        "for": reference(IdKind::Patient, "Patient", follow_up.patient_id),
        "authoredOn": t(follow_up.created_at),
        "restriction": { "period": { "end": t(follow_up.due_at) } },
        "input": [{ "type": { "text": "channel" }, "valueString": follow_up.channel }],
    });
    if let Some(description) = follow_up.explanation.as_ref().or(follow_up.note.as_ref()) {
        resource["description"] = json!(description);
    }
    resource
}

/// A `Consent`: one entry of the consent history.
pub fn consent(consent: &consents::Model) -> Value {
    json!({
        "resourceType": "Consent",
        "id": format!("cns-{}", consent.id.simple()),
        "identifier": [{ "system": ID_SYSTEM, "value": format!("cns_{}", consent.id.simple()) }],
        "status": if consent.granted { "active" } else { "inactive" },
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "urn:journeymap:consent",
            "code": format!("{}-{}", consent.channel, consent.purpose) }],
            "text": format!("{} contact for {}", consent.channel, consent.purpose.to_lowercase()) }],
        "patient": reference(IdKind::Patient, "Patient", consent.patient_id),
        "dateTime": t(consent.occurred_at),
        "policyRule": { "text": consent.source },
        "provision": {
            "type": if consent.granted { "permit" } else { "deny" },
            "period": { "start": t(consent.occurred_at) },
        },
    })
}

/// `GET /fhir/metadata`: what this server supports.
pub async fn metadata() -> Response {
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-01",
            "publisher": "Journeymap",
            "kind": "instance",
            "software": { "name": "Journeymap", "version": env!("CARGO_PKG_VERSION") },
            "implementation": { "description": "Journeymap patient-journey API, FHIR R4 read and Bulk Data export" },
            "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "rest": [{
                "mode": "server",
                "security": { "description": "Authorization: Bearer <staff JWT or jm_ API token>, the same credentials and scopes as the GraphQL API (patients:read; $everything, and $export of other types than Patient and Consent, also journeys:read)" },
                "resource": [
                    { "type": "Patient", "interaction": [{ "code": "read" }],
                      "operation": [
                        { "name": "everything",
                          "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" },
                        { "name": "export",
                          "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export" }
                      ] },
                    { "type": "EpisodeOfCare" },
                    { "type": "Communication" },
                    { "type": "QuestionnaireResponse" },
                    { "type": "Task" },
                    { "type": "Consent" }
                ],
                "operation": [{ "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export" }],
            }],
        }),
    )
}

/// The caller's principal; anyone else is answered 401 as an `OperationOutcome`.
fn signed_in(caller: Caller) -> Result<crate::auth::Principal, FhirError> {
    match caller {
        Caller::Known(principal) => Ok(principal),
        _ => Err(DomainError::Unauthenticated.into()),
    }
}

/// `GET /fhir/Patient/{id}`.
pub async fn read_patient(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let id = parse_fhir_id(IdKind::Patient, &id)?;
    let row = interop::patient(&state.store, &principal, id).await?;
    Ok(fhir(StatusCode::OK, patient(&row)))
}

/// `GET /fhir/Patient/{id}/$everything`: a `searchset` Bundle.
pub async fn everything(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let principal = signed_in(caller)?;
    let id = parse_fhir_id(IdKind::Patient, &id)?;
    let found = interop::patient_record(&state.store, &principal, id).await?;
    let resources = record(&found);
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            json!({
                "fullUrl": format!("{}/{}", resource["resourceType"].as_str().unwrap_or_default(),
                    resource["id"].as_str().unwrap_or_default()),
                "resource": resource,
                "search": { "mode": "match" },
            })
        })
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": t(crate::db::now()),
            "total": entries.len(),
            "entry": entries,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_ids_are_valid_and_reversible() {
        let id = ids::new_id();
        let fhir = fhir_id(IdKind::Patient, id);
        assert!(fhir.len() <= 64);
        assert!(
            fhir.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
        assert_eq!(parse_fhir_id(IdKind::Patient, &fhir).unwrap(), id);
        assert_eq!(
            parse_fhir_id(IdKind::Patient, &IdKind::Patient.encode(id)).unwrap(),
            id
        );
        assert!(parse_fhir_id(IdKind::Patient, &fhir_id(IdKind::Journey, id)).is_err());
    }
}
