//! The `[http]` section: the local query API (address, token, limits), with the `[fleet]`
//! section its `fleet=true` fans out to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::raw::{RawFleet, RawHttp};
use super::{
    err, fleet, positive_duration, ser_duration, ser_secret, size, ConfigError, FleetSettings,
};

/// HTTP query endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    #[serde(serialize_with = "ser_secret")]
    pub auth_token: Option<String>,
    pub max_limit: usize,
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    pub max_query_bytes: usize,
    /// The `[fleet]` section, kept with the HTTP settings because only the HTTP API's
    /// `fleet=true` uses it (`check-config` prints it as `[http.fleet]`).
    pub fleet: Option<FleetSettings>,
}

/// Resolves `[http]` and `[fleet]` (whose token defaults to `http.auth_token`).
pub(super) fn resolve(
    h: RawHttp,
    raw_fleet: Option<RawFleet>,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<HttpSettings, ConfigError> {
    let listen = h.listen.as_deref().unwrap_or("127.0.0.1:8686");
    let auth_token = h.auth_token.filter(|t| !t.is_empty());
    let http = HttpSettings {
        enabled: h.enabled.unwrap_or(true),
        listen: listen.parse().map_err(|_| {
            err(
                "http.listen",
                format!("{listen:?} is not an address like \"127.0.0.1:8686\""),
            )
        })?,
        fleet: fleet::resolve(raw_fleet, auth_token.as_deref(), path_of)?,
        auth_token,
        max_limit: h.max_limit.unwrap_or(1000) as usize,
        // Zero would time every query out.
        request_timeout: positive_duration(
            "http.request_timeout",
            h.request_timeout,
            Duration::from_secs(10),
        )?,
        max_query_bytes: size("http.max_query_bytes", h.max_query_bytes, 8 * 1024)? as usize,
    };
    if http.max_limit == 0 {
        return Err(err("http.max_limit", "must be at least 1"));
    }
    Ok(http)
}
