//! The outbox: the events of one change, written in its transaction. Each
//! event is numbered in the clinic's sequence and is also the change's audit
//! entry.
//!
//! The sequence is per clinic and taken inside the writing transaction by
//! incrementing the clinic's counter (`event_sequences`), which stays locked
//! until commit: sequence order is therefore commit order, and a reader
//! resuming "after N" never misses an event that committed late.

use chrono::{DateTime, Utc};
use entity::{event_sequences, events};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, Statement,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::Event;
use crate::{audit::AuditEntry, auth::Principal, ids};

/// The events of one transaction, written just before it commits.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<Event>,
}

/// An event ready to be written: its row (without its sequence number yet)
/// and the typed event it holds.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub row: events::Model,
    pub event: Event,
}

impl Outbox {
    /// Adds an event to the change.
    pub fn emit(&mut self, event: Event) {
        self.pending.push(event);
    }

    /// The events as rows of `clinic_id`, all at `occurred_at`, not yet
    /// numbered (see [`append`]).
    pub fn prepare(self, clinic_id: Uuid, occurred_at: DateTime<Utc>) -> Vec<Prepared> {
        self.pending
            .into_iter()
            .map(|event| Prepared {
                row: events::Model {
                    id: ids::new_id(),
                    clinic_id,
                    sequence: 0,
                    event_type: event.event_type().as_str().to_string(),
                    subject: event.subject(),
                    data: event.data(),
                    occurred_at,
                },
                event,
            })
            .collect()
    }
}

/// Writes `prepared` (one clinic's events, by `who`): their audit entries,
/// then their rows with the transaction's sequence numbers. On PostgreSQL it
/// also tells the other replicas, as `replica`, once the transaction commits.
///
/// Call last before commit: the clinic's counter stays locked until then, so
/// every other writer of the clinic waits for this transaction. The audit
/// rows therefore go first, and on PostgreSQL the counter, the events and the
/// notification are one statement: one round trip between taking the lock
/// and committing.
pub async fn append<C: ConnectionTrait>(
    txn: &C,
    who: &Principal,
    prepared: Vec<Prepared>,
    replica: Uuid,
) -> Result<Vec<events::Model>, DbErr> {
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    let audit = prepared
        .iter()
        .map(|p| audit_entry(&p.event).row(who, p.row.occurred_at))
        .collect();
    crate::audit::insert(txn, audit).await?;
    let mut rows: Vec<events::Model> = prepared.into_iter().map(|p| p.row).collect();
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            // Statements of at most 4 × 10,000 values (PostgreSQL binds up
            // to 65,535): one unless a sweep plans thousands at once; the
            // counter stays locked from the first, so the numbers run on.
            for chunk in rows.chunks_mut(10_000) {
                let last = append_on_postgres(txn, chunk, replica).await?;
                number(chunk, last);
            }
        }
        _ => append_elsewhere(txn, &mut rows).await?,
    }
    Ok(rows)
}

/// The audit entry an event stands for: the event type on its subject.
fn audit_entry(event: &Event) -> AuditEntry {
    let (kind, id) = match ids::decode(&event.subject()) {
        Ok((kind, id)) => (kind.type_name(), Some(id)),
        Err(_) => ("Unknown", None),
    };
    AuditEntry {
        action: event.event_type().as_str().to_string(),
        record_kind: kind,
        record_id: id,
        patient_id: event.patient_id().map(Uuid::from),
    }
}

/// Counter, then events, as two statements (SQLite has no data-modifying
/// `WITH`, and one writer at a time anyway).
async fn append_elsewhere<C: ConnectionTrait>(
    txn: &C,
    rows: &mut [events::Model],
) -> Result<(), DbErr> {
    let clinic_id = rows[0].clinic_id;
    let bump = Query::update()
        .table(event_sequences::Entity)
        .value(
            event_sequences::Column::LastSequence,
            Expr::col(event_sequences::Column::LastSequence).add(rows.len() as i64),
        )
        .and_where(Expr::col(event_sequences::Column::ClinicId).eq(clinic_id))
        .returning_col(event_sequences::Column::LastSequence)
        .to_owned();
    let row = txn
        .query_one(&bump)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("clinic {clinic_id}")))?;
    number(rows, row.try_get("", "last_sequence")?);
    crate::db::insert_all(txn, rows.to_vec()).await
}

/// Numbers events that end at sequence `last`.
fn number(events: &mut [events::Model], last: i64) {
    let first = last - events.len() as i64 + 1;
    for (offset, event) in events.iter_mut().enumerate() {
        event.sequence = first + offset as i64;
    }
}

/// Counter, events and `pg_notify` in one statement; returns the last
/// sequence number taken.
async fn append_on_postgres<C: ConnectionTrait>(
    txn: &C,
    rows: &[events::Model],
    replica: Uuid,
) -> Result<i64, DbErr> {
    let clinic_id = rows[0].clinic_id;
    let count = rows.len() as i64;
    let mut values: Vec<sea_orm::Value> = vec![
        count.into(),
        clinic_id.into(),
        rows[0].occurred_at.into(),
        super::relay::NOTIFY_CHANNEL.into(),
        format!("{replica}:{clinic_id}:").into(),
    ];
    let mut tuples = Vec::with_capacity(rows.len());
    for (offset, event) in rows.iter().enumerate() {
        let n = values.len();
        tuples.push(format!(
            "(${}::uuid, {offset}, ${}, ${}, ${}::json)",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        ));
        values.push(event.id.into());
        values.push(event.event_type.clone().into());
        values.push(event.subject.clone().into());
        values.push(event.data.clone().into());
    }
    let sql = format!(
        "WITH counter AS ( \
           UPDATE event_sequences SET last_sequence = last_sequence + $1 \
           WHERE clinic_id = $2 RETURNING last_sequence \
         ), appended AS ( \
           INSERT INTO events (id, clinic_id, sequence, event_type, subject, data, occurred_at) \
           SELECT e.id, $2, counter.last_sequence - $1 + 1 + e.position, e.event_type, e.subject, e.data, $3 \
           FROM counter, (VALUES {}) AS e(id, position, event_type, subject, data) \
           RETURNING sequence \
         ) \
         SELECT max(sequence) AS last_sequence, \
           pg_notify($4, $5 || min(sequence) || ':' || max(sequence)) AS notified \
         FROM appended",
        tuples.join(", ")
    );
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("clinic {clinic_id}")))?;
    row.try_get::<Option<i64>>("", "last_sequence")?
        .ok_or_else(|| DbErr::RecordNotFound(format!("clinic {clinic_id}")))
}
