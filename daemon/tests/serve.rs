//! In-process tests of `portd::serve`: a real daemon on a temp socket and a
//! temp database inside the test process, stopped through its token.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use portd::Config;
use portd_api::PortRange;
use tokio_util::sync::CancellationToken;

fn get(socket: &Path, path: &str) -> (u16, String) {
    request(socket, "GET", path, "")
}

fn request(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: portd\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_until_cancelled_and_keeps_the_database() {
    let dir = tempfile::Builder::new()
        .prefix("portd-serve")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("s.sock");
    let db = dir.path().join("state").join("portd.db");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut config = Config::new(socket.clone(), db.clone());
    config.range = PortRange::new(29900, 29909).unwrap();
    // No proxy: its default port is the machine's, not this test's.
    config.proxy_port = 0;
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(portd::serve(config, listener, shutdown.clone()));

    let socket_for_client = socket.clone();
    let (health, status, granted) = tokio::task::spawn_blocking(move || {
        (
            get(&socket_for_client, "/v1/health"),
            get(&socket_for_client, "/v1/status"),
            // Something for the WAL to hold until the stop.
            request(
                &socket_for_client,
                "POST",
                "/v1/leases",
                r#"{"range":"29900-29909"}"#,
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(granted.0, 201, "{}", granted.1);
    assert_eq!(health.0, 200, "{}", health.1);
    assert!(health.1.contains("\"ok\":true"), "{}", health.1);
    assert_eq!(status.0, 200);
    let status: serde_json::Value = serde_json::from_str(&status.1).unwrap();
    assert_eq!(status["range"], "29900-29909");
    assert_eq!(status["db"], db.display().to_string());

    shutdown.cancel();
    let finished = tokio::time::timeout(Duration::from_secs(15), daemon).await;
    finished
        .expect("serve returns after cancel")
        .unwrap()
        .expect("clean exit");
    assert!(db.exists(), "the database outlives the daemon");
    let wal = db.with_file_name("portd.db-wal");
    let left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "a clean stop leaves nothing in the WAL");
    assert!(
        UnixStream::connect(&socket).is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::Builder::new()
        .prefix("portd-serve")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("s.sock");
    let db = dir.path().join("portd.db");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| b"not a database "[i as usize % 15])
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    let result = portd::serve(
        Config::new(socket, db.clone()),
        listener,
        CancellationToken::new(),
    )
    .await;
    let message = result.expect_err("serve must refuse the file").to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file must be untouched"
    );
}
