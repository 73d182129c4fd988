//! Outreach: the clinic's plan of whom to contact, when, on which channel,
//! and with which words. A follow-up is the unit of outreach; this module
//! plans them.
//!
//! - [`planner`]: pure rules: the channel (consented, preferred, answered),
//!   the send time (quiet hours in the patient's zone, frequency limits), the
//!   explanation, the draft, the priority.
//! - [`facts`]: what the planner needs to know, loaded for many patients at once.
//! - [`configuration`]: the clinic's policy, templates, pathway names and
//!   stage rules, kept in memory between changes to them.
//! - [`consent`]: consent per channel and purpose, an append-only history.
//! - [`templates`]: the clinic's draft messages and their defaults.
//! - [`settings`]: the clinic's policy, patients' contact preferences, stage
//!   cadences, templates — set through the API.
//! - [`sweep`]: what time alone causes (stalls, rebooking, win-back) and the
//!   `follow_up.due` announcements, exactly once across replicas.
//!
//! Planning happens in the transaction of the change that causes it
//! ([`schedule`]); a change that makes plans wrong re-plans them
//! ([`replan_patient`]) with `follow_up.cancelled` and `follow_up.scheduled`.

pub mod configuration;
pub mod consent;
pub mod facts;
pub mod planner;
pub mod settings;
pub mod sweep;
pub mod templates;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{follow_ups, stages};
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, TryInsertResult, sea_query::Expr,
};
use uuid::Uuid;

use self::planner::{Draft, Plan, Reason};
use super::{Channel, DomainResult, FollowUpKind, FollowUpStatus, Write};
use crate::{
    events::{Event, FollowUpCancelled, FollowUpNotice},
    ids::{self, FollowUpId, JourneyId, PatientId, StaffId, StageId},
};

/// A follow-up something wants planned.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub journey_id: Uuid,
    pub patient_id: Uuid,
    pub pathway_id: Uuid,
    /// The stage it is about (a rule's stage, the stage a journey stalled in).
    pub stage_id: Option<Uuid>,
    /// The stage whose name the explanation and the draft use.
    pub named_stage: Uuid,
    pub rule_id: Option<Uuid>,
    pub reason: Reason,
    pub due_at: DateTime<Utc>,
    /// The rule's channel, or the one a person chose (`channel_chosen`).
    pub channel: Channel,
    pub channel_chosen: bool,
    pub note: Option<String>,
    pub assignee: Option<Uuid>,
    /// Makes a time-based plan happen once: a second plan with the same key
    /// is not written.
    pub plan_key: Option<String>,
    /// An explanation carried over from the follow-up this one replaces.
    pub explanation: Option<String>,
    /// When it is planned: now, unless history is being written (the demo).
    /// It is never sent earlier.
    pub planned_at: Option<DateTime<Utc>>,
}

/// Plans `wanted` and writes the follow-ups in this change, each with its
/// `follow_up.scheduled`; returns those written (a plan whose key exists
/// already is left out).
pub async fn schedule(
    write: &mut Write<'_>,
    wanted: Vec<Wanted>,
) -> DomainResult<Vec<follow_ups::Model>> {
    schedule_knowing(write, wanted, &[]).await
}

/// [`schedule`], for a caller that has read some of the stages the plans
/// name already in this change (a stage move has its target): those are not
/// read again.
pub async fn schedule_knowing(
    write: &mut Write<'_>,
    wanted: Vec<Wanted>,
    known_stages: &[&stages::Model],
) -> DomainResult<Vec<follow_ups::Model>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let planned = plan_all(write, &wanted, known_stages).await?;
    let rows: Vec<follow_ups::Model> = wanted
        .iter()
        .zip(planned)
        .map(|(want, plan)| row(write, want, &plan))
        .collect();
    let written = insert(write, rows).await?;
    for follow_up in &written {
        write.emit(Event::FollowUpScheduled(notice(follow_up)));
    }
    Ok(written)
}

