//! Follow-ups, the unit of outreach: planned by stage rules, feedback, the
//! sweeper or a coordinator (through [`super::outreach`]), listed as the
//! coordinator's queue, completed by a touchpoint or by hand, skipped, or
//! cancelled when they are no longer right.

use chrono::{DateTime, Duration, Utc};
use entity::{follow_up_rules, follow_ups, journeys, stages, touchpoints};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Channel, DomainError, DomainResult, FollowUpKind, FollowUpStatus, Store, Write, access,
    outreach::{self, planner::Reason},
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    records,
    values::Score,
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, FollowUpCompleted},
    ids::{FollowUpId, JourneyId, PatientId, TouchpointId},
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
    /// Open with its send time come (`true`): the coordinator's queue, most
    /// urgent first; or not (`false`).
    pub sendable: Option<bool>,
    pub kind: Option<FollowUpKind>,
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

/// True when the follow-up is open and its send time has come.
pub fn is_sendable(follow_up: &follow_ups::Model, now: DateTime<Utc>) -> bool {
    follow_up.status == FollowUpStatus::Open.as_str()
        && follow_up.send_at.unwrap_or(follow_up.due_at) <= now
}

/// The one thing to do next of a patient's follow-ups: the most urgent open
/// one (by priority, then send time), else the most urgent blocked one.
pub fn next_of(follow_ups: Vec<follow_ups::Model>) -> Option<follow_ups::Model> {
    follow_ups.into_iter().filter(is_pending).min_by_key(|f| {
        (
            f.status != FollowUpStatus::Open.as_str(),
            f.priority,
            f.send_at.unwrap_or(f.due_at),
            f.id,
        )
    })
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
    match filter.sendable {
        Some(true) => {
            select = select
                .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
                .filter(follow_ups::Column::SendAt.lte(now));
        }
        Some(false) => {
            select = select.filter(
                sea_orm::Condition::any()
                    .add(follow_ups::Column::Status.ne(FollowUpStatus::Open.as_str()))
                    .add(follow_ups::Column::SendAt.gt(now)),
            );
        }
        None => {}
    }
    if let Some(kind) = filter.kind {
        select = select.filter(follow_ups::Column::Kind.eq(kind.as_str()));
    }
    select
}

/// The cursor of a follow-up in a list with `filter`: the queue (sendable)
/// is ordered by priority, then send time; other lists by due time.
pub fn cursor_in(filter: &FollowUpFilter, follow_up: &follow_ups::Model) -> Keyset {
    if filter.sendable == Some(true) {
        Keyset::ranked(
            follow_up.priority,
            follow_up.send_at.unwrap_or(follow_up.due_at),
            follow_up.id,
        )
    } else {
        keyset(follow_up)
    }
}

/// The coordinator's queue: what may be sent now, most urgent first — care
/// before marketing (a recovery call first of all), then the longest waiting.
async fn queue(
    store: &Store,
    who: &Principal,
    filter: &FollowUpFilter,
    page: &PageRequest,
) -> DomainResult<Page<follow_ups::Model>> {
    use sea_orm::Condition;
    if page.direction == super::page::Direction::Backward || page.before.is_some() {
        return Err(DomainError::invalid(
            "last",
            "the sendable queue pages forward only (first, after)",
        ));
    }
    let mut select = filtered(who, filter);
    if let Some(after) = page.after {
        let (Some(rank), Some(at)) = (after.rank, after.at) else {
            return Err(DomainError::invalid(
                "after",
                "is not a cursor of the sendable queue",
            ));
        };
        select = select.filter(
            Condition::any()
                .add(follow_ups::Column::Priority.gt(rank))
                .add(
                    Condition::all()
                        .add(follow_ups::Column::Priority.eq(rank))
                        .add(follow_ups::Column::SendAt.gt(at)),
                )
                .add(
                    Condition::all()
                        .add(follow_ups::Column::Priority.eq(rank))
                        .add(follow_ups::Column::SendAt.eq(at))
                        .add(follow_ups::Column::Id.gt(after.id)),
                ),
        );
    }
    let mut rows = select
        .order_by_asc(follow_ups::Column::Priority)
        .order_by_asc(follow_ups::Column::SendAt)
        .order_by_asc(follow_ups::Column::Id)
        .limit(page.size + 1)
        .all(store.db.conn())
        .await?;
    let has_next_page = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    Ok(Page {
        items: rows,
        has_previous_page: page.after.is_some(),
        has_next_page,
    })
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
    if filter.sendable == Some(true) {
        return queue(store, who, filter, page).await;
    }
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

/// Plans the follow-ups of `stage`'s rules for a journey that entered it
/// at `entered_at`.
pub(crate) async fn schedule_for_stage(
    write: &mut Write<'_>,
    journey: &journeys::Model,
    stage: &stages::Model,
    entered_at: DateTime<Utc>,
) -> DomainResult<Vec<follow_ups::Model>> {
    let stage_id = stage.id;
    let configuration = outreach::configuration::of(write).await?;
    let wanted = configuration
        .rules_of(stage_id)
        .iter()
        .map(|rule| outreach::Wanted {
            journey_id: journey.id,
            patient_id: journey.patient_id,
            pathway_id: journey.pathway_id,
            stage_id: Some(stage_id),
            named_stage: stage_id,
            rule_id: Some(rule.id),
            reason: Reason::StageRule {
                entered_at,
                delay_hours: rule.delay_hours,
            },
            due_at: entered_at + Duration::hours(rule.delay_hours.into()),
            channel: Channel::parse(&rule.channel).unwrap_or(Channel::Phone),
            channel_chosen: false,
            note: rule.note.clone(),
            assignee: journey.owner_staff_id,
            plan_key: None,
            explanation: None,
            planned_at: None,
        })
        .collect();
    outreach::schedule_knowing(write, wanted, &[stage]).await
}

/// Which open follow-ups of a journey a change cancels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cancelling {
    /// Every one (the journey ended).
    All,
    /// Those about the stage being left: its rules' that say so, and the
    /// nudges, rebookings and win-backs planned for it.
    LeavingStage(Uuid),
}

