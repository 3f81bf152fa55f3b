//! The agent's configuration parser: the input is a TOML file, then, after a NUL byte, the
//! environment as `KEPLOR_…=value` lines; relative paths resolve against `config/`.
//!
//! Checks: a configuration that parses has validated values (the engine accepts its engine
//! configuration, the counts and sizes that must be positive are, timeouts are not zero) and
//! prints (`check-config`); the mapper of a JSON configuration builds (an Avro one reads
//! schema files, and keeps each schema for the life of the process by design).

#![no_main]

use std::time::Duration;

use keplor_agent::config::{Config, Format};
use keplor_agent::mapping::Mapper;
use keplor_fuzz::config_dir;
use libfuzzer_sys::fuzz_target;

/// Files a key may name that are not files to read: `*_file` keys read what they name, and
/// these would block or never end.
fn names_a_device(text: &str) -> bool {
    ["/dev", "/proc", "/sys"].iter().any(|d| text.contains(d))
}

fn check(c: &Config) {
    c.engine_config()
        .validate()
        .unwrap_or_else(|e| panic!("engine configuration refused: {e}"));
    assert!((1..=keplordb::MAX_SHARDS).contains(&c.engine.shards));
    assert!(c.batch.max_events >= 1);
    assert!(c.batch.max_pending_bytes >= c.batch.max_bytes);
    assert!((1..=1024).contains(&c.batch.map_threads));
    assert!(c.http.max_limit >= 1);
    assert!(
        c.http.request_timeout > Duration::ZERO,
        "http.request_timeout is zero"
    );
    if let Some(f) = &c.http.fleet {
        assert!(!f.endpoints.is_empty() || f.endpoints_dns.is_some());
        assert!(f.connect_timeout > Duration::ZERO && f.timeout > Duration::ZERO);
    }
    if let Format::AvroConfluent { schemas, registry } = &c.format {
        assert!(!schemas.is_empty() || registry.is_some());
        if let Some(r) = registry {
            assert!(r.connect_timeout > Duration::ZERO && r.timeout > Duration::ZERO);
        }
    }
    let printed = c.to_toml();
    assert!(!printed.starts_with("# cannot render"), "{printed}");
}

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(toml), Ok(env)) = (std::str::from_utf8(toml), std::str::from_utf8(env)) else {
        return;
    };
    if names_a_device(toml) || names_a_device(env) {
        return;
    }
    let env = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let Ok(config) = Config::from_toml(toml, env, &config_dir()) else {
        return;
    };
    check(&config);
    if config.format == Format::Json {
        Mapper::new(&config).unwrap_or_else(|e| panic!("JSON mapper refused: {e}"));
    }
});
