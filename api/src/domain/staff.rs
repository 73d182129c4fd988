//! Staff: accounts, sign-in sessions with rotating refresh tokens, and the
//! roles that decide what each person may do.

use chrono::{DateTime, Utc};
use entity::{refresh_tokens, staff, staff_sessions};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, audit::AuditEntry, clinics, now, validate};
use crate::{
    auth::{Actor, Permission, Principal, Role, jwt::JwtKeys, passwords, tokens},
    db::{Db, statement},
    ids::{self, IdKind},
};

/// How long a signed-in session lasts at most, refreshes included, unless
/// the server is configured otherwise ([`JwtKeys::session_ttl`]).
pub const SESSION_DAYS: i64 = 30;

/// A new staff member as an admin (or the command line) describes them.
#[derive(Debug, Clone)]
pub struct NewStaff {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// When absent, a temporary password is generated and returned once.
    pub password: Option<String>,
}

/// A signed-in session's credentials.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub staff: staff::Model,
}

fn check_password(field: &str, password: &str) -> DomainResult<()> {
    let length = password.chars().count();
    if length < passwords::MIN_LENGTH {
        return Err(DomainError::invalid(
            field,
            format!("must be at least {} characters", passwords::MIN_LENGTH),
        ));
    }
    if length > 256 {
        return Err(DomainError::invalid(
            field,
            "must be at most 256 characters",
        ));
    }
    Ok(())
}

fn temporary_password() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// The role of a stored staff row.
pub fn role_of(member: &staff::Model) -> DomainResult<Role> {
    Role::parse(&member.role)
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("unknown role {:?}", member.role)))
}

/// Nobody hands out more authority than they hold.
fn may_grant(who: &Principal, role: Role) -> bool {
    match (who.actor, who.role) {
        (Actor::System, _) => true,
        (_, Some(own)) => role <= own,
        // A token with staff:manage acts for an admin.
        (_, None) => role <= Role::Admin,
    }
}

