//! How ports, port ranges and durations are written, on the command line, in
//! flags and in the API. One parser each, so both binaries say the same thing
//! about the same bad input.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a TCP port: a decimal number from 1 to 65535, nothing else.
pub fn parse_port(text: &str) -> Result<u16, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid port '{text}': expected a number from 1 to 65535"
        ));
    }
    match trimmed.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(format!("invalid port '{text}': must be from 1 to 65535")),
    }
}

/// An inclusive range of ports, written `A-B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// A range from `start` to `end` inclusive; `None` if `start > end`.
    pub fn new(start: u16, end: u16) -> Option<PortRange> {
        (start <= end && start > 0).then_some(PortRange { start, end })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..=self.end
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((a, b)) = text.split_once('-') else {
            return Err(format!(
                "invalid range '{text}': expected A-B, e.g. 8000-8999"
            ));
        };
        let start = parse_port(a).map_err(|e| format!("invalid range '{text}': {e}"))?;
        let end = parse_port(b).map_err(|e| format!("invalid range '{text}': {e}"))?;
        PortRange::new(start, end)
            .ok_or_else(|| format!("invalid range '{text}': {start} is above {end}"))
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// In OpenAPI documents a range is the string it is written as.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PortRange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[0-9]{1,5}-[0-9]{1,5}$"))
            .description(Some(
                "An inclusive range of ports `A-B` with 1 <= A <= B <= 65535",
            ))
            .examples(["8000-8099"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PortRange {}

/// Parses a duration: `60` (seconds), `60s`, `500ms`, `5m`, `2h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration '{text}': too large"));
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration '{text}': {e} (try 60, 60s, 5m or 2h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_decimal_from_1_to_65535() {
        assert_eq!(parse_port("8000"), Ok(8000));
        assert_eq!(parse_port("1"), Ok(1));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in [
            "0",
            "65536",
            "-5",
            "abc",
            "8000x",
            "",
            " ",
            "+80",
            "99999999999",
        ] {
            let err = parse_port(bad).unwrap_err();
            assert!(err.contains("invalid port"), "{bad}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn ranges_parse_and_reject_reversed_bounds() {
        let r: PortRange = "8000-8099".parse().unwrap();
        assert_eq!((r.start, r.end, r.len()), (8000, 8099, 100));
        assert!(r.contains(8000) && r.contains(8099) && !r.contains(8100));
        assert_eq!(r.to_string(), "8000-8099");
        assert!("9000-8000".parse::<PortRange>().is_err());
        assert!("8000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("10-70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5").is_err());
    }
}
