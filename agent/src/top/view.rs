//! Drawing a [`Snapshot`]: a header line of figures, the partitions, a top table per dim,
//! the recent errors, and what could not be read.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

use super::snapshot::{Snapshot, ROWS};

/// What the header says besides the figures.
#[derive(Debug, Clone)]
pub struct Meta {
    pub endpoint: String,
    pub window: String,
    /// Wall-clock time of the snapshot, `HH:MM:SS` UTC.
    pub clock: String,
}

/// Draws `s` over the whole frame.
pub fn draw(frame: &mut Frame, s: &Snapshot, meta: &Meta) {
    let [title, figures, middle, errors, problems] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(ROWS as u16 + 3),
        Constraint::Min(5),
        Constraint::Length(problem_lines(s)),
    ])
    .areas(frame.area());
    frame.render_widget(title_line(meta), title);
    frame.render_widget(figure_line(s), figures);
    let columns = Layout::horizontal(
        std::iter::once(Constraint::Percentage(34)).chain(
            s.tops
                .iter()
                .map(|_| Constraint::Percentage(66 / s.tops.len().max(1) as u16)),
        ),
    )
    .split(middle);
    frame.render_widget(partitions_table(s), columns[0]);
    for i in 0..s.tops.len() {
        frame.render_widget(top_table(s, i, &meta.window), columns[i + 1]);
    }
    frame.render_widget(errors_table(s, &meta.window), errors);
    if !s.problems.is_empty() {
        let lines: Vec<Line> = s
            .problems
            .iter()
            .map(|p| Line::from(Span::styled(format!("! {p}"), Style::new().red())))
            .collect();
        frame.render_widget(Paragraph::new(lines), problems);
    }
}

fn problem_lines(s: &Snapshot) -> u16 {
    s.problems.len().min(4) as u16
}

fn title_line(meta: &Meta) -> Paragraph<'static> {
    Paragraph::new(Line::from(vec![
        Span::styled(
            "keplor-agent top",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {}  window {}  {} UTC  ",
            meta.endpoint, meta.window, meta.clock
        )),
        Span::styled("q quits", Style::new().dim()),
    ]))
}

