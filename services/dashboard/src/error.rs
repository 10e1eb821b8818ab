//! API errors: a status and `{"error": "..."}`, logged once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::bus::BusError;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Remote(msg) if msg.starts_with("no request") => Self::new(StatusCode::NOT_FOUND, msg),
            BusError::Remote(msg) if msg.starts_with("bad query") => Self::new(StatusCode::BAD_REQUEST, msg),
            BusError::Request { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "the correlator is not answering; is it running?")
            }
            other => Self::new(StatusCode::BAD_GATEWAY, other.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "API request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "API request refused");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
