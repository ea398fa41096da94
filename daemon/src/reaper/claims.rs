//! Which processes a reap is signalling right now. Sweeps can judge one
//! orphan at the same moment (the start-up cleanup, `portctl cleanup` or
//! `reap`, the reap after an owner's death, a grant that finds its port
//! held): only the first to claim a process signals, records and reports
//! it; the others leave it out and wait until that reap is over, so that
//! they too answer only once it is gone. No process is signalled, recorded
//! or counted twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::signal::Target;

/// A process as the reaper chose it: pid and start time (a reused pid is
/// another process).
type ProcKey = (u32, u64);

type Held = Arc<Mutex<HashMap<ProcKey, watch::Receiver<()>>>>;

/// The processes being reaped, each with a way to wait for its reap.
#[derive(Default)]
pub struct Claims(Held);

/// Held while a reap signals the processes it claimed (moved into the unit
/// of work that signals them, so it lasts as long as the signalling even if
/// the caller stops waiting); dropping it lets them be claimed again and
/// wakes whoever waits for them.
pub struct Claim {
    claims: Held,
    keys: Vec<ProcKey>,
    /// Dropped with the claim: waiters see the channel close.
    _done: watch::Sender<()>,
}

/// The reaps of other callers that held some of the targets.
pub struct Others(Vec<watch::Receiver<()>>);

impl Claims {
    /// Splits `targets` into those this caller now holds (returned, with
    /// the claim) and those another reap holds (to wait for).
    pub fn claim(&self, targets: Vec<Target>) -> (Vec<Target>, Claim, Others) {
        let (done, receiver) = watch::channel(());
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut mine = Vec::new();
        let mut keys = Vec::new();
        let mut others = Vec::new();
        for target in targets {
            let key = (target.facts.pid, target.facts.start_ticks);
            match held.get(&key) {
                Some(theirs) => others.push(theirs.clone()),
                None => {
                    held.insert(key, receiver.clone());
                    keys.push(key);
                    mine.push(target);
                }
            }
        }
        let claim = Claim {
            claims: Arc::clone(&self.0),
            keys,
            _done: done,
        };
        (mine, claim, Others(others))
    }
}

impl Others {
    /// Waits until every other reap that held one of the targets is over.
    pub async fn finished(self) {
        for mut reap in self.0 {
            // Errs once the claim is dropped: that is the signal.
            let _ = reap.changed().await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            held.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::scan::facts;

    fn target(pid: u32) -> Target {
        Target {
            facts: facts(pid).expect("a running process"),
            cmdline: Vec::new(),
            port: 8000,
            lease_id: None,
        }
    }

    #[tokio::test]
    async fn a_process_is_claimed_once_and_the_second_caller_waits_for_the_first() {
        let claims = Claims::default();
        let me = std::process::id();
        let (mine, first, none) = claims.claim(vec![target(me)]);
        assert_eq!(mine.len(), 1);
        assert!(none.0.is_empty());

        let (theirs, second, others) = claims.claim(vec![target(me)]);
        assert!(theirs.is_empty(), "claimed twice");
        drop(second);
        let waiting = tokio::spawn(others.finished());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "did not wait for the first reap");
        drop(first);
        waiting.await.expect("the wait ends with the first reap");

        // Over: it may be claimed again.
        let (again, _claim, _) = claims.claim(vec![target(me)]);
        assert_eq!(again.len(), 1);
    }
}
