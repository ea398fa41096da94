//! The systemd user units (`portd.socket`, `portd.service`) as `portctl
//! install` writes them: the repository's `systemd/` files are the single
//! source, embedded here, with the service's `ExecStart` pointed at the
//! `portd` beside this `portctl`. Also where they go, and how to ask the
//! user's systemd manager to act on them.
//!
//! The pure parts (rendering, quoting, paths, what a cgroup line means) are
//! plain functions over their inputs so unit tests can feed them; the code
//! that runs `systemctl` and touches files stays thin around them.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portd_api::paths::{DB_ENV, SOCKET_ENV};

use crate::autostart::daemon_binary;
use crate::error::ClientError;
use crate::proxy_port::{ProxyUnits, socket_unit};

/// `systemd/portd.socket`, byte for byte.
pub const SOCKET_TEMPLATE: &str = include_str!("../../systemd/portd.socket");
/// `systemd/portd.service`; `@PORTD@` stands for the daemon's path.
pub const SERVICE_TEMPLATE: &str = include_str!("../../systemd/portd.service");
/// What `SERVICE_TEMPLATE` says where the daemon's path goes.
pub const PLACEHOLDER: &str = "@PORTD@";

pub const SOCKET_UNIT: &str = "portd.socket";
pub const SERVICE_UNIT: &str = "portd.service";

/// The links `systemctl enable` makes for the units' `[Install]` sections,
/// relative to the unit directory; `uninstall` removes them even when no
/// manager answers to `disable`.
pub const ENABLE_LINKS: [&str; 2] = [
    "sockets.target.wants/portd.socket",
    "default.target.wants/portd.service",
];

/// How long one `systemctl` call may take before it counts as no answer.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket the unit template listens on: `$XDG_RUNTIME_DIR/portd/portd.sock`.
pub const DEFAULT_LISTEN: &str = "%t/portd/portd.sock";

/// Longest path a Unix socket can bind (`sun_path` holds 108 bytes with
/// the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the user placed the daemon's socket and database (`--socket`,
/// `PORTD_SOCKET`, `PORTD_DB`): the units must serve exactly there, or the
/// user's `portctl` would miss systemd's daemon and autostart a second one
/// beside it. `None` keeps the units' defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub socket: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub proxy: ProxyUnits,
}

impl Placement {
    /// `--socket` (given as `flag`), else `PORTD_SOCKET`; and `PORTD_DB`.
    pub fn from_env(flag: Option<&Path>) -> Placement {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Placement {
            socket: flag.map(Path::to_path_buf).or_else(|| env(SOCKET_ENV)),
            db: env(DB_ENV),
            proxy: ProxyUnits::default(),
        }
    }
}

/// One unit file: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub path: PathBuf,
    pub text: String,
}

/// Both units for the daemon at `portd`, in `dir`, serving where
/// `placement` says: socket first, as `systemctl enable` takes them.
pub fn render(
    dir: &Path,
    portd: &Path,
    placement: &Placement,
) -> Result<[UnitFile; 2], ClientError> {
    let mut exec = exec_path(portd)?;
    if let Some(db) = &placement.db {
        if !db.is_absolute() {
            return Err(ClientError::Usage(format!(
                "{DB_ENV}={} is relative; the unit needs an absolute path (systemd starts portd in /)",
                db.display()
            )));
        }
        exec = format!("{exec} --db {}", exec_path(db)?);
    }
    if let Some(port) = placement.proxy.flag {
        exec = format!("{exec} --proxy-port {port}");
    }
    let socket = socket_unit(SOCKET_TEMPLATE, placement.proxy.sockets);
    let socket = match &placement.socket {
        Some(path) => socket.replace(
            &format!("\nListenStream={DEFAULT_LISTEN}\n"),
            &format!("\nListenStream={}\n", listen_path(path)?),
        ),
        None => socket,
    };
    Ok([
        UnitFile {
            path: dir.join(SOCKET_UNIT),
            text: socket,
        },
        UnitFile {
            path: dir.join(SERVICE_UNIT),
            text: SERVICE_TEMPLATE.replace(PLACEHOLDER, &exec),
        },
    ])
}

