//! Reading and following the clinic's event log, for callers with the right
//! permission: `events` and `journeyEvents` need `events:read`,
//! `journeyStageChanged` needs `journeys:read`.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::{DomainError, DomainResult, Store, access, page::Page};
use crate::{
    auth::{Permission, Principal},
    events::{self, Event, EventType, FollowedEvent, log},
    ids::{PathwayId, PatientId},
};

/// Event type names given by a client, each checked; `field` names the
/// input (`types`, `eventTypes`).
pub fn parse_types(field: &str, names: &[String]) -> DomainResult<Vec<EventType>> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            EventType::parse(name).ok_or_else(|| {
                DomainError::invalid(
                    format!("{field}[{index}]"),
                    format!(
                        "unknown event type {name:?}; known types: {}",
                        EventType::known()
                    ),
                )
            })
        })
        .collect()
}

/// The sequence number an event cursor given in `field` stands for.
pub fn parse_cursor(field: &str, cursor: &str) -> DomainResult<i64> {
    log::parse_cursor(cursor).ok_or_else(|| DomainError::invalid(field, "is not an event cursor"))
}

/// The sequence of the clinic's last committed event (0 before any): where a
/// follower that starts now starts. Reveals nothing but a count, so it asks
/// no permission; following asks its own.
pub async fn last_sequence(store: &Store, who: &Principal) -> DomainResult<i64> {
    Ok(log::current_sequence(store.db.conn(), who).await?)
}

/// One page of the log after `after`, oldest first.
pub async fn page(
    store: &Store,
    who: &Principal,
    after: Option<i64>,
    size: u64,
    types: &[EventType],
) -> DomainResult<Page<entity::events::Model>> {
    access::require(who, Permission::EventsRead, "reading events")?;
    let mut rows = log::read(store.db.conn(), who, after.unwrap_or(0), size + 1, types).await?;
    let has_next_page = rows.len() as u64 > size;
    rows.truncate(size as usize);
    Ok(Page {
        items: rows,
        has_previous_page: after.is_some_and(|a| a > 0),
        has_next_page,
    })
}

/// How many events of `types` the log holds.
pub async fn count(store: &Store, who: &Principal, types: &[EventType]) -> DomainResult<u64> {
    access::require(who, Permission::EventsRead, "reading events")?;
    Ok(log::count(store.db.conn(), who, types).await?)
}

/// Followed events, or the log's errors as domain errors.
pub type Followed = std::pin::Pin<Box<dyn Stream<Item = DomainResult<Arc<FollowedEvent>>> + Send>>;

/// Every event of `types` (all when empty) after `after` (or from now), live.
pub fn follow_events(
    store: &Store,
    who: &Principal,
    types: Vec<EventType>,
    after: Option<i64>,
) -> DomainResult<Followed> {
    access::require(who, Permission::EventsRead, "following events")?;
    let wanted = move |event: &FollowedEvent| {
        types.is_empty() || types.iter().any(|t| t.as_str() == event.event_type)
    };
    Ok(follow(store, who, after, wanted))
}

/// Every stage change after `after` (or from now), live, optionally only of
/// one pathway's or one patient's journeys.
pub fn follow_stage_changes(
    store: &Store,
    who: &Principal,
    pathway: Option<Uuid>,
    patient: Option<Uuid>,
    after: Option<i64>,
) -> DomainResult<Followed> {
    access::require(who, Permission::JourneysRead, "following stage changes")?;
    let kind = EventType::JourneyStageChanged.as_str();
    let wanted = move |event: &FollowedEvent| {
        if event.event_type != kind {
            return false;
        }
        match event.event().as_deref() {
            Ok(Event::JourneyStageChanged(change)) => {
                pathway.is_none_or(|p| change.pathway_id == PathwayId(p))
                    && patient.is_none_or(|p| change.patient_id == PatientId(p))
            }
            _ => false,
        }
    };
    Ok(follow(store, who, after, wanted))
}

fn follow<F>(store: &Store, who: &Principal, after: Option<i64>, wanted: F) -> Followed
where
    F: Fn(&FollowedEvent) -> bool + Send + 'static,
{
    events::follow(
        store.db.clone(),
        store.bus.clone(),
        who.clone(),
        after,
        wanted,
    )
    .map(|item| item.map_err(DomainError::from))
    .boxed()
}
