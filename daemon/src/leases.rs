//! The operations on leases: grant, release, end on owner death or TTL, and
//! reconcile at start-up. Each runs in one write transaction, so what the
//! daemon answers is what SQLite holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use portd_api::procstat::same_start_time;
use portd_api::{
    EndReason, Holder, KillRequest, Lease, LeaseRequest, OwnerRef, PortRange, PortReport,
};

use crate::grant::{self, Choice, NoPort, PortAsk, Verdict};
use crate::owner::{
    OwnerId, ancestor_from_proc, owner_is_alive, owner_is_alive_now, resolve_owner,
};
use crate::probe::{Probe, probe};
use crate::procs::{self, holders::holders};
use crate::reaper::Reaper;
use crate::store::events::{self, NewEvent};
use crate::store::{LeaseRow, Store, StoreError, WriteTx, leases, names, now_ms};
use crate::watch::{Watch, Watcher};

/// Longest name a lease may carry.
const MAX_NAME_LEN: usize = 128;
/// Longest TTL: ten years, so every expiry renders as a date.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: Option<u32>,
    pub uid: u32,
}

impl Peer {
    fn may_act_for(&self, uid: u32) -> bool {
        self.uid == 0 || self.uid == uid
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("port {port} is leased to pid {} ({})", lease.owner.pid, lease.id)]
    Leased { port: u16, lease: Box<Lease> },
    #[error("port {port} is held by {}", describe_holders(holders))]
    Held { port: u16, holders: Vec<Holder> },
    #[error("no free port in {0}")]
    NoFreePort(PortRange),
    #[error("name '{name}' is leased on port {} by pid {}", lease.port, lease.owner.pid)]
    NameTaken { name: String, lease: Box<Lease> },
    #[error("every holder of port {port} is protected: {message}")]
    Protected {
        port: u16,
        skipped: Vec<portd_api::Reported>,
        message: String,
    },
    #[error("portd may not bind port {0} (permission denied)")]
    NotPermitted(u16),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> LeaseError {
        LeaseError::Store(StoreError::Query(e))
    }
}

