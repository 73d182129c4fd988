//! Domain events: what happened, numbered per clinic, written with the change
//! that caused it and heard by subscribers and webhooks.
//!
//! - [`types`]: every event type and its payload ([`Event`]).
//! - [`outbox`]: writing a change's events in its transaction, and numbering them.
//! - [`sequencer`]: numbering rounds per clinic in this process (PostgreSQL).
//! - [`log`]: reading the log back; envelopes and cursors.
//! - [`bus`]: publishing committed events within the process.
//! - [`follow`]: following the log live with no gap and no duplicate.
//! - [`relay`]: hearing other replicas' events (PostgreSQL LISTEN/NOTIFY).
//!
//! Every event carries `{id, type, sequence, occurredAt, clinicId, data}`.

pub mod bus;
pub mod follow;
pub mod log;
pub mod outbox;
pub mod relay;
pub mod sequencer;
pub mod types;

pub use bus::{BusMessage, EventBus, FollowedEvent};
pub use follow::follow;
pub use outbox::{Outbox, Prepared};
pub use types::*;
