//! The ordered stages of a pathway.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub pathway_id: Uuid,
    /// Stable machine key, unique within the pathway (`consultation`).
    pub key: String,
    pub name: String,
    /// INQUIRY, INTAKE, CONSULTATION, TREATMENT, FOLLOW_UP, ONGOING_CARE or DISCHARGED.
    pub category: String,
    /// 0-based order within the pathway.
    pub position: i32,
    /// A journey longer than this in the stage is stalled.
    pub target_hours: Option<i32>,
    /// Entering a terminal stage completes the journey.
    pub terminal: bool,
    /// Days after entering this stage when a rebooking is due (e.g. 90 for
    /// injectables maintenance).
    pub rebook_after_days: Option<i32>,
    /// Days without any touchpoint after which an active journey here is
    /// won back.
    pub win_back_after_days: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
