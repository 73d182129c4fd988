//! Partner API tokens, managed by admins and owners (or tokens with
//! `tokens:manage`): created with scopes no wider than the creator's own,
//! listed without their secrets, revoked with effect on the next request.

use chrono::{DateTime, Utc};
use entity::api_tokens;
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, Write, now, validate};
use crate::{audit::AuditEntry, db::Db};
use crate::{
    auth::{
        Actor, Permission, Principal,
        credentials::{Credential, Resolved},
        tokens,
    },
    ids::{self, IdKind},
};

fn require(who: &Principal) -> DomainResult<()> {
    super::access::require(who, Permission::TokensManage, "managing API tokens")
}

/// The scopes a stored token holds.
pub fn scopes_of(token: &api_tokens::Model) -> Vec<Permission> {
    let scopes: Vec<String> = serde_json::from_value(token.scopes.clone()).unwrap_or_default();
    scopes
        .iter()
        .filter_map(|s| Permission::from_scope(s))
        .collect()
}

/// Creates a token; returns it and its secret, which is shown only now.
pub async fn create(
    store: &Store,
    who: &Principal,
    name: &str,
    scopes: &[Permission],
    expires_at: Option<DateTime<Utc>>,
) -> DomainResult<(api_tokens::Model, String)> {
    require(who)?;
    let name = validate::required_text("name", name, 200)?;
    if scopes.is_empty() {
        return Err(DomainError::invalid("scopes", "give at least one scope"));
    }
    if let Some(beyond) = scopes.iter().find(|s| !who.can(**s)) {
        return Err(DomainError::Forbidden(format!(
            "you cannot grant {}: a token never gets more rights than its creator",
            beyond.scope()
        )));
    }
    let mut write = store.write(who).await?;
    if let Some(at) = expires_at
        && at <= write.now
    {
        return Err(DomainError::invalid("expiresAt", "must be in the future"));
    }
    let issued = issue(&mut write, name, scopes, expires_at).await?;
    write.commit().await?;
    Ok(issued)
}

/// Writes a new token of `write`'s clinic with `scopes`, and its audit
/// entry; returns it and its secret.
async fn issue(
    write: &mut Write<'_>,
    name: String,
    scopes: &[Permission],
    expires_at: Option<DateTime<Utc>>,
) -> DomainResult<(api_tokens::Model, String)> {
    let who = write.who;
    let generated = tokens::generate();
    let mut names: Vec<&str> = scopes.iter().map(|p| p.scope()).collect();
    names.sort_unstable();
    names.dedup();
    let token = api_tokens::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        name,
        prefix: generated.display_prefix.clone(),
        secret_hash: generated.hash.clone(),
        scopes: json!(names),
        created_by_staff_id: who.actor.staff_id(),
        created_by_token_id: match who.actor {
            Actor::ApiToken(id) => Some(id),
            _ => None,
        },
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_at: write.now,
    };
    api_tokens::Entity::insert(token.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "api_token.created",
        IdKind::ApiToken,
        token.id,
        None,
    ));
    Ok((token, generated.secret))
}

/// Creates a token for clinic `clinic_id` as the system (the command line,
/// which has no signed-in creator); returns it and its secret.
pub async fn create_for_clinic(
    store: &Store,
    clinic_id: Uuid,
    name: &str,
    scopes: &[Permission],
    expires_at: Option<DateTime<Utc>>,
) -> DomainResult<(api_tokens::Model, String)> {
    let name = validate::required_text("name", name, 200)?;
    if scopes.is_empty() {
        return Err(DomainError::invalid("scope", "give at least one scope"));
    }
    let system = Principal::system(clinic_id);
    let mut write = store.write(&system).await?;
    let issued = issue(&mut write, name, scopes, expires_at).await?;
    write.commit().await?;
    Ok(issued)
}

