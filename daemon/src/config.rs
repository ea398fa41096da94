//! The daemon's configuration: defaults, the config file, and flags, in
//! rising order of precedence, each value remembering where it came from so
//! `portd --print-config` can say.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portd_api::{PortRange, parse_duration};
use serde::Deserialize;
use toml::Spanned;

/// Ports handed out when a request names none.
pub const DEFAULT_RANGE: PortRange = PortRange {
    start: 8000,
    end: 8999,
};
/// How long reaped processes get between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Longest grace: with the SIGKILL wait and the scans it stays inside the
/// 60 s request timeout, so a reap or kill is always answered with its result.
pub const MAX_GRACE: Duration = Duration::from_secs(50);
/// How long ended leases and events are kept.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// What the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub db: PathBuf,
    pub range: PortRange,
    pub grace: Duration,
    /// Ended leases and events older than this are pruned.
    pub retention: Duration,
    /// How often the maintenance loop expires TTLs and checks owners that
    /// have no pidfd.
    pub poll_interval: Duration,
}

impl Config {
    pub fn new(socket: PathBuf, db: PathBuf) -> Config {
        Config {
            socket,
            db,
            range: DEFAULT_RANGE,
            grace: DEFAULT_GRACE,
            retention: DEFAULT_RETENTION,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag => write!(f, "flag"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    pub fn default(value: T) -> Setting<T> {
        Setting {
            value,
            source: Source::Default,
        }
    }

    /// Replaces the value if `value` is given.
    pub fn set(&mut self, value: Option<T>, source: Source) {
        if let Some(value) = value {
            *self = Setting { value, source };
        }
    }
}

/// The settings the config file may hold, with their origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub range: Setting<PortRange>,
    pub grace: Setting<Duration>,
    pub log_level: Setting<String>,
    pub event_retention: Setting<Duration>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            range: Setting::default(DEFAULT_RANGE),
            grace: Setting::default(DEFAULT_GRACE),
            log_level: Setting::default(DEFAULT_LOG_LEVEL.to_string()),
            event_retention: Setting::default(DEFAULT_RETENTION),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `config.toml` as written. Unknown keys are an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    range: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    event_retention: Option<Spanned<String>>,
}

/// The config file: `flag`, else `$XDG_CONFIG_HOME/portd/config.toml`, else
/// `~/.config/portd/config.toml`. The bool says whether it must exist.
pub fn config_path(flag: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some((base.join("portd").join("config.toml"), false))
}

/// Reads the config file at `path` over the defaults in `settings`.
pub fn apply_file(settings: &mut Settings, path: &Path, required: bool) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(()),
        Err(e) => return Err(ConfigError::Read(path.to_path_buf(), e)),
    };
    apply_text(settings, path, &text)
}

/// Parses config text; errors name the key and its line.
pub fn apply_text(settings: &mut Settings, path: &Path, text: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let message = e.message().trim().to_string();
        invalid(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })?;
    let source = Source::File(path.to_path_buf());
    let parse = |key: &str, value: &Spanned<String>, parse: &dyn Fn(&str) -> Result<(), String>| {
        parse(value.get_ref()).map_err(|e| {
            invalid(format!(
                "line {}: {key}: {e}",
                line_of(text, value.span().start)
            ))
        })
    };
    if let Some(value) = &file.range {
        parse("range", value, &|v| v.parse::<PortRange>().map(drop))?;
        settings
            .range
            .set(value.get_ref().parse().ok(), source.clone());
    }
    if let Some(value) = &file.grace {
        parse("grace", value, &|v| parse_grace(v).map(drop))?;
        settings
            .grace
            .set(parse_grace(value.get_ref()).ok(), source.clone());
    }
    if let Some(value) = &file.event_retention {
        parse("event_retention", value, &|v| parse_retention(v).map(drop))?;
        settings
            .event_retention
            .set(parse_retention(value.get_ref()).ok(), source.clone());
    }
    if let Some(value) = &file.log_level {
        parse("log_level", value, &|v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(drop)
                .map_err(|e| format!("invalid filter '{v}': {e}"))
        })?;
        settings
            .log_level
            .set(Some(value.get_ref().clone()), source);
    }
    Ok(())
}

