//! What a caller may see: the rules behind field-level access, in one place.
//!
//! - A patient's identity (name) shows with `patients:read` or
//!   `journeys:read`, so viewers can tell whose journey they look at.
//! - Contact details (email, phone, birth date, CRM id, tags, consent,
//!   source) need `patients:read`.
//! - Free text written about a patient (touchpoint summaries, feedback
//!   comments, notes, drop reasons) needs `patients:read`.

use super::{DomainError, DomainResult};
use crate::auth::{Permission, Principal};

/// The caller needs `permission` to do `what`.
pub fn require(who: &Principal, permission: Permission, what: &str) -> DomainResult<()> {
    if who.can(permission) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!(
            "{what} needs the {} permission",
            permission.scope()
        )))
    }
}

/// May the caller see who a patient is?
pub fn patient_identity(who: &Principal) -> DomainResult<()> {
    if who.can(Permission::PatientsRead) || who.can(Permission::JourneysRead) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "patients need the patients:read or journeys:read permission".into(),
        ))
    }
}

/// May the caller see a patient's contact details?
pub fn contact_details(who: &Principal) -> DomainResult<()> {
    require(who, Permission::PatientsRead, "contact details")
}

/// May the caller read what was written about a patient?
pub fn free_text(who: &Principal) -> DomainResult<()> {
    require(
        who,
        Permission::PatientsRead,
        "summaries, comments and notes",
    )
}
