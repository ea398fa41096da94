//! Crash safety: leases and releases from several threads at once while the
//! daemon is killed with SIGKILL and restarted, again and again.
//!
//! Each worker owns a few `sleep` processes and leases ports of the shared
//! block for them, releases them, and (once) kills an owner. Every answer is
//! recorded with the time it arrived. A lease answered 201/200 was active
//! from (at the latest) the moment its answer arrived until (at the
//! earliest) the moment its release was sent or its owner killed: these
//! *certain* intervals of two different leases on one port must never
//! overlap, or the port was held twice at once. Requests left unanswered by
//! a kill have unknown outcomes and are never counted as evidence; a release
//! left unanswered is retried once the daemon is back.
//!
//! After the last restart: every lease answered as granted, neither released
//! nor ended by its owner's death, is still the active lease on its port;
//! no lease answered as released is active; and, with the daemon killed once
//! more, SQLite's `PRAGMA integrity_check` is `ok`, every answered grant and
//! release is in the database, and its history never has two leases of one
//! port active at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use portd_e2e::http::request_bytes;
use portd_e2e::{ChildGuard, PortBlock, TestDaemon, output_within, wait_until};
use serde_json::{Value, json};

use super::{Failure, assert_no_panic, exchange, wait_for_socket};

const WORKERS: usize = 4;
const OWNERS_PER_WORKER: usize = 3;
const KILLS: usize = 5;
/// Grants answered between two kills.
const GRANTS_PER_LIFE: usize = 150;
/// Longest the load may take to make that progress.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

/// How a lease the test was granted ended, as far as the test knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Not asked to end: it must still be active.
    Active,
    /// Released, answered 200.
    Released,
    /// Its owner was killed by the test.
    OwnerKilled,
}

/// A lease the daemon answered as granted.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    port: u16,
    owner: u32,
    /// When the answer arrived: the lease was active then.
    granted: Instant,
    /// When its release was sent or its owner killed: it was active until then.
    ended: Option<Instant>,
    end: End,
}

/// What one worker saw.
struct Worker {
    socket: std::path::PathBuf,
    ports: (u16, u16),
    owners: Vec<ChildGuard>,
    killed: Vec<bool>,
    records: Vec<Record>,
    rng: u64,
    grants: Arc<AtomicUsize>,
    unanswered: usize,
}

impl Worker {
    fn random(&mut self, below: usize) -> usize {
        // xorshift64: no dependency, and good enough to mix the load.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % below as u64) as usize
    }

    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let active: Vec<usize> = (0..self.records.len())
                .filter(|&i| self.records[i].end == End::Active)
                .collect();
            let roll = self.random(100);
            if roll < 40 && !active.is_empty() {
                let pick = active[self.random(active.len())];
                self.release(pick);
            } else if roll == 99 && self.killed.iter().all(|k| !k) {
                self.kill_owner(0);
            } else {
                let alive: Vec<usize> = (0..self.owners.len())
                    .filter(|&i| !self.killed[i])
                    .collect();
                let owner = alive[self.random(alive.len())];
                let port =
                    self.ports.0 + self.random(usize::from(self.ports.1 - self.ports.0) + 1) as u16;
                self.lease(owner, port);
            }
        }
    }

    fn lease(&mut self, owner: usize, port: u16) {
        let guard = &self.owners[owner];
        let body = json!({"port": port, "owner": guard.owner()}).to_string();
        let pid = guard.pid();
        let bytes = request_bytes("POST", "/v1/leases", Some(body.as_bytes()));
        let answer = match exchange(&self.socket, &bytes) {
            Ok(answer) => answer,
            Err(failure) => return self.lost_contact(failure),
        };
        let arrived = Instant::now();
        match answer.status {
            200 | 201 => {
                let lease = answer.json();
                assert_eq!(lease["port"], port, "granted another port: {lease}");
                assert_eq!(
                    lease["owner"]["pid"], pid,
                    "granted to another owner: {lease}"
                );
                let id = lease["id"].as_str().expect("an id").to_string();
                let known = self.records.iter().any(|r| r.id == id);
                if !known {
                    self.records.push(Record {
                        id,
                        port,
                        owner: pid,
                        granted: arrived,
                        ended: None,
                        end: End::Active,
                    });
                }
                self.grants.fetch_add(1, Ordering::Relaxed);
            }
            409 => {}
            other => panic!("lease {port} for pid {pid}: {other} {}", answer.body),
        }
    }

    fn release(&mut self, index: usize) {
        let record = self.records[index].clone();
        let path = format!("/v1/leases/{}?id={}", record.port, record.id);
        let sent = Instant::now();
        let mut retried = false;
        loop {
            match exchange(&self.socket, &request_bytes("DELETE", &path, None)) {
                Ok(answer) if answer.status == 200 => break,
                // A retry after an unanswered release: the first one may
                // have done it.
                Ok(answer) if answer.status == 404 && retried => break,
                Ok(answer) => panic!(
                    "release of {} on {} (granted, never released, owner alive): {} {}",
                    record.id, record.port, answer.status, answer.body
                ),
                Err(Failure::NotConnected(_)) if !retried => {
                    // Nothing was sent: the lease is untouched; try later.
                    wait_for_socket(&self.socket);
                    return;
                }
                Err(failure) => {
                    self.lost_contact(failure);
                    retried = true;
                }
            }
        }
        let record = &mut self.records[index];
        record.ended = Some(sent);
        record.end = End::Released;
    }

    fn kill_owner(&mut self, owner: usize) {
        let pid = self.owners[owner].pid();
        let now = Instant::now();
        for record in self
            .records
            .iter_mut()
            .filter(|r| r.owner == pid && r.end == End::Active)
        {
            record.ended = Some(now);
            record.end = End::OwnerKilled;
        }
        self.owners[owner].kill9();
        self.killed[owner] = true;
    }

    /// The daemon is down (killed): wait until it is back.
    fn lost_contact(&mut self, failure: Failure) {
        if let Failure::Unanswered(_) = failure {
            self.unanswered += 1;
        }
        assert!(
            wait_for_socket(&self.socket),
            "the daemon did not come back: {failure:?}"
        );
    }
}

