//! Journeymap: the patient-journey backend for medical-aesthetics and wellness
//! clinics.
//!
//! A request travels down the layers; nothing imports a layer above it:
//!
//! ```text
//! cli, app                 the command line; wiring the running service
//!   http/                  transport: router, middleware, the caller, one operation
//!                          pipeline for HTTP and WebSocket, error responses
//!     graphql/             schema, thin resolvers, loaders, the GraphQL error mapping
//!       analytics/         the journey map and its SVG (read-only, over the domain)
//!       seed/              the demo clinic
//!         domain/          the rules and permission checks, one module per aggregate;
//!                          every write and its typed events in one transaction
//!           webhooks/      the delivery queue and worker, signing, target checks
//!             events/      event types, outbox, numbering rounds, log, bus, live follow, replica relay
//!               audit      the audit log's rows and the read-audit sink
//!               metrics    Prometheus metrics
//!                 db/      pools, migrations, write transactions, tenant scoping
//!                   auth/  principals, permissions, JWTs, passwords, token hashing
//!                   cache, config, ids, telemetry
//! entity/, migration/      (their own crates) tables and their migrations
//! ```
//!
//! The README's Architecture section follows one stage move through these
//! files.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod ids;
pub mod seed;
pub mod telemetry;
pub mod webhooks;

mod analytics;
mod app;
mod audit;
mod cache;
mod graphql;
mod http;
#[cfg(test)]
mod layering;
mod metrics;

pub use app::{App, RunningServer};
pub use config::{DatabaseConfig, ServeConfig};
pub use graphql::sdl;

/// The ORM, for tests and tools that need to reach below the API.
pub use sea_orm;
