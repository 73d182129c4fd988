//! Follow-ups: outreach scheduled by stage rules (or by hand), completed by a
//! touchpoint or a coordinator, cancelled when the journey ends.

use chrono::{DateTime, Duration, Utc};
use entity::{follow_up_rules, follow_ups, journeys, touchpoints};
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, FollowUpKind, FollowUpStatus, Store, Write, access,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    records,
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, FollowUpCompleted, FollowUpNotice},
    ids::{self, FollowUpId, JourneyId, PatientId, StaffId, StageId, TouchpointId},
};

/// How to narrow the follow-up work list.
#[derive(Debug, Clone, Default)]
pub struct FollowUpFilter {
    pub status: Option<FollowUpStatus>,
    /// Open and past due (`true`), or not (`false`).
    pub overdue: Option<bool>,
    pub due_before: Option<DateTime<Utc>>,
    pub assignee_id: Option<Uuid>,
    pub journey_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
}

fn sort_key() -> SortKey<follow_ups::Entity> {
    SortKey {
        at: Some(follow_ups::Column::DueAt),
        id: follow_ups::Column::Id,
        sort: Sort::Ascending,
    }
}

/// The cursor of a follow-up in follow-up lists (by due time).
pub fn keyset(follow_up: &follow_ups::Model) -> Keyset {
    Keyset::at(follow_up.due_at, follow_up.id)
}

/// True when the follow-up is open and its due time has passed.
pub fn is_overdue(follow_up: &follow_ups::Model, now: DateTime<Utc>) -> bool {
    follow_up.status == FollowUpStatus::Open.as_str() && follow_up.due_at < now
}

fn filtered(who: &Principal, filter: &FollowUpFilter) -> Select<follow_ups::Entity> {
    let now = super::now();
    let mut select = who.select::<follow_ups::Entity>();
    if let Some(status) = filter.status {
        select = select.filter(follow_ups::Column::Status.eq(status.as_str()));
    }
    match filter.overdue {
        Some(true) => {
            select = select
                .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
                .filter(follow_ups::Column::DueAt.lt(now));
        }
        Some(false) => {
            select = select.filter(
                sea_orm::Condition::any()
                    .add(follow_ups::Column::Status.ne(FollowUpStatus::Open.as_str()))
                    .add(follow_ups::Column::DueAt.gte(now)),
            );
        }
        None => {}
    }
    if let Some(before) = filter.due_before {
        select = select.filter(follow_ups::Column::DueAt.lt(before));
    }
    if let Some(assignee) = filter.assignee_id {
        select = select.filter(follow_ups::Column::AssigneeStaffId.eq(assignee));
    }
    if let Some(journey) = filter.journey_id {
        select = select.filter(follow_ups::Column::JourneyId.eq(journey));
    }
    if let Some(patient) = filter.patient_id {
        select = select.filter(follow_ups::Column::PatientId.eq(patient));
    }
    select
}

fn require_read(who: &Principal) -> DomainResult<()> {
    access::require(who, Permission::JourneysRead, "reading follow-ups")
}

/// One page of follow-ups, soonest due first.
pub async fn list(
    store: &Store,
    who: &Principal,
    filter: &FollowUpFilter,
    page: &PageRequest,
) -> DomainResult<Page<follow_ups::Model>> {
    require_read(who)?;
    let rows = sort_key()
        .apply(filtered(who, filter), page)
        .all(store.db.conn())
        .await?;
    Ok(finish(rows, page))
}

/// How many follow-ups match `filter`.
pub async fn count(store: &Store, who: &Principal, filter: &FollowUpFilter) -> DomainResult<u64> {
    require_read(who)?;
    Ok(filtered(who, filter).count(store.db.conn()).await?)
}

/// Schedules the follow-ups of `stage_id`'s rules for a journey that entered
/// it at `entered_at`.
pub(crate) async fn schedule_for_stage(
    write: &mut Write<'_>,
    journey: &journeys::Model,
    stage_id: Uuid,
    entered_at: DateTime<Utc>,
) -> DomainResult<Vec<follow_ups::Model>> {
    let rules = write
        .who
        .select::<follow_up_rules::Entity>()
        .filter(follow_up_rules::Column::StageId.eq(stage_id))
        .all(&*write.txn)
        .await?;
    let scheduled: Vec<follow_ups::Model> = rules
        .iter()
        .map(|rule| follow_ups::Model {
            id: ids::new_id(),
            clinic_id: journey.clinic_id,
            journey_id: journey.id,
            patient_id: journey.patient_id,
            stage_id: Some(stage_id),
            rule_id: Some(rule.id),
            kind: FollowUpKind::StageRule.as_str().to_string(),
            due_at: entered_at + Duration::hours(rule.delay_hours.into()),
            channel: rule.channel.clone(),
            note: rule.note.clone(),
            assignee_staff_id: journey.owner_staff_id,
            status: FollowUpStatus::Open.as_str().to_string(),
            completed_at: None,
            completed_by_touchpoint_id: None,
            cancelled_at: None,
            cancel_reason: None,
            overdue_notified_at: None,
            created_at: write.now,
        })
        .collect();
    if scheduled.is_empty() {
        return Ok(scheduled);
    }
    follow_ups::Entity::insert_many(
        scheduled
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    )
    .exec_without_returning(&*write.txn)
    .await?;
    for follow_up in &scheduled {
        emit_scheduled(write, follow_up);
    }
    Ok(scheduled)
}

