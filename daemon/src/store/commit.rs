//! What one commit writes: the changes decided since the last one, folded
//! into their net effect and written in one `BEGIN IMMEDIATE` transaction
//! on prepared, cached statements; and the pruning of old history.
//!
//! A batch holds a consistent history (decisions are submitted in the order
//! they were made), so a lease may be granted and released within it: it is
//! then inserted already ended.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::CommitError;
use crate::lease::{ActiveLease, Command, EndReason};

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new active lease.
    Grant(ActiveLease),
    /// An active lease ends.
    End {
        id: String,
        reason: EndReason,
        at: i64,
    },
    /// `portctl run` started the command `pid` (which leads its own process
    /// group) for the active lease `id`.
    Command {
        id: String,
        pid: u32,
        start_ticks: u64,
    },
    /// The lease `id` was released with `keep` at `ticks` (clock ticks after
    /// boot): its processes running then are left alone.
    Kept { id: String, ticks: u64 },
    /// `(project, name)` remembers `port`.
    Remember {
        project: String,
        name: String,
        port: u16,
        at: i64,
    },
    /// `(project, name)` remembers nothing any more.
    Forget { project: String, name: String },
    /// `project` goes by `label` in the proxy's host names, from now on.
    Label {
        project: String,
        label: String,
        at: i64,
    },
    /// A line of history.
    Event {
        at: i64,
        kind: String,
        lease_id: Option<String>,
        port: Option<u16>,
        pid: Option<u32>,
        detail: Option<String>,
    },
}

/// A lease granted in this batch, as it stands at the batch's end.
#[derive(Debug, PartialEq)]
struct Granted<'a> {
    lease: &'a ActiveLease,
    command: Option<Command>,
    ended: Option<(EndReason, i64)>,
    kept_ticks: Option<u64>,
}

/// The net effect of a run of changes.
#[derive(Default)]
struct Net<'a> {
    granted: Vec<Granted<'a>>,
    /// Ends of leases granted before this batch.
    ended: Vec<(&'a str, EndReason, i64)>,
    /// The last word on each name: the port it remembers and when it was
    /// used, or `None` when it was forgotten.
    names: HashMap<(&'a str, &'a str), Option<(u16, i64)>>,
    /// Commands registered for leases granted before this batch.
    commands: Vec<(&'a str, u32, u64)>,
    /// Releases with `keep` of leases granted before this batch.
    kept: Vec<(&'a str, u64)>,
    /// Labels given: project, label, when.
    labels: Vec<(&'a str, &'a str, i64)>,
    events: Vec<&'a Change>,
}

fn net<'a>(changes: &[&'a Change]) -> Net<'a> {
    let mut net = Net::default();
    let mut granted_at: HashMap<&str, usize> = HashMap::new();
    for change in changes {
        match change {
            Change::Grant(lease) => {
                granted_at.insert(lease.id.as_str(), net.granted.len());
                net.granted.push(Granted {
                    lease,
                    command: lease.command,
                    ended: None,
                    kept_ticks: None,
                });
            }
            Change::End { id, reason, at } => match granted_at.get(id.as_str()) {
                Some(&index) => net.granted[index].ended = Some((*reason, *at)),
                None => net.ended.push((id, *reason, *at)),
            },
            Change::Command {
                id,
                pid,
                start_ticks,
            } => match granted_at.get(id.as_str()) {
                Some(&index) => {
                    net.granted[index].command = Some(Command {
                        pid: *pid,
                        start_ticks: *start_ticks,
                    });
                }
                None => net.commands.push((id, *pid, *start_ticks)),
            },
            Change::Kept { id, ticks } => match granted_at.get(id.as_str()) {
                Some(&index) => net.granted[index].kept_ticks = Some(*ticks),
                None => net.kept.push((id, *ticks)),
            },
            Change::Remember {
                project,
                name,
                port,
                at,
            } => {
                net.names.insert((project, name), Some((*port, *at)));
            }
            Change::Forget { project, name } => {
                net.names.insert((project, name), None);
            }
            Change::Label { project, label, at } => net.labels.push((project, label, *at)),
            Change::Event { .. } => net.events.push(change),
        }
    }
    net
}

/// Writes the net effect of `changes` in one transaction.
pub(super) fn write(conn: &mut Connection, changes: &[&Change]) -> rusqlite::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let net = net(changes);
    // BEGIN and COMMIT as cached statements, like the rest: through
    // `execute_batch` SQLite would parse them again for every commit.
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let written =
        write_net(conn, &net).and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if written.is_err() && !conn.is_autocommit() {
        // The first error is the one to report.
        let _ = conn.execute_batch("ROLLBACK");
    }
    written
}

