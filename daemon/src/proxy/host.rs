//! What a request's `Host` asks the proxy for: the index (`localhost`), a
//! name (`NAME.localhost`, `NAME.LABEL.localhost`), a `.localhost` name
//! no lease can have, or a host that is not the proxy's at all. A pure
//! function of the header's text.

use crate::leases::is_host_label;

/// The proxy's domain: browsers resolve it and every name under it to
/// loopback themselves (RFC 6761), with no DNS and no /etc/hosts.
const DOMAIN: &str = "localhost";

/// What a `Host` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// `localhost`: the list of every name.
    Index,
    /// `NAME.LABEL.localhost` (`label` set) or `NAME.localhost`.
    Site { name: String, label: Option<String> },
    /// A `.localhost` name deeper than `NAME.LABEL`, or with a part that no
    /// name or label can be.
    Unroutable,
    /// Not a `.localhost` name: refused, so the proxy is never an open
    /// proxy and a page of another site that resolves to 127.0.0.1 (DNS
    /// rebinding) learns nothing.
    Foreign,
}

/// Reads a `Host` header's value (with or without a port).
pub fn wanted(host: &str) -> Wanted {
    let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    if name == DOMAIN {
        return Wanted::Index;
    }
    let Some(prefix) = name
        .strip_suffix(DOMAIN)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Wanted::Foreign;
    };
    let parts: Vec<&str> = prefix.split('.').collect();
    if !parts.iter().all(|part| is_host_label(part)) {
        return Wanted::Unroutable;
    }
    match parts[..] {
        [name] => Wanted::Site {
            name: name.to_string(),
            label: None,
        },
        [name, label] => Wanted::Site {
            name: name.to_string(),
            label: Some(label.to_string()),
        },
        _ => Wanted::Unroutable,
    }
}

/// `host` without its `:port`; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, label: Option<&str>) -> Wanted {
        Wanted::Site {
            name: name.into(),
            label: label.map(String::from),
        }
    }

    #[test]
    fn names_and_labels_are_read_with_or_without_the_port_in_any_case() {
        assert_eq!(wanted("api.shop.localhost:7355"), site("api", Some("shop")));
        assert_eq!(wanted("API.Shop.LOCALHOST"), site("api", Some("shop")));
        assert_eq!(wanted("api.localhost."), site("api", None));
        assert_eq!(
            wanted("web.shop-2.localhost:80"),
            site("web", Some("shop-2"))
        );
        assert_eq!(wanted("localhost:7355"), Wanted::Index);
        assert_eq!(wanted("LocalHost"), Wanted::Index);
    }

    #[test]
    fn other_hosts_are_foreign_and_odd_localhost_names_unroutable() {
        for host in [
            "example.com",
            "127.0.0.1:7355",
            "[::1]:7355",
            "[::1]",
            "evil.localhost.example.com",
            "notlocalhost",
            "api.notlocalhost",
            "",
        ] {
            assert_eq!(wanted(host), Wanted::Foreign, "{host}");
        }
        for host in [
            "a.b.c.localhost",
            "-api.shop.localhost",
            "api_v2.localhost",
            ".localhost",
            "api..localhost",
        ] {
            assert_eq!(wanted(host), Wanted::Unroutable, "{host}");
        }
    }
}