/// `path` as a `ListenStream=` value: absolute, short enough to bind,
/// nothing systemd would read otherwise (whitespace is trimmed, `\\` may
/// start an escape), and `%` doubled so it is no specifier.
pub fn listen_path(path: &Path) -> Result<String, ClientError> {
    let refuse = |why: &str| {
        ClientError::Usage(format!(
            "the socket {} {why}; choose another with --socket or {SOCKET_ENV}",
            path.display()
        ))
    };
    let text = path
        .to_str()
        .ok_or_else(|| refuse("is not valid UTF-8, which systemd units cannot name"))?;
    if !path.is_absolute() {
        return Err(refuse(
            "is a relative path; portd.socket needs an absolute one",
        ));
    }
    if text.len() > MAX_SOCKET_PATH {
        return Err(refuse(&format!(
            "is {} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH}",
            text.len()
        )));
    }
    if text.contains(|c: char| c.is_control() || c.is_whitespace() || c == '\\') {
        return Err(refuse(
            "holds whitespace, a backslash or a control character, which ListenStream= cannot carry",
        ));
    }
    Ok(text.replace('%', "%%"))
}

/// `path` as the executable of an `ExecStart=` line: `%` and `$` doubled so
/// systemd expands neither specifiers nor variables in it, backslashes
/// doubled, and the whole quoted if it holds whitespace or quotes.
pub fn exec_path(path: &Path) -> Result<String, ClientError> {
    let text = path.to_str().ok_or_else(|| {
        ClientError::Other(format!(
            "{} is not valid UTF-8; systemd units cannot name it",
            path.display()
        ))
    })?;
    if !path.is_absolute() {
        return Err(ClientError::Other(format!(
            "ExecStart needs an absolute path, not {text}"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ClientError::Other(format!(
            "{text:?} holds a control character; systemd units cannot name it"
        )));
    }
    let escaped = text
        .replace('\\', r"\\")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        Ok(format!("\"{}\"", escaped.replace('"', "\\\"")))
    } else {
        Ok(escaped)
    }
}

/// The user unit directory: `$XDG_CONFIG_HOME/systemd/user`, else
/// `$HOME/.config/systemd/user`. A relative `XDG_CONFIG_HOME` is ignored, as
/// the XDG spec says.
pub fn unit_dir(
    xdg_config_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<PathBuf, ClientError> {
    if let Some(config) = xdg_config_home.map(Path::new).filter(|p| p.is_absolute()) {
        return Ok(config.join("systemd").join("user"));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(home).join(".config").join("systemd").join("user")),
        None => Err(ClientError::Other(
            "neither XDG_CONFIG_HOME nor HOME is set; cannot find the systemd user unit directory"
                .into(),
        )),
    }
}

/// [`unit_dir`] from this process's environment.
pub fn user_unit_dir() -> Result<PathBuf, ClientError> {
    unit_dir(
        std::env::var_os("XDG_CONFIG_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// The `portd` the units should run: the one beside this `portctl` (as
/// autostart picks it), else the first on PATH; always absolute.
pub fn portd_path() -> Result<PathBuf, ClientError> {
    let binary = daemon_binary();
    if binary.is_absolute() {
        return Ok(binary);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(&binary))
        .find(|path| is_executable(path))
        .ok_or_else(|| {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .map_or_else(|| "this portctl".to_string(), |d| d.display().to_string());
            ClientError::Other(format!(
                "cannot find portd beside portctl (in {beside}) or on PATH; install both together"
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What writing a unit file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// It existed with other contents (another `portd` path, an older
    /// template).
    Updated,
    Unchanged,
}

/// Writes `unit` unless it already holds exactly that text; atomically
/// (a temp file renamed over it), mode 0644, creating the directory.
pub fn write_unit(unit: &UnitFile) -> Result<Written, ClientError> {
    let io_error = |path: &Path, e: std::io::Error| {
        ClientError::Other(format!("cannot write {}: {e}", path.display()))
    };
    let before = match fs::read(&unit.path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&unit.path, e)),
    };
    if before.as_deref() == Some(unit.text.as_bytes()) {
        return Ok(Written::Unchanged);
    }
    let dir = unit.path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let name = unit.path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.portctl-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(unit.text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &unit.path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&unit.path, e));
    }
    Ok(if before.is_some() {
        Written::Updated
    } else {
        Written::Created
    })
}

/// Removes `path` if it exists (a symlink itself, not what it points to);
/// true if there was something to remove.
pub fn remove_file(path: &Path) -> Result<bool, ClientError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ClientError::Other(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// `==> PATH <==` before each file, a blank line between files (as `head`
/// does with several files): what `install --print` shows.
pub fn print_listing(units: &[UnitFile]) -> String {
    let mut out = String::new();
    for (i, unit) in units.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("==> {} <==\n", unit.path.display()));
        out.push_str(&unit.text);
    }
    out
}

/// `systemctl --user ARGS` as the user should type it.
pub fn systemctl_line(args: &[&str]) -> String {
    format!("systemctl --user {}", args.join(" "))
}

/// True when a systemd user manager answers (`systemctl --user
/// show-environment` succeeds). `is-system-running` is no test: it fails
/// for a manager that answers "degraded".
pub fn manager_answers() -> bool {
    run_systemctl(&["show-environment"], Output::Discard).is_ok_and(|(ok, _)| ok)
}

/// Runs `systemctl --user ARGS`, its output going where ours goes; fails
/// with the command line if it fails.
pub fn systemctl(args: &[&str]) -> Result<(), ClientError> {
    match run_systemctl(args, Output::Inherit) {
        Ok((true, _)) => Ok(()),
        Ok((false, _)) => Err(ClientError::Other(format!(
            "`{}` failed",
            systemctl_line(args)
        ))),
        Err(e) => Err(ClientError::Other(format!(
            "`{}`: {e}",
            systemctl_line(args)
        ))),
    }
}

/// The pid of `portd.service`'s main process, if the manager runs it.
pub fn service_main_pid() -> Option<u32> {
    let args = ["show", "--property=MainPID", "--value", SERVICE_UNIT];
    let (ok, stdout) = run_systemctl(&args, Output::Capture).ok()?;
    let pid: u32 = stdout.trim().parse().ok()?;
    (ok && pid != 0).then_some(pid)
}

/// Where a `systemctl` call's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// To our stdout and stderr, for the user to read.
    Inherit,
    Discard,
    /// stdout returned (small answers only: it is read after the exit),
    /// stderr discarded.
    Capture,
}

/// (success, stdout) once `systemctl --user ARGS` exits; an error if it
/// cannot start or runs past [`SYSTEMCTL_TIMEOUT`] (then it is killed).
fn run_systemctl(args: &[&str], output: Output) -> std::io::Result<(bool, String)> {
    let mut command = Command::new("systemctl");
    command.arg("--user").args(args).stdin(Stdio::null());
    match output {
        Output::Inherit => {}
        Output::Discard => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Output::Capture => {
            command.stdout(Stdio::piped()).stderr(Stdio::null());
        }
    }
    let mut child = command.spawn()?;
    let deadline = Instant::now() + SYSTEMCTL_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stdout = String::new();
            if let Some(mut pipe) = child.stdout.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stdout)?;
            }
            return Ok((status.success(), stdout));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", SYSTEMCTL_TIMEOUT.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `/proc/PID/cgroup` text puts the process in `portd.service`
/// (under a user manager: `0::/user.slice/.../app.slice/portd.service`).
pub fn in_service_cgroup(cgroup: &str) -> bool {
    cgroup.lines().any(|line| {
        line.rsplit(':')
            .next()
            .is_some_and(|path| path.trim_end().ends_with("/portd.service"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_template_has_one_placeholder_on_the_exec_start_line() {
        assert_eq!(SERVICE_TEMPLATE.matches(PLACEHOLDER).count(), 1);
        assert!(SERVICE_TEMPLATE.contains(&format!("\nExecStart={PLACEHOLDER}\n")));
        assert!(!SOCKET_TEMPLATE.contains(PLACEHOLDER));
    }

    #[test]
    fn rendering_fills_in_the_daemon_and_keeps_the_socket_as_is() {
        let [socket, service] = render(
            Path::new("/h/.config/systemd/user"),
            Path::new("/opt/bin/portd"),
            &Placement::default(),
        )
        .unwrap();
        assert_eq!(
            socket.path,
            Path::new("/h/.config/systemd/user/portd.socket")
        );
        assert_eq!(socket.text, socket_unit(SOCKET_TEMPLATE, None));
        assert_eq!(
            service.path,
            Path::new("/h/.config/systemd/user/portd.service")
        );
        assert!(
            service.text.contains("\nExecStart=/opt/bin/portd\n"),
            "{}",
            service.text
        );
        assert!(!service.text.contains(PLACEHOLDER));
    }

    #[test]
    fn a_chosen_socket_and_database_reach_the_units() {
        assert!(SOCKET_TEMPLATE.contains(&format!("\nListenStream={DEFAULT_LISTEN}\n")));
        let placement = Placement {
            socket: Some("/run/me/100%/portd.sock".into()),
            db: Some("/my state/$x.db".into()),
            proxy: ProxyUnits {
                sockets: Some(7400),
                flag: Some(7400),
            },
        };
        let [socket, service] =
            render(Path::new("/u"), Path::new("/opt/bin/portd"), &placement).unwrap();
        assert!(
            socket
                .text
                .contains("\nListenStream=/run/me/100%%/portd.sock\n"),
            "{}",
            socket.text
        );
        assert!(!socket.text.contains(DEFAULT_LISTEN));
        assert!(
            service.text.contains(
                "\nExecStart=/opt/bin/portd --db \"/my state/$$x.db\" --proxy-port 7400\n"
            ),
            "{}",
            service.text
        );
    }

    #[test]
    fn a_socket_or_database_the_units_cannot_name_is_refused_with_the_reason() {
        let refused = |socket: &str, db: Option<&str>| {
            let placement = Placement {
                socket: Some(socket.into()),
                db: db.map(PathBuf::from),
                ..Placement::default()
            };
            render(Path::new("/u"), Path::new("/bin/portd"), &placement)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(refused("run/portd.sock", None).contains("relative"));
        assert!(refused("/a b/portd.sock", None).contains("whitespace"));
        assert!(refused(&format!("/{}", "s".repeat(107)), None).contains("at most 107"));
        let db = refused("/r/portd.sock", Some("state/portd.db"));
        assert!(db.contains("PORTD_DB") && db.contains("relative"), "{db}");
        assert_eq!(
            listen_path(Path::new("/r/portd.sock")).unwrap(),
            "/r/portd.sock"
        );
    }

    #[test]
    fn exec_paths_escape_specifiers_variables_and_spaces() {
        let exec = |p: &str| exec_path(Path::new(p));
        assert_eq!(exec("/usr/bin/portd").unwrap(), "/usr/bin/portd");
        assert_eq!(exec("/a%b/$HOME/portd").unwrap(), "/a%%b/$$HOME/portd");
        assert_eq!(exec("/my apps/portd").unwrap(), "\"/my apps/portd\"");
        assert_eq!(exec("/a\"b c/portd").unwrap(), "\"/a\\\"b c/portd\"");
        assert_eq!(exec(r"/a\b/portd").unwrap(), r"/a\\b/portd");
        assert!(exec("bin/portd").is_err());
        assert!(exec("/a\nb/portd").is_err());
    }

    #[test]
    fn the_unit_dir_follows_xdg_then_home() {
        let dir = |x: Option<&str>, h: Option<&str>| {
            unit_dir(x.map(OsStr::new), h.map(OsStr::new)).map_err(|e| e.to_string())
        };
        assert_eq!(
            dir(Some("/c"), Some("/h")).unwrap(),
            Path::new("/c/systemd/user")
        );
        assert_eq!(
            dir(None, Some("/h")).unwrap(),
            Path::new("/h/.config/systemd/user")
        );
        assert_eq!(
            dir(Some("relative"), Some("/h")).unwrap(),
            Path::new("/h/.config/systemd/user")
        );
        assert_eq!(
            dir(Some(""), Some("/h")).unwrap(),
            Path::new("/h/.config/systemd/user")
        );
        assert!(dir(None, None).unwrap_err().contains("HOME"));
    }

    #[test]
    fn the_listing_heads_each_file_with_its_path() {
        let units = [
            UnitFile {
                path: "/d/a.socket".into(),
                text: "A\n".into(),
            },
            UnitFile {
                path: "/d/b.service".into(),
                text: "B\n".into(),
            },
        ];
        assert_eq!(
            print_listing(&units),
            "==> /d/a.socket <==\nA\n\n==> /d/b.service <==\nB\n"
        );
    }

    #[test]
    fn writing_twice_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let unit = UnitFile {
            path: dir.path().join("user").join("portd.socket"),
            text: "[Socket]\n".into(),
        };
        assert_eq!(write_unit(&unit).unwrap(), Written::Created);
        assert_eq!(write_unit(&unit).unwrap(), Written::Unchanged);
        let changed = UnitFile {
            text: "[Socket]\nX=1\n".into(),
            ..unit.clone()
        };
        assert_eq!(write_unit(&changed).unwrap(), Written::Updated);
        assert_eq!(fs::read_to_string(&unit.path).unwrap(), changed.text);
        let mode = fs::metadata(&unit.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path().join("user"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["portd.socket"], "no temp file left behind");
    }

    #[test]
    fn only_the_portd_service_cgroup_counts_as_systemds() {
        assert!(in_service_cgroup(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/portd.service\n"
        ));
        assert!(!in_service_cgroup(
            "0::/user.slice/user-1000.slice/session-2.scope\n"
        ));
        assert!(!in_service_cgroup("0::/\n"));
        assert!(!in_service_cgroup("0::/app.slice/notportd.service/x\n"));
    }
}