/// The statements of one transaction: `net`, written on `tx`.
fn write_net(tx: &Connection, net: &Net<'_>) -> rusqlite::Result<()> {
    // Ends first: they free ports that leases granted in this batch take.
    let mut end = tx.prepare_cached(
        "UPDATE leases SET state = 'ended', end_reason = ?2, ended_at = ?3
         WHERE id = ?1 AND state = 'active'",
    )?;
    for (id, reason, at) in &net.ended {
        end.execute(params![id, reason.as_str(), at])?;
    }
    let mut grant = tx.prepare_cached(
        "INSERT INTO leases (id, port, name, project, owner_pid, owner_start_ticks,
            owner_start_time, owner_uid, owner_sid, boot_id, state, end_reason, granted_at,
            granted_ticks, expires_at, ended_at, command_pid, command_start_ticks,
            kept_ticks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19)",
    )?;
    for granted in &net.granted {
        let (lease, owner) = (granted.lease, &granted.lease.owner);
        let state = if granted.ended.is_some() {
            "ended"
        } else {
            "active"
        };
        grant.execute(params![
            lease.id,
            lease.port,
            lease.name,
            lease.project,
            owner.id.pid,
            owner.id.start_ticks as i64,
            owner.start_time,
            owner.uid,
            owner.session,
            lease.boot_id,
            state,
            granted.ended.map(|(reason, _)| reason.as_str()),
            lease.granted_at,
            lease.granted_ticks as i64,
            lease.expires_at,
            granted.ended.map(|(_, at)| at),
            granted.command.map(|c| c.pid),
            granted.command.map(|c| c.start_ticks as i64),
            granted.kept_ticks.map(|t| t as i64),
        ])?;
    }
    // The command is recorded even if the lease has ended since: its
    // process group is how the lease's orphans are found.
    let mut command = tx.prepare_cached(
        "UPDATE leases SET command_pid = ?2, command_start_ticks = ?3 WHERE id = ?1",
    )?;
    for (id, pid, start_ticks) in &net.commands {
        command.execute(params![id, pid, *start_ticks as i64])?;
    }
    let mut kept = tx.prepare_cached("UPDATE leases SET kept_ticks = ?2 WHERE id = ?1")?;
    for (id, ticks) in &net.kept {
        kept.execute(params![id, *ticks as i64])?;
    }
    let mut remember = tx.prepare_cached(
        "INSERT INTO names (project, name, port, last_used) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (project, name) DO UPDATE
            SET port = excluded.port, last_used = excluded.last_used",
    )?;
    let mut forget = tx.prepare_cached("DELETE FROM names WHERE project = ?1 AND name = ?2")?;
    for ((project, name), last) in &net.names {
        match last {
            Some((port, at)) => remember.execute(params![project, name, port, at])?,
            None => forget.execute(params![project, name])?,
        };
    }
    let mut label =
        tx.prepare_cached("INSERT INTO labels (project, label, given_at) VALUES (?1, ?2, ?3)")?;
    for (project, text, at) in &net.labels {
        label.execute(params![project, text, at])?;
    }
    let mut record = tx.prepare_cached(
        "INSERT INTO events (at, kind, lease_id, port, pid, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for change in &net.events {
        if let Change::Event {
            at,
            kind,
            lease_id,
            port,
            pid,
            detail,
        } = change
        {
            record.execute(params![at, kind, lease_id, port, pid, detail])?;
        }
    }
    Ok(())
}

/// Drops history older than `cutoff` or past the newest `keep` rows of each
/// table; returns the rows removed.
pub(super) fn prune(conn: &mut Connection, cutoff: i64, keep: i64) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let events = tx.execute(
        "DELETE FROM events WHERE at < ?1
            OR seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![cutoff, keep],
    )?;
    let leases = tx.execute(
        "DELETE FROM leases WHERE state = 'ended' AND (ended_at < ?1 OR id IN (
            SELECT id FROM leases WHERE state = 'ended' ORDER BY ended_at DESC LIMIT -1 OFFSET ?2))",
        params![cutoff, keep],
    )?;
    tx.commit()?;
    Ok((events + leases) as u64)
}

