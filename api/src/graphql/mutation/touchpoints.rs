use async_graphql::{Context, Object, SimpleObject};

use crate::{
    domain,
    graphql::{
        context::{ContextExt, decode_id, decode_opt_id},
        inputs::{CompleteFollowUpInput, LogTouchpointInput, SubmitFeedbackInput},
        types::{Feedback, FollowUp, Touchpoint},
    },
    ids::IdKind,
};

/// The result of `logTouchpoint`.
#[derive(SimpleObject)]
pub struct LogTouchpointPayload {
    /// The recorded touchpoint.
    pub touchpoint: Touchpoint,
}

/// The result of `submitFeedback`.
#[derive(SimpleObject)]
pub struct SubmitFeedbackPayload {
    /// The recorded feedback.
    pub feedback: Feedback,
}

/// The result of `completeFollowUp`.
#[derive(SimpleObject)]
pub struct CompleteFollowUpPayload {
    /// The follow-up, now done.
    pub follow_up: FollowUp,
}

#[derive(Default)]
pub struct TouchpointMutations;

#[Object]
impl TouchpointMutations {
    /// Records an interaction with a patient. Emits `touchpoint.logged` (and
    /// `follow_up.completed` with `completesFollowUpId`).
    async fn log_touchpoint(
        &self,
        ctx: &Context<'_>,
        input: LogTouchpointInput,
    ) -> async_graphql::Result<LogTouchpointPayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let touchpoint = domain::touchpoints::log(ctx.store(), ctx.principal()?, input)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(LogTouchpointPayload {
            touchpoint: Touchpoint(touchpoint),
        })
    }

    /// Records what a patient said. Emits `feedback.submitted` (without the comment text).
    async fn submit_feedback(
        &self,
        ctx: &Context<'_>,
        input: SubmitFeedbackInput,
    ) -> async_graphql::Result<SubmitFeedbackPayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let feedback = domain::feedback::submit(ctx.store(), ctx.principal()?, input)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(SubmitFeedbackPayload {
            feedback: Feedback(feedback),
        })
    }

    /// Marks an open follow-up done. Emits `follow_up.completed`.
    async fn complete_follow_up(
        &self,
        ctx: &Context<'_>,
        input: CompleteFollowUpInput,
    ) -> async_graphql::Result<CompleteFollowUpPayload> {
        let follow_up_id = decode_id(IdKind::FollowUp, "input.followUpId", &input.follow_up_id)?;
        let touchpoint_id = decode_opt_id(
            IdKind::Touchpoint,
            "input.touchpointId",
            input.touchpoint_id.as_ref(),
        )?;
        let follow_up = domain::follow_ups::complete(
            ctx.store(),
            ctx.principal()?,
            follow_up_id,
            touchpoint_id,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(CompleteFollowUpPayload {
            follow_up: FollowUp(follow_up),
        })
    }
}
