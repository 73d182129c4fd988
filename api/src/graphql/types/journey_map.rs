use crate::graphql::scalars::DateTime;
use async_graphql::{Context, Object, SimpleObject};

use crate::graphql::context::ContextExt;

use super::{Channel, FeedbackKind, Pathway, Stage, TransitionKind};
use crate::analytics::{self, Flow, StageStats};

/// A pathway's journey map over a time window. Counts of moves, drops,
/// touchpoints and feedback cover the window; `activeCount`, `stalledCount`,
/// `blindSpotCount` and `overdueFollowUps` describe the end of the window
/// (now, by default).
pub struct JourneyMap(pub analytics::JourneyMap);

#[Object]
impl JourneyMap {
    /// The pathway mapped.
    async fn pathway(&self) -> Pathway {
        Pathway(self.0.pathway.clone())
    }

    /// Start of the window.
    async fn from(&self) -> DateTime {
        DateTime(self.0.current.window.from)
    }

    /// End of the window.
    async fn to(&self) -> DateTime {
        DateTime(self.0.current.window.to)
    }

    /// The window compared with (`compareTo`), if any.
    async fn compared_to(&self) -> Option<TimeWindow> {
        self.0.previous.as_ref().map(|p| TimeWindow {
            from: DateTime(p.window.from),
            to: DateTime(p.window.to),
        })
    }

    /// When the map was computed.
    async fn generated_at(&self) -> DateTime {
        DateTime(self.0.generated_at)
    }

    /// Each stage of the pathway, in order.
    async fn stages(&self) -> Vec<JourneyMapStage<'_>> {
        self.0
            .current
            .stages
            .iter()
            .enumerate()
            .map(|(i, stats)| JourneyMapStage {
                stats,
                previous: self.0.previous.as_ref().and_then(|p| p.stages.get(i)),
            })
            .collect()
    }

    /// Moves between stages and ends within the window, largest first.
    async fn flows(&self) -> Vec<JourneyMapFlow<'_>> {
        self.0
            .current
            .flows
            .iter()
            .map(|f| JourneyMapFlow(f, &self.0))
            .collect()
    }

    /// The flows of the window compared with, largest first.
    async fn previous_flows(&self) -> Vec<JourneyMapFlow<'_>> {
        self.0
            .previous
            .iter()
            .flat_map(|p| p.flows.iter())
            .map(|f| JourneyMapFlow(f, &self.0))
            .collect()
    }

    /// The map as an SVG picture (also at `GET /journey-maps/{pathwayId}.svg`).
    async fn svg(&self) -> String {
        analytics::svg::render(&self.0)
    }
}

/// A span of time.
#[derive(SimpleObject)]
pub struct TimeWindow {
    /// Start (inclusive).
    pub from: DateTime,
    /// End (exclusive).
    pub to: DateTime,
}

/// How one stage is doing.
pub struct JourneyMapStage<'a> {
    stats: &'a StageStats,
    previous: Option<&'a StageStats>,
}

/// A low score with a comment, without the patient's identity.
#[derive(SimpleObject)]
pub struct PainPoint {
    /// NPS, CSAT or CES.
    pub kind: FeedbackKind,
    /// The score given.
    pub score: i32,
    /// What the patient said.
    pub comment: String,
    /// When.
    pub submitted_at: DateTime,
}

/// Does outreach work? Follow-ups of one kind planned in a stage in the
/// window, and what they did.
#[derive(SimpleObject)]
pub struct OutreachFigures {
    pub kind: super::FollowUpKind,
    /// Follow-ups planned in the window.
    pub planned: i64,
    /// Of those, made (done).
    pub sent: i64,
    /// Of those, blocked: no consented channel.
    pub blocked: i64,
    /// Of those made, answered by the patient within 72 hours.
    pub answered: i64,
    /// Of those made, followed by the journey moving forward from the stage within 14 days.
    pub advanced: i64,
    /// `answered / sent`.
    pub answer_rate: Option<f64>,
    /// `advanced / sent`.
    pub advance_rate: Option<f64>,
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Touchpoints of one channel in a stage.
#[derive(SimpleObject)]
pub struct ChannelCount {
    /// The channel.
    pub channel: Channel,
    /// Touchpoints by that channel.
    pub count: i64,
}

#[Object]
impl JourneyMapStage<'_> {
    /// The stage.
    async fn stage(&self) -> Option<Stage> {
        self.stats.stage.clone().map(Stage)
    }