/// Cancels a journey's open (and blocked) follow-ups, with
/// `follow_up.cancelled` for each. Returns their ids.
pub(crate) async fn cancel_open(
    write: &mut Write<'_>,
    journey_id: Uuid,
    which: Cancelling,
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
        .filter(follow_ups::Column::Status.is_in([
            FollowUpStatus::Open.as_str(),
            FollowUpStatus::Blocked.as_str(),
        ]));
    if let Cancelling::LeavingStage(stage_id) = which {
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
            .filter(
                sea_orm::Condition::any()
                    .add(follow_ups::Column::RuleId.in_subquery(cancelling_rules))
                    .add(follow_ups::Column::Kind.is_in([
                        FollowUpKind::StalledNudge.as_str(),
                        FollowUpKind::RebookingDue.as_str(),
                        FollowUpKind::WinBack.as_str(),
                    ])),
            );
    }
    // One statement: the rows it cancelled come back with it.
    let mut cancelled = update.exec_with_returning(&*write.txn).await?;
    cancelled.sort_unstable_by_key(|f| f.id);
    outreach::emit_cancelled(
        write,
        &cancelled,
        FollowUpStatus::Cancelled,
        reason,
        &Default::default(),
    );
    Ok(cancelled.into_iter().map(|f| f.id).collect())
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
    if !is_pending(&follow_up) {
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
        .filter(follow_ups::Column::Status.eq(follow_up.status.as_str()))
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

/// Plans a service-recovery call on `journey` for a detractor: due 24 h
/// after the feedback, assigned to the journey's owner. One open service
/// recovery per journey is enough; returns `None` when one is already open.
pub(crate) async fn schedule_service_recovery(
    write: &mut Write<'_>,
    journey: &journeys::Model,
    stage_id: Option<Uuid>,
    score: Score,
    feedback_at: DateTime<Utc>,
    note: String,
) -> DomainResult<Option<follow_ups::Model>> {
    let already = write
        .who
        .select::<follow_ups::Entity>()
        .filter(follow_ups::Column::JourneyId.eq(journey.id))
        .filter(follow_ups::Column::Kind.eq(FollowUpKind::ServiceRecovery.as_str()))
        .filter(follow_ups::Column::Status.is_in([
            FollowUpStatus::Open.as_str(),
            FollowUpStatus::Blocked.as_str(),
        ]))
        .count(&*write.txn)
        .await?;
    if already > 0 {
        return Ok(None);
    }
    let wanted = outreach::Wanted {
        journey_id: journey.id,
        patient_id: journey.patient_id,
        pathway_id: journey.pathway_id,
        stage_id,
        named_stage: stage_id.unwrap_or(journey.current_stage_id),
        rule_id: None,
        reason: Reason::ServiceRecovery {
            kind: score.kind(),
            score: score.value(),
            at: feedback_at,
        },
        due_at: feedback_at + Duration::hours(24),
        channel: outreach::default_channel(FollowUpKind::ServiceRecovery),
        channel_chosen: false,
        note: Some(note),
        assignee: journey.owner_staff_id,
        plan_key: None,
        explanation: None,
        planned_at: None,
    };
    Ok(outreach::schedule(write, vec![wanted])
        .await?
        .into_iter()
        .next())
}

/// Plans a review request for a promoter, once per journey, a day after
/// their feedback.
pub(crate) async fn schedule_review_request(
    write: &mut Write<'_>,
    journey: &journeys::Model,
    stage_id: Option<Uuid>,
    score: Score,
    feedback_at: DateTime<Utc>,
) -> DomainResult<Option<follow_ups::Model>> {
    let wanted = outreach::Wanted {
        journey_id: journey.id,
        patient_id: journey.patient_id,
        pathway_id: journey.pathway_id,
        stage_id,
        named_stage: stage_id.unwrap_or(journey.current_stage_id),
        rule_id: None,
        reason: Reason::ReviewRequest {
            kind: score.kind(),
            score: score.value(),
            at: feedback_at,
        },
        due_at: feedback_at + Duration::hours(24),
        channel: outreach::default_channel(FollowUpKind::ReviewRequest),
        channel_chosen: false,
        note: None,
        assignee: journey.owner_staff_id,
        plan_key: Some(review_request_key(journey.id)),
        explanation: None,
        planned_at: None,
    };
    Ok(outreach::schedule(write, vec![wanted])
        .await?
        .into_iter()
        .next())
}

/// The plan key that keeps a journey's review request to one.
pub fn review_request_key(journey: Uuid) -> String {
    format!(
        "{}:{}",
        FollowUpKind::ReviewRequest.as_str(),
        journey.simple()
    )
}

/// A follow-up a coordinator plans by hand.
#[derive(Debug, Clone)]
pub struct ScheduleFollowUp {
    pub patient_id: Uuid,
    /// The patient's latest active journey when absent.
    pub journey_id: Option<Uuid>,
    pub due_at: DateTime<Utc>,
    pub channel: Channel,
    pub note: Option<String>,
    pub assignee_id: Option<Uuid>,
}

/// Plans a MANUAL follow-up (`journeys:write`): on the chosen channel when
/// it is allowed, else on the patient's best allowed one, else BLOCKED.
pub async fn schedule_manual(
    store: &Store,
    who: &Principal,
    input: ScheduleFollowUp,
) -> DomainResult<follow_ups::Model> {
    use entity::staff;
    access::require(who, Permission::JourneysWrite, "planning follow-ups")?;
    let note = super::validate::long_text("note", input.note.as_deref())?;
    let mut write = store.write(who).await?;
    if input.due_at < write.now - Duration::days(30)
        || input.due_at > write.now + Duration::days(3 * 365)
    {
        return Err(DomainError::invalid(
            "dueAt",
            "must be between 30 days ago and 3 years from now",
        ));
    }
    let patient = records::living_patient(&*write.txn, who, input.patient_id, "patientId").await?;
    let journey = match input.journey_id {
        Some(id) => {
            records::of_patient::<journeys::Entity, _>(
                &*write.txn,
                who,
                id,
                "journeyId",
                patient.id,
            )
            .await?
        }
        None => who
            .select::<journeys::Entity>()
            .filter(journeys::Column::PatientId.eq(patient.id))
            .filter(journeys::Column::Status.eq(super::JourneyStatus::Active.as_str()))
            .order_by_desc(journeys::Column::StartedAt)
            .one(&*write.txn)
            .await?
            .ok_or_else(|| {
                DomainError::invalid(
                    "journeyId",
                    "the patient has no active journey; give the journey this follow-up belongs to",
                )
            })?,
    };
    let by = match input.assignee_id {
        Some(id) => Some(
            who.get::<staff::Entity, _>(&*write.txn, id, "staff member")
                .await
                .map_err(|e| e.referenced_by("assigneeId"))?,
        ),
        None => None,
    };
    let planner_name = match who.actor.staff_id() {
        Some(id) => who
            .find_row::<staff::Entity, _>(&*write.txn, id)
            .await?
            .map(|s| s.name),
        None => None,
    };
    let wanted = outreach::Wanted {
        journey_id: journey.id,
        patient_id: patient.id,
        pathway_id: journey.pathway_id,
        stage_id: Some(journey.current_stage_id),
        named_stage: journey.current_stage_id,
        rule_id: None,
        reason: Reason::Manual {
            by: planner_name,
            at: write.now,
        },
        due_at: input.due_at,
        channel: input.channel,
        channel_chosen: true,
        note,
        assignee: by.map(|s| s.id).or(journey.owner_staff_id),
        plan_key: None,
        explanation: None,
        planned_at: None,
    };
    let planned = outreach::schedule(&mut write, vec![wanted])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("a manual plan was not written")))?;
    write.commit().await?;
    Ok(planned)
}

