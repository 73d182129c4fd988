//! Domain events: their types, the outbox they are written to, the log they
//! are read from and the in-process bus they are published on after commit.
//!
//! Every event carries `{id, type, sequence, occurredAt, clinicId, data}`. The
//! sequence is per clinic and taken inside the writing transaction by
//! incrementing the clinic's counter, which holds the clinic row's lock until
//! commit: sequence order is therefore commit order, and a reader resuming
//! "after N" never misses an event that committed late.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{event_sequences, events};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    auth::Principal,
    domain::{DomainError, DomainResult},
    ids::{self, IdKind},
};

/// The kinds of event, as published (`journey.stage_changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    PatientCreated,
    PatientUpdated,
    PatientErased,
    JourneyStarted,
    JourneyStageChanged,
    JourneyCompleted,
    JourneyDropped,
    TouchpointLogged,
    FeedbackSubmitted,
    FollowUpScheduled,
    FollowUpOverdue,
    FollowUpCompleted,
    WebhookEndpointDisabled,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::PatientCreated,
        EventType::PatientUpdated,
        EventType::PatientErased,
        EventType::JourneyStarted,
        EventType::JourneyStageChanged,
        EventType::JourneyCompleted,
        EventType::JourneyDropped,
        EventType::TouchpointLogged,
        EventType::FeedbackSubmitted,
        EventType::FollowUpScheduled,
        EventType::FollowUpOverdue,
        EventType::FollowUpCompleted,
        EventType::WebhookEndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PatientCreated => "patient.created",
            EventType::PatientUpdated => "patient.updated",
            EventType::PatientErased => "patient.erased",
            EventType::JourneyStarted => "journey.started",
            EventType::JourneyStageChanged => "journey.stage_changed",
            EventType::JourneyCompleted => "journey.completed",
            EventType::JourneyDropped => "journey.dropped",
            EventType::TouchpointLogged => "touchpoint.logged",
            EventType::FeedbackSubmitted => "feedback.submitted",
            EventType::FollowUpScheduled => "follow_up.scheduled",
            EventType::FollowUpOverdue => "follow_up.overdue",
            EventType::FollowUpCompleted => "follow_up.completed",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Validates a list of event type names given by a client.
    pub fn parse_list(field: &str, names: &[String]) -> DomainResult<Vec<EventType>> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                Self::parse(name).ok_or_else(|| {
                    DomainError::invalid(
                        format!("{field}[{index}]"),
                        format!(
                            "unknown event type {name:?}; known types: {}",
                            Self::known()
                        ),
                    )
                })
            })
            .collect()
    }

    fn known() -> String {
        Self::ALL.map(|t| t.as_str()).join(", ")
    }
}

/// An event not yet written: what a domain operation emits.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    /// The global id of the record the event is about.
    pub subject: String,
    pub data: Value,
}

/// The events of one transaction, written just before it commits.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<NewEvent>,
}

