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
    /// STAGE_RULE, SERVICE_RECOVERY or MANUAL.
    pub kind: String,
    pub due_at: DateTimeUtc,
    pub channel: String,
    pub note: Option<String>,
    pub assignee_staff_id: Option<Uuid>,
    /// OPEN, DONE or CANCELLED.
    pub status: String,
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
