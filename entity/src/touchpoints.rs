//! Every interaction with a patient, and how they felt about it.
use sea_orm::entity::prelude::*;

model_decoded_by_position! {
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "touchpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub clinic_id: Uuid,
        pub patient_id: Uuid,
        pub journey_id: Option<Uuid>,
        /// The journey's stage when the touchpoint happened.
        pub stage_id: Option<Uuid>,
        pub channel: String,
        /// INBOUND or OUTBOUND.
        pub direction: String,
        /// Free-form kind: `booking`, `reminder`, `consultation`, ...
        pub kind: String,
        pub summary: Option<String>,
        pub occurred_at: DateTimeUtc,
        pub staff_id: Option<Uuid>,
        /// Patient emotion from -2 (very negative) to 2 (delighted).
        pub emotion: Option<i16>,
        pub moment_of_truth: bool,
        pub external_ref: Option<String>,
        pub created_at: DateTimeUtc,
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
