//! The in-process bus: committed events, fanned out per clinic to every
//! follower in this process. Publication is a wake-up with the event
//! attached; the log stays the truth, and followers ([`super::follow`]) fill
//! any gap from it.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use entity::events;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{DecodeError, Event};

/// What travels on the bus.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A committed event.
    Event(Arc<FollowedEvent>),
    /// Events may have been missed (a lost database connection): followers
    /// should catch up from the log.
    Resync,
}

/// Committed events, fanned out per clinic within this process.
#[derive(Clone)]
pub struct EventBus {
    clinics: Arc<Mutex<HashMap<Uuid, broadcast::Sender<BusMessage>>>>,
    /// This process's id, so it can ignore its own notifications.
    pub replica: Uuid,
    /// Woken when webhook deliveries were queued, so a worker starts at once.
    pub deliveries: Arc<tokio::sync::Notify>,
    /// Woken when a bulk export was asked for, so this process's export
    /// worker starts it at once (other replicas find it when they next look).
    pub exports: Arc<tokio::sync::Notify>,
    /// Numbers committed events on PostgreSQL, one round per clinic at a time.
    pub sequencer: super::sequencer::Sequencer,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("replica", &self.replica)
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
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
            exports: Arc::default(),
            sequencer: Default::default(),
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

/// One record an event names, loaded once, keyed by what it is and its type.
type RelatedKey = (&'static str, Uuid, TypeId);
type RelatedCell = tokio::sync::OnceCell<Arc<dyn Any + Send + Sync>>;

/// A committed event as followers receive it. Every follower of a clinic gets
/// the same one from the bus, so its payload is decoded once and the records
/// its resolvers look up (the journey, its stages) are loaded once for all of
/// them rather than once per subscriber: a stage change fanned out to
/// thousands of sockets costs a couple of statements, not thousands.
pub struct FollowedEvent {
    /// The event as committed.
    pub row: events::Model,
    decoded: OnceLock<Result<Arc<Event>, Arc<DecodeError>>>,
    related: Mutex<HashMap<RelatedKey, Arc<RelatedCell>>>,
}

impl FollowedEvent {
    pub fn new(row: events::Model) -> Self {
        Self {
            row,
            decoded: OnceLock::new(),
            related: Mutex::default(),
        }
    }

    /// The typed event, decoded once for every follower.
    pub fn event(&self) -> Result<Arc<Event>, Arc<DecodeError>> {
        self.decoded
            .get_or_init(|| {
                Event::decode(&self.row.event_type, &self.row.data)
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
    }

    /// The record `kind`/`id` the event names, loaded by the first follower
    /// that asks and shared with the others. Records are loaded through the
    /// asking follower's principal; every follower of a bus is of one clinic,
    /// and field-level rules apply per follower in the resolvers.
    pub async fn related<M, E, F>(&self, kind: &'static str, id: Uuid, load: F) -> Result<M, E>
    where
        M: Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Result<M, E>>,
    {
        let cell = self
            .related
            .lock()
            .expect("related lock")
            .entry((kind, id, TypeId::of::<M>()))
            .or_default()
            .clone();
        let value = cell
            .get_or_try_init(|| async {
                load.await
                    .map(|m| Arc::new(m) as Arc<dyn Any + Send + Sync>)
            })
            .await?;
        // Keyed by the type as well, so the cell holds an `M`.
        Ok(value
            .downcast_ref::<M>()
            .cloned()
            .expect("related records are cached by type"))
    }
}

impl std::fmt::Debug for FollowedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.row.fmt(f)
    }
}

impl std::ops::Deref for FollowedEvent {
    type Target = events::Model;

    fn deref(&self) -> &events::Model {
        &self.row
    }
}