#[test]
fn kill9_under_load_never_loses_or_doubles_a_lease() {
    let block = PortBlock::reserve();
    let mut d = TestDaemon::start(block.range());
    let grants = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;

    // Owners are spawned here: a child dies with the thread that spawned
    // it, and they must outlive the workers for the final checks.
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let owners: Vec<ChildGuard> = (0..OWNERS_PER_WORKER)
                .map(|_| ChildGuard::sleep(600))
                .collect();
            let mut worker = Worker {
                socket: d.socket().to_path_buf(),
                ports: (block.start(), block.end()),
                killed: vec![false; owners.len()],
                owners,
                records: Vec::new(),
                rng: seed.wrapping_mul(w as u64 + 1) | 1,
                grants: Arc::clone(&grants),
                unanswered: 0,
            };
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                worker.run(&stop);
                worker
            })
        })
        .collect();

    let progress = |target: usize, workers: &[thread::JoinHandle<Worker>]| {
        wait_until(PROGRESS_DEADLINE, || {
            grants.load(Ordering::Relaxed) >= target || workers.iter().any(|w| w.is_finished())
        })
    };
    for kill in 0..=KILLS {
        let target = grants.load(Ordering::Relaxed) + GRANTS_PER_LIFE;
        assert!(
            progress(target, &workers),
            "the load stalled before kill {kill}: {} grants",
            grants.load(Ordering::Relaxed)
        );
        if workers.iter().any(|w| w.is_finished()) {
            break;
        }
        if kill < KILLS {
            d.kill9();
            d.launch();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let workers: Vec<Worker> = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .collect();

    let end = Instant::now();
    let records: Vec<&Record> = workers.iter().flat_map(|w| &w.records).collect();
    let unanswered: usize = workers.iter().map(|w| w.unanswered).sum();
    eprintln!(
        "crash: {} grants, {} leases, {unanswered} requests cut off by {KILLS} kills",
        grants.load(Ordering::Relaxed),
        records.len()
    );
    assert!(records.len() >= GRANTS_PER_LIFE, "too little load");

    if let Some((a, b)) = held_twice(&records, end) {
        panic!(
            "port {} was held twice at once (or a lease was lost): {a:?} and {b:?}",
            a.port
        );
    }

    // Nothing answered is lost.
    let active: HashMap<String, Value> = {
        let answer = d.get("/v1/leases");
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["leases"]
            .as_array()
            .expect("leases")
            .iter()
            .map(|l| (l["id"].as_str().unwrap_or_default().to_string(), l.clone()))
            .collect()
    };
    for record in &records {
        match record.end {
            End::Active => {
                let answer = d.get(&format!("/v1/leases/{}", record.port));
                assert_eq!(
                    (answer.status, answer.json()["id"].as_str()),
                    (200, Some(record.id.as_str())),
                    "lease {} on {} was granted, never released, its owner lives: {}",
                    record.id,
                    record.port,
                    answer.body
                );
            }
            End::Released => assert!(
                !active.contains_key(&record.id),
                "lease {} was released (200) but is active again: {}",
                record.id,
                active[&record.id]
            ),
            End::OwnerKilled => {}
        }
    }
    assert_no_panic(&d);

    // The database as a crash leaves it.
    d.kill9();
    let granted: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let released: Vec<&str> = records
        .iter()
        .filter(|r| r.end == End::Released)
        .map(|r| r.id.as_str())
        .collect();
    let expected = d.dir().join("expected.json");
    std::fs::write(
        &expected,
        json!({"granted": granted, "released": released}).to_string(),
    )
    .unwrap();
    let report = database_report(d.db(), &expected);
    assert_eq!(report["integrity"], json!([["ok"]]), "{report}");
    assert_eq!(
        report["missing"],
        json!([]),
        "granted but not in the db: {report}"
    );
    assert_eq!(
        report["not_released"],
        json!([]),
        "released but not in the db: {report}"
    );
    assert_eq!(
        report["overlaps"],
        json!([]),
        "one port, two leases: {report}"
    );
    drop(workers);
}

/// Two leases whose certain intervals on one port overlap, if any: the
/// port was held twice at once (or the earlier lease was lost).
fn held_twice<'a>(records: &[&'a Record], end: Instant) -> Option<(&'a Record, &'a Record)> {
    let mut by_port: HashMap<u16, Vec<&Record>> = HashMap::new();
    for record in records {
        by_port.entry(record.port).or_default().push(record);
    }
    by_port.into_values().find_map(|leases| {
        leases.iter().enumerate().find_map(|(i, a)| {
            leases[i + 1..].iter().find_map(|b| {
                let (a_end, b_end) = (a.ended.unwrap_or(end), b.ended.unwrap_or(end));
                (a.id != b.id && a.granted < b_end && b.granted < a_end).then_some((*a, *b))
            })
        })
    })
}

