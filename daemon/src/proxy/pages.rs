//! The pages the proxy answers with itself, instead of a bare error: small
//! HTML pages for browsers, and JSON for a request whose `Accept` asks for
//! it. Pure functions from what happened to a status and a body; they show
//! names, labels and ports, and nothing else of a lease (no owner, no
//! command line: anyone on the machine can read them).

use serde_json::{Value, json};

use crate::leases::{SiteEntry, site_url};

/// What the proxy has to say.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    /// `localhost`: every name.
    Index { sites: Vec<SiteEntry> },
    /// The project is known, the name is not.
    UnknownName {
        name: String,
        label: String,
        sites: Vec<SiteEntry>,
    },
    /// A `.localhost` host that no project or name answers to.
    UnknownHost { host: String, sites: Vec<SiteEntry> },
    /// A bare name active in several projects.
    Ambiguous { name: String, sites: Vec<SiteEntry> },
    /// The name has no active lease; `ended` is how its last one ended
    /// (RFC 3339 time and reason) if history has it.
    Ended {
        name: String,
        label: String,
        ended: Option<(String, String)>,
    },
    /// The lease is active and nothing accepts on its port yet.
    Starting { name: String, port: u16 },
    /// The server took the connection and failed the request.
    Unreachable { name: String, port: u16 },
    /// Not a `.localhost` host.
    Foreign { host: String },
    /// An absolute-form target, CONNECT, or no Host at all.
    NotAProxy { why: &'static str },
}

/// A page ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Seconds after which to ask again (`Retry-After`, and the HTML
    /// page's refresh).
    pub retry_after: Option<u32>,
}

/// Whether `accept` prefers JSON: it names `application/json` and not
/// `text/html` (which every browser's navigation sends).
pub fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

impl Page {
    /// The page for a request that came in on `port`.
    pub fn render(&self, json: bool, port: u16) -> Rendered {
        let (status, code, title, text, sites) = self.parts(port);
        let retry_after = matches!(self, Page::Starting { .. }).then_some(1);
        if json {
            return Rendered {
                status,
                content_type: "application/json",
                body: self.json(code, &text, sites, port).to_string(),
                retry_after,
            };
        }
        Rendered {
            status,
            content_type: "text/html; charset=utf-8",
            body: html(&title, &text, sites, port, retry_after),
            retry_after,
        }
    }

    /// Status, code, title, what to say, and the names to list.
    fn parts(&self, port: u16) -> (u16, &'static str, String, String, &[SiteEntry]) {
        let none: &[SiteEntry] = &[];
        match self {
            Page::Index { sites } => (
                200,
                "",
                "portd: every name".into(),
                match sites.is_empty() {
                    true => "No project has a named lease yet. Start a server with \
                             `portctl run --name web -- COMMAND` and it appears here."
                        .into(),
                    false => "Every named lease, by project. A name is reachable at \
                              NAME.PROJECT.localhost while it has an active lease."
                        .into(),
                },
                sites,
            ),
            Page::UnknownName { name, label, sites } => (
                404,
                "not_found",
                format!("No {name} in {label}"),
                format!(
                    "Project {label} has no name {name}. Start it in that project with \
                     `portctl run --name {name} -- COMMAND`; these are {label}'s names:"
                ),
                sites,
            ),
            Page::UnknownHost { host, sites } => (
                404,
                "not_found",
                format!("Nothing at {host}"),
                format!(
                    "No project or name answers to {host}. Names are reached at \
                     NAME.PROJECT.localhost:{port}, or NAME.localhost:{port} when one \
                     project has NAME; these are the names portd knows:"
                ),
                sites,
            ),
            Page::Ambiguous { name, sites } => (
                404,
                "ambiguous",
                format!("{name} runs in several projects"),
                format!("More than one project runs {name}; pick one:"),
                sites,
            ),
            Page::Ended { name, label, ended } => (
                404,
                "ended",
                format!("{name} is not running"),
                match ended {
                    Some((at, reason)) => format!(
                        "{name} in {label} has no active lease: its last lease ended at {at} \
                         ({}). Start it again with `portctl run --name {name} -- COMMAND`.",
                        describe_reason(reason)
                    ),
                    None => format!(
                        "{name} in {label} has no active lease. Start it with \
                         `portctl run --name {name} -- COMMAND`."
                    ),
                },
                none,
            ),
            Page::Starting {
                name,
                port: upstream,
            } => (
                502,
                "starting",
                format!("{name} is starting"),
                format!(
                    "{name} has an active lease on port {upstream}, but nothing accepts \
                     connections there yet. This page reloads every second until it does."
                ),
                none,
            ),
            Page::Unreachable {
                name,
                port: upstream,
            } => (
                502,
                "bad_gateway",
                format!("{name} did not answer"),
                format!(
                    "{name} accepted the connection on port {upstream} but closed it \
                     without an answer. Its own output says why; reload to try again."
                ),
                none,
            ),
            Page::Foreign { host } => (
                421,
                "misdirected",
                "Not a portd name".into(),
                format!(
                    "This is portd's proxy; it serves only NAME.PROJECT.localhost names, \
                     and {host} is not one."
                ),
                none,
            ),
            Page::NotAProxy { why } => (
                400,
                "bad_request",
                "Not an open proxy".into(),
                format!("{why}: portd's proxy serves only NAME.PROJECT.localhost names."),
                none,
            ),
        }
    }

