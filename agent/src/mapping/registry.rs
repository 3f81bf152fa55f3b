//! A client of a Confluent-compatible schema registry: `GET /schemas/ids/{id}` for a writer
//! schema, `GET /subjects/{subject}/versions/{version}` for the schemas it references (and
//! theirs), over http or https (native-tls: the system's OpenSSL, the system roots or a CA
//! file), with basic or bearer auth, timeouts, and retries with a doubling wait.
//!
//! Failures come in two kinds, because the sink treats them differently: the registry could
//! not answer ([`RegistryError::Unavailable`]: not the message's fault, asking again later may
//! work) or it answered and the schema itself is the problem ([`RegistryError::Schema`]: an id
//! the registry does not have, a schema that is not Avro or not valid; asking again cannot
//! help, so the message is poison).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use apache_avro::Schema;
use serde_json::Value as Json;
use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};

use crate::config::units::fmt_duration;
use crate::config::{RegistryAuth, RegistrySettings};

/// Wait before the first retry; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Most schemas one id may reference, transitively: a bound on a registry answering in circles.
const MAX_REFERENCES: usize = 256;
/// Longest part of an error answer quoted in an error.
const MAX_QUOTED: usize = 300;
/// Confluent error codes (with HTTP 404) that say the schema, subject or version does not
/// exist: an answer about the schema, not an outage.
const SCHEMA_NOT_FOUND: i64 = 40403;
const SUBJECT_NOT_FOUND: i64 = 40401;
const VERSION_NOT_FOUND: i64 = 40402;

/// Why a schema could not be had from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Unreachable, timed out, HTTP 5xx or 429 after the retries, credentials or TLS refused,
    /// an answer that is not the registry API's. Not the message's fault.
    Unavailable(String),
    /// The registry answered and the schema is the problem: unknown id, not Avro, invalid, a
    /// reference the registry does not have.
    Schema(String),
}

/// A writer schema and the named schemas it references (needed to resolve its names).
#[derive(Debug)]
pub struct Fetched {
    pub schema: Schema,
    pub references: Vec<Schema>,
}

/// One reference of a schema: the subject version that defines a named type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Reference {
    subject: String,
    version: i64,
}

/// The outcome of one HTTP attempt.
enum Attempt {
    Done(Result<Json, RegistryError>),
    /// Worth another attempt: connection error, timeout, HTTP 5xx or 429.
    Transient(String),
}

/// A schema registry client. Callers cache the schemas by id (they never change for an id);
/// the client caches the referenced subject versions, which many ids share.
pub struct Registry {
    /// Base URL without a trailing `/`.
    base: String,
    http: ureq::Agent,
    /// The `Authorization` header value.
    authorization: Option<String>,
    retries: u32,
    connect_timeout: Duration,
    timeout: Duration,
    /// Schema texts of referenced subject versions (and their own references).
    referenced: Mutex<HashMap<Reference, (String, Vec<Reference>)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.base).finish()
    }
}

