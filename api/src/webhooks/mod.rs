//! Webhooks out: the delivery [`queue`] (fan-out, claim, settle, the body),
//! the [`worker`] that sends, and what both rest on: [`signing`] (Standard
//! Webhooks signatures) and [`targets`] (public addresses only). Endpoint
//! administration is the domain's (`domain::webhook_endpoints`).

pub mod queue;
pub mod signing;
pub mod targets;
pub mod worker;
