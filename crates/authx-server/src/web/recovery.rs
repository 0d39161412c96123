//! What the password-reset page and API share: starting a reset request off the request path.

use authx_core::audit::AuditEvent;

use crate::state::AppState;

/// Starts a reset request for `email` and returns at once: the answer and its timing are the
/// same whether or not an account exists, since the lookup, the token and the mail happen
/// after it. A failure is logged and audited (the caller's answer does not change).
pub(crate) fn start_reset(state: &AppState, email: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.auth.request_reset(&email).await {
            tracing::warn!(error = %e, "a password reset request failed");
            state
                .auth
                .audit()
                .record(AuditEvent::failure("password_reset_requested").with("reason", "error"));
        }
    });
}
