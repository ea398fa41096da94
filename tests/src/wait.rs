//! Waiting for a condition with a deadline. Tests synchronise on what they
//! can observe, never on a bare sleep: a sleep is either too short on a busy
//! CI machine or wastes time everywhere else.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `condition` until it holds (true) or `timeout` passes (false). The
/// condition is checked once more at the deadline.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || condition().then_some(())).is_some()
}

/// Polls `probe` until it returns `Some`, or `None` once `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    // Start fast (most conditions hold within milliseconds), back off to a
    // pace that does not steal the CPU from the processes being waited for.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let start = Instant::now();
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