impl Registry {
    /// A client for `settings`; reads the CA file.
    pub fn new(settings: &RegistrySettings) -> Result<Registry, String> {
        let roots = match &settings.ca_file {
            Some(path) => RootCerts::new_with_certs(&read_ca_file(path)?),
            // With native-tls: the roots OpenSSL finds on the system.
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(roots)
            .build();
        let http = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_recv_response(Some(settings.timeout))
            .timeout_recv_body(Some(settings.timeout))
            .timeout_global(Some(settings.connect_timeout + settings.timeout))
            .build()
            .into();
        let authorization = match &settings.auth {
            RegistryAuth::None => None,
            RegistryAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            )),
            RegistryAuth::Bearer { token } => Some(format!("Bearer {token}")),
        };
        Ok(Registry {
            base: settings.url.trim_end_matches('/').to_string(),
            http,
            authorization,
            retries: settings.retries,
            connect_timeout: settings.connect_timeout,
            timeout: settings.timeout,
            referenced: Mutex::new(HashMap::new()),
        })
    }

    /// Schema `id` with the schemas it references, parsed.
    pub fn schema(&self, id: u32) -> Result<Fetched, RegistryError> {
        let answer = self.get_json(&format!("/schemas/ids/{id}"), &[SCHEMA_NOT_FOUND])?;
        let what = format!("schema id {id}");
        let (text, refs) = avro_text(&answer, &what)?;
        let named = self.referenced_texts(&refs, &what)?;
        parse(&text, &named).map_err(|e| {
            RegistryError::Schema(format!("{what} from the registry is not valid Avro: {e}"))
        })
    }

    /// The texts of every schema that `refs` name, transitively, each once, and each after
    /// the schemas it references: the order in which Avro resolves names.
    fn referenced_texts(
        &self,
        refs: &[Reference],
        what: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let mut seen = HashSet::new();
        let mut texts = Vec::new();
        for r in refs {
            self.visit(r, &mut seen, &mut texts, what)?;
        }
        Ok(texts)
    }

    /// Depth first: `r`'s references, then `r`.
    fn visit(
        &self,
        r: &Reference,
        seen: &mut HashSet<Reference>,
        texts: &mut Vec<String>,
        what: &str,
    ) -> Result<(), RegistryError> {
        if !seen.insert(r.clone()) {
            return Ok(());
        }
        if seen.len() > MAX_REFERENCES {
            return Err(RegistryError::Schema(format!(
                "{what} references more than {MAX_REFERENCES} schemas"
            )));
        }
        let (text, more) = self.subject_version(r)?;
        for m in &more {
            self.visit(m, seen, texts, what)?;
        }
        texts.push(text);
        Ok(())
    }

    /// A referenced subject version's schema text and its own references (cached).
    fn subject_version(&self, r: &Reference) -> Result<(String, Vec<Reference>), RegistryError> {
        let cached = self
            .referenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(r)
            .cloned();
        if let Some(hit) = cached {
            return Ok(hit);
        }
        let path = format!(
            "/subjects/{}/versions/{}",
            percent_encode(&r.subject),
            r.version
        );
        let answer = self.get_json(&path, &[SUBJECT_NOT_FOUND, VERSION_NOT_FOUND])?;
        let what = format!("referenced subject {:?} version {}", r.subject, r.version);
        let found = avro_text(&answer, &what)?;
        // Version -1 is "latest", which can change: cache only numbered versions.
        if r.version > 0 {
            self.referenced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r.clone(), found.clone());
        }
        Ok(found)
    }

    /// GETs `path` and parses the JSON answer, retrying transient failures with a doubling
    /// wait. A 404 whose Confluent `error_code` is in `missing` is a [`RegistryError::Schema`].
    fn get_json(&self, path: &str, missing: &[i64]) -> Result<Json, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut wait = FIRST_BACKOFF;
        let mut failed = 0;
        loop {
            match self.attempt(&url, missing) {
                Attempt::Done(result) => return result,
                Attempt::Transient(why) if failed < self.retries => {
                    failed += 1;
                    tracing::warn!(
                        url = %url,
                        attempt = failed,
                        retry_in = %fmt_duration(wait),
                        error = %why,
                        "schema registry request failed, retrying"
                    );
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                }
                Attempt::Transient(why) => {
                    return Err(RegistryError::Unavailable(format!(
                        "{url}: {why} ({} attempts)",
                        failed + 1
                    )))
                }
            }
        }
    }

    /// One request.
    fn attempt(&self, url: &str, missing: &[i64]) -> Attempt {
        let mut request = self.http.get(url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => return self.transport_failure(url, &e),
        };
        let status = response.status().as_u16();
        match response.body_mut().read_to_string() {
            Ok(body) => interpret(url, status, &body, missing),
            Err(e) => self.transport_failure(url, &e),
        }
    }

    /// Names a failure below HTTP; connection errors and timeouts are worth a retry.
    fn transport_failure(&self, url: &str, e: &ureq::Error) -> Attempt {
        let unavailable = |m: String| Attempt::Done(Err(RegistryError::Unavailable(m)));
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect) => Attempt::Transient(format!(
                "no connection within {}",
                fmt_duration(self.connect_timeout)
            )),
            ureq::Error::Timeout(_) => Attempt::Transient(format!(
                "connected, but no answer within {}",
                fmt_duration(self.timeout)
            )),
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                Attempt::Transient(e.to_string())
            }
            // A certificate that does not verify will not verify on a second try.
            ureq::Error::NativeTls(_) | ureq::Error::Tls(_) => unavailable(format!(
                "{url}: TLS: {e} (is format.registry_ca_file the CA that signed the registry's \
                 certificate, and the URL's host a name in that certificate?)"
            )),
            _ => unavailable(format!("{url}: {e}")),
        }
    }
}

