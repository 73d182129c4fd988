//! Journeymap: the patient-journey backend for medical-aesthetics and wellness
//! clinics.
//!
//! A request travels `http` → `graphql` → `domain` → `entity`:
//!
//! - [`http`]: the axum router, middleware, GraphQL-over-HTTP, health, metrics.
//! - [`graphql`]: schema assembly, resolvers (thin), loaders, error mapping.
//! - [`auth`]: principals and credentials.
//! - [`domain`]: the rules, one module per aggregate; every write happens here,
//!   in one transaction, together with its outbox events.
//! - [`events`]: event types, the outbox and the in-process bus.
//! - [`analytics`]: the journey map and its SVG rendering.

pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod seed;
pub mod telemetry;
pub mod webhooks;

pub use app::{App, RunningServer};
pub use config::{DatabaseConfig, ServeConfig};

/// The ORM, for tests and tools that need to reach below the API.
pub use sea_orm;
