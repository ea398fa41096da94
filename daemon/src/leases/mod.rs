//! The operations on leases: grant, release, end on owner death or TTL, and
//! reconcile. Decisions are made on the in-memory [`Table`] under one lock;
//! their changes go to the group-commit writer in decision order, and no
//! caller is answered before its change has committed.

mod command;
mod error;
mod remembered;
mod table;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use portd_api::procstat::same_start_time;
use portd_api::{
    Home, KillRequest, Lease, LeaseRequest, OwnerRef, PortRange, PortReport, SkippedHome,
};

pub use self::error::LeaseError;
pub use self::table::Table;
use crate::config::NameRanges;
use crate::grant::{self, Choice, NoPort, PortAsk, Verdict};
use crate::lease::{ActiveLease, EndReason, EndedLease, Owner, OwnerId};
use crate::owner::{ancestor_from_proc, owner_is_alive, owner_is_alive_now, resolve_owner};
use crate::peer::Peer;
use crate::probe::{Probe, probe};
use crate::procs::{self, holders::holders, scan};
use crate::reaper::policy::{LeaseFacts, belongs};
use crate::reaper::{ReapError, Reaper};
use crate::store::{Change, MAX_HISTORY_ROWS, Pending, Store, StoreError};
use crate::task;
use crate::time::now_ms;
use crate::watch::{Watch, Watcher};

/// Longest name a lease may carry.
const MAX_NAME_LEN: usize = 128;
/// Longest TTL: ten years, so every expiry renders as a date.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// The result of a grant: the lease, and whether it is new.
#[derive(Debug)]
pub struct Granted {
    pub lease: Lease,
    pub created: bool,
}

/// An owner the daemon has checked: identity, start time on the wire, uid.
#[derive(Debug, Clone, Copy)]
struct CheckedOwner {
    id: OwnerId,
    session: u32,
    start_time: f64,
    uid: u32,
}

/// The owner a connection's requests resolved to. A keep-alive connection
/// has one caller, so its owner is resolved once and then only checked.
#[derive(Debug, Default)]
pub struct OwnerCache(OnceLock<CheckedOwner>);

/// Most probes one pass of a grant asks for.
const MAX_PROBES_PER_PASS: usize = 64;

/// What one pass of a grant's search knows: the probes made so far, and
/// how many more it may ask for.
#[derive(Clone, Copy)]
struct Search<'a> {
    probed: &'a HashMap<u16, Probe>,
    probes: usize,
}

/// A name's home that a grant passed over, and what held it then.
struct MissedHome {
    port: u16,
    verdict: Verdict,
    /// The live lease on it, when a lease held it.
    lease: Option<Box<ActiveLease>>,
}

/// What a grant decided under the lock.
enum Decision {
    Granted {
        row: Box<ActiveLease>,
        /// The port the request's name remembers from now on.
        home: Option<u16>,
        missed: Option<MissedHome>,
        skipped: Option<SkippedHome>,
    },
    Existing(Box<ActiveLease>),
    Refused(LeaseError),
    NoPort(NoPort, Option<Box<ActiveLease>>),
    /// The search needs probes of these ports, made outside the lock.
    Probe(Vec<u16>),
}

pub struct Leases {
    store: Store,
    table: Arc<Mutex<Table>>,
    reaper: Arc<Reaper>,
    watcher: Arc<Watcher>,
    range: PortRange,
    name_ranges: NameRanges,
    boot_id: String,
    boot_time: u64,
}

impl Leases {
    /// Loads the active leases and names from `store` into memory.
    pub async fn load(
        store: Store,
        reaper: Arc<Reaper>,
        watcher: Arc<Watcher>,
        range: PortRange,
        boot_id: String,
        boot_time: u64,
    ) -> Result<Leases, StoreError> {
        let table = Arc::new(Mutex::new(load_table(&store).await?));
        let (for_hook, store_for_hook) = (Arc::clone(&table), store.clone());
        store.on_failure(Box::new(move || recover(&for_hook, &store_for_hook)));
        Ok(Leases {
            store,
            table,
            reaper,
            watcher,
            range,
            name_ranges: NameRanges::default(),
            boot_id,
            boot_time,
        })
    }