/// What a failed commit or prune on the database at `db` tells its callers:
/// a full disk in so many words, anything else as SQLite put it.
pub(super) fn commit_error(e: &rusqlite::Error, db: &Path) -> CommitError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => CommitError::DiskFull(db.to_path_buf()),
        _ => CommitError::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::ProjectLabel;
    use crate::store::testing::{lease, open};

    #[test]
    fn a_lease_granted_and_ended_in_one_batch_is_written_ended() {
        let changes = [
            Change::End {
                id: "old".into(),
                reason: EndReason::Released,
                at: 5,
            },
            Change::Grant(lease("a", 8000)),
            Change::End {
                id: "a".into(),
                reason: EndReason::Released,
                at: 6,
            },
            Change::Grant(lease("b", 8000)),
        ];
        let refs: Vec<&Change> = changes.iter().collect();
        let net = net(&refs);
        assert_eq!(net.ended, [("old", EndReason::Released, 5)]);
        assert_eq!(net.granted.len(), 2);
        assert_eq!(net.granted[0].lease.id, "a");
        assert_eq!(net.granted[0].ended, Some((EndReason::Released, 6)));
        assert_eq!(net.granted[1].ended, None);
    }

    /// `/p`'s `api` remembers `port` from `at`.
    fn remember(port: u16, at: i64) -> Change {
        Change::Remember {
            project: "/p".into(),
            name: "api".into(),
            port,
            at,
        }
    }

    #[test]
    fn the_last_remembered_port_of_a_name_wins() {
        let changes = [remember(8000, 1), remember(8001, 2)];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], Some((8001, 2)));
    }

    #[test]
    fn a_name_forgotten_after_it_was_remembered_is_deleted_and_the_reverse() {
        let forget = Change::Forget {
            project: "/p".into(),
            name: "api".into(),
        };
        let changes = [remember(8000, 1), forget.clone()];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], None);
        let changes = [forget, remember(8001, 1)];
        let refs: Vec<&Change> = changes.iter().collect();
        assert_eq!(net(&refs).names[&("/p", "api")], Some((8001, 1)));
    }

    #[tokio::test]
    async fn a_forget_deletes_the_row_a_remember_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let (project, name) = ("/p".to_string(), "api".to_string());
        store
            .submit(vec![Change::Remember {
                project: project.clone(),
                name: name.clone(),
                port: 8000,
                at: 1,
            }])
            .committed()
            .await
            .unwrap();
        let stored = || async { store.read().await.unwrap().names(None, None).await.unwrap() };
        assert_eq!(stored().await.len(), 1);
        store
            .submit(vec![Change::Forget { project, name }])
            .committed()
            .await
            .unwrap();
        assert!(stored().await.is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn a_label_comes_back_as_written_and_a_second_project_cannot_take_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let label = |project: &str, label: &str| Change::Label {
            project: project.into(),
            label: label.into(),
            at: 1,
        };
        store
            .submit(vec![label("/a/app", "app")])
            .committed()
            .await
            .unwrap();
        let labels = store.load().await.unwrap().labels;
        let expected = ProjectLabel {
            project: "/a/app".into(),
            label: "app".into(),
        };
        assert_eq!(labels, [expected]);
        // The database holds the rule too, not only the table's code.
        let taken = store.submit(vec![label("/b/app", "app")]).committed().await;
        assert!(taken.is_err(), "a label given twice was committed");
        store.close().await;
    }

    #[tokio::test]
    async fn a_lease_comes_back_from_the_database_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let mut granted = lease("a", 8000);
        granted.name = Some("api".into());
        granted.project = Some("/p".into());
        granted.expires_at = Some(9_000);
        let command = Command {
            pid: 42,
            start_ticks: 7,
        };
        store
            .submit(vec![
                Change::Grant(granted.clone()),
                Change::Command {
                    id: "a".into(),
                    pid: command.pid,
                    start_ticks: command.start_ticks,
                },
            ])
            .committed()
            .await
            .unwrap();
        let active = store.load().await.unwrap().active;
        let registered = ActiveLease {
            command: Some(command),
            ..granted.clone()
        };
        assert_eq!(active, std::slice::from_ref(&registered));
        store
            .submit(vec![
                Change::End {
                    id: "a".into(),
                    reason: EndReason::Released,
                    at: 10_000,
                },
                Change::Kept {
                    id: "a".into(),
                    ticks: 99,
                },
            ])
            .committed()
            .await
            .unwrap();
        let mut reader = store.read().await.unwrap();
        let ended = reader.ended_by_id("a").await.unwrap();
        let expected = crate::lease::EndedLease {
            kept_ticks: Some(99),
            ..registered.end(EndReason::Released, 10_000)
        };
        assert_eq!(ended, Some(expected));
        drop(reader);
        store.close().await;
    }
}
