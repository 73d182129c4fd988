//! "When a journey enters this stage, follow up after N hours by channel C."
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "follow_up_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub stage_id: Uuid,
    pub delay_hours: i32,
    pub channel: String,
    /// What the follow-up is for, shown to the coordinator.
    pub note: Option<String>,
    /// Cancel the follow-up if the journey leaves the stage before it is done.
    pub cancel_on_stage_exit: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
