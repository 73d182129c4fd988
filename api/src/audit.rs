//! The rows of the audit log: who (staff, token or system) did what to which
//! record, when, from which request.
//!
//! Writes are recorded in the same transaction as the change: every event is
//! its own audit entry (written with it by `events::outbox::append`), and
//! changes without events add entries of their own (`domain::Write::audit`).
//! Reads of a patient's identifying data are collected per request and
//! written in batches by [`AuditSink`], off the request's path. Reading the
//! log back is `domain::audit_log`.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    auth::Principal,
    db::{self, Db},
    ids::{self, IdKind},
};

/// An audit entry about to be written.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: String,
    pub record_kind: &'static str,
    pub record_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
}

impl AuditEntry {
    /// `action` done to the record `kind`/`id`, about `patient` if any.
    pub fn new(action: impl Into<String>, kind: IdKind, id: Uuid, patient: Option<Uuid>) -> Self {
        Self {
            action: action.into(),
            record_kind: kind.type_name(),
            record_id: Some(id),
            patient_id: patient,
        }
    }

    /// The row, as done by `who` at `at`.
    pub fn row(&self, who: &Principal, at: DateTime<Utc>) -> audit_log::Model {
        audit_log::Model {
            id: ids::new_id(),
            clinic_id: who.clinic_id,
            actor_kind: who.actor.kind().to_string(),
            actor_id: who.actor.id(),
            action: self.action.clone(),
            record_kind: self.record_kind.to_string(),
            record_id: self.record_id,
            patient_id: self.patient_id,
            request_id: who.request_id.clone(),
            occurred_at: at,
        }
    }
}

/// Inserts audit rows in statements of bounded size.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<audit_log::Model>,
) -> Result<(), DbErr> {
    for chunk in rows.chunks(500) {
        audit_log::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}

/// Collects audit rows of reads and writes them in batches. A request's rows
/// travel as one message, so they are always written by one flush, in
/// statements of at most 500 rows, however many flushes run meanwhile.
#[derive(Clone)]
pub struct AuditSink {
    sender: mpsc::Sender<Vec<audit_log::Model>>,
    db: Db,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSink")
    }
}

/// Requests' batches held in memory before a writer writes its own.
const SINK_CAPACITY: usize = 10_000;
/// How often collected rows are written.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

impl AuditSink {
    /// A sink and the task that writes its rows until `shutdown`, then drains.
    pub fn start(db: Db, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel::<Vec<audit_log::Model>>(SINK_CAPACITY);
        let writer_db = db.clone();
        let task = tokio::spawn(async move {
            let mut buffer = Vec::new();
            loop {
                let stop = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep(FLUSH_EVERY) => false,
                };
                while let Ok(rows) = receiver.try_recv() {
                    buffer.extend(rows);
                }
                if !buffer.is_empty() {
                    let rows = std::mem::take(&mut buffer);
                    if let Err(error) = db::counted_as_audit(insert(writer_db.conn(), rows)).await {
                        tracing::error!(?error, "writing read-audit entries failed");
                    }
                }
                if stop {
                    return;
                }
            }
        });
        (Self { sender, db }, task)
    }

    /// Records the reads a request collected in `reads`, emptying it.
    pub async fn flush_reads(&self, who: &Principal, reads: &std::sync::Mutex<HashSet<Uuid>>) {
        let read: Vec<_> = reads.lock().expect("audit lock").drain().collect();
        if !read.is_empty() {
            self.patients_read(who, read).await;
        }
    }

    /// Records that `who` read the identifying data of `patients`.
    pub async fn patients_read(&self, who: &Principal, patients: impl IntoIterator<Item = Uuid>) {
        let now = db::now();
        let rows: Vec<_> = patients
            .into_iter()
            .map(|patient| {
                AuditEntry::new("patient.read", IdKind::Patient, patient, Some(patient))
                    .row(who, now)
            })
            .collect();
        // The writer is behind: write these ourselves rather than lose them.
        if let Err(mpsc::error::TrySendError::Full(rows)) = self.sender.try_send(rows)
            && let Err(error) = insert(self.db.conn(), rows).await
        {
            tracing::error!(?error, "writing read-audit entries failed");
        }
    }
}
