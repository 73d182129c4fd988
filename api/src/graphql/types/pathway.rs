use crate::graphql::scalars::DateTime;
use std::borrow::Cow;

use async_graphql::{Context, ID, Object, OutputType, Value};
use entity::{follow_up_rules, pathways, stages};

use super::{Channel, StageCategory, stored};
use crate::{
    domain,
    graphql::{
        context::ContextExt,
        loaders::required,
        plain::{Plain, answered, given},
    },
    ids::IdKind,
};

/// A journey template of the clinic, such as "Injectables" or "Morpheus8".
pub struct Pathway(pub pathways::Model);

#[Object]
impl Pathway {
    /// The pathway's global id.
    pub async fn id(&self) -> ID {
        IdKind::Pathway.encode(self.0.id).into()
    }

    /// The pathway's name, unique among the clinic's active pathways.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// What the pathway is for.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// True once archived: no new journey can start on it.
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }

    /// When the pathway was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// The pathway's stages, in order.
    #[graphql(complexity = "10 * child_complexity + 1")]
    async fn stages(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Stage>> {
        let stages = ctx
            .loaders()?
            .stages_of_pathway
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(stages.into_iter().map(Stage).collect())
    }
}

/// One step of a pathway.
pub struct Stage(pub stages::Model);

#[Object]
impl Stage {
    /// The stage's global id.
    pub async fn id(&self) -> ID {
        IdKind::Stage.encode(self.0.id).into()
    }

    /// Stable machine key, unique within the pathway (`consultation`).
    async fn key(&self) -> &str {
        &self.0.key
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The part of the care journey the stage belongs to.
    async fn category(&self) -> async_graphql::Result<StageCategory> {
        stored(&self.0.category, domain::StageCategory::parse)
    }

    /// 0-based position within the pathway.
    async fn position(&self) -> i32 {
        self.0.position
    }

    /// Hours a journey may spend in the stage before it counts as stalled.
    async fn target_hours(&self) -> Option<i32> {
        self.0.target_hours
    }

    /// Entering a terminal stage completes the journey.
    async fn terminal(&self) -> bool {
        self.0.terminal
    }

    /// Days after entering the stage when a rebooking is due (`REBOOKING_DUE`).
    async fn rebook_after_days(&self) -> Option<i32> {
        self.0.rebook_after_days
    }

    /// Days without any touchpoint after which an active journey here is won
    /// back (`WIN_BACK`).
    async fn win_back_after_days(&self) -> Option<i32> {
        self.0.win_back_after_days
    }

    /// The pathway the stage belongs to.
    async fn pathway(&self, ctx: &Context<'_>) -> async_graphql::Result<super::Pathway> {
        Ok(Pathway(
            required(&ctx.loaders()?.pathway, self.0.pathway_id, "pathway").await?,
        ))
    }

    /// Follow-ups scheduled when a journey enters the stage.
    async fn follow_up_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FollowUpRule>> {
        let rules = ctx
            .loaders()?
            .rules_of_stage
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(rules.into_iter().map(FollowUpRule).collect())
    }
}

/// "When a journey enters this stage, follow up after N hours by channel C."
pub struct FollowUpRule(pub follow_up_rules::Model);

#[Object]
impl FollowUpRule {
    /// The rule's global id.
    pub async fn id(&self) -> ID {
        IdKind::FollowUpRule.encode(self.0.id).into()
    }

    /// Hours after entering the stage that the follow-up is due.
    async fn delay_hours(&self) -> i32 {
        self.0.delay_hours
    }

    /// How to follow up.
    async fn channel(&self) -> async_graphql::Result<Channel> {
        stored(&self.0.channel, domain::Channel::parse)
    }

    /// What the follow-up is for.
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }

    /// Cancel the follow-up if the journey leaves the stage before it is done.
    async fn cancel_on_stage_exit(&self) -> bool {
        self.0.cancel_on_stage_exit
    }
}

impl Plain for Stage {
    fn type_name(&self) -> Cow<'static, str> {
        <Self as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => given(self.id(ctx), ctx),
            "key" => given(self.key(ctx), ctx),
            "name" => given(self.name(ctx), ctx),
            "category" => answered(self.category(ctx), ctx),
            "position" => given(self.position(ctx), ctx),
            "targetHours" => given(self.target_hours(ctx), ctx),
            "terminal" => given(self.terminal(ctx), ctx),
            "rebookAfterDays" => given(self.rebook_after_days(ctx), ctx),
            "winBackAfterDays" => given(self.win_back_after_days(ctx), ctx),
            _ => None,
        }
    }
}
