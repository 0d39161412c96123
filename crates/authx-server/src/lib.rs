//! The authx server: configuration, the HTTP application, and the server loop.
//!
//! [`start`] runs the real server on a bound listener (port 0 in tests) and returns a handle;
//! the `authx` binary calls [`run`].

pub mod cli_login;
pub mod client_keys;
pub mod config;
pub mod cookies;
pub mod html;
mod kek;
pub mod mail;
pub mod metrics;
pub mod provider;
pub mod saml_sp;
pub mod serve;
pub mod state;
pub mod upstream;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use authx_core::Clock;
use authx_core::auth::{AuthPolicy, AuthService, Stores};
use authx_core::events::{DurableBus, EventBus, InProcessBus};
use authx_core::oauth::store::ClientStore;
use authx_core::oauth::types::OAuthStores;
use authx_core::password::PasswordHasher;
use authx_core::ratelimit::{LocalCounter, RateCounter, RateLimiter, StoreCounter};
use authx_core::store::{Health, ThrottleStore};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

pub use config::{Config, Overrides};
use state::{AppState, Inner};

/// The shortest time a revocation event is kept in the durable log; longer when a client's
/// tokens live longer.
const MIN_EVENT_RETENTION_SECS: i64 = 3600;

/// Connects the store (applying migrations) and builds the application state.
///
/// With a `redis_url`, sessions live in Redis and revocation events travel over Redis pub/sub;
/// with a PostgreSQL database and no Redis, events travel over `LISTEN`/`NOTIFY`. Either way
/// several instances share every piece of state, and each request is authenticated against the
/// shared store rather than a per-instance cache (see `docs/scaling-out.md`). A SQLite database
/// means one instance: an in-process bus and a session cache.
///
/// # Errors
/// A clear message when the database or Redis cannot be opened, or the database schema is
/// newer than this build.
pub async fn build_state(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    // IdP metadata named by URL is fetched (and its keys pinned) once, before anything is served.
    saml_sp::fetch_metadata(&mut config.saml).await?;
    let mut backend = open_database(&config).await?;
    let shared = shared_services(&config, &backend).await?;
    // Once the database and Redis answer, the key-encryption key is resolved once (read from,
    // or created in, its file next to a SQLite database): the signing keys, second factors and
    // the SAML key all open with it.
    config.oauth.key_encryption_key = Some(kek::key_encryption_key(&config)?);
    // Where the session store keeps copies of users beside the sessions (Redis), every change
    // to an account drops them before it is reported done.
    backend.accounts =
        authx_store::copying_accounts(Arc::clone(&backend.accounts), Arc::clone(&shared.sessions));
    let hasher = PasswordHasher::new(
        config.hash_params,
        config.hash_concurrency,
        Duration::from_secs(10),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = account_policy(&config, &backend, &shared);
    // Every revocation is written to the durable log before it travels, so a resource server's
    // guard that was away replays it from the revocation feed.
    let mut durable = DurableBus::new(
        Arc::clone(&backend.revocations),
        Arc::clone(&shared.bus),
        Arc::clone(&clock),
        MIN_EVENT_RETENTION_SECS,
    );
    // With Redis, every revocation also raises the generation every instance shares, which
    // their caches of tokens and clients check on every use.
    if let Some(counters) = &shared.counters {
        durable = durable.with_shared_generation(counters.clone());
    }
    let revocations = Arc::new(durable);
    let bus: Arc<dyn EventBus> = revocations.clone();
    let reads = ReadPaths::new(&backend, &shared, &revocations);
    let limiter = Arc::new(rate_limiter(&reads, &shared, &clock));
    // One recorder for every audit event: a log line on `authx::audit` and a row in the store.
    let audit = authx_core::audit::Audit::new(Arc::clone(&backend.audit), Arc::clone(&clock));
    let saml_keys =
        saml_sp::sp_keys(&config, backend.sp_keys.as_ref(), clock.as_ref(), &audit).await?;
    let oauth = provider::build(
        &config,
        reads.oauth_stores(&backend, &shared),
        Arc::clone(&bus),
        Arc::clone(&clock),
        audit.clone(),
        // Tokens found active are kept only where every revocation is heard of at once: in a
        // single instance, or where instances share a generation in Redis.
        (!shared.multi_instance || shared.counters.is_some()).then(|| revocations.generations()),
    )
    .await?;
    // One instance needs no durable write per assertion or DPoP proof to see a replay. Several
    // mark them in the database, which does not forget them (not in Redis with the counters).
    let oauth = if shared.multi_instance {
        oauth.with_marks(authx_core::replay::SingleUse::new(Arc::clone(
            &backend.throttle,
        )))
    } else {
        oauth.with_local_marks()
    };
    revocations.set_retention_secs(
        oauth
            .max_token_lifetime()
            .await
            .context("cannot read the registered clients")?
            .max(MIN_EVENT_RETENTION_SECS),
    );
    let (observer, backchannel_rx) = provider::backchannel();
    oauth.set_observer(observer.clone());
    let mail = Arc::new(mail::MailService::new(
        config.email.clone(),
        &config.issuer,
        Arc::clone(&backend.outbox),
        Arc::clone(&clock),
    )?);
    // Names the per-address mail counters; derived from the key-encryption key, which every
    // instance shares, so all of them count an address under the same name.
    let address_key = provider::address_counter_key(&config)?;
    let factors = provider::factors(
        &config,
        Arc::clone(&backend.factors),
        Arc::clone(&clock),
        audit.clone(),
    )?;
    let auth = AuthService::new(
        reads.stores(&backend, &shared),
        Arc::clone(&bus),
        clock,
        hasher,
        policy,
    )
    .with_grants(Arc::clone(&backend.grants))
    .with_device_grants(Arc::clone(&backend.devices))
    .with_grant_observer(observer)
    .with_recovery(authx_core::auth::Recovery {
        links: Arc::clone(&backend.links),
        mailer: Arc::clone(&mail) as Arc<dyn authx_core::mail::Mailer>,
        per_address: Some(authx_core::auth::AddressLimit {
            key: address_key,
            limiter: Arc::clone(&limiter),
            limit: config.rate_limits.password_reset_per_address,
        }),
    })
    .with_second_factors(authx_core::auth::SecondFactors {
        factors: Arc::new(factors),
        links: Arc::clone(&backend.links),
        required_for: config.mfa_required_for,
    })
    .with_audit(audit);
    let auth = match config.verification {
        Some(v) => auth.with_verification(authx_core::auth::Verification {
            links: Arc::clone(&backend.links),
            mailer: Arc::clone(&mail) as Arc<dyn authx_core::mail::Mailer>,
            per_address: Some(authx_core::auth::AddressLimit {
                key: address_key,
                limiter: Arc::clone(&limiter),
                limit: config.rate_limits.password_reset_per_address,
            }),
            require_verified_email: v.require_verified_email,
        }),
        None => auth,
    };
    Ok(AppState::new(Inner {
        mail,
        upstreams: upstream::Upstreams::new(&config.federation),
        federation: Arc::clone(&backend.federation),
        saml_marks: authx_core::replay::SingleUse::new(Arc::clone(&backend.throttle)),
        // The marks' table, where the counters purged with the sessions are kept elsewhere.
        marks_table: shared
            .counters
            .is_some()
            .then(|| Arc::clone(&backend.throttle)),
        saml_keys,
        factors: Arc::clone(&backend.factors),
        registrations: Arc::clone(&backend.registrations),
        auth,
        oauth,
        cookies: cookies::CookieNames::new(config.cookie_secure),
        config,
        metrics: metrics::Metrics::default(),
        health: shared.health,
        bus,
        limiter,
        audit_store: Arc::clone(&backend.audit),
        backchannel: std::sync::Mutex::new(Some(backchannel_rx)),
        revocations,
        closing: tokio::sync::watch::Sender::new(false),
    }))
}

/// The account service's rules, with no per-instance session cache when several instances
/// share the store; logs where storage lives.
fn account_policy(
    config: &Config,
    backend: &authx_store::Backend,
    shared: &SharedServices,
) -> AuthPolicy {
    let mut policy = config.auth.clone();
    if shared.multi_instance {
        // Another instance may revoke a session at any moment, and an event about it can
        // arrive after the client's next request. Only the shared store knows for certain, so
        // no request is answered from a per-instance copy.
        policy.cache_capacity = 0;
    }
    tracing::info!(
        database = backend.kind.as_str(),
        sessions = shared.sessions_in,
        events = shared.events_over,
        session_cache = policy.cache_capacity > 0,
        "storage ready"
    );
    policy
}

/// Opens the database, applying its migrations.
async fn open_database(config: &Config) -> anyhow::Result<authx_store::Backend> {
    authx_store::connect(&config.database_url, &config.store)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                config::redact_url(&config.database_url)
            )
        })
}

