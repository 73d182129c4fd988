use async_graphql::{ID, Interface};

use super::pathway::FollowUpRule;
use super::viewer::StaffMember;
use super::{
    Feedback, FollowUp, Journey, JourneyEvent, Pathway, Patient, Stage, StageTransition, Touchpoint,
};

/// Anything with a global id that `node(id:)` can fetch.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The global id."))]
pub enum Node {
    Patient(Patient),
    Pathway(Pathway),
    Stage(Stage),
    FollowUpRule(FollowUpRule),
    Journey(Journey),
    StageTransition(StageTransition),
    Touchpoint(Touchpoint),
    Feedback(Feedback),
    FollowUp(FollowUp),
    StaffMember(StaffMember),
    JourneyEvent(JourneyEvent),
    WebhookEndpoint(super::WebhookEndpoint),
    WebhookDelivery(super::WebhookDelivery),
}
