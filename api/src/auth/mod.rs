//! Who is calling: principals, permissions and credentials.
//!
//! A [`Principal`] is resolved once per request (from the `Authorization`
//! header or the WebSocket `connection_init` payload) and travels with it.
//! Everything that reads or writes a clinic's rows takes it.

pub mod tokens;

use std::collections::BTreeSet;

use uuid::Uuid;

/// What a credential may do. API tokens carry a set of these; staff get them
/// from their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    PatientsRead,
    PatientsWrite,
    JourneysRead,
    JourneysWrite,
    FeedbackWrite,
    AnalyticsRead,
    EventsRead,
    WebhooksManage,
    PathwaysManage,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 9] = [
        Permission::PatientsRead,
        Permission::PatientsWrite,
        Permission::JourneysRead,
        Permission::JourneysWrite,
        Permission::FeedbackWrite,
        Permission::AnalyticsRead,
        Permission::EventsRead,
        Permission::WebhooksManage,
        Permission::PathwaysManage,
    ];

    /// The scope string of an API token that grants this permission.
    pub fn scope(self) -> &'static str {
        match self {
            Permission::PatientsRead => "patients:read",
            Permission::PatientsWrite => "patients:write",
            Permission::JourneysRead => "journeys:read",
            Permission::JourneysWrite => "journeys:write",
            Permission::FeedbackWrite => "feedback:write",
            Permission::AnalyticsRead => "analytics:read",
            Permission::EventsRead => "events:read",
            Permission::WebhooksManage => "webhooks:manage",
            Permission::PathwaysManage => "pathways:manage",
        }
    }

    /// Parses a scope string.
    pub fn from_scope(scope: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.scope() == scope)
    }
}

/// Who acts: recorded on transitions, touchpoints and (later) the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in clinic user.
    Staff(Uuid),
    /// A partner or integration calling with an API token.
    ApiToken(Uuid),
    /// Journeymap itself (sweepers, seeding).
    System,
}

impl Actor {
    /// `STAFF`, `API_TOKEN` or `SYSTEM`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Staff(_) => "STAFF",
            Actor::ApiToken(_) => "API_TOKEN",
            Actor::System => "SYSTEM",
        }
    }

    pub fn id(&self) -> Option<Uuid> {
        match self {
            Actor::Staff(id) | Actor::ApiToken(id) => Some(*id),
            Actor::System => None,
        }
    }

    /// The staff member, when a person acts.
    pub fn staff_id(&self) -> Option<Uuid> {
        match self {
            Actor::Staff(id) => Some(*id),
            _ => None,
        }
    }
}

/// The authenticated caller of one request: a clinic, an actor and what the
/// actor may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub clinic_id: Uuid,
    pub actor: Actor,
    /// A display name: the token's or the staff member's name.
    pub name: String,
    pub permissions: BTreeSet<Permission>,
}

impl Principal {
    /// Journeymap itself acting inside one clinic with every permission.
    pub fn system(clinic_id: Uuid) -> Self {
        Self {
            clinic_id,
            actor: Actor::System,
            name: "journeymap".into(),
            permissions: Permission::ALL.into_iter().collect(),
        }
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}
