//! A connection that wakes itself while it is being polled is polled again
//! at once, on the same worker, instead of going back to the scheduler.
//!
//! hyper hands a request's body from the connection to the handler through
//! a channel, and the handler taking the body wakes the connection: the
//! very task that is running. tokio's multi-thread scheduler takes a task
//! woken while it runs for one that yields, queues it behind the others and
//! wakes an idle worker to share the queue, which steals the connection:
//! one futex and a hop between threads for every request with a body
//! (docs/DECISIONS.md, "Store"). [`Repoll`] keeps those wake-ups inside the
//! poll. Wake-ups from elsewhere (the socket, the writer thread, a timer)
//! reach the scheduler as before, and a future that keeps waking itself
//! goes back to the scheduler after [`MAX_POLLS`] polls in a row, so it
//! cannot starve the worker's other tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Most polls of the inner future in one poll of [`Repoll`].
const MAX_POLLS: u32 = 8;

/// The inner future is not being polled.
const IDLE: u8 = 0;
/// The inner future is being polled.
const POLLING: u8 = 1;
/// The inner future woke itself during this poll.
const WOKEN: u8 = 2;

/// `future`, polled again at once when it wakes itself during a poll.
pub struct Repoll<F> {
    future: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// The waker the inner future sees: `signal`'s.
    waker: Waker,
}

/// Where a wake-up of the inner future goes.
struct Signal {
    state: AtomicU8,
    /// The task that polled last, woken by wake-ups from outside a poll.
    task: Mutex<Option<Waker>>,
}

impl<F: Future> Repoll<F> {
    pub fn new(future: F) -> Repoll<F> {
        let signal = Arc::new(Signal {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        Repoll {
            future: Box::pin(future),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self.signal.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let this = &mut *self;
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS {
            this.signal.state.store(POLLING, Ordering::SeqCst);
            if let Poll::Ready(output) = this.future.as_mut().poll(&mut inner) {
                this.signal.state.store(IDLE, Ordering::SeqCst);
                return Poll::Ready(output);
            }
            // A wake-up after this swap finds IDLE and wakes the task.
            if this.signal.state.swap(IDLE, Ordering::SeqCst) != WOKEN {
                return Poll::Pending;
            }
        }
        // Still waking itself: the scheduler decides what runs next.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // During a poll: mark it, and the poll polls again.
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(task) = task.as_ref() {
                    task.wake_by_ref();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wake-ups that reach it.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that wakes itself `times` times while polled, then is ready.
    fn waking_itself(times: u32) -> impl Future<Output = u32> {
        let mut polls = 0;
        std::future::poll_fn(move |cx| {
            polls += 1;
            if polls > times {
                Poll::Ready(polls)
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
    }

    fn poll_once<F: Future>(future: &mut Repoll<F>, count: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::clone(count));
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_without_the_scheduler() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut future = Repoll::new(waking_itself(3));
        assert_eq!(poll_once(&mut future, &count), Poll::Ready(4));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn one_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut future = Repoll::new(waking_itself(MAX_POLLS + 2));
        assert_eq!(poll_once(&mut future, &count), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(&mut future, &count), Poll::Ready(MAX_POLLS + 3));
    }

    #[test]
    fn a_wake_up_from_outside_a_poll_reaches_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut future = Repoll::new(rx);
        assert!(poll_once(&mut future, &count).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        std::thread::spawn(move || tx.send(7))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll_once(&mut future, &count), Poll::Ready(Ok(7))));
    }
}