/// The plans of `wanted`, in order; each plan keeps its distance from the
/// ones before it.
async fn plan_all(
    write: &Write<'_>,
    wanted: &[Wanted],
    known_stages: &[&stages::Model],
) -> DomainResult<Vec<Plan>> {
    let who = write.who;
    let conn = &*write.txn;
    let mut stages: HashMap<Uuid, stages::Model> =
        known_stages.iter().map(|s| (s.id, (*s).clone())).collect();
    let stage_ids: Vec<Uuid> = unique(
        wanted
            .iter()
            .map(|w| w.named_stage)
            .filter(|id| !stages.contains_key(id)),
    );
    if !stage_ids.is_empty() {
        stages.extend(
            who.by_ids::<stages::Entity, _>(conn, &stage_ids)
                .await?
                .into_iter()
                .map(|s| (s.id, s)),
        );
    }
    let patient_ids: Vec<Uuid> = unique(wanted.iter().map(|w| w.patient_id));
    let configuration = configuration::of(write).await?;
    let clinic = &configuration.clinic;
    let mut patients = facts::patients(conn, who, &patient_ids, write.now).await?;
    let mut plans = Vec::with_capacity(wanted.len());
    for want in wanted {
        let stage = stages.get(&want.named_stage);
        let draft = Draft {
            reason: want.reason.clone(),
            due_at: want.due_at,
            not_before: want.planned_at.unwrap_or(write.now),
            channel: want.channel,
            channel_chosen: want.channel_chosen,
            stage_name: stage.map(|s| s.name.clone()).unwrap_or_default(),
            stage_position: stage.map(|s| s.position).unwrap_or_default(),
            pathway_name: configuration
                .pathway_name(want.pathway_id)
                .unwrap_or_default()
                .to_string(),
        };
        let facts = patients.entry(want.patient_id).or_default();
        let mut plan = planner::plan(&draft, facts, clinic);
        if let Some(explanation) = &want.explanation {
            plan.explanation = explanation.clone();
        }
        facts.planned(&plan);
        plans.push(plan);
    }
    Ok(plans)
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

fn row(write: &Write<'_>, want: &Wanted, plan: &Plan) -> follow_ups::Model {
    follow_ups::Model {
        id: ids::new_id(),
        clinic_id: write.who.clinic_id,
        journey_id: want.journey_id,
        patient_id: want.patient_id,
        stage_id: want.stage_id,
        rule_id: want.rule_id,
        kind: plan.kind.as_str().to_string(),
        purpose: plan.purpose.as_str().to_string(),
        due_at: want.due_at,
        channel: plan.channel.as_str().to_string(),
        note: want.note.clone(),
        assignee_staff_id: want.assignee,
        status: plan.status.as_str().to_string(),
        send_at: Some(plan.send_at),
        explanation: Some(plan.explanation.clone()),
        message: Some(plan.message.clone()),
        priority: plan.priority,
        blocked_reason: plan.blocked_reason.clone(),
        due_notified_at: None,
        skipped_at: None,
        skip_reason: None,
        plan_key: want.plan_key.clone(),
        completed_at: None,
        completed_by_touchpoint_id: None,
        cancelled_at: None,
        cancel_reason: None,
        overdue_notified_at: None,
        created_at: want.planned_at.unwrap_or(write.now),
    }
}

/// Inserts follow-ups; those whose plan key is taken (planned already, here
/// or by another replica) are skipped. Returns those written.
async fn insert(
    write: &Write<'_>,
    rows: Vec<follow_ups::Model>,
) -> DomainResult<Vec<follow_ups::Model>> {
    let mut written = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(200) {
        let keyed = chunk.iter().any(|r| r.plan_key.is_some());
        if !keyed {
            follow_ups::Entity::insert_many(
                chunk
                    .iter()
                    .cloned()
                    .map(IntoActiveModel::into_active_model),
            )
            .exec_without_returning(&*write.txn)
            .await?;
            written.extend(chunk.iter().cloned());
            continue;
        }
        let inserted = follow_ups::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict_do_nothing_on([follow_ups::Column::ClinicId, follow_ups::Column::PlanKey])
        .exec_with_returning_keys(&*write.txn)
        .await?;
        let ids: HashSet<Uuid> = match inserted {
            TryInsertResult::Inserted(ids) => ids.into_iter().collect(),
            TryInsertResult::Empty | TryInsertResult::Conflicted => HashSet::new(),
        };
        written.extend(chunk.iter().filter(|r| ids.contains(&r.id)).cloned());
    }
    Ok(written)
}

/// What `follow_up.scheduled`, `.due` and `.overdue` say of a follow-up.
pub fn notice(follow_up: &follow_ups::Model) -> FollowUpNotice {
    FollowUpNotice {
        follow_up_id: FollowUpId(follow_up.id),
        kind: follow_up.kind.clone(),
        journey_id: JourneyId(follow_up.journey_id),
        patient_id: PatientId(follow_up.patient_id),
        stage_id: follow_up.stage_id.map(StageId),
        due_at: follow_up.due_at,
        channel: follow_up.channel.clone(),
        assignee_id: follow_up.assignee_staff_id.map(StaffId),
        purpose: Some(follow_up.purpose.clone()),
        send_at: follow_up.send_at,
        status: Some(follow_up.status.clone()),
    }
}

/// Emits `follow_up.cancelled` for follow-ups this change cancelled or skipped.
pub fn emit_cancelled(
    write: &mut Write<'_>,
    cancelled: &[follow_ups::Model],
    status: FollowUpStatus,
    reason: &str,
    replaced_by: &HashMap<Uuid, Uuid>,
) {
    for follow_up in cancelled {
        write.emit(Event::FollowUpCancelled(FollowUpCancelled {
            follow_up_id: FollowUpId(follow_up.id),
            kind: follow_up.kind.clone(),
            journey_id: JourneyId(follow_up.journey_id),
            patient_id: PatientId(follow_up.patient_id),
            status: status.as_str().to_string(),
            reason: reason.to_string(),
            replaced_by: replaced_by.get(&follow_up.id).copied().map(FollowUpId),
        }));
    }
}

/// Which of a patient's plans a change makes worth planning again.
#[derive(Debug, Clone, Copy)]
pub enum Affected {
    /// Those on `channel` for `purpose` (a consent was withdrawn).
    OnChannel(Channel, super::ConsentPurpose),
    /// The blocked ones (a consent was given).
    Blocked,
    /// Every open or blocked one (the patient's zone, hours or preference changed).
    All,
}

/// Plans `patient`'s open and blocked follow-ups again after a change
/// (`why`, in a few words); those whose plan changes are cancelled, with
/// `follow_up.cancelled`, and replaced, with `follow_up.scheduled`. Returns
/// how many were replaced.
pub async fn replan_patient(
    write: &mut Write<'_>,
    patient: Uuid,
    affected: Affected,
    why: &str,
) -> DomainResult<usize> {
    let mut select = write
        .who
        .select::<follow_ups::Entity>()
        .filter(follow_ups::Column::PatientId.eq(patient))
        .filter(follow_ups::Column::Status.is_in([
            FollowUpStatus::Open.as_str(),
            FollowUpStatus::Blocked.as_str(),
        ]));
    match affected {
        Affected::OnChannel(channel, purpose) => {
            select = select
                .filter(follow_ups::Column::Channel.eq(channel.as_str()))
                .filter(follow_ups::Column::Purpose.eq(purpose.as_str()))
                .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()));
        }
        Affected::Blocked => {
            select = select.filter(follow_ups::Column::Status.eq(FollowUpStatus::Blocked.as_str()));
        }
        Affected::All => {}
    }
    let current = select.all(&*write.txn).await?;
    if current.is_empty() {
        return Ok(0);
    }
    let wanted: Vec<Wanted> = current
        .iter()
        .map(|f| {
            let kind = FollowUpKind::parse(&f.kind).unwrap_or(FollowUpKind::Manual);
            Wanted {
                journey_id: f.journey_id,
                patient_id: f.patient_id,
                pathway_id: Uuid::nil(),
                stage_id: f.stage_id,
                named_stage: f.stage_id.unwrap_or_default(),
                rule_id: f.rule_id,
                reason: Reason::Manual {
                    by: None,
                    at: f.created_at,
                },
                due_at: f.due_at,
                channel: if kind == FollowUpKind::Manual {
                    Channel::parse(&f.channel).unwrap_or(Channel::Phone)
                } else {
                    original_channel(f)
                },
                channel_chosen: kind == FollowUpKind::Manual,
                note: f.note.clone(),
                assignee: f.assignee_staff_id,
                plan_key: f.plan_key.clone(),
                explanation: f.explanation.clone(),
                planned_at: None,
            }
        })
        .collect();
    let wanted = with_pathways(write, wanted).await?;
    let plans = plan_all(write, &wanted, &[]).await?;
    let mut replacements = Vec::new();
    let mut replaced = Vec::new();
    for ((old, want), mut plan) in current.iter().zip(&wanted).zip(plans) {
        plan.kind = FollowUpKind::parse(&old.kind).unwrap_or(plan.kind);
        let same = old.channel == plan.channel.as_str()
            && old.status == plan.status.as_str()
            && old.send_at == Some(plan.send_at);
        if same {
            continue;
        }
        let mut new = row(write, want, &plan);
        new.purpose = old.purpose.clone();
        new.priority = old.priority;
        replacements.push(new);
        replaced.push(old.clone());
    }
    if replaced.is_empty() {
        return Ok(0);
    }
    // The old plans give up their keys to their replacements.
    for chunk in replaced.chunks(crate::db::ID_CHUNK) {
        write
            .who
            .update_rows::<follow_ups::Entity>()
            .col_expr(
                follow_ups::Column::Status,
                Expr::value(FollowUpStatus::Cancelled.as_str()),
            )
            .col_expr(follow_ups::Column::CancelledAt, Expr::value(write.now))
            .col_expr(follow_ups::Column::CancelReason, Expr::value(why))
            .col_expr(
                follow_ups::Column::PlanKey,
                Expr::value(Option::<String>::None),
            )
            .filter(follow_ups::Column::Id.is_in(chunk.iter().map(|f| f.id)))
            .exec(&*write.txn)
            .await?;
    }
    let written = insert(write, replacements).await?;
    let by_old: HashMap<Uuid, Uuid> = replaced
        .iter()
        .zip(&written)
        .map(|(old, new)| (old.id, new.id))
        .collect();
    emit_cancelled(write, &replaced, FollowUpStatus::Cancelled, why, &by_old);
    for follow_up in &written {
        write.emit(Event::FollowUpScheduled(notice(follow_up)));
    }
    Ok(written.len())
}

