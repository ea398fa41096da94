//! Work that runs apart from the request that asked for it.
//!
//! - [`blocking`]: a blocking call (a /proc scan, signals and their waits)
//!   on tokio's blocking pool. A panic there comes back as [`Panicked`],
//!   logged with its message: a panic is an error, never an empty result.
//! - [`Units`]: units of work that must finish once begun, whoever stops
//!   waiting for them: signals and the events that record them, a cleanup.
//!   Each runs as a task of its own that the caller awaits, so a caller
//!   that is dropped (its client hung up, its request timed out) leaves the
//!   unit running; a stopping daemon waits for the units in flight before
//!   it closes the database.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinError;

/// A task that panicked (or was cancelled by a runtime shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} panicked: {message}")]
pub struct Panicked {
    /// What the task was doing, for the log.
    pub what: &'static str,
    /// The panic's message.
    pub message: String,
}

/// Runs `f` on the blocking pool; a panic in it is logged and returned as
/// [`Panicked`].
pub async fn blocking<T, F>(what: &'static str, f: F) -> Result<T, Panicked>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| panicked(what, e))
}

/// Logs a failed task with its panic message and returns it as [`Panicked`].
fn panicked(what: &'static str, error: JoinError) -> Panicked {
    let message = match error.try_into_panic() {
        Ok(payload) => panic_message(payload.as_ref()),
        Err(_) => "cancelled: the runtime is shutting down".to_string(),
    };
    tracing::error!(task = what, panic = %message, "a task panicked");
    Panicked { what, message }
}

/// The text of a panic payload (`panic!("...")` carries a `&str` or a
/// `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The units of work in flight. Clones share the count.
#[derive(Clone, Default)]
pub struct Units {
    inner: Arc<Count>,
}

#[derive(Default)]
struct Count {
    running: AtomicUsize,
    /// Notified when `running` drops to zero.
    idle: Notify,
}

/// One unit in flight; counted until dropped (also by a panic's unwinding).
struct InFlight(Arc<Count>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Units {
    fn enter(&self) -> InFlight {
        self.inner.running.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(&self.inner))
    }

    /// Runs `work` to its end as a task of its own and returns its result;
    /// dropping the returned future does not stop it.
    pub async fn run<T, W>(&self, what: &'static str, work: W) -> Result<T, Panicked>
    where
        W: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let in_flight = self.enter();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            work.await
        })
        .await
        .map_err(|e| panicked(what, e))
    }

    /// Starts `work` as a task of its own that nobody awaits; a panic in it
    /// is logged.
    pub fn spawn<W>(&self, what: &'static str, work: W)
    where
        W: Future<Output = ()> + Send + 'static,
    {
        let in_flight = self.enter();
        let task = tokio::spawn(async move {
            let _in_flight = in_flight;
            work.await
        });
        tokio::spawn(async move {
            if let Err(e) = task.await {
                panicked(what, e);
            }
        });
    }

    /// How many units are in flight.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }

    /// Waits until no unit is in flight, or `timeout` passes (false).
    pub async fn finish(&self, timeout: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.inner.idle.notified();
                tokio::pin!(notified);
                // Registered before the check, so a unit ending in between
                // still wakes us.
                notified.as_mut().enable();
                if self.running() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything logged while the guard lives, on this thread.
    fn capture_log() -> (
        Arc<std::sync::Mutex<Vec<u8>>>,
        tracing::subscriber::DefaultGuard,
    ) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Held by the tests whose tasks panic. Both reach the one `error!` of
    /// [`panicked`], and tracing caches per call site whether any
    /// subscriber wants its events: a thread that registers the call site
    /// while another installs its scoped subscriber can cache "none" and
    /// lose the other test's event.
    static PANICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn a_panic_in_a_blocking_task_is_an_error_with_its_message() {
        let _serial = PANICS.lock().await;
        let (log, _guard) = capture_log();
        let found: Result<Vec<u32>, Panicked> =
            blocking("holder lookup", || panic!("no /proc here")).await;
        let logged = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains("ERROR")
                && logged.contains("holder lookup")
                && logged.contains("no /proc here"),
            "{logged}"
        );
        assert_eq!(
            found,
            Err(Panicked {
                what: "holder lookup",
                message: "no /proc here".into()
            })
        );
        let formatted: Result<Vec<u32>, Panicked> =
            blocking("scan", || panic!("pid {} vanished", 42)).await;
        assert_eq!(formatted.unwrap_err().message, "pid 42 vanished");
        assert_eq!(blocking("sum", || 2 + 2).await, Ok(4));
    }

    #[tokio::test]
    async fn a_panic_in_a_unit_is_an_error_and_the_unit_is_no_longer_counted() {
        let _serial = PANICS.lock().await;
        let units = Units::default();
        let failed: Result<(), Panicked> = units
            .run("signal", async { panic!("pidfd went away") })
            .await;
        assert_eq!(failed.unwrap_err().message, "pidfd went away");
        assert_eq!(units.running(), 0);
        assert!(units.finish(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_unit_whose_caller_is_dropped_runs_to_its_end() {
        let units = Units::default();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let caller = tokio::spawn({
            let units = units.clone();
            async move {
                units
                    .run("record", async move {
                        started_tx.send(()).unwrap();
                        released.await.unwrap();
                        done_tx.send("recorded").unwrap();
                    })
                    .await
            }
        });
        started.await.unwrap();
        // The caller goes away (a client hung up) while the unit waits.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(units.running(), 1);
        assert!(!units.finish(Duration::from_millis(20)).await);
        release.send(()).unwrap();
        assert!(units.finish(Duration::from_secs(5)).await);
        assert_eq!(done.await, Ok("recorded"));
    }

    #[tokio::test]
    async fn a_detached_unit_is_counted_until_it_ends() {
        let units = Units::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        units.spawn("reap", async move {
            released.await.unwrap();
        });
        assert_eq!(units.running(), 1);
        release.send(()).unwrap();
        assert!(units.finish(Duration::from_secs(5)).await);
    }
}