/// Skips a follow-up (`journeys:write`): a coordinator decided not to make
/// it. Emits `follow_up.cancelled` with status SKIPPED.
pub async fn skip(
    store: &Store,
    who: &Principal,
    follow_up_id: Uuid,
    reason: Option<String>,
) -> DomainResult<follow_ups::Model> {
    access::require(who, Permission::JourneysWrite, "skipping follow-ups")?;
    let reason = super::validate::optional_text("reason", reason.as_deref(), 500, false)?;
    let mut write = store.write(who).await?;
    let mut follow_up = who
        .get::<follow_ups::Entity, _>(&*write.txn, follow_up_id, "follow-up")
        .await
        .map_err(|e| e.referenced_by("followUpId"))?;
    if !is_pending(&follow_up) {
        return Err(DomainError::conflict_on(
            "followUpId",
            format!(
                "the follow-up is already {}",
                follow_up.status.to_lowercase()
            ),
        ));
    }
    let updated = who
        .update_rows::<follow_ups::Entity>()
        .col_expr(
            follow_ups::Column::Status,
            Expr::value(FollowUpStatus::Skipped.as_str()),
        )
        .col_expr(follow_ups::Column::SkippedAt, Expr::value(write.now))
        .col_expr(follow_ups::Column::SkipReason, Expr::value(reason.clone()))
        .filter(follow_ups::Column::Id.eq(follow_up.id))
        .filter(follow_ups::Column::Status.eq(follow_up.status.as_str()))
        .exec(&*write.txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::conflict(
            "the follow-up was changed by another request; retry",
        ));
    }
    follow_up.status = FollowUpStatus::Skipped.as_str().to_string();
    follow_up.skipped_at = Some(write.now);
    follow_up.skip_reason = reason.clone();
    outreach::emit_cancelled(
        &mut write,
        std::slice::from_ref(&follow_up),
        FollowUpStatus::Skipped,
        reason.as_deref().unwrap_or("skipped"),
        &Default::default(),
    );
    write.commit().await?;
    Ok(follow_up)
}

