use crate::graphql::scalars::DateTime;
use std::borrow::Cow;

use async_graphql::{Context, ID, Object, OutputType, Value};
use entity::touchpoints;

use super::{Channel, Direction, Journey, Patient, StaffMember, Stage, stored};
use crate::{
    domain,
    graphql::{
        context::ContextExt,
        loaders::required,
        plain::{Plain, answered, given},
    },
    ids::IdKind,
};

/// One interaction with a patient.
pub struct Touchpoint(pub touchpoints::Model);

#[Object]
impl Touchpoint {
    /// The touchpoint's global id.
    pub async fn id(&self) -> ID {
        IdKind::Touchpoint.encode(self.0.id).into()
    }

    /// How the clinic and the patient were in touch.
    async fn channel(&self) -> async_graphql::Result<Channel> {
        stored(&self.0.channel, domain::Channel::parse)
    }

    /// Who reached out.
    async fn direction(&self) -> async_graphql::Result<Direction> {
        stored(&self.0.direction, domain::Direction::parse)
    }

    /// What it was: `booking`, `reminder`, `consultation`, …
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// What happened, in the staff's words.
    async fn summary(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.summary.as_deref())
    }

    /// When it happened.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }

    /// How the patient felt: -2 (very upset) to 2 (delighted).
    async fn emotion(&self) -> Option<i32> {
        self.0.emotion.map(i32::from)
    }

    /// A moment that makes or breaks the patient's trust.
    async fn moment_of_truth(&self) -> bool {
        self.0.moment_of_truth
    }

    /// The id of the interaction in the system it came from.
    async fn external_ref(&self) -> Option<&str> {
        self.0.external_ref.as_deref()
    }

    /// The patient.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        Ok(Patient(
            required(&ctx.loaders()?.patient, self.0.patient_id, "patient").await?,
        ))
    }

    /// The journey it was part of, if any.
    async fn journey(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Journey>> {
        match self.0.journey_id {
            None => Ok(None),
            Some(id) => Ok(Some(Journey(
                required(&ctx.loaders()?.journey, id, "journey").await?,
            ))),
        }
    }

    /// The journey's stage when it happened.
    async fn stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stage>> {
        match self.0.stage_id {
            None => Ok(None),
            Some(id) => Ok(Some(Stage(ctx.loaders()?.stage_by_id(id).await?))),
        }
    }

    /// The staff member involved.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match self.0.staff_id {
            None => Ok(None),
            Some(id) => Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember)),
        }
    }
}

impl Plain for Touchpoint {
    fn type_name(&self) -> Cow<'static, str> {
        <Self as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => given(self.id(ctx), ctx),
            "channel" => answered(self.channel(ctx), ctx),
            "direction" => answered(self.direction(ctx), ctx),
            "kind" => given(self.kind(ctx), ctx),
            "summary" => answered(self.summary(ctx), ctx),
            "occurredAt" => given(self.occurred_at(ctx), ctx),
            "emotion" => given(self.emotion(ctx), ctx),
            "momentOfTruth" => given(self.moment_of_truth(ctx), ctx),
            "externalRef" => given(self.external_ref(ctx), ctx),
            _ => None,
        }
    }
}
