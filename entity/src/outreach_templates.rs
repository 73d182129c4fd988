//! A clinic's own draft message for one (follow-up kind, channel).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outreach_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub kind: String,
    pub channel: String,
    /// With `{{givenName}}`, `{{clinicName}}`, `{{stageName}}`,
    /// `{{pathwayName}}`, `{{dueDate}}`.
    pub body: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
