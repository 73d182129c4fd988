//! The tenant: one clinic (or clinic group).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clinics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    #[sea_orm(unique)]
    pub slug: String,
    /// IANA time zone name, e.g. `America/New_York`.
    pub timezone: String,
    /// Local `HH:MM` from which nobody is contacted (default 21:00).
    pub quiet_start: String,
    /// Local `HH:MM` until which nobody is contacted (default 08:00).
    pub quiet_end: String,
    /// Marketing messages one patient gets in 7 days at most.
    pub max_marketing_per_week: i32,
    /// Hours between two outreach contacts, unless the patient wrote in.
    pub min_hours_between_contacts: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
