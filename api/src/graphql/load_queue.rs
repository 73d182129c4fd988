//! The executor of a request's batched loads (see [`LoadQueue`]).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use futures::{Stream, StreamExt, future::BoxFuture, stream::FuturesUnordered, task::ArcWake};

/// Runs a request's batched loads on the request's own task, once the request
/// has nothing else to do.
///
/// DataLoader batches the keys that arrive before its batch starts. The
/// executor resolves list items a few at a time (futures' `FuturesUnordered`
/// yields after every couple of items to be fair to other tasks), so with
/// `tokio::spawn` and a timer a long list could start a batch before its last
/// keys arrived, and the statement count would depend on timing. Here loads
/// are queued, and [`LoadQueue::run`] starts them only when the execution
/// returns `Pending` without having woken itself: every key the resolvers can
/// produce at that point is in the batch.
#[derive(Clone, Default)]
pub struct LoadQueue {
    pending: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
}

impl LoadQueue {
    /// Queues a load (a DataLoader's spawner).
    pub fn push(&self, load: BoxFuture<'static, ()>) {
        self.pending.lock().expect("load queue lock").push(load);
    }

    /// Runs `execution` with this queue's loads.
    pub fn run<F: Future>(&self, execution: F) -> WithLoads<Pin<Box<F>>> {
        WithLoads {
            inner: Box::pin(execution),
            queue: self.clone(),
            running: FuturesUnordered::new(),
        }
    }

    /// Runs a stream of executions (a subscription) with this queue's loads.
    pub fn run_stream<S: Stream>(&self, stream: S) -> WithLoads<Pin<Box<S>>> {
        WithLoads {
            inner: Box::pin(stream),
            queue: self.clone(),
            running: FuturesUnordered::new(),
        }
    }
}

/// An execution (a future, or a stream of them) and the loads it queues.
pub struct WithLoads<T> {
    inner: T,
    queue: LoadQueue,
    running: FuturesUnordered<BoxFuture<'static, ()>>,
}

/// Remembers whether a future woke itself while it was being polled.
struct SelfWake {
    woken: AtomicBool,
    parent: Waker,
}

impl ArcWake for SelfWake {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken.store(true, Ordering::Release);
        this.parent.wake_by_ref();
    }
}

impl<T: Unpin> WithLoads<T> {
    /// Polls the execution once; when it waits on loads only (it did not
    /// wake itself), starts every queued load, then drives the loads.
    fn drive<O>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut T, &mut Context<'_>) -> Poll<O>,
    ) -> Poll<O> {
        let tracker = Arc::new(SelfWake {
            woken: AtomicBool::new(false),
            parent: cx.waker().clone(),
        });
        let waker = futures::task::waker(tracker.clone());
        if let Poll::Ready(output) = poll(&mut self.inner, &mut Context::from_waker(&waker)) {
            return Poll::Ready(output);
        }
        if !tracker.woken.load(Ordering::Acquire) {
            let queued = std::mem::take(&mut *self.queue.pending.lock().expect("load queue lock"));
            self.running.extend(queued);
        }
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
        Poll::Pending
    }
}

impl<F: Future> Future for WithLoads<Pin<Box<F>>> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.drive(cx, |execution, cx| execution.as_mut().poll(cx))
    }
}

impl<S: Stream> Stream for WithLoads<Pin<Box<S>>> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.drive(cx, |stream, cx| stream.as_mut().poll_next(cx))
    }
}
