//! `keplor-agent export`: the events of a stopped agent's data directory (or of any keplordb
//! data directory) as Parquet in Hive partitions, for DuckDB, Spark and Trino
//! (`engine/FORMAT.md`, "Parquet export"; `docs/parquet.md`).
//!
//! The store is opened read-only (nothing is written to it, not even recovery), so a running
//! agent's directory can be exported too, as of the moment it is opened; the filters are those
//! of `keplor-agent query`. On a terminal a progress bar counts
//! the events against the filter's total.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use keplordb::export::ParquetOptions;
use keplordb::DynEngine;

use crate::query::{filter_params, Filters};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The data directory of a stopped agent (its `engine.data_dir`).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write `dt=YYYY-MM-DD/events-<newest>-<oldest>.parquet` files.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    filters: Filters,
    /// The most rows of a row group (a row group also ends at each UTC hour).
    #[arg(long, default_value_t = 128 * 1024)]
    row_group_rows: usize,
    /// The zstd level of every column (1-22).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,
    /// No progress bar, even on a terminal.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs the export: exit 0, 1 when the store or the files fail, 2 for bad usage.
pub fn main(args: ExportArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("keplor-agent export: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &ExportArgs) -> Result<(), (u8, String)> {
    let engine = DynEngine::open_read_only(&args.data_dir)
        .map_err(|e| (1, format!("{}: {e}", args.data_dir.display())))?;
    let params = filter_params(&args.filters).map_err(|e| (2, e))?;
    let filter = params.to_filter(&engine).map_err(|e| (2, e))?;
    let total = engine
        .aggregate(&filter)
        .map_err(|e| (1, e.to_string()))?
        .event_count;
    let opts = ParquetOptions::default()
        .with_row_group_rows(args.row_group_rows)
        .with_zstd_level(args.zstd_level);
    let started = Instant::now();
    let mut bar = Progress::new(total, !args.quiet && std::io::stderr().is_terminal());
    let stats = engine
        .export_parquet(&filter, &args.out, &opts, |n| bar.show(n))
        .map_err(|e| (1, e.to_string()))?;
    bar.done();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "exported {} events to {} files, {} bytes ({:.1} bytes/event) in {secs:.1} s under {}",
        stats.events,
        stats.files.len(),
        stats.bytes,
        stats.bytes as f64 / stats.events.max(1) as f64,
        args.out.display()
    );
    Ok(())
}

/// A one-line progress bar on stderr, redrawn at most ten times a second.
struct Progress {
    total: u64,
    on: bool,
    drawn_at: Option<Instant>,
}

impl Progress {
    fn new(total: u64, on: bool) -> Progress {
        Progress {
            total,
            on,
            drawn_at: None,
        }
    }

    fn show(&mut self, done: u64) {
        if !self.on
            || self
                .drawn_at
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.drawn_at = Some(Instant::now());
        let _ = write!(std::io::stderr(), "\r{}", bar_line(done, self.total));
    }

    fn done(&mut self) {
        if self.on {
            let _ = writeln!(std::io::stderr(), "\r{}", bar_line(self.total, self.total));
        }
    }
}

/// `[#####-----]  50% 5000/10000 events`, 30 cells wide.
fn bar_line(done: u64, total: u64) -> String {
    const CELLS: u64 = 30;
    let done = done.min(total);
    let filled = (done * CELLS).checked_div(total).unwrap_or(CELLS);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent:>3}% {done}/{total} events",
        "#".repeat(filled as usize),
        "-".repeat((CELLS - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_events() {
        assert_eq!(
            bar_line(0, 10),
            format!("[{}]   0% 0/10 events", "-".repeat(30))
        );
        assert_eq!(
            bar_line(5, 10),
            format!("[{}{}]  50% 5/10 events", "#".repeat(15), "-".repeat(15))
        );
        assert_eq!(
            bar_line(12, 10),
            format!("[{}] 100% 10/10 events", "#".repeat(30))
        );
        assert_eq!(
            bar_line(0, 0),
            format!("[{}] 100% 0/0 events", "#".repeat(30))
        );
    }
}
