//! The subscription root: live events for front ends and CRMs, resumable
//! from a cursor with no gap and no duplicate (see `domain::event_log`).

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Subscription as SubscriptionRoot};
use futures::{Stream, StreamExt};

use super::{
    context::{ContextExt, LogPosition, decode_opt_id},
    loaders::required,
    scalars::DateTime,
    types::{Journey, JourneyEvent, Patient, Stage},
};
use crate::{
    domain::{DomainError, DomainResult, event_log},
    events::{self, Event, FollowedEvent, StageChanged},
    ids::IdKind,
};

/// Live events.
#[derive(Default)]
pub struct Subscription;

/// The followed events that decode as they should; a failure is logged and
/// skipped (the subscriber keeps its cursor and can resume).
/// Each one yielded is noted in the request's log position, so a shared
/// subscription knows which event each response was made of.
fn delivered<T, F>(
    events: event_log::Followed,
    position: Option<Arc<LogPosition>>,
    wrap: F,
) -> impl Stream<Item = T>
where
    F: Fn(Arc<FollowedEvent>) -> Option<T> + Send + 'static,
    T: Send + 'static,
{
    events.filter_map(move |item| {
        let wrapped = match item {
            Ok(event) => {
                let sequence = event.sequence;
                let wrapped = wrap(event);
                if let (Some(position), Some(_)) = (&position, &wrapped) {
                    position.note(sequence);
                }
                wrapped
            }
            Err(error) => {
                tracing::error!(?error, "a subscription could not read the event log");
                None
            }
        };
        async move { wrapped }
    })
}

/// Where a subscription starts: after the document's cursor, else where the
/// request's position says (a shared or resumed subscription), else now.
fn starting_point(ctx: &Context<'_>, after: Option<&str>) -> DomainResult<Option<i64>> {
    match after {
        Some(cursor) => event_log::parse_cursor("after", cursor).map(Some),
        None => Ok(ctx
            .request()
            .and_then(|request| request.position.starting_point())),
    }
}

fn position(ctx: &Context<'_>) -> Option<Arc<LogPosition>> {
    ctx.request().map(|request| request.position.clone())
}

#[SubscriptionRoot]
impl Subscription {
    /// Every stage change of the clinic's journeys, optionally only of one
    /// pathway or patient. With `after` (a cursor from an earlier event), the
    /// events since are replayed first.
    async fn journey_stage_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only journeys on this pathway.")] pathway_id: Option<ID>,
        #[graphql(desc = "Only this patient's journeys.")] patient_id: Option<ID>,
        #[graphql(desc = "Resume after this event's cursor.")] after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = StageChangeEvent>> {
        let pathway = decode_opt_id(IdKind::Pathway, "pathwayId", pathway_id.as_ref())?;
        let patient = decode_opt_id(IdKind::Patient, "patientId", patient_id.as_ref())?;
        let after = starting_point(ctx, after.as_deref())?;
        let followed = event_log::follow_stage_changes(
            ctx.store(),
            ctx.principal()?,
            pathway,
            patient,
            after,
        )?;
        Ok(delivered(followed, position(ctx), StageChangeEvent::of))
    }

    /// Every event of the clinic (optionally only some types), in the same
    /// envelope webhooks receive. With `after`, the events since are replayed
    /// first.
    async fn journey_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only these event types, such as `journey.stage_changed`.")] types: Option<
            Vec<String>,
        >,
        #[graphql(desc = "Resume after this event's cursor.")] after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = JourneyEvent>> {
        let types = event_log::parse_types("types", &types.unwrap_or_default())?;
        let after = starting_point(ctx, after.as_deref())?;
        let followed = event_log::follow_events(ctx.store(), ctx.principal()?, types, after)?;
        Ok(delivered(followed, position(ctx), |event| {
            Some(JourneyEvent(event.row.clone()))
        }))
    }
}

/// A journey moved to another stage.
pub struct StageChangeEvent {
    followed: Arc<FollowedEvent>,
    event: Arc<Event>,
}

impl StageChangeEvent {
    /// The stage change a followed event holds, if it is one that decodes.
    fn of(followed: Arc<FollowedEvent>) -> Option<Self> {
        match followed.event() {
            Ok(event) if matches!(*event, Event::JourneyStageChanged(_)) => {
                Some(Self { followed, event })
            }
            Ok(_) => None,
            Err(error) => {
                tracing::error!(%error, "a stage change in the log does not decode");
                None
            }
        }
    }

    fn change(&self) -> DomainResult<&StageChanged> {
        match &*self.event {
            Event::JourneyStageChanged(change) => Ok(change),
            _ => Err(DomainError::internal(anyhow::anyhow!(
                "event {} is not a stage change",
                self.followed.id
            ))),
        }
    }
}

#[Object]
impl StageChangeEvent {
    /// The event's global id (also the `webhook-id` of its webhook deliveries).
    async fn id(&self) -> ID {
        IdKind::Event.encode(self.followed.id).into()
    }

    /// The clinic-wide sequence number: gap-free, in commit order.
    async fn sequence(&self) -> i64 {
        self.followed.sequence
    }

    /// Resume after this event with `after: cursor`.
    async fn cursor(&self) -> String {
        events::log::cursor(self.followed.sequence)
    }

    /// When the move was committed.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.followed.occurred_at)
    }

    /// FORWARD or BACKWARD.
    async fn direction(&self) -> Option<&str> {
        self.change().ok().map(|change| change.direction.as_str())
    }

    /// Seconds the journey spent in the stage it left.
    async fn seconds_in_previous(&self) -> Option<i64> {
        self.change().ok().map(|change| change.seconds_in_previous)
    }

    /// The journey, as it was when the event reached this server's subscribers.
    async fn journey(&self, ctx: &Context<'_>) -> async_graphql::Result<Journey> {
        let id = self.change()?.journey_id.0;
        let loaders = ctx.loaders()?;
        Ok(Journey(
            self.followed
                .related("journey", id, required(&loaders.journey, id, "journey"))
                .await?,
        ))
    }

    /// The patient.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        let id = self.change()?.patient_id.0;
        let loaders = ctx.loaders()?;
        Ok(Patient(
            self.followed
                .related("patient", id, required(&loaders.patient, id, "patient"))
                .await?,
        ))
    }

    /// The stage left.
    #[allow(clippy::wrong_self_convention)]
    async fn from_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        let id = self.change()?.previous.stage_id.0;
        let loaders = ctx.loaders()?;
        Ok(Stage(
            self.followed
                .related("stage", id, loaders.stage_by_id(id))
                .await?,
        ))
    }

    /// The stage entered.
    async fn to_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        let id = self.change()?.current.stage_id.0;
        let loaders = ctx.loaders()?;
        Ok(Stage(
            self.followed
                .related("stage", id, loaders.stage_by_id(id))
                .await?,
        ))
    }
}
