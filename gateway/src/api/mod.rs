//! The API of `imx serve`: GraphQL over HTTP and WebSocket, health and
//! metrics, authentication and limits. [`serve_api`] runs it until the
//! shutdown future completes.

pub mod apikey;
pub mod auth;
pub mod config;
pub mod error;
mod http;
pub mod jwks;
mod listener;
pub mod metrics;
pub mod schema;
mod step_kinds;
mod tail;
pub mod ui;
pub mod webhook;
mod websocket;
mod ws_limit;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use engine::runtime::Runtime;
use engine::store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{ApiArgs, ApiConfig};

/// Why the API could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the event log head: {0}")]
    Store(#[from] engine::store::Error),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A server bound to its address, not yet serving.
pub struct BoundApi {
    listener: TcpListener,
    router: axum::Router,
    /// `/metrics` on its own listener (`metrics_listen`).
    metrics: Option<(TcpListener, axum::Router)>,
    /// What `/metrics` exports; other parts of the node add their collectors.
    exported: Arc<metrics::Metrics>,
    timeouts: listener::Timeouts,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for BoundApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundApi")
            .field("listener", &self.listener)
            .field(
                "metrics",
                &self.metrics.as_ref().map(|(listener, _)| listener),
            )
            .finish_non_exhaustive()
    }
}

impl BoundApi {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The address of the metrics listener, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok()
    }

    /// Adds `collector` (read at every scrape) to what `/metrics` exports.
    pub fn register_metrics(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), Error> {
        Ok(self.exported.register(collector)?)
    }

    /// Serves until `shutdown` completes, then ends subscriptions and
    /// waits for in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let stop = self.shutdown;
        let mut stopped = stop.subscribe();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down the API");
            let _ = stop.send(true);
        };
        let main = listener::serve(self.listener, self.router, self.timeouts, signal);
        match self.metrics {
            Some((metrics_listener, metrics_router)) => {
                let metrics_stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let metrics = listener::serve(
                    metrics_listener,
                    metrics_router,
                    self.timeouts,
                    metrics_stop,
                );
                tokio::join!(main, metrics);
            }
            None => main.await,
        }
        Ok(())
    }
}

/// Binds the listener and builds everything; serve with [`BoundApi::serve`].
/// Without a `runtime` the API answers reads and refuses commands (UNAVAILABLE).
pub async fn bind_api(
    config: ApiConfig,
    store: Arc<Store>,
    runtime: Option<Arc<Runtime<Store>>>,
) -> Result<BoundApi, Error> {
    if config.insecure_no_auth {
        eprintln!(
            "\x1b[1;31mWARNING: --insecure-no-auth: the API accepts every request as admin, without credentials. Development only.\x1b[0m"
        );
    }
    let metrics = Arc::new(metrics::Metrics::new()?);
    let (shutdown, shutdown_seen) = watch::channel(false);
    let limiter = Arc::new(http::rate_limiter(&config));
    let tail = tail::LogTail::start(
        store.clone(),
        Duration::from_millis(config.limits.subscription_poll_ms),
        shutdown_seen,
        metrics.clone(),
    )
    .await?;
    if let Some(timings) = runtime.as_ref().map(|runtime| runtime.append_timings()) {
        tokio::spawn(observe_appends(timings, metrics.clone(), tail.clone()));
    }
    let hooks = runtime.clone().map(|runtime| webhook::WebhookState {
        runtime,
        limiter: limiter.clone(),
        metrics: metrics.clone(),
        body_timeout: Duration::from_millis(config.limits.request_timeout_ms),
    });
    let context = schema::ApiContext {
        store: store.clone(),
        runtime,
        limits: config.limits.clone(),
        tail: tail.clone(),
        metrics: metrics.clone(),
        subscribers: Arc::default(),
        states: Arc::default(),
    };
    let sessions = Arc::new(ui::session::Sessions::new(store.clone()));
    let ui_state = ui::UiState {
        auth: auth::Authenticator {
            insecure_no_auth: config.insecure_no_auth,
            jwt: config.jwt.clone(),
            store: store.clone(),
        },
        sessions: sessions.clone(),
        insecure_no_auth: config.insecure_no_auth,
    };
    let state = http::AppState {
        schema: schema::build(&config, context, limiter.clone()),
        auth: auth::Authenticator {
            insecure_no_auth: config.insecure_no_auth,
            jwt: config.jwt.clone(),
            store: store.clone(),
        },
        limiter,
        metrics: metrics.clone(),
        store,
        tail,
        graphiql: config.graphiql,
        timeout: Duration::from_millis(config.limits.request_timeout_ms),
        body_bytes_max: config.limits.body_bytes_max,
        websocket_init_timeout: Duration::from_millis(config.limits.websocket_init_timeout_ms),
        sessions,
    };
    let mut router = http::router(&config, state.clone()).merge(ui::router(ui_state));
    // Without a runtime nothing can start a run: no webhook routes.
    if let Some(hooks) = hooks {
        router = router.merge(webhook::router(hooks));
    }
    let listener = bind(config.listen).await?;
    tracing::info!(addr = %config.listen, "API listening");
    let metrics_listener = match config.metrics_listen {
        Some(addr) => {
            let metrics_listener = bind(addr).await?;
            tracing::info!(%addr, "metrics listening");
            Some((metrics_listener, http::metrics_router(state)))
        }
        None => None,
    };
    Ok(BoundApi {
        listener,
        router,
        metrics: metrics_listener,
        exported: metrics,
        timeouts: listener::Timeouts {
            header_read: Duration::from_millis(config.limits.header_read_timeout_ms),
            idle: Duration::from_millis(config.limits.idle_timeout_ms),
        },
        shutdown,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Feeds the runtime's append timings into `imx_append_seconds` and wakes
/// the log tail after each append, until shutdown.
async fn observe_appends(
    mut timings: tokio::sync::broadcast::Receiver<Duration>,
    metrics: Arc<metrics::Metrics>,
    tail: Arc<tail::LogTail>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut shutdown = tail.shutdown();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            timing = timings.recv() => match timing {
                Ok(timing) => {
                    metrics.append_seconds.observe(timing.as_secs_f64());
                    tail.wake();
                }
                // Timings lost while behind are not counted.
                Err(RecvError::Lagged(_)) => tail.wake(),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Runs the API on `config.listen` until `shutdown` completes.
pub async fn serve_api(
    config: ApiConfig,
    store: Arc<Store>,
    runtime: Option<Arc<Runtime<Store>>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    bind_api(config, store, runtime)
        .await?
        .serve(shutdown)
        .await
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Plain log lines on stderr for the other commands (`imx run`, `imx agent`):
/// warnings only unless `IMX_LOG` (or `RUST_LOG`) says otherwise.
pub fn init_text_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// JSON log lines on stderr; `IMX_LOG` (or `RUST_LOG`) filters, default `info`.
pub fn init_json_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
