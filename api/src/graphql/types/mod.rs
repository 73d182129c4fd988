//! GraphQL output types. Each wraps an entity row and resolves relations
//! through the request's loaders.

mod access;
mod enums;
mod event;
mod feedback;
mod follow_up;
mod journey;
mod journey_map;
mod node;
mod outreach;
mod pathway;
mod patient;
mod timeline;
mod touchpoint;
mod viewer;
mod webhook_endpoint;

pub use access::{ApiToken, AuditEntry};
pub use enums::*;
pub use event::JourneyEvent;
pub use feedback::Feedback;
pub use follow_up::FollowUp;
pub use journey::{Journey, StageTransition};
pub use journey_map::JourneyMap;
pub use node::Node;
pub use outreach::{ConsentRecord, ContactPreferences, OutreachPolicy, OutreachTemplate};
pub use pathway::{FollowUpRule, Pathway, Stage};
pub use patient::Patient;
pub use timeline::TimelineEntry;
pub use touchpoint::Touchpoint;
pub use viewer::{StaffMember, StaffRole, Viewer};
pub use webhook_endpoint::{WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint};
