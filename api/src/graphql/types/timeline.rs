use crate::graphql::scalars::DateTime;
use async_graphql::{Context, Enum, Object, Union};

use super::{Feedback, FollowUp, StageTransition, Touchpoint};
use crate::{
    domain::timeline::{Entry, EntryKind},
    graphql::{context::ContextExt, loaders::required},
};

/// What a timeline entry is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TimelineEntryKind {
    /// The journey started, moved, completed or was dropped.
    StageTransition,
    /// An interaction with the patient.
    Touchpoint,
    /// What the patient said.
    Feedback,
    /// Outreach due (placed at its due time).
    FollowUp,
}

/// The record behind a timeline entry.
// Built one at a time for a response, never stored: the size is no concern.
#[allow(clippy::large_enum_variant)]
#[derive(Union)]
pub enum TimelineItem {
    StageTransition(StageTransition),
    Touchpoint(Touchpoint),
    Feedback(Feedback),
    FollowUp(FollowUp),
}

/// One entry of a patient's timeline.
pub struct TimelineEntry(pub Entry);

#[Object]
impl TimelineEntry {
    /// When: a transition's or touchpoint's time, feedback's submission, a follow-up's due time.
    async fn at(&self) -> DateTime {
        DateTime(self.0.at)
    }

    /// What kind of record the entry is.
    async fn kind(&self) -> TimelineEntryKind {
        match self.0.kind {
            EntryKind::StageTransition => TimelineEntryKind::StageTransition,
            EntryKind::Touchpoint => TimelineEntryKind::Touchpoint,
            EntryKind::Feedback => TimelineEntryKind::Feedback,
            EntryKind::FollowUp => TimelineEntryKind::FollowUp,
        }
    }

    /// The record itself.
    async fn item(&self, ctx: &Context<'_>) -> async_graphql::Result<TimelineItem> {
        let loaders = ctx.loaders()?;
        let id = self.0.id;
        Ok(match self.0.kind {
            EntryKind::StageTransition => TimelineItem::StageTransition(StageTransition(
                required(&loaders.transition, id, "transition").await?,
            )),
            EntryKind::Touchpoint => TimelineItem::Touchpoint(Touchpoint(
                required(&loaders.touchpoint, id, "touchpoint").await?,
            )),
            EntryKind::Feedback => {
                TimelineItem::Feedback(Feedback(required(&loaders.feedback, id, "feedback").await?))
            }
            EntryKind::FollowUp => TimelineItem::FollowUp(FollowUp(
                required(&loaders.follow_up, id, "follow-up").await?,
            )),
        })
    }
}
