//! What `keplor-agent top` shows, read from one agent's API: its `/metrics` (rate, store,
//! partitions, rejects), the largest values of two dims by cost over the window (`/v1/top`),
//! and the newest errors in it (`/v1/events?status_min=400`).

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::api::{EventJson, EventsResponse, TopResponse};

/// Most rows of each top table and of the errors.
pub const ROWS: usize = 10;

/// The agent asked, and how.
#[derive(Debug)]
pub struct Source {
    pub endpoint: String,
    token: Option<String>,
    http: ureq::Agent,
}

impl Source {
    pub fn new(endpoint: &str, token: Option<String>, timeout: Duration) -> Source {
        let http = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Source {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    /// `GET path?query`: the body, or why there is none.
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<String, String> {
        let mut req = self.http.get(format!("{}{path}", self.endpoint));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut r = req.call().map_err(|e| format!("{path}: {e}"))?;
        let body = r
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{path}: {e}"))?;
        match r.status().as_u16() {
            200 => Ok(body),
            401 => Err(format!(
                "{path}: 401, the token is missing or wrong (--token)"
            )),
            s => Err(format!("{path}: {s} {}", body.trim())),
        }
    }

    fn json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, String> {
        let body = self.get(path, query)?;
        serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
    }

    /// The schema's dim names.
    pub fn dims(&self) -> Result<Vec<String>, String> {
        let schema: serde_json::Value = self.json("/v1/schema", &[])?;
        Ok(schema["dims"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect())
    }

    /// A snapshot now; `previous` gives the rate.
    pub fn snapshot(&self, by: &[String], window: &str, previous: Option<&Snapshot>) -> Snapshot {
        let mut s = Snapshot {
            at: Some(Instant::now()),
            ..Snapshot::default()
        };
        match self.get("/metrics", &[]) {
            Ok(text) => s.read_metrics(&parse_metrics(&text), previous),
            Err(e) => s.problems.push(e),
        }
        for dim in by {
            let q = [
                ("by", dim.as_str()),
                ("order", "metric"),
                ("since", window),
                ("limit", "10"),
            ];
            match self.json::<TopResponse>("/v1/top", &q) {
                Ok(top) => s.tops.push((dim.clone(), top)),
                Err(e) => s.problems.push(e),
            }
        }
        let q = [("status_min", "400"), ("since", window), ("limit", "10")];
        match self.json::<EventsResponse>("/v1/events", &q) {
            Ok(page) => s.errors = page.events,
            Err(e) => s.problems.push(e),
        }
        s
    }
}

/// One partition's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partition {
    pub topic: String,
    pub partition: i64,
    pub lag: Option<i64>,
    pub committed: Option<i64>,
    pub durable: Option<i64>,
    pub paused: bool,
    pub stuck: bool,
}

/// Everything one refresh read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub at: Option<Instant>,
    /// `keplor_events_appended_total`.
    pub appended: f64,
    /// Events per second since the previous snapshot.
    pub rate: Option<f64>,
    pub stored: Option<f64>,
    pub segments: Option<f64>,
    pub rejected: f64,
    pub partitions: Vec<Partition>,
    /// The largest values of each dim by metric (cost) over the window.
    pub tops: Vec<(String, TopResponse)>,
    /// The newest events with a status of 400 or more in the window.
    pub errors: Vec<EventJson>,
    /// What could not be read.
    pub problems: Vec<String>,
}

impl Snapshot {
    fn read_metrics(&mut self, samples: &[Sample], previous: Option<&Snapshot>) {
        let sum = |name: &str| {
            samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.value)
                .sum::<f64>()
        };
        let one = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
        self.appended = sum("keplor_events_appended_total");
        self.stored = one("keplor_engine_events");
        self.segments = one("keplor_engine_segments");
        self.rejected = sum("keplor_messages_rejected_total");
        self.rate = previous.and_then(|p| {
            let secs = self.at?.duration_since(p.at?).as_secs_f64();
            (secs > 0.0).then(|| ((self.appended - p.appended) / secs).max(0.0))
        });
        self.partitions = partitions(samples);
    }
}

