//! Mail failures (`MailError`) as answers of the JSON API.

use axum::http::StatusCode;

use authx_core::auth::AuthError;
use authx_core::mail::MailError;

use super::ApiError;

impl From<MailError> for ApiError {
    fn from(e: MailError) -> Self {
        match e {
            MailError::InvalidAddress => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "to must be one email address",
            ),
            MailError::Render(cause) => Self::internal(&cause),
            MailError::Store(e) => AuthError::Store(e).into(),
        }
    }
}
