//! End-to-end tests: the real server, real HTTP, a fresh database per test,
//! on SQLite and (with `JOURNEYMAP_TEST_DATABASE_URL`) PostgreSQL.

mod access;
mod audit;
mod bulk_export;
mod cli;
mod dashboard;
mod events;
mod fhir;
mod filters;
mod follow_ups;
mod http;
mod imports;
mod journey_map;
mod journeys;
mod nested_reads;
mod operations;
mod outreach;
mod replicas;
mod restarts;
mod schema;
mod server;
mod shared_subscriptions;
mod statements;
mod subscriptions;
mod tenancy;
mod timeline;
mod validation;
mod webhooks;
