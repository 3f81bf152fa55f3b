//! Environment overrides: `KEPLOR_<SECTION>__<KEY>=value` sets `<section>.<key>` in the TOML
//! table before it is resolved.

use super::{err, ConfigError};

/// Applies `KEPLOR_A__B__C=value` to `table.a.b.c`.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("KEPLOR_") else {
            continue;
        };
        if rest == "CONFIG" || rest == "LOG" || rest == "TOKEN" {
            continue; // read by the CLI
        }
        let parts: Vec<&str> = rest.split("__").collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(err(
                name.clone(),
                "environment overrides are named KEPLOR_<SECTION>__<KEY>, e.g. KEPLOR_KAFKA__BROKERS",
            ));
        }
        let keys: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // librdkafka property names use dots.
                if i == 2 && parts[0] == "KAFKA" && parts[1] == "PROPERTIES" {
                    p.to_ascii_lowercase().replace('_', ".")
                } else {
                    p.to_ascii_lowercase()
                }
            })
            .collect();
        // A string stays a string (a password of `1e5` or `0x1F` is not a number; typed keys
        // parse their strings themselves); only a list or an inline table is read as TOML.
        let trimmed = value.trim_start();
        let structured = trimmed.starts_with('[') || trimmed.starts_with('{');
        let parsed = structured
            .then(|| toml::from_str::<toml::Table>(&format!("v = {value}")).ok())
            .flatten()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let mut cur = &mut *table;
        for k in &keys[..keys.len() - 1] {
            let entry = cur
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(err(
                        keys.join("."),
                        format!("{name} sets a key inside `{k}`, which is not a table"),
                    ))
                }
            };
        }
        cur.insert(keys[keys.len() - 1].clone(), parsed);
    }
    Ok(())
}
