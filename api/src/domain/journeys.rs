//! Journeys: one patient on one pathway, moving through its stages.
//!
//! Rules: at most one ACTIVE journey per patient and pathway; a journey moves
//! only to a stage of its own pathway; every move records a transition,
//! increments `version` and (when the caller sends `expectedVersion`) fails
//! with CONFLICT if someone else moved it first; entering a stage schedules its
//! follow-ups; ending a journey cancels its open follow-ups.

use chrono::{DateTime, Duration, Utc};
use entity::{journeys, pathways, staff, stage_transitions, stages};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, Select, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, JourneyStatus, Store, TransitionKind, Write, access, follow_ups,
    page::{Keyset, Page, PageRequest, Sort, SortKey, finish},
    pathways::stages_of,
    records, validate,
};
use crate::{
    auth::{Permission, Principal},
    events::{Event, JourneyEnded, JourneyStarted, StageChanged, StageRef, stamp},
    ids::{self, FollowUpId, IdKind, JourneyId, PathwayId, PatientId, StageId, TransitionId},
};

/// How to narrow a list of journeys.
#[derive(Debug, Clone, Default)]
pub struct JourneyFilter {
    pub pathway_id: Option<Uuid>,
    pub stage_id: Option<Uuid>,
    pub status: Option<JourneyStatus>,
    /// Active and past the current stage's target time (`true`), or not.
    pub stalled: Option<bool>,
    pub patient_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
}

