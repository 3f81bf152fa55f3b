//! The runtime schema: column names and counts, its fingerprint, and the `keplordb.schema`
//! file through which a data directory describes itself.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DbError, Result, SchemaSummary};
use crate::fsutil;
use crate::hash::hash64;

/// Most dims a schema may declare.
pub const MAX_DIMS: usize = 256;
/// Most counters a schema may declare.
pub const MAX_COUNTERS: usize = 64;
/// Most labels a schema may declare.
pub const MAX_LABELS: usize = 64;
/// Longest column name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Most rollup dims.
pub const MAX_ROLLUP_DIMS: usize = 8;

/// File name of the schema description inside a data directory.
pub const SCHEMA_FILE: &str = "keplordb.schema";

/// The shape of the events stored in one data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaDef {
    /// SchemaDef id chosen by the application.
    pub schema_id: u8,
    /// Dim names, in column order.
    pub dims: Vec<String>,
    /// Counter names, in column order.
    pub counters: Vec<String>,
    /// Label names, in column order.
    pub labels: Vec<String>,
    /// Dim carrying the per-segment bloom filter (an indexing choice, not part of the
    /// fingerprint).
    pub bloom_dim: Option<usize>,
    /// Dims keyed by the daily rollups (an indexing choice, not part of the fingerprint).
    pub rollup_dims: Vec<usize>,
}

impl SchemaDef {
    /// Fingerprint of the column names and counts, recorded in every file.
    pub fn fingerprint(&self) -> u64 {
        let mut canon = String::new();
        for (kind, names) in [
            ("d", &self.dims),
            ("c", &self.counters),
            ("l", &self.labels),
        ] {
            for n in names.iter() {
                // Names cannot hold control characters (validated), so '\n' separates safely.
                let _ = writeln!(canon, "{kind}:{n}");
            }
        }
        hash64(canon.as_bytes())
    }

    /// Human summary used in errors.
    pub fn summary(&self) -> SchemaSummary {
        SchemaSummary {
            schema_id: self.schema_id,
            fingerprint: self.fingerprint(),
            columns: Some(self.columns_text()),
        }
    }

