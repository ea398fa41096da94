//! What the store's tests share: a store in a temp directory, and leases
//! and events to write.

use std::path::Path;
use std::time::Duration;

use super::{Change, Pending, Store};
use crate::lease::ActiveLease;

/// The longest a test waits for the writer's threads.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn open(dir: &Path) -> Store {
    Store::open(&dir.join("portd.db")).await.expect("open")
}

/// An active lease `id` on `port`.
pub fn lease(id: &str, port: u16) -> ActiveLease {
    ActiveLease {
        id: id.into(),
        ..crate::lease::testing::lease(port, 1, None)
    }
}

pub fn event(at: i64) -> Change {
    Change::Event {
        at,
        kind: "granted".into(),
        lease_id: None,
        port: Some(8000),
        pid: Some(1),
        detail: None,
    }
}

/// The ids of the active leases `store` holds, by port.
pub async fn active_ids(store: &Store) -> Vec<String> {
    let active = store.load().await.expect("load").active;
    active.into_iter().map(|l| l.id).collect()
}

/// Grants `count` leases, one commit each through `submit`, calling `after`
/// after each.
pub async fn commit_leases(
    submit: impl Fn(Vec<Change>) -> Pending,
    count: u16,
    mut after: impl FnMut(),
) {
    for i in 0..count {
        let granted = lease(&format!("lease-{i:05}"), 10_000 + i);
        submit(vec![Change::Grant(granted), event(i64::from(i))])
            .committed()
            .await
            .unwrap();
        after();
    }
}
