//! `keplor-agent`: a Kafka sink for keplordb with local query endpoints.
//!
//! Exit codes: 0 success; 1 the agent or a query failed at run time (for `query`: also when no
//! endpoint answered); 2 bad usage or configuration (also a query parameter an agent rejected);
//! 3 `query` answered partially: some endpoints did not answer, the others' merged answer was
//! printed and the missing ones named (`query::EXIT_PARTIAL`; 0 with `--allow-partial`);
//! 4 `query get` found no event with that id on complete answers (`query::EXIT_NOT_FOUND`).

#![forbid(unsafe_code)]

use keplor_agent::{agent, config, demo, export, query, sink, top};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Kafka sink for keplordb: consumes topic partitions into an embedded columnar event store,
/// exactly once, and serves queries over them.
#[derive(Parser, Debug)]
#[command(name = "keplor-agent", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sink with a configuration file (see config/*.toml). Every key can be overridden
    /// from the environment as KEPLOR_<SECTION>__<KEY>. Stops cleanly on SIGTERM/SIGINT:
    /// fetching stops, pending batches are made durable and their offsets committed.
    Run {
        /// The TOML configuration.
        #[arg(long, short, env = "KEPLOR_CONFIG")]
        config: PathBuf,
    },
    /// Run everything on an embedded default: an in-process Kafka (librdkafka's mock cluster),
    /// a synthetic stream of LLM calls produced into it, the real consumer path into a fresh
    /// store, the HTTP API, and live progress with a few query results.
    Demo {
        /// How long to run, e.g. 20s or 2m.
        #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
        duration: Duration,
        /// Messages per second to produce.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8686")]
        listen: std::net::SocketAddr,
        /// Keep the store here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// After producing, keep the API and the console (`/ui`) up until Ctrl-C or SIGTERM.
        #[arg(long)]
        serve: bool,
    },
    /// Query a running agent (or several: results are merged) or a stopped agent's data.
    #[command(after_help = query::EXIT_CODES)]
    Query(query::QueryArgs),
    /// A live terminal view of a running agent: ingest rate, partition lag, the top values of
    /// two dims by cost over a sliding window, recent errors (q quits).
    Top(top::TopArgs),
    /// Write a stopped agent's events as Parquet in Hive partitions (dt=YYYY-MM-DD/), for
    /// DuckDB, Spark and Trino; the filters are those of `query`.
    Export(export::ExportArgs),
    /// Validate a configuration file and print it resolved (with environment overrides).
    CheckConfig {
        /// The TOML configuration.
        config: PathBuf,
        /// Also connect with the real settings: the brokers reached, the topics and partitions
        /// it would consume, whether the group and the DLQ topic exist; a failure is named
        /// (bad certificate, wrong password, unknown topic, missing ACL). Exit 1 on a problem.
        #[arg(long)]
        connect: bool,
        /// How long the connection check waits for the cluster.
        #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
        connect_timeout: Duration,
    },
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    config::units::parse_duration(s)
}

/// Log lines to stderr, filtered by `KEPLOR_LOG` (default `info,rdkafka=warn`): text (ANSI
/// colour only when stderr is a terminal) or one JSON object per line.
fn init_logging(format: config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEPLOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
        config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("KEPLOR_"))
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig {
            config,
            connect,
            connect_timeout,
        } => match Config::load(&config, env_vars()) {
            Ok(c) => {
                println!(
                    "# {} is valid; resolved configuration:\n{}",
                    config.display(),
                    c.to_toml()
                );
                if !connect {
                    return ExitCode::SUCCESS;
                }
                let report = keplor_agent::connect::check(&c, connect_timeout);
                println!("# connection check\n{}", report.render());
                if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let config = match Config::load(&config, env_vars()) {
                Ok(c) => c,
                Err(e) => {
                    // No logger yet: its format is part of the configuration.
                    eprintln!("error: {}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            init_logging(config.log.format);
            run(config)
        }
        Command::Demo {
            duration,
            rate,
            listen,
            data_dir,
            serve,
        } => {
            init_logging(config::LogFormat::Text);
            let serve_until = serve.then(|| {
                let signalled = Arc::new(AtomicBool::new(false));
                install_signal_handlers(signalled.clone());
                signalled
            });
            match demo::run(duration, rate, listen, data_dir, serve_until) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Query(args) => query::main(args),
        Command::Top(args) => top::main(args),
        Command::Export(args) => export::main(args),
    }
}

/// Runs until a signal or a fatal error.
fn run(config: Config) -> ExitCode {
    let agent = match agent::Agent::start(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the agent could not start");
            return ExitCode::from(1);
        }
    };
    let signalled = Arc::new(AtomicBool::new(false));
    install_signal_handlers(signalled.clone());
    while !signalled.load(Ordering::Acquire) && !agent.finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    match agent.stop() {
        sink::Stopped::Clean => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        sink::Stopped::Failed(why) => {
            tracing::error!(error = %why, "stopped on a fatal error");
            ExitCode::from(1)
        }
        sink::Stopped::Crashed => ExitCode::from(1),
    }
}

/// SIGTERM and SIGINT set `flag` (through a small tokio runtime on its own thread).
fn install_signal_handlers(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("signal received: stopping");
            flag.store(true, Ordering::Release);
        });
    });
}
