use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ID, Object};
use entity::follow_ups;

use super::{
    Channel, FollowUpKind, FollowUpStatus, Journey, Patient, StaffMember, Stage, Touchpoint, stored,
};
use crate::{
    domain,
    graphql::{context::ContextExt, loaders::required},
    ids::IdKind,
};

/// Outreach scheduled for a patient on a journey.
pub struct FollowUp(pub follow_ups::Model);

#[Object]
impl FollowUp {
    /// The follow-up's global id.
    pub async fn id(&self) -> ID {
        IdKind::FollowUp.encode(self.0.id).into()
    }

    /// Why it exists: a stage rule, service recovery after detractor feedback, or by hand.
    async fn kind(&self) -> async_graphql::Result<FollowUpKind> {
        stored(&self.0.kind, domain::FollowUpKind::parse)
    }

    /// When it is due.
    async fn due_at(&self) -> DateTime {
        DateTime(self.0.due_at)
    }

    /// How to reach out.
    async fn channel(&self) -> async_graphql::Result<Channel> {
        stored(&self.0.channel, domain::Channel::parse)
    }

    /// What it is for.
    async fn note(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.note.as_deref())
    }

    /// Open, done or cancelled.
    async fn status(&self) -> async_graphql::Result<FollowUpStatus> {
        stored(&self.0.status, domain::FollowUpStatus::parse)
    }

    /// True when it is still open and its due time has passed.
    async fn overdue(&self) -> bool {
        domain::follow_ups::is_overdue(&self.0, domain::now())
    }

    /// When it was done.
    async fn completed_at(&self) -> Option<DateTime> {
        self.0.completed_at.map(DateTime)
    }

    /// When it was cancelled, and below, why.
    async fn cancelled_at(&self) -> Option<DateTime> {
        self.0.cancelled_at.map(DateTime)
    }

    /// Why it was cancelled.
    async fn cancel_reason(&self) -> Option<&str> {
        self.0.cancel_reason.as_deref()
    }

    /// The journey it belongs to.
    async fn journey(&self, ctx: &Context<'_>) -> async_graphql::Result<Journey> {
        Ok(Journey(
            required(&ctx.loaders()?.journey, self.0.journey_id, "journey").await?,
        ))
    }

    /// The patient to reach.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        Ok(Patient(
            required(&ctx.loaders()?.patient, self.0.patient_id, "patient").await?,
        ))
    }

    /// The stage whose rule scheduled it.
    async fn stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stage>> {
        match self.0.stage_id {
            None => Ok(None),
            Some(id) => Ok(Some(Stage(ctx.loaders()?.stage_by_id(id).await?))),
        }
    }

    /// Who should do it.
    async fn assignee(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match self.0.assignee_staff_id {
            None => Ok(None),
            Some(id) => Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember)),
        }
    }

    /// The touchpoint that fulfilled it.
    async fn completed_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Touchpoint>> {
        match self.0.completed_by_touchpoint_id {
            None => Ok(None),
            Some(id) => Ok(ctx
                .loaders()?
                .touchpoint
                .load_one(id)
                .await?
                .map(Touchpoint)),
        }
    }
}
