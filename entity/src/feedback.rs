//! What patients said: NPS, CSAT, CES scores and comments.
use sea_orm::entity::prelude::*;

model_decoded_by_position! {
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub clinic_id: Uuid,
        pub patient_id: Uuid,
        pub journey_id: Option<Uuid>,
        pub stage_id: Option<Uuid>,
        pub touchpoint_id: Option<Uuid>,
        pub staff_id: Option<Uuid>,
        /// NPS, CSAT, CES or COMMENT.
        pub kind: String,
        pub score: Option<i16>,
        pub comment: Option<String>,
        pub submitted_at: DateTimeUtc,
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
