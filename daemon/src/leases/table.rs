//! The live state in memory: active leases (`lease::ActiveLease`) by port,
//! by owner and by name, the ports that names remember, and the projects'
//! labels. Every decision
//! reads this table under one lock; SQLite is where it is made durable
//! (`store::writer`), and the table is loaded from SQLite at start-up.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::lease::{ActiveLease, Command, OwnerId, ProjectLabel, RememberedName};

type NameKey = (String, String);

#[derive(Debug, Default)]
pub struct Table {
    active: BTreeMap<u16, ActiveLease>,
    by_owner: HashMap<OwnerId, BTreeSet<u16>>,
    /// (project, name) -> port of its active lease.
    by_name: HashMap<NameKey, u16>,
    /// (project, name) -> the port it remembers.
    names: HashMap<NameKey, u16>,
    /// port -> how many names remember it.
    remembered: BTreeMap<u16, u32>,
    /// project -> its label, and back.
    labels: HashMap<String, String>,
    projects: BTreeMap<String, String>,
    /// Set after a failed commit until the table is reloaded from SQLite:
    /// no decision may be made on it meanwhile.
    pub stale: bool,
}

fn key(project: &str, name: &str) -> NameKey {
    (project.to_string(), name.to_string())
}

impl Table {
    /// A table holding `active` leases, the ports `names` remember and the
    /// projects' `labels`.
    pub fn load(
        active: Vec<ActiveLease>,
        names: Vec<RememberedName>,
        labels: Vec<ProjectLabel>,
    ) -> Table {
        let mut table = Table::default();
        for given in labels {
            table.give_label(given.project, given.label);
        }
        for name in names {
            table.remember(&name.project, &name.name, name.port);
        }
        for lease in active {
            table.insert(lease);
        }
        table
    }

    pub fn get(&self, port: u16) -> Option<&ActiveLease> {
        self.active.get(&port)
    }

    /// Active leases by port.
    pub fn active(&self) -> impl Iterator<Item = &ActiveLease> {
        self.active.values()
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    pub fn by_name(&self, project: &str, name: &str) -> Option<&ActiveLease> {
        self.by_name
            .get(&key(project, name))
            .and_then(|port| self.active.get(port))
    }

    /// The port `(project, name)` remembers.
    pub fn remembered(&self, project: &str, name: &str) -> Option<u16> {
        self.names.get(&key(project, name)).copied()
    }

    /// Ports in `lo..=hi` that names other than `except` remember.
    pub fn remembered_by_others(
        &self,
        lo: u16,
        hi: u16,
        except: Option<(&str, &str)>,
    ) -> HashSet<u16> {
        let own = except.and_then(|(project, name)| self.remembered(project, name));
        self.remembered
            .range(lo..=hi)
            .filter(|&(port, count)| Some(*port) != own || *count > 1)
            .map(|(port, _)| *port)
            .collect()
    }

    /// A `(project, name)` that remembers `port`: one of `project`'s if it
    /// has one, else the first in order.
    pub fn home_of(&self, port: u16, project: Option<&str>) -> Option<(String, String)> {
        self.names
            .iter()
            .filter(|(_, p)| **p == port)
            .map(|(key, _)| key)
            .min_by_key(|(p, n)| (Some(p.as_str()) != project, p.as_str(), n.as_str()))
            .cloned()
    }

    /// Every remembered `(project, name)`, in no order.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.keys().map(|(p, n)| (p.as_str(), n.as_str()))
    }

    /// The label `project` goes by.
    pub fn label_of(&self, project: &str) -> Option<&str> {
        self.labels.get(project).map(String::as_str)
    }

    /// The project that goes by `label`.
    pub fn project_of(&self, label: &str) -> Option<&str> {
        self.projects.get(label).map(String::as_str)
    }

