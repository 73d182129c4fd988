//! Staff: accounts and the roles that decide what each person may do.
//! Signing in is [`super::sessions`].

use entity::{staff, staff_sessions};
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, validate, values::Email};
use crate::audit::AuditEntry;
use crate::{
    auth::{Actor, Permission, Principal, Role, passwords},
    ids::{self, IdKind},
};

/// A new staff member as an admin (or the command line) describes them.
#[derive(Debug, Clone)]
pub struct NewStaff {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// When absent, a temporary password is generated and returned once.
    pub password: Option<String>,
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
    let email: String = Email::parse("email", &new.email)?.into();
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
        revoke_sessions(&mut write, Some(staff_id), None, "staff disabled").await?;
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

/// Ends the open sessions of `staff_id`, or session `session_id`, with the
/// change in `write`; every replica stops accepting their access tokens.
pub(super) async fn revoke_sessions(
    write: &mut super::Write<'_>,
    staff_id: Option<Uuid>,
    session_id: Option<Uuid>,
    reason: &str,
) -> DomainResult<()> {
    write.credentials_changed();
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

/// Creates a staff member from the command line, as the system.
pub async fn create_from_cli(
    store: &Store,
    clinic: Uuid,
    new: NewStaff,
) -> DomainResult<(staff::Model, Option<String>)> {
    create(store, &Principal::system(clinic), new).await
}

/// Gives the staff member of `clinic` with `email` a fresh temporary password,
/// as the system, and returns it (shown once): the sign-in `serve --demo`
/// prints. Their open sessions end.
pub async fn reset_password_from_cli(
    store: &Store,
    clinic: Uuid,
    email: &str,
) -> DomainResult<String> {
    let who = Principal::system(clinic);
    let email: String = Email::parse("email", email)?.into();
    let password = temporary_password();
    let plain = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || passwords::hash(&plain))
        .await
        .map_err(DomainError::internal)?;
    let mut write = store.write(&who).await?;
    let member = who
        .select::<staff::Entity>()
        .filter(staff::Column::Email.eq(email.as_str()))
        .one(&*write.txn)
        .await?
        .ok_or_else(|| DomainError::not_found("staff member"))?;
    who.update_rows::<staff::Entity>()
        .col_expr(staff::Column::PasswordHash, Expr::value(password_hash))
        .filter(staff::Column::Id.eq(member.id))
        .exec(&*write.txn)
        .await?;
    revoke_sessions(&mut write, Some(member.id), None, "password reset").await?;
    write.audit(AuditEntry::new(
        "staff.password_reset",
        IdKind::Staff,
        member.id,
        None,
    ));
    write.commit().await?;
    Ok(password)
}
