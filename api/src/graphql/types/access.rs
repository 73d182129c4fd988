use async_graphql::{Context, ID, Object, SimpleObject};
use entity::{api_tokens, audit_log};

use super::{ActorKind, StaffMember};
use crate::{
    domain::api_tokens::scopes_of,
    graphql::{context::ContextExt, scalars::DateTime},
    ids::IdKind,
};

/// A partner API token. The secret is shown only when the token is created.
pub struct ApiToken(pub api_tokens::Model);

#[Object]
impl ApiToken {
    /// The token's global id.
    pub async fn id(&self) -> ID {
        IdKind::ApiToken.encode(self.0.id).into()
    }

    /// What the token is for.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The first characters of the secret, to recognise it (`jm_AbCd1234`).
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// What the token may do (`patients:read`, …).
    async fn scopes(&self) -> Vec<&'static str> {
        scopes_of(&self.0).into_iter().map(|p| p.scope()).collect()
    }

    /// The staff member who created it, if a person did.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match self.0.created_by_staff_id {
            None => Ok(None),
            Some(id) => Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember)),
        }
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// When it stops working; never when null.
    async fn expires_at(&self) -> Option<DateTime> {
        self.0.expires_at.map(DateTime)
    }

    /// When it was last used (to the minute).
    async fn last_used_at(&self) -> Option<DateTime> {
        self.0.last_used_at.map(DateTime)
    }

    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime> {
        self.0.revoked_at.map(DateTime)
    }
}

/// One entry of the audit log.
pub struct AuditEntry(pub audit_log::Model);

/// A record an audit entry is about.
#[derive(SimpleObject)]
pub struct AuditRecord {
    /// The record's type, such as `Patient`.
    pub kind: String,
    /// The record's global id.
    pub id: Option<ID>,
}

#[Object]
impl AuditEntry {
    /// What was done: `patient.read`, `patient.updated`, `journey.stage_changed`, `api_token.created`, …
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// A staff member, an API token or Journeymap itself.
    async fn actor_kind(&self) -> ActorKind {
        ActorKind::parse(&self.0.actor_kind)
    }

    /// The global id of the staff member or token.
    async fn actor_id(&self) -> Option<ID> {
        let kind = match ActorKind::parse(&self.0.actor_kind) {
            ActorKind::Staff => IdKind::Staff,
            ActorKind::ApiToken => IdKind::ApiToken,
            ActorKind::System => return None,
        };
        self.0.actor_id.map(|id| kind.encode(id).into())
    }

    /// The staff member, when a person acted.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match (ActorKind::parse(&self.0.actor_kind), self.0.actor_id) {
            (ActorKind::Staff, Some(id)) => {
                Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember))
            }
            _ => Ok(None),
        }
    }

    /// The record acted on.
    async fn record(&self) -> AuditRecord {
        let kind = self.0.record_kind.clone();
        let id = self
            .0
            .record_id
            .zip(IdKind::from_type_name(&kind))
            .map(|(id, k)| ID::from(k.encode(id)));
        AuditRecord { kind, id }
    }

    /// The patient the record belongs to; null for a read of several
    /// patients (see `patientIds`) unless read through one of them.
    async fn patient_id(&self) -> Option<ID> {
        self.0
            .patient_id
            .map(|id| IdKind::Patient.encode(id).into())
    }

    /// Every patient the entry is about: one for a change, all the patients
    /// a request read for a `patient.read` (one entry per request). Read
    /// through a patient (`Patient.accessLog`, `auditLog(filter:
    /// {patientId})`), `patientId` and `record` name that patient.
    async fn patient_ids(&self) -> Vec<ID> {
        crate::domain::audit_log::patients_of(&self.0)
            .into_iter()
            .map(|id| IdKind::Patient.encode(id).into())
            .collect()
    }

    /// The request it happened in (`x-request-id`).
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// When.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.occurred_at)
    }
}
