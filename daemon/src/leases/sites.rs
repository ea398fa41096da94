//! What the `.localhost` proxy reads of the table, and nothing it could
//! change: where a host name leads (`NAME.LABEL` or a unique `NAME`), the
//! names a help page lists, and how a name's last lease ended. The URL a
//! name has (`GET /v1/url`) is read here too.

use super::{LeaseError, Leases};
use crate::lease::EndedLease;

/// A part of a host name that a lease's name or a project's label can be:
/// 1-63 lowercase letters, digits and `-`, no `-` at either end.
pub fn is_host_label(part: &str) -> bool {
    (1..=63).contains(&part.len())
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

/// `http://NAME.LABEL.localhost:PORT/`, if NAME can be a host name.
pub fn site_url(name: &str, label: &str, port: u16) -> Option<String> {
    is_host_label(name).then(|| format!("http://{name}.{label}.localhost:{port}/"))
}

/// Where a host name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The name's active lease: forward to its port.
    Active { port: u16, lease_id: String },
    /// A name its project knows (it remembers a port) with no active lease.
    Idle {
        project: String,
        label: String,
        name: String,
    },
    /// The project is known by its label; the name is not.
    UnknownName { label: String },
    /// No project goes by the label, or no project knows the bare name.
    Unknown,
    /// A bare name active in more than one project.
    Ambiguous,
}

/// A name as a help page lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SiteEntry {
    pub label: String,
    pub name: String,
    /// It has an active lease.
    pub active: bool,
}

impl Leases {
    /// Where `NAME.LABEL` (`label` given) or the bare `NAME` leads. A bare
    /// name leads to its active lease when exactly one project has one, else
    /// to the one project that knows it.
    pub fn site(&self, name: &str, label: Option<&str>) -> Site {
        let table = self.table();
        let project = match label {
            Some(label) => match table.project_of(label) {
                Some(project) => project.to_string(),
                None => return Site::Unknown,
            },
            None => {
                let mut active = table
                    .active()
                    .filter(|l| l.name.as_deref() == Some(name) && l.project.is_some());
                match (active.next(), active.next()) {
                    (Some(lease), None) => {
                        return Site::Active {
                            port: lease.port,
                            lease_id: lease.id.clone(),
                        };
                    }
                    (Some(_), Some(_)) => return Site::Ambiguous,
                    (None, _) => {}
                }
                let mut known = table.names().filter(|(_, n)| *n == name);
                match (known.next(), known.next()) {
                    (Some((project, _)), None) => project.to_string(),
                    _ => return Site::Unknown,
                }
            }
        };
        if let Some(lease) = table.by_name(&project, name) {
            return Site::Active {
                port: lease.port,
                lease_id: lease.id.clone(),
            };
        }
        let Some(label) = table.label_of(&project).map(String::from) else {
            return Site::Unknown;
        };
        match table.remembered(&project, name) {
            Some(_) => Site::Idle {
                project,
                label,
                name: name.to_string(),
            },
            None => Site::UnknownName { label },
        }
    }

    /// The names of the project labelled `label` (of every labelled project
    /// if `None`), by label and name.
    pub fn sites(&self, label: Option<&str>) -> Vec<SiteEntry> {
        let table = self.table();
        let mut entries: Vec<SiteEntry> = table
            .names()
            .chain(
                table
                    .active()
                    .filter_map(|l| Some((l.project.as_deref()?, l.name.as_deref()?))),
            )
            .filter_map(|(project, name)| {
                let project_label = table.label_of(project)?;
                (label.is_none() || label == Some(project_label)).then(|| SiteEntry {
                    label: project_label.to_string(),
                    name: name.to_string(),
                    active: table.by_name(project, name).is_some(),
                })
            })
            .collect();
        entries.sort();
        entries.dedup();
        entries
    }

    /// The last lease of `name` in `project` that ended, if history has it.
    pub async fn last_end(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<EndedLease>, LeaseError> {
        Ok(self
            .store
            .read()
            .await?
            .last_ended_named(project, name)
            .await?)
    }

    /// The label of the project `name` belongs to, and the port of its
    /// active lease if it has one; 404 for a name the project does not
    /// know (neither leased nor remembered).
    pub fn name_site(
        &self,
        project: &str,
        name: &str,
    ) -> Result<(String, Option<u16>), LeaseError> {
        let table = self.table();
        let port = table.by_name(project, name).map(|l| l.port);
        let known = port.is_some() || table.remembered(project, name).is_some();
        match (known, table.label_of(project)) {
            (true, Some(label)) => Ok((label.to_string(), port)),
            _ => Err(LeaseError::NotFound(format!(
                "no name '{name}' in {project}: lease it first (portctl run --name {name} -- ...)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_label_is_what_dns_allows_in_lowercase() {
        assert!(is_host_label("api") && is_host_label("my-app-2"));
        assert!(!is_host_label("My") && !is_host_label("a_b") && !is_host_label("-a"));
        assert!(is_host_label(&"a".repeat(63)) && !is_host_label(&"a".repeat(64)));
    }
}
