//! A property-based fuzzer driven by the daemon's own OpenAPI document.
//!
//! Every case is one request built from an operation of the served
//! document: its method or another, its path with a valid or a malformed
//! `{port}`, its query parameters with valid and broken values and unknown
//! keys, and a body generated from the request schema, then mutated (unknown
//! fields, wrong types, truncated or non-JSON bytes, too large). Properties:
//! no 5xx, a documented status for each documented operation, an `ErrorBody`
//! whose code matches the status for every JSON failure, and the same daemon
//! still answers health after every case; at the end its log holds no panic.
//!
//! **Safety.** Tests run as root, and `kill` (or a lease with `kill`) on a
//! port signals whatever listens there. So every port this fuzzer can send,
//! in a path or a body, is either a port of its own block (where nothing
//! listens: checked before each such request) or not a port at all (0,
//! 65536, text). This is enforced twice: the generators produce nothing
//! else, and [`Case::is_safe`] rejects, before sending, any case whose path
//! segment or `LeaseRequest` body the daemon would read as a port or range
//! outside the block. `reap` and `cleanup` signal only orphans of this
//! daemon's own leases (processes tagged with its lease ids); nothing here
//! starts such a process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portd_api::{ErrorBody, LeaseRequest, PortRange, parse_port};
use portd_e2e::http::request_bytes;
use portd_e2e::ports::port_is_free;
use portd_e2e::{PortBlock, TestDaemon};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use super::{Failure, assert_no_panic, exchange};

/// Most cases run; the time budget below usually ends the run first.
const CASES: u32 = 6000;
/// Time spent sending new cases (shrinking a failure may take longer).
const BUDGET: Duration = Duration::from_secs(15);
/// Depth of generated JSON values.
const MAX_DEPTH: u32 = 4;

/// One documented operation.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    query: Vec<(String, Value)>,
    body: Option<Value>,
    statuses: BTreeSet<u16>,
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    /// Index of the operation it was built from.
    op: usize,
    method: String,
    /// The path with its `{port}` filled in (not yet percent-decoded).
    path: String,
    query: String,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
}

impl Case {
    fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let target = self.target();
        let Some(body) = &self.body else {
            return request_bytes(&self.method, &target, None);
        };
        let mut bytes = format!(
            "{} {target} HTTP/1.1\r\nHost: portd\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            body.len()
        )
        .into_bytes();
        if let Some(content_type) = self.content_type {
            bytes.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        bytes
    }

    /// The ports this request could make the daemon act on: path segments
    /// it would parse as a port, and the port of a lease (with or without
    /// `kill`). `None` if one lies outside `block`.
    fn ports(&self, block: PortRange) -> Option<Vec<u16>> {
        let mut ports = Vec::new();
        for segment in self.path.split('/') {
            let decoded = percent_decode(segment);
            if let Ok(port) = parse_port(&decoded) {
                ports.push(port);
            }
        }
        if let Some(body) = &self.body
            && let Ok(request) = serde_json::from_slice::<LeaseRequest>(body)
        {
            if let Some(range) = request.range
                && !(block.contains(range.start) && block.contains(range.end))
            {
                return None;
            }
            ports.extend(request.port);
        }
        ports.iter().all(|p| block.contains(*p)).then_some(ports)
    }

    /// Never a port outside the fuzzer's own block (see the module doc).
    fn is_safe(&self, block: PortRange) -> bool {
        self.ports(block).is_some()
    }
}

