//! The running agent: engine, sink thread and HTTP server, started and stopped together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use keplordb::DynEngine;
use tokio::sync::oneshot;

use crate::archive::{Archiver, Progress};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::ownership::{Held, StoreId};
use crate::sink::{CrashPlan, Sink, Stopped};

/// A started agent.
pub struct Agent {
    pub engine: Arc<DynEngine>,
    pub metrics: Arc<Metrics>,
    /// True once partitions are assigned (the readiness probe).
    pub ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sink: Option<JoinHandle<Stopped>>,
    http: Option<HttpServer>,
    /// The archiver's thread and its stop flag, when `[archive]` is on.
    archive: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// Which segments are archived (what retention waits for).
    pub archived: Arc<Progress>,
    grace: Duration,
}

/// The HTTP server: its address, its shutdown signal and its thread.
type HttpServer = (SocketAddr, oneshot::Sender<()>, JoinHandle<()>);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("http", &self.http_addr())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Opens the engine, starts consuming and (if enabled) serving HTTP.
    pub fn start(config: Config) -> anyhow::Result<Agent> {
        let engine_config = config.engine_config();
        let engine = Arc::new(DynEngine::open(engine_config).with_context(|| {
            format!(
                "opening the data directory {}",
                config.engine.data_dir.display()
            )
        })?);
        let report = engine.recovery_report();
        if !report.discarded.is_empty() || !report.corrupt_segments.is_empty() {
            tracing::warn!(?report, "recovery repaired the data directory");
        }
        Self::start_with(config, engine)
    }

    /// Starts with an already opened engine.
    pub fn start_with(config: Config, engine: Arc<DynEngine>) -> anyhow::Result<Agent> {
        Self::start_with_crash(config, engine, None)
    }

    /// Starts with fault injection (crash tests).
    #[doc(hidden)]
    pub fn start_with_crash(
        config: Config,
        engine: Arc<DynEngine>,
        crash: Option<Arc<CrashPlan>>,
    ) -> anyhow::Result<Agent> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let ready = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let store = StoreId::load_or_create(&config.engine.data_dir)
            .with_context(|| format!("the store id in {}", config.engine.data_dir.display()))?;
        let held = Arc::new(Held::new(&store));
        let archived = Arc::new(Progress::default());
        let archive = if config.archive.enabled {
            let archiver = Archiver::open_local(
                engine.clone(),
                &config.archive,
                &store.0,
                archived.clone(),
                metrics.clone(),
            )?;
            let stop = Arc::new(AtomicBool::new(false));
            let handle = archiver.spawn(config.archive.interval, stop.clone())?;
            Some((stop, handle))
        } else {
            None
        };
        let http = if config.http.enabled {
            let state = AppState::new(
                engine.clone(),
                metrics.clone(),
                ready.clone(),
                config.http.clone(),
                held.clone(),
            );
            Some(start_http(config.http.listen, state)?)
        } else {
            None
        };
        let sink = Sink::new(
            engine.clone(),
            config.clone(),
            metrics.clone(),
            ready.clone(),
            held,
            archived.clone(),
            crash,
        )
        .map_err(anyhow::Error::msg)?;
        let stop2 = stop.clone();
        let sink = std::thread::Builder::new()
            .name("keplor-sink".into())
            .spawn(move || sink.run(&stop2))?;
        Ok(Agent {
            engine,
            metrics,
            ready,
            stop,
            sink: Some(sink),
            http,
            archive,
            archived,
            grace: config.shutdown_grace,
        })
    }

    /// Address of the HTTP API.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _, _)| *a)
    }

    /// True once the sink stopped on its own (a fatal error).
    pub fn finished(&self) -> bool {
        self.sink.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops fetching, flushes, fsyncs, commits, within the grace period.
    pub fn stop(mut self) -> Stopped {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + self.grace;
        let mut outcome = Stopped::Failed(format!(
            "did not stop within the grace period of {:?}",
            self.grace
        ));
        if let Some(h) = self.sink.take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                outcome = h
                    .join()
                    .unwrap_or_else(|_| Stopped::Failed("sink thread panicked".into()));
            }
        }
        if let Some((stop, h)) = self.archive.take() {
            // A pass stops between two segments, never inside one.
            stop.store(true, Ordering::Release);
            let _ = h.join();
        }
        if let Some((_, tx, h)) = self.http.take() {
            let _ = tx.send(());
            let _ = h.join();
        }
        outcome
    }
}

/// Binds the HTTP API to `listen` and serves `state` on a thread of its own.
fn start_http(listen: SocketAddr, state: AppState) -> anyhow::Result<HttpServer> {
    let std_listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("binding the HTTP API to {listen}"))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("keplor-http".into())
        .spawn(move || serve_http(std_listener, state, rx))?;
    tracing::info!(%addr, "HTTP API listening");
    Ok((addr, tx, handle))
}

/// The HTTP thread: a two-worker tokio runtime serving until `shutdown` fires (or its sender
/// is dropped).
fn serve_http(
    std_listener: std::net::TcpListener,
    state: AppState,
    shutdown: oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the HTTP runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve HTTP");
                return;
            }
        };
        if let Err(e) = http::serve(listener, state, async move {
            let _ = shutdown.await;
        })
        .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some((stop, _)) = &self.archive {
            stop.store(true, Ordering::Release);
        }
        if let Some((_, tx, _)) = self.http.take() {
            let _ = tx.send(());
        }
    }
}
