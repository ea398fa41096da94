//! What the store's tests share: a store in a temp directory, and leases
//! and events to write.

use std::path::Path;
use std::time::Duration;

use super::{Change, Pending, Store};
use crate::lease::{ActiveLease, Owner, OwnerId};

/// The longest a test waits for the writer's threads.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn open(dir: &Path) -> Store {
    Store::open(&dir.join("portd.db")).await.expect("open")
}

/// An active lease `id` on `port`.
pub fn lease(id: &str, port: u16) -> ActiveLease {
    ActiveLease {
        id: id.into(),
        port,
        name: None,
        project: None,
        owner: Owner {
            id: OwnerId {
                pid: 1,
                start_ticks: 1,
            },
            start_time: 1.0,
            uid: 0,
            session: 1,
        },
        boot_id: "b".into(),
        granted_at: 1,
        granted_ticks: 1,
        expires_at: None,
        command: None,
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
