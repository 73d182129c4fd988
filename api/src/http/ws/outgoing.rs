//! A socket's outgoing queue. Frames of subscriptions shared with other
//! sockets are the same bytes for all (a queued one costs a pointer), so a
//! socket may be `--ws-shared-backlog` (1,024) of them behind before it is
//! detached;
//! frames serialized for this socket alone are held to [`OWN_FRAMES`], so a
//! slow socket cannot hold much memory (its operation waits, and far enough
//! behind catches up from the event log instead).

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Frames of this socket's own operations waiting to be written.
const OWN_FRAMES: usize = 32;

/// The sending side, one per socket, cloned into its operations.
#[derive(Clone)]
pub struct Outgoing {
    sender: mpsc::Sender<Queued>,
    own_frames: Arc<Semaphore>,
}

/// A message waiting to be written.
pub struct Queued {
    pub message: Message,
    /// Held until the message is written, for this socket's own frames.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The socket is closed.
#[derive(Debug)]
pub struct Closed;

/// Why a shared frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// The socket is its shared backlog behind.
    Full,
    Closed,
}

impl Outgoing {
    /// A queue that holds up to `shared_backlog` shared frames, and the
    /// receiving end its writer drains.
    pub fn new(shared_backlog: usize) -> (Self, mpsc::Receiver<Queued>) {
        let (sender, receiver) = mpsc::channel(shared_backlog.max(1) + OWN_FRAMES);
        (
            Self {
                sender,
                own_frames: Arc::new(Semaphore::new(OWN_FRAMES)),
            },
            receiver,
        )
    }

    /// A protocol message (ack, pong, error, complete, close).
    pub async fn send(&self, message: Message) -> Result<(), Closed> {
        self.queue(message, None).await
    }

    /// A frame serialized for this socket alone: waits while
    /// `OWN_FRAMES` of them are queued.
    pub async fn send_own(&self, message: Message) -> Result<(), Closed> {
        let permit = self
            .own_frames
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        self.queue(message, Some(permit)).await
    }

    /// A frame shared with other sockets, queued at once or not at all.
    pub fn try_send_shared(&self, text: Utf8Bytes) -> Result<(), NotQueued> {
        let queued = Queued {
            message: Message::Text(text),
            _permit: None,
        };
        // Room is kept for protocol messages and own frames.
        if self.sender.capacity() <= OWN_FRAMES {
            return if self.sender.is_closed() {
                Err(NotQueued::Closed)
            } else {
                Err(NotQueued::Full)
            };
        }
        self.sender.try_send(queued).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => NotQueued::Full,
            mpsc::error::TrySendError::Closed(_) => NotQueued::Closed,
        })
    }

    async fn queue(
        &self,
        message: Message,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Closed> {
        self.sender
            .send(Queued {
                message,
                _permit: permit,
            })
            .await
            .map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_is_full_after_its_shared_backlog_and_keeps_room_for_protocol_messages() {
        let (outgoing, mut receiver) = Outgoing::new(100);
        for _ in 0..100 {
            outgoing
                .try_send_shared(Utf8Bytes::from_static("{}"))
                .unwrap();
        }
        assert_eq!(
            outgoing.try_send_shared(Utf8Bytes::from_static("{}")),
            Err(NotQueued::Full)
        );
        for _ in 0..OWN_FRAMES {
            outgoing.send(Message::Text("pong".into())).await.unwrap();
        }
        assert!(receiver.recv().await.is_some());
        drop(receiver);
        assert!(outgoing.send(Message::Text("x".into())).await.is_err());
    }

    #[tokio::test]
    async fn own_frames_wait_until_earlier_ones_are_written() {
        let (outgoing, mut receiver) = Outgoing::new(1);
        for _ in 0..OWN_FRAMES {
            outgoing.send_own(Message::Text("{}".into())).await.unwrap();
        }
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            outgoing.send_own(Message::Text("{}".into())),
        )
        .await;
        assert!(waiting.is_err(), "the 33rd own frame waits");
        let written = receiver.recv().await.unwrap();
        drop(written);
        outgoing.send_own(Message::Text("{}".into())).await.unwrap();
    }
}
