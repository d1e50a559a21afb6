//! tracevault-service: the HTTP API (axum on tokio). The server holds the store, its keys and its
//! lock; recorders, auditors, ML pipelines and admins reach it with bearer tokens.
//!
//! # Layout
//! - [`tokens`]: API tokens, stored as hashes, compared in constant time.
//! - `app.rs`: the routes; each says who asks (token and client address) to the core, whose
//!   policy decides and whose audit log records; errors are problem details (`problem.rs`).
//! - `metrics.rs`: `/metrics`; `openapi.rs`: `/v1/openapi.json`; [`tls`]: rustls.
//!
//! docs/SERVICE.md is the guide: deploying, the routes, the role matrix.

#![forbid(unsafe_code)]

mod app;
mod error;
mod metrics;
mod openapi;
mod problem;
pub mod recorder_key;
pub mod tls;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracevault_core::Log;
use tracevault_core::witness::Witness;
use tracevault_replay::{Engine, ReduceConfig};

pub use app::Limits;
pub use error::ServiceError;
pub use problem::Problem;

/// How the service runs.
pub struct Options {
    pub limits: Limits,
    pub reduce: ReduceConfig,
    /// Replay threads (0: one per core).
    pub threads: usize,
    pub sensitive_apps: Vec<String>,
    /// How often a signed checkpoint is written (and pushed to the witnesses) while serving.
    pub checkpoint_every: Duration,
    pub witnesses: Vec<Box<dyn Witness + Send + Sync>>,
    /// Where exports are assembled before they are sent (default: the system's temporary
    /// directory); each in a private directory removed once sent.
    pub export_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            reduce: ReduceConfig::default(),
            threads: 0,
            sensitive_apps: Vec::new(),
            checkpoint_every: Duration::from_secs(60),
            witnesses: Vec::new(),
            export_dir: None,
        }
    }
}

/// The service: a log and what serves it.
pub struct Service {
    state: Arc<app::AppState>,
    checkpoint_every: Duration,
    witnesses: Arc<Vec<Box<dyn Witness + Send + Sync>>>,
}

impl Service {
    /// A service over `log`, whose data directory is `data` (where the tokens file is).
    pub fn new(log: Log, data: &Path, options: Options) -> Result<Service, ServiceError> {
        let engine = Engine::new(options.reduce, options.threads)?;
        let tokens = tokens::Tokens::new(data)?;
        let recorder_key = recorder_key::load_or_create(data)?;
        let export_dir = options.export_dir.unwrap_or_else(std::env::temp_dir);
        let state = app::AppState::new(
            Arc::new(log),
            engine,
            tokens,
            options.limits,
            options.sensitive_apps,
            export_dir,
            recorder_key,
        );
        Ok(Service {
            state: Arc::new(state),
            checkpoint_every: options.checkpoint_every,
            witnesses: Arc::new(options.witnesses),
        })
    }

    /// The routes, for a caller that serves them itself (tests, an embedding server).
    pub fn router(&self) -> axum::Router {
        app::router(self.state.clone())
    }

    /// Serves until `shutdown` completes, then drains: requests in flight are answered (their
    /// batches made durable), and the log is handed back for its signed checkpoint and close.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<tls::Acceptor>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Log, ServiceError> {
        let router = self.router();
        let checkpoints = tokio::spawn(checkpoint_loop(
            self.state.log.clone(),
            self.witnesses.clone(),
            self.checkpoint_every,
        ));
        let served = match tls {
            None => {
                let app = router.into_make_service_with_connect_info::<app::ClientAddr>();
                axum::serve(listener, app).with_graceful_shutdown(shutdown).await
            }
            Some(acceptor) => {
                let app = router.into_make_service_with_connect_info::<app::ClientAddr>();
                axum::serve(tls::Listener::new(listener, acceptor), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        checkpoints.abort();
        let _ = checkpoints.await;
        served.map_err(ServiceError::Serve)?;
        // A request whose client went away may still be finishing its write on a blocking thread.
        let mut state = self.state;
        let log = loop {
            match Arc::try_unwrap(state) {
                Ok(s) => break s.log,
                Err(again) => {
                    state = again;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let mut log = log;
        loop {
            match Arc::try_unwrap(log) {
                Ok(log) => return Ok(log),
                Err(again) => {
                    log = again;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// A signed checkpoint every `every`, each pushed to the witnesses (a refusal logged loudly: it
/// is evidence).
async fn checkpoint_loop(
    log: Arc<Log>,
    witnesses: Arc<Vec<Box<dyn Witness + Send + Sync>>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (log, witnesses) = (log.clone(), witnesses.clone());
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = log.checkpoint() {
                tracing::error!("periodic checkpoint: {e}");
                return;
            }
            push_to_witnesses(&log, &witnesses);
        })
        .await;
        if done.is_err() {
            tracing::error!("the periodic checkpoint panicked");
        }
    }
}

/// Pushes the newest signed head to every witness.
pub fn push_to_witnesses(log: &Log, witnesses: &[Box<dyn Witness + Send + Sync>]) {
    for w in witnesses {
        match log.cosign(w.as_ref()) {
            Ok(c) => tracing::info!(head = c.counter, "cosigned"),
            Err(e) => tracing::error!("a witness did not cosign the newest signed head: {e}"),
        }
    }
}

/// A server running on its own thread and runtime (tests, benchmarks, embedding).
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Log, ServiceError>>>,
}

impl Running {
    /// Stops it gracefully (requests in flight answered) and hands the log back.
    pub fn stop(mut self) -> Result<Log, ServiceError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().expect("joined once").join().map_err(|_| ServiceError::Panicked)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Binds `listen` and serves `service` on a new thread with its own runtime (`workers` threads).
pub fn start(
    service: Service,
    listen: &str,
    tls: Option<tls::Acceptor>,
    workers: usize,
) -> Result<Running, ServiceError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .thread_name("tracevault-http")
        .build()
        .map_err(ServiceError::Runtime)?;
    let listener = runtime
        .block_on(TcpListener::bind(listen))
        .map_err(|source| ServiceError::Listen { addr: listen.to_owned(), source })?;
    let addr =
        listener.local_addr().map_err(|source| ServiceError::Listen { addr: listen.to_owned(), source })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tracevault-serve".into())
        .spawn(move || {
            runtime.block_on(service.serve(listener, tls, async move {
                let _ = stopped.await;
            }))
        })
        .map_err(ServiceError::Runtime)?;
    Ok(Running { addr, stop: Some(stop), thread: Some(thread) })
}
