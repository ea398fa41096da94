//! `portd-bench`: a load generator for portd, and for Google's portserver
//! beside it, that keeps N clients busy from one event-loop thread (as wrk
//! does), so that on a small machine the load costs little of the CPU the
//! server under test needs.
//!
//! ```text
//! portd-bench portd SOCKET CLIENTS SECONDS RANGE
//! portd-bench health SOCKET CLIENTS SECONDS
//! portd-bench portserver ADDRESS CLIENTS SECONDS MAX_REQUESTS
//! ```
//!
//! - `portd`: each client has its own keep-alive connection to portd's Unix
//!   socket and loops `POST /v1/leases {"range": RANGE}` then
//!   `DELETE /v1/leases/PORT?id=ID`; both count as requests.
//! - `health`: the same clients and connections looping `GET /v1/health`:
//!   the floor of one HTTP exchange with portd, to hold a lease's round
//!   trip against.
//! - `portserver`: each client loops the portserver protocol as portpicker
//!   speaks it: connect to ADDRESS (a leading `@` names an abstract socket),
//!   send this process's pid, read the port until the server closes. One
//!   request per connection is the only way the protocol works, and it has
//!   no release, so the run also stops after MAX_REQUESTS grants, which
//!   keeps a fresh server's pool from running dry.
//!
//! Prints one JSON object on stdout: clients, requests, failures, seconds,
//! requests_per_sec, p50_us and p99_us (per request), and client_cpu (this
//! process's CPU seconds per wall second).

use std::cell::Cell;
use std::os::linux::net::SocketAddrExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const USAGE: &str = "usage: portd-bench portd SOCKET CLIENTS SECONDS RANGE\n       \
                     portd-bench health SOCKET CLIENTS SECONDS\n       \
                     portd-bench portserver ADDRESS CLIENTS SECONDS MAX_REQUESTS";

/// What the clients of a run do.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Lease and release on portd.
    Portd,
    /// `GET /v1/health` on portd.
    Health,
    /// The portserver protocol.
    Portserver,
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// The releases' share of `latencies` (portd only), apart.
    releases: Vec<Duration>,
    failures: u64,
}

/// Shared by the clients of one run (one thread, so no atomics).
struct Run {
    deadline: Instant,
    /// Grants left before a portserver run stops.
    budget: Cell<u64>,
}

impl Run {
    fn more(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn take_one(&self) -> bool {
        let left = self.budget.get();
        if left == 0 || !self.more() {
            return false;
        }
        self.budget.set(left - 1);
        true
    }
}

/// A keep-alive HTTP/1.1 connection to portd.
struct Conn {
    stream: BufReader<UnixStream>,
    out: Vec<u8>,
    line: String,
}

impl Conn {
    async fn open(socket: &str) -> Conn {
        let stream = UnixStream::connect(socket).await.expect("connect to portd");
        Conn {
            stream: BufReader::new(stream),
            out: Vec::with_capacity(256),
            line: String::new(),
        }
    }

    /// One request, written with one `write`; returns (status, body).
    async fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        use std::io::Write;
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: portd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("format a request");
        self.stream
            .get_mut()
            .write_all(&self.out)
            .await
            .expect("write");
        self.line.clear();
        self.stream
            .read_line(&mut self.line)
            .await
            .expect("status line");
        let status: u16 = self
            .line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut length = 0;
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await.expect("header");
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, body)
    }
}

async fn portd_client(socket: Rc<str>, range: Rc<str>, run: Rc<Run>) -> Tally {
    let mut conn = Conn::open(&socket).await;
    let body = format!("{{\"range\":\"{range}\"}}");
    let mut tally = Tally {
        latencies: Vec::with_capacity(100_000),
        ..Tally::default()
    };
    while run.more() {
        let t = Instant::now();
        let (status, lease) = conn.request("POST", "/v1/leases", &body).await;
        tally.latencies.push(t.elapsed());
        if status != 201 {
            tally.failures += 1;
            continue;
        }
        let lease: serde_json::Value = serde_json::from_slice(&lease).expect("lease json");
        let path = format!(
            "/v1/leases/{}?id={}",
            lease["port"],
            lease["id"].as_str().expect("id")
        );
        let t = Instant::now();
        let (status, _) = conn.request("DELETE", &path, "").await;
        tally.releases.push(t.elapsed());
        if status != 200 {
            tally.failures += 1;
        }
    }
    tally
}

