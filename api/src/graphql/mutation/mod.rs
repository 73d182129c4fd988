//! The mutation root: one input, one payload per mutation.

mod access;
mod journeys;
mod outreach;
mod pathways;
mod patients;
mod touchpoints;
pub mod webhook_endpoints;

use async_graphql::MergedObject;

/// Everything a client can change.
#[derive(MergedObject, Default)]
pub struct Mutation(
    patients::PatientMutations,
    journeys::JourneyMutations,
    touchpoints::TouchpointMutations,
    pathways::PathwayMutations,
    access::AccessMutations,
    outreach::OutreachMutations,
    webhook_endpoints::WebhookMutations,
);
