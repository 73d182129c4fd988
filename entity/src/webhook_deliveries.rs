//! One event (or test message) for one endpoint, until it is delivered or
//! its retries are exhausted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub endpoint_id: Uuid,
    /// None for test messages.
    pub event_id: Option<Uuid>,
    /// The `webhook-id` header: the same on every attempt.
    pub message_id: String,
    pub event_type: String,
    /// The body of a test message; events are rendered when sent.
    pub payload: Option<Json>,
    /// PENDING, DELIVERED or FAILED.
    pub status: String,
    pub attempts: i32,
    /// Position in the retry schedule.
    pub retry_index: i32,
    pub next_attempt_at: DateTimeUtc,
    /// Claimed by a worker until then.
    pub locked_until: Option<DateTimeUtc>,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
