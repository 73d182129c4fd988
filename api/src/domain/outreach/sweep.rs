//! What time alone causes, planned by the sweeper: a journey that stalled
//! with no contact, a stage's rebooking coming due, a journey gone quiet —
//! and `follow_up.due` when a follow-up may be sent. Each happens once, also
//! with several replicas sweeping at the same time: time-based plans carry a
//! key that is unique in the clinic, and announcements are conditional
//! updates that only one sweeper wins.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::follow_ups;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult};
use uuid::Uuid;

use super::{Wanted, planner::Reason, schedule};
use crate::{
    auth::Principal,
    db::statement,
    domain::{DomainResult, FollowUpKind, Store, follow_ups::Announcement},
    events::Event,
};

/// A journey a time-based reason applies to.
#[derive(Debug, Clone)]
struct Candidate {
    clinic_id: Uuid,
    journey_id: Uuid,
    patient_id: Uuid,
    pathway_id: Uuid,
    stage_id: Uuid,
    owner: Option<Uuid>,
    reason: Reason,
    plan_key: String,
}

/// `a + days <= b`, written for the backend (`a`, `days` columns; `b` a placeholder).
fn days_after(backend: DbBackend, at: &str, days: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("({at} + {days} * interval '1 day') <= ?"),
        _ => format!("julianday({at}) + {days} <= julianday(?)"),
    }
}

/// The later of two timestamps.
fn later(backend: DbBackend, a: &str, b: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("GREATEST({a}, {b})"),
        _ => format!("MAX({a}, {b})"),
    }
}

fn key(kind: FollowUpKind, journey: Uuid, at: DateTime<Utc>) -> String {
    format!(
        "{}:{}:{}",
        kind.as_str(),
        journey.simple(),
        at.timestamp_micros()
    )
}

/// Which journeys a sweep looks at: those of one clinic or all, due by `now`.
struct Scope {
    now: DateTime<Utc>,
    clinic: Option<Uuid>,
    limit: u64,
}

impl Scope {
    /// The condition on `j.clinic_id`, right after `j.status` in each query.
    fn clinic_clause(&self) -> &'static str {
        if self.clinic.is_some() {
            "AND j.clinic_id = ?"
        } else {
            ""
        }
    }

    /// The values in the order the queries use them: clinic, now, limit.
    fn values(&self) -> Vec<sea_orm::Value> {
        let mut values: Vec<sea_orm::Value> = self.clinic.map(Into::into).into_iter().collect();
        values.push(self.now.into());
        values.push((self.limit as i64).into());
        values
    }
}

const JOURNEY_COLUMNS: &str = "j.id AS journey_id, j.clinic_id, j.patient_id, j.pathway_id, \
     j.current_stage_id, j.owner_staff_id, j.stage_entered_at";

/// A candidate journey's clinic, id, patient, pathway, stage, owner and
/// when it entered the stage.
type JourneyRow = (Uuid, Uuid, Uuid, Uuid, Uuid, Option<Uuid>, DateTime<Utc>);

fn base(row: &QueryResult) -> DomainResult<JourneyRow> {
    Ok((
        row.try_get("", "clinic_id")?,
        row.try_get("", "journey_id")?,
        row.try_get("", "patient_id")?,
        row.try_get("", "pathway_id")?,
        row.try_get("", "current_stage_id")?,
        row.try_get("", "owner_staff_id")?,
        row.try_get("", "stage_entered_at")?,
    ))
}

