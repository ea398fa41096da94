//! The writer's promises, on both ways to commit (inline on the awaiting
//! thread, queued for the writer thread): a failure reaches its caller and
//! the failure hook, batches commit in the order they were submitted,
//! nothing submitted is lost, and the WAL stays bounded.

use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;

use super::{CommitError, Writer};
use crate::lease::EndReason;
use crate::store::checkpoint::MAX_WAL_FRAMES;
use crate::store::commit::Change;
use crate::store::settings::open_writer;
use crate::store::testing::{DEADLINE, active_ids, commit_leases, event, lease, open};
use crate::store::{Store, StoreError};

/// Port 0 breaks the table's CHECK constraint: its commit fails.
fn failing() -> Change {
    Change::Grant(lease("bad", 0))
}

fn end(id: &str) -> Change {
    Change::End {
        id: id.into(),
        reason: EndReason::Released,
        at: 1,
    }
}

/// Sets a failure hook on `store` that reloads the active leases from the
/// database, as the lease table's recovery does, and reports what it read.
fn reload_on_failure(store: &Store) -> mpsc::Receiver<Vec<String>> {
    let (reloaded, seen) = mpsc::channel();
    let for_hook = store.clone();
    store.on_failure(Box::new(move || {
        let (store, reloaded) = (for_hook.clone(), reloaded.clone());
        tokio::spawn(async move {
            let _ = reloaded.send(active_ids(&store).await);
        });
    }));
    seen
}

/// Waits for the hook's reload, which runs as a task of this runtime.
async fn reloaded(seen: &mpsc::Receiver<Vec<String>>) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(ids) = seen.try_recv() {
            return ids;
        }
        assert!(Instant::now() < deadline, "the failure hook never reloaded");
        tokio::task::yield_now().await;
    }
}

/// After a failure, submits until a batch commits again.
async fn writes_again(store: &Store, id: &str, port: u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match store
            .submit(vec![Change::Grant(lease(id, port))])
            .committed()
            .await
        {
            Ok(()) => return,
            Err(e) => {
                assert!(e.to_string().contains("earlier commit failed"), "{e}");
                assert!(
                    Instant::now() < deadline,
                    "no batch commits after a failure"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_failed_inline_commit_reaches_its_caller_then_the_hook_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let seen = reload_on_failure(&store);
    store
        .submit(vec![Change::Grant(lease("kept", 8000))])
        .committed()
        .await
        .unwrap();
    let failed = store.submit(vec![failing()]);
    assert!(
        failed.is_claimed(),
        "nothing queued: the commit runs inline"
    );
    let error = failed.committed().await.expect_err("the commit must fail");
    assert!(error.to_string().contains("CHECK"), "{error}");
    assert_eq!(
        reloaded(&seen).await,
        ["kept"],
        "the failed grant is not there"
    );
    writes_again(&store, "good", 8001).await;
    assert_eq!(active_ids(&store).await, ["kept", "good"]);
    store.close().await;
}

#[tokio::test]
async fn a_failed_queued_commit_reaches_its_caller_and_fails_what_was_decided_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let seen = reload_on_failure(&store);
    // The first batch claims the connection, so the next ones queue; the
    // writer thread takes the claim with them unless it commits first.
    let first = store.submit(vec![Change::Grant(lease("first", 8000))]);
    let failed = store.submit(vec![failing()]);
    let behind = store.submit(vec![Change::Grant(lease("behind", 8001))]);
    assert!(first.is_claimed() && !failed.is_claimed() && !behind.is_claimed());
    let first = first.committed().await;
    let error = failed.committed().await.expect_err("the commit must fail");
    assert!(error.to_string().contains("CHECK"), "{error}");
    assert!(
        behind.committed().await.is_err(),
        "decided on the failed state"
    );
    let expected: &[&str] = if first.is_ok() { &["first"] } else { &[] };
    assert_eq!(
        reloaded(&seen).await,
        expected,
        "the database as its callers were told"
    );
    writes_again(&store, "good", 8002).await;
    store.close().await;
}

#[tokio::test]
async fn a_failed_claim_fails_the_batches_queued_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let seen = reload_on_failure(&store);
    let failed = store.submit(vec![failing()]);
    let behind = store.submit(vec![Change::Grant(lease("behind", 8001))]);
    assert!(failed.is_claimed() && !behind.is_claimed());
    failed.committed().await.expect_err("the commit must fail");
    // Failed after the claim committed inline, or folded with it by the
    // writer thread: never written either way.
    match behind.committed().await {
        Err(StoreError::Commit(CommitError::EarlierFailed)) => {}
        Err(StoreError::Commit(CommitError::Failed(e))) if e.contains("CHECK") => {}
        other => panic!("decided on the failed state, yet {other:?}"),
    }
    assert!(reloaded(&seen).await.is_empty());
    assert!(active_ids(&store).await.is_empty());
    store.close().await;
}

#[tokio::test]
async fn batches_queued_behind_an_inline_commit_commit_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Granted, released, granted again to another lease on the same port:
    // in any other order the one-active-lease-per-port index refuses it.
    let grant = store.submit(vec![Change::Grant(lease("a", 8000))]);
    let release = store.submit(vec![end("a")]);
    let again = store.submit(vec![Change::Grant(lease("b", 8000))]);
    assert!(grant.is_claimed() && !release.is_claimed() && !again.is_claimed());
    grant.committed().await.unwrap();
    release.committed().await.unwrap();
    again.committed().await.unwrap();
    assert_eq!(active_ids(&store).await, ["b"]);
    let mut reader = store.read().await.unwrap();
    assert!(reader.ended_by_id("a").await.unwrap().is_some());
    drop(reader);
    store.close().await;
}

