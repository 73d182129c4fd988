//! The API's enumerations, mirrored from the domain vocabularies.

use async_graphql::Enum;

use crate::domain;

/// How the clinic and the patient were in touch.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::Channel")]
pub enum Channel {
    /// A phone call.
    Phone,
    /// A text message.
    Sms,
    /// An email.
    Email,
    /// A visit to the clinic.
    InPerson,
    /// A video call.
    Video,
    /// The patient portal.
    Portal,
    /// A form on the clinic's website.
    WebForm,
    /// A social network (Instagram, Facebook, TikTok …).
    Social,
    /// Live chat.
    Chat,
}

/// Who reached out.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::Direction")]
pub enum Direction {
    /// The patient reached the clinic.
    Inbound,
    /// The clinic reached the patient.
    Outbound,
}

/// The kind of feedback a patient gave.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::FeedbackKind")]
pub enum FeedbackKind {
    /// Net Promoter Score, 0 to 10.
    Nps,
    /// Customer satisfaction, 1 to 5.
    Csat,
    /// Customer effort score, 1 (easy) to 7 (hard).
    Ces,
    /// A free-text comment without a score.
    Comment,
}

/// Where a journey stands overall.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::JourneyStatus")]
pub enum JourneyStatus {
    /// The patient is on the way.
    Active,
    /// The journey reached its end.
    Completed,
    /// The patient dropped off.
    Dropped,
}

/// The part of the care journey a stage belongs to.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::StageCategory")]
pub enum StageCategory {
    /// First contact: a call, a form, a DM.
    Inquiry,
    /// Forms, history, consent.
    Intake,
    /// Assessment and treatment plan.
    Consultation,
    /// The procedure or therapy itself.
    Treatment,
    /// Check-ins after treatment.
    FollowUp,
    /// Maintenance, memberships, repeat treatments.
    OngoingCare,
    /// The journey is over.
    Discharged,
}

/// Where a follow-up stands.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::FollowUpStatus")]
pub enum FollowUpStatus {
    /// Planned; may be sent from its `sendAt`.
    Open,
    /// Planned, but no channel is allowed (see `blockedReason`).
    Blocked,
    /// The contact happened.
    Done,
    /// A coordinator decided not to make it.
    Skipped,
    /// No longer right: the journey moved on or ended, or consent was withdrawn.
    Cancelled,
}

/// Why a follow-up exists.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::FollowUpKind")]
pub enum FollowUpKind {
    /// Scheduled by a rule of the stage the journey entered (care).
    StageRule,
    /// Scheduled because the patient gave detractor feedback (NPS 0–6, CSAT 1–2) (care).
    ServiceRecovery,
    /// The journey passed its stage's target time with no contact since it entered (care).
    StalledNudge,
    /// The stage's rebooking cadence came due, e.g. 90 days after injectables (marketing).
    RebookingDue,
    /// A promoter (NPS 9–10, CSAT 5), asked for a review once per journey (marketing).
    ReviewRequest,
    /// No touchpoint in either direction for the stage's win-back days (marketing).
    WinBack,
    /// Scheduled by a person (care).
    Manual,
}

/// What an outreach contact is for; consent is given per purpose.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::ConsentPurpose")]
pub enum ConsentPurpose {
    /// About the patient's own care.
    Care,
    /// Offers, rebooking, reviews, win-back.
    Marketing,
}

/// What a stage transition was.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::TransitionKind")]
pub enum TransitionKind {
    /// The journey began in `toStage`.
    Started,
    /// Moved to a later stage.
    Forward,
    /// Moved back to an earlier stage.
    Backward,
    /// Completed in `toStage`.
    Completed,
    /// Dropped in `toStage`.
    Dropped,
}

/// Who made a change.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ActorKind {
    /// A signed-in staff member.
    Staff,
    /// A partner or integration with an API token.
    ApiToken,
    /// Journeymap itself.
    System,
}

impl ActorKind {
    pub fn parse(text: &str) -> Self {
        match text {
            "STAFF" => ActorKind::Staff,
            "API_TOKEN" => ActorKind::ApiToken,
            _ => ActorKind::System,
        }
    }
}

/// Parses a stored vocabulary value into its GraphQL enum.
pub fn stored<D, G>(text: &str, parse: fn(&str) -> Option<D>) -> async_graphql::Result<G>
where
    G: From<D>,
{
    parse(text).map(G::from).ok_or_else(|| {
        domain::DomainError::internal(anyhow::anyhow!("unknown stored value {text:?}")).into()
    })
}