/// The partition gauges, one row per (topic, partition), sorted.
fn partitions(samples: &[Sample]) -> Vec<Partition> {
    let mut rows: Vec<Partition> = Vec::new();
    for s in samples {
        let field = s.name.strip_prefix("keplor_partition_");
        let (Some(field), Some(topic), Some(p)) = (field, s.label("topic"), s.label("partition"))
        else {
            continue;
        };
        let Ok(partition) = p.parse::<i64>() else {
            continue;
        };
        let at = match rows
            .iter()
            .position(|r| r.topic == topic && r.partition == partition)
        {
            Some(i) => i,
            None => {
                rows.push(Partition {
                    topic: topic.to_string(),
                    partition,
                    ..Partition::default()
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[at];
        let v = s.value as i64;
        match field {
            "consumer_lag" => row.lag = Some(v),
            "committed_offset" => row.committed = Some(v),
            "durable_offset" => row.durable = Some(v),
            "paused" => row.paused = v != 0,
            "stuck" => row.stuck = v != 0,
            _ => {}
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    rows
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text exposition (comments and malformed lines skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""` → pairs, unescaped.
fn parse_labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_string(), value));
        text = &rest[end + 1..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP keplor_events_appended_total Events appended.
# TYPE keplor_events_appended_total counter
keplor_events_appended_total 1500
keplor_engine_events 9000
keplor_engine_segments 3
keplor_messages_rejected_total{reason="json"} 4
keplor_messages_rejected_total{reason="mapping \"ts\""} 1
keplor_partition_consumer_lag{topic="llm-calls",partition="1"} 12
keplor_partition_committed_offset{topic="llm-calls",partition="1"} 2250
keplor_partition_durable_offset{topic="llm-calls",partition="1"} 2249
keplor_partition_paused{topic="llm-calls",partition="1"} 1
keplor_partition_stuck{topic="llm-calls",partition="0"} 0
keplor_partition_consumer_lag{topic="llm-calls",partition="0"} 0
"#;

    #[test]
    fn metrics_become_figures_partitions_and_a_rate() {
        let samples = parse_metrics(METRICS);
        assert_eq!(samples.len(), 11);
        assert_eq!(
            samples[4].labels,
            vec![("reason".to_string(), "mapping \"ts\"".to_string())]
        );
        let t0 = Instant::now();
        let first = Snapshot {
            at: Some(t0),
            appended: 500.0,
            ..Snapshot::default()
        };
        let mut s = Snapshot {
            at: Some(t0 + Duration::from_secs(2)),
            ..Snapshot::default()
        };
        s.read_metrics(&samples, Some(&first));
        assert_eq!(s.rate, Some(500.0));
        assert_eq!(
            (s.stored, s.segments, s.rejected),
            (Some(9000.0), Some(3.0), 5.0)
        );
        assert_eq!(s.partitions.len(), 2);
        assert_eq!(s.partitions[0].partition, 0);
        let p1 = &s.partitions[1];
        assert_eq!(
            (p1.lag, p1.committed, p1.durable, p1.paused, p1.stuck),
            (Some(12), Some(2250), Some(2249), true, false)
        );
        // No previous snapshot: no rate yet.
        let mut alone = Snapshot {
            at: Some(t0),
            ..Snapshot::default()
        };
        alone.read_metrics(&samples, None);
        assert_eq!(alone.rate, None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "ok 1\nno_value\nbad{a=\"x\" 1\nnan_value x\nlabels{a=\"1\",b=\"2\"} 3\n";
        let samples = parse_metrics(text);
        let names: Vec<_> = samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ok", "labels"]);
        assert_eq!(samples[1].labels.len(), 2);
    }
}
