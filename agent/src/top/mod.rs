//! `keplor-agent top`: a live terminal view of one agent, in the spirit of `htop`. Every
//! `--interval` it reads the agent's API (`snapshot.rs`) and redraws (`view.rs`): the ingest
//! rate, the store, each partition's lag and offsets, the values of two dims with the largest
//! cost over the last `--window`, and the newest errors in it. `q`, Esc or Ctrl-C quits.

mod snapshot;
mod view;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;

use snapshot::{Snapshot, Source};
use view::Meta;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The agent, http://host:port or https://host:port.
    #[arg(long, short = 'e', default_value = "http://127.0.0.1:8686")]
    endpoint: String,
    /// Bearer token for the agent's API.
    #[arg(long, env = "KEPLOR_TOKEN")]
    token: Option<String>,
    /// The sliding window of the top tables and the errors, e.g. 1m, 15m, 1h.
    #[arg(long, default_value = "5m")]
    window: String,
    /// Time between refreshes.
    #[arg(long, default_value = "2s", value_parser = crate::query::positive_duration)]
    interval: Duration,
    /// The dims whose top values are shown, comma-separated (default: the schema's first two).
    #[arg(long, value_delimiter = ',')]
    by: Vec<String>,
    /// Longest wait for each answer.
    #[arg(long, default_value = "5s", value_parser = crate::query::positive_duration)]
    timeout: Duration,
}

/// Runs the view until the user quits; exit code 1 if the agent cannot be asked at all.
pub fn main(args: TopArgs) -> ExitCode {
    let source = Source::new(&args.endpoint, args.token.clone(), args.timeout);
    let by = if args.by.is_empty() {
        match source.dims() {
            Ok(dims) => dims.into_iter().take(2).collect(),
            Err(e) => {
                eprintln!("error: {}: {e}", args.endpoint);
                return ExitCode::from(1);
            }
        }
    } else {
        args.by.clone()
    };
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, &source, &by, &args);
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Refresh, draw, wait for a key or the next refresh; until a quit key.
fn run(
    terminal: &mut DefaultTerminal,
    source: &Source,
    by: &[String],
    args: &TopArgs,
) -> std::io::Result<()> {
    let mut previous: Option<Snapshot> = None;
    loop {
        let snap = source.snapshot(by, &args.window, previous.as_ref());
        let meta = Meta {
            endpoint: source.endpoint.clone(),
            window: args.window.clone(),
            clock: clock_now(),
        };
        terminal.draw(|f| view::draw(f, &snap, &meta))?;
        previous = Some(snap);
        let next = Instant::now() + args.interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press && quits(k.code, k.modifiers) => {
                    return Ok(());
                }
                Event::Resize(..) => {
                    if let Some(s) = &previous {
                        terminal.draw(|f| view::draw(f, s, &meta))?;
                    }
                }
                _ => {}
            }
        }
    }
}

fn quits(code: KeyCode, modifiers: KeyModifiers) -> bool {
    matches!(code, KeyCode::Char('q') | KeyCode::Esc)
        || (code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL))
}

/// `HH:MM:SS` now, UTC.
fn clock_now() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    view::clock_of(ns)[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_esc_and_ctrl_c_quit_and_nothing_else_does() {
        assert!(quits(KeyCode::Char('q'), KeyModifiers::NONE));
        assert!(quits(KeyCode::Esc, KeyModifiers::NONE));
        assert!(quits(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(!quits(KeyCode::Char('c'), KeyModifiers::NONE));
        assert!(!quits(KeyCode::Char('Q'), KeyModifiers::SHIFT));
        assert!(!quits(KeyCode::Enter, KeyModifiers::NONE));
    }
}
