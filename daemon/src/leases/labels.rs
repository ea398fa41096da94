//! Project labels: the `LABEL` of `NAME.LABEL.localhost`. A project gets
//! one with its first named lease (or at start-up, for a project whose
//! names are older than labels) and keeps it; no two projects share one.
//! The label is the project directory's name in `[a-z0-9-]`, with `-2`,
//! `-3`, ... when another project already has it (two worktrees of one
//! repository checked out under the same directory name).

use super::{Leases, Table};
use crate::store::{Change, StoreError};
use crate::time::now_ms;

/// DNS allows 63 bytes in a label.
const MAX_LABEL: usize = 63;
/// The label of a project whose directory name has no letter or digit.
const FALLBACK: &str = "project";

/// A project directory's name as a host-name label: lowercase ASCII
/// letters and digits, every other run of characters one `-`, none at the
/// ends, at most `max` bytes.
fn base_label(project: &str, max: usize) -> String {
    let dir = project
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let mut label = String::with_capacity(dir.len().min(max));
    for c in dir.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            label.push(c);
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
        if label.len() >= max {
            break;
        }
    }
    let label = label.trim_end_matches('-');
    match label.is_empty() {
        true => FALLBACK.to_string(),
        false => label.to_string(),
    }
}

/// The label for `project` that `taken` does not hold: its base label, else
/// the first free of `base-2`, `base-3`, ... (the base shortened so that
/// the whole fits in 63 bytes).
pub fn new_label(project: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = base_label(project, MAX_LABEL);
    if !taken(&base) {
        return base;
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let short = base_label(project, MAX_LABEL - suffix.len());
            format!("{short}{suffix}")
        })
        .find(|label| !taken(label))
        .expect("some suffix is free")
}

/// Gives `project` a label if it has none, in `table` and as a change for
/// the writer.
pub(super) fn ensure_label(table: &mut Table, project: &str, now: i64, changes: &mut Vec<Change>) {
    if table.label_of(project).is_some() {
        return;
    }
    let label = new_label(project, |l| table.project_of(l).is_some());
    table.give_label(project.to_string(), label.clone());
    changes.push(Change::Label {
        project: project.to_string(),
        label,
        at: now,
    });
}

impl Leases {
    /// Labels the projects that remember names but have no label yet (their
    /// names are older than labels), in the order of their paths, so that
    /// every name the proxy can route has its host name.
    pub(super) async fn label_every_project(&self) -> Result<(), StoreError> {
        let submitted = {
            let mut table = self.table();
            let mut projects: Vec<String> = table
                .names()
                .map(|(project, _)| project)
                .chain(table.active().filter_map(|l| l.project.as_deref()))
                .filter(|project| table.label_of(project).is_none())
                .map(String::from)
                .collect();
            if projects.is_empty() {
                return Ok(());
            }
            projects.sort();
            projects.dedup();
            let (now, mut changes) = (now_ms(), Vec::new());
            for project in &projects {
                ensure_label(&mut table, project, now, &mut changes);
            }
            self.store.submit(changes)
        };
        submitted.committed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_directory_name_in_lowercase_letters_digits_and_dashes() {
        let label = |project| new_label(project, |_| false);
        assert_eq!(label("/home/me/src/MyApp"), "myapp");
        assert_eq!(label("/home/me/src/my_app.v2/"), "my-app-v2");
        assert_eq!(label("/srv/--Shop  Front--"), "shop-front");
        assert_eq!(label("/srv/café"), "caf");
        assert_eq!(label("/srv/日本"), "project");
        assert_eq!(label("/"), "project");
        let long = format!("/srv/{}", "a".repeat(100));
        assert_eq!(label(&long), "a".repeat(63));
    }

    #[test]
    fn a_label_another_project_holds_gets_the_first_free_suffix() {
        let taken = ["app", "app-2"];
        let label = new_label("/b/app", |l| taken.contains(&l));
        assert_eq!(label, "app-3");
        let long = format!("/srv/{}", "b".repeat(70));
        let label = new_label(&long, |l| l.len() == 63 && !l.contains('-'));
        assert_eq!(label, format!("{}-2", "b".repeat(61)));
        assert_eq!(label.len(), 63);
    }

    #[test]
    fn labels_are_given_once_and_never_change() {
        let mut table = Table::default();
        let mut changes = Vec::new();
        ensure_label(&mut table, "/a/app", 1, &mut changes);
        ensure_label(&mut table, "/b/app", 1, &mut changes);
        ensure_label(&mut table, "/a/app", 2, &mut changes);
        assert_eq!(table.label_of("/a/app"), Some("app"));
        assert_eq!(table.label_of("/b/app"), Some("app-2"));
        assert_eq!(table.project_of("app-2"), Some("/b/app"));
        assert_eq!(changes.len(), 2, "{changes:?}");
    }
}