/// Starting a journey, as a client asks for it.
#[derive(Debug, Clone)]
pub struct StartJourney {
    pub patient_id: Uuid,
    pub pathway_id: Uuid,
    /// The stage to start in; the pathway's first stage by default.
    pub stage_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    /// When the journey really started, for CRM back-fills; now by default.
    pub occurred_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

/// Moving a journey to another stage.
#[derive(Debug, Clone)]
pub struct MoveJourney {
    pub journey_id: Uuid,
    pub stage_id: Uuid,
    pub expected_version: Option<i32>,
    pub note: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Completing or dropping a journey.
#[derive(Debug, Clone)]
pub struct EndJourney {
    pub journey_id: Uuid,
    pub expected_version: Option<i32>,
    /// Why it ended (for drops: "price", "no-show", ...).
    pub note: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The outcome of a journey change.
#[derive(Debug, Clone)]
pub struct JourneyChange {
    pub journey: journeys::Model,
    pub transition: stage_transitions::Model,
}

fn sort_key() -> SortKey<journeys::Entity> {
    SortKey {
        at: None,
        id: journeys::Column::Id,
        sort: Sort::Descending,
    }
}

/// The cursor of a journey in journey lists.
pub fn keyset(journey: &journeys::Model) -> Keyset {
    Keyset::id(journey.id)
}

/// True when the journey is active and has been in its stage longer than the
/// stage's target.
pub fn is_stalled(journey: &journeys::Model, now: DateTime<Utc>) -> bool {
    journey.status == JourneyStatus::Active.as_str() && journey.stalls_at.is_some_and(|at| at < now)
}

fn require_read(who: &Principal) -> DomainResult<()> {
    access::require(who, Permission::JourneysRead, "reading journeys")
}

fn require_write(who: &Principal) -> DomainResult<()> {
    access::require(who, Permission::JourneysWrite, "changing journeys")
}

fn filtered(who: &Principal, filter: &JourneyFilter) -> Select<journeys::Entity> {
    let mut select = who.select::<journeys::Entity>();
    if let Some(pathway) = filter.pathway_id {
        select = select.filter(journeys::Column::PathwayId.eq(pathway));
    }
    if let Some(stage) = filter.stage_id {
        select = select.filter(journeys::Column::CurrentStageId.eq(stage));
    }
    if let Some(status) = filter.status {
        select = select.filter(journeys::Column::Status.eq(status.as_str()));
    }
    if let Some(patient) = filter.patient_id {
        select = select.filter(journeys::Column::PatientId.eq(patient));
    }
    if let Some(owner) = filter.owner_id {
        select = select.filter(journeys::Column::OwnerStaffId.eq(owner));
    }
    if let Some(stalled) = filter.stalled {
        let now = super::now();
        // Spelled out both ways: `NOT (… stalls_at < now)` is NULL, not true,
        // for journeys in a stage without a target.
        select = select.filter(if stalled {
            Condition::all()
                .add(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
                .add(journeys::Column::StallsAt.lt(now))
        } else {
            Condition::any()
                .add(journeys::Column::Status.ne(JourneyStatus::Active.as_str()))
                .add(journeys::Column::StallsAt.is_null())
                .add(journeys::Column::StallsAt.gte(now))
        });
    }
    select
}

/// One page of journeys, newest first.
pub async fn list(
    store: &Store,
    who: &Principal,
    filter: &JourneyFilter,
    page: &PageRequest,
) -> DomainResult<Page<journeys::Model>> {
    require_read(who)?;
    let rows = sort_key()
        .apply(filtered(who, filter), page)
        .all(store.db.conn())
        .await?;
    Ok(finish(rows, page))
}

/// How many journeys match `filter`.
pub async fn count(store: &Store, who: &Principal, filter: &JourneyFilter) -> DomainResult<u64> {
    require_read(who)?;
    Ok(filtered(who, filter).count(store.db.conn()).await?)
}

/// The stage a journey was in at `at`: the current one if it entered it by
/// then, otherwise the one its history shows; `None` before it started.
pub(crate) async fn stage_at<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    journey: &journeys::Model,
    at: DateTime<Utc>,
) -> DomainResult<Option<Uuid>> {
    if at >= journey.stage_entered_at {
        return Ok(Some(journey.current_stage_id));
    }
    let entered = who
        .select::<stage_transitions::Entity>()
        .filter(stage_transitions::Column::JourneyId.eq(journey.id))
        .filter(stage_transitions::Column::OccurredAt.lte(at))
        .filter(stage_transitions::Column::Kind.is_in([
            TransitionKind::Started.as_str(),
            TransitionKind::Forward.as_str(),
            TransitionKind::Backward.as_str(),
        ]))
        .order_by_desc(stage_transitions::Column::OccurredAt)
        .order_by_desc(stage_transitions::Column::Id)
        .one(conn)
        .await?;
    Ok(entered.map(|t| t.to_stage_id))
}

fn stage_ref(stage: &stages::Model) -> StageRef {
    StageRef {
        stage_id: StageId(stage.id),
        key: stage.key.clone(),
        name: stage.name.clone(),
        category: stage.category.clone(),
        position: stage.position,
    }
}

fn follow_up_ids(ids: &[Uuid]) -> Vec<FollowUpId> {
    ids.iter().copied().map(FollowUpId).collect()
}

fn stalls_at(stage: &stages::Model, entered_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    stage
        .target_hours
        .map(|h| entered_at + Duration::hours(h.into()))
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    std::cmp::max((to - from).num_seconds(), 0)
}

/// The time a change happened: given (not in the future, not before the
/// journey's current stage began) or now.
fn change_time(
    write: &Write<'_>,
    occurred_at: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
) -> DomainResult<DateTime<Utc>> {
    let Some(at) = occurred_at else {
        return Ok(write.now);
    };
    let at = validate::past_time("occurredAt", at, write.now)?;
    if let Some(floor) = not_before
        && at < floor
    {
        return Err(DomainError::invalid(
            "occurredAt",
            format!(
                "must not be before the journey entered its current stage ({})",
                stamp::format(floor)
            ),
        ));
    }
    Ok(at)
}

async fn insert_transition(
    write: &Write<'_>,
    journey: &journeys::Model,
    kind: TransitionKind,
    from: Option<(Uuid, DateTime<Utc>)>,
    to_stage_id: Uuid,
    occurred_at: DateTime<Utc>,
    note: Option<String>,
) -> DomainResult<stage_transitions::Model> {
    let transition = stage_transitions::Model {
        id: ids::new_id(),
        clinic_id: journey.clinic_id,
        journey_id: journey.id,
        pathway_id: journey.pathway_id,
        kind: kind.as_str().to_string(),
        from_stage_id: from.map(|(stage, _)| stage),
        to_stage_id,
        seconds_in_from_stage: from.map(|(_, entered)| seconds_between(entered, occurred_at)),
        occurred_at,
        actor_kind: write.who.actor.kind().to_string(),
        actor_id: write.who.actor.id(),
        note,
    };
    stage_transitions::Entity::insert(transition.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    Ok(transition)
}

/// Starts `input.patient_id` on a pathway.
pub async fn start(
    store: &Store,
    who: &Principal,
    input: StartJourney,
) -> DomainResult<JourneyChange> {
    require_write(who)?;
    let mut write = store.write(who).await?;
    let change = start_in(&mut write, input).await?;
    write.commit().await?;
    Ok(change)
}

/// Starts `input.patient_id` on a pathway as part of `write` (the caller
/// checked `journeys:write` and commits).
pub(crate) async fn start_in(
    write: &mut Write<'_>,
    input: StartJourney,
) -> DomainResult<JourneyChange> {
    let who = write.who;
    let note = validate::long_text("note", input.note.as_deref())?;
    let at = change_time(write, input.occurred_at, None)?;
    let patient = records::living_patient(&*write.txn, who, input.patient_id, "patientId").await?;
    let pathway = who
        .get::<pathways::Entity, _>(&*write.txn, input.pathway_id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    if pathway.archived_at.is_some() {
        return Err(DomainError::conflict_on(
            "pathwayId",
            "the pathway is archived",
        ));
    }
    let stages = stages_of(&*write.txn, who, pathway.id).await?;
    let stage = match input.stage_id {
        None => stages
            .first()
            .cloned()
            .ok_or_else(|| DomainError::conflict("the pathway has no stages"))?,
        Some(stage_id) => match stages.iter().find(|s| s.id == stage_id) {
            Some(stage) => stage.clone(),
            None => {
                // Distinguish "not yours" from "not on this pathway".
                super::pathways::stage(&*write.txn, who, stage_id)
                    .await
                    .map_err(|e| e.referenced_by("stageId"))?;
                return Err(DomainError::invalid(
                    "stageId",
                    "the stage belongs to another pathway",
                ));
            }
        },
    };
    if stage.terminal {
        return Err(DomainError::invalid(
            "stageId",
            "a journey cannot start in a terminal stage",
        ));
    }
    if let Some(owner) = input.owner_id {
        who.get::<staff::Entity, _>(&*write.txn, owner, "staff member")
            .await
            .map_err(|e| e.referenced_by("ownerId"))?;
    }
    let already = who
        .select::<journeys::Entity>()
        .filter(journeys::Column::PatientId.eq(patient.id))
        .filter(journeys::Column::PathwayId.eq(pathway.id))
        .filter(journeys::Column::Status.eq(JourneyStatus::Active.as_str()))
        .one(&*write.txn)
        .await?;
    if let Some(active) = already {
        return Err(DomainError::conflict_on(
            "pathwayId",
            format!(
                "the patient already has an active journey on this pathway ({})",
                IdKind::Journey.encode(active.id)
            ),
        ));
    }

    let journey = journeys::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        patient_id: patient.id,
        pathway_id: pathway.id,
        current_stage_id: stage.id,
        status: JourneyStatus::Active.as_str().to_string(),
        stage_entered_at: at,
        stalls_at: stalls_at(&stage, at),
        owner_staff_id: input.owner_id,
        version: 1,
        started_at: at,
        ended_at: None,
        end_reason: None,
        updated_at: write.now,
    };
    journeys::Entity::insert(journey.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    let transition = insert_transition(
        write,
        &journey,
        TransitionKind::Started,
        None,
        stage.id,
        at,
        note,
    )
    .await?;
    write.emit(Event::JourneyStarted(JourneyStarted {
        journey_id: JourneyId(journey.id),
        patient_id: PatientId(journey.patient_id),
        pathway_id: PathwayId(journey.pathway_id),
        transition_id: TransitionId(transition.id),
        stage: stage_ref(&stage),
        version: journey.version,
        started_at: at,
    }));
    follow_ups::schedule_for_stage(write, &journey, &stage, at).await?;
    Ok(JourneyChange {
        journey,
        transition,
    })
}

/// Loads an ACTIVE journey for a change and checks `expected_version`.
async fn active_journey(
    write: &Write<'_>,
    journey_id: Uuid,
    expected_version: Option<i32>,
) -> DomainResult<journeys::Model> {
    let journey = write
        .who
        .get::<journeys::Entity, _>(&*write.txn, journey_id, "journey")
        .await
        .map_err(|e| e.referenced_by("journeyId"))?;
    if let Some(expected) = expected_version
        && expected != journey.version
    {
        return Err(DomainError::conflict_on(
            "expectedVersion",
            format!(
                "the journey is at version {}, not {expected}; reload it and try again",
                journey.version
            ),
        ));
    }
    if journey.status != JourneyStatus::Active.as_str() {
        return Err(DomainError::conflict_on(
            "journeyId",
            format!(
                "the journey is {}, not active",
                journey.status.to_lowercase()
            ),
        ));
    }
    Ok(journey)
}

/// Writes the journey's new state, if and only if nobody changed it since it
/// was read (compare-and-set on `version`).
async fn save(
    write: &Write<'_>,
    before: &journeys::Model,
    after: &journeys::Model,
) -> DomainResult<()> {
    let updated = write
        .who
        .update_rows::<journeys::Entity>()
        .col_expr(
            journeys::Column::CurrentStageId,
            Expr::value(after.current_stage_id),
        )
        .col_expr(journeys::Column::Status, Expr::value(after.status.clone()))
        .col_expr(
            journeys::Column::StageEnteredAt,
            Expr::value(after.stage_entered_at),
        )
        .col_expr(journeys::Column::StallsAt, Expr::value(after.stalls_at))
        .col_expr(journeys::Column::Version, Expr::value(after.version))
        .col_expr(journeys::Column::EndedAt, Expr::value(after.ended_at))
        .col_expr(
            journeys::Column::EndReason,
            Expr::value(after.end_reason.clone()),
        )
        .col_expr(journeys::Column::UpdatedAt, Expr::value(after.updated_at))
        .filter(journeys::Column::Id.eq(before.id))
        .filter(journeys::Column::Version.eq(before.version))
        .exec(&*write.txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::conflict_on(
            "expectedVersion",
            "the journey was changed by another request; reload it and try again",
        ));
    }
    Ok(())
}

/// Moves a journey to another stage of its pathway. Entering a terminal stage
/// also completes the journey.
pub async fn move_to_stage(
    store: &Store,
    who: &Principal,
    input: MoveJourney,
) -> DomainResult<JourneyChange> {
    require_write(who)?;
    let note = validate::long_text("note", input.note.as_deref())?;
    let mut write = store.write(who).await?;
    write.plan_generically().await?;
    let before = active_journey(&write, input.journey_id, input.expected_version).await?;
    let at = change_time(&write, input.occurred_at, Some(before.stage_entered_at))?;
    // The target and the current stage in one statement.
    let mut stages = who
        .by_ids::<stages::Entity, _>(&*write.txn, &[input.stage_id, before.current_stage_id])
        .await?;
    let Some(target) = stages.iter().position(|s| s.id == input.stage_id) else {
        return Err(DomainError::not_found("stage").referenced_by("stageId"));
    };
    let target = stages.swap_remove(target);
    if target.pathway_id != before.pathway_id {
        return Err(DomainError::invalid(
            "stageId",
            "the stage belongs to another pathway than the journey's",
        ));
    }
    if target.id == before.current_stage_id {
        return Err(DomainError::invalid(
            "stageId",
            "the journey is already in this stage",
        ));
    }
    let current = stages
        .pop()
        .ok_or_else(|| DomainError::not_found("stage"))?;
    let kind = if target.position > current.position {
        TransitionKind::Forward
    } else {
        TransitionKind::Backward
    };

    let mut after = before.clone();
    after.current_stage_id = target.id;
    after.stage_entered_at = at;
    after.stalls_at = stalls_at(&target, at);
    after.version += 1;
    after.updated_at = write.now;
    if target.terminal {
        after.status = JourneyStatus::Completed.as_str().to_string();
        after.stalls_at = None;
        after.ended_at = Some(at);
    }
    save(&write, &before, &after).await?;
    let transition = insert_transition(
        &write,
        &after,
        kind,
        Some((current.id, before.stage_entered_at)),
        target.id,
        at,
        note,
    )
    .await?;
    let cancelled = if target.terminal {
        follow_ups::cancel_open(
            &mut write,
            after.id,
            follow_ups::Cancelling::All,
            "journey completed",
        )
        .await?
    } else {
        follow_ups::cancel_open(
            &mut write,
            after.id,
            follow_ups::Cancelling::LeavingStage(current.id),
            "journey left the stage",
        )
        .await?
    };

    let seconds = transition.seconds_in_from_stage.unwrap_or_default();
    write.emit(Event::JourneyStageChanged(StageChanged {
        journey_id: JourneyId(after.id),
        patient_id: PatientId(after.patient_id),
        pathway_id: PathwayId(after.pathway_id),
        transition_id: TransitionId(transition.id),
        direction: kind.as_str().to_string(),
        previous: stage_ref(&current),
        current: stage_ref(&target),
        seconds_in_previous: seconds,
        hours_in_previous: (seconds as f64 / 36.0).round() / 100.0,
        version: after.version,
        occurred_at: at,
        cancelled_follow_up_ids: follow_up_ids(&cancelled),
    }));
    if target.terminal {
        write.emit(Event::JourneyCompleted(ended(
            &after,
            &target,
            &transition,
            &cancelled,
        )));
    } else {
        follow_ups::schedule_for_stage(&mut write, &after, &target, at).await?;
    }
    write.commit().await?;
    Ok(JourneyChange {
        journey: after,
        transition,
    })
}

/// The payload of `journey.completed` or `journey.dropped`.
fn ended(
    journey: &journeys::Model,
    stage: &stages::Model,
    transition: &stage_transitions::Model,
    cancelled: &[Uuid],
) -> JourneyEnded {
    JourneyEnded {
        journey_id: JourneyId(journey.id),
        patient_id: PatientId(journey.patient_id),
        pathway_id: PathwayId(journey.pathway_id),
        transition_id: TransitionId(transition.id),
        stage: stage_ref(stage),
        status: journey.status.clone(),
        reason: journey.end_reason.clone(),
        version: journey.version,
        occurred_at: transition.occurred_at,
        cancelled_follow_up_ids: follow_up_ids(cancelled),
    }
}

/// Ends an active journey as COMPLETED or DROPPED where it stands.
pub async fn end(
    store: &Store,
    who: &Principal,
    input: EndJourney,
    outcome: JourneyStatus,
) -> DomainResult<JourneyChange> {
    require_write(who)?;
    let (kind, reason) = match outcome {
        JourneyStatus::Completed => (TransitionKind::Completed, "journey completed"),
        JourneyStatus::Dropped => (TransitionKind::Dropped, "journey dropped"),
        JourneyStatus::Active => {
            return Err(DomainError::internal(anyhow::anyhow!(
                "end(ACTIVE) makes no sense"
            )));
        }
    };
    let note = validate::optional_text(
        "reason",
        input.note.as_deref(),
        validate::SHORT_TEXT * 5,
        true,
    )?;
    let mut write = store.write(who).await?;
    let before = active_journey(&write, input.journey_id, input.expected_version).await?;
    let at = change_time(&write, input.occurred_at, Some(before.stage_entered_at))?;
    let stage = super::pathways::stage(&*write.txn, who, before.current_stage_id).await?;
    let mut after = before.clone();
    after.status = outcome.as_str().to_string();
    after.stalls_at = None;
    after.ended_at = Some(at);
    after.end_reason = note.clone();
    after.version += 1;
    after.updated_at = write.now;
    save(&write, &before, &after).await?;
    let transition = insert_transition(
        &write,
        &after,
        kind,
        Some((stage.id, before.stage_entered_at)),
        stage.id,
        at,
        note,
    )
    .await?;
    let cancelled =
        follow_ups::cancel_open(&mut write, after.id, follow_ups::Cancelling::All, reason).await?;
    let payload = ended(&after, &stage, &transition, &cancelled);
    write.emit(match outcome {
        JourneyStatus::Dropped => Event::JourneyDropped(payload),
        _ => Event::JourneyCompleted(payload),
    });
    write.commit().await?;
    Ok(JourneyChange {
        journey: after,
        transition,
    })
}