/// Integrity, answered leases, and overlaps in the lease history, read with
/// Python's sqlite3 from the database a SIGKILL left behind.
fn database_report(db: &std::path::Path, expected: &std::path::Path) -> Value {
    const SCRIPT: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
expected = json.load(open(sys.argv[2]))
report = {"integrity": db.execute("PRAGMA integrity_check").fetchall()}
rows = db.execute("SELECT id, port, state, granted_at, ended_at FROM leases").fetchall()
state = {r[0]: r[2] for r in rows}
report["missing"] = sorted(i for i in expected["granted"] if i not in state)
report["not_released"] = sorted(i for i in expected["released"] if state.get(i) != "ended")
overlaps, by_port = [], {}
for r in rows:
    by_port.setdefault(r[1], []).append(r)
for port, leases in by_port.items():
    leases.sort(key=lambda r: r[3])
    latest_end, latest = None, None
    for r in leases:
        if latest is not None and (latest_end is None or r[3] < latest_end):
            overlaps.append([port, latest, r[0]])
        end = r[4]
        if latest is None or latest_end is not None and (end is None or end > latest_end):
            latest_end, latest = end, r[0]
report["overlaps"] = overlaps
print(json.dumps(report))
"#;
    let out = output_within(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(db)
            .arg(expected),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "python3 sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

#[test]
fn overlapping_certain_intervals_are_caught() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let lease = |id: &str, granted: u64, ended: Option<u64>| Record {
        id: id.into(),
        port: 20000,
        owner: 1,
        granted: at(granted),
        ended: ended.map(at),
        end: End::Released,
    };
    let (a, b) = (lease("a", 0, Some(10)), lease("b", 10, None));
    assert!(
        held_twice(&[&a, &b], at(100)).is_none(),
        "one after the other"
    );
    let late_release = lease("a", 0, Some(11));
    assert!(
        held_twice(&[&late_release, &b], at(100)).is_some(),
        "an overlap of 1 ms must be caught"
    );
    let never_ended = lease("a", 0, None);
    assert!(
        held_twice(&[&never_ended, &b], at(100)).is_some(),
        "a lease never released overlaps any later one"
    );
}
