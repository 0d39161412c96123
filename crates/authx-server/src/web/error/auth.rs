//! Account-service failures (`AuthError`) as HTTP answers: JSON API errors and error pages.

use axum::http::StatusCode;
use axum::response::Response;

use authx_core::StoreError;
use authx_core::auth::AuthError;
use authx_core::mfa::MfaError;

use super::{ApiError, set_retry_after};
use crate::html::{Message, Paragraph};

/// Status, code and `Retry-After` for an account-service error.
#[must_use]
pub fn classify(e: &AuthError) -> (StatusCode, &'static str, Option<i64>) {
    match e {
        AuthError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", None),
        AuthError::Throttled { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            Some(*retry_after_secs),
        ),
        AuthError::SignUpDisabled => (StatusCode::FORBIDDEN, "sign_up_disabled", None),
        AuthError::EmailTaken => (StatusCode::CONFLICT, "email_taken", None),
        AuthError::InvalidEmail => (StatusCode::BAD_REQUEST, "invalid_email", None),
        AuthError::WeakPassword(_) => (StatusCode::BAD_REQUEST, "weak_password", None),
        AuthError::PasswordTooLong => (StatusCode::BAD_REQUEST, "password_too_long", None),
        AuthError::WrongPassword => (StatusCode::FORBIDDEN, "wrong_password", None),
        AuthError::InvalidLink => (StatusCode::BAD_REQUEST, "invalid_link", None),
        AuthError::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified", None),
        AuthError::RecentSignInRequired => {
            (StatusCode::FORBIDDEN, "reauthentication_required", None)
        }
        AuthError::EmailUnchanged => (StatusCode::BAD_REQUEST, "email_unchanged", None),
        AuthError::OtherBrowser => (StatusCode::FORBIDDEN, "other_browser", None),
        AuthError::SecondFactorRequired(c) if c.failed => {
            (StatusCode::UNAUTHORIZED, "invalid_code", None)
        }
        AuthError::SecondFactorRequired(_) => {
            (StatusCode::UNAUTHORIZED, "second_factor_required", None)
        }
        AuthError::SignInExpired => (StatusCode::UNAUTHORIZED, "sign_in_expired", None),
        AuthError::LastFactorRequired => (StatusCode::CONFLICT, "last_factor_required", None),
        AuthError::Factor(e) => factor(e),
        AuthError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
        AuthError::LastAdministrator => (StatusCode::CONFLICT, "last_administrator", None),
        AuthError::Busy | AuthError::Store(StoreError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1))
        }
        AuthError::Store(_) | AuthError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None)
        }
    }
}

/// Status and code of a second-factor failure.
fn factor(e: &MfaError) -> (StatusCode, &'static str, Option<i64>) {
    match e {
        MfaError::InvalidCode => (StatusCode::BAD_REQUEST, "invalid_code", None),
        MfaError::NoPendingEnrolment => (StatusCode::CONFLICT, "no_pending_enrolment", None),
        MfaError::UnknownFactor => (StatusCode::NOT_FOUND, "not_found", None),
        MfaError::NoSecondFactor => (StatusCode::CONFLICT, "no_second_factor", None),
        MfaError::TooManyFactors => (StatusCode::CONFLICT, "too_many_factors", None),
        MfaError::InvalidName => (StatusCode::BAD_REQUEST, "invalid_name", None),
        MfaError::InvalidPasskey => (StatusCode::UNAUTHORIZED, "invalid_passkey", None),
        MfaError::CeremonyExpired => (StatusCode::BAD_REQUEST, "ceremony_expired", None),
        MfaError::CredentialTaken => (StatusCode::CONFLICT, "credential_taken", None),
        MfaError::PasskeysOff => (StatusCode::NOT_FOUND, "passkeys_disabled", None),
        MfaError::Store(StoreError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1))
        }
        MfaError::Sealing(_) | MfaError::Store(_) | MfaError::Passkey(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None)
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (status, code, retry_after) = classify(&e);
        let message = match &e {
            AuthError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "store unavailable");
                "the service is temporarily unavailable".to_owned()
            }
            AuthError::Busy => "the service is temporarily unavailable".to_owned(),
            AuthError::Store(_)
            | AuthError::Internal(_)
            | AuthError::Factor(MfaError::Sealing(_) | MfaError::Store(_) | MfaError::Passkey(_)) =>
            {
                tracing::error!(error = %e, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            code,
            message,
            retry_after,
        }
    }
}

/// The status and `Retry-After` of a failed sign-in or account change.
#[must_use]
pub fn status(e: &AuthError) -> (StatusCode, Option<i64>) {
    let (status, _, retry) = classify(e);
    (status, retry)
}

/// The error page of a browser form whose account operation failed (server failures are not
/// described).
#[must_use]
pub fn page(e: &AuthError) -> Response {
    let (status, retry) = status(e);
    let msg = if status.is_server_error() {
        "The service is temporarily unavailable. Try again shortly.".to_owned()
    } else {
        e.to_string()
    };
    let mut res =
        Message::new("Error", "Something went wrong", Paragraph::Alert(&msg)).response(status);
    set_retry_after(&mut res, retry);
    res
}
