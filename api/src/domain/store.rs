//! The domain's handle on the world ([`Store`]) and the unit of every change
//! ([`Write`]): one transaction, its outbox events, then publication.

use chrono::{DateTime, Utc};
use entity::events;
use serde_json::Value;

use super::{DomainResult, audit::AuditEntry, now};
use crate::{
    auth::Principal,
    db::{Db, WriteTxn},
    events::{EventBus, EventType, Outbox},
};

/// What domain operations work with: the database and the event bus.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub bus: EventBus,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventBus")
    }
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            bus: EventBus::new(),
        }
    }

    /// Starts a change on behalf of `who`.
    pub async fn write<'a>(&'a self, who: &'a Principal) -> DomainResult<Write<'a>> {
        Ok(Write {
            txn: self.db.begin_write().await?,
            who,
            outbox: Outbox::default(),
            audit: Vec::new(),
            bus: &self.bus,
            now: now(),
        })
    }
}

/// One change in progress: a transaction, the caller, the events it emits
/// and its audit entries. Dropping it without [`Write::commit`] rolls
/// everything back.
pub struct Write<'a> {
    pub txn: WriteTxn,
    pub who: &'a Principal,
    outbox: Outbox,
    audit: Vec<AuditEntry>,
    bus: &'a EventBus,
    /// The time of this change, the same for every row it writes.
    pub now: DateTime<Utc>,
}

impl Write<'_> {
    /// Records an event to be written with this change; it is also the
    /// change's audit entry.
    pub fn emit(&mut self, event_type: EventType, subject: String, data: Value) {
        self.outbox.emit(event_type, subject, data);
    }

    /// Records an audit entry for a change that emits no event.
    pub fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    /// Writes the audit entries, queues webhook deliveries, numbers and
    /// writes the events, commits, then publishes the events.
    pub async fn commit(self) -> DomainResult<Vec<events::Model>> {
        // Everything that needs no sequence number goes first: taking the
        // numbers locks the clinic's counter until commit.
        let prepared = self.outbox.prepare(self.who.clinic_id, self.now);
        let mut rows: Vec<_> = prepared
            .iter()
            .map(|event| AuditEntry::of_event(event).row(self.who, self.now))
            .collect();
        rows.extend(self.audit.iter().map(|entry| entry.row(self.who, self.now)));
        super::audit::insert(&*self.txn, rows).await?;
        let queued = super::webhooks::fan_out(&*self.txn, self.who, &prepared, self.now).await?;
        let written = crate::events::append(&*self.txn, prepared, self.bus.replica).await?;
        self.txn.commit().await?;
        self.bus.publish(written.clone());
        if queued > 0 {
            self.bus.deliveries.notify_one();
        }
        Ok(written)
    }
}