/// Where clients and failure counters are read. A single instance is the only writer of its
/// database: they are read from memory (authx_core::cache). Several instances with Redis keep
/// clients in memory too, checked on every use against the generation they share in Redis, and
/// count failures in Redis; several instances on PostgreSQL alone read the store.
struct ReadPaths {
    clients: Arc<dyn ClientStore>,
    throttle: Arc<dyn ThrottleStore>,
}

impl ReadPaths {
    fn new(
        backend: &authx_store::Backend,
        shared: &SharedServices,
        revocations: &DurableBus,
    ) -> Self {
        if let Some(counters) = &shared.counters {
            let generations = authx_core::generation::Generations::shared(
                Arc::default(),
                counters.clone() as Arc<dyn authx_core::generation::SharedGeneration>,
            );
            return Self {
                clients: Arc::new(
                    authx_core::cache::CachedClients::checked(
                        Arc::clone(&backend.clients),
                        generations,
                    )
                    .with_generation(Arc::clone(revocations.generation())),
                ),
                throttle: counters.clone(),
            };
        }
        if shared.multi_instance {
            return Self {
                clients: Arc::clone(&backend.clients),
                throttle: Arc::clone(&backend.throttle),
            };
        }
        Self {
            clients: Arc::new(
                authx_core::cache::CachedClients::new(Arc::clone(&backend.clients))
                    .with_generation(Arc::clone(revocations.generation())),
            ),
            throttle: Arc::new(authx_core::cache::CachedThrottle::new(Arc::clone(
                &backend.throttle,
            ))),
        }
    }