/// Creates a staff member; returns them and, when no password was given, the
/// temporary password (shown once).
pub async fn create(
    store: &Store,
    who: &Principal,
    new: NewStaff,
) -> DomainResult<(staff::Model, Option<String>)> {
    super::access::require(who, Permission::StaffManage, "managing staff")?;
    if !may_grant(who, new.role) {
        return Err(DomainError::Forbidden(format!(
            "you cannot create a staff member with the {} role",
            new.role
        )));
    }
    let email = validate::email("email", &new.email)?;
    let name = validate::required_text("name", &new.name, 200)?;
    let (password, temporary) = match new.password {
        Some(password) => {
            check_password("password", &password)?;
            (password, None)
        }
        None => {
            let password = temporary_password();
            (password.clone(), Some(password))
        }
    };
    // Hashing takes tens of milliseconds of CPU: off the runtime, and before
    // the transaction (on SQLite it holds the one write gate).
    let password_hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(DomainError::internal)?;
    let mut write = store.write(who).await?;
    let taken = who
        .select::<staff::Entity>()
        .filter(staff::Column::Email.eq(email.as_str()))
        .count(&*write.txn)
        .await?;
    if taken > 0 {
        return Err(DomainError::conflict_on(
            "email",
            format!("a staff member with email {email:?} exists"),
        ));
    }
    let member = staff::Model {
        id: ids::new_id(),
        clinic_id: who.clinic_id,
        email,
        name,
        role: new.role.as_str().to_string(),
        password_hash: Some(password_hash),
        disabled_at: None,
        created_at: write.now,
    };
    staff::Entity::insert(member.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    write.audit(AuditEntry::new(
        "staff.created",
        IdKind::Staff,
        member.id,
        None,
    ));
    write.commit().await?;
    Ok((member, temporary))
}

/// The clinic's staff, by name.
pub async fn list(store: &Store, who: &Principal) -> DomainResult<Vec<staff::Model>> {
    Ok(who
        .select::<staff::Entity>()
        .order_by_asc(staff::Column::Name)
        .order_by_asc(staff::Column::Id)
        .all(store.db.conn())
        .await?)
}

/// Disables (or re-enables) a staff member; disabling ends their sessions.
pub async fn set_disabled(
    store: &Store,
    who: &Principal,
    staff_id: Uuid,
    disabled: bool,
) -> DomainResult<staff::Model> {
    super::access::require(who, Permission::StaffManage, "managing staff")?;
    if who.actor.staff_id() == Some(staff_id) {
        return Err(DomainError::invalid(
            "staffId",
            "you cannot disable yourself",
        ));
    }
    let mut write = store.write(who).await?;
    let mut member = who
        .get::<staff::Entity, _>(&*write.txn, staff_id, "staff member")
        .await
        .map_err(|e| e.referenced_by("staffId"))?;
    if !may_grant(who, role_of(&member)?) {
        return Err(DomainError::Forbidden(
            "you cannot change a staff member with more authority".into(),
        ));
    }
    member.disabled_at = if disabled { Some(write.now) } else { None };
    who.update_rows::<staff::Entity>()
        .col_expr(staff::Column::DisabledAt, Expr::value(member.disabled_at))
        .filter(staff::Column::Id.eq(staff_id))
        .exec(&*write.txn)
        .await?;
    if disabled {
        revoke_sessions(&write, Some(staff_id), None, "staff disabled").await?;
    }
    write.audit(AuditEntry::new(
        if disabled {
            "staff.disabled"
        } else {
            "staff.enabled"
        },
        IdKind::Staff,
        staff_id,
        None,
    ));
    write.commit().await?;
    Ok(member)
}

async fn revoke_sessions(
    write: &super::Write<'_>,
    staff_id: Option<Uuid>,
    session_id: Option<Uuid>,
    reason: &str,
) -> DomainResult<()> {
    let mut update = write
        .who
        .update_rows::<staff_sessions::Entity>()
        .col_expr(staff_sessions::Column::RevokedAt, Expr::value(write.now))
        .col_expr(staff_sessions::Column::RevokedReason, Expr::value(reason))
        .filter(staff_sessions::Column::RevokedAt.is_null());
    if let Some(staff_id) = staff_id {
        update = update.filter(staff_sessions::Column::StaffId.eq(staff_id));
    }
    if let Some(session_id) = session_id {
        update = update.filter(staff_sessions::Column::Id.eq(session_id));
    }
    update.exec(&*write.txn).await?;
    Ok(())
}

fn staff_principal(member: &staff::Model, session: Option<Uuid>) -> DomainResult<Principal> {
    let role = role_of(member)?;
    Ok(Principal {
        clinic_id: member.clinic_id,
        actor: Actor::Staff(member.id),
        name: member.name.clone(),
        permissions: role.permissions(),
        role: Some(role),
        session_id: session,
        request_id: None,
    })
}

async fn issue_refresh(
    write: &super::Write<'_>,
    session: &staff_sessions::Model,
) -> DomainResult<String> {
    let (token, hash) = tokens::generate_refresh();
    let row = refresh_tokens::Model {
        id: ids::new_id(),
        clinic_id: session.clinic_id,
        session_id: session.id,
        token_hash: hash,
        created_at: write.now,
        expires_at: session.expires_at,
        used_at: None,
    };
    refresh_tokens::Entity::insert(row.into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    Ok(token)
}

/// Signs a staff member in with clinic slug, email and password. Every
/// failure reads the same, so the answer tells nothing about which part was
/// wrong.
pub async fn login(
    store: &Store,
    keys: &JwtKeys,
    clinic_slug: &str,
    email: &str,
    password: &str,
    request_id: Option<String>,
) -> DomainResult<Session> {
    let refused = || DomainError::Unauthenticated;
    let clinic = clinics::by_slug(&store.db, clinic_slug.trim()).await?;
    let email = email.trim().to_lowercase();
    let member = match &clinic {
        Some(clinic) => {
            let system = Principal::system(clinic.id);
            system
                .select::<staff::Entity>()
                .filter(staff::Column::Email.eq(email.as_str()))
                .one(store.db.conn())
                .await?
        }
        None => None,
    };
    let hash = member.as_ref().and_then(|m| m.password_hash.as_deref());
    // Always verify (against a dummy hash when there is no account): equal timing.
    let verified = tokio::task::spawn_blocking({
        let password = password.to_string();
        let hash = hash.map(str::to_string);
        move || passwords::verify(&password, hash.as_deref())
    })
    .await
    .map_err(DomainError::internal)?;
    let member = match member {
        Some(member) if verified && member.disabled_at.is_none() => member,
        _ => return Err(refused()),
    };
    let mut who = staff_principal(&member, None)?;
    who.request_id = request_id;
    let mut write = store.write(&who).await?;
    let session = staff_sessions::Model {
        id: ids::new_id(),
        clinic_id: member.clinic_id,
        staff_id: member.id,
        created_at: write.now,
        last_refreshed_at: write.now,
        expires_at: write.now + keys.session_ttl,
        revoked_at: None,
        revoked_reason: None,
    };
    staff_sessions::Entity::insert(session.clone().into_active_model())
        .exec_without_returning(&*write.txn)
        .await?;
    let refresh_token = issue_refresh(&write, &session).await?;
    write.audit(AuditEntry::new(
        "session.started",
        IdKind::Staff,
        member.id,
        None,
    ));
    let (access_token, access_expires) =
        keys.issue(member.clinic_id, member.id, session.id, write.now);
    write.commit().await?;
    Ok(Session {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: session.expires_at,
        staff: member,
    })
}

/// Exchanges a refresh token for a new access token and a new refresh token.
/// A refresh token works once: presenting a used one again means it was
/// stolen, so the whole session is revoked.
#[allow(clippy::disallowed_methods)] // the refresh token decides the tenant
pub async fn refresh(
    store: &Store,
    keys: &JwtKeys,
    token: &str,
    request_id: Option<String>,
) -> DomainResult<Session> {
    let refused = || DomainError::Unauthenticated;
    if !token.starts_with(tokens::REFRESH_PREFIX) {
        return Err(refused());
    }
    let Some(presented) = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(tokens::hash(token)))
        .one(store.db.conn())
        .await?
    else {
        return Err(refused());
    };
    let system = Principal::system(presented.clinic_id);
    let session = system
        .get::<staff_sessions::Entity, _>(store.db.conn(), presented.session_id, "session")
        .await
        .map_err(|_| refused())?;
    let member = system
        .get::<staff::Entity, _>(store.db.conn(), session.staff_id, "staff member")
        .await
        .map_err(|_| refused())?;
    let mut who = staff_principal(&member, Some(session.id))?;
    who.request_id = request_id;
    let mut write = store.write(&who).await?;
    let now = write.now;
    let claimed = who
        .update_rows::<refresh_tokens::Entity>()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
        .filter(refresh_tokens::Column::Id.eq(presented.id))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .exec(&*write.txn)
        .await?;
    if claimed.rows_affected == 0 {
        // Re-use of a rotated token: end the session everywhere.
        revoke_sessions(&write, None, Some(session.id), "refresh token reuse").await?;
        write.audit(AuditEntry::new(
            "session.reuse_detected",
            IdKind::Staff,
            member.id,
            None,
        ));
        write.commit().await?;
        tracing::warn!(staff = %member.id, session = %session.id, "refresh token reuse: session revoked");
        return Err(refused());
    }
    if session.revoked_at.is_some()
        || session.expires_at <= now
        || presented.expires_at <= now
        || member.disabled_at.is_some()
    {
        return Err(refused());
    }
    who.update_rows::<staff_sessions::Entity>()
        .col_expr(staff_sessions::Column::LastRefreshedAt, Expr::value(now))
        .filter(staff_sessions::Column::Id.eq(session.id))
        .exec(&*write.txn)
        .await?;
    let refresh_token = issue_refresh(&write, &session).await?;
    let (access_token, access_expires) = keys.issue(member.clinic_id, member.id, session.id, now);
    write.commit().await?;
    Ok(Session {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: session.expires_at,
        staff: member,
    })
}

/// Ends the caller's session (or the session of `refresh_token`, which must
/// be the caller's own); its access tokens stop working at once.
pub async fn logout(
    store: &Store,
    who: &Principal,
    refresh_token: Option<&str>,
) -> DomainResult<()> {
    let session = match refresh_token {
        Some(token) => who
            .select::<refresh_tokens::Entity>()
            .filter(refresh_tokens::Column::TokenHash.eq(tokens::hash(token)))
            .one(store.db.conn())
            .await?
            .map(|t| t.session_id)
            .ok_or(DomainError::Unauthenticated)?,
        None => who.session_id.ok_or_else(|| {
            DomainError::invalid(
                "refreshToken",
                "give the refresh token of the session to end",
            )
        })?,
    };
    let mut write = store.write(who).await?;
    let owned = who
        .get::<staff_sessions::Entity, _>(&*write.txn, session, "session")
        .await
        .map_err(|_| DomainError::Unauthenticated)?;
    if who.actor.staff_id().is_some_and(|me| me != owned.staff_id) {
        return Err(DomainError::Forbidden(
            "you can only end your own session".into(),
        ));
    }
    revoke_sessions(&write, None, Some(session), "logout").await?;
    write.audit(AuditEntry::new(
        "session.ended",
        IdKind::Staff,
        owned.staff_id,
        None,
    ));
    write.commit().await?;
    Ok(())
}

/// Resolves a staff access token to its principal: the token must verify
/// and its session and account must still be live (one statement).
pub async fn authenticate(db: &Db, keys: &JwtKeys, token: &str) -> DomainResult<Option<Principal>> {
    let Ok(claims) = keys.verify(token) else {
        return Ok(None);
    };
    let row = db
        .conn()
        .query_one_raw(statement(
            db.backend(),
            "SELECT s.id, s.clinic_id, s.email, s.name, s.role, s.password_hash, s.disabled_at, s.created_at, \
                    x.revoked_at AS session_revoked_at, x.expires_at AS session_expires_at \
             FROM staff s JOIN staff_sessions x ON x.staff_id = s.id \
             WHERE s.id = ? AND s.clinic_id = ? AND x.id = ?",
            vec![claims.sub.into(), claims.cid.into(), claims.sid.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let revoked: Option<DateTime<Utc>> = row.try_get("", "session_revoked_at")?;
    let expires: DateTime<Utc> = row.try_get("", "session_expires_at")?;
    let member = staff::Model {
        id: row.try_get("", "id")?,
        clinic_id: row.try_get("", "clinic_id")?,
        email: row.try_get("", "email")?,
        name: row.try_get("", "name")?,
        role: row.try_get("", "role")?,
        password_hash: None,
        disabled_at: row.try_get("", "disabled_at")?,
        created_at: row.try_get("", "created_at")?,
    };
    if revoked.is_some() || expires <= now() || member.disabled_at.is_some() {
        return Ok(None);
    }
    staff_principal(&member, Some(claims.sid)).map(Some)
}

/// Creates a staff member from the command line, as the system.
pub async fn create_from_cli(
    store: &Store,
    clinic: Uuid,
    new: NewStaff,
) -> DomainResult<(staff::Model, Option<String>)> {
    create(store, &Principal::system(clinic), new).await
}
