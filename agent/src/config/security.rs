//! `[kafka.tls]` and `[kafka.sasl]`: typed connection security, mapped onto librdkafka's
//! properties (`security.protocol`, `ssl.*`, `sasl.*`). Secrets come from the file, from a
//! file named by `*_file`, or from the environment, and are printed masked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{err, secret_of as secret, ser_secret, ConfigError};

/// `[kafka.tls]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<toml::Value>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub key_password: Option<String>,
    pub key_password_file: Option<String>,
    pub verify_hostname: Option<toml::Value>,
}

/// `[kafka.sasl]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    pub mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub oauth_token_endpoint: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<String>,
    pub oauth_client_secret_file: Option<String>,
    pub oauth_scope: Option<String>,
    pub kerberos_service_name: Option<String>,
    pub kerberos_principal: Option<String>,
    pub kerberos_keytab: Option<String>,
}

/// TLS to the brokers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tls {
    /// CA bundle; the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (mutual TLS), both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub key_password: Option<String>,
    /// Check that the broker's certificate names the host connected to (default true).
    pub verify_hostname: bool,
}

/// A SASL mechanism and its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mechanism")]
pub enum Sasl {
    #[serde(rename = "PLAIN")]
    Plain(Credentials),
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256(Credentials),
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512(Credentials),
    /// OIDC client credentials: librdkafka fetches and refreshes the token itself.
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer {
        #[serde(rename = "oauth_token_endpoint")]
        token_endpoint: String,
        #[serde(rename = "oauth_client_id")]
        client_id: String,
        #[serde(
            rename = "oauth_client_secret",
            serialize_with = "ser_secret",
            skip_serializing_if = "Option::is_none"
        )]
        client_secret: Option<String>,
        #[serde(rename = "oauth_scope")]
        scope: Option<String>,
    },
    /// Kerberos; needs an agent built with the `gssapi` cargo feature.
    #[serde(rename = "GSSAPI")]
    Gssapi {
        #[serde(rename = "kerberos_service_name")]
        service_name: String,
        #[serde(rename = "kerberos_principal")]
        principal: Option<String>,
        #[serde(rename = "kerberos_keytab")]
        keytab: Option<PathBuf>,
    },
}

/// Username and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub username: String,
    #[serde(serialize_with = "ser_secret", skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The resolved security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
}

/// The librdkafka properties the sections set; pass-through properties may not set them too.
pub const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.scope",
    "sasl.kerberos.service.name",
    "sasl.kerberos.principal",
    "sasl.kerberos.keytab",
];

impl Security {
    /// The librdkafka properties for these settings (none when both sections are absent).
    pub fn properties(&self) -> BTreeMap<&'static str, String> {
        let mut p = BTreeMap::new();
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => return p,
            (Some(_), None) => "SSL",
            (None, Some(_)) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        };
        p.insert("security.protocol", protocol.to_string());
        if let Some(t) = &self.tls {
            tls_properties(t, &mut p);
        }
        if let Some(s) = &self.sasl {
            sasl_properties(s, &mut p);
        }
        p
    }
}