/// A reap grace: a duration from 0 to [`MAX_GRACE`].
pub fn parse_grace(text: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value > MAX_GRACE {
        return Err(format!(
            "grace '{text}' is too long; at most {}s",
            MAX_GRACE.as_secs()
        ));
    }
    Ok(value)
}

/// Retention: a duration (`30d`, `720h`) of at least one hour.
fn parse_retention(text: &str) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value < Duration::from_secs(3600) {
        return Err(format!("'{text}' is too short; keep at least 1h"));
    }
    Ok(value)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Settings {
    /// The effective configuration as TOML, each line saying its source.
    pub fn render(&self, socket: &Setting<PathBuf>, db: &Setting<PathBuf>) -> String {
        let rows = [
            (
                "range",
                format!("\"{}\"", self.range.value),
                &self.range.source,
            ),
            (
                "grace",
                format!("\"{}\"", humantime::format_duration(self.grace.value)),
                &self.grace.source,
            ),
            (
                "log_level",
                format!("\"{}\"", self.log_level.value),
                &self.log_level.source,
            ),
            (
                "event_retention",
                format!(
                    "\"{}\"",
                    humantime::format_duration(self.event_retention.value)
                ),
                &self.event_retention.source,
            ),
            (
                "# socket",
                format!("\"{}\"", socket.value.display()),
                &socket.source,
            ),
            ("# db", format!("\"{}\"", db.value.display()), &db.source),
        ];
        let mut out = String::new();
        for (key, value, source) in rows {
            let line = format!("{key} = {value}");
            out.push_str(&format!("{line:<48} # {source}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str) -> Result<Settings, String> {
        let mut settings = Settings::default();
        apply_text(&mut settings, Path::new("/c.toml"), text)
            .map(|()| settings)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn file_values_replace_defaults_and_remember_the_file() {
        let s = apply("range = \"9000-9099\"\ngrace = \"2s\"\nlog_level = \"debug\"\nevent_retention = \"7d\"\n").unwrap();
        assert_eq!(
            s.range.value,
            PortRange {
                start: 9000,
                end: 9099
            }
        );
        assert_eq!(s.range.source, Source::File("/c.toml".into()));
        assert_eq!(s.grace.value, Duration::from_secs(2));
        assert_eq!(s.log_level.value, "debug");
        assert_eq!(s.event_retention.value, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = apply("grace = \"2s\"\ncolour = \"red\"\n").unwrap_err();
        assert!(err.contains("colour") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_key_and_line() {
        let err = apply("\n\nrange = \"9100-9000\"\n").unwrap_err();
        assert!(err.contains("range") && err.contains("line 3"), "{err}");
        let err = apply("grace = \"soon\"\n").unwrap_err();
        assert!(err.contains("grace") && err.contains("line 1"), "{err}");
        let err = apply("event_retention = \"5m\"\n").unwrap_err();
        assert!(err.contains("event_retention"), "{err}");
        let err = apply("grace = \"2m\"\n").unwrap_err();
        assert!(err.contains("grace") && err.contains("too long"), "{err}");
        let err = apply("grace = 5\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn rendering_names_every_source() {
        let mut s = Settings::default();
        s.grace.set(Some(Duration::from_secs(1)), Source::Flag);
        let socket = Setting {
            value: PathBuf::from("/r/s.sock"),
            source: Source::Env("PORTD_SOCKET"),
        };
        let db = Setting::default(PathBuf::from("/d.db"));
        let text = s.render(&socket, &db);
        assert!(
            text.contains("grace = \"1s\"") && text.contains("# flag"),
            "{text}"
        );
        assert!(text.contains("range = \"8000-8999\""), "{text}");
        assert!(text.contains("env PORTD_SOCKET"), "{text}");
        assert!(
            toml::from_str::<toml::Table>(&text).is_ok(),
            "valid TOML:\n{text}"
        );
    }
}
