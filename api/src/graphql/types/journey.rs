use crate::graphql::scalars::DateTime;
use std::borrow::Cow;

use async_graphql::{Context, ID, Object, OutputType, Value};
use entity::{journeys, stage_transitions};

use super::{
    ActorKind, FollowUp, JourneyStatus, Pathway, Patient, StaffMember, Stage, Touchpoint,
    TransitionKind, stored,
};
use crate::{
    domain,
    graphql::{
        connection::Nested,
        context::ContextExt,
        loaders::required,
        plain::{Plain, PlainConn, answered, given, nested},
    },
    ids::IdKind,
};

/// One patient on one pathway.
pub struct Journey(pub journeys::Model);

#[Object]
impl Journey {
    /// The journey's global id.
    pub async fn id(&self) -> ID {
        IdKind::Journey.encode(self.0.id).into()
    }

    /// The patient on the journey.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        Ok(Patient(
            required(&ctx.loaders()?.patient, self.0.patient_id, "patient").await?,
        ))
    }

    /// The pathway the journey follows.
    async fn pathway(&self, ctx: &Context<'_>) -> async_graphql::Result<Pathway> {
        Ok(Pathway(
            required(&ctx.loaders()?.pathway, self.0.pathway_id, "pathway").await?,
        ))
    }

    /// The stage the journey is in (for ended journeys: the stage it ended in).
    async fn current_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        Ok(Stage(
            ctx.loaders()?.stage_by_id(self.0.current_stage_id).await?,
        ))
    }

    /// Active, completed or dropped.
    async fn status(&self) -> async_graphql::Result<JourneyStatus> {
        stored(&self.0.status, domain::JourneyStatus::parse)
    }

    /// Incremented by every change; send it as `expectedVersion` to make sure
    /// nobody moved the journey since you read it.
    async fn version(&self) -> i32 {
        self.0.version
    }

    /// When the journey entered its current stage.
    async fn stage_entered_at(&self) -> DateTime {
        DateTime(self.0.stage_entered_at)
    }

    /// When the journey counts as stalled if it is still in the stage.
    async fn stalls_at(&self) -> Option<DateTime> {
        self.0
            .stalls_at
            .filter(|_| self.0.status == domain::JourneyStatus::Active.as_str())
            .map(DateTime)
    }

    /// True when the journey is active and has been in its stage longer than
    /// the stage's target hours.
    async fn stalled(&self) -> bool {
        domain::journeys::is_stalled(&self.0, domain::now())
    }

    /// Hours spent in the current stage so far (until the end, for ended journeys).
    async fn hours_in_stage(&self) -> f64 {
        let until = self.0.ended_at.unwrap_or_else(domain::now);
        ((until - self.0.stage_entered_at).num_seconds().max(0) as f64 / 3600.0 * 100.0).round()
            / 100.0
    }

    /// The staff member responsible for the journey.
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match self.0.owner_staff_id {
            None => Ok(None),
            Some(id) => Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember)),
        }
    }

    /// When the journey started.
    async fn started_at(&self) -> DateTime {
        DateTime(self.0.started_at)
    }

    /// When the journey was completed or dropped.
    async fn ended_at(&self) -> Option<DateTime> {
        self.0.ended_at.map(DateTime)
    }

    /// Why the journey ended, as recorded.
    async fn end_reason(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.end_reason.as_deref())
    }

    /// Every start, move and end of the journey, oldest first.
    #[graphql(complexity = "8 * child_complexity + 1")]
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StageTransition>> {
        let history = ctx
            .loaders()?
            .history_of_journey
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(history.into_iter().map(StageTransition).collect())
    }

    /// Touchpoints logged against the journey, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn touchpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last touchpoint seen.")] after: Option<String>,
    ) -> async_graphql::Result<PlainConn<Touchpoint>> {
        Nested {
            pages: |l| &l.touchpoints_of_journey,
            counts: |l| &l.touchpoint_count_of_journey,
        }
        .load(
            ctx.loaders()?,
            self.0.id,
            first,
            after,
            |t| domain::touchpoints::keyset(t).into(),
            Touchpoint,
        )
        .await
        .map(PlainConn)
    }

    /// The journey's follow-ups, soonest due first.
    #[graphql(complexity = "5 * child_complexity + 1")]
    async fn follow_ups(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FollowUp>> {
        let follow_ups = ctx
            .loaders()?
            .follow_ups_of_journey
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(follow_ups.into_iter().map(FollowUp).collect())
    }
}

/// One entry of a journey's history.
pub struct StageTransition(pub stage_transitions::Model);

#[Object]
impl StageTransition {
    /// The transition's global id.
    pub async fn id(&self) -> ID {
        IdKind::StageTransition.encode(self.0.id).into()
    }

    /// Start, forward or backward move, completion or drop.
    async fn kind(&self) -> async_graphql::Result<TransitionKind> {
        stored(&self.0.kind, domain::TransitionKind::parse)
    }

    /// The stage left; null when the journey started.
    #[allow(clippy::wrong_self_convention)]
    async fn from_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stage>> {
        match self.0.from_stage_id {
            None => Ok(None),
            Some(id) => Ok(Some(Stage(ctx.loaders()?.stage_by_id(id).await?))),
        }
    }

    /// The stage entered (for completions and drops: the stage the journey ended in).
    async fn to_stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Stage> {
        Ok(Stage(ctx.loaders()?.stage_by_id(self.0.to_stage_id).await?))
    }

    /// When it happened.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }

    /// Hours spent in `fromStage` before this transition.
    async fn hours_in_from_stage(&self) -> Option<f64> {
        self.0
            .seconds_in_from_stage
            .map(|s| (s as f64 / 3600.0 * 100.0).round() / 100.0)
    }

    /// Why, as recorded by whoever made the change.
    async fn note(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.note.as_deref())
    }

    /// Who made the change.
    async fn actor_kind(&self) -> ActorKind {
        ActorKind::parse(&self.0.actor_kind)
    }

    /// The staff member who made the change, when a person did.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match (ActorKind::parse(&self.0.actor_kind), self.0.actor_id) {
            (ActorKind::Staff, Some(id)) => {
                Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember))
            }
            _ => Ok(None),
        }
    }
}

impl Plain for Journey {
    fn type_name(&self) -> Cow<'static, str> {
        <Self as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => given(self.id(ctx), ctx),
            // Plain once the journey's loader has read the stage with it.
            "currentStage" => nested(
                &Stage(ctx.loaders().ok()?.known_stage(self.0.current_stage_id)?),
                ctx,
            ),
            "status" => answered(self.status(ctx), ctx),
            "version" => given(self.version(ctx), ctx),
            "stageEnteredAt" => given(self.stage_entered_at(ctx), ctx),
            "stallsAt" => given(self.stalls_at(ctx), ctx),
            "stalled" => given(self.stalled(ctx), ctx),
            "hoursInStage" => given(self.hours_in_stage(ctx), ctx),
            "startedAt" => given(self.started_at(ctx), ctx),
            "endedAt" => given(self.ended_at(ctx), ctx),
            "endReason" => answered(self.end_reason(ctx), ctx),
            _ => None,
        }
    }
}