/// The channel a reason asks for before the patient's consent and habits
/// are weighed: a call to recover a detractor or nudge a stalled journey, a
/// text otherwise. Stage rules and manual follow-ups name their own.
pub fn default_channel(kind: FollowUpKind) -> Channel {
    match kind {
        FollowUpKind::ServiceRecovery | FollowUpKind::StalledNudge => Channel::Phone,
        _ => Channel::Sms,
    }
}

/// The channel a follow-up was first planned for; re-planning starts from
/// there again.
fn original_channel(follow_up: &follow_ups::Model) -> Channel {
    match FollowUpKind::parse(&follow_up.kind) {
        Some(FollowUpKind::StageRule | FollowUpKind::Manual) | None => {
            Channel::parse(&follow_up.channel).unwrap_or(Channel::Sms)
        }
        Some(kind) => default_channel(kind),
    }
}

/// Fills in the pathway (and the named stage) of wanted plans from their
/// journeys, and the channel of their rules.
async fn with_pathways(write: &Write<'_>, mut wanted: Vec<Wanted>) -> DomainResult<Vec<Wanted>> {
    use entity::{follow_up_rules, journeys};
    let rule_ids: Vec<Uuid> = unique(wanted.iter().filter_map(|w| w.rule_id));
    let rules: HashMap<Uuid, Channel> = write
        .who
        .by_ids::<follow_up_rules::Entity, _>(&*write.txn, &rule_ids)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.id, Channel::parse(&r.channel)?)))
        .collect();
    for want in &mut wanted {
        if let Some(channel) = want.rule_id.and_then(|r| rules.get(&r)) {
            want.channel = *channel;
        }
    }
    let ids = unique(wanted.iter().map(|w| w.journey_id));
    let journeys: HashMap<Uuid, journeys::Model> = write
        .who
        .by_ids::<journeys::Entity, _>(&*write.txn, &ids)
        .await?
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    for want in &mut wanted {
        if let Some(journey) = journeys.get(&want.journey_id) {
            want.pathway_id = journey.pathway_id;
            if want.stage_id.is_none() {
                want.named_stage = journey.current_stage_id;
            }
        }
    }
    Ok(wanted)
}