/// Journeys past their stage's target with no contact since they entered it.
async fn stalled(store: &Store, scope: &Scope) -> DomainResult<Vec<Candidate>> {
    let backend = store.db.backend();
    let clinic = scope.clinic_clause();
    let sql = format!(
        "SELECT {JOURNEY_COLUMNS}, j.stalls_at, s.target_hours \
         FROM journeys j JOIN stages s ON s.id = j.current_stage_id \
         WHERE j.status = 'ACTIVE' {clinic} AND j.stalls_at IS NOT NULL AND j.stalls_at < ? \
           AND s.target_hours IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM touchpoints t WHERE t.patient_id = j.patient_id \
                           AND t.occurred_at >= j.stage_entered_at) \
           AND NOT EXISTS (SELECT 1 FROM follow_ups f WHERE f.journey_id = j.id \
                           AND f.kind = 'STALLED_NUDGE' AND f.created_at >= j.stage_entered_at) \
         ORDER BY j.stalls_at LIMIT ?"
    );
    let rows = store
        .db
        .conn()
        .query_all_raw(statement(backend, &sql, scope.values()))
        .await?;
    rows.iter()
        .map(|row| {
            let (clinic_id, journey_id, patient_id, pathway_id, stage_id, owner, entered_at) =
                base(row)?;
            let stalls_at: DateTime<Utc> = row.try_get("", "stalls_at")?;
            let target_hours: i32 = row.try_get("", "target_hours")?;
            Ok(Candidate {
                clinic_id,
                journey_id,
                patient_id,
                pathway_id,
                stage_id,
                owner,
                reason: Reason::StalledNudge {
                    entered_at,
                    target_hours,
                    stalled_since: stalls_at,
                },
                plan_key: key(FollowUpKind::StalledNudge, journey_id, entered_at),
            })
        })
        .collect()
}

/// Journeys whose stage's rebooking cadence came due, not booked yet.
async fn rebooking(store: &Store, scope: &Scope) -> DomainResult<Vec<Candidate>> {
    let backend = store.db.backend();
    let clinic = scope.clinic_clause();
    let due = days_after(backend, "j.stage_entered_at", "s.rebook_after_days");
    let sql = format!(
        "SELECT {JOURNEY_COLUMNS}, s.rebook_after_days \
         FROM journeys j JOIN stages s ON s.id = j.current_stage_id \
         WHERE j.status = 'ACTIVE' {clinic} AND s.rebook_after_days IS NOT NULL AND {due} \
           AND NOT EXISTS (SELECT 1 FROM touchpoints t WHERE t.patient_id = j.patient_id \
                           AND t.kind IN ('booking', 'appointment') AND t.occurred_at >= j.stage_entered_at) \
           AND NOT EXISTS (SELECT 1 FROM follow_ups f WHERE f.journey_id = j.id \
                           AND f.kind = 'REBOOKING_DUE' AND f.created_at >= j.stage_entered_at) \
         ORDER BY j.stage_entered_at LIMIT ?"
    );
    let rows = store
        .db
        .conn()
        .query_all_raw(statement(backend, &sql, scope.values()))
        .await?;
    rows.iter()
        .map(|row| {
            let (clinic_id, journey_id, patient_id, pathway_id, stage_id, owner, entered_at) =
                base(row)?;
            let days: i32 = row.try_get("", "rebook_after_days")?;
            Ok(Candidate {
                clinic_id,
                journey_id,
                patient_id,
                pathway_id,
                stage_id,
                owner,
                reason: Reason::RebookingDue { entered_at, days },
                plan_key: key(FollowUpKind::RebookingDue, journey_id, entered_at),
            })
        })
        .collect()
}

