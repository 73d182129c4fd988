//! The event log: the committed events of a clinic, in sequence order, and
//! the opaque cursors clients resume from.

use entity::{event_sequences, events};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::{Value, json};

use super::{EventType, stamp};
use crate::{
    auth::Principal,
    ids::{ClinicId, IdKind},
};

/// The public envelope of an event, as sent to webhooks and shown as
/// `JourneyEvent`: `{id, type, sequence, occurredAt, clinicId, data}`.
pub fn envelope(event: &events::Model) -> Value {
    json!({
        "id": IdKind::Event.encode(event.id),
        "type": event.event_type,
        "sequence": event.sequence,
        "occurredAt": stamp::format(event.occurred_at),
        "clinicId": ClinicId(event.clinic_id),
        "data": event.data,
    })
}

/// An opaque cursor for "after this event" (per clinic).
pub fn cursor(sequence: i64) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(format!("e1:{sequence}"))
}

/// The sequence number in a cursor made by [`cursor`]; `None` when `text` is
/// not one.
pub fn parse_cursor(text: &str) -> Option<i64> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("e1:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n >= 0)
}

/// The caller's clinic's events after `after`, oldest first, of `types`
/// (all types when empty).
pub async fn read<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    after: i64,
    limit: u64,
    types: &[EventType],
) -> Result<Vec<events::Model>, DbErr> {
    let mut select = who
        .select::<events::Entity>()
        .filter(events::Column::Sequence.gt(after));
    if !types.is_empty() {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    select
        .order_by_asc(events::Column::Sequence)
        .limit(limit)
        .all(conn)
        .await
}

/// The caller's clinic's events numbered `first` to `last`.
pub async fn range<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    first: i64,
    last: i64,
) -> Result<Vec<events::Model>, DbErr> {
    who.select::<events::Entity>()
        .filter(events::Column::Sequence.between(first, last))
        .order_by_asc(events::Column::Sequence)
        .all(conn)
        .await
}

/// How many events of `types` (all types when empty) the caller's clinic has.
pub async fn count<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    types: &[EventType],
) -> Result<u64, DbErr> {
    // Events still waiting for their numbers are not in the log yet.
    let mut select = who
        .select::<events::Entity>()
        .filter(events::Column::Sequence.gt(0));
    if !types.is_empty() {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    select.count(conn).await
}

/// The clinic's last committed sequence number.
#[allow(clippy::disallowed_methods)] // the principal's own clinic's counter
pub async fn current_sequence<C: ConnectionTrait>(conn: &C, who: &Principal) -> Result<i64, DbErr> {
    Ok(event_sequences::Entity::find_by_id(who.clinic_id)
        .one(conn)
        .await?
        .map(|c| c.last_sequence)
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_cursors_round_trip() {
        assert_eq!(parse_cursor(&cursor(42)), Some(42));
        assert_eq!(parse_cursor("garbage"), None);
    }
}