/// Plans the open follow-ups of a freshly seeded clinic (the demo), which
/// the seeder writes as history, without events: their channel, send time,
/// explanation, draft, priority and status, as the domain would have planned
/// them. Returns how many were planned.
pub async fn plan_seeded(store: &super::Store, clinic: Uuid) -> DomainResult<usize> {
    use entity::feedback;
    use sea_orm::QueryOrder;
    let system = crate::auth::Principal::system(clinic);
    let mut planned = 0;
    let mut after: Option<Uuid> = None;
    loop {
        let write = store.write(&system).await?;
        let mut select = system
            .select::<follow_ups::Entity>()
            .filter(follow_ups::Column::Status.eq(FollowUpStatus::Open.as_str()))
            .order_by_asc(follow_ups::Column::Id);
        if let Some(after) = after {
            select = select.filter(follow_ups::Column::Id.gt(after));
        }
        let open = sea_orm::QuerySelect::limit(select, 500)
            .all(&*write.txn)
            .await?;
        let Some(last) = open.last() else { break };
        after = Some(last.id);
        let journeys = unique(open.iter().map(|f| f.journey_id));
        let scores: HashMap<(Uuid, DateTime<Utc>), (super::FeedbackKind, i16)> = system
            .select::<feedback::Entity>()
            .filter(feedback::Column::JourneyId.is_in(journeys))
            .all(&*write.txn)
            .await?
            .into_iter()
            .filter_map(|f| {
                Some((
                    (f.journey_id?, f.submitted_at),
                    (super::FeedbackKind::parse(&f.kind)?, f.score?),
                ))
            })
            .collect();
        let wanted: Vec<Wanted> = open
            .iter()
            .map(|f| {
                let feedback = || {
                    scores
                        .get(&(f.journey_id, f.created_at))
                        .copied()
                        .unwrap_or((super::FeedbackKind::Nps, 0))
                };
                let kind = FollowUpKind::parse(&f.kind);
                let reason = match kind {
                    Some(FollowUpKind::ServiceRecovery) => {
                        let (kind, score) = feedback();
                        Reason::ServiceRecovery {
                            kind,
                            score,
                            at: f.created_at,
                        }
                    }
                    Some(FollowUpKind::ReviewRequest) => {
                        let (kind, score) = feedback();
                        Reason::ReviewRequest {
                            kind,
                            score,
                            at: f.created_at,
                        }
                    }
                    Some(FollowUpKind::Manual) => Reason::Manual {
                        by: None,
                        at: f.created_at,
                    },
                    _ => Reason::StageRule {
                        entered_at: f.created_at,
                        delay_hours: (f.due_at - f.created_at).num_hours() as i32,
                    },
                };
                Wanted {
                    journey_id: f.journey_id,
                    patient_id: f.patient_id,
                    pathway_id: Uuid::nil(),
                    stage_id: f.stage_id,
                    named_stage: f.stage_id.unwrap_or_default(),
                    rule_id: f.rule_id,
                    reason,
                    due_at: f.due_at,
                    channel: original_channel(f),
                    channel_chosen: kind == Some(FollowUpKind::Manual),
                    note: f.note.clone(),
                    assignee: f.assignee_staff_id,
                    plan_key: f.plan_key.clone(),
                    explanation: None,
                    planned_at: Some(f.created_at),
                }
            })
            .collect();
        let wanted = with_pathways(&write, wanted).await?;
        let plans = plan_all(&write, &wanted, &[]).await?;
        for (follow_up, plan) in open.iter().zip(&plans) {
            system
                .update_rows::<follow_ups::Entity>()
                .col_expr(
                    follow_ups::Column::Channel,
                    Expr::value(plan.channel.as_str()),
                )
                .col_expr(
                    follow_ups::Column::Status,
                    Expr::value(plan.status.as_str()),
                )
                .col_expr(
                    follow_ups::Column::Purpose,
                    Expr::value(plan.purpose.as_str()),
                )
                .col_expr(follow_ups::Column::SendAt, Expr::value(plan.send_at))
                .col_expr(
                    follow_ups::Column::Explanation,
                    Expr::value(plan.explanation.clone()),
                )
                .col_expr(
                    follow_ups::Column::Message,
                    Expr::value(plan.message.clone()),
                )
                .col_expr(follow_ups::Column::Priority, Expr::value(plan.priority))
                .col_expr(
                    follow_ups::Column::BlockedReason,
                    Expr::value(plan.blocked_reason.clone()),
                )
                .filter(follow_ups::Column::Id.eq(follow_up.id))
                .exec(&*write.txn)
                .await?;
        }
        planned += plans.len();
        write.commit().await?;
    }
    Ok(planned)
}