    fn json(&self, code: &str, message: &str, sites: &[SiteEntry], port: u16) -> Value {
        let names: Vec<Value> = sites
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "label": s.label,
                    "url": site_url(&s.name, &s.label, port),
                    "active": s.active,
                })
            })
            .collect();
        if let Page::Index { .. } = self {
            return json!({ "names": names });
        }
        let mut error = json!({ "code": code, "message": message });
        if !names.is_empty() {
            error["names"] = Value::Array(names);
        }
        match self {
            Page::Ended {
                ended: Some((at, reason)),
                ..
            } => {
                error["ended_at"] = json!(at);
                error["end_reason"] = json!(reason);
            }
            Page::Starting { .. } => error["retry_after"] = json!(1),
            _ => {}
        }
        json!({ "error": error })
    }
}

/// An end reason as a person says it.
fn describe_reason(reason: &str) -> &str {
    match reason {
        "released" => "released",
        "owner_died" => "the process that held it exited",
        "expired" => "its time to live ran out",
        "reaped" => "reaped",
        other => other,
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` with its `code spans` set in `<code>`.
fn with_code(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => format!("<code>{part}</code>"),
            _ => part.to_string(),
        })
        .collect()
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:3em auto;\
padding:0 1em;color:#222}h1{font-size:1.5em}h2{font-size:1.1em;margin-bottom:.2em}\
ul{margin-top:0}code{background:#f2f2f2;padding:0 .2em}.idle{color:#888}\
footer{margin-top:2em;color:#888;font-size:.9em}";

fn html(title: &str, text: &str, sites: &[SiteEntry], port: u16, refresh: Option<u32>) -> String {
    let mut out = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if let Some(seconds) = refresh {
        out.push_str(&format!(
            "<meta http-equiv=\"refresh\" content=\"{seconds}\">"
        ));
    }
    out.push_str(&format!(
        "<title>{}</title><style>{STYLE}</style></head>\n<body><h1>{}</h1>\n<p>{}</p>\n",
        escape(title),
        escape(title),
        with_code(text)
    ));
    let mut label: Option<&str> = None;
    for site in sites {
        if label != Some(site.label.as_str()) {
            if label.is_some() {
                out.push_str("</ul>\n");
            }
            out.push_str(&format!("<h2>{}</h2><ul>\n", escape(&site.label)));
            label = Some(&site.label);
        }
        let name = escape(&site.name);
        let state = match site.active {
            true => "",
            false => " <span class=\"idle\">(not running)</span>",
        };
        match site_url(&site.name, &site.label, port) {
            Some(url) => out.push_str(&format!("<li><a href=\"{url}\">{name}</a>{state}</li>\n")),
            None => out.push_str(&format!("<li>{name}{state} (not a host name)</li>\n")),
        }
    }
    if label.is_some() {
        out.push_str("</ul>\n");
    }
    out.push_str(&format!(
        "<footer>portd's .localhost proxy · <a href=\"http://localhost:{port}/\">every name</a></footer>\n</body></html>\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, name: &str, active: bool) -> SiteEntry {
        SiteEntry {
            label: label.into(),
            name: name.into(),
            active,
        }
    }

    #[test]
    fn an_unknown_name_lists_the_project_with_links_in_html_and_json() {
        let page = Page::UnknownName {
            name: "db".into(),
            label: "shop".into(),
            sites: vec![entry("shop", "api", true), entry("shop", "web", false)],
        };
        let html = page.render(false, 7355);
        assert_eq!(html.status, 404);
        assert!(
            html.body
                .contains("<a href=\"http://api.shop.localhost:7355/\">api</a>")
        );
        assert!(
            html.body
                .contains("web</a> <span class=\"idle\">(not running)")
        );
        let json: Value = serde_json::from_str(&page.render(true, 7355).body).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        assert_eq!(
            json["error"]["names"][0]["url"],
            "http://api.shop.localhost:7355/"
        );
        assert_eq!(json["error"]["names"][1]["active"], false);
    }

    #[test]
    fn the_starting_page_refreshes_itself_and_an_ended_one_says_when_and_why() {
        let starting = Page::Starting {
            name: "api".into(),
            port: 8001,
        }
        .render(false, 7355);
        assert_eq!((starting.status, starting.retry_after), (502, Some(1)));
        assert!(
            starting
                .body
                .contains("<meta http-equiv=\"refresh\" content=\"1\">")
        );
        let ended = Page::Ended {
            name: "api".into(),
            label: "shop".into(),
            ended: Some(("2026-01-02T03:04:05.000Z".into(), "owner_died".into())),
        };
        let html = ended.render(false, 7355);
        assert_eq!(html.status, 404);
        assert!(
            html.body
                .contains("ended at 2026-01-02T03:04:05.000Z (the process that held it exited)")
        );
        let json: Value = serde_json::from_str(&ended.render(true, 7355).body).unwrap();
        assert_eq!(json["error"]["end_reason"], "owner_died");
    }

    #[test]
    fn names_are_escaped_and_a_name_that_is_no_host_name_gets_no_link() {
        let page = Page::Index {
            sites: vec![entry("shop", "<b>Api</b>", true)],
        };
        let body = page.render(false, 7355).body;
        assert!(
            body.contains("&lt;b&gt;Api&lt;/b&gt; (not a host name)"),
            "{body}"
        );
        assert!(!body.contains("<b>Api"));
    }

    #[test]
    fn json_is_for_requests_that_ask_for_it_and_not_for_browsers() {
        assert!(wants_json(Some("application/json")));
        assert!(!wants_json(Some(
            "text/html,application/xhtml+xml,application/json;q=0.9"
        )));
        assert!(!wants_json(Some("*/*")) && !wants_json(None));
    }
}
