//! The journey map: per stage of a pathway, how many patients are there, how
//! they move on, how long they take, how they feel and where follow-up is
//! late — computed by SQL aggregation, never by loading rows into memory.

pub mod svg;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{pathways, stages};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use uuid::Uuid;

use crate::{
    auth::{Permission, Principal},
    domain::{
        self, Channel, DomainError, DomainResult, FeedbackKind, JourneyStatus, Store,
        TransitionKind, access,
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
    /// Journeys in the stage at the end of the window (now, by default).
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
    /// Journeys in the stage past its target hours at the end of the window.
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
    /// Open follow-ups of the stage past due at the end of the window.
    pub overdue_follow_ups: u64,
    /// The lowest-scored feedback with comments, worst first, without the patient.
    pub pain_points: Vec<PainPoint>,
    /// Does outreach work? Per follow-up kind planned in the window.
    pub outreach: Vec<OutreachStats>,
}

/// Outreach of one kind planned in a stage in the window, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutreachStats {
    pub kind: domain::FollowUpKind,
    /// Follow-ups planned.
    pub planned: u64,
    /// Of those, made (done).
    pub sent: u64,
    /// Of those, blocked: no channel allowed.
    pub blocked: u64,
    /// Of those made, answered by the patient within 72 hours.
    pub answered: u64,
    /// Of those made, followed by the journey moving forward from the stage
    /// within 14 days.
    pub advanced: u64,
}

/// A low score with a comment: what hurt, in the patient's words.
#[derive(Debug, Clone, PartialEq)]
pub struct PainPoint {
    pub kind: FeedbackKind,
    pub score: i16,
    pub comment: String,
    pub submitted_at: DateTime<Utc>,
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

/// The figures of one window.
#[derive(Debug, Clone)]
pub struct Figures {
    pub window: Window,
    /// One entry per stage of the pathway, in order.
    pub stages: Vec<StageStats>,
    pub flows: Vec<Flow>,
}

/// A pathway's journey map, optionally compared with an earlier window.
#[derive(Debug, Clone)]
pub struct JourneyMap {
    pub pathway: pathways::Model,
    pub generated_at: DateTime<Utc>,
    pub current: Figures,
    pub previous: Option<Figures>,
}

use crate::db::statement;

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

/// Computes the journey map of `pathway_id` over `window`, and over
/// `compare_to` for comparison.
pub async fn journey_map(
    store: &Store,
    who: &Principal,
    pathway_id: Uuid,
    window: Window,
    compare_to: Option<Window>,
) -> DomainResult<JourneyMap> {
    access::require(who, Permission::AnalyticsRead, "the journey map")?;
    let conn = store.db.conn();
    let pathway = who
        .get::<pathways::Entity, _>(conn, pathway_id, "pathway")
        .await
        .map_err(|e| e.referenced_by("pathwayId"))?;
    let stages = domain::pathways::stages_of(conn, who, pathway_id).await?;
    let now = domain::now();
    let query = MapQuery {
        conn,
        backend: store.db.backend(),
        clinic: who.clinic_id,
        pathway: pathway_id,
        stages: &stages,
        now,
    };
    let mut current = query.figures(window).await?;
    let mut previous = match compare_to {
        Some(window) => Some(query.figures(window).await?),
        None => None,
    };
    // Patients' words are free text: a caller who may not read them (a
    // viewer) gets the figures without the quotes, in the picture too.
    if access::free_text(who).is_err() {
        for figures in std::iter::once(&mut current).chain(previous.as_mut()) {
            for stage in &mut figures.stages {
                stage.pain_points.clear();
            }
        }
    }
    Ok(JourneyMap {
        pathway,
        generated_at: now,
        current,
        previous,
    })
}

/// The SQL behind one map.
struct MapQuery<'a, C: ConnectionTrait> {
    conn: &'a C,
    backend: DbBackend,
    clinic: Uuid,
    pathway: Uuid,
    stages: &'a [stages::Model],
    now: DateTime<Utc>,
}

