//! HTTP: extractors, middleware, the JSON API, the pages and the operational endpoints.

pub mod api;
pub mod console;
pub mod device;
pub mod error;
pub mod extract;
pub mod federation;
pub mod form;
pub mod middleware;
pub mod oauth;
pub mod ops;
pub mod pages;
mod recovery;
pub mod registration;
pub mod revocations;
pub mod saml;
pub mod signin;

use axum::Router;

use crate::state::AppState;

/// The whole application, as served and as tested: the router inside the layers every request
/// passes through ([`middleware::around`]).
pub fn app(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    let browser = Router::new()
        .merge(api::router(&state))
        .merge(pages::router())
        .merge(console::router())
        .merge(oauth::browser_router())
        .merge(device::browser_router())
        .merge(federation::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::origin_check,
        ));
    let mut machine = Router::new();
    if !state.config.saml.is_empty() {
        // Outside the origin check: the assertion consumer service takes the IdP's cross-site
        // POST; the module's other routes are GETs.
        machine = machine.merge(saml::router());
    }
    if state.config.registration_enabled {
        machine = machine.merge(registration::router());
    }
    let router = Router::new()
        .merge(machine)
        .merge(browser)
        .merge(ops::router())
        .merge(oauth::machine_router())
        .merge(device::machine_router())
        .merge(revocations::machine_router())
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::per_request,
        ));
    middleware::around(router.with_state(state.clone()), &state)
}

/// Formats a timestamp as RFC 3339 (UTC).
#[must_use]
pub fn rfc3339(t: authx_core::Timestamp) -> String {
    crate::html::display::iso(t)
}
