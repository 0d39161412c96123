//! The JSON API under `/api/v1`: sign-up, sign-in, sign-out, CSRF token, me, sessions, password,
//! and user administration.
//!
//! # Security
//! Every state-changing call has passed the origin check. Calls authenticated by the session
//! cookie also need the synchronizer token in `X-CSRF-Token` (from `GET /api/v1/auth/csrf`).
//! Sign-in and sign-up take JSON only, which a cross-site form cannot send.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{delete, get, post};

use crate::state::AppState;

mod account;
pub(crate) mod admin;
mod email;
mod mfa;
pub mod views;

use account::{
    consent_delete, consents_get, csrf_get, forgot_post, me_get, password_post, revoke_others_post,
    second_factor_post, session_delete, session_token_post, sessions_get, sign_in_post,
    sign_out_post, sign_up_post,
};
use admin::{
    admin_audit_get, admin_client_delete, admin_client_get, admin_client_put,
    admin_client_secret_post, admin_clients_get, admin_clients_post, admin_email_test_post,
    admin_keys_get, admin_keys_rotate_post, admin_overview_get, admin_resources_get,
    admin_resources_post, admin_user_admin_post, admin_user_disable_post, admin_user_enable_post,
    admin_user_get, admin_user_grant_delete, admin_user_reset_factors_post,
    admin_user_reset_link_post, admin_user_revoke_all_post, admin_user_session_delete,
    admin_users_get, admin_users_post,
};
use admin::{
    admin_registration_token_delete, admin_registration_tokens_get, admin_registration_tokens_post,
};

/// The `/api/v1` routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let r = Router::new()
        .route("/api/v1/auth/sign-up", post(sign_up_post))
        .route("/api/v1/auth/sign-in", post(sign_in_post))
        .route("/api/v1/auth/second-factor", post(second_factor_post))
        .route("/api/v1/auth/sign-out", post(sign_out_post))
        .route("/api/v1/auth/csrf", get(csrf_get))
        .route("/api/v1/me", get(me_get))
        .route("/api/v1/sessions", get(sessions_get))
        .route("/api/v1/sessions/revoke-others", post(revoke_others_post))
        .route("/api/v1/sessions/{id}", delete(session_delete))
        .route("/api/v1/password", post(password_post))
        .route("/api/v1/password/forgot", post(forgot_post))
        .route("/api/v1/mfa", get(mfa::factors_get))
        .route("/api/v1/mfa/totp", post(mfa::totp_post))
        .route(
            "/api/v1/mfa/totp/{id}/confirm",
            post(mfa::totp_confirm_post),
        )
        .route("/api/v1/mfa/recovery-codes", post(mfa::recovery_codes_post))
        .route("/api/v1/mfa/{id}/remove", post(mfa::remove_post))
        .route("/api/v1/mfa/{id}/rename", post(mfa::rename_post))
        .route("/api/v1/email", post(email::email_post))
        .route("/api/v1/email/verification", post(email::verification_post))
        .route("/api/v1/admin/overview", get(admin_overview_get))
        .route(
            "/api/v1/admin/users",
            get(admin_users_get).post(admin_users_post),
        )
        .route("/api/v1/admin/users/{id}", get(admin_user_get))
        .route(
            "/api/v1/admin/users/{id}/admin",
            post(admin_user_admin_post),
        )
        .route(
            "/api/v1/admin/users/{id}/revoke-all",
            post(admin_user_revoke_all_post),
        )
        .route(
            "/api/v1/admin/users/{id}/reset-link",
            post(admin_user_reset_link_post),
        )
        .route(
            "/api/v1/admin/users/{id}/reset-factors",
            post(admin_user_reset_factors_post),
        )
        .route(
            "/api/v1/admin/users/{id}/sessions/{session}",
            delete(admin_user_session_delete),
        )
        .route(
            "/api/v1/admin/users/{id}/grants/{grant}",
            delete(admin_user_grant_delete),
        )
        .route(
            "/api/v1/admin/clients/{id}/secret",
            post(admin_client_secret_post),
        )
        .route("/api/v1/admin/federation", get(admin::admin_federation_get))
        .route(
            "/api/v1/admin/federation/{name}/test",
            post(admin::admin_federation_test_post),
        )
        .route("/api/v1/admin/keys", get(admin_keys_get))
        .route("/api/v1/admin/keys/rotate", post(admin_keys_rotate_post))
        .route("/api/v1/admin/audit", get(admin_audit_get))
        .route("/api/v1/admin/email/test", post(admin_email_test_post))
        .route(
            "/api/v1/admin/users/{id}/disable",
            post(admin_user_disable_post),
        )
        .route(
            "/api/v1/admin/users/{id}/enable",
            post(admin_user_enable_post),
        )
        .route(
            "/api/v1/admin/clients",
            get(admin_clients_get).post(admin_clients_post),
        )
        .route(
            "/api/v1/admin/clients/{id}",
            get(admin_client_get)
                .put(admin_client_put)
                .delete(admin_client_delete),
        )
        .route(
            "/api/v1/admin/resources",
            get(admin_resources_get).post(admin_resources_post),
        )
        .route(
            "/api/v1/admin/registration-tokens",
            get(admin_registration_tokens_get).post(admin_registration_tokens_post),
        )
        .route(
            "/api/v1/admin/registration-tokens/{id}",
            delete(admin_registration_token_delete),
        )
        .route("/api/v1/auth/token", post(session_token_post))
        .route("/api/v1/consents", get(consents_get))
        .route("/api/v1/consents/{client_id}", delete(consent_delete));
    if state.config.cors_allowed_origins.is_empty() {
        r
    } else {
        r.layer(cors(&state.config.cors_allowed_origins))
    }
}

/// CORS for configured origins only: exact list, credentials allowed, `Vary: Origin` always.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-csrf-token"),
        ])
        // A cross-origin page may read how long to back off after a 429 or 503.
        .expose_headers([header::RETRY_AFTER])
        .vary([header::ORIGIN])
}

/// Registers an API resource with the deployment's own authority (as the command line does):
/// the rules of [`authx_core::admin::check_resource`], then the store.
///
/// # Errors
/// 400 for a bad identifier or scope, 409 for a taken one.
pub async fn register_resource(
    state: &AppState,
    id: String,
    scopes: Vec<String>,
) -> Result<authx_core::oauth::client::Resource, crate::web::error::ApiError> {
    Ok(command_line(state).register_resource(id, scopes).await?)
}

/// The administration with the deployment's own authority: the `authx` command line, which
/// reaches the database directly (no account acts; outcomes are audited).
#[must_use]
pub fn command_line(state: &AppState) -> authx_core::admin::Administration<'_> {
    authx_core::admin::Administration::new(
        &state.auth,
        &state.oauth,
        state.audit_store.as_ref(),
        authx_core::admin::Actor::CommandLine,
    )
}
