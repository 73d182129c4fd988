//! Shared subscriptions: WebSocket subscribers with the same rights,
//! document and variables (see [`ShareKey`]) share one execution. Each event
//! is resolved and serialized once, and the frame goes to every member; each
//! member's read of patients' identifying data is still its own audit entry,
//! written for all of them in one batch.
//!
//! Frames go straight into each member's socket queue. A member whose socket
//! is `--ws-shared-backlog` frames behind is detached: it stops
//! receiving the shared frames and goes on alone after the last event it was
//! sent, reading the log, so it misses nothing and receives nothing twice.
//! A subscription that resumes from a cursor runs on its own from the start.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::outgoing::{NotQueued, Outgoing};
use crate::{
    auth::Principal,
    domain::event_log,
    http::{
        AppState,
        operation::{self, Operation, ShareKey},
    },
};

/// The shared executions running on this server, by what their members have
/// in common.
#[derive(Default)]
pub struct SharedSubscriptions {
    groups: Mutex<HashMap<ShareKey, Arc<Group>>>,
    running: Gauge,
    detached: Counter,
}

/// How a shared execution ended for its members.
#[derive(Debug, Clone)]
pub enum Ending {
    /// The subscription's stream ended: `complete`.
    Complete,
    /// Nothing ran (the operation failed validation or its arguments were
    /// refused): an `error` message with these errors.
    Refused(Value),
    /// The member fell behind, or the execution stopped without an ending:
    /// it goes on alone after event `after`, the last it was sent.
    Detached { after: i64 },
}

/// A subscriber's place in a shared execution; leaves it when dropped.
pub struct Membership {
    group: Arc<Group>,
    member: u64,
    ending: oneshot::Receiver<Ending>,
}

impl Membership {
    /// Waits until the member's frames stop, and says why.
    pub async fn ended(&mut self) -> Ending {
        match (&mut self.ending).await {
            Ok(ending) => ending,
            // Not reached: a group closes before it goes (see `Closing`).
            Err(_) => Ending::Complete,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.group.leave(self.member);
    }
}

struct Group {
    members: Mutex<Members>,
    /// Cancelled when the last member leaves.
    stop: CancellationToken,
    ending: OnceLock<Ending>,
    /// Counts the members detached for falling behind.
    detached: Counter,
}

struct Members {
    list: Vec<Member>,
    /// The sequence of the last event sent (the starting point before any).
    last: i64,
    /// No member may join any more.
    closed: bool,
    next_member: u64,
}

struct Member {
    key: u64,
    /// The operation id the member's client gave (`subscribe`'s `id`).
    id: String,
    principal: Principal,
    socket: Outgoing,
    /// The sequence of the last event sent to it.
    last_sent: i64,
    ending: Option<oneshot::Sender<Ending>>,
}

impl Member {
    fn end(&mut self, ending: Ending) {
        if let Some(sender) = self.ending.take() {
            let _ = sender.send(ending);
        }
    }
}

impl SharedSubscriptions {
    /// Registers the gauge of running shared executions.
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        Self {
            groups: Mutex::default(),
            running: metrics.shared_subscriptions.clone(),
            detached: metrics.subscribers_detached.clone(),
        }
    }

    /// Joins the execution of `key`'s subscribers, starting one with
    /// `operation` (already charged) when none runs. `None` when no starting
    /// point could be read: the caller runs the operation on its own.
    pub async fn join(
        self: &Arc<Self>,
        app: &AppState,
        key: ShareKey,
        operation: Operation,
        member: NewMember<'_>,
    ) -> Option<Membership> {
        if let Some(membership) = self.join_running(&key, &member) {
            return Some(membership);
        }
        // A known starting point, so that a member that falls behind knows
        // where to go on from even before the first event.
        let start = match event_log::last_sequence(&app.store, member.principal).await {
            Ok(start) => start,
            Err(error) => {
                tracing::warn!(?error, "a shared subscription could not start");
                return None;
            }
        };
        let group = {
            let mut groups = self.groups.lock().expect("groups lock");
            if let Some(running) = groups.get(&key)
                && let Some(membership) = running.add(&member)
            {
                return Some(membership);
            }
            let group = Arc::new(Group::new(start, self.detached.clone()));
            groups.insert(key.clone(), group.clone());
            group
        };
        let membership = group.add(&member).expect("a new group is open");
        operation.position().start_after(start);
        self.running.inc();
        tokio::spawn(self.clone().run(app.clone(), key, group, operation));
        Some(membership)
    }

