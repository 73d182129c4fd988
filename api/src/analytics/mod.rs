//! The journey map: per stage of a pathway, how many patients are there, how
//! they move on, how long they take, how they feel and where follow-up is
//! late — computed by SQL aggregation, never by loading rows into memory.

pub mod svg;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{pathways, stages};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use crate::{
    auth::{Permission, Principal},
    domain::{
        self, Channel, DomainError, DomainResult, FeedbackKind, JourneyStatus, Store,
        TransitionKind,
    },
};

/// The default window: the last 90 days.
pub const DEFAULT_WINDOW_DAYS: i64 = 90;
/// The longest window: about five years.
pub const MAX_WINDOW_DAYS: i64 = 5 * 366;

/// The time window of a journey map: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// Validates a window; `to` defaults to now, `from` to 90 days before `to`.
    pub fn new(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> DomainResult<Self> {
        let to = to.unwrap_or_else(domain::now);
        let from = from.unwrap_or(to - Duration::days(DEFAULT_WINDOW_DAYS));
        if from >= to {
            return Err(DomainError::invalid("from", "must be before `to`"));
        }
        if to - from > Duration::days(MAX_WINDOW_DAYS) {
            return Err(DomainError::invalid(
                "from",
                format!("the window is at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        Ok(Self { from, to })
    }
}

/// How one stage is doing.
#[derive(Debug, Clone, Default)]
pub struct StageStats {
    pub stage: Option<stages::Model>,
    /// Journeys in the stage now.
    pub active: u64,
    /// Journeys that entered the stage in the window (start, forward or back).
    pub entered: u64,
    /// Journeys that left the stage in the window: moved on, back, completed or dropped.
    pub exited: u64,
    pub moved_forward: u64,
    pub moved_back: u64,
    pub completed: u64,
    pub dropped: u64,
    /// Of the journeys that entered in the window, the share that has since
    /// moved forward (or completed) from this stage.
    pub conversion_rate: Option<f64>,
    pub median_hours: Option<f64>,
    pub p90_hours: Option<f64>,
    /// Active journeys in the stage past its target hours, now.
    pub stalled: u64,
    /// Stalled journeys with no touchpoint since they entered the stage.
    pub blind_spots: u64,
    pub touchpoints: u64,
    /// Distinct journeys with a touchpoint in the stage in the window.
    pub journeys_touched: u64,
    pub average_emotion: Option<f64>,
    pub emotion_samples: u64,
    pub moments_of_truth: u64,
    pub channel_mix: Vec<(Channel, u64)>,
    /// Net Promoter Score, -100 to 100.
    pub nps: Option<f64>,
    pub nps_responses: u64,
    /// Average CSAT, 1 to 5.
    pub csat: Option<f64>,
    pub csat_responses: u64,
    /// Open follow-ups of the stage past due, now.
    pub overdue_follow_ups: u64,
}

/// How many journeys went from one stage to another (or ended) in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub from: Uuid,
    /// None for drop-offs and completions in place.
    pub to: Option<Uuid>,
    pub kind: TransitionKind,
    pub count: u64,
}

/// A pathway's journey map.
#[derive(Debug, Clone)]
pub struct JourneyMap {
    pub pathway: pathways::Model,
    pub window: Window,
    pub generated_at: DateTime<Utc>,
    pub stages: Vec<StageStats>,
    pub flows: Vec<Flow>,
}

/// Raw SQL with `?` placeholders, numbered for PostgreSQL.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::with_capacity(sql.len() + 16);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                } else {
                    numbered.push(c);
                }
            }
            numbered
        }
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