#[test]
fn generated_requests_never_get_a_5xx_or_break_the_daemon() {
    let block = PortBlock::reserve();
    let range = block.range();
    let d = TestDaemon::start(range);
    let document = d.get("/v1/openapi.json").json();
    let ops = operations(&document);
    assert!(ops.len() >= 13, "{} operations in the document", ops.len());

    let cases = Union::new(
        ops.iter()
            .enumerate()
            .map(|(i, op)| case(i, op, &document, range))
            .collect::<Vec<_>>(),
    )
    .prop_filter("every port stays in the block", move |c| c.is_safe(range));

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_global_rejects: 100_000,
        ..Config::default()
    });
    let started = Instant::now();
    let failed = AtomicBool::new(false);
    let (sent, skipped) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let seen = Mutex::new(BTreeMap::<String, usize>::new());
    let result = runner.run(&cases, |case| {
        // Past the budget, the remaining cases pass unsent; once a case has
        // failed, shrinking runs regardless.
        if started.elapsed() > BUDGET && !failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match check(&d, &ops[case.op], &case, range, &seen) {
            Ok(Outcome::Sent) => sent.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::Skipped) => skipped.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        Ok(())
    });
    if let Err(e) = result {
        // The daemon's log follows: TestDaemon prints it when a test panics.
        panic!("{e}");
    }
    let sent = sent.into_inner();
    assert!(sent >= 300, "only {sent} cases ran in {BUDGET:?}");
    let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "fuzz: {sent} requests in {:?} ({} skipped: a port was busy); answers: {seen:?}",
        started.elapsed(),
        skipped.into_inner()
    );
    d.assert_healthy("the fuzzing");
    assert_no_panic(&d);
}

/// What became of a case that passed.
enum Outcome {
    /// Sent, and every property held.
    Sent,
    /// Not sent: a port it names is busy.
    Skipped,
}

/// Sends `case` and checks the properties.
fn check(
    d: &TestDaemon,
    op: &Operation,
    case: &Case,
    block: PortRange,
    seen: &Mutex<BTreeMap<String, usize>>,
) -> Result<Outcome, TestCaseError> {
    let ports = case
        .ports(block)
        .ok_or_else(|| TestCaseError::fail("a port outside the block slipped through"))?;
    // Something listens on a port of ours after all (another program took
    // it): a kill could signal it, so this case is not sent.
    if ports.iter().any(|p| !port_is_free(*p)) {
        return Ok(Outcome::Skipped);
    }
    let what = format!(
        "{} {} body {:?}",
        case.method,
        case.target(),
        case.body.as_deref().map(String::from_utf8_lossy)
    );
    let answer = match exchange(d.socket(), &case.bytes()) {
        Ok(answer) => answer,
        Err(Failure::NotConnected(e) | Failure::Unanswered(e)) => {
            return Err(TestCaseError::fail(format!("{what}: no answer: {e}")));
        }
    };
    *seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(format!("{} {} {}", case.method, op.path, answer.status))
        .or_default() += 1;
    prop_assert!(
        answer.status < 500,
        "{what}: answered {} {}",
        answer.status,
        answer.body
    );
    let json = answer.header("content-type") == Some("application/json");
    let routed = answer.header("portd-version").is_some();
    if routed {
        prop_assert!(json, "{what}: {} answer is not JSON", answer.status);
    }
    if json && answer.status >= 400 {
        let body: ErrorBody = serde_json::from_str(&answer.body).map_err(|e| {
            TestCaseError::fail(format!("{what}: not an error body ({e}): {}", answer.body))
        })?;
        prop_assert_eq!(
            body.error.code.status(),
            answer.status,
            "{}: code {:?} with status {}",
            what,
            body.error.code,
            answer.status
        );
        prop_assert!(!body.error.message.is_empty(), "{what}: empty message");
    } else if json {
        serde_json::from_str::<Value>(&answer.body).map_err(|e| {
            TestCaseError::fail(format!("{what}: body is not JSON ({e}): {}", answer.body))
        })?;
    }
    let no_route = answer.body.contains("no such endpoint");
    if case.method == op.method && routed && !no_route {
        prop_assert!(
            op.statuses.contains(&answer.status),
            "{what}: status {} is not documented for {} {} ({:?})",
            answer.status,
            op.method,
            op.path,
            op.statuses
        );
    }
    let health = exchange(d.socket(), &request_bytes("GET", "/v1/health", None));
    match health {
        Ok(h) if h.status == 200 && h.json()["pid"] == d.pid() => Ok(Outcome::Sent),
        other => Err(TestCaseError::fail(format!(
            "{what}: health afterwards: {other:?}"
        ))),
    }
}

