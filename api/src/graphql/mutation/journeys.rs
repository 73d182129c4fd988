use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::{
    domain::{self, DomainResult, JourneyStatus},
    graphql::{
        context::{ContextExt, decode_id, decode_opt_id},
        scalars::DateTime,
        types::{Journey, StageTransition},
    },
    ids::IdKind,
};

/// The result of `startJourney`.
#[derive(SimpleObject)]
pub struct StartJourneyPayload {
    /// The new journey.
    pub journey: Journey,
    /// The STARTED entry of its history.
    pub transition: StageTransition,
}

/// The result of `moveJourneyToStage`.
#[derive(SimpleObject)]
pub struct MoveJourneyToStagePayload {
    /// The journey as it is now.
    pub journey: Journey,
    /// The move, as recorded in the history.
    pub transition: StageTransition,
}

/// The result of `completeJourney`.
#[derive(SimpleObject)]
pub struct CompleteJourneyPayload {
    /// The completed journey.
    pub journey: Journey,
    /// The COMPLETED entry of its history.
    pub transition: StageTransition,
}

/// The result of `dropJourney`.
#[derive(SimpleObject)]
pub struct DropJourneyPayload {
    /// The dropped journey.
    pub journey: Journey,
    /// The DROPPED entry of its history.
    pub transition: StageTransition,
}

#[derive(Default)]
pub struct JourneyMutations;

#[Object]
impl JourneyMutations {
    /// Starts a patient on a pathway (at most one active journey per patient
    /// and pathway). Schedules the first stage's follow-ups. Emits
    /// `journey.started` and `follow_up.scheduled`.
    async fn start_journey(
        &self,
        ctx: &Context<'_>,
        input: StartJourneyInput,
    ) -> async_graphql::Result<StartJourneyPayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let change = domain::journeys::start(ctx.store(), ctx.principal()?, input)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(StartJourneyPayload {
            journey: Journey(change.journey),
            transition: StageTransition(change.transition),
        })
    }

    /// Moves a journey to another stage of its pathway. With
    /// `expectedVersion`, answers CONFLICT (and changes nothing) if the
    /// journey moved meanwhile. Cancels the left stage's pending follow-ups,
    /// schedules the new stage's, and completes the journey when the stage is
    /// terminal. Emits `journey.stage_changed`.
    async fn move_journey_to_stage(
        &self,
        ctx: &Context<'_>,
        input: MoveJourneyToStageInput,
    ) -> async_graphql::Result<MoveJourneyToStagePayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let change = domain::journeys::move_to_stage(ctx.store(), ctx.principal()?, input)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(MoveJourneyToStagePayload {
            journey: Journey(change.journey),
            transition: StageTransition(change.transition),
        })
    }

    /// Completes an active journey where it stands and cancels its open
    /// follow-ups. Emits `journey.completed`.
    async fn complete_journey(
        &self,
        ctx: &Context<'_>,
        input: CompleteJourneyInput,
    ) -> async_graphql::Result<CompleteJourneyPayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let change = domain::journeys::end(
            ctx.store(),
            ctx.principal()?,
            input,
            JourneyStatus::Completed,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(CompleteJourneyPayload {
            journey: Journey(change.journey),
            transition: StageTransition(change.transition),
        })
    }

    /// Records that the patient dropped off, and cancels the journey's open
    /// follow-ups. Emits `journey.dropped`.
    async fn drop_journey(
        &self,
        ctx: &Context<'_>,
        input: DropJourneyInput,
    ) -> async_graphql::Result<DropJourneyPayload> {
        let input = input.into_domain().map_err(|e| e.under("input"))?;
        let change =
            domain::journeys::end(ctx.store(), ctx.principal()?, input, JourneyStatus::Dropped)
                .await
                .map_err(|e| e.under("input"))?;
        Ok(DropJourneyPayload {
            journey: Journey(change.journey),
            transition: StageTransition(change.transition),
        })
    }
}