impl Outbox {
    pub fn emit(&mut self, event_type: EventType, subject: String, data: Value) {
        self.pending.push(NewEvent {
            event_type,
            subject,
            data,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The events as rows, without their sequence numbers yet (see [`append`]).
    pub fn prepare(self, clinic_id: Uuid, occurred_at: DateTime<Utc>) -> Vec<events::Model> {
        self.pending
            .into_iter()
            .map(|event| events::Model {
                id: ids::new_id(),
                clinic_id,
                sequence: 0,
                event_type: event.event_type.as_str().to_string(),
                subject: event.subject,
                data: event.data,
                occurred_at,
            })
            .collect()
    }
}

/// Takes the transaction's sequence numbers for `prepared` (one clinic's
/// events) and writes them; on PostgreSQL also tells the other replicas, as
/// `replica`, once the transaction commits.
///
/// Call last before commit: the clinic's counter stays locked until then, so
/// every other writer of the clinic waits for this transaction. On
/// PostgreSQL the counter, the events and the notification are therefore one
/// statement: one round trip between taking the lock and committing.
pub async fn append<C: ConnectionTrait>(
    txn: &C,
    mut prepared: Vec<events::Model>,
    replica: Uuid,
) -> Result<Vec<events::Model>, DbErr> {
    if prepared.is_empty() {
        return Ok(prepared);
    }
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            let last = append_on_postgres(txn, &prepared, replica).await?;
            number(&mut prepared, last);
        }
        _ => append_elsewhere(txn, &mut prepared).await?,
    }
    Ok(prepared)
}

/// Counter, then events, as two statements (SQLite has no data-modifying
/// `WITH`, and one writer at a time anyway).
async fn append_elsewhere<C: ConnectionTrait>(
    txn: &C,
    prepared: &mut [events::Model],
) -> Result<(), DbErr> {
    let clinic_id = prepared[0].clinic_id;
    let bump = Query::update()
        .table(event_sequences::Entity)
        .value(
            event_sequences::Column::LastSequence,
            Expr::col(event_sequences::Column::LastSequence).add(prepared.len() as i64),
        )
        .and_where(Expr::col(event_sequences::Column::ClinicId).eq(clinic_id))
        .returning_col(event_sequences::Column::LastSequence)
        .to_owned();
    let row = txn
        .query_one(&bump)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("clinic {clinic_id}")))?;
    number(prepared, row.try_get("", "last_sequence")?);
    events::Entity::insert_many(
        prepared
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
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
    prepared: &[events::Model],
    replica: Uuid,
) -> Result<i64, DbErr> {
    let clinic_id = prepared[0].clinic_id;
    let count = prepared.len() as i64;
    let mut values: Vec<sea_orm::Value> = vec![
        count.into(),
        clinic_id.into(),
        prepared[0].occurred_at.into(),
        NOTIFY_CHANNEL.into(),
        format!("{replica}:{clinic_id}:").into(),
    ];
    let mut rows = Vec::with_capacity(prepared.len());
    for (offset, event) in prepared.iter().enumerate() {
        let n = values.len();
        rows.push(format!(
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
        rows.join(", ")
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

/// The public envelope of an event, as sent to webhooks and shown as
/// `JourneyEvent`.
pub fn envelope(event: &events::Model) -> Value {
    json!({
        "id": IdKind::Event.encode(event.id),
        "type": event.event_type,
        "sequence": event.sequence,
        "occurredAt": timestamp(event.occurred_at),
        "clinicId": IdKind::Clinic.encode(event.clinic_id),
        "data": event.data,
    })
}

/// Timestamps in payloads: RFC 3339, UTC, microseconds.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An opaque cursor for "after this event" (per clinic).
pub fn cursor(sequence: i64) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(format!("e1:{sequence}"))
}

/// Parses a cursor made by [`cursor`].
pub fn parse_cursor(field: &str, text: &str) -> DomainResult<i64> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("e1:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n >= 0)
        .ok_or_else(|| DomainError::invalid(field, "is not an event cursor"))
}

/// Reads the event log of the caller's clinic after `after`, oldest first.
pub async fn read_log<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    after: i64,
    limit: u64,
    types: &[EventType],
) -> DomainResult<Vec<events::Model>> {
    let mut select = who
        .select::<events::Entity>()
        .filter(events::Column::Sequence.gt(after));
    if !types.is_empty() {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    Ok(select
        .order_by_asc(events::Column::Sequence)
        .limit(limit)
        .all(conn)
        .await?)
}

/// How many events of `types` (all types when empty) the caller's clinic has.
pub async fn count<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    types: &[EventType],
) -> DomainResult<u64> {
    use sea_orm::PaginatorTrait;
    let mut select = who.select::<events::Entity>();
    if !types.is_empty() {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    Ok(select.count(conn).await?)
}

/// What travels on the bus.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A committed event.
    Event(Arc<FollowedEvent>),
    /// Events may have been missed (a lost database connection): followers
    /// should catch up from the log.
    Resync,
}

/// Committed events, fanned out per clinic within this process. Publication
/// is a wake-up with the event attached; the events table stays the truth,
/// and followers ([`follow`]) fill any gap from it.
#[derive(Clone)]
pub struct EventBus {
    clinics: Arc<std::sync::Mutex<std::collections::HashMap<Uuid, broadcast::Sender<BusMessage>>>>,
    /// This process's id, so it can ignore its own notifications.
    pub replica: Uuid,
    /// Woken when webhook deliveries were queued, so a worker starts at once.
    pub deliveries: Arc<tokio::sync::Notify>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

/// One record an event names, loaded once (of whatever entity type).
type RelatedCell = tokio::sync::OnceCell<Arc<dyn std::any::Any + Send + Sync>>;

/// A committed event as followers receive it. Every follower of a clinic gets
/// the same one from the bus, so the records its resolvers look up (the
/// journey, its stages) are loaded once for all of them rather than once per
/// subscriber: a stage change fanned out to thousands of sockets costs a
/// couple of statements, not thousands.
pub struct FollowedEvent {
    /// The event as committed.
    pub event: events::Model,
    related: std::sync::Mutex<std::collections::HashMap<(&'static str, Uuid), Arc<RelatedCell>>>,
}

impl FollowedEvent {
    pub fn new(event: events::Model) -> Self {
        Self {
            event,
            related: Default::default(),
        }
    }

    /// The record `kind`/`id` the event names, loaded by the first follower
    /// that asks and shared with the others. Records are loaded through the
    /// asking follower's principal; every follower of a bus is of one clinic,
    /// and field-level rules apply per follower in the resolvers.
    pub async fn related<M, F>(&self, kind: &'static str, id: Uuid, load: F) -> DomainResult<M>
    where
        M: Clone + Send + Sync + 'static,
        F: std::future::Future<Output = DomainResult<M>>,
    {
        let cell = self
            .related
            .lock()
            .expect("related lock")
            .entry((kind, id))
            .or_default()
            .clone();
        let value = cell
            .get_or_try_init(|| async {
                load.await
                    .map(|m| Arc::new(m) as Arc<dyn std::any::Any + Send + Sync>)
            })
            .await?;
        value.downcast_ref::<M>().cloned().ok_or_else(|| {
            DomainError::internal(anyhow::anyhow!("{kind} {id} was cached as another type"))
        })
    }
}

impl std::fmt::Debug for FollowedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.event.fmt(f)
    }
}

impl std::ops::Deref for FollowedEvent {
    type Target = events::Model;

    fn deref(&self) -> &events::Model {
        &self.event
    }
}

/// Messages a slow follower may fall behind by before it reads the log
/// instead. The bus holds shared events (a few KiB each with the records they
/// name), while every follower reading the log loads its own copies: with
/// 1,024, five thousand followers that fell behind together spent more on
/// catching up than on delivering.
const FOLLOWER_BUFFER: usize = 16_384;

impl EventBus {
    pub fn new() -> Self {
        Self {
            clinics: Arc::default(),
            replica: Uuid::new_v4(),
            deliveries: Arc::default(),
        }
    }

    /// Publishes committed events. Nobody listening is fine: the log is the truth.
    pub fn publish(&self, events: Vec<events::Model>) {
        let clinics = self.clinics.lock().expect("bus lock");
        for event in events {
            if let Some(sender) = clinics.get(&event.clinic_id) {
                let _ = sender.send(BusMessage::Event(Arc::new(FollowedEvent::new(event))));
            }
        }
    }

    /// Tells every follower to catch up from the log.
    pub fn resync(&self) {
        let mut clinics = self.clinics.lock().expect("bus lock");
        clinics.retain(|_, sender| sender.receiver_count() > 0);
        for sender in clinics.values() {
            let _ = sender.send(BusMessage::Resync);
        }
    }

    /// True when some follower of `clinic` listens in this process.
    pub fn has_followers(&self, clinic: Uuid) -> bool {
        self.clinics
            .lock()
            .expect("bus lock")
            .get(&clinic)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// A receiver of the clinic's messages published from now on.
    pub fn subscribe(&self, clinic: Uuid) -> broadcast::Receiver<BusMessage> {
        let mut clinics = self.clinics.lock().expect("bus lock");
        clinics.retain(|_, sender| sender.receiver_count() > 0);
        clinics
            .entry(clinic)
            .or_insert_with(|| broadcast::channel(FOLLOWER_BUFFER).0)
            .subscribe()
    }
}

/// The clinic's last committed sequence number.
#[allow(clippy::disallowed_methods)] // the principal's own clinic's counter
pub async fn current_sequence<C: ConnectionTrait>(conn: &C, who: &Principal) -> DomainResult<i64> {
    Ok(event_sequences::Entity::find_by_id(who.clinic_id)
        .one(conn)
        .await?
        .map(|c| c.last_sequence)
        .unwrap_or(0))
}

/// Follows the caller's clinic's events after sequence `after` (or from now):
/// first the log, then live, with no gap and no duplicate — also when events
/// commit while it switches over, arrive out of order from concurrent
/// writers, or are missed by a lagging or reconnecting bus. Only events for
/// which `wanted` holds are yielded.
pub fn follow<F>(
    store: crate::domain::Store,
    who: Principal,
    after: Option<i64>,
    wanted: F,
) -> impl futures::Stream<Item = DomainResult<Arc<FollowedEvent>>> + Send
where
    F: Fn(&events::Model) -> bool + Send + 'static,
{
    async_stream::try_stream! {
        // Listen before reading, so nothing committed meanwhile slips by.
        let mut receiver = store.bus.subscribe(who.clinic_id);
        let conn = store.db.conn().clone();
        let mut last = match after {
            Some(after) => after,
            None => current_sequence(&conn, &who).await?,
        };
        // From now on, the bus has everything after the counter just read:
        // the receiver was listening before it was read.
        let mut from_log = after.is_some();
        let mut target: Option<i64> = None;
        loop {
            // Catch up from the log: everything after `last` (up to `target`
            // when filling a known gap, which is committed by then). Small
            // pages: thousands of followers may catch up at once.
            while from_log {
                let page = read_log(&conn, &who, last, CATCH_UP_PAGE, &[]).await?;
                let done = page.len() < CATCH_UP_PAGE as usize;
                for event in page {
                    last = event.sequence;
                    if wanted(&event) {
                        yield Arc::new(FollowedEvent::new(event));
                    }
                }
                if done || target.is_some_and(|t| last >= t) {
                    from_log = false;
                }
            }
            // Live. Concurrent writers commit in sequence order but may
            // publish out of it, so a gap is first waited out here: going to
            // the log for every reordered pair would cost one query per
            // follower, thousands for one event.
            let mut early: BTreeMap<i64, Arc<FollowedEvent>> = BTreeMap::new();
            let mut gap_deadline: Option<tokio::time::Instant> = None;
            // Back to the log: up to the last event held back when a gap did
            // not fill (those are committed), or all of it after a resync.
            target = loop {
                let message = match gap_deadline {
                    None => receiver.recv().await,
                    Some(deadline) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(message) => message,
                        // Not published here in time (another replica's, or
                        // lost): the log has it.
                        Err(_) => break early.last_key_value().map(|(sequence, _)| *sequence),
                    },
                };
                match message {
                    Ok(BusMessage::Event(event)) => {
                        if event.sequence <= last {
                            continue;
                        }
                        early.insert(event.sequence, event);
                        while let Some(entry) = early.first_entry() {
                            if *entry.key() != last + 1 {
                                break;
                            }
                            let event = entry.remove();
                            last = event.sequence;
                            if wanted(&event) {
                                yield event;
                            }
                        }
                        if early.is_empty() {
                            gap_deadline = None;
                        } else if early.len() > MAX_EARLY_EVENTS {
                            break early.last_key_value().map(|(sequence, _)| *sequence);
                        } else if gap_deadline.is_none() {
                            gap_deadline = Some(tokio::time::Instant::now() + GAP_WAIT);
                        }
                    }
                    Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => break None,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            };
            from_log = true;
        }
    }
}

/// Events a follower reads from the log per query when catching up.
const CATCH_UP_PAGE: u64 = 32;
/// How long a follower waits for a missing event on the bus before reading
/// it from the log.
const GAP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Events held back behind a gap before the follower reads the log instead.
const MAX_EARLY_EVENTS: usize = 256;

/// The notification channel replicas share on PostgreSQL.
pub const NOTIFY_CHANNEL: &str = "journeymap_events";

/// Relays other replicas' events to this process's bus (PostgreSQL only):
/// LISTEN wakes it, the events table supplies the events. After a lost
/// connection it reconnects and tells followers to catch up.
pub async fn relay_notifications(
    store: crate::domain::Store,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = store.db.conn().get_postgres_connection_pool().clone();
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(?error, "cannot listen for other replicas' events; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
        };
        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(?error, "LISTEN failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            continue;
        }
        backoff = std::time::Duration::from_millis(100);
        // Anything committed while we were not listening is in the log.
        store.bus.resync();
        loop {
            let notification = tokio::select! {
                _ = shutdown.cancelled() => return,
                notification = listener.recv() => notification,
            };
            let notification = match notification {
                Ok(notification) => notification,
                Err(error) => {
                    tracing::warn!(?error, "lost the notification connection; reconnecting");
                    break;
                }
            };
            let mut parts = notification.payload().split(':');
            let (Some(replica), Some(clinic), Some(first), Some(last)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if replica == store.bus.replica.to_string() {
                continue;
            }
            let (Ok(clinic), Ok(first), Ok(last)) = (
                clinic.parse::<Uuid>(),
                first.parse::<i64>(),
                last.parse::<i64>(),
            ) else {
                continue;
            };
            // Nobody here follows that clinic: nothing to read.
            if !store.bus.has_followers(clinic) {
                continue;
            }
            match Principal::system(clinic)
                .select::<events::Entity>()
                .filter(events::Column::Sequence.between(first, last))
                .order_by_asc(events::Column::Sequence)
                .all(store.db.conn())
                .await
            {
                Ok(found) => store.bus.publish(found),
                Err(error) => {
                    tracing::warn!(
                        ?error,
                        "cannot read relayed events; followers will catch up"
                    );
                    store.bus.resync();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_cursors_round_trip() {
        assert_eq!(parse_cursor("after", &cursor(42)).unwrap(), 42);
        assert!(parse_cursor("after", "garbage").is_err());
        assert!(
            EventType::parse_list("types", &["journey.stage_changed".into(), "nope".into()])
                .is_err()
        );
    }
}