    /// The account service's stores.
    fn stores(&self, backend: &authx_store::Backend, shared: &SharedServices) -> Stores {
        Stores {
            accounts: Arc::clone(&backend.accounts),
            sessions: Arc::clone(&shared.sessions),
            throttle: Arc::clone(&self.throttle),
        }
    }

    /// The OpenID provider's stores.
    fn oauth_stores(&self, backend: &authx_store::Backend, shared: &SharedServices) -> OAuthStores {
        OAuthStores {
            clients: Arc::clone(&self.clients),
            keys: Arc::clone(&backend.keys),
            grants: Arc::clone(&backend.grants),
            accounts: Arc::clone(&backend.accounts),
            sessions: Arc::clone(&shared.sessions),
            throttle: Arc::clone(&self.throttle),
            devices: Arc::clone(&backend.devices),
            pushed: Arc::clone(&backend.pushed),
        }
    }
}

/// Request rate limits. Several instances count each client's requests together in Redis, or
/// without Redis in the database (one atomic upsert); a single instance counts them in memory,
/// which costs no database write.
fn rate_limiter(reads: &ReadPaths, shared: &SharedServices, clock: &Arc<dyn Clock>) -> RateLimiter {
    let counter: Arc<dyn RateCounter> = if shared.multi_instance {
        Arc::new(StoreCounter(Arc::clone(&reads.throttle)))
    } else {
        Arc::new(LocalCounter::default())
    };
    RateLimiter::new(counter, Arc::clone(clock))
}

/// The PostgreSQL `NOTIFY` channel of revocation events when there is no Redis.
const PG_EVENT_CHANNEL: &str = "authx_events";

/// Where sessions live and how events travel, chosen from the configuration.
struct SharedServices {
    sessions: Arc<dyn authx_core::store::SessionStore>,
    bus: Arc<dyn EventBus>,
    health: Arc<dyn Health>,
    /// The generation and counters several instances share in Redis.
    counters: Option<Arc<authx_store::RedisCounters>>,
    multi_instance: bool,
    sessions_in: &'static str,
    events_over: &'static str,
}

