//! Every attempt to deliver a webhook, and how it went.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub delivery_id: Uuid,
    pub attempted_at: DateTimeUtc,
    /// The receiver's HTTP status; None when no answer came.
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
