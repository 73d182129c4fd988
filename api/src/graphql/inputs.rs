//! GraphQL input objects and their translation into domain inputs. Field
//! paths in errors use the names clients send (`input.email`).

use async_graphql::{ID, InputObject, MaybeUndefined};

use super::{
    context::{decode_id, decode_opt_id},
    scalars::{Date, DateTime},
    types::{Channel, Direction, FeedbackKind, FollowUpStatus, JourneyStatus, StageCategory},
};
use crate::{
    domain::{
        self, DomainResult,
        patients::{Change, PatientFields},
    },
    ids::IdKind,
};

fn change<T, U>(value: MaybeUndefined<T>, map: impl FnOnce(T) -> U) -> Change<U> {
    match value {
        MaybeUndefined::Undefined => Change::Keep,
        MaybeUndefined::Null => Change::Clear,
        MaybeUndefined::Value(v) => Change::Set(map(v)),
    }
}

fn optional<T, U>(value: Option<T>, map: impl FnOnce(T) -> U) -> Change<U> {
    match value {
        None => Change::Keep,
        Some(v) => Change::Set(map(v)),
    }
}

/// Contact consent.
#[derive(InputObject, Clone, Copy)]
pub struct ConsentInput {
    /// Text messages about their care.
    #[graphql(default)]
    pub sms: bool,
    /// Emails about their care.
    #[graphql(default)]
    pub email: bool,
    /// Marketing messages.
    #[graphql(default)]
    pub marketing: bool,
}

impl From<ConsentInput> for domain::patients::Consent {
    fn from(c: ConsentInput) -> Self {
        Self {
            sms: c.sms,
            email: c.email,
            marketing: c.marketing,
        }
    }
}

/// A new patient.
#[derive(InputObject)]
pub struct CreatePatientInput {
    /// First name (1 to 100 characters).
    pub given_name: String,
    /// Last name (1 to 100 characters).
    pub family_name: String,
    /// Email address.
    pub email: Option<String>,
    /// Phone number in E.164 form (`+14155550123`); spaces and dashes are removed.
    pub phone: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// How the patient prefers to be reached.
    pub preferred_channel: Option<Channel>,
    /// Where the patient came from ("instagram", "referral", …).
    pub source: Option<String>,
    /// Labels: at most 20, each 1 to 40 characters of a-z, 0-9, '-', '_' and ':'.
    pub tags: Option<Vec<String>>,
    /// Contact consent; all false when absent.
    pub consent: Option<ConsentInput>,
    /// The patient's id in your CRM, unique within the clinic.
    pub external_id: Option<String>,
}

impl From<CreatePatientInput> for PatientFields {
    fn from(input: CreatePatientInput) -> Self {
        PatientFields {
            external_id: optional(input.external_id, |v| v),
            given_name: Some(input.given_name),
            family_name: Some(input.family_name),
            email: optional(input.email, |v| v),
            phone: optional(input.phone, |v| v),
            birth_date: optional(input.birth_date, |v| v.0),
            preferred_channel: optional(input.preferred_channel, domain::Channel::from),
            source: optional(input.source, |v| v),
            tags: input.tags,
            consent: input.consent.map(Into::into),
        }
    }
}

/// Changes to a patient: absent fields stay as they are, `null` clears.
#[derive(InputObject)]
pub struct UpdatePatientInput {
    /// The patient to change.
    pub patient_id: ID,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub family_name: Option<String>,
    /// Email address; `null` removes it.
    pub email: MaybeUndefined<String>,
    /// Phone number in E.164 form; `null` removes it.
    pub phone: MaybeUndefined<String>,
    /// Date of birth; `null` removes it.
    pub birth_date: MaybeUndefined<Date>,
    /// Preferred channel; `null` removes it.
    pub preferred_channel: MaybeUndefined<Channel>,
    /// Source; `null` removes it.
    pub source: MaybeUndefined<String>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Replaces the consent.
    pub consent: Option<ConsentInput>,
    /// The patient's id in your CRM; `null` unlinks it.
    pub external_id: MaybeUndefined<String>,
}

impl UpdatePatientInput {
    pub fn into_domain(self) -> DomainResult<(uuid::Uuid, PatientFields)> {
        let id = decode_id(IdKind::Patient, "patientId", &self.patient_id)?;
        Ok((
            id,
            PatientFields {
                external_id: change(self.external_id, |v| v),
                given_name: self.given_name,
                family_name: self.family_name,
                email: change(self.email, |v| v),
                phone: change(self.phone, |v| v),
                birth_date: change(self.birth_date, |v| v.0),
                preferred_channel: change(self.preferred_channel, domain::Channel::from),
                source: change(self.source, |v| v),
                tags: self.tags,
                consent: self.consent.map(Into::into),
            },
        ))
    }
}

/// A patient identified by your CRM's id: created when unknown, updated otherwise.
#[derive(InputObject)]
pub struct UpsertPatientInput {
    /// The patient's id in your CRM.
    pub external_id: String,
    /// First name; required when the patient is created.
    pub given_name: Option<String>,
    /// Last name; required when the patient is created.
    pub family_name: Option<String>,
    /// Email address; `null` removes it.
    pub email: MaybeUndefined<String>,
    /// Phone number in E.164 form; `null` removes it.
    pub phone: MaybeUndefined<String>,
    /// Date of birth; `null` removes it.
    pub birth_date: MaybeUndefined<Date>,
    /// Preferred channel; `null` removes it.
    pub preferred_channel: MaybeUndefined<Channel>,
    /// Source; `null` removes it.
    pub source: MaybeUndefined<String>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Replaces the consent.
    pub consent: Option<ConsentInput>,
}

impl UpsertPatientInput {
    pub fn into_domain(self) -> (String, PatientFields) {
        (
            self.external_id,
            PatientFields {
                external_id: Change::Keep,
                given_name: self.given_name,
                family_name: self.family_name,
                email: change(self.email, |v| v),
                phone: change(self.phone, |v| v),
                birth_date: change(self.birth_date, |v| v.0),
                preferred_channel: change(self.preferred_channel, domain::Channel::from),
                source: change(self.source, |v| v),
                tags: self.tags,
                consent: self.consent.map(Into::into),
            },
        )
    }
}

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
