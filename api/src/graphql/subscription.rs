//! The subscription root: live events for front ends and CRMs, resumable
//! from a cursor with no gap and no duplicate (see [`crate::events::follow`]).

use async_graphql::{Context, ID, Object, Subscription as SubscriptionRoot};
use entity::events as event_rows;
use futures::{Stream, StreamExt};
use std::sync::Arc;

use super::{
    context::{ContextExt, decode_opt_id},
    loaders::required,
    scalars::DateTime,
    types::{Journey, JourneyEvent, Patient, Stage},
};
use crate::{
    auth::Permission,
    domain::{self, DomainError},
    events::{self, EventType},
    ids::{self, IdKind},
};

/// Live events.
#[derive(Default)]
pub struct Subscription;

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
        let who = ctx.principal()?.clone();
        domain::access::require(&who, Permission::JourneysRead, "following stage changes")?;
        let pathway = decode_opt_id(IdKind::Pathway, "pathwayId", pathway_id.as_ref())?
            .map(|p| IdKind::Pathway.encode(p));
        let patient = decode_opt_id(IdKind::Patient, "patientId", patient_id.as_ref())?
            .map(|p| IdKind::Patient.encode(p));
        let after = after
            .as_deref()
            .map(|c| events::parse_cursor("after", c))
            .transpose()?;
        let kind = EventType::JourneyStageChanged.as_str();
        let wanted = move |event: &event_rows::Model| {
            event.event_type == kind
                && pathway
                    .as_deref()
                    .is_none_or(|p| event.data["pathwayId"] == p)
                && patient
                    .as_deref()
                    .is_none_or(|p| event.data["patientId"] == p)
        };
        Ok(
            events::follow(ctx.store().clone(), who, after, wanted).filter_map(|item| async move {
                match item {
                    Ok(event) => Some(StageChangeEvent(event)),
                    Err(error) => {
                        tracing::error!(?error, "a subscription could not read the event log");
                        None
                    }
                }
            }),
        )
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
        let who = ctx.principal()?.clone();
        domain::access::require(&who, Permission::EventsRead, "following events")?;
        let types = EventType::parse_list("types", &types.unwrap_or_default())?;
        let after = after
            .as_deref()
            .map(|c| events::parse_cursor("after", c))
            .transpose()?;
        let wanted = move |event: &event_rows::Model| {
            types.is_empty() || types.iter().any(|t| t.as_str() == event.event_type)
        };
        Ok(
            events::follow(ctx.store().clone(), who, after, wanted).filter_map(|item| async move {
                match item {
                    Ok(event) => Some(JourneyEvent(event.event.clone())),
                    Err(error) => {
                        tracing::error!(?error, "a subscription could not read the event log");
                        None
                    }
                }
            }),
        )
    }
}

/// A journey moved to another stage.
pub struct StageChangeEvent(pub Arc<events::FollowedEvent>);

impl StageChangeEvent {
    fn id_in(&self, field: &str, kind: IdKind) -> Result<uuid::Uuid, DomainError> {
        self.0.data[field]
            .as_str()
            .and_then(|id| ids::decode_as(kind, id).ok())
            .ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("event {} lacks {field}", self.0.id))
            })
    }
}

#[Object]
impl StageChangeEvent {
    /// The event's global id (also the `webhook-id` of its webhook deliveries).
    async fn id(&self) -> ID {
        IdKind::Event.encode(self.0.id).into()
    }

    /// The clinic-wide sequence number: gap-free, in commit order.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }

    /// Resume after this event with `after: cursor`.
    async fn cursor(&self) -> String {
        events::cursor(self.0.sequence)
    }

    /// When the move was committed.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }

    /// FORWARD or BACKWARD.
    async fn direction(&self) -> Option<&str> {
        self.0.data["direction"].as_str()
    }

    /// Seconds the journey spent in the stage it left.
    async fn seconds_in_previous(&self) -> Option<i64> {
        self.0.data["secondsInPrevious"].as_i64()
    }

    /// The journey, as it was when the event reached this server's subscribers.
    async fn journey(&self, ctx: &Context<'_>) -> async_graphql::Result<Journey> {
        let id = self.id_in("journeyId", IdKind::Journey)?;
        let loaders = ctx.loaders()?;
        Ok(Journey(
            self.0
                .related("journey", id, required(&loaders.journey, id, "journey"))
                .await?,
        ))
    }

    /// The patient.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        let id = self.id_in("patientId", IdKind::Patient)?;
        let loaders = ctx.loaders()?;
        Ok(Patient(
            self.0
                .related("patient", id, required(&loaders.patient, id, "patient"))
                .await?,
        ))
    }

    /// The stage left.
    #[allow(clippy::wrong_self_convention)]
    async fn from_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        let id = self.0.data["previous"]["stageId"]
            .as_str()
            .and_then(|id| ids::decode_as(IdKind::Stage, id).ok())
            .ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("event lacks previous.stageId"))
            })?;
        let loaders = ctx.loaders()?;
        Ok(Stage(
            self.0.related("stage", id, loaders.stage_by_id(id)).await?,
        ))
    }

    /// The stage entered.
    async fn to_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        let id = self.0.data["current"]["stageId"]
            .as_str()
            .and_then(|id| ids::decode_as(IdKind::Stage, id).ok())
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("event lacks current.stageId")))?;
        let loaders = ctx.loaders()?;
        Ok(Stage(
            self.0.related("stage", id, loaders.stage_by_id(id)).await?,
        ))
    }
}
