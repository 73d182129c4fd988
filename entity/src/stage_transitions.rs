//! Append-only journey history: every start, move, completion and drop.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_transitions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub journey_id: Uuid,
    pub pathway_id: Uuid,
    /// STARTED, FORWARD, BACKWARD, COMPLETED or DROPPED.
    pub kind: String,
    /// None when the journey starts.
    pub from_stage_id: Option<Uuid>,
    /// The stage entered; for COMPLETED and DROPPED, the stage the journey ended in.
    pub to_stage_id: Uuid,
    /// Seconds spent in `from_stage_id` (or in the final stage, when ending).
    pub seconds_in_from_stage: Option<i64>,
    pub occurred_at: DateTimeUtc,
    /// STAFF, API_TOKEN or SYSTEM.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub note: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