/// The operations of an OpenAPI document, with their query parameters,
/// request body schema and documented statuses.
fn operations(document: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    (
                        p["name"].as_str().expect("a parameter name").to_string(),
                        p["schema"].clone(),
                    )
                })
                .collect();
            let body = op["requestBody"]["content"]["application/json"]["schema"].clone();
            let statuses = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|s| s.parse().expect("a numeric status"))
                .collect();
            ops.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                query,
                body: (!body.is_null()).then_some(body),
                statuses,
            });
        }
    }
    ops
}

/// Requests built from operation `index`.
fn case(index: usize, op: &Operation, document: &Value, block: PortRange) -> BoxedStrategy<Case> {
    let method = prop_oneof![
        8 => Just(op.method.clone()),
        2 => prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
            .prop_map(String::from),
        1 => prop::sample::select(vec!["get", "BREW", "M-SEARCH", "X"]).prop_map(String::from),
    ];
    let template = op.path.clone();
    let path = port_segment(block).prop_map(move |port| template.replace("{port}", &port));
    let query = query(op, document);
    let body = match &op.body {
        Some(schema) => body(document, schema, block),
        None => prop_oneof![
            6 => Just(None),
            1 => junk_body().prop_map(Some),
        ]
        .boxed(),
    };
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("text/plain"),
        None,
    ]);
    (method, path, query, body, content_type)
        .prop_map(move |(method, path, query, body, content_type)| Case {
            op: index,
            method,
            path,
            query,
            body,
            content_type,
        })
        .boxed()
}

/// A `{port}` path segment: a port of the block, or something that is not
/// a port at all (never a valid port outside the block, percent-decoded
/// or not: `is_safe` checks that too).
fn port_segment(block: PortRange) -> BoxedStrategy<String> {
    prop_oneof![
        6 => (block.start..=block.end).prop_map(|p| p.to_string()),
        3 => prop::sample::select(vec![
            "0", "65536", "99999999999999999999", "-1", "abc", "1e3", "0x50", "%00",
            "%ff", "%zz", "%", "..", "+80", "%2F", "8000x", "%20", "\u{e9}", "null",
        ])
        .prop_map(String::from),
        1 => "[a-z._~-]{1,12}",
    ]
    .boxed()
}

/// A query string: the operation's parameters with valid or broken
/// values, sometimes an unknown key, a repeated key or a broken escape.
fn query(op: &Operation, document: &Value) -> BoxedStrategy<String> {
    let params: Vec<BoxedStrategy<Option<String>>> = op
        .query
        .iter()
        .map(|(name, schema)| {
            let name = name.clone();
            let value = query_value(&name, resolve(document, schema));
            prop::option::of(value)
                .prop_map(move |v| v.map(|v| format!("{name}={v}")))
                .boxed()
        })
        .collect();
    let extra = prop_oneof![
        8 => Just(None),
        1 => Just(Some("colour=red".to_string())),
        1 => prop::sample::select(vec!["all=true&all=true", "%zz=1", "=", "&&", "a=%", "id"])
            .prop_map(|s| Some(s.to_string())),
    ];
    (params, extra)
        .prop_map(|(params, extra)| {
            params
                .into_iter()
                .flatten()
                .chain(extra)
                .collect::<Vec<_>>()
                .join("&")
        })
        .boxed()
}

fn query_value(name: &str, schema: &Value) -> BoxedStrategy<String> {
    let typed = if schema["type"] == "boolean" {
        prop::sample::select(vec!["true", "false", "1", "maybe", ""])
            .prop_map(String::from)
            .boxed()
    } else if name == "since" {
        prop::sample::select(vec![
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123Z",
            "1970-01-01T00:00:00Z",
            "yesterday",
            "2026-13-45T99:99:99Z",
            "9999-12-31T23:59:59Z",
        ])
        .prop_map(encode)
        .boxed()
    } else {
        Just(String::new()).boxed()
    };
    prop_oneof![
        3 => typed,
        2 => text().prop_map(|s| encode(&s)),
    ]
    .boxed()
}

