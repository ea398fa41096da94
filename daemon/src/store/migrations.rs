//! Migrations keep what a database already holds: a database made by the
//! migrations before the last one, with leases and events in it, opens with
//! the same leases, the same history and the same rules.

use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;

use super::testing::{event, lease, open};
use super::{Change, settings};

/// Every migration file but the newest, copied into `dir`.
fn all_but_the_last(dir: &Path) -> usize {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files.pop();
    std::fs::create_dir(dir).unwrap();
    for file in &files {
        std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    }
    files.len()
}

#[tokio::test]
async fn the_newest_migration_keeps_leases_history_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("portd.db");
    let older = dir.path().join("older");
    assert!(all_but_the_last(&older) >= 4);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(settings::sqlx_options(&db))
        .await
        .unwrap();
    Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (id, port, state, reason, ended_at) in [
        ("active-1", 8000, "active", None, None),
        ("ended-1", 8001, "ended", Some("released"), Some(5_000)),
    ] {
        sqlx::query(
            "INSERT INTO leases (id, port, name, project, owner_pid, owner_start_ticks,
                owner_start_time, owner_uid, owner_sid, boot_id, state, end_reason,
                granted_at, granted_ticks, expires_at, ended_at, command_pid,
                command_start_ticks, kept_ticks)
             VALUES (?1, ?2, 'api', '/src/app', 4242, 77, 1.5, 1000, 4200, 'boot', ?3, ?4,
                1000, 70, NULL, ?5, 4243, 78, NULL)",
        )
        .bind(id)
        .bind(port)
        .bind(state)
        .bind(reason)
        .bind(ended_at)
        .execute(&pool)
        .await
        .unwrap();
    }
    for at in [1_000, 5_000] {
        sqlx::query(
            "INSERT INTO events (at, kind, lease_id, port) VALUES (?1, 'granted', 'x', 8000)",
        )
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = open(dir.path()).await;
    let active = store.load().await.unwrap().active;
    assert_eq!(active.len(), 1, "{active:?}");
    let kept = &active[0];
    assert_eq!((kept.id.as_str(), kept.port), ("active-1", 8000));
    assert_eq!(kept.name.as_deref(), Some("api"));
    assert_eq!(kept.owner.id.pid, 4242);
    assert_eq!(kept.owner.id.start_ticks, 77);
    let mut reader = store.read().await.unwrap();
    let ended = reader
        .ended_by_id("ended-1")
        .await
        .unwrap()
        .expect("the ended lease");
    assert_eq!(ended.lease.port, 8001);
    let events = reader.events_since(0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    drop(reader);

    // History goes on numbering after what was there.
    store.submit(vec![event(9_000)]).committed().await.unwrap();
    let events = store
        .read()
        .await
        .unwrap()
        .events_since(9_000, 10)
        .await
        .unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);

    // At most one active lease per port, still enforced by the database.
    let twin = store.submit(vec![Change::Grant(lease("active-2", 8000))]);
    assert!(
        twin.committed().await.is_err(),
        "a second active lease on 8000"
    );
    let other = store.submit(vec![Change::Grant(lease("active-3", 8002))]);
    other.committed().await.unwrap();
    store.close().await;
}
