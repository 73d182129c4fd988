//! The rows of the audit log: who (staff, token or system) did what to which
//! record, when, from which request.
//!
//! Writes are recorded in the same transaction as the change: every event is
//! its own audit entry (written with it by `events::outbox::append`), and
//! changes without events add entries of their own (`domain::Write::audit`).
//! Reads of a patient's identifying data are collected per request and
//! recorded as one `patient.read` entry naming every patient read: an HTTP
//! request's before its answer leaves ([`AuditSink::record_reads`]; on
//! PostgreSQL the entries of requests answering together share a statement), a
//! subscription's per event in batches. A trigger indexes each entry under
//! its patients (`audit_log_patients`). Reading the log back is
//! `domain::audit_log`.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};
use tokio::sync::{mpsc, oneshot};
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
            patient_ids: None,
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
    /// Requests' own entries, on PostgreSQL (see [`AuditSink::record_reads`]).
    requests: Option<mpsc::Sender<WaitingRead>>,
    db: Db,
}

/// A request's `patient.read` entry on its way to the database, and where to
/// say whether it was written.
type WaitingRead = (audit_log::Model, oneshot::Sender<Result<(), DbErr>>);

/// Requests' entries waiting for the requests' writer before the ones that
/// follow wait for room.
const REQUESTS_WAITING: usize = 4_096;
/// The most requests' entries one statement writes.
const REQUESTS_PER_STATEMENT: usize = 64;

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
        let requests = (db.backend() == sea_orm::DbBackend::Postgres).then(|| {
            let (requests, waiting) = mpsc::channel(REQUESTS_WAITING);
            tokio::spawn(write_requests_reads(db.clone(), waiting));
            requests
        });
        (
            Self {
                sender,
                requests,
                db,
            },
            task,
        )
    }

    /// Records the reads a request collected in `reads`, emptying it, before
    /// the answer is sent: an answer whose reads could not be recorded must
    /// not leave (the caller turns the error into an `INTERNAL` answer).
    /// One statement; on PostgreSQL it is shared with the other requests
    /// answering at the same moment (see [`write_requests_reads`]) and commits
    /// without waiting for the WAL flush (`synchronous_commit` off for that statement alone), so the
    /// entry survives Journeymap being killed at once and PostgreSQL
    /// crashing after a fraction of a second.
    pub async fn record_reads(
        &self,
        who: &Principal,
        reads: &std::sync::Mutex<HashSet<Uuid>>,
    ) -> Result<(), DbErr> {
        let read: Vec<_> = reads.lock().expect("audit lock").drain().collect();
        let Some(row) = reads_entry(who, read, db::now()) else {
            return Ok(());
        };
        let row = match &self.requests {
            Some(requests) => {
                let (done, written) = oneshot::channel();
                match requests.send((row, done)).await {
                    Ok(()) => {
                        return written.await.unwrap_or_else(|_| {
                            Err(DbErr::Custom("the read-audit writer stopped".into()))
                        });
                    }
                    // The writer is gone (shutting down): write it here.
                    Err(mpsc::error::SendError((row, _))) => row,
                }
            }
            None => row,
        };
        db::counted_as_audit(insert_now(self.db.conn(), vec![row])).await
    }

    /// Records the reads of one event sent to a subscriber, emptying `reads`;
    /// written with other subscribers' in batches.
    pub async fn flush_reads(&self, who: &Principal, reads: &std::sync::Mutex<HashSet<Uuid>>) {
        let read: Vec<_> = reads.lock().expect("audit lock").drain().collect();
        self.flush_reads_of(std::slice::from_ref(who), read).await;
    }

    /// Records that each of `readers` was sent one event's response that
    /// read `patients` (a shared subscription's): one entry per reader, in
    /// one batch.
    pub async fn flush_reads_of(&self, readers: &[Principal], patients: Vec<Uuid>) {
        let Some(read) = Reads::of("patient.read", patients) else {
            return;
        };
        let at = db::now();
        let rows: Vec<_> = readers.iter().map(|who| read.row(who, at)).collect();
        if rows.is_empty() {
            return;
        }
        // The writer is behind: write these ourselves rather than lose them.
        if let Err(mpsc::error::TrySendError::Full(rows)) = self.sender.try_send(rows)
            && let Err(error) = insert(self.db.conn(), rows).await
        {
            tracing::error!(?error, "writing read-audit entries failed");
        }
    }
}

