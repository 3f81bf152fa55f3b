//! The `[log]` section: how the agent writes its log lines (to stderr).

use serde::Serialize;

use super::raw::RawLog;
use super::{err, ConfigError};

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; ANSI colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message, fields), for log
    /// collectors.
    Json,
}

/// Logging settings. The level filter comes from `KEPLOR_LOG` (e.g. `info,rdkafka=warn`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Resolves `[log]`.
pub(super) fn resolve(raw: RawLog) -> Result<LogSettings, ConfigError> {
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(err(
                "log.format",
                format!("{other:?} is not a log format: use \"text\" or \"json\""),
            ))
        }
    };
    Ok(LogSettings { format })
}
