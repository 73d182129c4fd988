//! End-to-end tests: the real server, real HTTP, a fresh database per test,
//! on SQLite and (with `JOURNEYMAP_TEST_DATABASE_URL`) PostgreSQL.

mod events;
mod follow_ups;
mod journey_map;
mod journeys;
mod schema;
mod statements;
mod tenancy;
mod timeline;
mod validation;
