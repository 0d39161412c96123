//! The authx server: configuration, the HTTP application, and the server loop.
//!
//! [`start`] runs the real server on a bound listener (port 0 in tests) and returns a handle;
//! the `authx` binary calls [`run`].

pub mod config;
pub mod cookies;
pub mod html;
pub mod metrics;
pub mod serve;
pub mod state;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use authx_core::Clock;
use authx_core::auth::{AuthService, Stores};
use authx_core::events::{EventBus, InProcessBus};
use authx_core::password::PasswordHasher;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

pub use config::{Config, Overrides};
use state::{AppState, Inner};

/// How often expired rows are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Connects the store (applying migrations) and builds the application state.
///
/// # Errors
/// A clear message when the database cannot be opened or its schema is newer than this build.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let backend = authx_store::connect(&config.database_url, &config.store)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                config::redact_url(&config.database_url)
            )
        })?;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::default());
    let hasher = PasswordHasher::new(
        config.hash_params,
        config.hash_concurrency,
        Duration::from_secs(10),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stores = Stores {
        accounts: backend.accounts,
        sessions: backend.sessions,
        throttle: backend.throttle,
    };
    let auth = AuthService::new(stores, Arc::clone(&bus), clock, hasher, config.auth.clone());
    let cookies = cookies::CookieNames::new(config.cookie_secure);
    Ok(AppState::new(Inner {
        auth,
        config,
        cookies,
        metrics: metrics::Metrics::default(),
        health: backend.health,
        bus,
    }))
}

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state, for tests that inspect it.
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// `http://ADDR`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
        for task in &self.background {
            task.abort();
        }
    }
}

/// Starts the server on `listener` with already-built state.
#[must_use]
pub fn start_with_state(state: AppState, listener: TcpListener) -> Running {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| state.config.listen);
    let (tx, rx) = oneshot::channel::<()>();
    let app = web::app(state.clone());
    let join = tokio::spawn(serve::serve(listener, app, async move {
        let _ = rx.await;
    }));
    let background = vec![
        tokio::spawn(purge_loop(state.clone())),
        tokio::spawn(event_loop(state.clone())),
    ];
    Running {
        addr,
        state,
        shutdown: Some(tx),
        join,
        background,
    }
}

/// Builds the state and starts the server on `listener`.
///
/// # Errors
/// As [`build_state`].
pub async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let state = build_state(config, clock).await?;
    Ok(start_with_state(state, listener))
}

/// Runs the server until SIGTERM or Ctrl-C.
///
/// # Errors
/// When the address cannot be bound or the store cannot be opened.
pub async fn run(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = build_state(config, clock).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let running = start_with_state(state, listener);
    tracing::info!(addr = %running.addr, issuer = %running.state.config.issuer, "authx listening");
    serve::shutdown_signal().await;
    tracing::info!("signal received");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

async fn purge_loop(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        match state.auth.purge_expired().await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired records"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
}

/// Applies revocation events from other instances to this instance's cache.
async fn event_loop(state: AppState) {
    let mut rx = state.bus.subscribe();
    loop {
        match rx.recv().await {
            Ok(event) => state.auth.apply_remote_event(&event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "revocation events were missed; dropping the session cache"
                );
                state.auth.clear_cache();
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