fn describe_holders(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "a socket portd cannot attribute".to_string();
    }
    holders
        .iter()
        .map(Holder::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

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

pub struct Leases {
    store: Store,
    reaper: Arc<Reaper>,
    watcher: Arc<Watcher>,
    range: PortRange,
    boot_id: String,
    boot_time: u64,
}

impl Leases {
    pub fn new(
        store: Store,
        reaper: Arc<Reaper>,
        watcher: Arc<Watcher>,
        range: PortRange,
        boot_id: String,
        boot_time: u64,
    ) -> Leases {
        Leases {
            store,
            reaper,
            watcher,
            range,
            boot_id,
            boot_time,
        }
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

    /// Grants a port as DESIGN's table says, or answers the caller's existing
    /// lease when it asks again.
    pub async fn grant(&self, peer: Peer, req: LeaseRequest) -> Result<Granted, LeaseError> {
        validate(&req)?;
        let owner = self.check_owner(peer, req.owner)?;
        match self.grant_once(&req, owner).await {
            Err(LeaseError::Held { port, holders }) if req.port == Some(port) && !req.next => {
                // The asked-for port is held without a live lease: by orphans
                // of an ended lease (reaped under the automatic rules), or,
                // with `kill`, by whatever listens (explicit-kill rules).
                let protected = Reaper::protected(peer.pid);
                let freed = if req.kill {
                    match self
                        .reaper
                        .kill_port(peer, port, KillRequest::default(), protected)
                        .await
                    {
                        Ok(_) | Err(LeaseError::NotFound(_)) => true,
                        Err(e) => return Err(e),
                    }
                } else {
                    self.reaper.reap_port(port, protected).await? > 0
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

    async fn grant_once(
        &self,
        req: &LeaseRequest,
        owner: CheckedOwner,
    ) -> Result<Granted, LeaseError> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let mut ended: Vec<LeaseRow> = Vec::new();

        let mut remembered = None;
        if let (Some(name), Some(project)) = (req.name.as_deref(), req.project.as_deref()) {
            if let Some(existing) = leases::active_by_name(&mut tx, project, name).await? {
                if existing.owner() == owner.id && req.port.is_none_or(|p| p == existing.port()) {
                    tx.commit().await.map_err(StoreError::from)?;
                    return Ok(Granted {
                        lease: existing.to_api(),
                        created: false,
                    });
                }
                if existing.owner() == owner.id || self.is_live(&existing) {
                    return Err(LeaseError::NameTaken {
                        name: name.to_string(),
                        lease: Box::new(existing.to_api()),
                    });
                }
                ended.push(existing);
            }
            remembered = names::remembered(&mut tx, project, name).await?;
        }

        let ask = PortAsk {
            port: req.port,
            next: req.next,
            range: req.range,
            remembered,
        };
        let plan = grant::plan(&ask, self.range).map_err(LeaseError::Invalid)?;
        let (lo, hi) = span(&plan);
        let active: HashMap<u16, LeaseRow> = leases::active_between(&mut tx, lo, hi)
            .await?
            .into_iter()
            .map(|l| (l.port(), l))
            .collect();
        let except = req
            .name
            .as_deref()
            .zip(req.project.as_deref())
            .map(|(n, p)| (p, n));
        let others: HashSet<u16> = names::remembered_ports(&mut tx, lo, hi, except)
            .await?
            .into_iter()
            .collect();

        let choice = grant::choose(&plan, &others, |port| {
            if let Some(lease) = active.get(&port) {
                if lease.owner() == owner.id {
                    return Verdict::OwnLease;
                }
                if self.is_live(lease) {
                    return Verdict::Leased;
                }
                if !ended.iter().any(|e| e.id == lease.id) {
                    ended.push(lease.clone());
                }
            }
            match probe(port) {
                Probe::Free => Verdict::Free,
                Probe::InUse => Verdict::Busy,
                Probe::NotPermitted => Verdict::NotPermitted,
            }
        });
        // Leases found with dead owners end now, whatever the outcome.
        for lease in &ended {
            end_in_tx(
                &mut tx,
                lease,
                EndReason::OwnerDied,
                now,
                Some("owner found dead at a grant".into()),
            )
            .await?;
        }

        let port = match choice {
            Ok(Choice::Existing(port)) => {
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(Granted {
                    lease: active[&port].to_api(),
                    created: false,
                });
            }
            Ok(Choice::Grant(port)) => port,
            Err(no_port) => {
                tx.commit().await.map_err(StoreError::from)?;
                return Err(self.explain(no_port, &active).await);
            }
        };

        let row = LeaseRow {
            id: uuid::Uuid::now_v7().to_string(),
            port: i64::from(port),
            name: req.name.clone(),
            project: req.project.clone(),
            owner_pid: i64::from(owner.id.pid),
            owner_start_ticks: owner.id.start_ticks as i64,
            owner_start_time: owner.start_time,
            owner_uid: i64::from(owner.uid),
            owner_sid: i64::from(owner.session),
            boot_id: self.boot_id.clone(),
            state: "active".into(),
            end_reason: None,
            granted_at: now,
            granted_ticks: procs::ticks_since_boot() as i64,
            expires_at: req
                .ttl
                .map(|ttl| now.saturating_add(ttl.saturating_mul(1000) as i64)),
            ended_at: None,
        };
        if let Err(e) = leases::insert(&mut tx, &row).await {
            if let sqlx::Error::Database(db) = &e {
                if db.is_unique_violation() {
                    return Err(LeaseError::Invalid(format!(
                        "port {port} was leased concurrently; ask again"
                    )));
                }
            }
            return Err(e.into());
        }
        if let (Some(name), Some(project)) = (req.name.as_deref(), req.project.as_deref()) {
            names::remember(&mut tx, project, name, port, now).await?;
        }
        let detail = req.name.as_ref().map(|n| format!("name {n}"));
        events::append(
            &mut tx,
            now,
            NewEvent {
                kind: "granted",
                lease_id: Some(&row.id),
                port: Some(port),
                pid: Some(owner.id.pid),
                detail,
            },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;

        let mut lease = row.to_api();
        lease.moved_from = remembered.filter(|r| *r != port);
        if self.owner_gone(owner.id) {
            // The owner died between our check and the watch: end at once.
            self.end_owner(owner.id).await?;
            if let Some(row) = self.lease_by_id(&row.id).await? {
                lease = row.to_api();
            }
        }
        Ok(Granted {
            lease,
            created: true,
        })
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

    async fn lease_by_id(&self, id: &str) -> Result<Option<LeaseRow>, LeaseError> {
        let mut conn = self
            .store
            .reader()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        Ok(leases::by_id(&mut conn, id).await?)
    }

    /// The error for a search that found nothing, with who holds the port.
    async fn explain(&self, no_port: NoPort, active: &HashMap<u16, LeaseRow>) -> LeaseError {
        match no_port {
            NoPort::Taken(port, Verdict::Leased | Verdict::OwnLease) => match active.get(&port) {
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
                let holders = tokio::task::spawn_blocking(move || holders(port))
                    .await
                    .unwrap_or_default();
                LeaseError::Held { port, holders }
            }
            NoPort::NotPermitted(port) => LeaseError::NotPermitted(port),
            NoPort::Exhausted(range) => LeaseError::NoFreePort(range),
        }
    }

    /// A lease of this boot whose owner still runs.
    fn is_live(&self, lease: &LeaseRow) -> bool {
        lease.boot_id == self.boot_id
            && owner_is_alive(
                lease.owner(),
                procs::read_stat(lease.owner().pid).ok().as_ref(),
            )
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
                resolve_owner(caller, ancestor_from_proc).ok_or_else(|| {
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
            if !same_start_time(named.start_time, start_time) {
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

    /// Releases the active lease on `port` (only lease `id`, if given).
    pub async fn release(
        &self,
        peer: Peer,
        port: u16,
        id: Option<&str>,
    ) -> Result<Lease, LeaseError> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let lease = leases::active_on_port(&mut tx, port)
            .await?
            .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))?;
        if let Some(id) = id.filter(|id| *id != lease.id) {
            return Err(LeaseError::NotFound(format!(
                "lease {id} is not active on port {port} (lease {} is)",
                lease.id
            )));
        }
        if !peer.may_act_for(lease.owner_uid()) {
            return Err(LeaseError::Forbidden(format!(
                "port {port} is leased by uid {}; uid {} may not release it",
                lease.owner_uid(),
                peer.uid
            )));
        }
        end_in_tx(&mut tx, &lease, EndReason::Released, now, None).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ended(lease, EndReason::Released, now).to_api())
    }

    /// Ends every active lease of `owner` as `owner_died`; returns them.
    pub async fn end_owner(&self, owner: OwnerId) -> Result<Vec<LeaseRow>, LeaseError> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let rows = leases::active_of_owner(&mut tx, owner).await?;
        for lease in &rows {
            end_in_tx(&mut tx, lease, EndReason::OwnerDied, now, None).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        if !rows.is_empty() {
            tracing::info!(
                pid = owner.pid,
                leases = rows.len(),
                "owner died; leases ended"
            );
        }
        Ok(rows
            .into_iter()
            .map(|l| ended(l, EndReason::OwnerDied, now))
            .collect())
    }

    /// Ends leases whose TTL has passed.
    pub async fn expire_due(&self) -> Result<usize, LeaseError> {
        let now = now_ms();
        let mut conn = self
            .store
            .reader()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        if leases::expired(&mut conn, now).await?.is_empty() {
            return Ok(0);
        }
        drop(conn);
        let mut tx = self.store.begin().await?;
        let due = leases::expired(&mut tx, now).await?;
        for lease in &due {
            end_in_tx(&mut tx, lease, EndReason::Expired, now, None).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(due.len())
    }

    /// Checks every active lease's owner: leases from another boot or with a
    /// dead owner end; live owners get a pidfd if they have none. Returns
    /// (leases kept, leases ended).
    pub async fn reconcile(&self) -> Result<(usize, usize), LeaseError> {
        let active = {
            let mut conn = self
                .store
                .reader()
                .acquire()
                .await
                .map_err(StoreError::from)?;
            leases::all_active(&mut conn).await?
        };
        let now = now_ms();
        let mut kept = 0;
        let mut dead: Vec<&LeaseRow> = Vec::new();
        for lease in &active {
            if lease.boot_id != self.boot_id || self.owner_gone(lease.owner()) {
                dead.push(lease);
            } else {
                kept += 1;
            }
        }
        if !dead.is_empty() {
            let mut tx = self.store.begin().await?;
            for lease in &dead {
                let detail =
                    (lease.boot_id != self.boot_id).then(|| "lease from another boot".to_string());
                end_in_tx(&mut tx, lease, EndReason::OwnerDied, now, detail).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
        }
        Ok((kept, dead.len()))
    }

    /// Prunes history past retention.
    pub async fn prune(&self, retention: std::time::Duration) -> Result<u64, LeaseError> {
        let mut tx = self.store.begin().await?;
        let removed = events::prune(&mut tx, now_ms(), retention.as_millis() as i64).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(removed)
    }

    /// The active lease on `port`.
    pub async fn get(&self, port: u16) -> Result<Lease, LeaseError> {
        let mut conn = self
            .store
            .reader()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        leases::active_on_port(&mut conn, port)
            .await?
            .map(|l| l.to_api())
            .ok_or_else(|| LeaseError::NotFound(format!("no active lease on port {port}")))
    }

    pub async fn list(&self, all: bool) -> Result<Vec<Lease>, LeaseError> {
        let mut conn = self
            .store
            .reader()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        Ok(leases::list(&mut conn, all)
            .await?
            .iter()
            .map(LeaseRow::to_api)
            .collect())
    }

    /// Lease and holders of `port`.
    pub async fn report(&self, port: u16) -> Result<PortReport, LeaseError> {
        let lease = {
            let mut conn = self
                .store
                .reader()
                .acquire()
                .await
                .map_err(StoreError::from)?;
            leases::active_on_port(&mut conn, port).await?
        };
        let dead = match &lease {
            Some(_) => None,
            None => {
                let mut conn = self
                    .store
                    .reader()
                    .acquire()
                    .await
                    .map_err(StoreError::from)?;
                leases::last_ended_on_port(&mut conn, port, &self.boot_id).await?
            }
        };
        // Untagged listeners in a dead owner's session are suspects.
        let dead_session = dead
            .filter(|d| d.end_reason.as_deref() == Some("owner_died"))
            .map(|d| d.owner_sid as u32);
        let lease_id = lease.as_ref().map(|l| l.id.clone());
        let owner_pid = lease.as_ref().map(|l| l.owner().pid);
        let (holders, probe) = tokio::task::spawn_blocking(move || {
            let mut found = holders(port);
            for holder in &mut found {
                let tag = holder.pid.and_then(procs::lease_tag);
                if tag.is_some() && tag == lease_id
                    || holder.pid.is_some() && holder.pid == owner_pid
                {
                    holder.lease_id.clone_from(&lease_id);
                } else if let Some(tag) = tag {
                    holder.lease_id = Some(tag);
                } else if let Some(session) = dead_session {
                    let stat = holder.pid.and_then(|p| procs::read_stat(p).ok());
                    holder.suspect = stat.is_some_and(|s| s.session == session);
                }
            }
            (found, probe(port))
        })
        .await
        .map_err(|e| LeaseError::Invalid(format!("holder lookup failed: {e}")))?;
        let free = lease.is_none() && probe == Probe::Free;
        Ok(PortReport {
            port,
            lease: lease.map(|l| l.to_api()),
            holders,
            free,
        })
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

fn ended(mut lease: LeaseRow, reason: EndReason, now: i64) -> LeaseRow {
    lease.state = "ended".into();
    lease.end_reason = Some(reason.as_str().into());
    lease.ended_at = Some(now);
    lease
}

async fn end_in_tx(
    tx: &mut WriteTx,
    lease: &LeaseRow,
    reason: EndReason,
    now: i64,
    detail: Option<String>,
) -> Result<(), LeaseError> {
    if leases::end(tx, &lease.id, reason, now).await? {
        events::append(
            tx,
            now,
            NewEvent {
                kind: reason.as_str(),
                lease_id: Some(&lease.id),
                port: Some(lease.port()),
                pid: Some(lease.owner().pid),
                detail,
            },
        )
        .await?;
    }
    Ok(())
}

fn validate(req: &LeaseRequest) -> Result<(), LeaseError> {
    if req.port == Some(0) {
        return Err(LeaseError::Invalid(
            "port 0 is not a port; ask for 1-65535 or none".into(),
        ));
    }
    if let Some(name) = &req.name {
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(LeaseError::Invalid(format!(
                "invalid name {name:?}: 1-{MAX_NAME_LEN} characters, no spaces or control characters"
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