    fn columns_text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        format!(
            "dims: {} | counters: {} | labels: {}",
            list(&self.dims),
            list(&self.counters),
            list(&self.labels)
        )
    }

    /// Index of the dim called `name`.
    pub fn dim_index(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d == name)
    }

    /// Index of the counter called `name`.
    pub fn counter_index(&self, name: &str) -> Option<usize> {
        self.counters.iter().position(|d| d == name)
    }

    /// Checks caps, names and index references.
    pub fn validate(&self) -> Result<()> {
        check_names("dim_names", &self.dims, MAX_DIMS)?;
        check_names("counter_names", &self.counters, MAX_COUNTERS)?;
        check_names("label_names", &self.labels, MAX_LABELS)?;
        let mut all: Vec<&String> = self
            .dims
            .iter()
            .chain(&self.counters)
            .chain(&self.labels)
            .collect();
        all.sort();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(DbError::config(
                "dim_names",
                format!("column name {:?} is used twice; every dim, counter and label needs its own name", w[0]),
            ));
        }
        if let Some(b) = self.bloom_dim {
            if b >= self.dims.len() {
                return Err(DbError::config(
                    "bloom_dim",
                    format!(
                        "bloom_dim is {b} but the schema has {} dims",
                        self.dims.len()
                    ),
                ));
            }
        }
        if self.rollup_dims.len() > MAX_ROLLUP_DIMS {
            return Err(DbError::config(
                "rollup_dims",
                format!(
                    "{} rollup dims, at most {MAX_ROLLUP_DIMS} are supported",
                    self.rollup_dims.len()
                ),
            ));
        }
        let mut seen = Vec::new();
        for &r in &self.rollup_dims {
            if r >= self.dims.len() {
                return Err(DbError::config(
                    "rollup_dims",
                    format!(
                        "rollup dim {r} does not exist, the schema has {} dims",
                        self.dims.len()
                    ),
                ));
            }
            if seen.contains(&r) {
                return Err(DbError::config(
                    "rollup_dims",
                    format!("rollup dim {r} is listed twice"),
                ));
            }
            seen.push(r);
        }
        Ok(())
    }

    /// Serialises the schema file.
    fn to_file_text(&self) -> String {
        let mut s = String::from("keplordb-schema 1\n");
        let _ = writeln!(s, "id {}", self.schema_id);
        let _ = writeln!(s, "fingerprint {:016x}", self.fingerprint());
        for d in &self.dims {
            let _ = writeln!(s, "dim {d}");
        }
        for c in &self.counters {
            let _ = writeln!(s, "counter {c}");
        }
        for l in &self.labels {
            let _ = writeln!(s, "label {l}");
        }
        if let Some(b) = self.bloom_dim {
            let _ = writeln!(s, "bloom {b}");
        }
        for r in &self.rollup_dims {
            let _ = writeln!(s, "rollup {r}");
        }
        s
    }

    fn from_file_text(text: &str, path: &Path) -> Result<SchemaDef> {
        let bad = |line: usize, why: &str| DbError::CorruptSchemaFile {
            path: path.to_path_buf(),
            reason: if line == 0 {
                why.to_string()
            } else {
                format!("line {line}: {why}")
            },
        };
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, "keplordb-schema 1")) => {}
            _ => return Err(bad(1, "expected the header `keplordb-schema 1`")),
        }
        let mut schema = SchemaDef {
            schema_id: 0,
            dims: vec![],
            counters: vec![],
            labels: vec![],
            bloom_dim: None,
            rollup_dims: vec![],
        };
        let mut fingerprint = None;
        let mut have_id = false;
        for (i, line) in lines {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| bad(i + 1, "expected `key value`"))?;
            match key {
                "id" => {
                    schema.schema_id = value.parse().map_err(|_| bad(i + 1, "id is not a u8"))?;
                    have_id = true;
                }
                "fingerprint" => {
                    fingerprint = Some(
                        u64::from_str_radix(value, 16)
                            .map_err(|_| bad(i + 1, "fingerprint is not hex"))?,
                    )
                }
                "dim" => schema.dims.push(value.to_string()),
                "counter" => schema.counters.push(value.to_string()),
                "label" => schema.labels.push(value.to_string()),
                "bloom" => {
                    schema.bloom_dim = Some(
                        value
                            .parse()
                            .map_err(|_| bad(i + 1, "bloom is not an index"))?,
                    )
                }
                "rollup" => schema.rollup_dims.push(
                    value
                        .parse()
                        .map_err(|_| bad(i + 1, "rollup is not an index"))?,
                ),
                _ => return Err(bad(i + 1, "unknown key")),
            }
        }
        if !have_id {
            return Err(bad(0, "no `id` line"));
        }
        if fingerprint != Some(schema.fingerprint()) {
            return Err(bad(0, "fingerprint does not match the column names"));
        }
        schema.validate().map_err(|e| bad(0, &e.to_string()))?;
        Ok(schema)
    }

    /// Reads `keplordb.schema` from a data directory; `None` when the directory has none.
    pub fn read_from_dir(dir: &Path) -> Result<Option<SchemaDef>> {
        let path = dir.join(SCHEMA_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => SchemaDef::from_file_text(&text, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DbError::io("read schema file", path, e)),
        }
    }

    /// Writes `keplordb.schema` atomically (temp file, fsync, rename, fsync dir).
    pub(crate) fn write_to_dir(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(SCHEMA_FILE);
        let tmp = path.with_extension("tmp");
        fsutil::write_atomic(dir, &tmp, &path, self.to_file_text().as_bytes())?;
        Ok(path)
    }
}

fn check_names(field: &'static str, names: &[String], max: usize) -> Result<()> {
    if names.len() > max {
        return Err(DbError::config(
            field,
            format!(
                "{} columns declared, at most {max} are supported",
                names.len()
            ),
        ));
    }
    for n in names {
        if n.is_empty() || n.len() > MAX_NAME_LEN {
            return Err(DbError::config(
                field,
                format!("column name {n:?} must be 1 to {MAX_NAME_LEN} bytes long"),
            ));
        }
        if n.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '=' || c == ',')
        {
            return Err(DbError::config(
                field,
                format!(
                    "column name {n:?} may not contain whitespace, control characters, '=' or ','"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaDef {
        SchemaDef {
            schema_id: 7,
            dims: vec!["user".into(), "model".into()],
            counters: vec!["tokens".into()],
            labels: vec!["note".into()],
            bloom_dim: Some(0),
            rollup_dims: vec![0, 1],
        }
    }

    #[test]
    fn file_round_trip() {
        let s = schema();
        let text = s.to_file_text();
        assert_eq!(SchemaDef::from_file_text(&text, Path::new("x")).unwrap(), s);
    }

    #[test]
    fn fingerprint_depends_on_names_and_kinds_only() {
        let a = schema();
        let mut b = schema();
        b.bloom_dim = None;
        b.schema_id = 9;
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.counters = vec![];
        b.labels = vec!["note".into(), "tokens".into()];
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn edited_schema_file_is_rejected() {
        let text = schema().to_file_text().replace("dim model", "dim modal");
        let err = SchemaDef::from_file_text(&text, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut s = schema();
        s.labels = vec!["user".into()];
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("\"user\" is used twice"));
        let mut s = schema();
        s.bloom_dim = Some(5);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bloom_dim is 5"));
        let mut s = schema();
        s.dims = (0..257).map(|i| format!("d{i}")).collect();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("257 columns"));
        let mut s = schema();
        s.dims[0] = "a b".into();
        assert!(s.validate().is_err());
    }
}
