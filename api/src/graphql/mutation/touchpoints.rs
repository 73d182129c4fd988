use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::{
    domain::{self, DomainResult},
    graphql::{
        context::{ContextExt, decode_id, decode_opt_id},
        scalars::DateTime,
        types::{Channel, Direction, Feedback, FeedbackKind, FollowUp, Touchpoint},
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

/// An interaction with a patient.
#[derive(InputObject)]
pub struct LogTouchpointInput {
    /// The patient.
    pub patient_id: ID,
    /// The journey it belongs to; the touchpoint is filed under the stage the
    /// journey was in when it happened.
    pub journey_id: Option<ID>,
    /// How you were in touch.
    pub channel: Channel,
    /// Who reached out.
    pub direction: Direction,
    /// What it was: `booking`, `reminder`, `consultation`, … (1 to 64 characters).
    pub kind: String,
    /// What happened (at most 4000 characters).
    pub summary: Option<String>,
    /// When it happened; now when absent. Not in the future.
    pub occurred_at: Option<DateTime>,
    /// How the patient felt: -2 (very upset) to 2 (delighted).
    pub emotion: Option<i32>,
    /// A moment that makes or breaks the patient's trust.
    #[graphql(default)]
    pub moment_of_truth: bool,
    /// The staff member involved.
    pub staff_id: Option<ID>,
    /// Your system's id for the interaction, unique within the clinic.
    pub external_ref: Option<String>,
    /// An open follow-up of the same patient that this touchpoint fulfils.
    pub completes_follow_up_id: Option<ID>,
}

impl LogTouchpointInput {
    pub fn into_domain(self) -> DomainResult<domain::touchpoints::LogTouchpoint> {
        Ok(domain::touchpoints::LogTouchpoint {
            patient_id: decode_id(IdKind::Patient, "patientId", &self.patient_id)?,
            journey_id: decode_opt_id(IdKind::Journey, "journeyId", self.journey_id.as_ref())?,
            channel: self.channel.into(),
            direction: self.direction.into(),
            kind: self.kind,
            summary: self.summary,
            occurred_at: self.occurred_at.map(|t| t.0),
            emotion: self.emotion,
            moment_of_truth: self.moment_of_truth,
            staff_id: decode_opt_id(IdKind::Staff, "staffId", self.staff_id.as_ref())?,
            external_ref: self.external_ref,
            completes_follow_up_id: decode_opt_id(
                IdKind::FollowUp,
                "completesFollowUpId",
                self.completes_follow_up_id.as_ref(),
            )?,
        })
    }
}

/// What a patient said.
#[derive(InputObject)]
pub struct SubmitFeedbackInput {
    /// The patient.
    pub patient_id: ID,
    /// The journey it is about; filed under the stage the journey was in.
    pub journey_id: Option<ID>,
    /// The touchpoint it is about.
    pub touchpoint_id: Option<ID>,
    /// NPS, CSAT, CES or COMMENT.
    pub kind: FeedbackKind,
    /// NPS 0–10, CSAT 1–5, CES 1–7; none for a COMMENT.
    pub score: Option<i32>,
    /// The patient's words (required for a COMMENT, at most 4000 characters).
    pub comment: Option<String>,
    /// The staff member it is about.
    pub staff_id: Option<ID>,
    /// When the patient gave it; now when absent.
    pub submitted_at: Option<DateTime>,
}

impl SubmitFeedbackInput {
    pub fn into_domain(self) -> DomainResult<domain::feedback::SubmitFeedback> {
        Ok(domain::feedback::SubmitFeedback {
            patient_id: decode_id(IdKind::Patient, "patientId", &self.patient_id)?,
            journey_id: decode_opt_id(IdKind::Journey, "journeyId", self.journey_id.as_ref())?,
            touchpoint_id: decode_opt_id(
                IdKind::Touchpoint,
                "touchpointId",
                self.touchpoint_id.as_ref(),
            )?,
            kind: self.kind.into(),
            score: self.score,
            comment: self.comment,
            staff_id: decode_opt_id(IdKind::Staff, "staffId", self.staff_id.as_ref())?,
            submitted_at: self.submitted_at.map(|t| t.0),
        })
    }
}

/// Mark a follow-up done.
#[derive(InputObject)]
pub struct CompleteFollowUpInput {
    /// The follow-up.
    pub follow_up_id: ID,
    /// The touchpoint that fulfilled it (same patient).
    pub touchpoint_id: Option<ID>,
}
