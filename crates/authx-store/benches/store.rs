//! Store-level benchmarks (issue 8): refresh-token rotation on each backend, and the session
//! lookup behind every authenticated request, with the in-process cache hit and missed.
//!
//! `cargo bench -p authx-store --bench store`. SQLite runs in a temporary file with
//! `synchronous=FULL` (durable commits, as served). PostgreSQL runs when
//! `AUTHX_TEST_POSTGRES_URL` is set, in a schema of its own that is dropped afterwards.
//!
//! Rotation is measured two ways: one caller rotating its grant over and over (the latency of
//! one rotation, a commit each), and 16 callers each rotating their own grant at once (the
//! time per rotation under load, which is what a busy server sees; criterion's "time" is then
//! the inverse of the throughput).

#![allow(clippy::expect_used)] // A benchmark that cannot set itself up has nothing to measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authx_core::auth::{AuthPolicy, AuthService, Stores};
use authx_core::events::InProcessBus;
use authx_core::oauth::client::{Client, GrantType};
use authx_core::oauth::grant::{RefreshFamily, RefreshToken, Rotation};
use authx_core::oauth::keys::SigningAlg;
use authx_core::oauth::store::GrantStore;
use authx_core::password::{HashParams, PasswordHasher};
use authx_core::secret::{SessionToken, TokenHash, random_id};
use authx_core::session::{ClientContext, Session, SessionId};
use authx_core::user::{User, UserId, UserStatus};
use authx_core::{SystemClock, Timestamp};
use authx_store::{Backend, ConnectOptions, connect};
use criterion::Criterion;
use tokio::runtime::Runtime;

const FAR: i64 = 4_000_000_000;
const CALLERS: u64 = 16;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A user, and the confidential client `app` unless it exists, for the grants.
async fn fixtures(b: &Backend) -> UserId {
    let user = User {
        id: UserId::generate(),
        email: format!("{}@example.com", random_id()),
        password_hash: "$argon2id$unused".into(),
        status: UserStatus::Active,
        is_admin: false,
        created_at: Timestamp(1_000),
        password_changed_at: Timestamp(1_000),
        email_verified: false,
    };
    b.accounts.create_user(&user).await.expect("user");
    let client = Client {
        id: "app".into(),
        name: "App".into(),
        secret_hash: Some(TokenHash::of(b"secret")),
        token_endpoint_auth_method:
            authx_core::oauth::client::TokenEndpointAuthMethod::ClientSecretBasic,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: vec!["https://app.example.com/cb".into()],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["read".into()],
        resources: vec![],
        first_party: true,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Es256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(1_000),
    };
    if b.clients.client("app").await.expect("client").is_none() {
        b.clients.put_client(&client).await.expect("client");
    }
    user.id
}

fn token(family: &str) -> RefreshToken {
    RefreshToken {
        hash: TokenHash::of(random_id().as_bytes()),
        family_id: family.to_owned(),
        issued_at: Timestamp(2_000),
        idle_expires_at: Timestamp(FAR),
        consumed_at: None,
    }
}

