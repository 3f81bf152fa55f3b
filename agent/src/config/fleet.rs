//! The `[fleet]` section: the agents that a `fleet=true` query fans out to. It lists every
//! member, this agent included; each is asked over HTTP (the request forwarded without
//! `fleet=true`, so it never recurses), this agent answering its own part through its own API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::raw::RawFleet;
use super::{duration, err, ser_duration, ser_secret, ConfigError};
use crate::fleet::DnsTarget;

/// Fan-out settings of the HTTP API's `fleet=true`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSettings {
    /// Members by address, `http://host:port` (no trailing `/`).
    pub endpoints: Vec<String>,
    /// Members behind a DNS name (every A/AAAA record), resolved again at each query.
    #[serde(serialize_with = "ser_dns", skip_serializing_if = "Option::is_none")]
    pub endpoints_dns: Option<DnsTarget>,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for a member's answer once connected.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Sent to every member as `Authorization: Bearer <token>`.
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Members the fleet should have: finding fewer endpoints (a pod gone from the headless
    /// service's records) makes every answer partial, with a `not_resolved` entry in `missing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_members: Option<usize>,
}

fn ser_dns<S: serde::Serializer>(v: &Option<DnsTarget>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// Resolves `[fleet]`; the token defaults to this agent's own `http.auth_token`.
pub(super) fn resolve(
    raw: Option<RawFleet>,
    http_token: Option<&str>,
    path_of: impl Fn(&str) -> PathBuf,
) -> Result<Option<FleetSettings>, ConfigError> {
    let Some(f) = raw else {
        return Ok(None);
    };
    let endpoints = f
        .endpoints
        .unwrap_or_default()
        .into_iter()
        .map(|e| endpoint(&e))
        .collect::<Result<Vec<_>, _>>()?;
    let endpoints_dns = f
        .endpoints_dns
        .map(|t| DnsTarget::parse(&t).map_err(|m| err("fleet.endpoints_dns", m)))
        .transpose()?;
    if endpoints.is_empty() && endpoints_dns.is_none() {
        return Err(err(
            "fleet.endpoints",
            "the [fleet] section lists no member: set fleet.endpoints (e.g. [\"http://10.0.0.7:8686\"]) or fleet.endpoints_dns (e.g. \"keplor-agent.ns.svc:8686\")",
        ));
    }
    let connect_timeout = positive(
        "fleet.connect_timeout",
        duration(
            "fleet.connect_timeout",
            f.connect_timeout,
            Duration::from_secs(2),
        )?,
    )?;
    let timeout = positive(
        "fleet.timeout",
        duration("fleet.timeout", f.timeout, Duration::from_secs(30))?,
    )?;
    let token = match (f.token.filter(|t| !t.is_empty()), f.token_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "fleet.token_file",
                "fleet.token and fleet.token_file are both set: keep one",
            ))
        }
        (Some(t), None) => Some(t),
        (None, Some(file)) => Some(read_token(&path_of(&file))?),
        (None, None) => http_token.map(str::to_string),
    };
    let expected_members = f.expected_members.map(expected_members).transpose()?;
    Ok(Some(FleetSettings {
        endpoints,
        endpoints_dns,
        connect_timeout,
        timeout,
        token,
        expected_members,
    }))
}

/// `fleet.expected_members`: an integer >= 1.
fn expected_members(v: toml::Value) -> Result<usize, ConfigError> {
    // From the environment the count arrives as a string.
    v.as_integer()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|&n| n >= 1)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            err(
                "fleet.expected_members",
                format!("{v} is not a member count: expected an integer >= 1, e.g. 3"),
            )
        })
}

/// `http://host:port`, trailing `/` dropped.
fn endpoint(e: &str) -> Result<String, ConfigError> {
    let trimmed = e.trim().trim_end_matches('/');
    match trimmed.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(trimmed.to_string()),
        _ => Err(err(
            "fleet.endpoints",
            format!("{e:?} is not an endpoint like \"http://10.0.0.7:8686\" (plain HTTP only)"),
        )),
    }
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(err(key, "must be longer than 0"));
    }
    Ok(d)
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(
            "fleet.token_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err(
            "fleet.token_file",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(token.to_string())
}
