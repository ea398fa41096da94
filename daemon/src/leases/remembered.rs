//! Remembered names: listed with their active leases, forgotten on request,
//! and pruned when their project directory is gone or they have not been
//! used for long. A name lives in the table (for grants) and in SQLite (for
//! restarts): both change together, under the table's lock and through the
//! writer, never one alone.

use std::time::Duration;

use portd_api::{Lease, NameEntry};

use super::{LeaseError, Leases, Table};
use crate::lease::{ActiveLease, RememberedName};
use crate::store::{Change, Pending};
use crate::task;
use crate::time::now_ms;

impl Leases {
    /// The names of `project` (every project's if `None`), only `name` if
    /// given, each with its active lease.
    pub async fn names(
        &self,
        project: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<NameEntry>, LeaseError> {
        let rows = self.stored_names(project, name).await?;
        let table = self.table();
        Ok(rows
            .iter()
            .map(|row| row.to_api(active_lease(&table, row)))
            .collect())
    }

    /// Forgets the names of `project` (only `name`, if given); returns them.
    /// A name with an active lease is not forgotten, and then neither is
    /// any other: the answer is all or nothing.
    pub async fn forget_names(
        &self,
        project: &str,
        name: Option<&str>,
    ) -> Result<Vec<NameEntry>, LeaseError> {
        let rows = self.stored_names(Some(project), name).await?;
        if rows.is_empty() {
            return Err(LeaseError::NotFound(match name {
                Some(name) => format!("no name '{name}' is remembered in {project}"),
                None => format!("no names are remembered in {project}"),
            }));
        }
        let (forgotten, pending) = {
            let mut table = self.table_for_change()?;
            let leased = rows
                .iter()
                .find_map(|row| table.by_name(&row.project, &row.name).map(|l| (row, l)));
            if let Some((row, lease)) = leased {
                return Err(LeaseError::NameTaken {
                    name: row.name.clone(),
                    lease: Box::new(lease.to_api()),
                });
            }
            self.forget_in(&mut table, rows)
        };
        pending.committed().await?;
        Ok(forgotten)
    }

    /// Forgets the names whose project directory is gone or that have not
    /// had a lease for `max_age`, except those leased now and those used
    /// at or after `used_since` (Unix ms); returns them.
    pub async fn prune_names(
        &self,
        max_age: Duration,
        used_since: i64,
    ) -> Result<Vec<NameEntry>, LeaseError> {
        let cutoff = now_ms() - max_age.as_millis() as i64;
        let rows = self.stored_names(None, None).await?;
        // stat() may block (a slow mount): off the runtime's threads.
        let stale: Vec<RememberedName> =
            task::blocking("checking project directories", move || {
                rows.into_iter()
                    .filter(|row| row.last_used < used_since)
                    .filter(|row| row.last_used < cutoff || project_gone(&row.project))
                    .collect()
            })
            .await?;
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let (forgotten, pending) = {
            let mut table = self.table_for_change()?;
            // Leased now, or remembering another port than was read (a
            // grant since): in use, kept.
            let stale = stale
                .into_iter()
                .filter(|row| {
                    table.by_name(&row.project, &row.name).is_none()
                        && table.remembered(&row.project, &row.name) == Some(row.port)
                })
                .collect();
            self.forget_in(&mut table, stale)
        };
        pending.committed().await?;
        Ok(forgotten)
    }

    /// Names as SQLite has them once every change decided so far is in.
    async fn stored_names(
        &self,
        project: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<RememberedName>, LeaseError> {
        Ok(self.store.read().await?.names(project, name).await?)
    }

    /// Forgets `rows` in the table and queues the same for SQLite, under the
    /// caller's lock on the table. A row the table no longer remembers
    /// (forgotten meanwhile) is skipped.
    fn forget_in(&self, table: &mut Table, rows: Vec<RememberedName>) -> (Vec<NameEntry>, Pending) {
        let mut changes = Vec::new();
        let mut forgotten = Vec::new();
        for mut row in rows {
            let Some(port) = table.forget(&row.project, &row.name) else {
                continue;
            };
            row.port = port;
            tracing::info!(project = %row.project, name = %row.name, port, "name forgotten");
            changes.push(Change::Forget {
                project: row.project.clone(),
                name: row.name.clone(),
            });
            forgotten.push(row.to_api(None));
        }
        (forgotten, self.store.submit(changes))
    }
}

fn active_lease(table: &Table, row: &RememberedName) -> Option<Lease> {
    table
        .by_name(&row.project, &row.name)
        .map(ActiveLease::to_api)
}

/// True when `project` is no longer a directory. Any other failure (no
/// permission, an unmounted drive that errs otherwise) keeps its names.
fn project_gone(project: &str) -> bool {
    match std::fs::metadata(project) {
        Ok(meta) => !meta.is_dir(),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_gone_only_when_its_directory_is() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("app");
        std::fs::create_dir(&project).unwrap();
        let text = project.to_str().unwrap();
        assert!(!project_gone(text));
        std::fs::remove_dir(&project).unwrap();
        assert!(project_gone(text));
        std::fs::write(&project, "a file now").unwrap();
        assert!(project_gone(text));
        assert!(project_gone(&format!("{text}/below-a-file")));
    }
}