/// A body for a schema: valid, mutated, or not JSON at all.
fn body(document: &Value, schema: &Value, block: PortRange) -> BoxedStrategy<Option<Vec<u8>>> {
    let valid = value(document, schema, None, block, 0);
    let mutated = (valid.clone(), "[a-z_]{1,10}", junk_leaf()).prop_map(|(value, key, junk)| {
        let mut value = value;
        match value.as_object_mut() {
            // An unknown field, or a known one with a value of another type.
            Some(map) if !map.is_empty() && key.len() % 2 == 0 => {
                let first = map.keys().next().cloned().unwrap_or_default();
                map.insert(first, junk);
            }
            Some(map) => {
                map.insert(format!("x_{key}"), junk);
            }
            None => value = Value::Object(Map::from_iter([(key, junk)])),
        }
        value
    });
    prop_oneof![
        6 => valid.prop_map(|v| Some(v.to_string().into_bytes())),
        3 => mutated.prop_map(|v| Some(v.to_string().into_bytes())),
        1 => (value(document, schema, None, block, 0), any::<prop::sample::Index>())
            .prop_map(|(v, cut)| {
                let text = v.to_string();
                let at = cut.index(text.len().max(1));
                Some(text.as_bytes()[..at].to_vec())
            }),
        2 => junk_body().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// Bodies that are not what any endpoint takes.
fn junk_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64),
        2 => junk_leaf().prop_map(|v| v.to_string().into_bytes()),
        1 => Just(b"   \n".to_vec()),
        1 => Just(b"{\"a\":".to_vec()),
        1 => Just(format!("[{}]", "[".repeat(200)).into_bytes()),
        1 => Just(format!("{{\"project\":\"/{}\"}}", "a".repeat(70 * 1024)).into_bytes()),
    ]
    .boxed()
}

/// A JSON value of `schema`; `key` is the property it is for. Ports and
/// ranges come from the block or are invalid.
fn value(
    document: &Value,
    schema: &Value,
    key: Option<&str>,
    block: PortRange,
    depth: u32,
) -> BoxedStrategy<Value> {
    let schema = resolve(document, schema);
    if depth > MAX_DEPTH {
        return Just(Value::Null).boxed();
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[combinator].as_array() {
            let choices: Vec<_> = alternatives
                .iter()
                .map(|s| value(document, s, key, block, depth + 1))
                .collect();
            return Union::new(choices).boxed();
        }
    }
    if let Some(all) = schema["allOf"].as_array()
        && let Some(first) = all.first()
    {
        return value(document, first, key, block, depth + 1);
    }
    if let Some(options) = schema["enum"].as_array() {
        let mut options = options.clone();
        options.push(json!("not-a-member"));
        return prop::sample::select(options).boxed();
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return junk_leaf();
    }
    let choices: Vec<BoxedStrategy<Value>> = types
        .iter()
        .map(|t| typed_value(document, schema, t, key, block, depth))
        .collect();
    Union::new(choices).boxed()
}

