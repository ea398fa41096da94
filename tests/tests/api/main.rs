//! The HTTP API end to end: the real `portd` binary on a temp socket and a
//! temp database, real owner processes, real listeners on real ports.
//!
//! Every test reserves its own block of ports and starts its own daemon on
//! it, so the tests run in parallel (threads or processes) without sharing
//! anything. Waits are conditions with deadlines, never sleeps.
//!
//! One module per topic; the helpers below are shared by all of them.

mod bad_input;
mod ends;
mod files;
mod grants;
mod names;
mod refusals;
mod restarts;
mod status;

use std::time::Duration;

use portd_api::VERSION;
use portd_e2e::http::{self, Response};
use portd_e2e::{ChildGuard, PortBlock, TestDaemon, wait_until};
use serde_json::{Value, json};

/// How long the daemon may take to notice a death, an expiry or a restart.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long a daemon that must refuse to start may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// One request; every answer the daemon's router produces must carry the
/// version header, so every call checks it.
fn call(d: &TestDaemon, method: &str, path: &str, body: Option<&str>) -> Response {
    let answer = d.request(method, path, body);
    assert_eq!(
        answer.header("portd-version"),
        Some(VERSION),
        "{method} {path}: no version header in {answer:?}"
    );
    answer
}

fn get(d: &TestDaemon, path: &str) -> Response {
    call(d, "GET", path, None)
}

fn lease(d: &TestDaemon, body: Value) -> Response {
    call(d, "POST", "/v1/leases", Some(&body.to_string()))
}

/// Asserts the status and returns the JSON body.
#[track_caller]
fn expect(answer: &Response, status: u16) -> Value {
    assert_eq!(answer.status, status, "unexpected answer: {}", answer.body);
    answer.json()
}

/// Asserts status and error code of an error answer; returns `error`.
#[track_caller]
fn expect_error(answer: &Response, status: u16, code: &str) -> Value {
    let body = expect(answer, status);
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "an error needs a message: {body}");
    error.clone()
}

/// The active lease on `port`, or `None` on 404.
fn active_lease(d: &TestDaemon, port: u16) -> Option<Value> {
    let answer = get(d, &format!("/v1/leases/{port}"));
    match answer.status {
        200 => Some(answer.json()),
        404 => None,
        other => panic!("GET /v1/leases/{port}: {other} {}", answer.body),
    }
}

/// Lease `id` from the full history (`?all=true`).
fn lease_by_id(d: &TestDaemon, id: &Value) -> Option<Value> {
    let all = expect(&get(d, "/v1/leases?all=true"), 200);
    all["leases"]
        .as_array()
        .expect("a list of leases")
        .iter()
        .find(|l| l["id"] == *id)
        .cloned()
}

/// Waits until lease `id` on `port` is no longer active; returns it as
/// history shows it (ended).
#[track_caller]
fn wait_for_end(d: &TestDaemon, port: u16, id: &Value) -> Value {
    let ended = wait_until(DEADLINE, || {
        active_lease(d, port).is_none_or(|lease| lease["id"] != *id)
    });
    assert!(
        ended,
        "lease {id} on {port} still active after {DEADLINE:?}: {:?}",
        active_lease(d, port)
    );
    let lease = lease_by_id(d, id).unwrap_or_else(|| panic!("lease {id} is not in ?all=true"));
    assert_eq!(lease["state"], "ended", "{lease}");
    assert!(lease["ended_at"].is_string(), "{lease}");
    lease
}

fn events(d: &TestDaemon) -> Vec<Value> {
    let body = expect(&get(d, "/v1/events"), 200);
    body["events"].as_array().expect("a list of events").clone()
}

fn has_event(d: &TestDaemon, kind: &str, id: &Value) -> bool {
    events(d)
        .iter()
        .any(|e| e["kind"] == kind && e["lease_id"] == *id)
}

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}
