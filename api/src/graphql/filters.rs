//! The filters of list queries and their translation into domain filters.
//! (Each mutation's input sits beside its resolver in [`super::mutation`].)
//! Field paths in errors use the names clients send (`filter.search`).

use async_graphql::{ID, InputObject};

use super::{
    context::decode_opt_id,
    scalars::DateTime,
    types::{FollowUpKind, FollowUpStatus, JourneyStatus},
};
use crate::{
    domain::{self, DomainResult},
    ids::IdKind,
};

/// How to narrow a list of patients.
#[derive(InputObject, Default)]
pub struct PatientFilter {
    /// Words that must all appear in the name, email or phone.
    pub search: Option<String>,
    /// Patients with a journey on this pathway.
    pub pathway_id: Option<ID>,
    /// Patients with an active journey currently in this stage.
    pub stage_id: Option<ID>,
    /// Patients carrying this tag.
    pub tag: Option<String>,
    /// Include archived patients (default false).
    #[graphql(default)]
    pub include_archived: bool,
}

impl PatientFilter {
    pub fn into_domain(self) -> DomainResult<domain::patients::PatientFilter> {
        Ok(domain::patients::PatientFilter {
            search: self.search,
            pathway_id: decode_opt_id(
                IdKind::Pathway,
                "filter.pathwayId",
                self.pathway_id.as_ref(),
            )?,
            stage_id: decode_opt_id(IdKind::Stage, "filter.stageId", self.stage_id.as_ref())?,
            tag: self.tag,
            include_archived: self.include_archived,
        })
    }
}

/// How to narrow a list of journeys.
#[derive(InputObject, Default)]
pub struct JourneyFilter {
    /// Journeys on this pathway.
    pub pathway_id: Option<ID>,
    /// Journeys currently in this stage.
    pub stage_id: Option<ID>,
    /// Journeys with this status.
    pub status: Option<JourneyStatus>,
    /// Only stalled journeys (`true`) or only those that are not (`false`).
    pub stalled: Option<bool>,
    /// Journeys of this patient.
    pub patient_id: Option<ID>,
    /// Journeys owned by this staff member.
    pub owner_id: Option<ID>,
}

impl JourneyFilter {
    pub fn into_domain(self) -> DomainResult<domain::journeys::JourneyFilter> {
        Ok(domain::journeys::JourneyFilter {
            pathway_id: decode_opt_id(
                IdKind::Pathway,
                "filter.pathwayId",
                self.pathway_id.as_ref(),
            )?,
            stage_id: decode_opt_id(IdKind::Stage, "filter.stageId", self.stage_id.as_ref())?,
            status: self.status.map(Into::into),
            stalled: self.stalled,
            patient_id: decode_opt_id(
                IdKind::Patient,
                "filter.patientId",
                self.patient_id.as_ref(),
            )?,
            owner_id: decode_opt_id(IdKind::Staff, "filter.ownerId", self.owner_id.as_ref())?,
        })
    }
}

/// How to narrow the follow-up work list.
#[derive(InputObject, Default)]
pub struct FollowUpFilter {
    /// Follow-ups with this status.
    pub status: Option<FollowUpStatus>,
    /// Only open follow-ups past their due time (`true`), or all others (`false`).
    pub overdue: Option<bool>,
    /// Follow-ups due before this time.
    pub due_before: Option<DateTime>,
    /// Follow-ups assigned to this staff member.
    pub assignee_id: Option<ID>,
    /// Follow-ups of this journey.
    pub journey_id: Option<ID>,
    /// Follow-ups of this patient.
    pub patient_id: Option<ID>,
    /// The coordinator's queue (`true`): open follow-ups whose `sendAt` has
    /// come, most urgent first (by `priority`, then the longest waiting).
    pub sendable: Option<bool>,
    /// Follow-ups of this kind.
    pub kind: Option<FollowUpKind>,
}

impl FollowUpFilter {
    pub fn into_domain(self) -> DomainResult<domain::follow_ups::FollowUpFilter> {
        Ok(domain::follow_ups::FollowUpFilter {
            status: self.status.map(Into::into),
            overdue: self.overdue,
            due_before: self.due_before.map(|t| t.0),
            assignee_id: decode_opt_id(
                IdKind::Staff,
                "filter.assigneeId",
                self.assignee_id.as_ref(),
            )?,
            journey_id: decode_opt_id(
                IdKind::Journey,
                "filter.journeyId",
                self.journey_id.as_ref(),
            )?,
            patient_id: decode_opt_id(
                IdKind::Patient,
                "filter.patientId",
                self.patient_id.as_ref(),
            )?,
            sendable: self.sendable,
            kind: self.kind.map(Into::into),
        })
    }
}

/// A span of time.
#[derive(InputObject)]
pub struct TimeWindowInput {
    /// Start (inclusive).
    pub from: DateTime,
    /// End (exclusive).
    pub to: DateTime,
}

/// How to narrow the audit log.
#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// Entries about this patient's data.
    pub patient_id: Option<ID>,
    /// Entries by this staff member or API token.
    pub actor_id: Option<ID>,
    /// From this time (inclusive).
    pub from: Option<DateTime>,
    /// Until this time (exclusive).
    pub to: Option<DateTime>,
}

impl AuditLogFilter {
    pub fn into_domain(self) -> DomainResult<domain::audit_log::AuditFilter> {
        let actor_id = match &self.actor_id {
            None => None,
            Some(id) => match crate::ids::decode(id.as_str()) {
                Ok((IdKind::Staff | IdKind::ApiToken, uuid)) => Some(uuid),
                _ => {
                    return Err(domain::DomainError::invalid(
                        "filter.actorId",
                        "must be a staff member's or an API token's id",
                    ));
                }
            },
        };
        Ok(domain::audit_log::AuditFilter {
            patient_id: decode_opt_id(
                IdKind::Patient,
                "filter.patientId",
                self.patient_id.as_ref(),
            )?,
            actor_id,
            from: self.from.map(|t| t.0),
            to: self.to.map(|t| t.0),
        })
    }
}