    /// Gives names that match a pattern their pattern's range.
    pub fn with_name_ranges(mut self, name_ranges: NameRanges) -> Leases {
        self.name_ranges = name_ranges;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The table for a decision; refused while it is being reloaded after a
    /// failed commit.
    fn table_for_change(&self) -> Result<MutexGuard<'_, Table>, LeaseError> {
        let table = self.table();
        if table.stale {
            return Err(LeaseError::Unavailable);
        }
        Ok(table)
    }

    /// Reaps the orphans of leases that just ended, in the background (a
    /// unit of work: a stopping daemon finishes it first).
    pub fn reap_later(&self, ended: Vec<EndedLease>) {
        self.reap_in_background(ended, None);
    }

    /// Reaps the orphans of `ended` in the background, never signalling the
    /// `caller` that ended them or its ancestors.
    fn reap_in_background(&self, ended: Vec<EndedLease>, caller: Option<u32>) {
        if ended.is_empty() {
            return;
        }
        let ids: HashSet<String> = ended.into_iter().map(|l| l.lease.id).collect();
        let reaper = Arc::clone(&self.reaper);
        self.reaper.units().spawn("reap", async move {
            if let Err(e) = reaper.reap(Some(ids), false, caller).await {
                tracing::error!(error = %e, "reaping the orphans of ended leases failed");
            }
        });
    }

