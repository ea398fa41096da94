//! Noticing a command that ignores its port: a dev server that listens on
//! its own default (Vite's 5173) while the lease holds another port. `run`
//! looks at the lease's processes a few times in the first seconds; once
//! they listen on the leased port it stops looking, and if they listen only
//! elsewhere for a second or more it says which port and what to add.

use std::path::Path;
use std::time::{Duration, Instant};

use portd_api::LeaseProcess;

/// When to look, after the command started.
const LOOK_AT: [Duration; 11] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
    Duration::from_millis(2000),
    Duration::from_millis(3000),
    Duration::from_millis(4000),
    Duration::from_millis(5000),
    Duration::from_millis(6500),
    Duration::from_millis(8000),
    Duration::from_millis(10000),
];

/// How long the command must listen only elsewhere before `run` says so: a
/// server may open another port (an inspector, a bundler's service) a
/// moment before its main one.
const SETTLED: Duration = Duration::from_secs(1);

/// Interpreters whose first argument names the program that runs.
const INTERPRETERS: &[&str] = &[
    "node", "nodejs", "bun", "deno", "python", "python3", "ruby", "perl", "php", "sh", "bash",
    "dash",
];

/// The state of the looking.
#[derive(Debug)]
pub struct PortCheck {
    started: Instant,
    next: usize,
    /// When the command was first seen listening only elsewhere.
    elsewhere_since: Option<Instant>,
    done: bool,
}

impl PortCheck {
    pub fn new(started: Instant) -> PortCheck {
        PortCheck {
            started,
            next: 0,
            elsewhere_since: None,
            done: false,
        }
    }

    /// When to look next; `None` once there is nothing more to learn.
    pub fn due(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        LOOK_AT.get(self.next).map(|after| self.started + *after)
    }

    /// Takes in what the lease's processes listen on at `now`; returns the
    /// warning to print, once.
    pub fn observe(
        &mut self,
        now: Instant,
        leased: u16,
        processes: &[LeaseProcess],
    ) -> Option<String> {
        while self.due().is_some_and(|due| due <= now) {
            self.next += 1;
        }
        if self.done {
            return None;
        }
        if processes.iter().any(|p| p.listens.contains(&leased)) {
            self.done = true;
            return None;
        }
        let Some(elsewhere) = processes.iter().find(|p| !p.listens.is_empty()) else {
            self.elsewhere_since = None;
            return None;
        };
        let since = *self.elsewhere_since.get_or_insert(now);
        if now.duration_since(since) < SETTLED {
            return None;
        }
        self.done = true;
        Some(wrong_port(elsewhere, leased))
    }
}

/// `vite listens on 5173, not on the leased 8003: add --port {port}`.
pub fn wrong_port(process: &LeaseProcess, leased: u16) -> String {
    let ports: Vec<String> = process.listens.iter().map(u16::to_string).collect();
    format!(
        "{} listens on {}, not on the leased {leased}: add --port {{port}} (or the option it takes for its port) to the command",
        program_name(&process.cmdline),
        ports.join(" and ")
    )
}

/// The program a command line runs, for messages: `vite` for
/// `node /app/node_modules/.bin/vite`, `http.server` for
/// `python3 -m http.server`.
pub fn program_name(cmdline: &[String]) -> String {
    let base = |arg: &str| -> String {
        let name = Path::new(arg)
            .file_name()
            .map_or(arg.to_string(), |n| n.to_string_lossy().into_owned());
        [".js", ".mjs", ".cjs", ".ts", ".py", ".rb"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext).map(String::from))
            .unwrap_or(name)
    };
    let Some(first) = cmdline.first() else {
        return "the command".into();
    };
    let program = base(first);
    let interpreter = INTERPRETERS.contains(&program.as_str())
        || program.starts_with("python3.")
        || program.starts_with("python2");
    if !interpreter {
        return program;
    }
    let mut args = cmdline[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-m" => return args.next().map_or(program, |module| module.clone()),
            "-c" | "-e" => return program,
            flag if flag.starts_with('-') => {}
            script => return base(script),
        }
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    fn listening(cmd: &str, ports: &[u16]) -> LeaseProcess {
        LeaseProcess {
            pid: 1,
            cmdline: argv(cmd),
            listens: ports.to_vec(),
        }
    }

    #[test]
    fn programs_are_named_past_their_interpreter() {
        assert_eq!(
            program_name(&argv("node /app/node_modules/.bin/vite")),
            "vite"
        );
        assert_eq!(
            program_name(&argv("node --inspect /a/vite/bin/vite.js")),
            "vite"
        );
        assert_eq!(
            program_name(&argv("python3 -m http.server 8000")),
            "http.server"
        );
        assert_eq!(program_name(&argv("/usr/bin/python3.11 -u app.py")), "app");
        assert_eq!(program_name(&argv("/usr/sbin/nginx -c x.conf")), "nginx");
        assert_eq!(program_name(&argv("bash -c true")), "bash");
        assert_eq!(program_name(&[]), "the command");
    }

    #[test]
    fn a_command_that_listens_only_elsewhere_is_named_once_it_settles() {
        let t0 = Instant::now();
        let mut check = PortCheck::new(t0);
        let vite = [listening("node /x/.bin/vite", &[5173])];
        assert_eq!(check.observe(t0 + LOOK_AT[0], 8003, &vite), None);
        let said = check
            .observe(t0 + LOOK_AT[0] + SETTLED, 8003, &vite)
            .expect("a warning");
        assert_eq!(
            said,
            "vite listens on 5173, not on the leased 8003: add --port {port} (or the option it takes for its port) to the command"
        );
        // Said once.
        assert_eq!(check.observe(t0 + LOOK_AT[8], 8003, &vite), None);
        assert_eq!(check.due(), None);
    }

    #[test]
    fn listening_on_the_leased_port_ends_the_looking() {
        let t0 = Instant::now();
        let mut check = PortCheck::new(t0);
        let both = [listening("uvicorn", &[8003, 9229])];
        assert_eq!(check.observe(t0 + LOOK_AT[0], 8003, &both), None);
        assert_eq!(check.due(), None);
    }

    #[test]
    fn another_port_opened_a_moment_before_the_leased_one_is_no_warning() {
        let t0 = Instant::now();
        let mut check = PortCheck::new(t0);
        let early = [listening("next-server", &[9229])];
        let later = [listening("next-server", &[8003, 9229])];
        assert_eq!(check.observe(t0 + LOOK_AT[0], 8003, &early), None);
        assert_eq!(check.observe(t0 + LOOK_AT[2], 8003, &later), None);
        assert_eq!(check.due(), None);
    }

    #[test]
    fn a_command_that_never_listens_is_left_alone() {
        let t0 = Instant::now();
        let mut check = PortCheck::new(t0);
        let quiet = [listening("make watch", &[])];
        for at in LOOK_AT {
            assert_eq!(check.observe(t0 + at, 8003, &quiet), None);
        }
        assert_eq!(check.due(), None);
    }
}
