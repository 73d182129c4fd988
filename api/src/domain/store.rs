//! The domain's handle on the world ([`Store`]) and the unit of every change
//! ([`Write`]): one transaction, its events and audit entries, its webhook
//! deliveries, then publication.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use entity::events;

use super::{
    DomainResult,
    outreach::configuration::{Configuration, Configurations},
};
use crate::{
    audit::{self, AuditEntry},
    auth::Principal,
    db::{self, Db, WriteTxn},
    events::{Event, EventBus, Outbox, outbox},
    webhooks::queue,
};

/// What domain operations work with: the database, the event bus, and the
/// clinics' outreach configuration kept in memory.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub bus: EventBus,
    configurations: Arc<Configurations>,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            bus: EventBus::new(),
            configurations: Arc::default(),
        }
    }

    /// Starts a change on behalf of `who`.
    pub async fn write<'a>(&'a self, who: &'a Principal) -> DomainResult<Write<'a>> {
        Ok(Write {
            txn: self.db.begin_write().await?,
            who,
            outbox: Outbox::default(),
            audit: Vec::new(),
            db: &self.db,
            bus: &self.bus,
            now: db::now(),
            credentials_changed: false,
            configurations: &self.configurations,
            configuration: OnceLock::new(),
            configuration_changed: false,
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
    db: &'a Db,
    bus: &'a EventBus,
    /// The time of this change, the same for every row it writes.
    pub now: DateTime<Utc>,
    /// Whether some credential stops working with this change.
    credentials_changed: bool,
    /// The clinics' outreach configuration kept in memory.
    pub(super) configurations: &'a Configurations,
    /// This change's clinic's outreach configuration, once read.
    pub(super) configuration: OnceLock<Arc<Configuration>>,
    /// Whether this change alters its clinic's outreach configuration.
    configuration_changed: bool,
}

impl Write<'_> {
    /// Records an event to be written with this change; it is also the
    /// change's audit entry.
    pub fn emit(&mut self, event: Event) {
        self.outbox.emit(event);
    }

    /// Lets PostgreSQL run this transaction's prepared statements on their
    /// generic plans instead of planning each execution for its parameters.
    ///
    /// Only for changes whose every statement looks rows up by key (an id,
    /// a journey, a patient): a stage move. PostgreSQL keeps choosing a
    /// custom plan for several of a move's statements (the cancel of the
    /// stage's follow-ups planned anew on each of 7 executions out of 7), and
    /// the planning cost more than running them: the bind phase was a third
    /// of a move's statement time. One `SET LOCAL` (it ends with the
    /// transaction) bought 548 → 605 moves/s on a grown database (W2, three
    /// alternations). Not for scans whose best plan depends on the values,
    /// like the CSV import's lookups (see `domain::imports`, which forces
    /// custom plans). Nothing on SQLite.
    pub async fn plan_generically(&self) -> DomainResult<()> {
        db::plan_statements(&*self.txn, db::Plans::Generic).await?;
        Ok(())
    }

    /// Marks a change that makes some credential stop working (a revoked
    /// token, an ended session, a disabled staff member): this replica
    /// forgets the principals it resolved ([`crate::auth::credentials`]) as
    /// soon as the change commits. The others hear it from PostgreSQL, whose
    /// triggers on those tables notify with the commit (migration 000015).
    pub fn credentials_changed(&mut self) {
        self.credentials_changed = true;
    }

    /// Marks a change to the clinic's outreach configuration (its policy or
    /// templates, a pathway's name, a stage's follow-up rules): planning in
    /// this change reads the configuration from its own transaction from
    /// now on, and this replica stops answering it from memory
    /// ([`super::outreach::configuration`]) as soon as the change commits.
    /// The others hear it from PostgreSQL, whose triggers on those tables
    /// notify with the commit (migration 000016).
    pub fn configuration_changed(&mut self) {
        self.configuration_changed = true;
        self.configuration.take();
    }

    /// Whether this change alters its clinic's outreach configuration.
    pub(super) fn alters_configuration(&self) -> bool {
        self.configuration_changed
    }

    /// The database this change writes to.
    pub(super) fn db(&self) -> &Db {
        self.db
    }

    /// Records an audit entry for a change that emits no event.
    pub fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    /// Commits the change: its own audit entries, a webhook delivery of each
    /// event for every endpoint that wants it ([`queue::fan_out`]), the
    /// events with their audit entries ([`outbox::append`]); then numbers the
    /// events in the clinic's sequence and publishes them
    /// ([`outbox::Appended::publish`]) before waking the webhook worker, so
    /// that it finds them numbered.
    pub async fn commit(self) -> DomainResult<Vec<events::Model>> {
        let rows = self
            .audit
            .iter()
            .map(|entry| entry.row(self.who, self.now))
            .collect();
        audit::insert(&*self.txn, rows).await?;
        let prepared = self.outbox.prepare(self.who.clinic_id, self.now);
        let queued = queue::fan_out(&*self.txn, self.who, &prepared, self.now).await?;
        let appended = outbox::append(&*self.txn, self.who, prepared).await?;
        self.txn.commit().await?;
        if self.credentials_changed {
            self.db.credentials().forget_all();
        }
        if self.configuration_changed {
            self.db.configuration().invalidate();
        }
        let written = appended.publish(self.db, self.bus).await;
        if queued > 0 {
            self.bus.deliveries.notify_one();
        }
        Ok(written)
    }
}
