//! The rules of Journeymap, one module per aggregate.
//!
//! Every write happens here, in one transaction, together with its outbox
//! events ([`crate::events::Outbox`]). Every read and write of a clinic's rows
//! goes through [`tenant::Tenant`], which adds the caller's clinic filter.
//! Nothing in this layer knows about GraphQL or HTTP.

pub mod access;
pub mod api_tokens;
pub mod audit;
pub mod clinics;
pub mod error;
pub mod feedback;
pub mod follow_ups;
pub mod idempotency;
pub mod journeys;
pub mod kinds;
pub mod page;
pub mod pathways;
pub mod patients;
pub mod settings;
pub mod staff;
pub mod store;
pub mod tenant;
pub mod timeline;
pub mod touchpoints;
pub mod validate;
pub mod webhooks;

pub use error::{DomainError, DomainResult};
pub use kinds::*;
pub use store::{Store, Write};

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision both databases keep (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
