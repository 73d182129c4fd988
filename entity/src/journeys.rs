//! One patient on one pathway.
use sea_orm::entity::prelude::*;

model_decoded_by_position! {
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "journeys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub clinic_id: Uuid,
        pub patient_id: Uuid,
        pub pathway_id: Uuid,
        pub current_stage_id: Uuid,
        /// ACTIVE, COMPLETED or DROPPED.
        pub status: String,
        pub stage_entered_at: DateTimeUtc,
        /// `stage_entered_at` plus the current stage's target hours; the journey is
        /// stalled once this passes while it is ACTIVE.
        pub stalls_at: Option<DateTimeUtc>,
        pub owner_staff_id: Option<Uuid>,
        /// Incremented by every change, for optimistic concurrency.
        pub version: i32,
        pub started_at: DateTimeUtc,
        pub ended_at: Option<DateTimeUtc>,
        pub end_reason: Option<String>,
        pub updated_at: DateTimeUtc,
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