/// Start a patient on a pathway.
#[derive(InputObject)]
pub struct StartJourneyInput {
    /// The patient.
    pub patient_id: ID,
    /// The pathway.
    pub pathway_id: ID,
    /// The stage to start in; the pathway's first stage when absent.
    pub stage_id: Option<ID>,
    /// The staff member responsible; scheduled follow-ups are assigned to them.
    pub owner_id: Option<ID>,
    /// When the journey really began (for back-fills from a CRM); now when absent.
    pub occurred_at: Option<DateTime>,
    /// Why, for the history.
    pub note: Option<String>,
}

impl StartJourneyInput {
    pub fn into_domain(self) -> DomainResult<domain::journeys::StartJourney> {
        Ok(domain::journeys::StartJourney {
            patient_id: decode_id(IdKind::Patient, "patientId", &self.patient_id)?,
            pathway_id: decode_id(IdKind::Pathway, "pathwayId", &self.pathway_id)?,
            stage_id: decode_opt_id(IdKind::Stage, "stageId", self.stage_id.as_ref())?,
            owner_id: decode_opt_id(IdKind::Staff, "ownerId", self.owner_id.as_ref())?,
            occurred_at: self.occurred_at.map(|t| t.0),
            note: self.note,
        })
    }
}

/// Move a journey to another stage of its pathway.
#[derive(InputObject)]
pub struct MoveJourneyToStageInput {
    /// The journey.
    pub journey_id: ID,
    /// The stage to move to; it must belong to the journey's pathway.
    pub stage_id: ID,
    /// The version you last read; when it no longer matches, nothing changes
    /// and the answer is CONFLICT.
    pub expected_version: Option<i32>,
    /// Why, for the history.
    pub note: Option<String>,
    /// When the move really happened (for back-fills); now when absent. Not
    /// before the journey entered its current stage.
    pub occurred_at: Option<DateTime>,
}

impl MoveJourneyToStageInput {
    pub fn into_domain(self) -> DomainResult<domain::journeys::MoveJourney> {
        Ok(domain::journeys::MoveJourney {
            journey_id: decode_id(IdKind::Journey, "journeyId", &self.journey_id)?,
            stage_id: decode_id(IdKind::Stage, "stageId", &self.stage_id)?,
            expected_version: self.expected_version,
            note: self.note,
            occurred_at: self.occurred_at.map(|t| t.0),
        })
    }
}

/// Complete a journey where it stands.
#[derive(InputObject)]
pub struct CompleteJourneyInput {
    /// The journey.
    pub journey_id: ID,
    /// The version you last read (CONFLICT when it no longer matches).
    pub expected_version: Option<i32>,
    /// A closing note.
    pub note: Option<String>,
    /// When it really ended; now when absent.
    pub occurred_at: Option<DateTime>,
}

/// Record that a patient dropped off.
#[derive(InputObject)]
pub struct DropJourneyInput {
    /// The journey.
    pub journey_id: ID,
    /// The version you last read (CONFLICT when it no longer matches).
    pub expected_version: Option<i32>,
    /// Why the patient dropped off ("price", "no-show", "went elsewhere", …).
    pub reason: Option<String>,
    /// When it really ended; now when absent.
    pub occurred_at: Option<DateTime>,
}

impl CompleteJourneyInput {
    pub fn into_domain(self) -> DomainResult<domain::journeys::EndJourney> {
        Ok(domain::journeys::EndJourney {
            journey_id: decode_id(IdKind::Journey, "journeyId", &self.journey_id)?,
            expected_version: self.expected_version,
            note: self.note,
            occurred_at: self.occurred_at.map(|t| t.0),
        })
    }
}

impl DropJourneyInput {
    pub fn into_domain(self) -> DomainResult<domain::journeys::EndJourney> {
        Ok(domain::journeys::EndJourney {
            journey_id: decode_id(IdKind::Journey, "journeyId", &self.journey_id)?,
            expected_version: self.expected_version,
            note: self.reason,
            occurred_at: self.occurred_at.map(|t| t.0),
        })
    }
}
