//! The outbox: the events of one change, written in its transaction. Each
//! event is numbered in the clinic's sequence and is also the change's audit
//! entry.
//!
//! The sequence is per clinic, gap-free and in commit order: a reader that
//! sees event N has seen every event before it, so a resume "after N" never
//! misses an event that committed late.
//!
//! - On SQLite (one writer at a time) the events are numbered in their
//!   transaction from the clinic's counter (`event_sequences`).
//! - On PostgreSQL a counter locked until commit would make the clinic's
//!   writers wait for each other's WAL flush, one at a time. Instead a writer
//!   commits its events with a negative placeholder number and, once
//!   committed, numbers them under the clinic's numbering lock (an advisory
//!   lock, see [`number_pending`]): the lock holder numbers every committed
//!   event of the clinic still waiting, in one statement, so writers that
//!   committed meanwhile share one numbering transaction and one flush; in
//!   one process they join one round at a time per clinic
//!   ([`super::sequencer`]), so at most one caller per replica waits on the
//!   lock.
//!   Numbering transactions run one at a time per clinic and each sees the
//!   previous one's commit, so numbers are handed out in the order events
//!   became visible, and a number is visible only with all the ones before
//!   it. A writer that dies between its commit and its numbering leaves its
//!   events waiting; the next writer of the clinic numbers them, or the
//!   sweeper ([`number_leftovers`]) within seconds. Readers never see a
//!   placeholder: every read of the log asks for numbers above a cursor.

use chrono::{DateTime, Utc};
use entity::{event_sequences, events};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, Statement,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::{Event, EventBus};
use crate::{audit::AuditEntry, auth::Principal, db::Db, ids};

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

/// Writes `prepared` (one clinic's events, by `who`) in `txn`: their audit
/// entries, then their rows, numbered on SQLite and waiting for their numbers
/// on PostgreSQL. Once `txn` commits, [`Appended::publish`] numbers them
/// (PostgreSQL) and publishes them.
pub async fn append<C: ConnectionTrait>(
    txn: &C,
    who: &Principal,
    prepared: Vec<Prepared>,
) -> Result<Appended, DbErr> {
    let mut appended = Appended {
        clinic_id: who.clinic_id,
        rows: Vec::new(),
        numbered: true,
    };
    if prepared.is_empty() {
        return Ok(appended);
    }
    let audit = prepared
        .iter()
        .map(|p| audit_entry(&p.event).row(who, p.row.occurred_at))
        .collect();
    crate::audit::insert(txn, audit).await?;
    let mut rows: Vec<events::Model> = prepared.into_iter().map(|p| p.row).collect();
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            if rows.len() >= MAX_PENDING_PER_TRANSACTION {
                return Err(DbErr::Custom(format!(
                    "one change cannot write {} events (at most {})",
                    rows.len(),
                    MAX_PENDING_PER_TRANSACTION - 1
                )));
            }
            // Statements of at most 4 × 10,000 values (PostgreSQL binds up
            // to 65,535): one unless a sweep plans thousands at once.
            for (chunk_index, chunk) in rows.chunks_mut(CHUNK).enumerate() {
                insert_pending(txn, chunk, chunk_index * CHUNK).await?;
            }
            appended.numbered = false;
        }
        _ => number_in_transaction(txn, &mut rows).await?,
    }
    appended.rows = rows;
    Ok(appended)
}

/// Events per `INSERT` on PostgreSQL.
const CHUNK: usize = 10_000;

/// A placeholder is `-(transaction id × 2²⁰ + position)`: unique, negative,
/// and in the order of transactions then of their events, so a batch of
/// waiting events is numbered with each change's events together and in the
/// order they were emitted. (The product stays below 2⁶³ for the first 2,048
/// wraparounds of PostgreSQL's transaction ids.)
const MAX_PENDING_PER_TRANSACTION: usize = 1 << 20;

/// A change's events, written and waiting for the transaction to commit.
#[derive(Debug)]
#[must_use = "publish the events once the transaction commits"]
pub struct Appended {
    clinic_id: Uuid,
    rows: Vec<events::Model>,
    /// False while they wait for their numbers (PostgreSQL).
    numbered: bool,
}

