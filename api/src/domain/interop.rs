//! What the FHIR door reads: one patient's whole record (journeys with their
//! stage history, touchpoints, feedback, follow-ups, consent history), with
//! the permission checks and the audit entry of a read. Erased patients come
//! back as the API shows them: the anonymised row and journey facts, the
//! free text already gone.

use entity::{
    consents, feedback, follow_ups, journeys, pathways, patients, stage_transitions, stages,
    touchpoints,
};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{DomainResult, Store, access, records::rows_of_patient};
use crate::{
    audit::AuditEntry,
    auth::{Permission, Principal},
    ids::IdKind,
};

/// A patient and everything recorded about them.
#[derive(Debug, Clone)]
pub struct PatientRecord {
    pub patient: patients::Model,
    pub journeys: Vec<journeys::Model>,
    pub transitions: Vec<stage_transitions::Model>,
    pub pathways: Vec<pathways::Model>,
    pub stages: Vec<stages::Model>,
    pub touchpoints: Vec<touchpoints::Model>,
    pub feedback: Vec<feedback::Model>,
    pub follow_ups: Vec<follow_ups::Model>,
    pub consents: Vec<consents::Model>,
}

/// One patient, for `GET /fhir/Patient/{id}`; audited as a FHIR read.
pub async fn patient(store: &Store, who: &Principal, id: Uuid) -> DomainResult<patients::Model> {
    access::require(who, Permission::PatientsRead, "reading patients")?;
    let patient = who
        .get::<patients::Entity, _>(store.db.conn(), id, "patient")
        .await?;
    audit(store, who, "fhir.patient.read", id).await?;
    Ok(patient)
}

async fn audit(store: &Store, who: &Principal, action: &str, id: Uuid) -> DomainResult<()> {
    let mut write = store.write(who).await?;
    write.audit(AuditEntry::new(action, IdKind::Patient, id, Some(id)));
    write.commit().await?;
    Ok(())
}

/// Everything about one patient, for `$everything`: needs `patients:read`
/// and `journeys:read`; audited.
pub async fn patient_record(
    store: &Store,
    who: &Principal,
    id: Uuid,
) -> DomainResult<PatientRecord> {
    access::require(who, Permission::PatientsRead, "reading patients")?;
    access::require(who, Permission::JourneysRead, "reading journeys")?;
    let conn = store.db.conn();
    let patient = who.get::<patients::Entity, _>(conn, id, "patient").await?;
    let journeys = rows_of_patient::<journeys::Entity, _>(
        conn,
        who,
        journeys::Column::PatientId,
        id,
        journeys::Column::StartedAt,
    )
    .await?;
    let journey_ids: Vec<Uuid> = journeys.iter().map(|j| j.id).collect();
    let pathway_ids: Vec<Uuid> = journeys.iter().map(|j| j.pathway_id).collect();
    let transitions = who
        .select::<stage_transitions::Entity>()
        .filter(stage_transitions::Column::JourneyId.is_in(journey_ids))
        .order_by_asc(stage_transitions::Column::OccurredAt)
        .order_by_asc(stage_transitions::Column::Id)
        .all(conn)
        .await?;
    let pathways = who
        .select::<pathways::Entity>()
        .filter(pathways::Column::Id.is_in(pathway_ids.clone()))
        .all(conn)
        .await?;
    let stages = who
        .select::<stages::Entity>()
        .filter(stages::Column::PathwayId.is_in(pathway_ids))
        .all(conn)
        .await?;
    let touchpoints = rows_of_patient::<touchpoints::Entity, _>(
        conn,
        who,
        touchpoints::Column::PatientId,
        id,
        touchpoints::Column::OccurredAt,
    )
    .await?;
    let feedback = rows_of_patient::<feedback::Entity, _>(
        conn,
        who,
        feedback::Column::PatientId,
        id,
        feedback::Column::SubmittedAt,
    )
    .await?;
    let follow_ups = rows_of_patient::<follow_ups::Entity, _>(
        conn,
        who,
        follow_ups::Column::PatientId,
        id,
        follow_ups::Column::DueAt,
    )
    .await?;
    let consents = rows_of_patient::<consents::Entity, _>(
        conn,
        who,
        consents::Column::PatientId,
        id,
        consents::Column::OccurredAt,
    )
    .await?;
    audit(store, who, "fhir.patient.everything", id).await?;
    Ok(PatientRecord {
        patient,
        journeys,
        transitions,
        pathways,
        stages,
        touchpoints,
        feedback,
        follow_ups,
        consents,
    })
}
