use crate::graphql::scalars::DateTime;
use std::borrow::Cow;

use async_graphql::{Context, ID, Object, OutputType, Value};
use entity::feedback;

use super::{FeedbackKind, Journey, Patient, Stage, Touchpoint, stored};
use crate::{
    domain,
    graphql::{
        context::ContextExt,
        loaders::required,
        plain::{Plain, answered, given},
    },
    ids::IdKind,
};

/// What a patient said: a score or a comment.
pub struct Feedback(pub feedback::Model);

#[Object]
impl Feedback {
    /// The feedback's global id.
    pub async fn id(&self) -> ID {
        IdKind::Feedback.encode(self.0.id).into()
    }

    /// NPS, CSAT, CES or a comment.
    async fn kind(&self) -> async_graphql::Result<FeedbackKind> {
        stored(&self.0.kind, domain::FeedbackKind::parse)
    }

    /// The score: NPS 0–10, CSAT 1–5, CES 1–7; null for comments.
    async fn score(&self) -> Option<i32> {
        self.0.score.map(i32::from)
    }

    /// The patient's words.
    async fn comment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        domain::access::free_text(ctx.principal()?)?;
        Ok(self.0.comment.as_deref())
    }

    /// When the patient gave it.
    async fn submitted_at(&self) -> DateTime {
        DateTime(self.0.submitted_at)
    }

    /// The patient.
    async fn patient(&self, ctx: &Context<'_>) -> async_graphql::Result<Patient> {
        Ok(Patient(
            required(&ctx.loaders()?.patient, self.0.patient_id, "patient").await?,
        ))
    }

    /// The journey it is about, if any.
    async fn journey(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Journey>> {
        match self.0.journey_id {
            None => Ok(None),
            Some(id) => Ok(Some(Journey(
                required(&ctx.loaders()?.journey, id, "journey").await?,
            ))),
        }
    }

    /// The stage it is about: the journey's stage when it was given.
    async fn stage(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stage>> {
        match self.0.stage_id {
            None => Ok(None),
            Some(id) => Ok(Some(Stage(ctx.loaders()?.stage_by_id(id).await?))),
        }
    }

    /// The touchpoint it is about, if any.
    async fn touchpoint(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Touchpoint>> {
        match self.0.touchpoint_id {
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

impl Plain for Feedback {
    fn type_name(&self) -> Cow<'static, str> {
        <Self as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => given(self.id(ctx), ctx),
            "kind" => answered(self.kind(ctx), ctx),
            "score" => given(self.score(ctx), ctx),
            "comment" => answered(self.comment(ctx), ctx),
            "submittedAt" => given(self.submitted_at(ctx), ctx),
            _ => None,
        }
    }
}