impl Appended {
    /// Call once the transaction committed: numbers the events (PostgreSQL,
    /// with every other event of the clinic waiting) and publishes them on
    /// the bus and to the other replicas. Returns them numbered.
    ///
    /// The change is committed whatever happens here: if numbering fails it
    /// is logged and the events wait for the next writer or the sweeper,
    /// which publish them then. Writers of one clinic in this process are
    /// numbered in shared rounds ([`super::sequencer`]).
    pub async fn publish(self, db: &Db, bus: &EventBus) -> Vec<events::Model> {
        if self.rows.is_empty() {
            return self.rows;
        }
        if self.numbered {
            bus.publish(self.rows.clone());
            return self.rows;
        }
        let ours: Vec<Uuid> = self.rows.iter().map(|row| row.id).collect();
        bus.sequencer
            .number(db, bus, self.clinic_id, ours)
            .await
            .unwrap_or(self.rows)
    }
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

/// Counter, then events, as two statements in the writing transaction
/// (SQLite has no data-modifying `WITH`, and one writer at a time anyway).
async fn number_in_transaction<C: ConnectionTrait>(
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
    let last: i64 = row.try_get("", "last_sequence")?;
    let first = last - rows.len() as i64 + 1;
    for (offset, event) in rows.iter_mut().enumerate() {
        event.sequence = first + offset as i64;
    }
    crate::db::insert_all(txn, rows.to_vec()).await
}

/// Inserts events waiting for their numbers, at positions `first_position…`
/// of their transaction (PostgreSQL).
async fn insert_pending<C: ConnectionTrait>(
    txn: &C,
    rows: &mut [events::Model],
    first_position: usize,
) -> Result<(), DbErr> {
    let mut values: Vec<sea_orm::Value> =
        vec![rows[0].clinic_id.into(), rows[0].occurred_at.into()];
    let mut tuples = Vec::with_capacity(rows.len());
    for (offset, event) in rows.iter_mut().enumerate() {
        let position = first_position + offset + 1;
        let n = values.len();
        tuples.push(format!(
            "(${}::uuid, {position}, ${}, ${}, ${}::json)",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        ));
        values.push(event.id.into());
        values.push(event.event_type.clone().into());
        values.push(event.subject.clone().into());
        values.push(event.data.clone().into());
        // Until numbered, what the caller holds says only "waiting".
        event.sequence = -(position as i64);
    }
    let sql = format!(
        "INSERT INTO events (id, clinic_id, sequence, event_type, subject, data, occurred_at) \
         SELECT e.id, $1, -(pg_current_xact_id()::text::bigint * {MAX_PENDING_PER_TRANSACTION} + e.position), \
                e.event_type, e.subject, e.data, $2 \
         FROM (VALUES {}) AS e(id, position, event_type, subject, data)",
        tuples.join(", ")
    );
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// The advisory lock (two-key form, first key [`NUMBERING_LOCK_SPACE`]) that
/// numbering a clinic's events holds until it commits. Two clinics may share
/// a key; they then only wait for each other.
fn numbering_lock_key(clinic_id: Uuid) -> i32 {
    let (high, low) = clinic_id.as_u64_pair();
    let folded = high ^ low;
    ((folded >> 32) ^ folded) as u32 as i32
}

/// "JMEV": Journeymap's event numbering, apart from any other advisory lock.
const NUMBERING_LOCK_SPACE: i32 = 0x4A4D_4556;

/// Numbers every committed event of `clinic_id` still waiting (PostgreSQL),
/// publishes them on `bus` and tells the other replicas. Returns the events
/// it numbered and those of `ours` an earlier round numbered.
///
/// One statement, `journeymap_number_events` (see the migration that
/// creates it): the lock, then, with a snapshot taken once it is held (which
/// sees every earlier holder's numbers), counter, numbers and notification
/// together. A holder finding its events numbered already writes nothing, so
/// only holders that number something wait for a flush.
pub(super) async fn number_pending(
    db: &Db,
    bus: &EventBus,
    clinic_id: Uuid,
    ours: &[Uuid],
) -> Result<Vec<events::Model>, DbErr> {
    use sea_orm::FromQueryResult;
    let ours_list = ours
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows = db
        .conn()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM journeymap_number_events($1, $2, $3, $4, $5, $6)",
            [
                clinic_id.into(),
                NUMBERING_LOCK_SPACE.into(),
                numbering_lock_key(clinic_id).into(),
                ours_list.into(),
                super::relay::NOTIFY_CHANNEL.into(),
                format!("{}:{clinic_id}:", bus.replica).into(),
            ],
        ))
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut now_numbered = Vec::new();
    for row in &rows {
        let event = events::Model::from_query_result(row, "")?;
        if row.try_get::<bool>("", "numbered_now")? {
            now_numbered.push(event.clone());
        }
        events.push(event);
    }
    now_numbered.sort_by_key(|event| event.sequence);
    bus.publish(now_numbered);
    Ok(events)
}

/// Numbers what writers that died between commit and numbering left waiting
/// (PostgreSQL; nothing waits on SQLite), at most `clinics` clinics at a
/// time. Returns how many clinics had events waiting.
///
/// Events younger than [`LEFTOVER_AFTER_SECS`] are left to their writer,
/// which is most likely numbering them right now.
pub async fn number_leftovers(db: &Db, bus: &EventBus, clinics: u64) -> Result<usize, DbErr> {
    if db.backend() != DbBackend::Postgres {
        return Ok(0);
    }
    let waiting = db
        .conn()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT DISTINCT clinic_id FROM events \
             WHERE sequence < 0 AND occurred_at < $1 LIMIT $2",
            [
                (crate::db::now() - chrono::Duration::seconds(LEFTOVER_AFTER_SECS)).into(),
                (clinics as i64).into(),
            ],
        ))
        .await?;
    for row in &waiting {
        let clinic_id: Uuid = row.try_get("", "clinic_id")?;
        number_pending(db, bus, clinic_id, &[]).await?;
    }
    Ok(waiting.len())
}

/// How old a waiting event must be for the sweeper to number it.
const LEFTOVER_AFTER_SECS: i64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_lock_keys_spread_clinics() {
        let keys: std::collections::HashSet<i32> = (0..1000)
            .map(|_| numbering_lock_key(ids::new_id()))
            .collect();
        assert!(keys.len() > 990, "{} distinct keys of 1000", keys.len());
    }
}