    /// Grants a port as DESIGN's table says, or answers the caller's existing
    /// lease when it asks again.
    pub async fn grant(
        &self,
        peer: Peer,
        req: LeaseRequest,
        cache: &OwnerCache,
    ) -> Result<Granted, LeaseError> {
        validate(&req)?;
        check_move(&req)?;
        let owner = match req.owner {
            Some(named) => self.check_owner(peer, Some(named))?,
            None => self.caller_owner(peer, cache)?,
        };
        match self.grant_once(&req, owner).await {
            Err(LeaseError::Held { port, holders }) if req.port == Some(port) && !req.next => {
                // The asked-for port is held without a live lease: by orphans
                // of an ended lease (reaped under the automatic rules), or,
                // with `kill`, by whatever listens (explicit-kill rules).
                let freed = if req.kill {
                    match self
                        .reaper
                        .kill_port(peer, port, KillRequest::default())
                        .await
                    {
                        Ok(_) | Err(ReapError::NothingListens(_)) => true,
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    self.reaper.reap_port(port, peer.pid).await? > 0
                };
                if freed {
                    self.grant_once(&req, owner).await
                } else {
                    Err(LeaseError::Held { port, holders })
                }
            }
            other => other,
        }
    }

    /// One grant: the search runs on the table under its lock, and every
    /// probe bind it needs is made outside the lock, after which the search
    /// runs again on the table as it is then (another grant may have taken
    /// the port meanwhile). Each port is probed at most once per grant.
    async fn grant_once(
        &self,
        req: &LeaseRequest,
        owner: CheckedOwner,
    ) -> Result<Granted, LeaseError> {
        let mut probed = HashMap::new();
        let mut ended = Vec::new();
        let mut pending = Vec::new();
        // Probes a pass may ask for: one first (the common case: it is
        // free), then twice as many each pass, for ranges full of servers.
        let mut probes = 1;
        let decided = loop {
            match self.decide_and_submit(req, owner, &probed, probes, &mut ended) {
                Ok((Decision::Probe(ports), submitted)) => {
                    pending.push(submitted);
                    for port in ports {
                        let found = probe(port);
                        probed.insert(port, found);
                        if found == Probe::Free {
                            break;
                        }
                    }
                    probes = (probes * 2).min(MAX_PROBES_PER_PASS);
                }
                Ok((decision, submitted)) => {
                    pending.push(submitted);
                    break Ok(decision);
                }
                Err(e) => break Err(e),
            }
        };
        for submitted in pending {
            submitted.committed().await?;
        }
        self.reap_later(ended);
        match decided? {
            Decision::Existing(row) => Ok(Granted {
                lease: row.to_api(),
                created: false,
            }),
            Decision::Refused(error) => Err(error),
            Decision::NoPort(no_port, lease) => Err(self.explain(no_port, lease).await),
            Decision::Probe(ports) => unreachable!("probes of {ports:?} are made in the loop"),
            Decision::Granted {
                row,
                missed,
                skipped,
                ..
            } => {
                let mut lease = row.to_api();
                lease.skipped = skipped;
                if let Some(missed) = missed {
                    lease.home = Some(describe_home(missed).await);
                }
                if self.owner_gone(row.owner.id) {
                    // The owner died between our check and the watch: end at once.
                    self.end_owner(row.owner.id).await?;
                    lease.state = portd_api::LeaseState::Ended;
                    lease.end_reason = Some(EndReason::OwnerDied);
                }
                Ok(Granted {
                    lease,
                    created: true,
                })
            }
        }
    }

    /// One pass of a grant under the table lock: the decision, with its
    /// changes (leases found dead on the way, the grant) submitted to the
    /// writer under the same lock, so they reach it in decision order.
    fn decide_and_submit(
        &self,
        req: &LeaseRequest,
        owner: CheckedOwner,
        probed: &HashMap<u16, Probe>,
        probes: usize,
        ended: &mut Vec<EndedLease>,
    ) -> Result<(Decision, Pending), LeaseError> {
        let mut changes = Vec::new();
        let mut table = self.table_for_change()?;
        let search = Search { probed, probes };
        let decision = self.decide(&mut table, req, owner, search, &mut changes, ended);
        if let Decision::Granted {
            row, home, missed, ..
        } = &decision
        {
            let now = row.granted_at;
            table.insert((**row).clone());
            changes.push(Change::Grant((**row).clone()));
            if let (Some(name), Some(project), Some(home)) = (&req.name, &req.project, home) {
                // Also when the home stays: the name was used now.
                table.remember(project, name, *home);
                changes.push(Change::Remember {
                    project: project.clone(),
                    name: name.clone(),
                    port: *home,
                    at: now,
                });
            }
            let detail = req.name.as_ref().map(|n| match missed {
                Some(missed) => format!("name {n}; home {} was not free", missed.port),
                None => format!("name {n}"),
            });
            changes.push(event(now, "granted", row, detail));
        }
        // An existing lease may itself still be queued: answer after it.
        let submitted = match (&decision, changes.is_empty()) {
            (Decision::Existing(_), true) => self.store.barrier(),
            _ => self.store.submit(changes),
        };
        Ok((decision, submitted))
    }

    /// The grant decision, on the table, with the probes made so far; a port
    /// not yet probed ends the pass with [`Decision::Probe`]. Leases met whose
    /// owner is dead are ended on the way (their changes go into `changes`).
    fn decide(
        &self,
        table: &mut Table,
        req: &LeaseRequest,
        owner: CheckedOwner,
        search: Search<'_>,
        changes: &mut Vec<Change>,
        ended: &mut Vec<EndedLease>,
    ) -> Decision {
        let now = now_ms();
        // Leases met whose owner is gone: ended once the search is over.
        let mut dead = Vec::new();
        let named = req.project.as_deref().zip(req.name.as_deref());
        let ask = PortAsk {
            port: req.port,
            next: req.next,
            range: req.range,
            home: named.and_then(|(project, name)| table.remembered(project, name)),
            name_range: req
                .name
                .as_deref()
                .and_then(|n| self.name_ranges.for_name(n)),
            move_home: req.move_home,
        };
        let plan = match grant::plan(&ask, self.range) {
            Ok(plan) => plan,
            Err(message) => return Decision::Refused(LeaseError::Invalid(message)),
        };
        if let Some((project, name)) = named {
            if let Some(existing) = table.by_name(project, name) {
                if existing.owner.id == owner.id && grant::answers(&plan, existing.port) {
                    return Decision::Existing(Box::new(existing.clone()));
                }
                if existing.owner.id == owner.id || self.is_live(existing) {
                    let lease = Box::new(existing.to_api());
                    return Decision::Refused(LeaseError::NameTaken {
                        name: name.to_string(),
                        lease,
                    });
                }
                dead.push(existing.port);
            }
        }
        let (lo, hi) = span(&plan);
        let others: HashSet<u16> = table.remembered_by_others(lo, hi, named);
        let choice = grant::choose(&plan, &others, search.probes, |port| {
            if let Some(lease) = table.get(port) {
                if lease.owner.id == owner.id {
                    return Verdict::OwnLease;
                }
                if self.is_live(lease) {
                    return Verdict::Leased;
                }
                if !dead.contains(&port) {
                    dead.push(port);
                }
            }
            match search.probed.get(&port) {
                Some(Probe::Free) => Verdict::Free,
                Some(Probe::InUse) => Verdict::Busy,
                Some(Probe::NotPermitted) => Verdict::NotPermitted,
                None => Verdict::Unprobed,
            }
        });
        for port in dead {
            ended.extend(self.end_in(
                table,
                port,
                EndReason::OwnerDied,
                now,
                Some("owner found dead at a grant"),
                changes,
            ));
        }
        match choice {
            Ok(Choice::Existing(port)) => match table.get(port) {
                Some(row) => Decision::Existing(Box::new(row.clone())),
                None => Decision::Refused(LeaseError::Invalid(format!(
                    "port {port} changed; ask again"
                ))),
            },
            Ok(Choice::Probe(ports)) => Decision::Probe(ports),
            Ok(Choice::Grant(grant)) => Decision::Granted {
                row: Box::new(self.new_row(req, owner, grant.port, now)),
                home: named.map(|_| grant::home_after(&ask, grant.port)),
                missed: grant.home_missed.map(|(port, verdict)| MissedHome {
                    port,
                    verdict,
                    lease: table.get(port).cloned().map(Box::new),
                }),
                skipped: grant.skipped.and_then(|port| {
                    let (project, name) = table.home_of(port, req.project.as_deref())?;
                    Some(SkippedHome {
                        port,
                        name,
                        project,
                    })
                }),
            },
            Err(no_port) => {
                let lease = match no_port {
                    NoPort::Taken(port, _) => table.get(port).cloned().map(Box::new),
                    _ => None,
                };
                Decision::NoPort(no_port, lease)
            }
        }
    }

    fn new_row(&self, req: &LeaseRequest, owner: CheckedOwner, port: u16, now: i64) -> ActiveLease {
        ActiveLease {
            id: uuid::Uuid::now_v7().to_string(),
            port,
            name: req.name.clone(),
            project: req.project.clone(),
            owner: Owner {
                id: owner.id,
                start_time: owner.start_time,
                uid: owner.uid,
                session: owner.session,
            },
            boot_id: self.boot_id.clone(),
            granted_at: now,
            granted_ticks: procs::ticks_since_boot(),
            expires_at: req.ttl.map(|ttl| now + ttl as i64 * 1000),
            command: None,
        }
    }

    /// Ends the active lease on `port` in the table and records the change.
    fn end_in(
        &self,
        table: &mut Table,
        port: u16,
        reason: EndReason,
        now: i64,
        detail: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> Option<EndedLease> {
        let lease = table.remove(port)?;
        changes.push(Change::End {
            id: lease.id.clone(),
            reason,
            at: now,
        });
        changes.push(event(
            now,
            reason.as_str(),
            &lease,
            detail.map(String::from),
        ));
        Some(lease.end(reason, now))
    }

    /// Watches `owner` (once) and says whether it is already gone. Owners
    /// without a pidfd are checked through /proc each time.
    fn owner_gone(&self, owner: OwnerId) -> bool {
        match Arc::clone(&self.watcher).watch(owner) {
            Watch::Watching => false,
            Watch::Dead => true,
            Watch::Polled => !owner_is_alive_now(owner),
        }
    }

    /// The error for a search that found nothing, with who holds the port.
    async fn explain(&self, no_port: NoPort, lease: Option<Box<ActiveLease>>) -> LeaseError {
        match no_port {
            NoPort::Taken(port, Verdict::Leased | Verdict::OwnLease) => match lease {
                Some(lease) => LeaseError::Leased {
                    port,
                    lease: Box::new(lease.to_api()),
                },
                None => LeaseError::Held {
                    port,
                    holders: Vec::new(),
                },
            },
            NoPort::Taken(port, _) => {
                match task::blocking("holder lookup", move || holders(port)).await {
                    Ok(holders) => LeaseError::Held { port, holders },
                    Err(panicked) => LeaseError::Panicked(panicked),
                }
            }
            NoPort::NotPermitted(port) => LeaseError::NotPermitted(port),
            NoPort::Exhausted(range) => LeaseError::NoFreePort(range),
        }
    }

    /// A lease of this boot whose owner still runs. An owner with a pidfd
    /// is alive until the pidfd says otherwise; others are read from /proc.
    fn is_live(&self, lease: &ActiveLease) -> bool {
        let owner = lease.owner.id;
        lease.boot_id == self.boot_id
            && (self.watcher.is_watched(owner)
                || owner_is_alive(owner, procs::read_stat(owner.pid).ok().as_ref()))
    }

    /// The owner for a request without one: the connection's, while it
    /// lives, else resolved from the caller.
    fn caller_owner(&self, peer: Peer, cache: &OwnerCache) -> Result<CheckedOwner, LeaseError> {
        if let Some(owner) = cache.0.get() {
            if self.watcher.is_watched(owner.id) || owner_is_alive_now(owner.id) {
                return Ok(*owner);
            }
        }
        let owner = self.check_owner(peer, None)?;
        let _ = cache.0.set(owner);
        Ok(owner)
    }

    /// Resolves and checks the owner: named by the caller, or the caller's
    /// parent (skipping forked subshells).
    fn check_owner(&self, peer: Peer, named: Option<OwnerRef>) -> Result<CheckedOwner, LeaseError> {
        let pid = match named {
            Some(named) => named.pid,
            None => {
                let caller = peer.pid.ok_or_else(|| {
                    LeaseError::Invalid("the caller's pid is unknown; pass an owner".into())
                })?;
                let parent = procs::read_stat(caller).ok().map(|s| s.ppid);
                parent
                    .and_then(|ppid| resolve_owner(ppid, ancestor_from_proc))
                    .ok_or_else(|| {
                        LeaseError::Invalid(
                            "cannot find the calling process's parent; pass --owner".into(),
                        )
                    })?
            }
        };
        let stat = procs::read_stat(pid)
            .ok()
            .filter(|s| s.is_running())
            .ok_or_else(|| LeaseError::Invalid(format!("no live process with pid {pid}")))?;
        let start_time = procs::ticks_to_unix(self.boot_time, stat.start_ticks);
        if let Some(named) = named {
            // The caller converted with the btime it just read; btime moves
            // when the wall clock is stepped, so a mismatch is checked again
            // with a fresh one (only then: /proc/stat is costly to read).
            let same = same_start_time(named.start_time, start_time)
                || procs::boot_time().is_ok_and(|btime| {
                    let theirs = procs::ticks_to_unix(btime, stat.start_ticks);
                    same_start_time(named.start_time, theirs)
                });
            if !same {
                return Err(LeaseError::Invalid(format!(
                    "pid {pid} started at {start_time:.2}, not at {:.2}: it is another process",
                    named.start_time
                )));
            }
        }
        let uid = procs::uids(pid)
            .map_err(|_| LeaseError::Invalid(format!("no live process with pid {pid}")))?
            .real;
        if !peer.may_act_for(uid) {
            return Err(LeaseError::Forbidden(format!(
                "pid {pid} belongs to uid {uid}; uid {} may not lease ports for it",
                peer.uid
            )));
        }
        Ok(CheckedOwner {
            id: OwnerId {
                pid,
                start_ticks: stat.start_ticks,
            },
            session: stat.session,
            start_time,
            uid,
        })
    }

    /// Releases the active lease on `port` (only lease `id`, if given), then
    /// reaps its orphans in the background unless `keep` says to leave what
    /// still serves alone.
    pub async fn release(
        &self,
        peer: Peer,
        port: u16,
        id: Option<&str>,
        keep: bool,
    ) -> Result<Lease, LeaseError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let (row, pending) = {
            let mut table = self.table_for_change()?;
            let lease = table
                .get(port)
                .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
            if let Some(id) = id.filter(|id| *id != lease.id) {
                return Err(LeaseError::NotFound(format!(
                    "lease {id} is not active on port {port} (lease {} is)",
                    lease.id
                )));
            }
            if !peer.may_act_for(lease.owner.uid) {
                return Err(LeaseError::Forbidden(format!(
                    "port {port} is leased by uid {}; uid {} may not release it",
                    lease.owner.uid, peer.uid
                )));
            }
            let detail = keep.then_some("kept: its processes are left running");
            let mut row = self.end_in(
                &mut table,
                port,
                EndReason::Released,
                now,
                detail,
                &mut changes,
            );
            if let Some(row) = row.as_mut().filter(|_| keep) {
                let ticks = procs::ticks_since_boot();
                row.kept_ticks = Some(ticks);
                changes.push(Change::Kept {
                    id: row.lease.id.clone(),
                    ticks,
                });
            }
            (row, self.store.submit(changes))
        };
        pending.committed().await?;
        let row =
            row.ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
        let lease = row.to_api();
        if !keep {
            self.reap_in_background(vec![row], peer.pid);
        }
        Ok(lease)
    }

    /// Ends every active lease of `owner` as `owner_died`; returns them.
    pub async fn end_owner(&self, owner: OwnerId) -> Result<Vec<EndedLease>, LeaseError> {
        self.end_where(EndReason::OwnerDied, None, |table| table.ports_of(owner))
            .await
    }

    /// Ends leases whose TTL has passed, and reaps their orphans in the
    /// background.
    pub async fn expire_due(&self) -> Result<usize, LeaseError> {
        let now = now_ms();
        let ended = self
            .end_where(EndReason::Expired, None, |table| table.expired(now))
            .await?;
        let count = ended.len();
        self.reap_later(ended);
        Ok(count)
    }

    /// Ends the active leases on the ports `select` picks from the table.
    async fn end_where(
        &self,
        reason: EndReason,
        detail: Option<&str>,
        select: impl FnOnce(&Table) -> Vec<u16>,
    ) -> Result<Vec<EndedLease>, LeaseError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let (rows, pending) = {
            let mut table = self.table_for_change()?;
            let ports = select(&table);
            let rows: Vec<EndedLease> = ports
                .into_iter()
                .filter_map(|port| self.end_in(&mut table, port, reason, now, detail, &mut changes))
                .collect();
            (rows, self.store.submit(changes))
        };
        pending.committed().await?;
        Ok(rows)
    }

