//! What a grant passed over, told on stderr by `lease` and `run`: the
//! name's home port while something else holds it, and another name's home
//! that a scan skipped although it was free. Both come from the daemon's
//! answer (`home`, `skipped`), so a note never guesses a reason.

use portd_api::{Holder, HolderKind, Home, Lease, SkippedHome};

use super::command_text;

/// Longest command shown for a holder; longer ones end in `…`.
const MAX_COMMAND_CHARS: usize = 60;

/// Prints the notes for `lease` on stderr, one per line.
pub fn note(lease: &Lease) {
    for line in notes(lease, nix::unistd::geteuid().as_raw()) {
        eprintln!("{line}");
    }
}

/// The notes for `lease`, for a caller of uid `uid`.
pub fn notes(lease: &Lease, uid: u32) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(home) = &lease.home {
        lines.push(home_note(lease, home, uid));
    }
    if let Some(skipped) = &lease.skipped {
        lines.push(skipped_note(lease, skipped));
    }
    lines
}

/// `api: home port 8000 is held by pid 1234 (uvicorn …), using 8003 this
/// time; portctl kill 8000 frees it`.
fn home_note(lease: &Lease, home: &Home, uid: u32) -> String {
    let name = lease.name.as_deref().unwrap_or("this lease");
    let port = home.port;
    let who = format!("; portctl who {port} shows it");
    let (held, fix) = if let Some(holder) = &home.lease {
        let named = holder
            .name
            .as_deref()
            .map(|n| format!(" as '{n}'"))
            .unwrap_or_default();
        let same = if holder.owner.pid == lease.owner.pid {
            " (this lease's owner too)"
        } else {
            ""
        };
        (
            format!("is leased to pid {}{named}{same}", holder.owner.pid),
            who,
        )
    } else if home.not_permitted {
        ("may not be bound by portd".to_string(), String::new())
    } else if home.holders.is_empty() {
        (
            "was busy".to_string(),
            format!("; portctl who {port} shows what holds it now"),
        )
    } else {
        let holders: Vec<String> = home.holders.iter().map(short).collect();
        // `kill` signals only processes of the caller's uid (any, for root),
        // and never a container's port forwarder or a systemd socket.
        let killable = home.holders.iter().all(|h| {
            h.pid.is_some() && h.kind == HolderKind::Process && (uid == 0 || h.uid == uid)
        });
        let fix = if killable {
            format!("; portctl kill {port} frees it")
        } else {
            who
        };
        (format!("is held by {}", holders.join(", ")), fix)
    };
    format!(
        "{name}: home port {port} {held}, using {} this time{fix}",
        lease.port
    )
}

/// `portctl: skipped 8001, the home port of 'web', and took 8002; ...`.
fn skipped_note(lease: &Lease, skipped: &SkippedHome) -> String {
    let place = if lease.project.as_deref() == Some(skipped.project.as_str()) {
        String::new()
    } else {
        format!(" in {}", skipped.project)
    };
    format!(
        "portctl: skipped {port}, the home port of '{name}'{place}, and took {took}; \
         `portctl lease {port}` takes it anyway",
        port = skipped.port,
        name = skipped.name,
        took = lease.port,
    )
}