fn typed_value(
    document: &Value,
    schema: &Value,
    kind: &str,
    key: Option<&str>,
    block: PortRange,
    depth: u32,
) -> BoxedStrategy<Value> {
    match (kind, key) {
        ("null", _) => Just(Value::Null).boxed(),
        ("boolean", _) => any::<bool>().prop_map(Value::Bool).boxed(),
        ("integer", Some("port")) => port_value(block),
        ("integer", _) => prop_oneof![
            4 => (0i64..100_000).prop_map(Value::from),
            1 => prop::sample::select(vec![
                json!(-1), json!(0), json!(1), json!(u32::MAX), json!(u64::MAX),
                json!(i64::MIN), json!(315_360_001), json!(1.5),
            ]),
        ]
        .boxed(),
        ("number", _) => prop_oneof![
            4 => (-100.0f64..2.0e9).prop_map(Value::from),
            1 => prop::sample::select(vec![
                json!(0.0), json!(-0.5), json!(50.0), json!(50.001), json!(1e300), json!(-1e300),
            ]),
        ]
        .boxed(),
        ("string", Some("range")) => range_value(block),
        ("string", _) if schema["pattern"].is_string() => range_value(block),
        ("string", Some("project")) => prop_oneof![
            2 => prop::sample::select(vec!["/tmp/fuzz/a", "/tmp/fuzz/b", "/"])
                .prop_map(Value::from),
            1 => text().prop_map(Value::from),
        ]
        .boxed(),
        ("string", Some("name")) => prop_oneof![
            2 => prop::sample::select(vec!["api", "web", "db"]).prop_map(Value::from),
            1 => text().prop_map(Value::from),
            1 => Just(Value::from("n".repeat(200))),
        ]
        .boxed(),
        ("string", Some("signal")) => prop::sample::select(vec![
            "TERM", "KILL", "INT", "HUP", "SIGTERM", "15", "9", "0", "999", "sigkill", "", "BOGUS",
        ])
        .prop_map(Value::from)
        .boxed(),
        ("string", _) => text().prop_map(Value::from).boxed(),
        ("array", _) => {
            let items = value(document, &schema["items"], None, block, depth + 1);
            prop::collection::vec(items, 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        ("object", _) => object_value(document, schema, block, depth),
        _ => junk_leaf(),
    }
}

/// An object with its required properties and some of the optional ones.
fn object_value(
    document: &Value,
    schema: &Value,
    block: PortRange,
    depth: u32,
) -> BoxedStrategy<Value> {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, sub)| {
            let field = value(document, sub, Some(name), block, depth + 1);
            let name = name.clone();
            if required.contains(name.as_str()) {
                field.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                prop::option::of(field)
                    .prop_map(move |v| v.map(|v| (name.clone(), v)))
                    .boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// A port in a body: one of the block's, or not a valid port.
fn port_value(block: PortRange) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (block.start..=block.end).prop_map(Value::from),
        2 => prop::sample::select(vec![
            json!(0), json!(65536), json!(70000), json!(-1), json!(1e12), json!(80.5),
            json!("8000"), json!(null),
        ]),
    ]
    .boxed()
}

/// A range in a body: inside the block, or not a valid range.
fn range_value(block: PortRange) -> BoxedStrategy<Value> {
    let (lo, hi) = (block.start, block.end);
    prop_oneof![
        4 => (lo..=hi, lo..=hi).prop_map(|(a, b)| Value::from(format!("{}-{}", a.min(b), a.max(b)))),
        2 => prop::sample::select(vec![
            format!("{hi}-{lo}"), "9-8".into(), "0-10".into(), "abc".into(), "".into(),
            "-".into(), format!("{lo}-"), format!("{lo}"), "65535-65536".into(),
            format!("{lo} - {hi}"),
        ])
        .prop_map(Value::from),
    ]
    .boxed()
}

/// Leaves of any type, for wrong-type mutations. Integers here are never
/// valid ports (a mutation must not turn a field into one outside the
/// block).
fn junk_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            json!(-1),
            json!(0),
            json!(65536),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(0.25),
        ]),
        text().prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "a", null, {"b": []}])),
    ]
    .boxed()
}

/// Short text of any characters, with some control and non-ASCII ones.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[ -~]{0,16}",
        1 => prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        1 => Just("line\nbreak\u{0}nul".to_string()),
    ]
    .boxed()
}

/// Follows `$ref`s to the schema they name.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(target) => {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {target}"));
            resolve(document, &document["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes `%XX` escapes as the daemon's router does before parsing a
/// path parameter; bad escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_safety_check_refuses_ports_outside_the_block() {
    let block = PortRange::new(20000, 20019).unwrap();
    let case = |path: &str, body: Option<&str>| Case {
        op: 0,
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        body: body.map(|b| b.as_bytes().to_vec()),
        content_type: None,
    };
    assert!(case("/v1/ports/20005/kill", None).is_safe(block));
    assert!(case("/v1/ports/abc/kill", None).is_safe(block));
    for outside in ["22", "%2022", "%32%32", "022", "65535"] {
        let path = format!("/v1/ports/{outside}/kill");
        assert!(!case(&path, None).is_safe(block), "{path}");
    }
    assert!(case("/v1/leases", Some(r#"{"port": 20001, "kill": true}"#)).is_safe(block));
    assert!(!case("/v1/leases", Some(r#"{"port": 22, "kill": true}"#)).is_safe(block));
    assert!(!case("/v1/leases", Some(r#"{"range": "1-65535"}"#)).is_safe(block));
    assert!(case("/v1/leases", Some(r#"{"range": "20000-20019"}"#)).is_safe(block));
}