    /// Checks every active lease's owner: leases from another boot or with a
    /// dead owner end; live owners get a pidfd if they have none. Returns
    /// how many were kept and the ones that ended.
    pub async fn reconcile(&self) -> Result<(usize, Vec<EndedLease>), LeaseError> {
        let active: Vec<(u16, String, OwnerId, bool)> = {
            let table = self.table();
            table
                .active()
                .map(|l| (l.port, l.id.clone(), l.owner.id, l.boot_id == self.boot_id))
                .collect()
        };
        let mut other_boot = Vec::new();
        let mut dead = Vec::new();
        for (port, id, owner, this_boot) in &active {
            if !this_boot {
                other_boot.push((*port, id.clone()));
            } else if self.owner_gone(*owner) {
                dead.push((*port, id.clone()));
            }
        }
        // The owners were checked without the lock: end a port's lease only
        // if it is still the one that was checked, never a newer grant.
        let still = |table: &Table, checked: Vec<(u16, String)>| -> Vec<u16> {
            checked
                .into_iter()
                .filter(|(port, id)| table.get(*port).is_some_and(|l| l.id == *id))
                .map(|(port, _)| port)
                .collect()
        };
        let mut ended = Vec::new();
        if !other_boot.is_empty() {
            ended.extend(
                self.end_where(EndReason::OwnerDied, Some("lease from another boot"), |t| {
                    still(t, other_boot)
                })
                .await?,
            );
        }
        if !dead.is_empty() {
            ended.extend(
                self.end_where(EndReason::OwnerDied, None, |t| still(t, dead))
                    .await?,
            );
        }
        Ok((active.len() - ended.len(), ended))
    }