    /// Journeys in the stage now.
    async fn active_count(&self) -> i64 {
        self.stats.active as i64
    }

    /// Journeys that entered the stage in the window.
    async fn entered_count(&self) -> i64 {
        self.stats.entered as i64
    }

    /// Journeys that left the stage in the window (forward, back, completed or dropped).
    async fn exited_count(&self) -> i64 {
        self.stats.exited as i64
    }

    /// Journeys that moved on to a later stage in the window.
    async fn moved_forward_count(&self) -> i64 {
        self.stats.moved_forward as i64
    }

    /// Journeys that moved back to an earlier stage in the window.
    async fn moved_back_count(&self) -> i64 {
        self.stats.moved_back as i64
    }

    /// Journeys that were completed in the stage in the window.
    async fn completed_count(&self) -> i64 {
        self.stats.completed as i64
    }

    /// Journeys dropped in the stage in the window.
    async fn dropped_count(&self) -> i64 {
        self.stats.dropped as i64
    }

    /// Of the journeys that entered in the window, the share (0 to 1) that has
    /// since moved forward from this stage or completed in it.
    async fn conversion_rate(&self) -> Option<f64> {
        self.stats.conversion_rate
    }

    /// Median hours spent in the stage, over the exits of the window.
    async fn median_hours_in_stage(&self) -> Option<f64> {
        self.stats.median_hours
    }

    /// 90th percentile of hours spent in the stage, over the exits of the window.
    async fn p90_hours_in_stage(&self) -> Option<f64> {
        self.stats.p90_hours
    }

    /// Active journeys past the stage's target hours, now.
    async fn stalled_count(&self) -> i64 {
        self.stats.stalled as i64
    }

    /// Stalled journeys nobody has been in touch with since they entered the
    /// stage: the blind spots.
    async fn blind_spot_count(&self) -> i64 {
        self.stats.blind_spots as i64
    }

    /// Touchpoints in the stage in the window.
    async fn touchpoint_count(&self) -> i64 {
        self.stats.touchpoints as i64
    }

    /// Touchpoints per journey touched in the stage.
    async fn touchpoints_per_journey(&self) -> Option<f64> {
        (self.stats.journeys_touched > 0).then(|| {
            (self.stats.touchpoints as f64 / self.stats.journeys_touched as f64 * 100.0).round()
                / 100.0
        })
    }

    /// Touchpoints by channel, most used first.
    async fn channel_mix(&self) -> Vec<ChannelCount> {
        self.stats
            .channel_mix
            .iter()
            .map(|(channel, count)| ChannelCount {
                channel: (*channel).into(),
                count: *count as i64,
            })
            .collect()
    }

    /// Average patient emotion at the stage's touchpoints, -2 to 2: the emotion curve.
    async fn average_emotion(&self) -> Option<f64> {
        self.stats.average_emotion
    }

    /// Moments of truth in the stage in the window.
    async fn moments_of_truth(&self) -> i64 {
        self.stats.moments_of_truth as i64
    }

    /// Net Promoter Score of feedback about the stage, -100 to 100.
    async fn nps(&self) -> Option<f64> {
        self.stats.nps
    }

    /// NPS answers behind `nps`.
    async fn nps_responses(&self) -> i64 {
        self.stats.nps_responses as i64
    }

    /// Average CSAT of feedback about the stage, 1 to 5.
    async fn csat(&self) -> Option<f64> {
        self.stats.csat
    }

    /// CSAT answers behind `csat`.
    async fn csat_responses(&self) -> i64 {
        self.stats.csat_responses as i64
    }

    /// Open follow-ups of the stage past due at the end of the window.
    async fn overdue_follow_ups(&self) -> i64 {
        self.stats.overdue_follow_ups as i64
    }