async fn health_client(socket: Rc<str>, run: Rc<Run>) -> Tally {
    let mut conn = Conn::open(&socket).await;
    let mut tally = Tally {
        latencies: Vec::with_capacity(100_000),
        ..Tally::default()
    };
    while run.more() {
        let t = Instant::now();
        let (status, _) = conn.request("GET", "/v1/health", "").await;
        tally.latencies.push(t.elapsed());
        if status != 200 {
            tally.failures += 1;
        }
    }
    tally
}

async fn portserver_client(address: Rc<str>, run: Rc<Run>) -> Tally {
    let request = format!("{}\n", std::process::id());
    let addr = match address.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name),
        None => std::os::unix::net::SocketAddr::from_pathname(&*address),
    }
    .expect("portserver address");
    let mut tally = Tally::default();
    let mut answer = Vec::with_capacity(16);
    while run.take_one() {
        let t = Instant::now();
        let std_stream =
            std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect to portserver");
        std_stream.set_nonblocking(true).expect("nonblocking");
        let mut stream = UnixStream::from_std(std_stream).expect("register");
        stream.write_all(request.as_bytes()).await.expect("write");
        answer.clear();
        stream.read_to_end(&mut answer).await.expect("read");
        tally.latencies.push(t.elapsed());
        let port = std::str::from_utf8(&answer)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if !matches!(port, Some(p) if p > 0) {
            tally.failures += 1;
        }
    }
    tally
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let (user, system) = (usage.user_time(), usage.system_time());
    Duration::from_micros(
        (user.tv_sec() + system.tv_sec()) as u64 * 1_000_000
            + (user.tv_usec() + system.tv_usec()) as u64,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `health` takes no fifth argument; the others need theirs.
    let (kind, target, clients, seconds, last) = match args.as_slice() {
        [kind, target, clients, seconds] if kind == "health" => {
            (kind, target, clients, seconds, "")
        }
        [kind, target, clients, seconds, last] if kind != "health" => {
            (kind, target, clients, seconds, last.as_str())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let clients: usize = clients.parse().expect("CLIENTS");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let kind = match kind.as_str() {
        "portd" => Kind::Portd,
        "health" => Kind::Health,
        "portserver" => Kind::Portserver,
        other => {
            eprintln!("portd-bench: unknown kind {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let target: Rc<str> = target.as_str().into();
    let last: Rc<str> = last.into();
    let (tallies, elapsed, cpu) = local.block_on(&runtime, async {
        let began = Instant::now();
        let cpu_began = cpu_time();
        let run = Rc::new(Run {
            deadline: began + Duration::from_secs_f64(seconds),
            budget: Cell::new(if kind == Kind::Portserver {
                last.parse().expect("MAX_REQUESTS")
            } else {
                u64::MAX
            }),
        });
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (target, run) = (Rc::clone(&target), Rc::clone(&run));
                match kind {
                    Kind::Portd => {
                        tokio::task::spawn_local(portd_client(target, Rc::clone(&last), run))
                    }
                    Kind::Health => tokio::task::spawn_local(health_client(target, run)),
                    Kind::Portserver => tokio::task::spawn_local(portserver_client(target, run)),
                }
            })
            .collect();
        let mut tallies = Vec::with_capacity(clients);
        for task in tasks {
            tallies.push(task.await.expect("client"));
        }
        (tallies, began.elapsed(), cpu_time() - cpu_began)
    });
    let (mut grants, mut releases) = (Vec::new(), Vec::new());
    let mut failures = 0;
    for tally in tallies {
        grants.extend(tally.latencies);
        releases.extend(tally.releases);
        failures += tally.failures;
    }
    let mut all: Vec<Duration> = grants.iter().chain(&releases).copied().collect();
    all.sort_unstable();
    grants.sort_unstable();
    releases.sort_unstable();
    let elapsed = elapsed.as_secs_f64();
    let mut report = serde_json::json!({
        "clients": clients,
        "requests": all.len(),
        "failures": failures,
        "seconds": elapsed,
        "requests_per_sec": all.len() as f64 / elapsed,
        "p50_us": percentile(&all, 0.50),
        "p99_us": percentile(&all, 0.99),
        "client_cpu": cpu.as_secs_f64() / elapsed,
    });
    if kind == Kind::Portd {
        // Each half of the loop alone: a grant, and a release.
        report["grant_p50_us"] = percentile(&grants, 0.50).into();
        report["release_p50_us"] = percentile(&releases, 0.50).into();
    }
    println!("{report}");
}