    /// Prunes history past retention.
    pub async fn prune(&self, retention: std::time::Duration) -> Result<u64, LeaseError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        Ok(self.store.prune(cutoff, MAX_HISTORY_ROWS).await?)
    }

    /// The active lease on `port`.
    pub fn get(&self, port: u16) -> Result<Lease, LeaseError> {
        self.table()
            .get(port)
            .map(ActiveLease::to_api)
            .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))
    }

    /// Active leases by port, then with `all` up to 1,000 ended ones.
    pub async fn list(&self, all: bool) -> Result<Vec<Lease>, LeaseError> {
        let mut leases: Vec<Lease> = self.table().active().map(ActiveLease::to_api).collect();
        if all {
            let ended = self.store.read().await?.recently_ended(1000).await?;
            leases.extend(ended.iter().map(EndedLease::to_api));
        }
        Ok(leases)
    }

    /// How many leases are active and how many names remember a port.
    pub fn counts(&self) -> (usize, usize) {
        let table = self.table();
        (table.len(), table.name_count())
    }

    /// Lease and holders of `port`.
    pub async fn report(&self, port: u16) -> Result<PortReport, LeaseError> {
        let lease = self.table().get(port).cloned();
        let dead = match &lease {
            Some(_) => None,
            None => {
                let mut reader = self.store.read().await?;
                reader.last_ended_on_port(port, &self.boot_id).await?
            }
        };
        // Untagged listeners in a dead owner's session are suspects, unless
        // they are members of its command's process group.
        let dead_session = dead
            .as_ref()
            .filter(|d| d.reason == EndReason::OwnerDied)
            .map(|d| d.lease.owner.session);
        let owner_pid = lease.as_ref().map(|l| l.owner.id.pid);
        let active = lease.as_ref().map(|l| LeaseFacts::active(l, &self.boot_id));
        let ended = dead.map(|d| LeaseFacts::ended(&d, &self.boot_id));
        let (holders, probe) = task::blocking("holder lookup", move || {
            let mut found = holders(port);
            for holder in &mut found {
                let Some(facts) = holder.pid.and_then(scan::facts) else {
                    continue;
                };
                let of = |lease: &Option<LeaseFacts>| {
                    lease
                        .as_ref()
                        .filter(|l| belongs(l, &facts))
                        .map(|l| l.id.clone())
                };
                if let Some(id) = of(&active) {
                    holder.lease_id = Some(id);
                } else if Some(facts.pid) == owner_pid {
                    holder.lease_id = active.as_ref().map(|l| l.id.clone());
                } else if let Some(tag) = facts.tag.clone() {
                    holder.lease_id = Some(tag);
                } else if let Some(id) = of(&ended) {
                    holder.lease_id = Some(id);
                } else if let Some(session) = dead_session {
                    holder.suspect = facts.session == session;
                }
            }
            (found, probe(port))
        })
        .await?;
        let free = lease.is_none() && probe == Probe::Free;
        Ok(PortReport {
            port,
            lease: lease.map(|l| l.to_api()),
            holders,
            free,
        })
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// After a failed commit: stop decisions on the table (it holds changes the
/// database lacks) and reload it from SQLite, retrying until it loads.
fn recover(table: &Arc<Mutex<Table>>, store: &Store) {
    lock(table).stale = true;
    let (table, store) = (Arc::clone(table), store.clone());
    tokio::spawn(async move {
        loop {
            match load_table(&store).await {
                Ok(fresh) => {
                    *lock(&table) = fresh;
                    tracing::info!("leases reloaded from the database after a failed commit");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload leases; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn load_table(store: &Store) -> Result<Table, StoreError> {
    let (active, names) = store.load().await?;
    Ok(Table::load(active, names))
}

fn event(now: i64, kind: &str, lease: &ActiveLease, detail: Option<String>) -> Change {
    Change::Event {
        at: now,
        kind: kind.to_string(),
        lease_id: Some(lease.id.clone()),
        port: Some(lease.port),
        pid: Some(lease.owner.id.pid),
        detail,
    }
}

/// The API's account of a home a grant passed over. Holders are read now,
/// after the grant: a holder that exited meanwhile leaves the list empty.
async fn describe_home(missed: MissedHome) -> Home {
    let port = missed.port;
    let holders = match missed.verdict {
        Verdict::Busy => tokio::task::spawn_blocking(move || holders(port))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, port, "reading the home port's holders failed");
                Vec::new()
            }),
        _ => Vec::new(),
    };
    Home {
        port,
        lease: missed.lease.map(|l| Box::new(l.to_api())),
        holders,
        not_permitted: missed.verdict == Verdict::NotPermitted,
    }
}

/// The lowest and highest port a plan may touch.
fn span(plan: &grant::Plan) -> (u16, u16) {
    let mut lo = u16::MAX;
    let mut hi = 0;
    for port in plan
        .first
        .into_iter()
        .chain(plan.scan.into_iter().flat_map(|s| [s.start, s.end]))
    {
        lo = lo.min(port);
        hi = hi.max(port);
    }
    (lo, hi)
}

/// What a request can only be told at grant time (422). Names with hidden
/// characters and oversized projects never get here: reading the body
/// refuses them (400, `portd_api::text`); the name check repeats that rule
/// for requests built in-process.
fn validate(req: &LeaseRequest) -> Result<(), LeaseError> {
    if req.port == Some(0) {
        return Err(LeaseError::Invalid(
            "port 0 is not a port; ask for 1-65535 or none".into(),
        ));
    }
    if let Some(name) = &req.name {
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name.chars().any(char::is_whitespace)
            || portd_api::text::first_hidden_char(name).is_some()
        {
            return Err(LeaseError::Invalid(format!(
                "invalid name {name:?}: 1-{MAX_NAME_LEN} printable characters, no spaces"
            )));
        }
        if req.project.is_none() {
            return Err(LeaseError::Invalid("a name needs a project".into()));
        }
    }
    if let Some(project) = &req.project {
        if !project.starts_with('/') || project.chars().any(char::is_control) {
            return Err(LeaseError::Invalid(format!(
                "invalid project {project:?}: an absolute path"
            )));
        }
    }
    if req.kill && (req.port.is_none() || req.next) {
        return Err(LeaseError::Invalid(
            "kill needs an exact port: `lease PORT --kill`".into(),
        ));
    }
    if let Some(ttl) = req.ttl {
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(LeaseError::Invalid(format!(
                "ttl must be from 1 second to {MAX_TTL_SECS} seconds (10 years)"
            )));
        }
    }
    Ok(())
}

/// `move` gives a name a new home: without a name it means nothing.
fn check_move(req: &LeaseRequest) -> Result<(), LeaseError> {
    if req.move_home && req.name.is_none() {
        return Err(LeaseError::Invalid(
            "move gives a name a new home; it needs a name: `lease --name N --move`".into(),
        ));
    }
    Ok(())
}
