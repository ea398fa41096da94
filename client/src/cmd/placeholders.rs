//! The placeholders `run` and `env` replace in the text they are given:
//! `{port}` (the lease's own port), `{port@NAME}` (NAME's port in the same
//! project) and `{url@NAME}` (NAME's URL through portd's `.localhost`
//! proxy). Any other `{...}` is left exactly as written: shells, JSON and
//! templates use braces too.

use portd_api::query::{NamesQuery, UrlQuery};
use portd_api::routes::{GetUrl, ListNames};
use portd_api::{ErrorCode, NameList};

use crate::client::Client;
use crate::error::ClientError;

/// What a placeholder with a name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Port,
    Url,
}

/// Replaces `{port}` with `port`, `{port@NAME}` and `{url@NAME}` with what
/// `lookup` says of NAME; leaves any other `{...}` as written.
pub fn expand(
    text: &str,
    port: u16,
    lookup: &mut dyn FnMut(Wanted, &str) -> Result<String, ClientError>,
) -> Result<String, ClientError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let named = |prefix: &str| tail.strip_prefix(prefix).and_then(|t| t.split_once('}'));
        if let Some(after) = tail.strip_prefix("{port}") {
            out.push_str(&port.to_string());
            rest = after;
        } else if let Some((name, after)) = named("{port@") {
            out.push_str(&lookup(Wanted::Port, name)?);
            rest = after;
        } else if let Some((name, after)) = named("{url@") {
            out.push_str(&lookup(Wanted::Url, name)?);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Looks names of one project up through the daemon, each kind of answer
/// fetched at most once.
pub struct Names<'a> {
    client: &'a Client,
    project: &'a str,
    ports: Option<NameList>,
}

impl<'a> Names<'a> {
    pub fn new(client: &'a Client, project: &'a str) -> Names<'a> {
        Names {
            client,
            project,
            ports: None,
        }
    }

    /// What `{port@NAME}` or `{url@NAME}` stands for.
    pub fn lookup(&mut self, wanted: Wanted, name: &str) -> Result<String, ClientError> {
        match wanted {
            Wanted::Port => self.port(name).map(|port| port.to_string()),
            Wanted::Url => self.url(name),
        }
    }

    /// NAME's active lease's port, else the port it remembers.
    fn port(&mut self, name: &str) -> Result<u16, ClientError> {
        if self.ports.is_none() {
            let request = ListNames(NamesQuery {
                project: Some(self.project.to_string()),
                name: None,
            });
            self.ports = Some(self.client.fetch(&request)?.0);
        }
        self.ports
            .iter()
            .flat_map(|n| &n.names)
            .find(|n| n.name == name)
            .map(|n| n.lease.as_ref().map_or(n.port, |l| l.port))
            .ok_or_else(|| {
                ClientError::NotFound(format!(
                    "no port known for name '{name}' in {}; lease it first",
                    self.project
                ))
            })
    }

    /// NAME's URL through the proxy.
    fn url(&mut self, name: &str) -> Result<String, ClientError> {
        let request = GetUrl(UrlQuery {
            project: self.project.to_string(),
            name: name.to_string(),
        });
        match self.client.fetch(&request) {
            Ok((answer, _)) => Ok(answer.url),
            Err(ClientError::Api {
                body: Some(body), ..
            }) if body.error.code == ErrorCode::NotFound => Err(ClientError::NotFound(format!(
                "{{url@{name}}}: {}",
                body.error.message
            ))),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(wanted: Wanted, name: &str) -> Result<String, ClientError> {
        match (wanted, name) {
            (Wanted::Port, "api") => Ok("8001".into()),
            (Wanted::Url, "api") => Ok("http://api.shop.localhost:7355/".into()),
            (_, other) => Err(ClientError::NotFound(format!("no {other}"))),
        }
    }

    #[test]
    fn placeholders_expand_and_unknown_ones_stay() {
        let mut lookup = names;
        let mut expand = |text| expand(text, 8000, &mut lookup);
        assert_eq!(expand("--port={port}").unwrap(), "--port=8000");
        assert_eq!(
            expand("http://localhost:{port@api}/x?p={port}").unwrap(),
            "http://localhost:8001/x?p=8000"
        );
        assert_eq!(
            expand("{url@api}v1 {port}").unwrap(),
            "http://api.shop.localhost:7355/v1 8000"
        );
        assert_eq!(
            expand("{host} {port:x} {port {url} {url@api").unwrap(),
            "{host} {port:x} {port {url} {url@api"
        );
        assert_eq!(expand("{\"a\": {port}}").unwrap(), "{\"a\": 8000}");
        assert!(matches!(
            expand("{port@web}"),
            Err(ClientError::NotFound(_))
        ));
        assert!(matches!(expand("{url@web}"), Err(ClientError::NotFound(_))));
    }
}