    fn join_running(&self, key: &ShareKey, member: &NewMember<'_>) -> Option<Membership> {
        let groups = self.groups.lock().expect("groups lock");
        groups.get(key)?.add(member)
    }

    /// Runs `group`'s execution until its last member leaves or it ends.
    async fn run(
        self: Arc<Self>,
        app: AppState,
        key: ShareKey,
        group: Arc<Group>,
        operation: Operation,
    ) {
        let (mut responses, state) = operation.responses(&app);
        // Closes the group however this ends, a panic too: its members wait for it.
        let _closing = Closing(group.clone());
        let mut first = true;
        loop {
            let response = tokio::select! {
                _ = group.stop.cancelled() => break,
                response = responses.next() => response,
            };
            let Some(response) = response else {
                let _ = group.ending.set(Ending::Complete);
                break;
            };
            if first && operation::is_request_error(&response) {
                let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
                let _ = group.ending.set(Ending::Refused(errors));
                break;
            }
            first = false;
            let payload = serde_json::to_string(&response).unwrap_or_else(|_| "null".into());
            let read: Vec<_> = state
                .patients_read
                .lock()
                .expect("audit lock")
                .drain()
                .collect();
            let readers = group.send(&payload, state.position.last(), !read.is_empty());
            app.audit.flush_reads_of(&readers, read).await;
        }
        let mut groups = self.groups.lock().expect("groups lock");
        if groups.get(&key).is_some_and(|g| Arc::ptr_eq(g, &group)) {
            groups.remove(&key);
        }
        self.running.dec();
    }
}

impl Group {
    fn new(start: i64, detached: Counter) -> Self {
        Self {
            members: Mutex::new(Members {
                list: Vec::new(),
                last: start,
                closed: false,
                next_member: 0,
            }),
            stop: CancellationToken::new(),
            ending: OnceLock::new(),
            detached,
        }
    }

    /// A new member, unless the group no longer takes any.
    fn add(self: &Arc<Self>, member: &NewMember<'_>) -> Option<Membership> {
        let mut members = self.members.lock().expect("members lock");
        if members.closed {
            return None;
        }
        let (sender, ending) = oneshot::channel();
        let key = members.next_member;
        members.next_member += 1;
        let last_sent = members.last;
        members.list.push(Member {
            key,
            id: member.id.to_string(),
            principal: member.principal.clone(),
            socket: member.socket.clone(),
            last_sent,
            ending: Some(sender),
        });
        Some(Membership {
            group: self.clone(),
            member: key,
            ending,
        })
    }

    /// Sends one event's response to every member; a member whose backlog is
    /// full is detached. Who was sent it, when `audited` (their reads are on
    /// record).
    fn send(&self, payload: &str, sequence: i64, audited: bool) -> Vec<Principal> {
        let mut members = self.members.lock().expect("members lock");
        // Most clients number their first subscription alike ("1"): one
        // frame serves them all.
        let mut frames: HashMap<String, Utf8Bytes> = HashMap::new();
        let mut readers = Vec::new();
        let Members { list, last, .. } = &mut *members;
        list.retain_mut(|member| {
            let text = match frames.get(&member.id) {
                Some(text) => text.clone(),
                None => {
                    let text = next_message(&member.id, payload);
                    frames.insert(member.id.clone(), text.clone());
                    text
                }
            };
            match member.socket.try_send_shared(text) {
                Ok(()) => {
                    member.last_sent = sequence;
                    if audited {
                        readers.push(member.principal.clone());
                    }
                    true
                }
                Err(NotQueued::Full) => {
                    self.detached.inc();
                    let after = member.last_sent;
                    member.end(Ending::Detached { after });
                    false
                }
                Err(NotQueued::Closed) => false,
            }
        });
        *last = sequence;
        readers
    }

    fn leave(&self, member: u64) {
        let mut members = self.members.lock().expect("members lock");
        members.list.retain(|m| m.key != member);
        if members.list.is_empty() && !members.closed {
            members.closed = true;
            self.stop.cancel();
        }
    }

    /// Takes no more members, and tells each how the group ended.
    fn close(&self) {
        let mut members = self.members.lock().expect("members lock");
        members.closed = true;
        for mut member in members.list.drain(..) {
            let ending = match self.ending.get() {
                Some(ending) => ending.clone(),
                None => Ending::Detached {
                    after: member.last_sent,
                },
            };
            member.end(ending);
        }
    }
}

