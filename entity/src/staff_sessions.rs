//! A staff member's signed-in session: the family of its refresh tokens.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "staff_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub staff_id: Uuid,
    pub created_at: DateTimeUtc,
    pub last_refreshed_at: DateTimeUtc,
    /// The session ends here even if refreshed.
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// `logout`, `refresh token reuse`, `staff disabled`, …
    pub revoked_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