async fn shared_services(
    config: &Config,
    backend: &authx_store::Backend,
) -> anyhow::Result<SharedServices> {
    if let Some(url) = &config.redis_url {
        return over_redis(config, url, backend).await;
    }
    match backend.kind {
        authx_store::BackendKind::Postgres => {
            let bus = authx_store::postgres_event_bus(&config.database_url, PG_EVENT_CHANNEL)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen for events on database {}",
                        config::redact_url(&config.database_url)
                    )
                })?;
            Ok(SharedServices::in_database(backend, bus, true, "postgres"))
        }
        authx_store::BackendKind::Sqlite => Ok(SharedServices {
            events_over: "in-process",
            ..SharedServices::in_database(
                backend,
                Arc::new(InProcessBus::default()),
                false,
                "sqlite",
            )
        }),
    }
}

/// Sessions in Redis and events over Redis pub/sub; ready only while Redis answers too.
async fn over_redis(
    config: &Config,
    url: &str,
    backend: &authx_store::Backend,
) -> anyhow::Result<SharedServices> {
    let redis_context = || format!("cannot use Redis at {}", config::redact_url(url));
    let sessions = authx_store::redis_sessions(url, &config.redis_key_prefix)
        .await
        .with_context(redis_context)?;
    let bus = authx_store::redis_event_bus(url, &config.redis_key_prefix)
        .await
        .with_context(redis_context)?;
    let counters = authx_store::redis_counters(
        url,
        &config.redis_key_prefix,
        config
            .auth
            .throttle
            .reset_after_secs
            .max(authx_core::replay::MARK_KEEP_SECS),
    )
    .await
    .with_context(redis_context)?;
    let redis_health: Arc<dyn Health> = bus.clone();
    Ok(SharedServices {
        sessions,
        bus,
        counters: Some(counters),
        health: authx_store::all_healthy(vec![Arc::clone(&backend.health), redis_health]),
        multi_instance: true,
        sessions_in: "redis",
        events_over: "redis",
    })
}

impl SharedServices {
    /// Sessions in the database, events over `bus`, named `name` in the start-up log.
    fn in_database(
        backend: &authx_store::Backend,
        bus: Arc<dyn EventBus>,
        multi_instance: bool,
        name: &'static str,
    ) -> Self {
        Self {
            sessions: Arc::clone(&backend.sessions),
            bus,
            health: Arc::clone(&backend.health),
            counters: None,
            multi_instance,
            sessions_in: name,
            events_over: name,
        }
    }
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

    /// Stops at once, as a crash would: no request finishes, nothing queued is flushed, no
    /// background task runs another step. For tests of what survives a crash.
    /// Returns once every task is gone (the listening socket closed).
    pub async fn abort(self) {
        self.join.abort();
        for task in &self.background {
            task.abort();
        }
        let _ = self.join.await;
        for task in self.background {
            let _ = task.await;
        }
    }

    /// Stops accepting, lets in-flight requests finish, and returns when the server is down.
    pub async fn stop(mut self) {
        self.state.closing.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
        // Whatever was recorded is stored before the process goes.
        self.state.auth.audit().flush().await;
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
    let mut background = vec![
        tokio::spawn(event_loop(state.clone())),
        tokio::spawn(provider::maintenance_loop(state.clone())),
        tokio::spawn(mail_sender(state.clone())),
    ];
    let rx = state.backchannel.lock().ok().and_then(|mut g| g.take());
    if let Some(rx) = rx {
        background.push(tokio::spawn(provider::backchannel_loop(state.clone(), rx)));
    }
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
    if state.config.email.transport == mail::settings::TransportSettings::Log {
        tracing::warn!(
            "email.transport is \"log\": mail is printed in this log, not sent (for development; \
             configure [email] to send it)"
        );
    }
    let running = start_with_state(state, listener);
    tracing::info!(addr = %running.addr, issuer = %running.state.config.issuer, "authx listening");
    serve::shutdown_signal().await;
    tracing::info!("signal received");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Rows deleted by one [`purge_expired`] pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired sessions and idle throttle and rate-limit counters.
    pub sessions_and_counters: u64,
    /// Expired authorization codes, refresh-token families and tokens, revoked token ids and
    /// device grants.
    pub grants: u64,
    /// Audit events older than the retention.
    pub audit_events: u64,
    /// Revocation events whose tokens have all expired.
    pub revocation_events: u64,
    /// Expired federation transactions and pending links.
    pub federation: u64,
    /// Sent and failed mails past their retention.
    pub mail: u64,
    /// Expired single-use link tokens.
    pub link_tokens: u64,
    /// Second-factor enrolments that lapsed unconfirmed.
    pub mfa_enrolments: u64,
    /// Initial access tokens (dynamic client registration) expired or used up.
    pub registration_tokens: u64,
    /// Single-use marks past their keep, where they are not purged with the counters.
    pub marks: u64,
}

impl Purged {
    /// All rows deleted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.sessions_and_counters
            + self.grants
            + self.audit_events
            + self.revocation_events
            + self.federation
            + self.mail
            + self.link_tokens
            + self.mfa_enrolments
            + self.registration_tokens
            + self.marks
    }
}