/// Cancels a journey's open follow-ups: all of them (`leaving_stage: None`),
/// or those of the stage being left whose rule says so. Returns their ids.
pub(crate) async fn cancel_open(
    write: &Write<'_>,
    journey_id: Uuid,
    leaving_stage: Option<Uuid>,
    reason: &str,
) -> DomainResult<Vec<Uuid>> {
    let mut update = write
        .who
        .update_rows::<follow_ups::Entity>()
        .col_expr(
            follow_ups::Column::Status,
            Expr::value(FollowUpStatus::Cancelled.as_str()),
        )
        .col_expr(follow_ups::Column::CancelledAt, Expr::value(write.now))
        .col_expr(follow_ups::Column::CancelReason, Expr::value(reason))
        .filter(follow_ups::Column::JourneyId.eq(journey_id))
        .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()));
    if let Some(stage_id) = leaving_stage {
        let cancelling_rules = write
            .who
            .select::<follow_up_rules::Entity>()
            .select_only()
            .column(follow_up_rules::Column::Id)
            .filter(follow_up_rules::Column::StageId.eq(stage_id))
            .filter(follow_up_rules::Column::CancelOnStageExit.eq(true))
            .into_query();
        update = update
            .filter(follow_ups::Column::StageId.eq(stage_id))
            .filter(follow_ups::Column::RuleId.in_subquery(cancelling_rules));
    }
    // One statement: the rows it cancelled come back with it.
    let mut ids: Vec<Uuid> = update
        .exec_with_returning(&*write.txn)
        .await?
        .into_iter()
        .map(|f| f.id)
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Marks an open follow-up done, optionally by the touchpoint that did it.
pub async fn complete(
    store: &Store,
    who: &Principal,
    follow_up_id: Uuid,
    touchpoint_id: Option<Uuid>,
) -> DomainResult<follow_ups::Model> {
    access::require(who, Permission::JourneysWrite, "completing follow-ups")?;
    let mut write = store.write(who).await?;
    let follow_up = who
        .get::<follow_ups::Entity, _>(&*write.txn, follow_up_id, "follow-up")
        .await
        .map_err(|e| e.referenced_by("followUpId"))?;
    if let Some(touchpoint_id) = touchpoint_id {
        records::of_patient::<touchpoints::Entity, _>(
            &*write.txn,
            who,
            touchpoint_id,
            "touchpointId",
            follow_up.patient_id,
        )
        .await?;
    }
    let done = complete_in(&mut write, follow_up, touchpoint_id).await?;
    write.commit().await?;
    Ok(done)
}

/// Completes `follow_up` inside a change already in progress.
pub(crate) async fn complete_in(
    write: &mut Write<'_>,
    mut follow_up: follow_ups::Model,
    touchpoint_id: Option<Uuid>,
) -> DomainResult<follow_ups::Model> {
    if follow_up.status != FollowUpStatus::Open.as_str() {
        return Err(DomainError::conflict(format!(
            "the follow-up is already {}",
            follow_up.status.to_lowercase()
        )));
    }
    let updated = write
        .who
        .update_rows::<follow_ups::Entity>()
        .col_expr(
            follow_ups::Column::Status,
            Expr::value(FollowUpStatus::Done.as_str()),
        )
        .col_expr(follow_ups::Column::CompletedAt, Expr::value(write.now))
        .col_expr(
            follow_ups::Column::CompletedByTouchpointId,
            Expr::value(touchpoint_id),
        )
        .filter(follow_ups::Column::Id.eq(follow_up.id))
        .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
        .exec(&*write.txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::conflict(
            "the follow-up was changed by another request; retry",
        ));
    }
    follow_up.status = FollowUpStatus::Done.as_str().to_string();
    follow_up.completed_at = Some(write.now);
    follow_up.completed_by_touchpoint_id = touchpoint_id;
    write.emit(Event::FollowUpCompleted(FollowUpCompleted {
        follow_up_id: FollowUpId(follow_up.id),
        journey_id: JourneyId(follow_up.journey_id),
        patient_id: PatientId(follow_up.patient_id),
        touchpoint_id: touchpoint_id.map(TouchpointId),
        due_at: follow_up.due_at,
        completed_at: write.now,
        late: write.now > follow_up.due_at,
    }));
    Ok(follow_up)
}

