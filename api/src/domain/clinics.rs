//! Clinics, as administered from the command line.
//!
//! These functions run before any principal exists (they create the first
//! ones), so they are the one place that touches `clinics` without a tenant
//! filter.

use chrono::{DateTime, Utc};
use entity::{api_tokens, clinics, event_sequences};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, now, validate,
    values::{Slug, TimeZone},
};
use crate::{auth::Permission, db::Db, ids};

/// Inserts a clinic with its event sequence counter at zero.
#[allow(clippy::disallowed_methods)] // clinics are the tenants themselves
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    clinic: &clinics::Model,
) -> DomainResult<()> {
    clinics::Entity::insert(clinic.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    event_sequences::Entity::insert(
        event_sequences::Model {
            clinic_id: clinic.id,
            last_sequence: 0,
        }
        .into_active_model(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Finds a clinic by its slug.
#[allow(clippy::disallowed_methods)] // clinics are the tenants themselves
pub async fn by_slug(db: &Db, slug: &str) -> DomainResult<Option<clinics::Model>> {
    Ok(clinics::Entity::find()
        .filter(clinics::Column::Slug.eq(slug))
        .one(db.conn())
        .await?)
}

/// Finds a clinic by id.
#[allow(clippy::disallowed_methods)] // clinics are the tenants themselves
pub async fn by_id(db: &Db, id: Uuid) -> DomainResult<clinics::Model> {
    clinics::Entity::find_by_id(id)
        .one(db.conn())
        .await?
        .ok_or(DomainError::not_found("clinic"))
}

/// Creates a clinic.
pub async fn create(
    db: &Db,
    name: &str,
    slug: &str,
    timezone: &str,
) -> DomainResult<clinics::Model> {
    let name = validate::required_text("name", name, 200)?;
    let slug: String = Slug::parse("slug", slug)?.into();
    let timezone = TimeZone::parse("timezone", timezone)?.name().to_string();
    if by_slug(db, &slug).await?.is_some() {
        return Err(DomainError::conflict_on(
            "slug",
            format!("a clinic with slug {slug:?} exists"),
        ));
    }
    let clinic = clinics::Model {
        id: ids::new_id(),
        name,
        slug,
        timezone,
        quiet_start: "21:00".into(),
        quiet_end: "08:00".into(),
        max_marketing_per_week: 1,
        min_hours_between_contacts: 24,
        created_at: now(),
    };
    let txn = db.begin_write().await?;
    insert(&*txn, &clinic).await?;
    txn.commit().await?;
    Ok(clinic)
}

/// Creates an API token for a clinic as the system and returns its secret,
/// which is not stored and cannot be shown again.
pub async fn create_token(
    db: &Db,
    clinic_id: Uuid,
    name: &str,
    permissions: &[Permission],
    expires_at: Option<DateTime<Utc>>,
) -> DomainResult<(api_tokens::Model, String)> {
    super::api_tokens::create_for_clinic(
        &super::Store::new(db.clone()),
        clinic_id,
        name,
        permissions,
        expires_at,
    )
    .await
}