    /// Every label and its project, by label.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.projects.iter().map(|(l, p)| (l.as_str(), p.as_str()))
    }

    /// Gives `project` the `label`: neither may have one yet.
    pub fn give_label(&mut self, project: String, label: String) {
        debug_assert!(
            !self.projects.contains_key(&label),
            "label {label} given twice"
        );
        self.projects.insert(label.clone(), project.clone());
        self.labels.insert(project, label);
    }

    /// Ports of `owner`'s active leases.
    pub fn ports_of(&self, owner: OwnerId) -> Vec<u16> {
        self.by_owner
            .get(&owner)
            .map(|ports| ports.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Distinct owners of active leases.
    pub fn owners(&self) -> Vec<OwnerId> {
        self.by_owner.keys().copied().collect()
    }

    /// Ports whose lease expires at or before `now_ms`.
    pub fn expired(&self, now_ms: i64) -> Vec<u16> {
        self.active
            .values()
            .filter(|l| l.expires_at.is_some_and(|at| at <= now_ms))
            .map(|l| l.port)
            .collect()
    }

    /// Adds an active lease. The port must be free in the table.
    pub fn insert(&mut self, lease: ActiveLease) {
        let port = lease.port;
        debug_assert!(!self.active.contains_key(&port), "port {port} leased twice");
        self.by_owner
            .entry(lease.owner.id)
            .or_default()
            .insert(port);
        if let (Some(project), Some(name)) = (&lease.project, &lease.name) {
            self.by_name.insert(key(project, name), port);
        }
        self.active.insert(port, lease);
    }

    /// Removes the active lease on `port`.
    pub fn remove(&mut self, port: u16) -> Option<ActiveLease> {
        let lease = self.active.remove(&port)?;
        if let Some(ports) = self.by_owner.get_mut(&lease.owner.id) {
            ports.remove(&port);
            if ports.is_empty() {
                self.by_owner.remove(&lease.owner.id);
            }
        }
        if let (Some(project), Some(name)) = (&lease.project, &lease.name) {
            let k = key(project, name);
            if self.by_name.get(&k) == Some(&port) {
                self.by_name.remove(&k);
            }
        }
        Some(lease)
    }

    /// Records the command `portctl run` started for the active lease on
    /// `port`.
    pub fn set_command(&mut self, port: u16, command: Command) {
        if let Some(lease) = self.active.get_mut(&port) {
            lease.command = Some(command);
        }
    }

    /// Makes `(project, name)` remember `port`.
    pub fn remember(&mut self, project: &str, name: &str, port: u16) {
        if let Some(old) = self.names.insert(key(project, name), port) {
            self.unremember(old);
        }
        *self.remembered.entry(port).or_default() += 1;
    }

    /// Forgets what `(project, name)` remembers; returns the port it had.
    pub fn forget(&mut self, project: &str, name: &str) -> Option<u16> {
        let port = self.names.remove(&key(project, name))?;
        self.unremember(port);
        Some(port)
    }

    fn unremember(&mut self, port: u16) {
        if let Some(count) = self.remembered.get_mut(&port) {
            *count -= 1;
            if *count == 0 {
                self.remembered.remove(&port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::testing::lease as row;

    #[test]
    fn indexes_follow_inserts_and_removes() {
        let mut t = Table::default();
        t.insert(row(8000, 1, Some("api")));
        t.insert(row(8001, 1, None));
        let owner = OwnerId {
            pid: 1,
            start_ticks: 1,
        };
        assert_eq!(t.ports_of(owner), [8000, 8001]);
        assert_eq!(t.by_name("/p", "api").map(|l| l.port), Some(8000));
        assert_eq!(t.remove(8000).map(|l| l.port), Some(8000));
        assert!(t.by_name("/p", "api").is_none());
        assert_eq!(t.ports_of(owner), [8001]);
        t.remove(8001);
        assert!(t.owners().is_empty() && t.is_empty());
    }

    #[test]
    fn remembered_ports_count_every_name_but_the_asking_one() {
        let mut t = Table::default();
        t.remember("/p", "api", 8000);
        t.remember("/p", "web", 8001);
        assert_eq!(
            t.remembered_by_others(8000, 8010, Some(("/p", "api"))),
            HashSet::from([8001])
        );
        t.remember("/p", "api", 8002);
        assert_eq!(
            t.remembered_by_others(8000, 8010, None),
            HashSet::from([8001, 8002])
        );
        // Two names on one port: the port stays remembered for the other.
        t.remember("/q", "api", 8001);
        assert_eq!(
            t.remembered_by_others(8000, 8010, Some(("/p", "web"))),
            HashSet::from([8001, 8002])
        );
    }

    #[test]
    fn a_forgotten_name_no_longer_keeps_its_port_from_scans() {
        let mut t = Table::default();
        t.remember("/p", "api", 8000);
        t.remember("/q", "api", 8000);
        t.remember("/p", "web", 8001);
        assert_eq!(t.forget("/p", "api"), Some(8000));
        assert_eq!(t.forget("/p", "api"), None, "forgotten once");
        assert_eq!(t.remembered("/p", "api"), None);
        // /q's api still remembers 8000.
        assert_eq!(
            t.remembered_by_others(8000, 8010, None),
            HashSet::from([8000, 8001])
        );
        t.forget("/q", "api");
        assert_eq!(
            t.remembered_by_others(8000, 8010, None),
            HashSet::from([8001])
        );
        assert_eq!(t.name_count(), 1);
    }

    #[test]
    fn a_home_is_named_from_the_asking_project_first() {
        let mut t = Table::default();
        t.remember("/a", "web", 8001);
        t.remember("/b", "docs", 8001);
        t.remember("/b", "api", 8002);
        let named = |project| t.home_of(8001, project);
        assert_eq!(named(Some("/b")), Some(("/b".into(), "docs".into())));
        assert_eq!(named(Some("/c")), Some(("/a".into(), "web".into())));
        assert_eq!(t.home_of(8003, None), None);
    }

    #[test]
    fn expiry_is_by_time() {
        let mut t = Table::default();
        let mut r = row(8000, 1, None);
        r.expires_at = Some(100);
        t.insert(r);
        assert!(t.expired(99).is_empty());
        assert_eq!(t.expired(100), [8000]);
    }
}
