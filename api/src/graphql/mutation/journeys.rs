use async_graphql::{Context, Object, SimpleObject};

use crate::{
    domain::{self, JourneyStatus},
    graphql::{
        context::ContextExt,
        inputs::{
            CompleteJourneyInput, DropJourneyInput, MoveJourneyToStageInput, StartJourneyInput,
        },
        types::{Journey, StageTransition},
    },
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