/// Deletes every row whose life is over, so each table stays bounded by its lifetimes (the
/// maintenance loop runs it every ten minutes): expired sessions, idle counters, expired codes,
/// families, tokens, device grants and revoked token ids, revocation events whose tokens have
/// expired, expired federation transactions and link tokens, lapsed second-factor enrolments,
/// expired or used-up initial access tokens of client registration, sent
/// and failed mails after a week, and audit events older than
/// `audit.retention_days`. Each part runs even when another fails.
///
/// # Errors
/// The first failure, after every part has been tried.
pub async fn purge_expired(state: &AppState) -> anyhow::Result<Purged> {
    let mut tally = Tally::default();
    let cutoff = state
        .auth
        .clock()
        .now()
        .plus(-state.config.audit_retention_secs);
    let purged = Purged {
        sessions_and_counters: tally
            .rows("sessions and counters", state.auth.purge_expired().await),
        grants: tally.rows("grants", state.oauth.purge().await),
        federation: tally.rows(
            "federation records",
            state
                .federation
                .purge_federation(state.auth.clock().now())
                .await,
        ),
        audit_events: tally.rows("audit events", state.audit_store.purge_audit(cutoff).await),
        mail: tally.rows(
            "mail",
            state
                .mail
                .outbox()
                .store()
                .purge_mail(state.auth.clock().now().plus(-mail::RETENTION_SECS))
                .await,
        ),
        link_tokens: tally.rows("link tokens", state.auth.purge_link_tokens().await),
        mfa_enrolments: tally.rows(
            "lapsed second-factor enrolments",
            state
                .factors
                .purge_pending_factors(state.auth.clock().now())
                .await,
        ),
        registration_tokens: tally.rows(
            "expired or used-up registration tokens",
            state
                .registrations
                .purge_initial_tokens(state.auth.clock().now())
                .await,
        ),
        marks: match &state.marks_table {
            Some(table) => tally.rows(
                "single-use marks",
                table
                    .purge_failures(
                        state
                            .auth
                            .clock()
                            .now()
                            .plus(-authx_core::replay::MARK_KEEP_SECS),
                    )
                    .await,
            ),
            None => 0,
        },
        revocation_events: tally.rows(
            "revocation events",
            state
                .revocations
                .log()
                .purge_events(state.auth.clock().now())
                .await,
        ),
    };
    match tally.first_error {
        Some(e) => Err(e),
        None => Ok(purged),
    }
}

/// The first failure among the parts of a purge.
#[derive(Default)]
struct Tally {
    first_error: Option<anyhow::Error>,
}

impl Tally {
    /// The rows one part deleted: none if it failed, and its failure kept if it is the first.
    fn rows<E: std::fmt::Display>(&mut self, part: &str, deleted: Result<u64, E>) -> u64 {
        deleted.unwrap_or_else(|e| {
            self.first_error
                .get_or_insert(anyhow::anyhow!("{part}: {e}"));
            0
        })
    }
}

/// Delivers queued mail until the server stops.
async fn mail_sender(state: AppState) {
    state
        .mail
        .run_sender(
            state.auth.audit(),
            &state.metrics,
            state.closing.subscribe(),
        )
        .await;
}

/// Applies revocation events from other instances to this instance's cache.
async fn event_loop(state: AppState) {
    let mut rx = state.bus.subscribe();
    loop {
        match rx.recv().await {
            Ok(event) => {
                state.revocations.generation().bump();
                state.auth.apply_remote_event(&event);
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                state.revocations.generation().bump();
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
