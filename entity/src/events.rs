//! The outbox and event log: one row per domain event, numbered per clinic.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    /// Per-clinic, gap-free, in commit order. Negative while the event waits
    /// for its number (PostgreSQL, the moment between its commit and its
    /// numbering); no read of the log returns it then.
    pub sequence: i64,
    /// `journey.stage_changed`, ...
    pub event_type: String,
    /// The global id of the record the event is about.
    pub subject: String,
    /// The event's `data` object.
    pub data: Json,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