/// What an HTTP answer means.
fn interpret(url: &str, status: u16, body: &str, missing: &[i64]) -> Attempt {
    let error = |e: RegistryError| Attempt::Done(Err(e));
    match status {
        200 => match serde_json::from_str(body) {
            Ok(json) => Attempt::Done(Ok(json)),
            Err(e) => error(RegistryError::Unavailable(format!(
                "{url}: the answer is not JSON ({e}): {}",
                quote(body)
            ))),
        },
        429 | 500..=599 => Attempt::Transient(format!("HTTP {status}: {}", quote(body))),
        404 if error_code(body).is_some_and(|c| missing.contains(&c)) => error(
            RegistryError::Schema(format!("{url}: not found: {}", quote(body))),
        ),
        401 | 403 => error(RegistryError::Unavailable(format!(
            "{url}: HTTP {status}: {} (check format.registry_username / \
             format.registry_password or format.registry_token)",
            quote(body)
        ))),
        _ => error(RegistryError::Unavailable(format!(
            "{url}: HTTP {status}: {}",
            quote(body)
        ))),
    }
}

/// The Confluent `error_code` of an error answer.
fn error_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Json>(body)
        .ok()?
        .get("error_code")?
        .as_i64()
}

/// An error answer for a message: its Confluent `message`, or its start.
fn quote(body: &str) -> String {
    let message = serde_json::from_str::<Json>(body)
        .ok()
        .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string));
    let text = message.unwrap_or_else(|| body.trim().to_string());
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "(no body)".to_string(),
        None => text,
    }
}

/// The Avro schema text of a registry answer and its references.
fn avro_text(answer: &Json, what: &str) -> Result<(String, Vec<Reference>), RegistryError> {
    // Absent means AVRO (the registry's default).
    let kind = answer
        .get("schemaType")
        .and_then(Json::as_str)
        .unwrap_or("AVRO");
    if !kind.eq_ignore_ascii_case("AVRO") {
        return Err(RegistryError::Schema(format!(
            "{what} is a {kind} schema: format.kind = \"avro-confluent\" decodes Avro only"
        )));
    }
    let text = answer.get("schema").and_then(Json::as_str).ok_or_else(|| {
        RegistryError::Unavailable(format!(
            "{what}: the registry's answer has no `schema` string"
        ))
    })?;
    let refs = match answer.get("references") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => list
            .iter()
            .map(|r| reference(r, what))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RegistryError::Unavailable(format!(
                "{what}: the registry's `references` is not a list"
            )))
        }
    };
    Ok((text.to_string(), refs))
}

/// `{"name": ..., "subject": ..., "version": N}`.
fn reference(r: &Json, what: &str) -> Result<Reference, RegistryError> {
    let subject = r.get("subject").and_then(Json::as_str);
    let version = r.get("version").and_then(Json::as_i64);
    match (subject, version) {
        (Some(subject), Some(version)) => Ok(Reference {
            subject: subject.to_string(),
            version,
        }),
        _ => Err(RegistryError::Unavailable(format!(
            "{what}: a reference without a subject and a version: {r}"
        ))),
    }
}

/// Parses the root schema with the named schemas it references.
fn parse(text: &str, named: &[String]) -> Result<Fetched, apache_avro::Error> {
    if named.is_empty() {
        return Ok(Fetched {
            schema: Schema::parse_str(text)?,
            references: Vec::new(),
        });
    }
    let (schema, references) = Schema::parse_str_with_list(text, named)?;
    Ok(Fetched { schema, references })
}

/// The certificates of `format.registry_ca_file`.
fn read_ca_file(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    pem_certificates(path).map_err(|e| format!("format.registry_ca_file: {e}"))
}

/// The certificates of a PEM file (other PEM items, such as keys, are skipped); an error when
/// it cannot be read, is not PEM or holds no certificate. Also the query CLI's `--ca-file`.
pub(crate) fn pem_certificates(
    path: &Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{} is not valid PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A URL path segment: everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for the basic auth header.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 0x3F) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}