#[tokio::test]
async fn after_changes_waited_behind_a_commit_they_go_to_the_writer_thread_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let first = store.submit(vec![Change::Grant(lease("a", 8000))]);
    let behind = store.submit(vec![Change::Grant(lease("b", 8001))]);
    assert!(first.is_claimed() && !behind.is_claimed());
    first.committed().await.unwrap();
    behind.committed().await.unwrap();
    // Alone now, but within CONTENDED_FOR of a commit that had company:
    // queued, to be folded with whatever comes next.
    let contended_at = Instant::now();
    let next = store.submit(vec![Change::Grant(lease("c", 8002))]);
    let queued = !next.is_claimed();
    next.committed().await.unwrap();
    assert!(
        queued || contended_at.elapsed() >= super::CONTENDED_FOR,
        "a change right after contention was committed inline"
    );
    // Once that has passed with nothing waiting, inline again.
    let deadline = Instant::now() + DEADLINE;
    for port in 8003.. {
        let alone = store.submit(vec![Change::Grant(lease(&format!("l{port}"), port))]);
        let claimed = alone.is_claimed();
        alone.committed().await.unwrap();
        if claimed {
            break;
        }
        assert!(Instant::now() < deadline, "never committed inline again");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(active_ids(&store).await.len() >= 4);
    store.close().await;
}

#[tokio::test]
async fn an_inline_batch_nobody_awaits_is_committed_before_what_came_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let dropped = store.submit(vec![Change::Grant(lease("a", 8000))]);
    let release = store.submit(vec![end("a")]);
    assert!(dropped.is_claimed());
    drop(dropped);
    release.committed().await.unwrap();
    let mut reader = store.read().await.unwrap();
    let ended = reader.ended_by_id("a").await.unwrap();
    assert!(ended.is_some(), "the grant was written, then its end");
    drop(reader);
    store.close().await;
}

#[tokio::test]
async fn a_claim_nobody_awaits_is_committed_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let dropped = store.submit(vec![Change::Grant(lease("a", 8000))]);
    assert!(dropped.is_claimed());
    drop(dropped);
    // Read without the writer: nothing else asks it to commit.
    let deadline = Instant::now() + DEADLINE;
    while active_ids(&store).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped grant was never written"
        );
        tokio::task::yield_now().await;
    }
    store.close().await;
}

#[tokio::test]
async fn a_barrier_waits_only_while_a_commit_is_running_or_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(
        store.barrier().is_done(),
        "nothing submitted: nothing to wait for"
    );
    let grant = store.submit(vec![Change::Grant(lease("a", 8000))]);
    let barrier = store.barrier();
    assert!(!barrier.is_done(), "the grant is not committed yet");
    grant.committed().await.unwrap();
    barrier.committed().await.unwrap();
    assert!(store.barrier().is_done());
    store.close().await;
}

