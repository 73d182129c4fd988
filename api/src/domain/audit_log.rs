//! Reading the audit log (`auditLog`, `Patient.accessLog`): owners and admins
//! only. Its rows are written by [`crate::audit`].

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ColumnTrait, QueryFilter};
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

fn filtered(who: &Principal, filter: &AuditFilter) -> sea_orm::Select<audit_log::Entity> {
    let mut select = who.select::<audit_log::Entity>();
    if let Some(patient) = filter.patient_id {
        select = select.filter(audit_log::Column::PatientId.eq(patient));
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
    Ok(finish(rows, page))
}

/// How many audit entries match.
pub async fn count(db: &Db, who: &Principal, filter: &AuditFilter) -> DomainResult<u64> {
    use sea_orm::PaginatorTrait;
    access::require(who, Permission::AuditRead, "reading the audit log")?;
    Ok(filtered(who, filter).count(db.conn()).await?)
}