impl<C: ConnectionTrait> MapQuery<'_, C> {
    /// `?, ?, …` for the pathway's stage ids, and their values.
    fn stage_list(&self) -> (String, Vec<Value>) {
        (
            crate::db::placeholders(self.stages.len().max(1)),
            if self.stages.is_empty() {
                vec![Uuid::nil().into()]
            } else {
                self.stages.iter().map(|s| Value::from(s.id)).collect()
            },
        )
    }

    async fn rows(&self, sql: &str, values: Vec<Value>) -> DomainResult<Vec<QueryResult>> {
        Ok(self
            .conn
            .query_all_raw(statement(self.backend, sql, values))
            .await?)
    }

    async fn figures(&self, window: Window) -> DomainResult<Figures> {
        let mut stats: HashMap<Uuid, StageStats> = self
            .stages
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
        // Occupancy, stalls and overdue follow-ups are taken at the end of
        // the window, or now if the window reaches into the future.
        // A window ending within the last minute (the default ends "now",
        // as of when the request was read) is taken as ending now.
        let at = if window.to >= self.now - Duration::minutes(1) {
            self.now
        } else {
            window.to
        };
        if at == self.now {
            self.occupancy_now(&mut stats).await?;
        } else {
            self.occupancy_at(&mut stats, at).await?;
        }
        let flows = self.movements(&mut stats, window).await?;
        self.conversion(&mut stats, window).await?;
        self.durations(&mut stats, window).await?;
        self.touchpoints(&mut stats, window).await?;
        self.feedback(&mut stats, window).await?;
        self.pain_points(&mut stats, window).await?;
        self.overdue(&mut stats, at).await?;
        self.outreach(&mut stats, window).await?;
        Ok(Figures {
            window,
            stages: self
                .stages
                .iter()
                .map(|s| stats.remove(&s.id).unwrap_or_default())
                .collect(),
            flows,
        })
    }

    /// Journeys in each stage now, from the journeys themselves.
    async fn occupancy_now(&self, stats: &mut HashMap<Uuid, StageStats>) -> DomainResult<()> {
        let rows = self
            .rows(
                "SELECT j.current_stage_id AS stage_id, COUNT(*) AS active, \
                        SUM(CASE WHEN j.stalls_at < ? THEN 1 ELSE 0 END) AS stalled, \
                        SUM(CASE WHEN j.stalls_at < ? AND NOT EXISTS ( \
                            SELECT 1 FROM touchpoints t WHERE t.journey_id = j.id AND t.occurred_at >= j.stage_entered_at \
                        ) THEN 1 ELSE 0 END) AS blind_spots \
                 FROM journeys j \
                 WHERE j.clinic_id = ? AND j.pathway_id = ? AND j.status = ? \
                 GROUP BY j.current_stage_id",
                vec![
                    self.now.into(),
                    self.now.into(),
                    self.clinic.into(),
                    self.pathway.into(),
                    JourneyStatus::Active.as_str().into(),
                ],
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage) {
                s.active = count(&row, "active")?;
                s.stalled = count(&row, "stalled")?;
                s.blind_spots = count(&row, "blind_spots")?;
            }
        }
        Ok(())
    }

    /// Journeys in each stage at a past moment, replayed from the history: a
    /// journey is where its last start or move before `at` put it, unless it
    /// ended by then.
    async fn occupancy_at(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        at: DateTime<Utc>,
    ) -> DomainResult<()> {
        // A stage's stall threshold: entered before `at` minus its target.
        let mut stalled_case = String::from("CASE");
        let mut stalled_values: Vec<Value> = Vec::new();
        for stage in self.stages {
            if let Some(hours) = stage.target_hours {
                stalled_case.push_str(" WHEN last.to_stage_id = ? AND last.occurred_at < ? THEN 1");
                stalled_values.push(stage.id.into());
                stalled_values.push((at - Duration::hours(hours.into())).into());
            }
        }
        if stalled_values.is_empty() {
            // No stage has a target: nothing stalls (and `CASE ELSE 0 END` is not SQL).
            stalled_case = String::from("0");
        } else {
            stalled_case.push_str(" ELSE 0 END");
        }
        let sql = format!(
            "SELECT last.to_stage_id AS stage_id, COUNT(*) AS active, \
                    SUM({stalled_case}) AS stalled, \
                    SUM(CASE WHEN ({stalled_case}) = 1 AND NOT EXISTS ( \
                        SELECT 1 FROM touchpoints t WHERE t.journey_id = last.journey_id \
                          AND t.occurred_at >= last.occurred_at AND t.occurred_at < ? \
                    ) THEN 1 ELSE 0 END) AS blind_spots \
             FROM ( \
                SELECT journey_id, kind, to_stage_id, occurred_at, \
                       ROW_NUMBER() OVER (PARTITION BY journey_id ORDER BY occurred_at DESC) AS rn \
                FROM stage_transitions \
                WHERE clinic_id = ? AND pathway_id = ? AND occurred_at < ? \
             ) last \
             WHERE last.rn = 1 AND last.kind IN (?, ?, ?) \
             GROUP BY last.to_stage_id"
        );
        let mut values = stalled_values.clone();
        values.extend(stalled_values);
        values.extend([
            at.into(),
            self.clinic.into(),
            self.pathway.into(),
            at.into(),
            TransitionKind::Started.as_str().into(),
            TransitionKind::Forward.as_str().into(),
            TransitionKind::Backward.as_str().into(),
        ]);
        for row in self.rows(&sql, values).await? {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage) {
                // Entering a terminal stage ends the journey.
                if s.stage.as_ref().is_some_and(|st| st.terminal) {
                    continue;
                }
                s.active = count(&row, "active")?;
                s.stalled = count(&row, "stalled")?;
                s.blind_spots = count(&row, "blind_spots")?;
            }
        }
        Ok(())
    }

    /// Every transition of the window, by kind and stages: entries, exits, flows.
    async fn movements(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<Vec<Flow>> {
        let rows = self
            .rows(
                "SELECT kind, from_stage_id, to_stage_id, COUNT(*) AS n \
                 FROM stage_transitions \
                 WHERE clinic_id = ? AND pathway_id = ? AND occurred_at >= ? AND occurred_at < ? \
                 GROUP BY kind, from_stage_id, to_stage_id",
                vec![
                    self.clinic.into(),
                    self.pathway.into(),
                    window.from.into(),
                    window.to.into(),
                ],
            )
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
            ) && let Some(s) = stats.get_mut(&to_stage)
            {
                s.entered += n;
            }
            let Some(from_stage) = from_stage else {
                continue;
            };
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
            let to = matches!(kind, TransitionKind::Forward | TransitionKind::Backward)
                .then_some(to_stage);
            flows.push(Flow {
                from: from_stage,
                to,
                kind,
                count: n,
            });
        }
        flows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.from.cmp(&b.from))
                .then(a.to.cmp(&b.to))
        });
        Ok(flows)
    }

    /// Of the journeys that entered a stage in the window, how many have since
    /// moved forward from it (or completed there).
    async fn conversion(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let rows = self
            .rows(
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
                    self.clinic.into(),
                    self.pathway.into(),
                    TransitionKind::Started.as_str().into(),
                    TransitionKind::Forward.as_str().into(),
                    TransitionKind::Backward.as_str().into(),
                    window.from.into(),
                    window.to.into(),
                ],
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage)
                && !s.stage.as_ref().is_some_and(|st| st.terminal)
            {
                let entered = count(&row, "entered")?;
                s.conversion_rate = ratio(count(&row, "converted")?, entered).map(|r| round(r, 4));
            }
        }
        Ok(())
    }

    /// Median and 90th percentile of the time spent in each stage (nearest
    /// rank), over the exits of the window.
    async fn durations(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let rows = self
            .rows(
                "SELECT stage_id, seconds, rn, n FROM ( \
                    SELECT from_stage_id AS stage_id, seconds_in_from_stage AS seconds, \
                           ROW_NUMBER() OVER (PARTITION BY from_stage_id ORDER BY seconds_in_from_stage) AS rn, \
                           COUNT(*) OVER (PARTITION BY from_stage_id) AS n \
                    FROM stage_transitions \
                    WHERE clinic_id = ? AND pathway_id = ? AND from_stage_id IS NOT NULL \
                      AND seconds_in_from_stage IS NOT NULL AND occurred_at >= ? AND occurred_at < ? \
                 ) ranked \
                 WHERE rn = (n + 1) / 2 OR rn = (9 * n + 9) / 10",
                vec![
                    self.clinic.into(),
                    self.pathway.into(),
                    window.from.into(),
                    window.to.into(),
                ],
            )
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
        Ok(())
    }

    /// Touchpoints: volume, reach, emotion, moments of truth, channel mix.
    async fn touchpoints(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let (list, stage_values) = self.stage_list();
        let values = || {
            let mut values: Vec<Value> = vec![self.clinic.into()];
            values.extend(stage_values.iter().cloned());
            values.extend([window.from.into(), window.to.into()]);
            values
        };
        let rows = self
            .rows(
                &format!(
                    "SELECT t.stage_id, t.channel, COUNT(*) AS n, COUNT(t.emotion) AS emotion_samples, \
                            CAST(SUM(t.emotion) AS DOUBLE PRECISION) AS emotion_sum, \
                            SUM(CASE WHEN t.moment_of_truth THEN 1 ELSE 0 END) AS moments \
                     FROM touchpoints t \
                     WHERE t.clinic_id = ? AND t.stage_id IN ({list}) AND t.occurred_at >= ? AND t.occurred_at < ? \
                     GROUP BY t.stage_id, t.channel"
                ),
                values(),
            )
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
        for (stage, sum) in emotion_sums {
            if let Some(s) = stats.get_mut(&stage) {
                s.average_emotion =
                    (s.emotion_samples > 0).then(|| round(sum / s.emotion_samples as f64, 2));
                s.channel_mix
                    .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            }
        }
        let rows = self
            .rows(
                &format!(
                    "SELECT t.stage_id, COUNT(DISTINCT t.journey_id) AS journeys \
                     FROM touchpoints t \
                     WHERE t.clinic_id = ? AND t.stage_id IN ({list}) AND t.occurred_at >= ? AND t.occurred_at < ? \
                     GROUP BY t.stage_id"
                ),
                values(),
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage) {
                s.journeys_touched = count(&row, "journeys")?;
            }
        }
        Ok(())
    }

    /// Feedback: NPS (promoters minus detractors) and average CSAT.
    async fn feedback(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let nps = FeedbackKind::Nps.as_str();
        let csat = FeedbackKind::Csat.as_str();
        let (list, stages) = self.stage_list();
        let mut values: Vec<Value> = vec![
            nps.into(),
            nps.into(),
            nps.into(),
            csat.into(),
            csat.into(),
            self.clinic.into(),
        ];
        values.extend(stages);
        values.extend([window.from.into(), window.to.into()]);
        let rows = self
            .rows(
                &format!("SELECT f.stage_id, \
                        SUM(CASE WHEN f.kind = ? THEN 1 ELSE 0 END) AS nps_n, \
                        SUM(CASE WHEN f.kind = ? AND f.score >= 9 THEN 1 ELSE 0 END) AS promoters, \
                        SUM(CASE WHEN f.kind = ? AND f.score <= 6 THEN 1 ELSE 0 END) AS detractors, \
                        SUM(CASE WHEN f.kind = ? THEN 1 ELSE 0 END) AS csat_n, \
                        CAST(SUM(CASE WHEN f.kind = ? THEN f.score ELSE 0 END) AS DOUBLE PRECISION) AS csat_sum \
                 FROM feedback f \
                 WHERE f.clinic_id = ? AND f.stage_id IN ({list}) AND f.submitted_at >= ? AND f.submitted_at < ? \
                 GROUP BY f.stage_id"),
                values,
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage) {
                s.nps_responses = count(&row, "nps_n")?;
                let (promoters, detractors) =
                    (count(&row, "promoters")?, count(&row, "detractors")?);
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
        Ok(())
    }

    /// The three worst scored comments per stage: scores are put on one
    /// scale (0 worst, 1 best) across NPS, CSAT and CES.
    async fn pain_points(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let (list, stages) = self.stage_list();
        let mut values: Vec<Value> = vec![
            FeedbackKind::Nps.as_str().into(),
            FeedbackKind::Csat.as_str().into(),
            self.clinic.into(),
        ];
        values.extend(stages);
        values.extend([window.from.into(), window.to.into()]);
        for kind in [FeedbackKind::Nps, FeedbackKind::Csat, FeedbackKind::Ces] {
            values.push(kind.as_str().into());
        }
        for kind in [FeedbackKind::Nps, FeedbackKind::Csat, FeedbackKind::Ces] {
            values.push(kind.as_str().into());
        }
        let rows = self
            .rows(
                &format!("SELECT stage_id, kind, score, comment, submitted_at FROM ( \
                    SELECT f.stage_id, f.kind, f.score, f.comment, f.submitted_at, \
                           ROW_NUMBER() OVER (PARTITION BY f.stage_id ORDER BY \
                               CASE f.kind WHEN ? THEN f.score / 10.0 WHEN ? THEN (f.score - 1) / 4.0 \
                                           ELSE (7 - f.score) / 6.0 END, f.submitted_at DESC, f.id DESC) AS rn \
                    FROM feedback f \
                    WHERE f.clinic_id = ? AND f.stage_id IN ({list}) AND f.submitted_at >= ? AND f.submitted_at < ? \
                      AND f.comment IS NOT NULL AND f.score IS NOT NULL AND f.kind IN (?, ?, ?) \
                      AND ((f.kind = ? AND f.score <= 6) OR (f.kind = ? AND f.score <= 2) OR (f.kind = ? AND f.score >= 5)) \
                 ) worst WHERE rn <= 3 ORDER BY stage_id, rn"),
                values,
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            let kind: String = row.try_get("", "kind")?;
            if let Some(s) = stats.get_mut(&stage) {
                s.pain_points.push(PainPoint {
                    kind: FeedbackKind::from_db(&kind)?,
                    score: row.try_get("", "score")?,
                    comment: row.try_get("", "comment")?,
                    submitted_at: row.try_get("", "submitted_at")?,
                });
            }
        }
        Ok(())
    }

    /// Follow-ups of each stage that were open and past due at `at`.
    async fn overdue(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        at: DateTime<Utc>,
    ) -> DomainResult<()> {
        let (list, stages) = self.stage_list();
        let rows = if at == self.now {
            // Now: the open ones, straight from the status index.
            let mut values: Vec<Value> = vec![
                self.clinic.into(),
                domain::FollowUpStatus::Open.as_str().into(),
                at.into(),
            ];
            values.extend(stages);
            self.rows(
                &format!(
                    "SELECT f.stage_id, COUNT(*) AS n FROM follow_ups f \
                     WHERE f.clinic_id = ? AND f.status = ? AND f.due_at < ? AND f.stage_id IN ({list}) \
                     GROUP BY f.stage_id"
                ),
                values,
            )
            .await?
        } else {
            // Then: open at that moment, whatever happened to them since.
            let mut values: Vec<Value> = vec![self.clinic.into()];
            values.extend(stages);
            values.extend([at.into(), at.into(), at.into(), at.into()]);
            self.rows(
                &format!(
                    "SELECT f.stage_id, COUNT(*) AS n FROM follow_ups f \
                     WHERE f.clinic_id = ? AND f.stage_id IN ({list}) AND f.due_at < ? AND f.created_at <= ? \
                       AND (f.completed_at IS NULL OR f.completed_at > ?) \
                       AND (f.cancelled_at IS NULL OR f.cancelled_at > ?) \
                     GROUP BY f.stage_id"
                ),
                values,
            )
            .await?
        };
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            if let Some(s) = stats.get_mut(&stage) {
                s.overdue_follow_ups = count(&row, "n")?;
            }
        }
        Ok(())
    }

    /// Per stage and kind: follow-ups planned in the window, made, blocked,
    /// answered within 72 hours of being made, and followed by a move forward
    /// within 14 days.
    async fn outreach(
        &self,
        stats: &mut HashMap<Uuid, StageStats>,
        window: Window,
    ) -> DomainResult<()> {
        let (list, stages) = self.stage_list();
        let within = |later: &str, earlier: &str, hours: u32| match self.backend {
            DbBackend::Postgres => {
                format!("{later} > {earlier} AND {later} <= {earlier} + interval '{hours} hours'")
            }
            _ => format!(
                "julianday({later}) > julianday({earlier}) AND julianday({later}) <= julianday({earlier}) + {hours} / 24.0"
            ),
        };
        let answered = within("t.occurred_at", "f.completed_at", 72);
        let advanced = within("m.occurred_at", "f.completed_at", 14 * 24);
        let mut values: Vec<Value> = vec![self.clinic.into()];
        values.extend(stages);
        values.extend([window.from.into(), window.to.into()]);
        let rows = self
            .rows(
                &format!(
                    "SELECT f.stage_id, f.kind, COUNT(*) AS planned,                        SUM(CASE WHEN f.status = 'DONE' THEN 1 ELSE 0 END) AS sent,                        SUM(CASE WHEN f.status = 'BLOCKED' THEN 1 ELSE 0 END) AS blocked,                        SUM(CASE WHEN f.status = 'DONE' AND EXISTS (                          SELECT 1 FROM touchpoints t WHERE t.patient_id = f.patient_id                            AND t.direction = 'INBOUND' AND {answered}) THEN 1 ELSE 0 END) AS answered,                        SUM(CASE WHEN f.status = 'DONE' AND EXISTS (                          SELECT 1 FROM stage_transitions m WHERE m.journey_id = f.journey_id                            AND m.from_stage_id = f.stage_id AND m.kind IN ('FORWARD', 'COMPLETED')                            AND {advanced}) THEN 1 ELSE 0 END) AS advanced                      FROM follow_ups f                      WHERE f.clinic_id = ? AND f.stage_id IN ({list})                        AND f.created_at >= ? AND f.created_at < ?                      GROUP BY f.stage_id, f.kind"
                ),
                values,
            )
            .await?;
        for row in rows {
            let stage: Uuid = row.try_get("", "stage_id")?;
            let kind: String = row.try_get("", "kind")?;
            let (Some(s), Some(kind)) = (stats.get_mut(&stage), domain::FollowUpKind::parse(&kind))
            else {
                continue;
            };
            s.outreach.push(OutreachStats {
                kind,
                planned: count(&row, "planned")?,
                sent: count(&row, "sent")?,
                blocked: count(&row, "blocked")?,
                answered: count(&row, "answered")?,
                advanced: count(&row, "advanced")?,
            });
        }
        for s in stats.values_mut() {
            s.outreach.sort_by_key(|o| o.kind);
        }
        Ok(())
    }
}