#[tokio::test]
async fn a_full_disk_is_told_apart_from_other_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // SQLITE_FULL, as a full file system gives it: a writer whose
    // database may not grow by a page (SQLite raises the limit to the
    // pages the file has).
    let conn = open_writer(store.path()).unwrap();
    conn.execute_batch("PRAGMA max_page_count = 1").unwrap();
    let writer = Writer::spawn(
        conn,
        open_writer(store.path()).unwrap(),
        store.path().to_path_buf(),
    )
    .unwrap();
    let mut error = None;
    for at in 0..10_000 {
        if let Err(e) = writer.submit(vec![event(at)]).committed().await {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("10,000 events fit in a database that may not grow");
    match &error {
        StoreError::Commit(CommitError::DiskFull(path)) => assert_eq!(path, store.path()),
        other => panic!("expected a full disk, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("disk is full"), "{message}");
    assert!(
        message.contains(&store.path().display().to_string()),
        "{message}"
    );
    writer.close().await;
    store.close().await;
}

#[tokio::test]
async fn after_close_nothing_more_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let before = store.submit(vec![Change::Grant(lease("before", 8000))]);
    let queued = store.submit(vec![Change::Grant(lease("queued", 8001))]);
    store.close().await;
    before
        .committed()
        .await
        .expect("submitted before the close");
    queued.committed().await.expect("queued before the close");
    let after = store.submit(vec![Change::Grant(lease("after", 8002))]);
    let error = after.committed().await.expect_err("the writer is gone");
    assert!(error.to_string().contains("stopped"), "{error}");
    assert!(store.prune(i64::MAX, 0).await.is_err());
    drop(store);
    let reopened = open(dir.path()).await;
    assert_eq!(active_ids(&reopened).await, ["before", "queued"]);
    reopened.close().await;
}

#[tokio::test]
async fn prune_drops_history_past_the_cutoff_and_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let changes: Vec<Change> = (1..=10).map(event).collect();
    store.submit(changes).committed().await.unwrap();
    // Older than 4: 1, 2, 3; of the rest, only the newest 5 are kept.
    assert_eq!(store.prune(4, 5).await.unwrap(), 5);
    let mut reader = store.read().await.unwrap();
    assert_eq!(reader.event_count().await.unwrap(), 5);
    let newest = reader.events_since(6, 100).await.unwrap();
    assert_eq!(newest.len(), 5, "the five left are the newest: {newest:?}");
    drop(reader);
    store.close().await;
}

/// A writer whose checkpoint thread never copies a frame (its connection
/// is read-only), as under writes that never pause, over `store`'s
/// database.
fn writer_without_checkpoints(store: &Store) -> Writer {
    let read_only =
        Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    Writer::spawn(
        open_writer(store.path()).unwrap(),
        read_only,
        store.path().to_path_buf(),
    )
    .unwrap()
}

/// Asserts that the WAL stays within its bound (with room for one commit
/// that finds the checkpoint busy) while `write` commits 4,000 leases,
/// calling back after each step.
async fn assert_wal_bounded<F: std::future::Future<Output = ()>>(
    dir: &std::path::Path,
    write: impl FnOnce(Box<dyn FnMut()>) -> F,
) {
    let wal = dir.join("portd.db-wal");
    let frame = 24 + 4096;
    let bound = MAX_WAL_FRAMES as u64 * 3 / 2 * frame;
    let largest = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = std::rc::Rc::clone(&largest);
    write(Box::new(move || {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        seen.set(seen.get().max(size));
    }))
    .await;
    let largest = largest.get();
    assert!(
        largest > bound / 2,
        "the WAL reached only {largest} bytes: the test wrote too little to tell"
    );
    assert!(
        largest <= bound,
        "the WAL grew to {largest} bytes, over {bound}"
    );
}

#[tokio::test]
async fn inline_commits_bound_the_wal_when_the_checkpoint_thread_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let writer = writer_without_checkpoints(&store);
    assert_wal_bounded(dir.path(), |after| {
        commit_leases(|c| writer.submit(c), 4_000, after)
    })
    .await;
    writer.close().await;
    store.close().await;
}

#[tokio::test]
async fn queued_commits_bound_the_wal_when_the_checkpoint_thread_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let writer = writer_without_checkpoints(&store);
    let submit = |changes| writer.submit(changes);
    assert_wal_bounded(dir.path(), |mut after| async move {
        // Two at a time: the second queues behind the first, for the
        // writer thread.
        for i in 0..2_000u16 {
            let pair = [2 * i, 2 * i + 1].map(|n| {
                let granted = lease(&format!("lease-{n:05}"), 10_000 + n);
                submit(vec![Change::Grant(granted), event(i64::from(n))])
            });
            let [first, second] = pair;
            assert!(!second.is_claimed());
            first.committed().await.unwrap();
            second.committed().await.unwrap();
            after();
        }
    })
    .await;
    writer.close().await;
    store.close().await;
}