/// Closes its group when dropped.
struct Closing(Arc<Group>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A subscriber about to join: its operation id, its caller, its socket.
pub struct NewMember<'a> {
    pub id: &'a str,
    pub principal: &'a Principal,
    pub socket: &'a Outgoing,
}

/// `{"type":"next","id":…,"payload":…}` around an already serialized payload.
fn next_message(id: &str, payload: &str) -> Utf8Bytes {
    let id = serde_json::to_string(id).expect("a string serializes");
    Utf8Bytes::from(format!(
        r#"{{"type":"next","id":{id},"payload":{payload}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::Message;

    use super::{super::outgoing, *};

    const BACKLOG: i64 = 64;

    fn principal() -> Principal {
        Principal::system(uuid::Uuid::nil())
    }

    fn text(queued: Option<outgoing::Queued>) -> String {
        match queued.map(|q| q.message) {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("not a text message: {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_member_gets_each_frame_once_and_a_full_socket_detaches() {
        let group = Arc::new(Group::new(7, Counter::default()));
        let (quick_socket, mut quick_frames) = Outgoing::new(BACKLOG as usize);
        let (slow_socket, mut slow_frames) = Outgoing::new(BACKLOG as usize);
        let principal = principal();
        let join = |id, socket| {
            group
                .add(&NewMember {
                    id,
                    principal: &principal,
                    socket,
                })
                .unwrap()
        };
        let _quick = join("1", &quick_socket);
        let mut slow = join("a\"b", &slow_socket);
        for sequence in 8..8 + BACKLOG {
            let readers = group.send(r#"{"data":1}"#, sequence, true);
            assert_eq!(readers.len(), 2);
            assert_eq!(
                text(quick_frames.recv().await),
                r#"{"type":"next","id":"1","payload":{"data":1}}"#
            );
        }
        // The slow socket wrote nothing: the next frame detaches it.
        let readers = group.send(r#"{"data":2}"#, 9_000, true);
        assert_eq!(readers.len(), 1, "only the quick member was sent it");
        assert_eq!(
            text(quick_frames.recv().await),
            r#"{"type":"next","id":"1","payload":{"data":2}}"#
        );
        match slow.ended().await {
            Ending::Detached { after } => {
                assert_eq!(after, 7 + BACKLOG, "its last frame")
            }
            other => panic!("not detached: {other:?}"),
        }
        assert_eq!(group.detached.get(), 1);
        for _ in 0..BACKLOG as usize {
            assert!(text(slow_frames.recv().await).starts_with(r#"{"type":"next","id":"a\"b","#));
        }
        assert!(
            slow_frames.try_recv().is_err(),
            "nothing after the detaching frame"
        );
        assert!(
            group.send("{}", 9_001, false).is_empty(),
            "no reads, no readers"
        );
    }

    #[tokio::test]
    async fn the_last_member_leaving_stops_the_group() {
        let group = Arc::new(Group::new(0, Counter::default()));
        let (socket, _frames) = Outgoing::new(BACKLOG as usize);
        let principal = principal();
        let member = |id| NewMember {
            id,
            principal: &principal,
            socket: &socket,
        };
        let first = group.add(&member("1")).unwrap();
        let second = group.add(&member("2")).unwrap();
        drop(first);
        assert!(!group.stop.is_cancelled());
        drop(second);
        assert!(group.stop.is_cancelled());
        assert!(
            group.add(&member("3")).is_none(),
            "a stopped group takes no one"
        );
    }

    #[tokio::test]
    async fn members_are_told_how_their_group_ended() {
        let (socket, _frames) = Outgoing::new(BACKLOG as usize);
        let principal = principal();
        let member = NewMember {
            id: "1",
            principal: &principal,
            socket: &socket,
        };
        let group = Arc::new(Group::new(0, Counter::default()));
        let mut joined = group.add(&member).unwrap();
        let _ = group.ending.set(Ending::Complete);
        drop(Closing(group.clone()));
        assert!(matches!(joined.ended().await, Ending::Complete));
        // Stopped with no ending (a panic): members go on alone from where they were.
        let group = Arc::new(Group::new(5, Counter::default()));
        let mut joined = group.add(&member).unwrap();
        drop(Closing(group.clone()));
        assert!(matches!(
            joined.ended().await,
            Ending::Detached { after: 5 }
        ));
    }
}
