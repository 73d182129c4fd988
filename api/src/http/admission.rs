//! How many GraphQL requests over HTTP run at once.
//!
//! Every request in progress holds its rows, its loaders and its response
//! in memory and competes for the same cores and database connections. Left
//! unbounded, a burst the server cannot keep up with makes every operation
//! slower and the process larger: in `journeymap bench`, W1 offered faster
//! than the machine answered grew to 2,000 operations in flight, 861 MiB and
//! six seconds a request. So at most `--max-concurrent-requests` run (a
//! batch counts once); the next ones wait their turn in arrival order (the
//! semaphore is fair), and once `--max-waiting-requests` are waiting, the
//! next is refused with `OVERLOADED` (HTTP 503 and `Retry-After`). A waiting
//! request has not been read yet (its body is still in the socket), so
//! waiting costs little and a refusal less; a client or a load balancer told
//! to wait goes elsewhere or comes back later.
//!
//! WebSocket operations are not counted: subscriptions are long-lived, and
//! a socket's operations are bounded per connection (see [`super::ws`]).

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a refused client is told to wait before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The gate every GraphQL request over HTTP passes before it runs.
#[derive(Debug)]
pub struct Admission {
    running: Semaphore,
    waiting: AtomicUsize,
    max_running: usize,
    max_waiting: usize,
}

/// Why a request was not admitted: this many were running and this many
/// already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server is at capacity ({running} requests running, {waiting} waiting); retry in {} s",
    RETRY_AFTER.as_secs()
)]
pub struct Overloaded {
    pub running: usize,
    pub waiting: usize,
}

/// Counts a waiting request while it waits, cancelled or not.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A gate letting `max_running` requests run (at least one) and
    /// `max_waiting` wait.
    pub fn new(max_running: usize, max_waiting: usize) -> Self {
        let max_running = max_running.max(1);
        Self {
            running: Semaphore::new(max_running),
            waiting: AtomicUsize::new(0),
            max_running,
            max_waiting,
        }
    }

    /// Waits for a turn to run, or refuses at once when the queue is full.
    /// The request runs while it holds the permit.
    pub async fn admit(&self) -> Result<SemaphorePermit<'_>, Overloaded> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.max_waiting {
            return Err(Overloaded {
                running: self.max_running,
                waiting: ahead,
            });
        }
        // The semaphore is never closed.
        self.running.acquire().await.map_err(|_| Overloaded {
            running: self.max_running,
            waiting: ahead,
        })
    }

    /// Requests waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.max_running - self.running.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_up_to_the_limit_then_queues_then_refuses() {
        let gate = Admission::new(1, 1);
        let first = gate.admit().await.unwrap();
        assert_eq!(gate.running(), 1);

        let gate = &gate;
        let second = async move { gate.admit().await.map(|_| ()) };
        let mut second = Box::pin(second);
        // The second waits: polled once, it is queued, not refused.
        assert!(futures::poll!(second.as_mut()).is_pending());
        assert_eq!(gate.waiting(), 1);

        // The queue is full: the third is refused at once.
        assert_eq!(
            gate.admit().await.unwrap_err(),
            Overloaded {
                running: 1,
                waiting: 1
            }
        );

        drop(first);
        second.await.unwrap();
        assert_eq!(gate.waiting(), 0);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let gate = Admission::new(1, 1);
        let _first = gate.admit().await.unwrap();
        {
            let mut waiting = Box::pin(gate.admit());
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(gate.waiting(), 1);
        }
        assert_eq!(gate.waiting(), 0);
        // Its place is free again: the next one queues instead of being refused.
        let mut next = Box::pin(gate.admit());
        assert!(futures::poll!(next.as_mut()).is_pending());
    }

    #[tokio::test]
    async fn no_queue_refuses_whatever_cannot_run_now() {
        let gate = Admission::new(2, 0);
        let _a = gate.admit().await.unwrap();
        let _b = gate.admit().await.unwrap();
        assert!(gate.admit().await.is_err());
    }
}
