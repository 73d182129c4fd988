//! Domain events: their types, the outbox they are written to, the log they
//! are read from and the in-process bus they are published on after commit.
//!
//! Every event carries `{id, type, sequence, occurredAt, clinicId, data}`. The
//! sequence is per clinic and taken inside the writing transaction by
//! incrementing the clinic's counter, which holds the clinic row's lock until
//! commit: sequence order is therefore commit order, and a reader resuming
//! "after N" never misses an event that committed late.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{clinics, events};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
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
}

impl EventType {
    pub const ALL: [EventType; 12] = [
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

    /// Takes this transaction's sequence numbers and writes the events. Call
    /// last in the transaction: the clinic row stays locked until commit.
    pub async fn write<C: ConnectionTrait>(
        self,
        txn: &C,
        clinic_id: Uuid,
        occurred_at: DateTime<Utc>,
    ) -> Result<Vec<events::Model>, DbErr> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let count = self.pending.len() as i64;
        let bump = Query::update()
            .table(clinics::Entity)
            .value(
                clinics::Column::EventSeq,
                Expr::col(clinics::Column::EventSeq).add(count),
            )
            .and_where(Expr::col(clinics::Column::Id).eq(clinic_id))
            .returning_col(clinics::Column::EventSeq)
            .to_owned();
        let row = txn
            .query_one(&bump)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("clinic {clinic_id}")))?;
        let last: i64 = row.try_get("", "event_seq")?;
        let first = last - count + 1;
        let rows: Vec<events::Model> = self
            .pending
            .into_iter()
            .enumerate()
            .map(|(offset, event)| events::Model {
                id: ids::new_id(),
                clinic_id,
                sequence: first + offset as i64,
                event_type: event.event_type.as_str().to_string(),
                subject: event.subject,
                data: event.data,
                occurred_at,
            })
            .collect();
        events::Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
            .exec_without_returning(txn)
            .await?;
        Ok(rows)
    }
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

/// Committed events, published in commit order within this process.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<events::Model>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self { sender }
    }

    /// Publishes committed events. Nobody listening is fine: the log is the truth.
    pub fn publish(&self, events: Vec<events::Model>) {
        for event in events {
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// A receiver of events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<events::Model>> {
        self.sender.subscribe()
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
