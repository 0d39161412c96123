//! A resource server protected by the authx guard.
//!
//! ```sh
//! AUTHX_GUARD_CLIENT_SECRET=... cargo run --release --example resource-server -- \
//!     --issuer http://127.0.0.1:8080 --audience https://api.example.com \
//!     --listen 127.0.0.1:9090 --client-id https://api.example.com
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:9090/whoami
//! ```
//!
//! `GET /whoami` answers the token's subject, client and scopes; `401` without a valid token.
//! With `--client-id` (and the secret in `AUTHX_GUARD_CLIENT_SECRET`) the guard subscribes to
//! the issuer's revocation feed and refuses revoked tokens at once.

use std::net::SocketAddr;
use std::time::Duration;

use authx_guard::{Guard, GuardConfig, Identity, Mode, WhenStale};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::json;

/// A resource server protected by the authx guard.
#[derive(Debug, Parser)]
struct Args {
    /// The authx issuer URL.
    #[arg(long)]
    issuer: String,
    /// This API's identifier (the `aud` of its tokens).
    #[arg(long)]
    audience: String,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// The API's client id at the issuer (opens the revocation feed).
    #[arg(long)]
    client_id: Option<String>,
    /// Its secret.
    #[arg(long, env = "AUTHX_GUARD_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Check tokens by introspection instead of locally.
    #[arg(long)]
    introspect: bool,
    /// Seconds the feed may be silent before the guard stops trusting it.
    #[arg(long, default_value_t = 30)]
    staleness_secs: u64,
    /// When the feed is stale, introspect instead of refusing with 503.
    #[arg(long)]
    stale_introspect: bool,
}

async fn whoami(identity: Identity) -> Json<serde_json::Value> {
    match identity {
        Identity::Token(c) => Json(json!({
            "sub": c.sub,
            "client_id": c.client_id,
            "scope": c.scopes().collect::<Vec<_>>(),
            "exp": c.exp,
        })),
        Identity::Session { user_id, .. } => Json(json!({"sub": user_id})),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = GuardConfig::new(&args.issuer, &args.audience)
        .mode(if args.introspect {
            Mode::Introspection
        } else {
            Mode::Jwt
        })
        .when_stale(
            Duration::from_secs(args.staleness_secs),
            if args.stale_introspect {
                WhenStale::Introspect
            } else {
                WhenStale::FailClosed
            },
        );
    match (args.client_id, args.client_secret) {
        (Some(id), Some(secret)) => config = config.credentials(id, secret),
        (Some(_), None) => anyhow::bail!("--client-id needs AUTHX_GUARD_CLIENT_SECRET"),
        _ => {}
    }
    let guard = Guard::start(config).await?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(guard.layer());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("resource server listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