/// The clinic's tokens, newest first (secrets are never stored).
pub async fn list(store: &Store, who: &Principal) -> DomainResult<Vec<api_tokens::Model>> {
    require(who)?;
    Ok(who
        .select::<api_tokens::Entity>()
        .order_by_desc(api_tokens::Column::CreatedAt)
        .order_by_desc(api_tokens::Column::Id)
        .all(store.db.conn())
        .await?)
}

/// Revokes a token; its next request is refused.
pub async fn revoke(store: &Store, who: &Principal, id: Uuid) -> DomainResult<api_tokens::Model> {
    require(who)?;
    let mut write = store.write(who).await?;
    let mut token = who
        .get::<api_tokens::Entity, _>(&*write.txn, id, "API token")
        .await
        .map_err(|e| e.referenced_by("tokenId"))?;
    if token.revoked_at.is_none() {
        write.credentials_changed();
        token.revoked_at = Some(write.now);
        who.update_rows::<api_tokens::Entity>()
            .col_expr(api_tokens::Column::RevokedAt, Expr::value(token.revoked_at))
            .filter(api_tokens::Column::Id.eq(id))
            .exec(&*write.txn)
            .await?;
        write.audit(AuditEntry::new(
            "api_token.revoked",
            IdKind::ApiToken,
            id,
            None,
        ));
    }
    write.commit().await?;
    Ok(token)
}

/// How often `last_used_at` is refreshed, so a busy token does not write on
/// every request.
const LAST_USED_GRANULARITY: chrono::Duration = chrono::Duration::minutes(1);

/// Resolves a bearer API token to its principal. `None` for anything that is
/// not a live token of some clinic: malformed, unknown, revoked or expired.
/// A token resolved moments ago is answered from [`Db::credentials`].
#[allow(clippy::disallowed_methods)] // the credential decides the tenant
pub async fn authenticate(db: &Db, secret: &str) -> DomainResult<Option<Principal>> {
    if !tokens::is_well_formed(secret) {
        return Ok(None);
    }
    let secret_hash = tokens::hash(secret);
    let credential = Credential::ApiToken {
        secret_hash: secret_hash.clone(),
    };
    let now = now();
    let cache = db.credentials();
    if let Some(known) = cache.get(&credential, now) {
        if known
            .last_used_at
            .is_none_or(|at| now - at > LAST_USED_GRANULARITY)
        {
            cache.used(&credential, now);
            if let Actor::ApiToken(id) = known.principal.actor {
                record_use(db, id, now).await?;
            }
        }
        return Ok(Some(known.principal));
    }
    let generation = cache.generation();
    let Some(token) = api_tokens::Entity::find()
        .filter(api_tokens::Column::SecretHash.eq(secret_hash))
        .one(db.conn())
        .await?
    else {
        return Ok(None);
    };
    if token.revoked_at.is_some() || token.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let mut last_used_at = token.last_used_at;
    if last_used_at.is_none_or(|at| now - at > LAST_USED_GRANULARITY) {
        record_use(db, token.id, now).await?;
        last_used_at = Some(now);
    }
    let principal = Principal {
        clinic_id: token.clinic_id,
        actor: Actor::ApiToken(token.id),
        permissions: scopes_of(&token).into_iter().collect(),
        name: token.name,
        role: None,
        session_id: None,
        request_id: None,
    };
    let resolved = Resolved {
        principal: principal.clone(),
        expires_at: token.expires_at,
        last_used_at,
    };
    cache.keep(credential, resolved, generation);
    Ok(Some(principal))
}

#[allow(clippy::disallowed_methods)] // by the token's own id, which decided the tenant
async fn record_use(db: &Db, token: Uuid, now: DateTime<Utc>) -> DomainResult<()> {
    api_tokens::Entity::update_many()
        .col_expr(api_tokens::Column::LastUsedAt, Expr::value(now))
        .filter(api_tokens::Column::Id.eq(token))
        .exec(db.conn())
        .await?;
    Ok(())
}