fn path_string(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn tls_properties(t: &Tls, p: &mut BTreeMap<&'static str, String>) {
    if let Some(ca) = &t.ca_file {
        p.insert("ssl.ca.location", path_string(ca));
    }
    if let Some(c) = &t.cert_file {
        p.insert("ssl.certificate.location", path_string(c));
    }
    if let Some(k) = &t.key_file {
        p.insert("ssl.key.location", path_string(k));
    }
    if let Some(pw) = &t.key_password {
        p.insert("ssl.key.password", pw.clone());
    }
    let algo = if t.verify_hostname { "https" } else { "none" };
    p.insert("ssl.endpoint.identification.algorithm", algo.to_string());
}

fn sasl_properties(s: &Sasl, p: &mut BTreeMap<&'static str, String>) {
    let mut creds = |mechanism: &str, c: &Credentials| {
        p.insert("sasl.mechanism", mechanism.to_string());
        p.insert("sasl.username", c.username.clone());
        if let Some(pw) = &c.password {
            p.insert("sasl.password", pw.clone());
        }
    };
    match s {
        Sasl::Plain(c) => creds("PLAIN", c),
        Sasl::ScramSha256(c) => creds("SCRAM-SHA-256", c),
        Sasl::ScramSha512(c) => creds("SCRAM-SHA-512", c),
        Sasl::OAuthBearer {
            token_endpoint,
            client_id,
            client_secret,
            scope,
        } => {
            p.insert("sasl.mechanism", "OAUTHBEARER".into());
            p.insert("sasl.oauthbearer.method", "oidc".into());
            p.insert(
                "sasl.oauthbearer.token.endpoint.url",
                token_endpoint.clone(),
            );
            p.insert("sasl.oauthbearer.client.id", client_id.clone());
            if let Some(secret) = client_secret {
                p.insert("sasl.oauthbearer.client.secret", secret.clone());
            }
            if let Some(scope) = scope {
                p.insert("sasl.oauthbearer.scope", scope.clone());
            }
        }
        Sasl::Gssapi {
            service_name,
            principal,
            keytab,
        } => {
            p.insert("sasl.mechanism", "GSSAPI".into());
            p.insert("sasl.kerberos.service.name", service_name.clone());
            if let Some(pr) = principal {
                p.insert("sasl.kerberos.principal", pr.clone());
            }
            if let Some(k) = keytab {
                p.insert("sasl.kerberos.keytab", path_string(k));
            }
        }
    }
}

/// A boolean written as `true`/`false` or, from the environment, as the string "true"/"false".
fn flag(key: &str, v: Option<toml::Value>, default: bool) -> Result<bool, ConfigError> {
    match v {
        None => Ok(default),
        Some(toml::Value::Boolean(b)) => Ok(b),
        Some(toml::Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(err(key, format!("{other}: use true or false"))),
    }
}

/// An existing file, resolved against the config file's directory.
fn file(
    key: &str,
    v: Option<String>,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let p = path_of(&v);
    if !p.is_file() {
        return Err(err(key, format!("{} is not a readable file", p.display())));
    }
    Ok(Some(p))
}

/// Resolves `[kafka.tls]`.
pub fn resolve_tls(
    raw: Option<RawTls>,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<Tls>, ConfigError> {
    let Some(t) = raw else { return Ok(None) };
    if !flag("kafka.tls.enabled", t.enabled, true)? {
        return Ok(None);
    }
    let tls = Tls {
        ca_file: file("kafka.tls.ca_file", t.ca_file, path_of)?,
        cert_file: file("kafka.tls.cert_file", t.cert_file, path_of)?,
        key_file: file("kafka.tls.key_file", t.key_file, path_of)?,
        key_password: secret(
            "kafka.tls.key_password",
            t.key_password,
            t.key_password_file,
            path_of,
        )?,
        verify_hostname: flag("kafka.tls.verify_hostname", t.verify_hostname, true)?,
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(err(
            "kafka.tls.cert_file / kafka.tls.key_file",
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    Ok(Some(tls))
}

fn required(key: &str, v: Option<String>, why: &str) -> Result<String, ConfigError> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| err(key, format!("required {why}")))
}

/// Resolves `[kafka.sasl]`.
pub fn resolve_sasl(
    raw: Option<RawSasl>,
    path_of: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<Sasl>, ConfigError> {
    let Some(s) = raw else { return Ok(None) };
    let mechanism = required(
        "kafka.sasl.mechanism",
        s.mechanism.clone(),
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI",
    )?;
    let creds = |s: RawSasl| -> Result<Credentials, ConfigError> {
        let password = secret("kafka.sasl.password", s.password, s.password_file, path_of)?;
        if password.is_none() {
            return Err(err(
                "kafka.sasl.password",
                format!("required for {mechanism} (or kafka.sasl.password_file)"),
            ));
        }
        Ok(Credentials {
            username: required(
                "kafka.sasl.username",
                s.username,
                &format!("for {mechanism}"),
            )?,
            password,
        })
    };
    let sasl = match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => Sasl::Plain(creds(s)?),
        "SCRAM-SHA-256" => Sasl::ScramSha256(creds(s)?),
        "SCRAM-SHA-512" => Sasl::ScramSha512(creds(s)?),
        "OAUTHBEARER" => Sasl::OAuthBearer {
            token_endpoint: required(
                "kafka.sasl.oauth_token_endpoint",
                s.oauth_token_endpoint,
                "for OAUTHBEARER: the OIDC token endpoint",
            )?,
            client_id: required(
                "kafka.sasl.oauth_client_id",
                s.oauth_client_id,
                "for OAUTHBEARER",
            )?,
            client_secret: secret(
                "kafka.sasl.oauth_client_secret",
                s.oauth_client_secret,
                s.oauth_client_secret_file,
                path_of,
            )?,
            scope: s.oauth_scope,
        },
        "GSSAPI" => Sasl::Gssapi {
            service_name: s
                .kerberos_service_name
                .unwrap_or_else(|| "kafka".to_string()),
            principal: s.kerberos_principal,
            keytab: file("kafka.sasl.kerberos_keytab", s.kerberos_keytab, path_of)?,
        },
        other => {
            return Err(err(
                "kafka.sasl.mechanism",
                format!(
                    "{other:?}: use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI"
                ),
            ))
        }
    };
    Ok(Some(sasl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PathBuf {
        std::env::temp_dir()
    }

    fn path_of(p: &str) -> PathBuf {
        base().join(p)
    }

    fn write(name: &str, text: &str) -> String {
        let p = base().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn sasl(text: &str) -> Result<Option<Sasl>, ConfigError> {
        resolve_sasl(Some(toml::from_str(text).unwrap()), &path_of)
    }

    #[test]
    fn tls_and_scram_map_onto_librdkafka_properties() {
        let ca = write("keplor-sec-ca.pem", "x");
        let tls: RawTls = toml::from_str(&format!("ca_file = {ca:?}")).unwrap();
        let sec = Security {
            tls: resolve_tls(Some(tls), &path_of).unwrap(),
            sasl: sasl("mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"1e5\"")
                .unwrap(),
        };
        let p = sec.properties();
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["ssl.ca.location"], ca);
        assert_eq!(p["ssl.endpoint.identification.algorithm"], "https");
        assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(p["sasl.password"], "1e5", "a password stays a string");
        for k in p.keys() {
            assert!(SECURITY_PROPERTIES.contains(k), "{k} is listed");
        }
        let shown = toml::to_string(&sec).unwrap();
        assert!(!shown.contains("1e5") && shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn each_section_alone_picks_its_protocol() {
        let plain = Security {
            tls: None,
            sasl: sasl("mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"p\"").unwrap(),
        };
        assert_eq!(plain.properties()["security.protocol"], "SASL_PLAINTEXT");
        let tls: RawTls = toml::from_str("verify_hostname = \"false\"").unwrap();
        let tls_only = Security {
            tls: resolve_tls(Some(tls), &path_of).unwrap(),
            sasl: None,
        };
        let p = tls_only.properties();
        assert_eq!(p["security.protocol"], "SSL");
        assert_eq!(p["ssl.endpoint.identification.algorithm"], "none");
        assert!(Security::default().properties().is_empty());
        let off: RawTls = toml::from_str("enabled = false").unwrap();
        assert_eq!(resolve_tls(Some(off), &path_of).unwrap(), None);
    }

    #[test]
    fn secrets_come_from_files_and_oauth_and_kerberos_map() {
        let f = write("keplor-sec-secret", "s3cret\n");
        let s = sasl(&format!(
            "mechanism = \"OAUTHBEARER\"\noauth_token_endpoint = \"https://idp/token\"\noauth_client_id = \"c\"\noauth_client_secret_file = {f:?}\noauth_scope = \"kafka\""
        ))
        .unwrap();
        let p = Security { tls: None, sasl: s }.properties();
        assert_eq!(p["sasl.oauthbearer.method"], "oidc");
        assert_eq!(p["sasl.oauthbearer.client.secret"], "s3cret");
        assert_eq!(p["sasl.oauthbearer.scope"], "kafka");
        let k = sasl("mechanism = \"GSSAPI\"\nkerberos_principal = \"keplor@EXAMPLE\"").unwrap();
        let p = Security { tls: None, sasl: k }.properties();
        assert_eq!(p["sasl.kerberos.service.name"], "kafka");
        assert_eq!(p["sasl.kerberos.principal"], "keplor@EXAMPLE");
    }

    #[test]
    fn errors_name_the_key() {
        let e = sasl("mechanism = \"SCRAM-SHA-256\"\nusername = \"u\"").unwrap_err();
        assert_eq!(e.key, "kafka.sasl.password");
        let e = sasl("mechanism = \"MD5\"").unwrap_err();
        assert_eq!(e.key, "kafka.sasl.mechanism");
        let e = sasl(
            "mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"a\"\npassword_file = \"x\"",
        )
        .unwrap_err();
        assert!(e.key.contains("kafka.sasl.password"), "{}", e.key);
        let tls: RawTls = toml::from_str("ca_file = \"/nonexistent/ca.pem\"").unwrap();
        assert_eq!(
            resolve_tls(Some(tls), &path_of).unwrap_err().key,
            "kafka.tls.ca_file"
        );
        let cert = write("keplor-sec-cert.pem", "x");
        let tls: RawTls = toml::from_str(&format!("cert_file = {cert:?}")).unwrap();
        assert!(resolve_tls(Some(tls), &path_of)
            .unwrap_err()
            .key
            .contains("key_file"));
    }
}