/// A new grant of `user`; returns its family id and first token hash.
async fn grant(grants: &Arc<dyn GrantStore>, user: &UserId) -> (String, TokenHash) {
    let id = random_id();
    let family = RefreshFamily {
        id: id.clone(),
        client_id: "app".into(),
        user_id: user.clone(),
        session_id: None,
        scope: "read".into(),
        resource: None,
        auth_time: Timestamp(1_000),
        auth_methods: String::new(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(FAR),
        revoked_at: None,
        dpop_jkt: None,
    };
    let first = token(&id);
    grants
        .create_family(&family, Some(&first))
        .await
        .expect("family");
    (id, first.hash)
}

/// Rotates the grant `n` times in a row; returns the newest token hash.
async fn rotate_n(
    grants: &Arc<dyn GrantStore>,
    family: &str,
    mut current: TokenHash,
    n: u64,
) -> TokenHash {
    for _ in 0..n {
        let next = token(family);
        let rotated = grants
            .rotate_refresh(Rotation {
                old: &current,
                new: &next,
                now: Timestamp(2_000),
            })
            .await
            .expect("rotation");
        assert!(rotated, "a fresh token rotates");
        current = next.hash;
    }
    current
}

fn rotation(c: &mut Criterion, name: &str, rt: &Runtime, backend: &Backend) {
    let user = rt.block_on(fixtures(backend));
    let grants = Arc::clone(&backend.grants);
    let mut g = c.benchmark_group("refresh_rotation");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);

    let (fid, first) = rt.block_on(grant(&grants, &user));
    let mut current = first;
    g.bench_function(format!("{name}/one_caller"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                current = rotate_n(&grants, &fid, current, iters).await;
                start.elapsed()
            })
        });
    });

    let chains: Vec<(String, TokenHash)> = rt.block_on(async {
        futures_util::future::join_all((0..CALLERS).map(|_| grant(&grants, &user))).await
    });
    let mut chains = Some(chains);
    g.bench_function(format!("{name}/{CALLERS}_callers"), |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(CALLERS);
            let run = chains.take().expect("chains");
            let (elapsed, back) = rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = run
                    .into_iter()
                    .map(|(fid, hash)| {
                        let grants = Arc::clone(&grants);
                        tokio::spawn(async move {
                            let newest = rotate_n(&grants, &fid, hash, per).await;
                            (fid, newest)
                        })
                    })
                    .collect();
                let mut back = Vec::new();
                for t in tasks {
                    back.push(t.await.expect("task"));
                }
                (start.elapsed(), back)
            });
            chains = Some(back);
            // Time per rotation at this concurrency.
            elapsed.mul_f64(iters as f64 / (per * CALLERS) as f64)
        });
    });
    g.finish();
}

fn session_lookup(c: &mut Criterion, rt: &Runtime, backend: &Backend) {
    let user = rt.block_on(fixtures(backend));
    let token = SessionToken::generate();
    let session = Session {
        id: SessionId::generate(),
        token_hash: token.hash(),
        user_id: user,
        created_at: Timestamp(1_000),
        last_seen_at: Timestamp(FAR - 10),
        idle_expires_at: Timestamp(FAR),
        absolute_expires_at: Timestamp(FAR),
        ip: None,
        user_agent: None,
        auth_method: "password".into(),
    };
    rt.block_on(backend.sessions.create_session(&session))
        .expect("session");
    let service = |cache_capacity| {
        AuthService::new(
            Stores {
                accounts: Arc::clone(&backend.accounts),
                sessions: Arc::clone(&backend.sessions),
                throttle: Arc::clone(&backend.throttle),
            },
            Arc::new(InProcessBus::default()),
            Arc::new(SystemClock),
            PasswordHasher::new(HashParams::default(), 1, Duration::from_secs(1)).expect("hasher"),
            AuthPolicy {
                cache_capacity,
                ..AuthPolicy::default()
            },
        )
    };
    let ctx = ClientContext::default();
    let mut g = c.benchmark_group("session_lookup_sqlite");
    for (name, auth) in [("cache_hit", service(10_000)), ("cache_miss", service(0))] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let found = auth.authenticate(&token, &ctx).await.expect("lookup");
                        assert!(found.is_some(), "the session is live");
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt
        .block_on(connect(&url, &ConnectOptions::default()))
        .expect("sqlite");
    session_lookup(c, &rt, &sqlite);
    rotation(c, "sqlite_full", &rt, &sqlite);

    let Ok(admin_url) = std::env::var("AUTHX_TEST_POSTGRES_URL") else {
        eprintln!("postgres: skipped (AUTHX_TEST_POSTGRES_URL is unset)");
        return;
    };
    let schema = format!("bench_{}", random_id().to_lowercase().replace('-', "_"));
    let (admin, pg) = rt.block_on(async {
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("postgres");
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .expect("schema");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");
        let pg = connect(&url, &ConnectOptions::default())
            .await
            .expect("postgres");
        (admin, pg)
    });
    rotation(c, "postgres", &rt, &pg);
    drop(pg);
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