/// Planned and not settled yet: open, or blocked.
pub fn is_pending(follow_up: &follow_ups::Model) -> bool {
    follow_up.status == FollowUpStatus::Open.as_str()
        || follow_up.status == FollowUpStatus::Blocked.as_str()
}

/// Announces follow-ups that became overdue: marks up to `limit` of them and
/// emits `follow_up.overdue` for each, exactly once even when several
/// replicas sweep at the same time (the conditional update lets one win).
/// Returns how many were announced.
pub async fn sweep_overdue(store: &Store, limit: u64) -> DomainResult<usize> {
    announce(
        store,
        limit,
        Announcement {
            mark: follow_ups::Column::OverdueNotifiedAt,
            moment: follow_ups::Column::DueAt,
            at_the_moment: false,
            event: Event::FollowUpOverdue,
        },
    )
    .await
}

/// What a sweep announces of open follow-ups: once their `moment` has come
/// (or, unless `at_the_moment`, passed), each gets `mark` set and `event`
/// emitted, once.
pub(crate) struct Announcement {
    pub mark: follow_ups::Column,
    pub moment: follow_ups::Column,
    pub at_the_moment: bool,
    pub event: fn(crate::events::FollowUpNotice) -> Event,
}

/// Marks up to `limit` follow-ups that `what` is due for, oldest moment first,
/// and emits its event for each; a follow-up another replica marked first is
/// skipped (the update is conditional). Returns how many were announced.
pub(crate) async fn announce(store: &Store, limit: u64, what: Announcement) -> DomainResult<usize> {
    let now = super::now();
    let come = if what.at_the_moment {
        what.moment.lte(now)
    } else {
        what.moment.lt(now)
    };
    // The sweeper works for every clinic; each clinic's batch is then written
    // under that clinic's system principal.
    #[allow(clippy::disallowed_methods)]
    let due: Vec<(Uuid, Uuid)> = follow_ups::Entity::find()
        .select_only()
        .column(follow_ups::Column::Id)
        .column(follow_ups::Column::ClinicId)
        .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
        .filter(what.mark.is_null())
        .filter(come)
        .order_by_asc(what.moment)
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
        let mut marked = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::db::ID_CHUNK) {
            marked.extend(
                system
                    .update_rows::<follow_ups::Entity>()
                    .col_expr(what.mark, Expr::value(write.now))
                    .filter(follow_ups::Column::Id.is_in(chunk.iter().copied()))
                    .filter(what.mark.is_null())
                    .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
                    .exec_with_returning(&*write.txn)
                    .await?,
            );
        }
        for follow_up in &marked {
            write.emit((what.event)(outreach::notice(follow_up)));
        }
        announced += marked.len();
        write.commit().await?;
    }
    Ok(announced)
}
