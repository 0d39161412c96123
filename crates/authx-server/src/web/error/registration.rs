//! Registration failures as answers of the admin API (the registration endpoints answer in
//! RFC 7591 form, `web::registration`).

use axum::http::StatusCode;

use authx_core::registration::RegistrationError;

use super::ApiError;

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        match e {
            RegistrationError::OAuth(e) => super::oauth::api_error(e),
            RegistrationError::InvalidToken => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is missing, invalid, expired or revoked",
            ),
            other => Self::new(StatusCode::BAD_REQUEST, other.code(), other.to_string()),
        }
    }
}
