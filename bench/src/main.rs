//! `portd-bench`: drives a running portd over its Unix socket with N
//! concurrent keep-alive clients, each doing lease + release in a loop, and
//! reports requests per second with p50/p99 latency per request.
//!
//! Usage: portd-bench SOCKET CLIENTS SECONDS RANGE
//! Prints one JSON object on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn open(socket: &str) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to portd");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    /// One keep-alive request; returns (status, body).
    fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: portd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).expect("write");
        self.writer.write_all(body.as_bytes()).expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, String::from_utf8(body).expect("utf-8"))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: portd-bench SOCKET CLIENTS SECONDS RANGE");
        std::process::exit(2);
    }
    let socket = args[1].clone();
    let clients: usize = args[2].parse().expect("CLIENTS");
    let seconds: f64 = args[3].parse().expect("SECONDS");
    let range = args[4].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(clients + 1));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (socket, range, stop, start) = (
                socket.clone(),
                range.clone(),
                Arc::clone(&stop),
                Arc::clone(&start),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::open(&socket);
                let body = format!("{{\"range\":\"{range}\"}}");
                let mut latencies = Vec::with_capacity(100_000);
                let mut failures = 0u64;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (status, lease) = conn.request("POST", "/v1/leases", &body);
                    latencies.push(t.elapsed());
                    if status != 201 {
                        failures += 1;
                        continue;
                    }
                    let lease: serde_json::Value =
                        serde_json::from_str(&lease).expect("lease json");
                    let path = format!(
                        "/v1/leases/{}?id={}",
                        lease["port"],
                        lease["id"].as_str().expect("id")
                    );
                    let t = Instant::now();
                    let (status, _) = conn.request("DELETE", &path, "");
                    latencies.push(t.elapsed());
                    if status != 200 {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (latencies, failed) = worker.join().expect("worker");
        all.extend(latencies);
        failures += failed;
    }
    let elapsed = began.elapsed().as_secs_f64();
    all.sort_unstable();
    let report = serde_json::json!({
        "clients": clients,
        "requests": all.len(),
        "failures": failures,
        "seconds": elapsed,
        "requests_per_sec": all.len() as f64 / elapsed,
        "p50_us": percentile(&all, 0.50),
        "p99_us": percentile(&all, 0.99),
    });
    println!("{report}");
}