fn figure_line(s: &Snapshot) -> Paragraph<'static> {
    let rate = s
        .rate
        .map_or_else(|| "…".to_string(), |r| int(r.round() as i64));
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| int(v as i64));
    let figure = |label: &str, value: String| {
        vec![
            Span::styled(format!("{label} "), Style::new().dim()),
            Span::styled(value, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw("   "),
        ]
    };
    let mut spans = figure("rate", format!("{rate} events/s"));
    spans.extend(figure("stored", opt(s.stored)));
    spans.extend(figure("segments", opt(s.segments)));
    spans.extend(figure("rejected", int(s.rejected as i64)));
    Paragraph::new(Line::from(spans))
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

fn partitions_table(s: &Snapshot) -> Table<'static> {
    let opt = |v: Option<i64>| v.map_or_else(|| "–".to_string(), int);
    let rows = s.partitions.iter().map(|p| {
        let state = if p.stuck {
            "stuck"
        } else if p.paused {
            "paused"
        } else {
            "ok"
        };
        Row::new(vec![
            format!("{}/{}", p.topic, p.partition),
            opt(p.lag),
            opt(p.committed),
            opt(p.durable),
            state.to_string(),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(6),
        ],
    )
    .header(header(&[
        "partition",
        "lag",
        "committed",
        "durable",
        "state",
    ]))
    .block(Block::bordered().title(" Partitions "))
}

fn top_table(s: &Snapshot, i: usize, window: &str) -> Table<'static> {
    let (dim, top) = &s.tops[i];
    let rows = top.groups.iter().take(ROWS).map(|g| {
        Row::new(vec![
            g.values.get(dim).cloned().unwrap_or_default(),
            int(g.aggregate.metric),
            int(g.aggregate.event_count as i64),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ],
    )
    .header(header(&["value", "cost", "events"]))
    .block(Block::bordered().title(format!(" Top {dim} by cost, last {window} ")))
}

fn errors_table(s: &Snapshot, window: &str) -> Table<'static> {
    let rows = s.errors.iter().take(ROWS).map(|e| {
        let dims = e
            .dims
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        Row::new(vec![
            clock_of(e.ts_ns),
            e.status.to_string(),
            e.id.clone(),
            dims,
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Fill(3),
        ],
    )
    .header(header(&["time UTC", "status", "id", "dims"]))
    .block(Block::bordered().title(format!(" Recent errors (status >= 400), last {window} ")))
}

/// `HH:MM:SS.mmm` of a time in ns since the epoch (UTC).
pub fn clock_of(ts_ns: i64) -> String {
    let ms = ts_ns.div_euclid(1_000_000);
    let day_ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// An integer with thousands separators.
pub fn int(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use ratatui::backend::TestBackend;
    use ratatui::layout::Rect;
    use ratatui::Terminal;

    use super::super::snapshot::Partition;
    use super::*;
    use crate::api::{AggregateResponse, EventJson, GroupJson, TopResponse};

    /// The text of every line of `area` in a test backend's buffer.
    fn lines_of(buffer: &ratatui::buffer::Buffer, area: Rect) -> Vec<String> {
        (area.top()..area.bottom())
            .map(|y| {
                (area.left()..area.right())
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn group(dim: &str, value: &str, metric: i64, count: u64) -> GroupJson {
        GroupJson {
            values: BTreeMap::from([(dim.to_string(), value.to_string())]),
            aggregate: AggregateResponse {
                event_count: count,
                metric,
                ..AggregateResponse::default()
            },
        }
    }

    fn snapshot() -> Snapshot {
        let top = |dim: &str, values: &[(&str, i64, u64)]| TopResponse {
            by: vec![dim.to_string()],
            order: "metric".into(),
            groups: values
                .iter()
                .map(|(v, m, c)| group(dim, v, *m, *c))
                .collect(),
            others: None,
            total_groups: values.len(),
            exact: true,
        };
        Snapshot {
            at: Some(Instant::now()),
            appended: 9000.0,
            rate: Some(1234.4),
            stored: Some(8_999_000.0),
            segments: Some(35.0),
            rejected: 3.0,
            partitions: vec![Partition {
                topic: "llm-calls".into(),
                partition: 2,
                lag: Some(17),
                committed: Some(2250),
                durable: Some(2249),
                paused: true,
                stuck: false,
            }],
            tops: vec![
                (
                    "user".into(),
                    top(
                        "user",
                        &[("user-052", 310_675, 64), ("user-097", 260_735, 61)],
                    ),
                ),
                (
                    "model".into(),
                    top("model", &[("gpt-4o", 13_048_685, 1768)]),
                ),
            ],
            errors: vec![EventJson {
                id: "req-7".into(),
                ts_ns: 1_764_210_896_123_000_000,
                metric: 0,
                latency_ms: 0,
                latency_detail_ms: 0,
                status: 503,
                flags: 0,
                dims: BTreeMap::from([("model".to_string(), "gpt-4o".to_string())]),
                counters: BTreeMap::new(),
                labels: BTreeMap::new(),
            }],
            problems: vec!["/v1/series: 503 busy".into()],
        }
    }

    #[test]
    fn a_snapshot_is_drawn_with_every_figure_and_table() {
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        let meta = Meta {
            endpoint: "http://127.0.0.1:8686".into(),
            window: "5m".into(),
            clock: "02:34:56".into(),
        };
        terminal.draw(|f| draw(f, &snapshot(), &meta)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let text = lines_of(&buffer, buffer.area).join("\n");
        for want in [
            "keplor-agent top",
            "http://127.0.0.1:8686",
            "q quits",
            "rate 1,234 events/s",
            "stored 8,999,000",
            "segments 35",
            "rejected 3",
            "llm-calls/2",
            "paused",
            " Top user by cost, last 5m ",
            "user-052",
            "310,675",
            " Top model by cost, last 5m ",
            "13,048,685",
            "Recent errors (status >= 400), last 5m",
            "02:34:56.123",
            "req-7",
            "model=gpt-4o",
            "! /v1/series: 503 busy",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        // The larger cost first, as the API ranked them.
        assert!(text.find("user-052").unwrap() < text.find("user-097").unwrap());
    }

    #[test]
    fn numbers_and_times_read_as_people_write_them() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(-1_234_567), "-1,234,567");
        assert_eq!(int(i64::MIN), "-9,223,372,036,854,775,808");
        assert_eq!(clock_of(0), "00:00:00.000");
        assert_eq!(clock_of(-1_000_000), "23:59:59.999");
    }
}
