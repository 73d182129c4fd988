use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use crate::{
    domain::{self, pathways::PathwayDraft},
    graphql::{
        context::{ContextExt, decode_id},
        types::{Channel, Pathway, Stage, StageCategory},
    },
    ids::IdKind,
};

/// The result of a change to a pathway.
#[derive(SimpleObject)]
pub struct PathwayPayload {
    /// The pathway as it is now.
    pub pathway: Pathway,
}

/// The result of a change to a stage.
#[derive(SimpleObject)]
pub struct StagePayload {
    /// The stage as it is now.
    pub stage: Stage,
}

#[derive(Default)]
pub struct PathwayMutations;

#[Object]
impl PathwayMutations {
    /// Creates a pathway with its ordered stages and their follow-up rules.
    async fn create_pathway(
        &self,
        ctx: &Context<'_>,
        input: CreatePathwayInput,
    ) -> async_graphql::Result<PathwayPayload> {
        let draft = PathwayDraft {
            name: input.name,
            description: input.description,
            stages: input.stages.into_iter().map(Into::into).collect(),
        };
        let pathway = domain::pathways::create(ctx.store(), ctx.principal()?, draft)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(PathwayPayload {
            pathway: Pathway(pathway),
        })
    }

    /// Renames a pathway or changes its description.
    async fn update_pathway(
        &self,
        ctx: &Context<'_>,
        input: UpdatePathwayInput,
    ) -> async_graphql::Result<PathwayPayload> {
        let id = decode_id(IdKind::Pathway, "input.pathwayId", &input.pathway_id)?;
        let description = match input.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(text) => Some(Some(text)),
        };
        let pathway =
            domain::pathways::update(ctx.store(), ctx.principal()?, id, input.name, description)
                .await
                .map_err(|e| e.under("input"))?;
        Ok(PathwayPayload {
            pathway: Pathway(pathway),
        })
    }

    /// Archives a pathway: its journeys go on, no new journey starts on it.
    async fn archive_pathway(
        &self,
        ctx: &Context<'_>,
        input: ArchivePathwayInput,
    ) -> async_graphql::Result<PathwayPayload> {
        let id = decode_id(IdKind::Pathway, "input.pathwayId", &input.pathway_id)?;
        let pathway = domain::pathways::archive(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(PathwayPayload {
            pathway: Pathway(pathway),
        })
    }

    /// Adds a stage to a pathway.
    async fn add_stage(
        &self,
        ctx: &Context<'_>,
        input: AddStageInput,
    ) -> async_graphql::Result<StagePayload> {
        let id = decode_id(IdKind::Pathway, "input.pathwayId", &input.pathway_id)?;
        let stage = domain::pathways::add_stage(
            ctx.store(),
            ctx.principal()?,
            id,
            input.position,
            input.stage.into(),
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(StagePayload {
            stage: Stage(stage),
        })
    }

    /// Renames a stage or changes its target hours or terminal flag. A new
    /// target applies to the journeys already waiting in the stage.
    async fn update_stage(
        &self,
        ctx: &Context<'_>,
        input: UpdateStageInput,
    ) -> async_graphql::Result<StagePayload> {
        let id = decode_id(IdKind::Stage, "input.stageId", &input.stage_id)?;
        let target_hours = match input.target_hours {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(hours) => Some(Some(hours)),
        };
        let stage = domain::pathways::update_stage(
            ctx.store(),
            ctx.principal()?,
            id,
            input.name,
            target_hours,
            input.terminal,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(StagePayload {
            stage: Stage(stage),
        })
    }

    /// Puts a pathway's stages in a new order.
    async fn reorder_stages(
        &self,
        ctx: &Context<'_>,
        input: ReorderStagesInput,
    ) -> async_graphql::Result<PathwayPayload> {
        let id = decode_id(IdKind::Pathway, "input.pathwayId", &input.pathway_id)?;
        let stage_ids = input
            .stage_ids
            .iter()
            .enumerate()
            .map(|(i, s)| decode_id(IdKind::Stage, &format!("input.stageIds[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let store = ctx.store();
        let who = ctx.principal()?;
        domain::pathways::reorder_stages(store, who, id, &stage_ids)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(PathwayPayload {
            pathway: Pathway(domain::pathways::get(store, who, id).await?),
        })
    }

    /// Replaces the follow-up rules of a stage.
    async fn set_stage_follow_up_rules(
        &self,
        ctx: &Context<'_>,
        input: SetStageFollowUpRulesInput,
    ) -> async_graphql::Result<StagePayload> {
        let id = decode_id(IdKind::Stage, "input.stageId", &input.stage_id)?;
        let rules: Vec<_> = input.rules.into_iter().map(Into::into).collect();
        let stage =
            domain::pathways::set_follow_up_rules(ctx.store(), ctx.principal()?, id, &rules)
                .await
                .map_err(|e| e.under("input"))?;
        Ok(StagePayload {
            stage: Stage(stage),
        })
    }
}

/// A follow-up rule of a stage.
#[derive(InputObject)]
pub struct FollowUpRuleInput {
    /// Hours after entering the stage that the follow-up is due (0 to 8784).
    pub delay_hours: i32,
    /// How to follow up.
    pub channel: Channel,
    /// What the follow-up is for.
    pub note: Option<String>,
    /// Cancel the follow-up if the journey leaves the stage first (default true).
    #[graphql(default = true)]
    pub cancel_on_stage_exit: bool,
}

impl From<FollowUpRuleInput> for domain::pathways::RuleDraft {
    fn from(rule: FollowUpRuleInput) -> Self {
        Self {
            delay_hours: rule.delay_hours,
            channel: rule.channel.into(),
            note: rule.note,
            cancel_on_stage_exit: rule.cancel_on_stage_exit,
        }
    }
}

/// A stage of a new pathway.
#[derive(InputObject)]
pub struct StageInput {
    /// Machine key, unique within the pathway: a-z, 0-9, '_' and '-'.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The part of the care journey it belongs to.
    pub category: StageCategory,
    /// Hours a journey may spend here before it counts as stalled (1 to 8784).
    pub target_hours: Option<i32>,
    /// Entering it completes the journey.
    #[graphql(default)]
    pub terminal: bool,
    /// Follow-ups to schedule when a journey enters the stage.
    #[graphql(default)]
    pub follow_up_rules: Vec<FollowUpRuleInput>,
}

impl From<StageInput> for domain::pathways::StageDraft {
    fn from(stage: StageInput) -> Self {
        Self {
            key: stage.key,
            name: stage.name,
            category: stage.category.into(),
            target_hours: stage.target_hours,
            terminal: stage.terminal,
            follow_up_rules: stage.follow_up_rules.into_iter().map(Into::into).collect(),
        }
    }
}

/// A new pathway with its stages, in order.
#[derive(InputObject)]
pub struct CreatePathwayInput {
    /// Name, unique among the clinic's active pathways.
    pub name: String,
    /// What the pathway is for.
    pub description: Option<String>,
    /// The stages, in order (1 to 30; the first is where journeys start).
    pub stages: Vec<StageInput>,
}

/// Rename a pathway or change its description.
#[derive(InputObject)]
pub struct UpdatePathwayInput {
    /// The pathway.
    pub pathway_id: ID,
    /// The new name.
    pub name: Option<String>,
    /// The new description; `null` removes it.
    pub description: MaybeUndefined<String>,
}

/// Archive a pathway.
#[derive(InputObject)]
pub struct ArchivePathwayInput {
    /// The pathway.
    pub pathway_id: ID,
}

/// Add a stage to a pathway.
#[derive(InputObject)]
pub struct AddStageInput {
    /// The pathway.
    pub pathway_id: ID,
    /// Where to insert it (0-based); at the end when absent.
    pub position: Option<i32>,
    /// The stage.
    pub stage: StageInput,
}

/// Change a stage.
#[derive(InputObject)]
pub struct UpdateStageInput {
    /// The stage.
    pub stage_id: ID,
    /// The new name.
    pub name: Option<String>,
    /// The new target hours; `null` removes the target.
    pub target_hours: MaybeUndefined<i32>,
    /// Whether entering it completes the journey.
    pub terminal: Option<bool>,
}

/// Put a pathway's stages in a new order.
#[derive(InputObject)]
pub struct ReorderStagesInput {
    /// The pathway.
    pub pathway_id: ID,
    /// Every stage of the pathway, once, in the new order.
    pub stage_ids: Vec<ID>,
}

/// Replace the follow-up rules of a stage.
#[derive(InputObject)]
pub struct SetStageFollowUpRulesInput {
    /// The stage.
    pub stage_id: ID,
    /// The new rules (at most 10).
    pub rules: Vec<FollowUpRuleInput>,
}
