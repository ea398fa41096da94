//! What a lease request can only be told once it is read: values in range,
//! names and projects of the right shape, combinations that mean nothing.

use portd_api::LeaseRequest;

use super::LeaseError;

/// Longest name a lease may carry.
const MAX_NAME_LEN: usize = 128;
/// Longest TTL: ten years, so every expiry renders as a date.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// What a request can only be told at grant time (422). Names with hidden
/// characters and oversized projects never get here: reading the body
/// refuses them (400, `portd_api::text`); the name check repeats that rule
/// for requests built in-process.
pub(super) fn validate(req: &LeaseRequest) -> Result<(), LeaseError> {
    if req.port == Some(0) {
        return Err(LeaseError::Invalid(
            "port 0 is not a port; ask for 1-65535 or none".into(),
        ));
    }
    if let Some(name) = &req.name {
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name.chars().any(char::is_whitespace)
            || portd_api::text::first_hidden_char(name).is_some()
        {
            return Err(LeaseError::Invalid(format!(
                "invalid name {name:?}: 1-{MAX_NAME_LEN} printable characters, no spaces"
            )));
        }
        if req.project.is_none() {
            return Err(LeaseError::Invalid("a name needs a project".into()));
        }
    }
    if let Some(project) = &req.project
        && (!project.starts_with('/') || project.chars().any(char::is_control))
    {
        return Err(LeaseError::Invalid(format!(
            "invalid project {project:?}: an absolute path"
        )));
    }
    if req.kill && (req.port.is_none() || req.next) {
        return Err(LeaseError::Invalid(
            "kill needs an exact port: `lease PORT --kill`".into(),
        ));
    }
    if let Some(ttl) = req.ttl
        && !(1..=MAX_TTL_SECS).contains(&ttl)
    {
        return Err(LeaseError::Invalid(format!(
            "ttl must be from 1 second to {MAX_TTL_SECS} seconds (10 years)"
        )));
    }
    // `move` gives a name a new home: without a name it means nothing.
    if req.move_home && req.name.is_none() {
        return Err(LeaseError::Invalid(
            "move gives a name a new home; it needs a name: `lease --name N --move`".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(req: LeaseRequest) -> String {
        match validate(&req) {
            Err(LeaseError::Invalid(message)) => message,
            other => panic!("{req:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn requests_that_mean_nothing_are_refused_with_what_to_ask_instead() {
        let named = LeaseRequest {
            name: Some("api".into()),
            project: Some("/p".into()),
            ..LeaseRequest::default()
        };
        assert!(validate(&named).is_ok());
        let port_zero = LeaseRequest {
            port: Some(0),
            ..LeaseRequest::default()
        };
        assert!(refused(port_zero).contains("1-65535"));
        let no_project = LeaseRequest {
            project: None,
            ..named.clone()
        };
        assert!(refused(no_project).contains("needs a project"));
        let spaced = LeaseRequest {
            name: Some("my api".into()),
            ..named.clone()
        };
        assert!(refused(spaced).contains("no spaces"));
        let relative = LeaseRequest {
            project: Some("p".into()),
            ..named
        };
        assert!(refused(relative).contains("absolute path"));
        let move_unnamed = LeaseRequest {
            move_home: true,
            ..LeaseRequest::default()
        };
        assert!(refused(move_unnamed).contains("--name N --move"));
        let kill_next = LeaseRequest {
            port: Some(8000),
            next: true,
            kill: true,
            ..LeaseRequest::default()
        };
        assert!(refused(kill_next).contains("exact port"));
        let forever = LeaseRequest {
            ttl: Some(MAX_TTL_SECS + 1),
            ..LeaseRequest::default()
        };
        assert!(refused(forever).contains("10 years"));
    }
}