fn count(row: &QueryResult, column: &str) -> DomainResult<u64> {
    let value: Option<i64> = row.try_get("", column)?;
    Ok(value.unwrap_or(0).max(0) as u64)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// Computes the journey map of `pathway_id` over `window`.
pub async fn journey_map(
    store: &Store,
    who: &Principal,
    pathway_id: Uuid,
    window: Window,
) -> DomainResult<JourneyMap> {
    if !who.can(Permission::AnalyticsRead) {
        return Err(DomainError::Forbidden(
            "journey maps need the analytics:read scope".into(),
        ));
    }
    let conn = store.db.conn();
    let backend = store.db.backend();
    let pathway = who
        .get::<pathways::Entity, _>(conn, pathway_id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    let stages = domain::pathways::stages_of(conn, who, pathway_id).await?;
    let now = domain::now();
    let mut stats: HashMap<Uuid, StageStats> = stages
        .iter()
        .map(|s| {
            (
                s.id,
                StageStats {
                    stage: Some(s.clone()),
                    ..Default::default()
                },
            )
        })
        .collect();
    let clinic = Value::from(who.clinic_id);
    let pathway_value = Value::from(pathway_id);
    let (from, to) = (Value::from(window.from), Value::from(window.to));
    let active = JourneyStatus::Active.as_str();

    // Journeys in each stage now, stalled ones, and stalled ones nobody touched.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT j.current_stage_id AS stage_id, COUNT(*) AS active, \
                    SUM(CASE WHEN j.stalls_at < ? THEN 1 ELSE 0 END) AS stalled, \
                    SUM(CASE WHEN j.stalls_at < ? AND NOT EXISTS ( \
                        SELECT 1 FROM touchpoints t WHERE t.journey_id = j.id AND t.occurred_at >= j.stage_entered_at \
                    ) THEN 1 ELSE 0 END) AS blind_spots \
             FROM journeys j \
             WHERE j.clinic_id = ? AND j.pathway_id = ? AND j.status = ? \
             GROUP BY j.current_stage_id",
            vec![now.into(), now.into(), clinic.clone(), pathway_value.clone(), active.into()],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        if let Some(s) = stats.get_mut(&stage) {
            s.active = count(&row, "active")?;
            s.stalled = count(&row, "stalled")?;
            s.blind_spots = count(&row, "blind_spots")?;
        }
    }

    // Every transition of the window, by kind and stages: entries, exits, flows.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT kind, from_stage_id, to_stage_id, COUNT(*) AS n \
             FROM stage_transitions \
             WHERE clinic_id = ? AND pathway_id = ? AND occurred_at >= ? AND occurred_at < ? \
             GROUP BY kind, from_stage_id, to_stage_id",
            vec![
                clinic.clone(),
                pathway_value.clone(),
                from.clone(),
                to.clone(),
            ],
        ))
        .await?;
    let mut flows = Vec::new();
    for row in rows {
        let kind_text: String = row.try_get("", "kind")?;
        let kind = TransitionKind::from_db(&kind_text)?;
        let from_stage: Option<Uuid> = row.try_get("", "from_stage_id")?;
        let to_stage: Uuid = row.try_get("", "to_stage_id")?;
        let n = count(&row, "n")?;
        if matches!(
            kind,
            TransitionKind::Started | TransitionKind::Forward | TransitionKind::Backward
        )
            && let Some(s) = stats.get_mut(&to_stage) {
                s.entered += n;
            }
        if let Some(from_stage) = from_stage {
            if let Some(s) = stats.get_mut(&from_stage) {
                s.exited += n;
                match kind {
                    TransitionKind::Forward => s.moved_forward += n,
                    TransitionKind::Backward => s.moved_back += n,
                    TransitionKind::Completed => s.completed += n,
                    TransitionKind::Dropped => s.dropped += n,
                    TransitionKind::Started => {}
                }
            }
            if kind != TransitionKind::Started {
                let to = matches!(kind, TransitionKind::Forward | TransitionKind::Backward)
                    .then_some(to_stage);
                flows.push(Flow {
                    from: from_stage,
                    to,
                    kind,
                    count: n,
                });
            }
        }
    }
    flows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.from.cmp(&b.from))
            .then(a.to.cmp(&b.to))
    });

    // Conversion: of the journeys that entered a stage in the window, how many
    // have since moved forward from it (or completed there).
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT e.to_stage_id AS stage_id, COUNT(*) AS entered, \
                    SUM(CASE WHEN EXISTS ( \
                        SELECT 1 FROM stage_transitions x \
                        WHERE x.journey_id = e.journey_id AND x.from_stage_id = e.to_stage_id \
                          AND x.kind IN (?, ?) AND x.occurred_at >= e.occurred_at \
                    ) THEN 1 ELSE 0 END) AS converted \
             FROM stage_transitions e \
             WHERE e.clinic_id = ? AND e.pathway_id = ? AND e.kind IN (?, ?, ?) \
               AND e.occurred_at >= ? AND e.occurred_at < ? \
             GROUP BY e.to_stage_id",
            vec![
                TransitionKind::Forward.as_str().into(),
                TransitionKind::Completed.as_str().into(),
                clinic.clone(),
                pathway_value.clone(),
                TransitionKind::Started.as_str().into(),
                TransitionKind::Forward.as_str().into(),
                TransitionKind::Backward.as_str().into(),
                from.clone(),
                to.clone(),
            ],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        if let Some(s) = stats.get_mut(&stage) {
            let entered = count(&row, "entered")?;
            s.conversion_rate = ratio(count(&row, "converted")?, entered).map(|r| round(r, 4));
        }
    }

    // Median and 90th percentile of the time spent in each stage (nearest rank),
    // over the exits of the window.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT stage_id, seconds, rn, n FROM ( \
                SELECT from_stage_id AS stage_id, seconds_in_from_stage AS seconds, \
                       ROW_NUMBER() OVER (PARTITION BY from_stage_id ORDER BY seconds_in_from_stage) AS rn, \
                       COUNT(*) OVER (PARTITION BY from_stage_id) AS n \
                FROM stage_transitions \
                WHERE clinic_id = ? AND pathway_id = ? AND from_stage_id IS NOT NULL \
                  AND seconds_in_from_stage IS NOT NULL AND occurred_at >= ? AND occurred_at < ? \
             ) ranked \
             WHERE rn = (n + 1) / 2 OR rn = (9 * n + 9) / 10",
            vec![clinic.clone(), pathway_value.clone(), from.clone(), to.clone()],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        let seconds: i64 = row.try_get("", "seconds")?;
        let (rn, n): (i64, i64) = (row.try_get("", "rn")?, row.try_get("", "n")?);
        if let Some(s) = stats.get_mut(&stage) {
            let hours = round(seconds as f64 / 3600.0, 2);
            if rn == (n + 1) / 2 {
                s.median_hours = Some(hours);
            }
            if rn == (9 * n + 9) / 10 {
                s.p90_hours = Some(hours);
            }
        }
    }

    // Touchpoints: volume, reach, emotion, moments of truth, channel mix.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT t.stage_id, t.channel, COUNT(*) AS n, \
                    COUNT(t.emotion) AS emotion_samples, \
                    CAST(SUM(t.emotion) AS DOUBLE PRECISION) AS emotion_sum, \
                    SUM(CASE WHEN t.moment_of_truth THEN 1 ELSE 0 END) AS moments \
             FROM touchpoints t JOIN stages s ON s.id = t.stage_id \
             WHERE t.clinic_id = ? AND s.pathway_id = ? AND t.occurred_at >= ? AND t.occurred_at < ? \
             GROUP BY t.stage_id, t.channel",
            vec![clinic.clone(), pathway_value.clone(), from.clone(), to.clone()],
        ))
        .await?;
    let mut emotion_sums: HashMap<Uuid, f64> = HashMap::new();
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        let channel: String = row.try_get("", "channel")?;
        let emotion_sum: Option<f64> = row.try_get("", "emotion_sum")?;
        if let Some(s) = stats.get_mut(&stage) {
            let n = count(&row, "n")?;
            s.touchpoints += n;
            s.emotion_samples += count(&row, "emotion_samples")?;
            s.moments_of_truth += count(&row, "moments")?;
            *emotion_sums.entry(stage).or_default() += emotion_sum.unwrap_or(0.0);
            s.channel_mix.push((Channel::from_db(&channel)?, n));
        }
    }
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT t.stage_id, COUNT(DISTINCT t.journey_id) AS journeys \
             FROM touchpoints t JOIN stages s ON s.id = t.stage_id \
             WHERE t.clinic_id = ? AND s.pathway_id = ? AND t.occurred_at >= ? AND t.occurred_at < ? \
             GROUP BY t.stage_id",
            vec![clinic.clone(), pathway_value.clone(), from.clone(), to.clone()],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        if let Some(s) = stats.get_mut(&stage) {
            s.journeys_touched = count(&row, "journeys")?;
        }
    }
    for (stage, sum) in emotion_sums {
        if let Some(s) = stats.get_mut(&stage) {
            s.average_emotion =
                (s.emotion_samples > 0).then(|| round(sum / s.emotion_samples as f64, 2));
            s.channel_mix
                .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
    }

    // Feedback: NPS (promoters minus detractors) and average CSAT.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT f.stage_id, \
                    SUM(CASE WHEN f.kind = ? THEN 1 ELSE 0 END) AS nps_n, \
                    SUM(CASE WHEN f.kind = ? AND f.score >= 9 THEN 1 ELSE 0 END) AS promoters, \
                    SUM(CASE WHEN f.kind = ? AND f.score <= 6 THEN 1 ELSE 0 END) AS detractors, \
                    SUM(CASE WHEN f.kind = ? THEN 1 ELSE 0 END) AS csat_n, \
                    CAST(SUM(CASE WHEN f.kind = ? THEN f.score ELSE 0 END) AS DOUBLE PRECISION) AS csat_sum \
             FROM feedback f JOIN stages s ON s.id = f.stage_id \
             WHERE f.clinic_id = ? AND s.pathway_id = ? AND f.submitted_at >= ? AND f.submitted_at < ? \
             GROUP BY f.stage_id",
            vec![
                FeedbackKind::Nps.as_str().into(),
                FeedbackKind::Nps.as_str().into(),
                FeedbackKind::Nps.as_str().into(),
                FeedbackKind::Csat.as_str().into(),
                FeedbackKind::Csat.as_str().into(),
                clinic.clone(),
                pathway_value.clone(),
                from.clone(),
                to.clone(),
            ],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        if let Some(s) = stats.get_mut(&stage) {
            s.nps_responses = count(&row, "nps_n")?;
            let (promoters, detractors) = (count(&row, "promoters")?, count(&row, "detractors")?);
            s.nps = (s.nps_responses > 0).then(|| {
                round(
                    (promoters as f64 - detractors as f64) * 100.0 / s.nps_responses as f64,
                    1,
                )
            });
            s.csat_responses = count(&row, "csat_n")?;
            let csat_sum: Option<f64> = row.try_get("", "csat_sum")?;
            s.csat = (s.csat_responses > 0)
                .then(|| round(csat_sum.unwrap_or(0.0) / s.csat_responses as f64, 2));
        }
    }

    // Open follow-ups past due, now.
    let rows = conn
        .query_all_raw(statement(
            backend,
            "SELECT f.stage_id, COUNT(*) AS n \
             FROM follow_ups f JOIN stages s ON s.id = f.stage_id \
             WHERE f.clinic_id = ? AND s.pathway_id = ? AND f.status = ? AND f.due_at < ? \
             GROUP BY f.stage_id",
            vec![
                clinic.clone(),
                pathway_value.clone(),
                domain::FollowUpStatus::Open.as_str().into(),
                now.into(),
            ],
        ))
        .await?;
    for row in rows {
        let stage: Uuid = row.try_get("", "stage_id")?;
        if let Some(s) = stats.get_mut(&stage) {
            s.overdue_follow_ups = count(&row, "n")?;
        }
    }

    let stages = stages
        .iter()
        .map(|s| stats.remove(&s.id).unwrap_or_default())
        .collect();
    Ok(JourneyMap {
        pathway,
        window,
        generated_at: now,
        stages,
        flows,
    })
}
