use async_graphql::{Context, MaybeUndefined, Object, SimpleObject};

use crate::{
    domain::{self, pathways::PathwayDraft},
    graphql::{
        context::{ContextExt, decode_id},
        inputs::{
            AddStageInput, ArchivePathwayInput, CreatePathwayInput, ReorderStagesInput,
            SetStageFollowUpRulesInput, UpdatePathwayInput, UpdateStageInput,
        },
        types::{Pathway, Stage},
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
