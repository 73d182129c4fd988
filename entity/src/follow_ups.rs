//! Scheduled outreach to a patient on a journey.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "follow_ups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub journey_id: Uuid,
    pub patient_id: Uuid,
    /// The stage whose rule scheduled it, if any.
    pub stage_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    /// STAGE_RULE, SERVICE_RECOVERY, STALLED_NUDGE, REBOOKING_DUE,
    /// REVIEW_REQUEST, WIN_BACK or MANUAL.
    pub kind: String,
    /// CARE or MARKETING.
    pub purpose: String,
    pub due_at: DateTimeUtc,
    pub channel: String,
    pub note: Option<String>,
    pub assignee_staff_id: Option<Uuid>,
    /// OPEN, BLOCKED, DONE, SKIPPED or CANCELLED.
    pub status: String,
    /// The first allowed moment at or after `due_at`: inside the patient's
    /// contact hours and the clinic's frequency limits.
    pub send_at: Option<DateTimeUtc>,
    /// One plain sentence: why this follow-up, now.
    pub explanation: Option<String>,
    /// The draft message in the clinic's voice.
    pub message: Option<String>,
    /// 1 (most urgent) to 3; the queue orders by it, then by `send_at`.
    pub priority: i16,
    /// Why no channel is allowed, for a BLOCKED follow-up.
    pub blocked_reason: Option<String>,
    /// Set once when `follow_up.due` has been emitted.
    pub due_notified_at: Option<DateTimeUtc>,
    pub skipped_at: Option<DateTimeUtc>,
    pub skip_reason: Option<String>,
    /// Makes a time-based plan happen once (unique in the clinic).
    pub plan_key: Option<String>,
    pub completed_at: Option<DateTimeUtc>,
    pub completed_by_touchpoint_id: Option<Uuid>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
    /// Set once when the overdue event has been emitted.
    pub overdue_notified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
