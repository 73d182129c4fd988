//! The rules of Journeymap, one module per aggregate.
//!
//! Every write happens here, in one transaction ([`Write`]), together with
//! its typed events ([`crate::events::Event`]). Every read and write of a
//! clinic's rows starts from the caller's principal, which adds the clinic
//! filter (`crate::db::tenant`). Permission checks happen here too, in one
//! style ([`access::require`]). Nothing in this layer knows about GraphQL or
//! HTTP.

pub mod access;
pub mod api_tokens;
pub mod audit_log;
pub mod bulk_export;
pub mod clinics;
pub mod error;
pub mod event_log;
pub mod feedback;
pub mod follow_ups;
pub mod idempotency;
pub mod imports;
pub mod interop;
pub mod journeys;
pub mod outreach;
pub mod page;
pub mod pathways;
pub mod patients;
pub mod privacy;
pub mod records;
pub mod sessions;
pub mod settings;
pub mod staff;
pub mod store;
pub mod timeline;
pub mod touchpoints;
pub mod validate;
pub mod values;
pub mod vocabulary;
pub mod webhook_endpoints;

pub use crate::db::now;
pub use error::{DomainError, DomainResult};
pub use store::{Store, Write};
pub use vocabulary::*;
