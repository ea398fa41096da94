//! Ranges by name pattern (`[name_ranges]` in the config file): which
//! range a lease's name scans, and the defaults that send front ends to
//! 3000-3999.

use std::cmp::Reverse;

use portd_api::PortRange;

use super::DEFAULT_RANGE;

/// Where front ends get their ports by default: the ports their tools
/// (Vite, Next.js, Create React App) have taught people to expect.
const FRONT_ENDS: PortRange = PortRange {
    start: 3000,
    end: 3999,
};
/// Name patterns and their ranges unless `--range` is given.
pub const DEFAULT_NAME_RANGES: &[(&str, PortRange)] = &[
    ("web", FRONT_ENDS),
    ("frontend", FRONT_ENDS),
    ("ui", FRONT_ENDS),
    ("api", DEFAULT_RANGE),
    ("backend", DEFAULT_RANGE),
];
/// Longest name pattern, as long as the longest name.
const MAX_PATTERN_LEN: usize = 128;

/// Leases whose name matches `pattern` get their ports from `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRange {
    /// A name, or a glob where `*` stands for any run of characters.
    pub pattern: String,
    pub range: PortRange,
}

/// The name patterns in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameRanges(Vec<NameRange>);

impl NameRanges {
    pub fn new(entries: Vec<NameRange>) -> NameRanges {
        NameRanges(entries)
    }

    /// The range for `name`: the pattern that is exactly `name`, else the
    /// matching glob with the most characters besides `*` (on a tie, the
    /// one that sorts first). None when no pattern matches.
    pub fn for_name(&self, name: &str) -> Option<PortRange> {
        self.0
            .iter()
            .filter(|e| glob_matches(&e.pattern, name))
            .max_by_key(|e| {
                let literal = e.pattern.chars().filter(|c| *c != '*').count();
                (!e.pattern.contains('*'), literal, Reverse(&e.pattern))
            })
            .map(|e| e.range)
    }
}

/// Whether `name` matches `pattern`, in which `*` matches any run of
/// characters (none included) and every other character itself.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut name) = name.strip_prefix(head) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let tail = parts.pop().unwrap_or_default();
    for part in parts {
        match name.find(part) {
            Some(at) => name = &name[at + part.len()..],
            None => return false,
        }
    }
    name.len() >= tail.len() && name.ends_with(tail)
}

/// A pattern a name could match: 1-128 characters, no spaces, quotes,
/// backslashes or control characters.
pub(super) fn check_pattern(pattern: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\\';
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN || pattern.chars().any(bad) {
        return Err(format!(
            "name pattern {pattern:?}: 1-{MAX_PATTERN_LEN} characters, no spaces, quotes, \\ or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u16, end: u16) -> PortRange {
        PortRange::new(start, end).unwrap()
    }

    #[test]
    fn globs_match_any_run_and_the_most_specific_pattern_wins() {
        assert!(glob_matches("web-*", "web-admin"));
        assert!(glob_matches("web-*", "web-"));
        assert!(!glob_matches("web-*", "web"));
        assert!(glob_matches("*-ui", "admin-ui") && !glob_matches("*-ui", "admin-uix"));
        assert!(glob_matches("a*b*c", "abc") && glob_matches("a*b*c", "a-b-b-c"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(glob_matches("*", "") && glob_matches("**", "x"));
        assert!(
            !glob_matches("ab*ba", "aba"),
            "head and tail may not overlap"
        );

        let entry = |pattern: &str, start| NameRange {
            pattern: pattern.into(),
            range: range(start, start + 99),
        };
        let ranges = NameRanges::new(vec![
            entry("*", 1000),
            entry("web-*", 3000),
            entry("web-admin*", 3100),
            entry("web-admin", 3200),
            entry("*-admin", 4000),
        ]);
        let start = |name| ranges.for_name(name).map(|r| r.start);
        assert_eq!(start("web-admin"), Some(3200), "the exact name first");
        assert_eq!(start("web-admin2"), Some(3100), "then the longest glob");
        assert_eq!(start("web-x"), Some(3000));
        assert_eq!(start("db-admin"), Some(4000));
        assert_eq!(start("db"), Some(1000));
        // A tie goes to the pattern that sorts first, whatever the order.
        let tied = NameRanges::new(vec![entry("b*", 2000), entry("*b", 1000)]);
        assert_eq!(tied.for_name("bb").map(|r| r.start), Some(1000));
    }
}
