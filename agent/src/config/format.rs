//! The `[format]` section: how payloads are encoded (JSON, Avro, Confluent-framed Avro) and the
//! schema registry that Confluent framing may ask (`format.registry_*`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::raw::RawFormat;
use super::{err, positive_duration, secret_of, ser_duration, ser_masked, ConfigError};

/// Message encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Format {
    Json,
    Avro {
        schema_file: PathBuf,
    },
    AvroConfluent {
        schemas: BTreeMap<u32, PathBuf>,
        /// Asked for the ids not in `schemas`.
        #[serde(flatten)]
        registry: Option<RegistrySettings>,
    },
}

/// A Confluent-compatible schema registry (`format.registry_*`; printed under those keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrySettings {
    /// `http://` or `https://` base URL, without a trailing `/`.
    #[serde(rename = "registry_url")]
    pub url: String,
    /// PEM CA certificates trusted for `https` (`None`: the system roots).
    #[serde(rename = "registry_ca_file", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(flatten)]
    pub auth: RegistryAuth,
    #[serde(rename = "registry_connect_timeout", serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for an answer once connected.
    #[serde(rename = "registry_timeout", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Retries after a failed attempt (connection error, timeout, HTTP 5xx or 429).
    #[serde(rename = "registry_retries")]
    pub retries: u32,
}

/// How the agent authenticates to the schema registry (printed as the keys that set it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RegistryAuth {
    None,
    /// HTTP basic auth (Confluent Cloud: the API key and secret).
    Basic {
        #[serde(rename = "registry_username")]
        username: String,
        #[serde(rename = "registry_password", serialize_with = "ser_masked")]
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        #[serde(rename = "registry_token", serialize_with = "ser_masked")]
        token: String,
    },
}

/// Resolves `[format]`.
pub(super) fn resolve(
    f: RawFormat,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Format, ConfigError> {
    match f.kind.as_deref().unwrap_or("json") {
        "json" => Ok(Format::Json),
        "avro" => Ok(Format::Avro {
            schema_file: path_of(f.schema_file.as_deref().ok_or_else(|| {
                err(
                    "format.schema_file",
                    "format.kind = \"avro\" needs the writer schema (.avsc)",
                )
            })?),
        }),
        "avro-confluent" => {
            let mut schemas = BTreeMap::new();
            for (id, file) in f.schemas.clone().unwrap_or_default() {
                let n: u32 = id.parse().map_err(|_| {
                    err(
                        format!("format.schemas.{id}"),
                        "keys are schema ids (numbers)",
                    )
                })?;
                schemas.insert(n, path_of(&file));
            }
            let registry = resolve_registry(f, path_of)?;
            if schemas.is_empty() && registry.is_none() {
                return Err(err(
                    "format.schemas",
                    "format.kind = \"avro-confluent\" needs schema files keyed by id, or format.registry_url",
                ));
            }
            Ok(Format::AvroConfluent { schemas, registry })
        }
        other => Err(err(
            "format.kind",
            format!("{other:?}: use json, avro or avro-confluent"),
        )),
    }
}

/// The `format.registry_*` keys; `None` without `format.registry_url`.
fn resolve_registry(
    f: RawFormat,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<RegistrySettings>, ConfigError> {
    let Some(raw_url) = &f.registry_url else {
        return match registry_key_set(&f) {
            Some(key) => Err(err(
                format!("format.registry_url / {key}"),
                format!("{key} is set but format.registry_url is not: give the registry's URL"),
            )),
            None => Ok(None),
        };
    };
    let url = registry_url(raw_url)?;
    let ca_file = registry_ca_file(f.registry_ca_file, &url, path_of)?;
    let password = secret_of(
        "format.registry_password",
        f.registry_password,
        f.registry_password_file,
        path_of,
    )?;
    let token = secret_of(
        "format.registry_token",
        f.registry_token,
        f.registry_token_file,
        path_of,
    )?;
    let auth = registry_auth(f.registry_username, password, token)?;
    let connect_timeout = positive_duration(
        "format.registry_connect_timeout",
        f.registry_connect_timeout,
        Duration::from_secs(5),
    )?;
    let timeout = positive_duration(
        "format.registry_timeout",
        f.registry_timeout,
        Duration::from_secs(10),
    )?;
    let retries = registry_retries(f.registry_retries)?;
    Ok(Some(RegistrySettings {
        url,
        ca_file,
        auth,
        connect_timeout,
        timeout,
        retries,
    }))
}

/// The first `format.registry_*` key set (other than the URL), if any.
fn registry_key_set(f: &RawFormat) -> Option<&'static str> {
    let set = [
        ("format.registry_ca_file", f.registry_ca_file.is_some()),
        ("format.registry_username", f.registry_username.is_some()),
        ("format.registry_password", f.registry_password.is_some()),
        (
            "format.registry_password_file",
            f.registry_password_file.is_some(),
        ),
        ("format.registry_token", f.registry_token.is_some()),
        (
            "format.registry_token_file",
            f.registry_token_file.is_some(),
        ),
        (
            "format.registry_connect_timeout",
            f.registry_connect_timeout.is_some(),
        ),
        ("format.registry_timeout", f.registry_timeout.is_some()),
        ("format.registry_retries", f.registry_retries.is_some()),
    ];
    set.iter().find(|(_, is_set)| *is_set).map(|(key, _)| *key)
}

/// `format.registry_ca_file`: a readable file, for an https registry only.
fn registry_ca_file(
    file: Option<String>,
    url: &str,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    if url.starts_with("http://") {
        return Err(err(
            "format.registry_ca_file / format.registry_url",
            format!("a CA file is for an https registry, but {url} is plain http"),
        ));
    }
    let p = path_of(&file);
    if !p.is_file() {
        return Err(err(
            "format.registry_ca_file",
            format!("{} is not a readable file", p.display()),
        ));
    }
    Ok(Some(p))
}

/// A duration key that must be longer than 0.
/// `format.registry_retries`: 0 to 10, default 2.
fn registry_retries(n: Option<u64>) -> Result<u32, ConfigError> {
    match n {
        None => Ok(2),
        Some(n @ 0..=10) => Ok(n as u32),
        Some(n) => Err(err(
            "format.registry_retries",
            format!("{n} retries: use 0 to 10 (the wait doubles after each)"),
        )),
    }
}

/// `http(s)://host[:port][/path]`, trailing `/` dropped.
fn registry_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(url.to_string()),
        _ => Err(err(
            "format.registry_url",
            format!("{raw:?} is not a URL like \"https://schema-registry:8081\" (http or https)"),
        )),
    }
}

/// Basic auth (username and password) or a bearer token, not both.
fn registry_auth(
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> Result<RegistryAuth, ConfigError> {
    match (username.filter(|u| !u.is_empty()), password, token) {
        (None, None, None) => Ok(RegistryAuth::None),
        (Some(username), Some(password), None) => Ok(RegistryAuth::Basic { username, password }),
        (None, None, Some(token)) => Ok(RegistryAuth::Bearer { token }),
        (Some(_), None, None) => Err(err(
            "format.registry_username / format.registry_password",
            "basic auth needs a password: set format.registry_password or format.registry_password_file",
        )),
        (None, Some(_), None) => Err(err(
            "format.registry_username / format.registry_password",
            "a registry password needs format.registry_username",
        )),
        (_, _, Some(_)) => Err(err(
            "format.registry_username / format.registry_token",
            "choose basic auth (username and password) or a bearer token, not both",
        )),
    }
}