/// `pid 1234 (uvicorn app:app …)`: the program without its directory, and
/// the command cut short.
fn short(holder: &Holder) -> String {
    let Some(pid) = holder.pid else {
        return holder.describe();
    };
    let mut words = holder.cmdline.clone();
    if let Some(program) = words.first_mut()
        && let Some((_, base)) = program.rsplit_once('/').filter(|(_, b)| !b.is_empty())
    {
        *program = base.to_string();
    }
    let text = command_text(&words);
    let command = match text.char_indices().nth(MAX_COMMAND_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    };
    format!("pid {pid} ({command})")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A lease as the daemon sends it (the fields `home` and `skipped` absent).
    fn lease(port: u16, pid: u32) -> Lease {
        serde_json::from_value(json!({
            "id": "id", "port": port, "name": "api", "project": "/src/app",
            "owner": {"pid": pid, "start_time": 1.0, "uid": 1000},
            "state": "active", "end_reason": null, "granted_at": "2026-01-01T00:00:00Z",
            "expires_at": null, "ended_at": null
        }))
        .expect("a lease")
    }

    fn holder(pid: Option<u32>, uid: u32, kind: HolderKind, cmdline: &[&str]) -> Holder {
        Holder {
            pid,
            ppid: Some(1),
            uid,
            user: None,
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            start_time: None,
            lease_id: None,
            kind,
            suspect: false,
            container: None,
        }
    }

    fn home(lease: Option<Lease>, holders: Vec<Holder>) -> Home {
        Home {
            port: 8000,
            lease: lease.map(Box::new),
            holders,
            not_permitted: false,
        }
    }

    fn said(home: Home, uid: u32) -> String {
        let granted = Lease {
            home: Some(home),
            ..lease(8003, 42)
        };
        let lines = notes(&granted, uid);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }

    #[test]
    fn a_listener_on_the_home_is_named_with_the_kill_that_frees_it() {
        let uvicorn = holder(
            Some(1234),
            1000,
            HolderKind::Process,
            &["uvicorn", "main:app", "--port", "8000"],
        );
        assert_eq!(
            said(home(None, vec![uvicorn.clone()]), 1000),
            "api: home port 8000 is held by pid 1234 (uvicorn main:app --port 8000), \
             using 8003 this time; portctl kill 8000 frees it"
        );
        // Another user's process: kill would refuse, so point at who.
        assert!(
            said(home(None, vec![uvicorn.clone()]), 1001).ends_with("; portctl who 8000 shows it")
        );
        assert!(said(home(None, vec![uvicorn]), 0).ends_with("portctl kill 8000 frees it"));
        let proxy = holder(Some(77), 1000, HolderKind::DockerProxy, &["docker-proxy"]);
        assert!(said(home(None, vec![proxy]), 1000).ends_with("portctl who 8000 shows it"));
    }

    #[test]
    fn a_lease_on_the_home_names_its_owner_and_who() {
        let web = Lease {
            name: Some("web".into()),
            ..lease(8000, 4321)
        };
        assert_eq!(
            said(home(Some(web), Vec::new()), 1000),
            "api: home port 8000 is leased to pid 4321 as 'web', using 8003 this time; \
             portctl who 8000 shows it"
        );
        let own = Lease {
            name: None,
            ..lease(8000, 42)
        };
        assert!(
            said(home(Some(own), Vec::new()), 1000)
                .contains("is leased to pid 42 (this lease's owner too),"),
        );
    }

    #[test]
    fn a_home_whose_holder_is_gone_claims_no_holder() {
        assert_eq!(
            said(home(None, Vec::new()), 1000),
            "api: home port 8000 was busy, using 8003 this time; \
             portctl who 8000 shows what holds it now"
        );
        let denied = Home {
            not_permitted: true,
            ..home(None, Vec::new())
        };
        assert_eq!(
            said(denied, 1000),
            "api: home port 8000 may not be bound by portd, using 8003 this time"
        );
    }

    #[test]
    fn long_commands_are_cut_and_programs_lose_their_directory() {
        let long = "x".repeat(100);
        let h = holder(Some(5), 0, HolderKind::Process, &[&long]);
        assert_eq!(short(&h), format!("pid 5 ({}…)", "x".repeat(60)));
        let venv = holder(
            Some(6),
            0,
            HolderKind::Process,
            &["/home/me/app/.venv/bin/python3", "-m", "uvicorn"],
        );
        assert_eq!(short(&venv), "pid 6 (python3 -m uvicorn)");
        let hidden = holder(None, 0, HolderKind::Process, &[]);
        assert_eq!(short(&hidden), hidden.describe());
    }

    #[test]
    fn a_skipped_home_names_its_name_and_project_when_it_differs() {
        let skipped = |project: &str| Lease {
            skipped: Some(SkippedHome {
                port: 8001,
                name: "web".into(),
                project: project.into(),
            }),
            ..lease(8002, 42)
        };
        assert_eq!(
            notes(&skipped("/src/app"), 1000),
            [
                "portctl: skipped 8001, the home port of 'web', and took 8002; \
              `portctl lease 8001` takes it anyway"
            ]
        );
        assert!(notes(&skipped("/src/other"), 1000)[0].contains("'web' in /src/other,"));
        assert!(notes(&lease(8002, 42), 1000).is_empty());
    }
}
