//! Who is calling: principals, permissions and credentials.
//!
//! A [`Principal`] is resolved once per request (from the `Authorization`
//! header or the WebSocket `connection_init` payload) and travels with it.
//! Everything that reads or writes a clinic's rows takes it.

pub mod credentials;
pub mod jwt;
pub mod passwords;
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
    StaffManage,
    TokensManage,
    AuditRead,
    PrivacyManage,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 13] = [
        Permission::PatientsRead,
        Permission::PatientsWrite,
        Permission::JourneysRead,
        Permission::JourneysWrite,
        Permission::FeedbackWrite,
        Permission::AnalyticsRead,
        Permission::EventsRead,
        Permission::WebhooksManage,
        Permission::PathwaysManage,
        Permission::StaffManage,
        Permission::TokensManage,
        Permission::AuditRead,
        Permission::PrivacyManage,
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
            Permission::StaffManage => "staff:manage",
            Permission::TokensManage => "tokens:manage",
            Permission::AuditRead => "audit:read",
            Permission::PrivacyManage => "privacy:manage",
        }
    }

    /// Parses a scope string.
    pub fn from_scope(scope: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.scope() == scope)
    }

    /// Reads scope names (surrounding spaces ignored); `Err` names the index
    /// of the first unknown one and says which scopes exist.
    pub fn parse_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<Self>, (usize, String)> {
        scopes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.as_ref();
                Self::from_scope(s.trim()).ok_or_else(|| {
                    (
                        i,
                        format!(
                            "unknown scope {s:?}; known scopes: {}",
                            Self::ALL.map(Self::scope).join(", ")
                        ),
                    )
                })
            })
            .collect()
    }
}

/// A staff member's role. Each grants a fixed set of permissions (the
/// permission matrix in the README); the order is the order of authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Practitioner,
    Coordinator,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Coordinator,
        Role::Practitioner,
        Role::Viewer,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Coordinator => "COORDINATOR",
            Role::Practitioner => "PRACTITIONER",
            Role::Viewer => "VIEWER",
        }
    }

    /// Parses the stored (or command-line, any case) spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text))
    }

    /// What the role may do.
    pub fn permissions(self) -> BTreeSet<Permission> {
        use Permission::*;
        let list: &[Permission] = match self {
            Role::Owner | Role::Admin => &Permission::ALL,
            Role::Coordinator => &[
                PatientsRead,
                PatientsWrite,
                JourneysRead,
                JourneysWrite,
                FeedbackWrite,
                AnalyticsRead,
            ],
            Role::Practitioner => &[
                PatientsRead,
                JourneysRead,
                JourneysWrite,
                FeedbackWrite,
                AnalyticsRead,
            ],
            Role::Viewer => &[JourneysRead, AnalyticsRead],
        };
        list.iter().copied().collect()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts: recorded on transitions, touchpoints and (later) the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The staff member's role; `None` for tokens and the system.
    pub role: Option<Role>,
    /// The staff member's session (refresh-token family), when signed in.
    pub session_id: Option<Uuid>,
    /// The request this principal acts in, for the audit log.
    pub request_id: Option<String>,
}

impl Principal {
    /// Journeymap itself acting inside one clinic with every permission.
    pub fn system(clinic_id: Uuid) -> Self {
        Self {
            clinic_id,
            actor: Actor::System,
            name: "journeymap".into(),
            permissions: Permission::ALL.into_iter().collect(),
            role: None,
            session_id: None,
            request_id: None,
        }
    }

    /// The same principal, acting in request `request_id`.
    pub fn in_request(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}
