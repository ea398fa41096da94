//! The daemon's configuration: defaults, the config file, and flags, in
//! rising order of precedence, each value remembering where it came from so
//! `portd --print-config` can say. Ranges by name pattern, and how a name
//! finds its pattern, are in `name_ranges`.

mod name_ranges;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portd_api::{PortRange, parse_duration};
use serde::Deserialize;
use toml::Spanned;

use self::name_ranges::check_pattern;
pub use self::name_ranges::{DEFAULT_NAME_RANGES, NameRange, NameRanges};

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
pub use portd_api::DEFAULT_PROXY_PORT;
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
    /// Ranges by name pattern; a name no pattern matches uses `range`.
    pub name_ranges: NameRanges,
    /// The `.localhost` proxy's port on 127.0.0.1 and ::1; 0 turns it off.
    pub proxy_port: u16,
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
            name_ranges: NameRanges::default(),
            proxy_port: DEFAULT_PROXY_PORT,
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
    pub proxy_port: Setting<u16>,
    /// The default patterns, then the file's (which replace a default of
    /// the same pattern).
    pub name_ranges: Vec<Setting<NameRange>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            range: Setting::default(DEFAULT_RANGE),
            grace: Setting::default(DEFAULT_GRACE),
            log_level: Setting::default(DEFAULT_LOG_LEVEL.to_string()),
            event_retention: Setting::default(DEFAULT_RETENTION),
            proxy_port: Setting::default(DEFAULT_PROXY_PORT),
            name_ranges: DEFAULT_NAME_RANGES
                .iter()
                .map(|(pattern, range)| {
                    Setting::default(NameRange {
                        pattern: pattern.to_string(),
                        range: *range,
                    })
                })
                .collect(),
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
    /// A number: 0 turns the proxy off.
    proxy_port: Option<Spanned<i64>>,
    /// `[name_ranges]`: `PATTERN = "A-B"`.
    name_ranges: Option<BTreeMap<String, Spanned<String>>>,
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
    if let Some(value) = &file.proxy_port {
        let port = u16::try_from(*value.get_ref()).map_err(|_| {
            invalid(format!(
                "line {}: proxy_port: {} is not a port; give 1-65535, or 0 to turn the proxy off",
                line_of(text, value.span().start),
                value.get_ref()
            ))
        })?;
        settings.proxy_port.set(Some(port), source.clone());
    }
    if let Some(value) = &file.log_level {
        parse("log_level", value, &|v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(drop)
                .map_err(|e| format!("invalid filter '{v}': {e}"))
        })?;
        settings
            .log_level
            .set(Some(value.get_ref().clone()), source.clone());
    }
    for (pattern, value) in file.name_ranges.iter().flatten() {
        let key = format!("name_ranges.{pattern}");
        parse(&key, value, &|_| check_pattern(pattern))?;
        parse(&key, value, &|v| v.parse::<PortRange>().map(drop))?;
        let entry = Setting {
            value: NameRange {
                pattern: pattern.clone(),
                range: value.get_ref().parse().map_err(|e: String| invalid(e))?,
            },
            source: source.clone(),
        };
        match settings
            .name_ranges
            .iter_mut()
            .find(|e| e.value.pattern == *pattern)
        {
            Some(existing) => *existing = entry,
            None => settings.name_ranges.push(entry),
        }
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

/// A proxy port from a flag or `PORTD_PROXY_PORT`: 0 (off) or a port.
pub fn parse_proxy_port(text: &str) -> Result<u16, String> {
    match text.trim() {
        "0" => Ok(0),
        port => portd_api::parse_port(port).map_err(|e| format!("{e}; or 0 to turn the proxy off")),
    }
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
    /// The name patterns in effect: `--range` turns the default ones off,
    /// so that a daemon given a range hands out only its ports unless the
    /// file says otherwise.
    fn name_ranges_in_effect(&self) -> impl Iterator<Item = &Setting<NameRange>> {
        let defaults_off = self.range.source == Source::Flag;
        self.name_ranges
            .iter()
            .filter(move |e| !(defaults_off && e.source == Source::Default))
    }

    /// The name patterns the daemon runs with.
    pub fn effective_name_ranges(&self) -> NameRanges {
        NameRanges::new(
            self.name_ranges_in_effect()
                .map(|e| e.value.clone())
                .collect(),
        )
    }

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
                "proxy_port",
                self.proxy_port.value.to_string(),
                &self.proxy_port.source,
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
        let patterns: Vec<_> = self.name_ranges_in_effect().collect();
        let rule = match patterns.is_empty() {
            false => "exact names first, then the longest pattern",
            true => "none",
        };
        let heading = match &self.range.source {
            Source::Flag => format!("{rule}; defaults off: --range is set"),
            _ => rule.to_string(),
        };
        out.push_str(&format!("\n{:<48} # {heading}\n", "[name_ranges]"));
        for entry in patterns {
            let line = format!("\"{}\" = \"{}\"", entry.value.pattern, entry.value.range);
            out.push_str(&format!("{line:<48} # {}\n", entry.source));
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
        let err = apply("\nproxy_port = 70000\n").unwrap_err();
        assert!(
            err.contains("proxy_port") && err.contains("line 2"),
            "{err}"
        );
        let err = apply("proxy_port = \"7355\"\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn the_proxy_port_comes_from_the_file_and_zero_turns_it_off() {
        assert_eq!(Settings::default().proxy_port.value, DEFAULT_PROXY_PORT);
        let s = apply("proxy_port = 7400\n").unwrap();
        assert_eq!(s.proxy_port.value, 7400);
        assert!(rendered(&s).contains("proxy_port = 7400"));
        assert_eq!(apply("proxy_port = 0\n").unwrap().proxy_port.value, 0);
        assert_eq!(parse_proxy_port("0"), Ok(0));
        assert_eq!(parse_proxy_port("7355"), Ok(7355));
        let err = parse_proxy_port("http").unwrap_err();
        assert!(err.contains("0 to turn the proxy off"), "{err}");
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
    /// `--print-config`'s text for `s`, with default paths.
    fn rendered(s: &Settings) -> String {
        s.render(
            &Setting::default(PathBuf::from("/s")),
            &Setting::default(PathBuf::from("/d")),
        )
    }

    fn range(start: u16, end: u16) -> PortRange {
        PortRange::new(start, end).unwrap()
    }

    #[test]
    fn front_ends_and_back_ends_get_their_own_ranges_by_default() {
        let ranges = Settings::default().effective_name_ranges();
        for name in ["web", "frontend", "ui"] {
            assert_eq!(ranges.for_name(name), Some(range(3000, 3999)), "{name}");
        }
        for name in ["api", "backend"] {
            assert_eq!(ranges.for_name(name), Some(range(8000, 8999)), "{name}");
        }
        // Exact names only: `webhook` and `api-v2` are not front or back ends.
        assert_eq!(ranges.for_name("webhook"), None);
        assert_eq!(ranges.for_name("api-v2"), None);
        assert_eq!(ranges.for_name("Web"), None, "names are case-sensitive");
    }

    #[test]
    fn the_file_adds_patterns_and_replaces_a_default_of_the_same_name() {
        let s = apply("[name_ranges]\nweb = \"4000-4099\"\n\"docs-*\" = \"4100-4199\"\n").unwrap();
        let ranges = s.effective_name_ranges();
        assert_eq!(ranges.for_name("web"), Some(range(4000, 4099)));
        assert_eq!(ranges.for_name("docs-site"), Some(range(4100, 4199)));
        assert_eq!(ranges.for_name("ui"), Some(range(3000, 3999)));
        let web = s.name_ranges.iter().find(|e| e.value.pattern == "web");
        assert_eq!(
            web.map(|e| &e.source),
            Some(&Source::File("/c.toml".into()))
        );
    }

    #[test]
    fn the_range_flag_turns_the_default_patterns_off() {
        let mut s = apply("[name_ranges]\n\"docs-*\" = \"4100-4199\"\n").unwrap();
        s.range.set(Some(range(20000, 20019)), Source::Flag);
        let ranges = s.effective_name_ranges();
        assert_eq!(ranges.for_name("web"), None);
        assert_eq!(ranges.for_name("api"), None);
        assert_eq!(
            ranges.for_name("docs-x"),
            Some(range(4100, 4199)),
            "the file's stay"
        );
        let text = rendered(&s);
        assert!(!text.contains("\"web\""), "{text}");
        assert!(text.contains("\"docs-*\" = \"4100-4199\""), "{text}");

        assert!(
            text.contains("longest pattern; defaults off: --range is set"),
            "{text}"
        );

        // The file's range leaves them on: it may well be the default's value.
        let mut s = apply("range = \"9000-9099\"\n").unwrap();
        let ui = s.effective_name_ranges().for_name("ui");
        assert_eq!(ui, Some(range(3000, 3999)));
        s.range.set(Some(range(9000, 9099)), Source::Flag);
        let text = rendered(&s);
        assert!(
            text.contains("# none; defaults off: --range is set"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_name_range_is_named_with_its_pattern_and_line() {
        let err = apply("\n[name_ranges]\nweb = \"3999-3000\"\n").unwrap_err();
        assert!(
            err.contains("name_ranges.web") && err.contains("line 3"),
            "{err}"
        );
        let err = apply("[name_ranges]\n\"my web\" = \"3000-3999\"\n").unwrap_err();
        assert!(err.contains("my web") && err.contains("line 2"), "{err}");
        let err = apply("[name_ranges]\nweb = 3000\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn rendered_name_ranges_say_where_each_came_from_and_parse_as_toml() {
        let s = apply("[name_ranges]\n\"docs-*\" = \"4100-4199\"\n").unwrap();
        let text = rendered(&s);
        let line = |pattern: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("\"{pattern}\" = ")))
                .unwrap_or_else(|| panic!("no {pattern} in:\n{text}"))
        };
        assert!(line("web").contains("\"3000-3999\"") && line("web").ends_with("# default"));
        assert!(line("docs-*").ends_with("# file /c.toml"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        let table = parsed["name_ranges"].as_table().expect("a table");
        assert_eq!(table["api"].as_str(), Some("8000-8999"));
        assert_eq!(table.len(), 6, "{text}");
    }
}
