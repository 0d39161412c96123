//! The yardstick of `bench/load.sh` scenario H0: bare axum answering `GET /healthz` with `ok`,
//! on the same runtime, allocator and HTTP/1 server settings as `authx serve`, with none of
//! its layers. The ratio of S0 (authx's `/healthz`) to H0 is what authx's per-request path
//! costs beyond the framework.
//!
//! ```sh
//! cargo run --release -p authx-server --example hello -- 127.0.0.1:18084
//! ```

use axum::Router;
use axum::routing::get;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18084".to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hello: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hello: cannot listen on {addr}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        authx_server::serve::serve(listener, app, std::future::pending()).await;
        std::process::ExitCode::SUCCESS
    })
}