/// Schedules a service-recovery call on `journey` for a detractor: due 24 h
/// after the feedback, assigned to the journey's owner. One open service
/// recovery per journey is enough; returns `None` when one is already open.
pub(crate) async fn schedule_service_recovery(
    write: &mut Write<'_>,
    journey: &journeys::Model,
    stage_id: Option<Uuid>,
    feedback_at: DateTime<Utc>,
    reason: String,
) -> DomainResult<Option<follow_ups::Model>> {
    let already = write
        .who
        .select::<follow_ups::Entity>()
        .filter(follow_ups::Column::JourneyId.eq(journey.id))
        .filter(follow_ups::Column::Kind.eq(FollowUpKind::ServiceRecovery.as_str()))
        .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
        .count(&*write.txn)
        .await?;
    if already > 0 {
        return Ok(None);
    }
    let follow_up = follow_ups::Model {
        id: ids::new_id(),
        clinic_id: journey.clinic_id,
        journey_id: journey.id,
        patient_id: journey.patient_id,
        stage_id,
        rule_id: None,
        kind: FollowUpKind::ServiceRecovery.as_str().to_string(),
        due_at: feedback_at + Duration::hours(24),
        channel: crate::domain::Channel::Phone.as_str().to_string(),
        note: Some(reason),
        assignee_staff_id: journey.owner_staff_id,
        status: FollowUpStatus::Open.as_str().to_string(),
        completed_at: None,
        completed_by_touchpoint_id: None,
        cancelled_at: None,
        cancel_reason: None,
        overdue_notified_at: None,
        created_at: write.now,
    };
    follow_ups::Entity::insert(follow_up.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    emit_scheduled(write, &follow_up);
    Ok(Some(follow_up))
}

/// What `follow_up.scheduled` and `follow_up.overdue` say of a follow-up.
fn notice(follow_up: &follow_ups::Model) -> FollowUpNotice {
    FollowUpNotice {
        follow_up_id: FollowUpId(follow_up.id),
        kind: follow_up.kind.clone(),
        journey_id: JourneyId(follow_up.journey_id),
        patient_id: PatientId(follow_up.patient_id),
        stage_id: follow_up.stage_id.map(StageId),
        due_at: follow_up.due_at,
        channel: follow_up.channel.clone(),
        assignee_id: follow_up.assignee_staff_id.map(StaffId),
    }
}

fn emit_scheduled(write: &mut Write<'_>, follow_up: &follow_ups::Model) {
    write.emit(Event::FollowUpScheduled(notice(follow_up)));
}

/// Announces follow-ups that became overdue: marks up to `limit` of them and
/// emits `follow_up.overdue` for each, exactly once even when several
/// replicas sweep at the same time (the conditional update lets one win).
/// Returns how many were announced.
pub async fn sweep_overdue(store: &Store, limit: u64) -> DomainResult<usize> {
    let now = super::now();
    // The sweeper works for every clinic; each clinic's batch is then written
    // under that clinic's system principal.
    #[allow(clippy::disallowed_methods)]
    let due: Vec<(Uuid, Uuid)> = follow_ups::Entity::find()
        .select_only()
        .column(follow_ups::Column::Id)
        .column(follow_ups::Column::ClinicId)
        .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
        .filter(follow_ups::Column::OverdueNotifiedAt.is_null())
        .filter(follow_ups::Column::DueAt.lt(now))
        .order_by_asc(follow_ups::Column::DueAt)
        .limit(limit)
        .into_tuple()
        .all(store.db.conn())
        .await?;
    let mut by_clinic: std::collections::BTreeMap<Uuid, Vec<Uuid>> = Default::default();
    for (id, clinic) in due {
        by_clinic.entry(clinic).or_default().push(id);
    }
    let mut announced = 0;
    for (clinic, ids) in by_clinic {
        let system = Principal::system(clinic);
        let mut write = store.write(&system).await?;
        let marked = system
            .update_rows::<follow_ups::Entity>()
            .col_expr(
                follow_ups::Column::OverdueNotifiedAt,
                Expr::value(write.now),
            )
            .filter(follow_ups::Column::Id.is_in(ids))
            .filter(follow_ups::Column::OverdueNotifiedAt.is_null())
            .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
            .exec_with_returning(&*write.txn)
            .await?;
        for follow_up in &marked {
            write.emit(Event::FollowUpOverdue(notice(follow_up)));
        }
        announced += marked.len();
        write.commit().await?;
    }
    Ok(announced)
}
