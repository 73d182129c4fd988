//! The NDJSON files of bulk exports, in parts: an export's file of one
//! resource type is its parts of that type in `part` order.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bulk_export_parts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub export_id: Uuid,
    /// The FHIR resource type of every line.
    pub resource_type: String,
    /// Its place in the file, from 0.
    pub part: i32,
    /// How many resources (lines) it holds.
    pub resources: i32,
    /// The lines, each ending in `\n`.
    pub ndjson: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
