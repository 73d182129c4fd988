//! Clinics and their API tokens, as administered from the command line.
//!
//! These functions run before any principal exists (they create the first
//! ones), so they are the one place that touches `clinics` and `api_tokens`
//! without a tenant filter.

use chrono::{DateTime, Utc};
use entity::{api_tokens, clinics, event_sequences};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::{DomainError, DomainResult, now, validate};
use crate::{
    auth::{Actor, Permission, Principal, tokens},
    db::Db,
    ids,
};

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
    let slug = validate::key("slug", slug)?;
    let timezone = validate::required_text("timezone", timezone, 64)?;
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
        created_at: now(),
    };
    let txn = db.begin_write().await?;
    insert(&*txn, &clinic).await?;
    txn.commit().await?;
    Ok(clinic)
}

/// Creates an API token for a clinic and returns its secret, which is not
/// stored and cannot be shown again.
pub async fn create_token(
    db: &Db,
    clinic_id: Uuid,
    name: &str,
    permissions: &[Permission],
    expires_at: Option<DateTime<Utc>>,
) -> DomainResult<(api_tokens::Model, String)> {
    let name = validate::required_text("name", name, 200)?;
    let generated = tokens::generate();
    let mut scopes: Vec<&str> = permissions.iter().map(|p| p.scope()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let token = api_tokens::Model {
        id: ids::new_id(),
        clinic_id,
        name,
        prefix: generated.display_prefix.clone(),
        secret_hash: generated.hash.clone(),
        scopes: json!(scopes),
        created_by_staff_id: None,
        created_by_token_id: None,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_at: now(),
    };
    let txn = db.begin_write().await?;
    api_tokens::Entity::insert(token.clone().into_active_model())
        .exec_without_returning(&*txn)
        .await?;
    txn.commit().await?;
    Ok((token, generated.secret))
}

/// How often `last_used_at` is refreshed, so a busy token does not write on
/// every request.
const LAST_USED_GRANULARITY: chrono::Duration = chrono::Duration::minutes(1);

/// Resolves a bearer API token to its principal. `None` for anything that is
/// not a live token of some clinic: malformed, unknown, revoked or expired.
#[allow(clippy::disallowed_methods)] // the credential decides the tenant
pub async fn authenticate_token(db: &Db, secret: &str) -> DomainResult<Option<Principal>> {
    if !tokens::is_well_formed(secret) {
        return Ok(None);
    }
    let Some(token) = api_tokens::Entity::find()
        .filter(api_tokens::Column::SecretHash.eq(tokens::hash(secret)))
        .one(db.conn())
        .await?
    else {
        return Ok(None);
    };
    let now = now();
    if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    if token
        .last_used_at
        .is_none_or(|at| now - at > LAST_USED_GRANULARITY)
    {
        api_tokens::Entity::update_many()
            .col_expr(
                api_tokens::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(api_tokens::Column::Id.eq(token.id))
            .exec(db.conn())
            .await?;
    }
    Ok(Some(Principal {
        clinic_id: token.clinic_id,
        actor: Actor::ApiToken(token.id),
        permissions: super::api_tokens::scopes_of(&token).into_iter().collect(),
        name: token.name,
        role: None,
        session_id: None,
        request_id: None,
    }))
}
