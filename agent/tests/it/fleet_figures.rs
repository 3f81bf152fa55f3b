//! Fleet test figures: expected vs got per figure, with the partition offsets of every id
//! missing or stored twice; and paging `recent` with cursors over a fan-out.

use std::collections::HashMap;

use crate::tansu::query;

/// Every id that paging `recent` (1,000 per page, with cursors) returns over `eps`.
pub fn page_ids(eps: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = vec!["recent", "-n", "1000"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = query(eps, &args);
        for e in page["events"].as_array().unwrap() {
            ids.push(e["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

/// Figures compared: expected vs got, every mismatch listed at the end.
#[derive(Default)]
pub struct Check {
    rows: Vec<(String, String, String, bool)>,
    /// Where the differences are (partition offsets), printed after the figures.
    notes: Vec<String>,
}

/// `(partition, offset)`s as `p3 @ 560..=575 (16)` runs, per partition.
fn ranges(mut places: Vec<(i32, i64)>) -> String {
    places.sort_unstable();
    let mut runs: Vec<(i32, i64, i64)> = Vec::new();
    for (p, o) in places {
        match runs.last_mut() {
            Some(r) if r.0 == p && r.2 + 1 >= o => r.2 = o,
            _ => runs.push((p, o, o)),
        }
    }
    let n = runs.len();
    let mut out: Vec<String> = runs
        .into_iter()
        .take(40)
        .map(|(p, a, b)| format!("p{p} @ {a}..={b} ({})", b - a + 1))
        .collect();
    if n > 40 {
        out.push(format!("... {} more runs", n - 40));
    }
    out.join(", ")
}

impl Check {
    pub fn eq<T: PartialEq + std::fmt::Debug>(&mut self, name: impl Into<String>, want: T, got: T) {
        let ok = want == got;
        self.rows
            .push((name.into(), format!("{want:?}"), format!("{got:?}"), ok));
    }

    /// `got` holds every expected id exactly once and nothing else.
    pub fn ids(
        &mut self,
        what: &str,
        expected: &HashMap<String, u64>,
        got: &[String],
        locate: &dyn Fn(&str) -> Option<(i32, i64)>,
    ) {
        let mut seen = expected.clone();
        let mut unknown = 0u64;
        for id in got {
            match seen.get_mut(id) {
                Some(n) => *n += 1,
                None => unknown += 1,
            }
        }
        let missing = seen.values().filter(|&&n| n == 0).count();
        let extra: u64 = seen.values().map(|&n| n.saturating_sub(1)).sum();
        self.eq(format!("{what}: ids returned"), expected.len(), got.len());
        self.eq(format!("{what}: ids missing"), 0, missing);
        self.eq(format!("{what}: extra copies of ids"), 0, extra);
        self.eq(format!("{what}: unknown ids"), 0, unknown);
        for (kind, ids) in [
            (
                "missing",
                seen.iter().filter(|e| *e.1 == 0).collect::<Vec<_>>(),
            ),
            (
                "stored more than once",
                seen.iter().filter(|e| *e.1 > 1).collect(),
            ),
        ] {
            if !ids.is_empty() {
                let places: Vec<(i32, i64)> = ids.iter().filter_map(|e| locate(e.0)).collect();
                self.notes
                    .push(format!("{what}: {kind}: {}", ranges(places)));
            }
        }
    }

    pub fn finish(self) {
        let bad: Vec<_> = self.rows.iter().filter(|r| !r.3).collect();
        let line = |r: &(String, String, String, bool)| {
            format!(
                "  {} {:<58} expected {:<28} got {}",
                if r.3 { "ok  " } else { "DIFF" },
                r.0,
                r.1,
                r.2
            )
        };
        let summary: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.0.starts_with("rollup day") || !r.3)
            .map(line)
            .collect();
        let notes: String = self
            .notes
            .iter()
            .map(|n| format!("\n  where: {n}"))
            .collect();
        eprintln!(
            "fleet figures (expected vs got):\n{}{notes}",
            summary.join("\n")
        );
        if !bad.is_empty() {
            let bad: Vec<String> = bad.iter().map(|r| line(r)).collect();
            panic!(
                "{} of {} fleet figures differ (expected vs got):\n{}{notes}",
                bad.len(),
                self.rows.len(),
                bad.join("\n")
            );
        }
    }
}
