//! Staff sign-in: sessions with short-lived access tokens and rotating
//! refresh tokens, the throttle on sign-in attempts, and resolving an access
//! token back to its principal.

use std::{net::IpAddr, num::NonZeroU32, time::Duration as StdDuration};

use chrono::{DateTime, Utc};
use entity::{refresh_tokens, staff, staff_sessions};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    DomainError, DomainResult, Store, clinics, now,
    staff::{revoke_sessions, role_of},
};
use crate::{
    audit::AuditEntry,
    auth::{
        Actor, Principal,
        credentials::{Credential, Resolved},
        jwt::JwtKeys,
        passwords, tokens,
    },
    db::{Db, statement},
    ids::{self, IdKind},
};

/// A signed-in session's credentials.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub staff: staff::Model,
}

/// Sign-in attempts: a few per minute per account and per address, so
/// passwords cannot be guessed at speed.
pub struct LoginThrottle {
    accounts: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    addresses: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    clock: DefaultClock,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("positive"));
        Self {
            accounts: RateLimiter::keyed(per_minute(10)),
            addresses: RateLimiter::keyed(per_minute(30)),
            clock: DefaultClock::default(),
        }
    }
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginThrottle")
    }
}

impl LoginThrottle {
    /// Forgets accounts and addresses whose attempts have all expired: the
    /// keys are whatever callers send, so they must not pile up.
    pub fn forget_idle(&self) {
        self.accounts.retain_recent();
        self.accounts.shrink_to_fit();
        self.addresses.retain_recent();
        self.addresses.shrink_to_fit();
    }

    /// Counts one attempt; `RATE_LIMITED` with the wait when too many were made.
    fn attempt(&self, account: &str, address: Option<IpAddr>) -> DomainResult<()> {
        let wait = |not_until: governor::NotUntil<_>| -> StdDuration {
            not_until.wait_time_from(self.clock.now())
        };
        if let Err(not_until) = self.accounts.check_key(&account.to_lowercase()) {
            return Err(DomainError::RateLimited {
                message: "too many sign-in attempts for this account; wait and try again".into(),
                retry_after: wait(not_until),
            });
        }
        if let Some(address) = address
            && let Err(not_until) = self.addresses.check_key(&address)
        {
            return Err(DomainError::RateLimited {
                message: "too many sign-in attempts from this address; wait and try again".into(),
                retry_after: wait(not_until),
            });
        }
        Ok(())
    }
}

/// Who is signing in, as they typed it.
#[derive(Debug, Clone)]
pub struct SignIn<'a> {
    pub clinic: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    /// Where the attempt comes from, for the throttle.
    pub address: Option<IpAddr>,
    pub request_id: Option<String>,
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
    throttle: &LoginThrottle,
    attempt: SignIn<'_>,
) -> DomainResult<Session> {
    let SignIn {
        clinic: clinic_slug,
        email,
        password,
        address,
        request_id,
    } = attempt;
    throttle.attempt(&format!("{}/{}", clinic_slug.trim(), email.trim()), address)?;
    let refused = || DomainError::SignInRefused;
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
        revoke_sessions(&mut write, None, Some(session.id), "refresh token reuse").await?;
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
    revoke_sessions(&mut write, None, Some(session), "logout").await?;
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
/// and its session and account must still be live (one statement, or none
/// for a session resolved moments ago: [`Db::credentials`]).
pub async fn authenticate(db: &Db, keys: &JwtKeys, token: &str) -> DomainResult<Option<Principal>> {
    let Ok(claims) = keys.verify(token) else {
        return Ok(None);
    };
    let credential = Credential::Session {
        session: claims.sid,
        staff: claims.sub,
        clinic: claims.cid,
    };
    let cache = db.credentials();
    if let Some(known) = cache.get(&credential, now()) {
        return Ok(Some(known.principal));
    }
    let generation = cache.generation();
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
    let principal = staff_principal(&member, Some(claims.sid))?;
    let resolved = Resolved {
        principal: principal.clone(),
        expires_at: Some(expires),
        last_used_at: None,
    };
    cache.keep(credential, resolved, generation);
    Ok(Some(principal))
}
