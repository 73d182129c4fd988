//! What a resolver needs from the request: the caller, the store, the loaders.

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
};

use async_graphql::ID;
use uuid::Uuid;

use super::{limits::RateKey, load_queue::LoadQueue, loaders::Loaders, plain::PlainTally};
use crate::{
    auth::{Actor, Principal, jwt::JwtKeys},
    domain::{DomainError, DomainResult, Store},
    ids::{self, IdKind},
};

/// Per-request data attached to every GraphQL request.
#[derive(Clone)]
pub struct RequestState {
    /// The authenticated caller, if any.
    pub principal: Option<Principal>,
    /// The request's DataLoaders (created only for an authenticated caller).
    pub loaders: Option<Arc<Loaders>>,
    /// The request id, quoted in masked errors.
    pub request_id: String,
    /// The client's address, for limits on unauthenticated callers.
    pub client_ip: Option<IpAddr>,
    /// Patients whose identifying data this request read (for the audit log).
    pub patients_read: Arc<Mutex<HashSet<Uuid>>>,
    /// Where a subscription stands in its clinic's event log.
    pub position: Arc<LogPosition>,
    /// How this request's plain values were answered (for the metrics).
    pub plain: Arc<PlainTally>,
}

/// Where a subscription stands in its clinic's event log: where it starts
/// when its document gives no `after` (a shared subscription starts at a
/// known point, a detached subscriber resumes where it was), and the
/// sequence of the last event it turned into a response.
#[derive(Debug, Default)]
pub struct LogPosition {
    start_after: OnceLock<i64>,
    last: AtomicI64,
}

impl LogPosition {
    /// Starts the subscription after sequence `after` unless its document
    /// names a cursor itself. Only the first call counts.
    pub fn start_after(&self, after: i64) {
        let _ = self.start_after.set(after);
    }

    /// Where the subscription starts when its document gives no `after`.
    pub fn starting_point(&self) -> Option<i64> {
        self.start_after.get().copied()
    }

    /// Notes the event the next response is made of.
    pub fn note(&self, sequence: i64) {
        self.last.store(sequence, Ordering::Release);
    }

    /// The sequence of the event the last response was made of (0 before any).
    pub fn last(&self) -> i64 {
        self.last.load(Ordering::Acquire)
    }
}

impl RequestState {
    /// State for a request by `principal` (or by nobody), and the queue its
    /// loads run on (see [`LoadQueue`]).
    pub fn new(
        store: &Store,
        principal: Option<Principal>,
        request_id: String,
        client_ip: Option<IpAddr>,
    ) -> (Self, LoadQueue) {
        let queue = LoadQueue::default();
        let loaders = principal
            .as_ref()
            .map(|who| Arc::new(Loaders::new(store.clone(), who.clone(), &queue)));
        (
            Self {
                principal,
                loaders,
                request_id,
                client_ip,
                patients_read: Arc::default(),
                position: Arc::default(),
                plain: Arc::default(),
            },
            queue,
        )
    }

    /// Whose cost budget the request spends.
    pub fn rate_key(&self) -> Option<RateKey> {
        match self.principal.as_ref().map(|p| p.actor) {
            Some(Actor::Staff(id) | Actor::ApiToken(id)) => Some(RateKey::Actor(id)),
            Some(Actor::System) => None,
            None => self.client_ip.map(RateKey::Address),
        }
    }
}

/// Resolver helpers over the async-graphql context.
pub trait ContextExt {
    /// The caller, or UNAUTHENTICATED.
    fn principal(&self) -> DomainResult<&Principal>;
    /// The domain store.
    fn store(&self) -> &Store;
    /// The request's loaders, or UNAUTHENTICATED.
    fn loaders(&self) -> DomainResult<&Arc<Loaders>>;
    /// The access-token keys.
    fn keys(&self) -> &Arc<JwtKeys>;
    /// The request's state.
    fn request(&self) -> Option<&RequestState>;
    /// Records that this request read a patient's identifying data.
    fn patient_read(&self, patient: Uuid);
}

impl<T> ContextExt for async_graphql::ContextBase<'_, T> {
    fn principal(&self) -> DomainResult<&Principal> {
        self.data_opt::<RequestState>()
            .and_then(|state| state.principal.as_ref())
            .ok_or(DomainError::Unauthenticated)
    }

    fn store(&self) -> &Store {
        self.data_unchecked::<Store>()
    }

    fn loaders(&self) -> DomainResult<&Arc<Loaders>> {
        self.data_opt::<RequestState>()
            .and_then(|state| state.loaders.as_ref())
            .ok_or(DomainError::Unauthenticated)
    }

    fn keys(&self) -> &Arc<JwtKeys> {
        self.data_unchecked::<Arc<JwtKeys>>()
    }

    fn request(&self) -> Option<&RequestState> {
        self.data_opt::<RequestState>()
    }

    fn patient_read(&self, patient: Uuid) {
        if let Some(state) = self.data_opt::<RequestState>() {
            state
                .patients_read
                .lock()
                .expect("audit lock")
                .insert(patient);
        }
    }
}

/// Decodes a global id argument of the expected kind; a malformed id or one of
/// another type is BAD_USER_INPUT on `field`.
pub fn decode_id(kind: IdKind, field: &str, id: &ID) -> DomainResult<Uuid> {
    ids::decode_as(kind, id.as_str())
        .map_err(|error| DomainError::invalid(field, format!("{:?} {error}", id.as_str())))
}

/// Decodes an optional global id argument.
pub fn decode_opt_id(kind: IdKind, field: &str, id: Option<&ID>) -> DomainResult<Option<Uuid>> {
    id.map(|id| decode_id(kind, field, id)).transpose()
}