    /// The worst scored comments about the stage (at most three), worst first.
    async fn pain_points(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PainPoint>> {
        crate::domain::access::free_text(ctx.principal()?)?;
        Ok(self
            .stats
            .pain_points
            .iter()
            .map(|p| PainPoint {
                kind: p.kind.into(),
                score: p.score.into(),
                comment: p.comment.clone(),
                submitted_at: DateTime(p.submitted_at),
            })
            .collect())
    }

    /// Does outreach work here? Per follow-up kind planned in the window:
    /// planned, sent, blocked, answered within 72 h, advanced within 14 days.
    async fn outreach(&self) -> Vec<OutreachFigures> {
        self.stats
            .outreach
            .iter()
            .map(|o| OutreachFigures {
                kind: o.kind.into(),
                planned: o.planned as i64,
                sent: o.sent as i64,
                blocked: o.blocked as i64,
                answered: o.answered as i64,
                advanced: o.advanced as i64,
                answer_rate: (o.sent > 0).then(|| round2(o.answered as f64 / o.sent as f64)),
                advance_rate: (o.sent > 0).then(|| round2(o.advanced as f64 / o.sent as f64)),
            })
            .collect()
    }

    /// The same figures over the window compared with (`compareTo`).
    async fn previous(&self) -> Option<JourneyMapStage<'_>> {
        self.previous.map(|stats| JourneyMapStage {
            stats,
            previous: None,
        })
    }

    /// Each figure minus its value in the window compared with; null without
    /// `compareTo` (and, per figure, when either side has no value).
    async fn change(&self) -> Option<JourneyMapStageChange> {
        self.previous
            .map(|previous| JourneyMapStageChange::between(self.stats, previous))
    }
}

/// How each figure of a stage changed since the window compared with: this
/// window's value minus that one's.
#[derive(SimpleObject, Default)]
pub struct JourneyMapStageChange {
    /// Change in journeys in the stage at the end of the window.
    pub active_count: f64,
    /// Change in journeys that entered the stage.
    pub entered_count: f64,
    /// Change in journeys that left the stage.
    pub exited_count: f64,
    /// Change in journeys that moved forward from the stage.
    pub moved_forward_count: f64,
    /// Change in journeys that moved back from the stage.
    pub moved_back_count: f64,
    /// Change in journeys completed from the stage.
    pub completed_count: f64,
    /// Change in journeys dropped in the stage.
    pub dropped_count: f64,
    /// Change in the share of exits that moved forward or completed.
    pub conversion_rate: Option<f64>,
    /// Change in the median hours spent in the stage.
    pub median_hours_in_stage: Option<f64>,
    /// Change in the 90th-percentile hours spent in the stage.
    pub p90_hours_in_stage: Option<f64>,
    /// Change in journeys past the stage's target time.
    pub stalled_count: f64,
    /// Change in journeys with no touchpoint in the stage.
    pub blind_spot_count: f64,
    /// Change in touchpoints logged in the stage.
    pub touchpoint_count: f64,
    /// Change in the average emotion of touchpoints.
    pub average_emotion: Option<f64>,
    /// Change in moments of truth (strong emotions).
    pub moments_of_truth: f64,
    /// Change in the Net Promoter Score.
    pub nps: Option<f64>,
    /// Change in the average CSAT score.
    pub csat: Option<f64>,
    /// Change in follow-ups past due and not done.
    pub overdue_follow_ups: f64,
    /// Change in outreach per follow-up kind planned in either window.
    pub outreach: Vec<OutreachFiguresChange>,
}

/// How outreach of one kind in a stage changed since the window compared with.
#[derive(SimpleObject)]
pub struct OutreachFiguresChange {
    /// The follow-up kind.
    pub kind: super::FollowUpKind,
    /// Change in follow-ups planned.
    pub planned: f64,
    /// Change in follow-ups made.
    pub sent: f64,
    /// Change in follow-ups blocked.
    pub blocked: f64,
    /// Change in contacts answered within 72 hours.
    pub answered: f64,
    /// Change in contacts followed by a move forward within 14 days.
    pub advanced: f64,
    /// Change in `answered / sent`; null when either window made none.
    pub answer_rate: Option<f64>,
    /// Change in `advanced / sent`; null when either window made none.
    pub advance_rate: Option<f64>,
}

