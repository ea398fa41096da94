//! The query strings of the API, typed. The client encodes them and the
//! daemon decodes them with serde_urlencoded, into these same structs: a
//! key the struct does not name, a key given twice or a value of the wrong
//! type is 400. Flags that are off and values that are absent are left
//! out of the string, so `GET /v1/leases` carries no query at all.

use serde::{Deserialize, Serialize};

use crate::types::is_false;

/// `GET /v1/leases[?all=true]`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeasesQuery {
    /// Add up to 1,000 ended leases, newest first.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
}

/// `DELETE /v1/leases/{port}[?id=ID][&keep=true]`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseQuery {
    /// Release only this lease: 404 if another (newer) lease holds the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Leave the lease's processes running: no orphan is reaped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
}

/// `GET /v1/names[?project=DIR][&name=N]`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    /// Only the names of this project (its absolute path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `DELETE /v1/names?project=DIR[&name=N]`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForgetQuery {
    /// The project whose names to forget (its absolute path, as the names
    /// list shows it).
    pub project: String,
    /// Only this name; without it, every name of the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /v1/url?project=DIR&name=N`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UrlQuery {
    /// The project of the name (its absolute path).
    pub project: String,
    pub name: String,
}

/// `GET /v1/events[?since=RFC3339]`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// RFC 3339; events at or after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
        serde_urlencoded::from_str(query).map_err(|e| e.to_string())
    }

    #[test]
    fn flags_that_are_off_and_absent_values_leave_no_trace() {
        assert_eq!(
            serde_urlencoded::to_string(LeasesQuery::default()),
            Ok("".into())
        );
        assert_eq!(
            serde_urlencoded::to_string(LeasesQuery { all: true }),
            Ok("all=true".into())
        );
        let release = ReleaseQuery {
            id: Some("019a".into()),
            keep: true,
        };
        assert_eq!(
            serde_urlencoded::to_string(&release),
            Ok("id=019a&keep=true".into())
        );
    }

    #[test]
    fn what_the_client_encodes_the_daemon_decodes_unchanged() {
        let forget = ForgetQuery {
            project: "/home/me/my app&co #2/ü".into(),
            name: Some("a=b+c".into()),
        };
        let text = serde_urlencoded::to_string(&forget).unwrap();
        assert!(!text.contains(' ') && !text.contains('#'), "{text}");
        assert_eq!(decode::<ForgetQuery>(&text), Ok(forget));
    }

    #[test]
    fn unknown_keys_repeated_keys_and_bad_values_are_refused() {
        assert!(
            decode::<LeasesQuery>("colour=red")
                .unwrap_err()
                .contains("colour")
        );
        assert!(
            decode::<LeasesQuery>("all=true&all=true")
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(decode::<LeasesQuery>("all=maybe").is_err());
        assert!(decode::<LeasesQuery>("all").is_err());
        assert!(
            decode::<ForgetQuery>("name=api")
                .unwrap_err()
                .contains("project")
        );
        assert_eq!(
            decode::<EventsQuery>("since=2026-01-01T00%3A00%3A00Z"),
            Ok(EventsQuery {
                since: Some("2026-01-01T00:00:00Z".into())
            })
        );
        assert_eq!(
            decode::<NamesQuery>("name=a+b"),
            Ok(NamesQuery {
                project: None,
                name: Some("a b".into())
            })
        );
    }
}