/// The one `patient.read` entry of `patients`, if any: about the patient
/// when there is one, naming them all in `patient_ids` when there are more.
fn reads_entry(
    who: &Principal,
    patients: Vec<Uuid>,
    at: DateTime<Utc>,
) -> Option<audit_log::Model> {
    reads_row(who, "patient.read", patients, at)
}

/// One entry `action` about every patient of `patients` read together (a
/// request's reads, a batch of a bulk export), if any: about the patient
/// when there is one, naming them all in `patient_ids` when there are more.
pub fn reads_row(
    who: &Principal,
    action: &str,
    patients: Vec<Uuid>,
    at: DateTime<Utc>,
) -> Option<audit_log::Model> {
    Reads::of(action, patients).map(|read| read.row(who, at))
}

/// What one read of `patients` records, before it is known who read them
/// (one event's response read by every subscriber it was sent to).
struct Reads {
    entry: AuditEntry,
    list: Option<String>,
}

impl Reads {
    fn of(action: &str, mut patients: Vec<Uuid>) -> Option<Self> {
        patients.sort_unstable();
        patients.dedup();
        let (record, list) = match patients.as_slice() {
            [] => return None,
            [one] => (Some(*one), None),
            many => (
                None,
                Some(
                    serde_json::to_string(
                        &many
                            .iter()
                            .map(|id| id.simple().to_string())
                            .collect::<Vec<_>>(),
                    )
                    .expect("ids serialize"),
                ),
            ),
        };
        Some(Self {
            entry: AuditEntry {
                action: action.into(),
                record_kind: IdKind::Patient.type_name(),
                record_id: record,
                patient_id: record,
            },
            list,
        })
    }

    fn row(&self, who: &Principal, at: DateTime<Utc>) -> audit_log::Model {
        let mut row = self.entry.row(who, at);
        row.patient_ids = self.list.clone();
        row
    }
}

/// Writes requests' own `patient.read` entries on PostgreSQL, as many as are
/// waiting (up to [`REQUESTS_PER_STATEMENT`]) in one statement, and tells each
/// request whether its entry was written. While one statement runs the next
/// requests' entries gather, so under load one statement (one trigger run,
/// one commit) serves many requests; alone, a request waits for its own
/// statement only.
async fn write_requests_reads(db: Db, mut waiting: mpsc::Receiver<WaitingRead>) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < REQUESTS_PER_STATEMENT {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (rows, done): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let written = db::counted_as_audit(insert_now(db.conn(), rows)).await;
        if let Err(error) = &written {
            tracing::error!(?error, "writing requests' read-audit entries failed");
        }
        for request in done {
            // A request that went away no longer waits for the answer.
            let _ = request.send(written.clone());
        }
    }
}

/// The columns [`insert_now`] writes, in order.
const AUDIT_COLUMNS: &str = "id, clinic_id, actor_kind, actor_id, action, record_kind, \
                             record_id, patient_id, patient_ids, request_id, occurred_at";

/// Inserts entries in one statement; on PostgreSQL without waiting for the
/// WAL flush.
async fn insert_now<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<audit_log::Model>,
) -> Result<(), DbErr> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return insert(conn, rows).await;
    }
    let mut values = Vec::with_capacity(rows.len() * 11);
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        tuples.push("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        values.extend([
            row.id.into(),
            row.clinic_id.into(),
            row.actor_kind.into(),
            row.actor_id.into(),
            row.action.into(),
            row.record_kind.into(),
            row.record_id.into(),
            row.patient_id.into(),
            row.patient_ids.into(),
            row.request_id.into(),
            row.occurred_at.into(),
        ]);
    }
    let statement = db::statement(
        sea_orm::DbBackend::Postgres,
        &format!(
            "INSERT INTO audit_log ({AUDIT_COLUMNS}) \
             SELECT entry.* FROM (VALUES {}) AS entry ({AUDIT_COLUMNS}) \
             CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS this_statement_only",
            tuples.join(", ")
        ),
        values,
    );
    conn.execute_raw(statement).await.map(|_| ())
}