/// Active journeys with no touchpoint in either direction for their stage's
/// win-back days.
async fn gone_quiet(store: &Store, scope: &Scope) -> DomainResult<Vec<Candidate>> {
    let backend = store.db.backend();
    let clinic = scope.clinic_clause();
    let last = later(
        backend,
        "COALESCE((SELECT MAX(t.occurred_at) FROM touchpoints t WHERE t.patient_id = j.patient_id), j.stage_entered_at)",
        "j.stage_entered_at",
    );
    let due = days_after(backend, "q.last_contact", "q.win_back_after_days");
    let sql = format!(
        "SELECT * FROM ( \
           SELECT {JOURNEY_COLUMNS}, s.win_back_after_days, {last} AS last_contact \
           FROM journeys j JOIN stages s ON s.id = j.current_stage_id \
           WHERE j.status = 'ACTIVE' {clinic} AND s.win_back_after_days IS NOT NULL \
         ) q \
         WHERE {due} \
           AND NOT EXISTS (SELECT 1 FROM follow_ups f WHERE f.journey_id = q.journey_id \
                           AND f.kind = 'WIN_BACK' AND f.created_at >= q.last_contact) \
         ORDER BY q.last_contact LIMIT ?"
    );
    let rows = store
        .db
        .conn()
        .query_all_raw(statement(backend, &sql, scope.values()))
        .await?;
    rows.iter()
        .map(|row| {
            let (clinic_id, journey_id, patient_id, pathway_id, stage_id, owner, _) = base(row)?;
            let days: i32 = row.try_get("", "win_back_after_days")?;
            let last_contact: DateTime<Utc> = row.try_get("", "last_contact")?;
            Ok(Candidate {
                clinic_id,
                journey_id,
                patient_id,
                pathway_id,
                stage_id,
                owner,
                reason: Reason::WinBack { last_contact, days },
                plan_key: key(FollowUpKind::WinBack, journey_id, last_contact),
            })
        })
        .collect()
}

/// Plans up to `limit` follow-ups of each time-based reason that came due by
/// now, every clinic's; returns how many were planned.
pub async fn plan_time_based(store: &Store, limit: u64) -> DomainResult<usize> {
    plan_time_based_as_of(store, None, None, limit).await
}

/// As [`plan_time_based`], or as the sweeper would have planned at a moment
/// in the past (`as_of`: the demo's seeding writes the sweeps of the days
/// before it), for one clinic or all.
pub async fn plan_time_based_as_of(
    store: &Store,
    as_of: Option<DateTime<Utc>>,
    clinic: Option<Uuid>,
    limit: u64,
) -> DomainResult<usize> {
    let scope = Scope {
        now: as_of.unwrap_or_else(crate::domain::now),
        clinic,
        limit,
    };
    let mut candidates = stalled(store, &scope).await?;
    candidates.extend(rebooking(store, &scope).await?);
    candidates.extend(gone_quiet(store, &scope).await?);
    let mut by_clinic: BTreeMap<Uuid, Vec<Candidate>> = BTreeMap::new();
    for candidate in candidates {
        by_clinic
            .entry(candidate.clinic_id)
            .or_default()
            .push(candidate);
    }
    let mut planned = 0;
    for (clinic, candidates) in by_clinic {
        let system = Principal::system(clinic);
        let mut write = store.write(&system).await?;
        let wanted = candidates
            .into_iter()
            .map(|c| {
                let kind = c.reason.kind();
                Wanted {
                    journey_id: c.journey_id,
                    patient_id: c.patient_id,
                    pathway_id: c.pathway_id,
                    stage_id: Some(c.stage_id),
                    named_stage: c.stage_id,
                    rule_id: None,
                    reason: c.reason,
                    due_at: as_of.unwrap_or(write.now),
                    channel: super::default_channel(kind),
                    channel_chosen: false,
                    note: None,
                    assignee: c.owner,
                    plan_key: Some(c.plan_key),
                    explanation: None,
                    planned_at: as_of,
                }
            })
            .collect();
        planned += schedule(&mut write, wanted).await?.len();
        write.commit().await?;
    }
    Ok(planned)
}

/// Announces follow-ups whose send time has come: marks up to `limit` and
/// emits `follow_up.due` for each, exactly once even when several replicas
/// sweep at the same time (the conditional update lets one win). Returns how
/// many were announced.
pub async fn announce_due(store: &Store, limit: u64) -> DomainResult<usize> {
    crate::domain::follow_ups::announce(
        store,
        limit,
        Announcement {
            mark: follow_ups::Column::DueNotifiedAt,
            moment: follow_ups::Column::SendAt,
            at_the_moment: true,
            event: Event::FollowUpDue,
        },
    )
    .await
}
