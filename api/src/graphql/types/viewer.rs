use async_graphql::{Context, Enum, ID, Object};
use entity::{clinics, staff};

use super::ActorKind;
use crate::graphql::scalars::DateTime;
use crate::{
    auth::{Actor, Permission, Principal},
    domain,
    graphql::context::ContextExt,
    ids::IdKind,
};

/// The caller: which clinic, who, and what they may do.
pub struct Viewer(pub Principal);

#[Object]
impl Viewer {
    /// The clinic whose data the caller sees.
    async fn clinic(&self, ctx: &Context<'_>) -> async_graphql::Result<Clinic> {
        Ok(Clinic(
            domain::clinics::by_id(&ctx.store().db, self.0.clinic_id).await?,
        ))
    }

    /// A staff member or an API token.
    async fn kind(&self) -> ActorKind {
        ActorKind::parse(self.0.actor.kind())
    }

    /// The global id of the staff member or API token.
    async fn id(&self) -> Option<ID> {
        match self.0.actor {
            Actor::Staff(id) => Some(IdKind::Staff.encode(id).into()),
            Actor::ApiToken(id) => Some(IdKind::ApiToken.encode(id).into()),
            Actor::System => None,
        }
    }

    /// The staff member's or token's name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The staff member's role; null for API tokens.
    async fn role(&self) -> Option<StaffRole> {
        self.0.role.map(Into::into)
    }

    /// The signed-in staff member; null for API tokens.
    async fn staff(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffMember>> {
        match self.0.actor.staff_id() {
            Some(id) => Ok(ctx.loaders()?.staff.load_one(id).await?.map(StaffMember)),
            None => Ok(None),
        }
    }

    /// The permissions the caller holds (`patients:read`, …): an API token's
    /// scopes, or what a staff member's role allows.
    async fn scopes(&self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.0.can(*p))
            .map(Permission::scope)
            .collect()
    }
}

/// A clinic: the tenant whose data an API caller sees.
pub struct Clinic(pub clinics::Model);

#[Object]
impl Clinic {
    /// The clinic's global id.
    pub async fn id(&self) -> ID {
        IdKind::Clinic.encode(self.0.id).into()
    }

    /// The clinic's name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The clinic's short unique name (`glow`).
    async fn slug(&self) -> &str {
        &self.0.slug
    }

    /// IANA time zone, e.g. `America/Los_Angeles`.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }

    /// When and how often patients may be contacted.
    async fn outreach_policy(&self) -> super::OutreachPolicy {
        let (quiet, max_marketing_per_week, min_hours_between_contacts) =
            crate::domain::outreach::facts::policy_of(&self.0);
        super::OutreachPolicy(crate::domain::outreach::settings::Policy {
            quiet,
            max_marketing_per_week,
            min_hours_between_contacts,
        })
    }

    /// The draft message of every (follow-up kind, channel): the clinic's own
    /// where it set one, the default elsewhere.
    async fn outreach_templates(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> async_graphql::Result<Vec<super::OutreachTemplate>> {
        use crate::graphql::context::ContextExt;
        Ok(
            crate::domain::outreach::settings::templates_of(ctx.store(), ctx.principal()?)
                .await?
                .into_iter()
                .map(super::OutreachTemplate)
                .collect(),
        )
    }
}

/// A role of a staff member.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::auth::Role")]
pub enum StaffRole {
    /// Runs the clinic; may do everything.
    Owner,
    /// Manages pathways, staff, tokens and webhooks.
    Admin,
    /// Moves patients along and follows up.
    Coordinator,
    /// Treats patients.
    Practitioner,
    /// Sees journey maps and journeys, not contact details.
    Viewer,
}

/// A member of the clinic's staff.
pub struct StaffMember(pub staff::Model);

#[Object]
impl StaffMember {
    /// The staff member's global id.
    pub async fn id(&self) -> ID {
        IdKind::Staff.encode(self.0.id).into()
    }

    /// Full name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The staff member's role.
    async fn role(&self) -> async_graphql::Result<StaffRole> {
        Ok(domain::staff::role_of(&self.0)?.into())
    }

    /// Sign-in email; shown to the person themself and to those who manage staff.
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        let who = ctx.principal()?;
        if who.actor.staff_id() != Some(self.0.id) {
            domain::access::require(who, Permission::StaffManage, "staff emails")?;
        }
        Ok(&self.0.email)
    }

    /// True when the account is disabled and cannot sign in.
    async fn disabled(&self) -> bool {
        self.0.disabled_at.is_some()
    }

    /// When the account was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
}
