//! Reading the audit log (`auditLog`, `Patient.accessLog`): owners and admins
//! only. Its rows are written by [`crate::audit`].
//!
//! An entry can be about several patients (one `patient.read` entry per
//! request names every patient the request read). The log is narrowed to a
//! patient through its patient index, `audit_log_patients`, and an entry seen
//! through one patient is presented as being about that patient
//! ([`about`]).

use chrono::{DateTime, Utc};
use entity::{audit_log, audit_log_patients};
use sea_orm::{
    ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder,
    sea_query::{Query, SimpleExpr},
};
use uuid::Uuid;

use super::{
    DomainResult, access,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
};
use crate::{
    auth::{Permission, Principal},
    db::Db,
};

/// How to narrow the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub patient_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

fn sort_key() -> SortKey<audit_log::Entity> {
    SortKey {
        at: Some(audit_log::Column::OccurredAt),
        id: audit_log::Column::Id,
        sort: Sort::Descending,
    }
}

/// The cursor of an audit entry.
pub fn keyset(entry: &audit_log::Model) -> Keyset {
    Keyset::at(entry.occurred_at, entry.id)
}

/// Every patient `entry` is about: its patient, or the patients it names.
pub fn patients_of(entry: &audit_log::Model) -> Vec<Uuid> {
    let named = entry
        .patient_ids
        .as_deref()
        .and_then(|ids| serde_json::from_str::<Vec<String>>(ids).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| Uuid::try_parse(&id).ok());
    let mut all: Vec<Uuid> = entry.patient_id.into_iter().chain(named).collect();
    let mut seen = std::collections::HashSet::new();
    all.retain(|id| seen.insert(*id));
    all
}

/// `entry` as seen through `patient`, one of the patients it is about: a
/// read of several patients reads, in that patient's log, as a read of them.
pub fn about(mut entry: audit_log::Model, patient: Uuid) -> audit_log::Model {
    if entry.patient_id.is_none() {
        entry.patient_id = Some(patient);
        if entry.record_id.is_none() && entry.record_kind == "Patient" {
            entry.record_id = Some(patient);
        }
    }
    entry
}

/// The entries about `patient` in `who`'s clinic, through the patient index.
fn about_patient(who: &Principal, patient: Uuid) -> SimpleExpr {
    audit_log::Column::Id.in_subquery(
        Query::select()
            .column(audit_log_patients::Column::AuditId)
            .from(audit_log_patients::Entity)
            .and_where(audit_log_patients::Column::ClinicId.eq(who.clinic_id))
            .and_where(audit_log_patients::Column::PatientId.eq(patient))
            .to_owned(),
    )
}

/// Every entry about `patient`, oldest first (a data-access export).
pub async fn of_patient<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    patient: Uuid,
) -> DomainResult<Vec<audit_log::Model>> {
    let rows = who
        .select::<audit_log::Entity>()
        .filter(about_patient(who, patient))
        .order_by_asc(audit_log::Column::OccurredAt)
        .order_by_asc(audit_log::Column::Id)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|e| about(e, patient)).collect())
}

fn filtered(who: &Principal, filter: &AuditFilter) -> sea_orm::Select<audit_log::Entity> {
    let mut select = who.select::<audit_log::Entity>();
    if let Some(patient) = filter.patient_id {
        select = select.filter(about_patient(who, patient));
    }
    if let Some(actor) = filter.actor_id {
        select = select.filter(audit_log::Column::ActorId.eq(actor));
    }
    if let Some(from) = filter.from {
        select = select.filter(audit_log::Column::OccurredAt.gte(from));
    }
    if let Some(to) = filter.to {
        select = select.filter(audit_log::Column::OccurredAt.lt(to));
    }
    select
}

/// One page of the audit log, newest first. Admins and owners only.
pub async fn list(
    db: &Db,
    who: &Principal,
    filter: &AuditFilter,
    page: &PageRequest,
) -> DomainResult<Page<audit_log::Model>> {
    access::require(who, Permission::AuditRead, "reading the audit log")?;
    let rows = sort_key()
        .apply(filtered(who, filter), page)
        .all(db.conn())
        .await?;
    let rows = match filter.patient_id {
        Some(patient) => rows.into_iter().map(|e| about(e, patient)).collect(),
        None => rows,
    };
    Ok(finish(rows, page))
}

/// How many audit entries match.
pub async fn count(db: &Db, who: &Principal, filter: &AuditFilter) -> DomainResult<u64> {
    use sea_orm::PaginatorTrait;
    access::require(who, Permission::AuditRead, "reading the audit log")?;
    Ok(filtered(who, filter).count(db.conn()).await?)
}
