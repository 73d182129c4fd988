use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Channel, Pathway, Stage, TransitionKind};
use crate::analytics::{self, Flow, StageStats};

/// A pathway's journey map over a time window. Counts of moves, drops,
/// touchpoints and feedback cover the window; `activeCount`, `stalledCount`
/// and `overdueFollowUps` describe now.
pub struct JourneyMap(pub analytics::JourneyMap);

#[Object]
impl JourneyMap {
    /// The pathway mapped.
    async fn pathway(&self) -> Pathway {
        Pathway(self.0.pathway.clone())
    }

    /// Start of the window.
    async fn from(&self) -> DateTime<Utc> {
        self.0.window.from
    }

    /// End of the window.
    async fn to(&self) -> DateTime<Utc> {
        self.0.window.to
    }

    /// When the map was computed.
    async fn generated_at(&self) -> DateTime<Utc> {
        self.0.generated_at
    }

    /// Each stage of the pathway, in order.
    async fn stages(&self) -> Vec<JourneyMapStage<'_>> {
        self.0.stages.iter().map(JourneyMapStage).collect()
    }

    /// Moves between stages and ends within the window, largest first.
    async fn flows(&self) -> Vec<JourneyMapFlow<'_>> {
        self.0
            .flows
            .iter()
            .map(|f| JourneyMapFlow(f, &self.0))
            .collect()
    }

    /// The map as an SVG picture (also at `GET /journey-maps/{pathwayId}.svg`).
    async fn svg(&self) -> String {
        analytics::svg::render(&self.0)
    }
}

/// How one stage is doing.
pub struct JourneyMapStage<'a>(&'a StageStats);

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
        self.0.stage.clone().map(Stage)
    }

    /// Journeys in the stage now.
    async fn active_count(&self) -> i64 {
        self.0.active as i64
    }

    /// Journeys that entered the stage in the window.
    async fn entered_count(&self) -> i64 {
        self.0.entered as i64
    }

    /// Journeys that left the stage in the window (forward, back, completed or dropped).
    async fn exited_count(&self) -> i64 {
        self.0.exited as i64
    }

    /// Journeys that moved on to a later stage in the window.
    async fn moved_forward_count(&self) -> i64 {
        self.0.moved_forward as i64
    }

    /// Journeys that moved back to an earlier stage in the window.
    async fn moved_back_count(&self) -> i64 {
        self.0.moved_back as i64
    }

    /// Journeys that were completed in the stage in the window.
    async fn completed_count(&self) -> i64 {
        self.0.completed as i64
    }

    /// Journeys dropped in the stage in the window.
    async fn dropped_count(&self) -> i64 {
        self.0.dropped as i64
    }

    /// Of the journeys that entered in the window, the share (0 to 1) that has
    /// since moved forward from this stage or completed in it.
    async fn conversion_rate(&self) -> Option<f64> {
        self.0.conversion_rate
    }

    /// Median hours spent in the stage, over the exits of the window.
    async fn median_hours_in_stage(&self) -> Option<f64> {
        self.0.median_hours
    }

    /// 90th percentile of hours spent in the stage, over the exits of the window.
    async fn p90_hours_in_stage(&self) -> Option<f64> {
        self.0.p90_hours
    }

    /// Active journeys past the stage's target hours, now.
    async fn stalled_count(&self) -> i64 {
        self.0.stalled as i64
    }

    /// Stalled journeys nobody has been in touch with since they entered the
    /// stage: the blind spots.
    async fn blind_spot_count(&self) -> i64 {
        self.0.blind_spots as i64
    }

    /// Touchpoints in the stage in the window.
    async fn touchpoint_count(&self) -> i64 {
        self.0.touchpoints as i64
    }

    /// Touchpoints per journey touched in the stage.
    async fn touchpoints_per_journey(&self) -> Option<f64> {
        (self.0.journeys_touched > 0).then(|| {
            (self.0.touchpoints as f64 / self.0.journeys_touched as f64 * 100.0).round() / 100.0
        })
    }

    /// Touchpoints by channel, most used first.
    async fn channel_mix(&self) -> Vec<ChannelCount> {
        self.0
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
        self.0.average_emotion
    }

    /// Moments of truth in the stage in the window.
    async fn moments_of_truth(&self) -> i64 {
        self.0.moments_of_truth as i64
    }

    /// Net Promoter Score of feedback about the stage, -100 to 100.
    async fn nps(&self) -> Option<f64> {
        self.0.nps
    }

    /// NPS answers behind `nps`.
    async fn nps_responses(&self) -> i64 {
        self.0.nps_responses as i64
    }

    /// Average CSAT of feedback about the stage, 1 to 5.
    async fn csat(&self) -> Option<f64> {
        self.0.csat
    }

    /// CSAT answers behind `csat`.
    async fn csat_responses(&self) -> i64 {
        self.0.csat_responses as i64
    }

    /// Open follow-ups of the stage past due, now.
    async fn overdue_follow_ups(&self) -> i64 {
        self.0.overdue_follow_ups as i64
    }
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
            .stages
            .iter()
            .filter_map(|s| s.stage.as_ref())
            .find(|s| s.id == id)
            .cloned()
            .map(Stage)
    }
}
