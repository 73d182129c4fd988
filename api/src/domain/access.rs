//! What a caller may see and do: every permission check of the API, in one
//! style. A check names what was tried and the permission it needs, and a
//! refusal is `FORBIDDEN` with the message "<what> needs the <scope>
//! permission".
//!
//! - A patient's identity (name) shows with `patients:read` or
//!   `journeys:read`, so viewers can tell whose journey they look at.
//! - Contact details (email, phone, birth date, CRM id, tags, consent,
//!   source) need `patients:read`.
//! - Free text written about a patient (touchpoint summaries, feedback
//!   comments, notes, drop reasons) needs `patients:read`.

use super::{DomainError, DomainResult};
use crate::{
    auth::{Permission, Principal},
    ids::IdKind,
};

/// The caller needs `permission` to do `what`.
pub fn require(who: &Principal, permission: Permission, what: &str) -> DomainResult<()> {
    require_any(who, &[permission], what)
}

/// The caller needs one of `permissions` to do `what`.
pub fn require_any(who: &Principal, permissions: &[Permission], what: &str) -> DomainResult<()> {
    if permissions.iter().any(|p| who.can(*p)) {
        return Ok(());
    }
    let names: Vec<&str> = permissions.iter().map(|p| p.scope()).collect();
    Err(DomainError::Forbidden(format!(
        "{what} needs the {} permission",
        names.join(" or ")
    )))
}

/// May the caller see who a patient is?
pub fn patient_identity(who: &Principal) -> DomainResult<()> {
    require_any(
        who,
        &[Permission::PatientsRead, Permission::JourneysRead],
        "seeing patients",
    )
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

/// May the caller read records of `kind` (fetched by id with `node`)?
/// `None` when the kind cannot be fetched that way.
pub fn read_record(who: &Principal, kind: IdKind) -> Option<DomainResult<()>> {
    let needs = match kind {
        IdKind::Patient => Permission::PatientsRead,
        IdKind::Journey
        | IdKind::StageTransition
        | IdKind::Touchpoint
        | IdKind::Feedback
        | IdKind::FollowUp => Permission::JourneysRead,
        IdKind::Event => Permission::EventsRead,
        IdKind::WebhookEndpoint | IdKind::WebhookDelivery => Permission::WebhooksManage,
        // Anyone of the clinic may see its pathways, stages, rules and staff.
        IdKind::Pathway | IdKind::Stage | IdKind::FollowUpRule | IdKind::Staff => {
            return Some(Ok(()));
        }
        IdKind::Clinic | IdKind::ApiToken | IdKind::BulkExport => return None,
    };
    Some(require(
        who,
        needs,
        &format!("reading a {}", kind.type_name()),
    ))
}
