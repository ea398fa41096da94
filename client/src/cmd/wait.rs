//! `portctl wait`: block until something listens on a port (or an HTTP path
//! answers 2xx/3xx), so a script can start a backend, wait, then go on.
//! Needs no daemon: it only knocks on loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;
use portd_api::parse_duration;

use super::port_arg;
use crate::error::ClientError;

/// How often the port is tried.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// How long one connection attempt or HTTP answer may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  portctl run --name api -- uvicorn app:app --port {port} &
  portctl wait \"$(portctl env --name api --format dotenv | cut -d= -f2)\" --http /health

Exit 0 once the port accepts connections on 127.0.0.1 or ::1 (and, with
--http, once GET PATH answers 2xx or 3xx); exit 1 on timeout.")]
pub struct WaitArgs {
    #[arg(value_parser = port_arg, allow_negative_numbers = true)]
    pub port: u16,
    /// Give up after this long (60, 30s, 2m)
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also wait until GET PATH answers 2xx or 3xx
    #[arg(long, value_name = "PATH")]
    pub http: Option<String>,
}

pub fn run(args: WaitArgs) -> Result<(), ClientError> {
    if let Some(path) = &args.http
        && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ClientError::Usage(format!(
            "invalid --http path '{path}': it must start with /"
        )));
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        if ready(args.port, args.http.as_deref()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let what = match &args.http {
                Some(path) => format!("GET {path} on port {} answered no 2xx/3xx", args.port),
                None => format!("nothing listened on port {}", args.port),
            };
            return Err(ClientError::Other(format!(
                "{what} within {}",
                humanize(args.timeout)
            )));
        }
        std::thread::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn ready(port: u16, http: Option<&str>) -> bool {
    [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .any(|ip| {
        let Ok(stream) = TcpStream::connect_timeout(&SocketAddr::new(ip, port), ATTEMPT_TIMEOUT)
        else {
            return false;
        };
        match http {
            None => true,
            Some(path) => http_ok(stream, path, port),
        }
    })
}

fn http_ok(mut stream: TcpStream, path: &str, port: u16) -> bool {
    let _ = stream.set_read_timeout(Some(ATTEMPT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ATTEMPT_TIMEOUT));
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: portctl-wait\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    status_is_success(&head[..read])
}

/// True for an HTTP status line with a 2xx or 3xx code.
pub fn status_is_success(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/") && matches!(head.get(9), Some(b'2' | b'3'))
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines_are_judged_by_their_class() {
        assert!(status_is_success(b"HTTP/1.1 200 OK"));
        assert!(status_is_success(b"HTTP/1.0 302 Found"));
        assert!(!status_is_success(b"HTTP/1.1 404 Not"));
        assert!(!status_is_success(b"HTTP/1.1 503 Unav"));
        assert!(!status_is_success(b"SSH-2.0-OpenSSH"));
    }

    #[test]
    fn a_listener_is_ready_and_a_closed_port_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(ready(port, None));
        drop(listener);
        assert!(!ready(port, None));
    }
}