impl JourneyMapStageChange {
    fn between(now: &StageStats, then: &StageStats) -> Self {
        let n = |a: u64, b: u64| a as f64 - b as f64;
        let o = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(((a - b) * 10_000.0).round() / 10_000.0),
            _ => None,
        };
        Self {
            active_count: n(now.active, then.active),
            entered_count: n(now.entered, then.entered),
            exited_count: n(now.exited, then.exited),
            moved_forward_count: n(now.moved_forward, then.moved_forward),
            moved_back_count: n(now.moved_back, then.moved_back),
            completed_count: n(now.completed, then.completed),
            dropped_count: n(now.dropped, then.dropped),
            conversion_rate: o(now.conversion_rate, then.conversion_rate),
            median_hours_in_stage: o(now.median_hours, then.median_hours),
            p90_hours_in_stage: o(now.p90_hours, then.p90_hours),
            stalled_count: n(now.stalled, then.stalled),
            blind_spot_count: n(now.blind_spots, then.blind_spots),
            touchpoint_count: n(now.touchpoints, then.touchpoints),
            average_emotion: o(now.average_emotion, then.average_emotion),
            moments_of_truth: n(now.moments_of_truth, then.moments_of_truth),
            nps: o(now.nps, then.nps),
            csat: o(now.csat, then.csat),
            overdue_follow_ups: n(now.overdue_follow_ups, then.overdue_follow_ups),
            outreach: outreach_change(&now.outreach, &then.outreach),
        }
    }
}

fn outreach_change(
    now: &[analytics::OutreachStats],
    then: &[analytics::OutreachStats],
) -> Vec<OutreachFiguresChange> {
    let mut kinds: Vec<_> = now.iter().chain(then).map(|o| o.kind).collect();
    kinds.sort_by_key(|kind| kind.as_str());
    kinds.dedup();
    let find = |side: &[analytics::OutreachStats], kind| {
        side.iter()
            .find(|o| o.kind == kind)
            .map_or((0, 0, 0, 0, 0), |o| {
                (o.planned, o.sent, o.blocked, o.answered, o.advanced)
            })
    };
    let rate = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    let diff = |a: Option<f64>, b: Option<f64>| Some(round2(a? - b?));
    kinds
        .into_iter()
        .map(|kind| {
            let (planned, sent, blocked, answered, advanced) = find(now, kind);
            let (p, s, b, a, v) = find(then, kind);
            OutreachFiguresChange {
                kind: kind.into(),
                planned: planned as f64 - p as f64,
                sent: sent as f64 - s as f64,
                blocked: blocked as f64 - b as f64,
                answered: answered as f64 - a as f64,
                advanced: advanced as f64 - v as f64,
                answer_rate: diff(rate(answered, sent), rate(a, s)),
                advance_rate: diff(rate(advanced, sent), rate(v, s)),
            }
        })
        .collect()
}

/// Journeys that went from one stage to another, or ended, in the window.
pub struct JourneyMapFlow<'a>(&'a Flow, &'a analytics::JourneyMap);

#[Object]
impl JourneyMapFlow<'_> {
    /// The stage left.
    async fn from(&self) -> Option<Stage> {
        self.stage(self.0.from)
    }

    /// The stage entered; null for drop-offs and completions.
    async fn to(&self) -> Option<Stage> {
        self.0.to.and_then(|to| self.stage(to))
    }

    /// Forward, backward, completed or dropped.
    async fn kind(&self) -> TransitionKind {
        self.0.kind.into()
    }

    /// How many journeys.
    async fn count(&self) -> i64 {
        self.0.count as i64
    }
}

impl JourneyMapFlow<'_> {
    fn stage(&self, id: uuid::Uuid) -> Option<Stage> {
        self.1
            .current
            .stages
            .iter()
            .filter_map(|s| s.stage.as_ref())
            .find(|s| s.id == id)
            .cloned()
            .map(Stage)
    }
}
