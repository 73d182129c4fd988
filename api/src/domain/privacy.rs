//! Privacy: erasing a patient (the right to be forgotten) and exporting
//! everything held about one (a data-access request). Both need
//! `privacy:manage`, and both are on the audit log.

use entity::{events, feedback, follow_ups, journeys, patients, stage_transitions, touchpoints};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, Write, access, validate};
use crate::{
    audit::AuditEntry,
    auth::{Permission, Principal},
    events::{Event, PatientErased, stamp},
    ids::{IdKind, PatientId},
};

/// Erases a patient's identity, contact details and everything written about
/// them (touchpoint summaries, feedback comments, notes), keeping the
/// anonymised journey facts — stages, times, channels, emotions, scores — so
/// journey maps stay true. Emits `patient.erased`. Cannot be undone.
pub async fn erase(
    store: &Store,
    who: &Principal,
    id: Uuid,
    reason: Option<String>,
) -> DomainResult<patients::Model> {
    access::require(who, Permission::PrivacyManage, "erasing a patient")?;
    let reason =
        validate::optional_text("reason", reason.as_deref(), validate::SHORT_TEXT * 2, false)?;
    let mut write = store.write(who).await?;
    let mut patient = who
        .get::<patients::Entity, _>(&*write.txn, id, "patient")
        .await
        .map_err(|e| e.referenced_by("patientId"))?;
    if patient.erased_at.is_some() {
        return Err(DomainError::conflict_on(
            "patientId",
            "the patient was already erased",
        ));
    }
    patient = patients::Model {
        external_id: None,
        given_name: "Erased".into(),
        family_name: "Patient".into(),
        email: None,
        phone: None,
        birth_date: None,
        preferred_channel: None,
        source: None,
        tags: json!([]),
        consent_sms: false,
        consent_email: false,
        consent_marketing: false,
        search_text: String::new(),
        archived_at: Some(write.now),
        erased_at: Some(write.now),
        updated_at: write.now,
        ..patient
    };
    patient
        .clone()
        .into_active_model()
        .reset_all()
        .update(&*write.txn)
        .await?;
    who.update_rows::<touchpoints::Entity>()
        .col_expr(
            touchpoints::Column::Summary,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            touchpoints::Column::ExternalRef,
            Expr::value(Option::<String>::None),
        )
        .filter(touchpoints::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<feedback::Entity>()
        .col_expr(
            feedback::Column::Comment,
            Expr::value(Option::<String>::None),
        )
        .filter(feedback::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<follow_ups::Entity>()
        .col_expr(
            follow_ups::Column::Note,
            Expr::value(Option::<String>::None),
        )
        .filter(follow_ups::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    let journeys_of_patient = who
        .select::<journeys::Entity>()
        .select_only()
        .column(journeys::Column::Id)
        .filter(journeys::Column::PatientId.eq(id))
        .into_query();
    who.update_rows::<stage_transitions::Entity>()
        .col_expr(
            stage_transitions::Column::Note,
            Expr::value(Option::<String>::None),
        )
        .filter(stage_transitions::Column::JourneyId.in_subquery(journeys_of_patient))
        .exec(&*write.txn)
        .await?;
    who.update_rows::<journeys::Entity>()
        .col_expr(
            journeys::Column::EndReason,
            Expr::value(Option::<String>::None),
        )
        .filter(journeys::Column::PatientId.eq(id))
        .exec(&*write.txn)
        .await?;
    scrub_events(&write, id).await?;
    write.emit(Event::PatientErased(PatientErased {
        patient_id: PatientId(id),
        reason,
    }));
    write.commit().await?;
    Ok(patient)
}

/// The event log keeps what happened to an erased patient, not who they are
/// or what was written about them: the CRM id on `patient.*` events and the
/// drop reason on `journey.*` events go.
async fn scrub_events(write: &Write<'_>, patient: Uuid) -> DomainResult<()> {
    let who = write.who;
    let journeys: Vec<Uuid> = who
        .select::<journeys::Entity>()
        .select_only()
        .column(journeys::Column::Id)
        .filter(journeys::Column::PatientId.eq(patient))
        .into_tuple()
        .all(&*write.txn)
        .await?;
    let subjects = std::iter::once(IdKind::Patient.encode(patient))
        .chain(journeys.into_iter().map(|j| IdKind::Journey.encode(j)));
    let logged = who
        .select::<events::Entity>()
        .filter(events::Column::Subject.is_in(subjects))
        .all(&*write.txn)
        .await?;
    for row in logged {
        let mut event = Event::decode(&row.event_type, &row.data).map_err(DomainError::internal)?;
        if event.forget_identity() {
            who.update_rows::<events::Entity>()
                .col_expr(events::Column::Data, Expr::value(event.data()))
                .filter(events::Column::Id.eq(row.id))
                .exec(&*write.txn)
                .await?;
        }
    }
    Ok(())
}

/// Everything held about one patient, as JSON: a data-access request. The
/// export itself is recorded in the audit log.
pub async fn export(store: &Store, who: &Principal, id: Uuid) -> DomainResult<serde_json::Value> {
    access::require(who, Permission::PrivacyManage, "exporting a patient's data")?;
    let conn = store.db.conn();
    let patient = who
        .get::<patients::Entity, _>(conn, id, "patient")
        .await
        .map_err(|e| e.referenced_by("patientId"))?;
    let journeys = super::records::rows_of_patient::<journeys::Entity, _>(
        conn,
        who,
        journeys::Column::PatientId,
        id,
        journeys::Column::StartedAt,
    )
    .await?;
    let journey_ids: Vec<Uuid> = journeys.iter().map(|j| j.id).collect();
    let history = who
        .select::<stage_transitions::Entity>()
        .filter(stage_transitions::Column::JourneyId.is_in(journey_ids))
        .order_by_asc(stage_transitions::Column::OccurredAt)
        .all(conn)
        .await?;
    let touchpoints = super::records::rows_of_patient::<touchpoints::Entity, _>(
        conn,
        who,
        touchpoints::Column::PatientId,
        id,
        touchpoints::Column::OccurredAt,
    )
    .await?;
    let feedback = super::records::rows_of_patient::<feedback::Entity, _>(
        conn,
        who,
        feedback::Column::PatientId,
        id,
        feedback::Column::SubmittedAt,
    )
    .await?;
    let follow_ups = super::records::rows_of_patient::<follow_ups::Entity, _>(
        conn,
        who,
        follow_ups::Column::PatientId,
        id,
        follow_ups::Column::DueAt,
    )
    .await?;
    let access = super::audit_log::of_patient(conn, who, id).await?;
    let mut write = store.write(who).await?;
    write.audit(AuditEntry::new(
        "patient.exported",
        IdKind::Patient,
        id,
        Some(id),
    ));
    let exported_at = write.now;
    write.commit().await?;

    let t = stamp::format;
    let opt_t = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(t);
    let stage = |id: Uuid| IdKind::Stage.encode(id);
    Ok(json!({
        "format": "journeymap.patient-export.v1",
        "exportedAt": t(exported_at),
        "patient": {
            "id": IdKind::Patient.encode(patient.id),
            "externalId": patient.external_id,
            "givenName": patient.given_name,
            "familyName": patient.family_name,
            "email": patient.email,
            "phone": patient.phone,
            "birthDate": patient.birth_date.map(|d| d.to_string()),
            "preferredChannel": patient.preferred_channel,
            "source": patient.source,
            "tags": patient.tags,
            "consent": { "sms": patient.consent_sms, "email": patient.consent_email, "marketing": patient.consent_marketing },
            "createdAt": t(patient.created_at),
            "updatedAt": t(patient.updated_at),
            "archivedAt": opt_t(patient.archived_at),
            "erasedAt": opt_t(patient.erased_at),
        },
        "journeys": journeys.iter().map(|j| json!({
            "id": IdKind::Journey.encode(j.id),
            "pathwayId": IdKind::Pathway.encode(j.pathway_id),
            "status": j.status,
            "currentStageId": stage(j.current_stage_id),
            "startedAt": t(j.started_at),
            "endedAt": opt_t(j.ended_at),
            "endReason": j.end_reason,
            "history": history.iter().filter(|h| h.journey_id == j.id).map(|h| json!({
                "id": IdKind::StageTransition.encode(h.id),
                "kind": h.kind,
                "fromStageId": h.from_stage_id.map(stage),
                "toStageId": stage(h.to_stage_id),
                "occurredAt": t(h.occurred_at),
                "note": h.note,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "touchpoints": touchpoints.iter().map(|tp| json!({
            "id": IdKind::Touchpoint.encode(tp.id),
            "journeyId": tp.journey_id.map(|j| IdKind::Journey.encode(j)),
            "stageId": tp.stage_id.map(stage),
            "channel": tp.channel,
            "direction": tp.direction,
            "kind": tp.kind,
            "summary": tp.summary,
            "occurredAt": t(tp.occurred_at),
            "emotion": tp.emotion,
            "momentOfTruth": tp.moment_of_truth,
        })).collect::<Vec<_>>(),
        "feedback": feedback.iter().map(|f| json!({
            "id": IdKind::Feedback.encode(f.id),
            "journeyId": f.journey_id.map(|j| IdKind::Journey.encode(j)),
            "stageId": f.stage_id.map(stage),
            "kind": f.kind,
            "score": f.score,
            "comment": f.comment,
            "submittedAt": t(f.submitted_at),
        })).collect::<Vec<_>>(),
        "followUps": follow_ups.iter().map(|f| json!({
            "id": IdKind::FollowUp.encode(f.id),
            "journeyId": IdKind::Journey.encode(f.journey_id),
            "kind": f.kind,
            "status": f.status,
            "dueAt": t(f.due_at),
            "channel": f.channel,
            "note": f.note,
            "completedAt": opt_t(f.completed_at),
            "cancelledAt": opt_t(f.cancelled_at),
        })).collect::<Vec<_>>(),
        "accessLog": access.iter().map(|a| json!({
            "action": a.action,
            "actorKind": a.actor_kind,
            "actorId": a.actor_id.map(|id| match a.actor_kind.as_str() {
                "STAFF" => IdKind::Staff.encode(id),
                _ => IdKind::ApiToken.encode(id),
            }),
            "occurredAt": t(a.occurred_at),
            "requestId": a.request_id,
        })).collect::<Vec<_>>(),
    }))
}
