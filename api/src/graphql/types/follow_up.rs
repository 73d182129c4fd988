use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ID, Object};
use entity::follow_ups;

use super::{
    Channel, ConsentPurpose, FollowUpKind, FollowUpStatus, Journey, Patient, StaffMember, Stage,
    Touchpoint, stored,
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

    /// Why it exists: a stage rule, service recovery, a stalled journey, a
    /// rebooking, a review request, a win-back, or by hand.
    async fn kind(&self) -> async_graphql::Result<FollowUpKind> {
        stored(&self.0.kind, domain::FollowUpKind::parse)
    }

    /// When the clinic wants it done.
    async fn due_at(&self) -> DateTime {
        DateTime(self.0.due_at)
    }

    /// Care or marketing: which consent it needs.
    async fn purpose(&self) -> async_graphql::Result<ConsentPurpose> {
        stored(&self.0.purpose, domain::ConsentPurpose::parse)
    }

    /// How to reach out: chosen for this patient among the channels they
    /// consented to for the purpose (their preference first, then the one
    /// they answer most, then the rule's).
    async fn channel(&self) -> async_graphql::Result<Channel> {
        stored(&self.0.channel, domain::Channel::parse)
    }

    /// The first moment at or after `dueAt` it may be sent: outside the
    /// patient's quiet hours in their own time zone, within the clinic's
    /// frequency limits.
    async fn send_at(&self) -> DateTime {
        DateTime(self.0.send_at.unwrap_or(self.0.due_at))
    }

    /// True when it is open and its `sendAt` has come.
    async fn sendable(&self) -> bool {
        domain::follow_ups::is_sendable(&self.0, domain::now())
    }

    /// Why now, in one plain sentence built from the facts (never from notes).
    async fn explanation(&self) -> String {
        self.0.explanation.clone().unwrap_or_else(|| {
            format!(
                "{} follow-up due {}",
                self.0.kind.replace('_', " ").to_lowercase(),
                self.0.due_at.format("%-d %b")
            )
        })
    }

    /// The draft message in the clinic's voice, for its channel.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    /// 1 (a recovery call) to 3 (marketing); the queue orders by it, then by
    /// how long it has waited.
    async fn priority(&self) -> i32 {
        self.0.priority.into()
    }

    /// Why no channel is allowed, for a BLOCKED follow-up.
    async fn blocked_reason(&self) -> Option<&str> {
        self.0.blocked_reason.as_deref()
    }

    /// When a coordinator skipped it, and below, why.
    async fn skipped_at(&self) -> Option<DateTime> {
        self.0.skipped_at.map(DateTime)
    }

    /// Why it was skipped.
    async fn skip_reason(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.skip_reason.as_deref())
    }

    /// What it is for.
    async fn note(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.note.as_deref())
    }

    /// Open, blocked, done, skipped or cancelled.
    async fn status(&self) -> async_graphql::Result<FollowUpStatus> {
        stored(&self.0.status, domain::FollowUpStatus::parse)
    }

    /// True when it is still open (or blocked) and its due time has passed.
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
