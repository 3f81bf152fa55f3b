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
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    pub max_limit: usize,
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    pub max_query_bytes: usize,
    /// Queries that may hold the engine at once (a timed-out one holds it until it ends);
    /// as many `fleet=true` fan-outs may run besides.
    pub max_concurrent_queries: usize,
    /// Bytes of the events' JSON in one `/v1/events` page (at least one event per page).
    pub max_page_bytes: usize,
    /// Buckets in one `/v1/rollups` answer; more is a 400.
    pub max_rollup_buckets: usize,
    /// The `[fleet]` section, kept with the HTTP settings because only the HTTP API's
    /// `fleet=true` uses it (`check-config` prints it as the file's `[fleet]`).
    #[serde(skip)]
    pub fleet: Option<FleetSettings>,
}

/// The most queries that may run at once: tokio's default number of blocking threads, which
/// they hold while they run (more would only queue behind them).
const MAX_CONCURRENT_QUERIES: usize = 512;

/// Two queries per core: enough to keep the engine's query pool busy while some wait on I/O,
/// few enough that a burst of slow queries cannot queue up without bound.
fn default_concurrent_queries() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
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
        max_concurrent_queries: h
            .max_concurrent_queries
            .map_or_else(default_concurrent_queries, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        max_page_bytes: size("http.max_page_bytes", h.max_page_bytes, 16 << 20)?
            .try_into()
            .unwrap_or(usize::MAX),
        max_rollup_buckets: h
            .max_rollup_buckets
            .map_or(100_000, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    if http.max_limit == 0 {
        return Err(err("http.max_limit", "must be at least 1"));
    }
    if http.max_page_bytes == 0 {
        return Err(err("http.max_page_bytes", "must be at least 1 byte"));
    }
    if http.max_rollup_buckets == 0 {
        return Err(err("http.max_rollup_buckets", "must be at least 1"));
    }
    if !(1..=MAX_CONCURRENT_QUERIES).contains(&http.max_concurrent_queries) {
        return Err(err(
            "http.max_concurrent_queries",
            format!("use 1 to {MAX_CONCURRENT_QUERIES} (each query holds a blocking thread)"),
        ));
    }
    Ok(http)
}
