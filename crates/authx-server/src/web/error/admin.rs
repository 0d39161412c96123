//! Administration failures (`AdminError`) as answers of the JSON admin API.

use axum::http::StatusCode;

use authx_core::admin::AdminError;

use super::ApiError;

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::InvalidRequest(m) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
            }
            AdminError::InvalidScope => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_scope", "malformed scope")
            }
            AdminError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            AdminError::Auth(e) => e.into(),
            AdminError::OAuth(e) => super::oauth::api_error(e),
        }
    }
}
