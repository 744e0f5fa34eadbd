//! The web layer's one error type: every failure leaves as `application/problem+json`
//! (RFC 9457) with a human message. 5xx are logged with their cause and never echo internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

#[derive(Debug)]
pub enum ApiError {
    /// The body or query could not be read at all (not JSON, wrong type).
    BadRequest(String),
    /// The input was readable but breaks a rule; names the field.
    Invalid {
        field: String,
        message: String,
    },
    Unauthorized(String),
    Forbidden,
    NotFound,
    Conflict(String),
    /// An upload over its limit; the message names the limit.
    TooLarge(String),
    TooManyRequests {
        retry_after_secs: u64,
    },
    Internal(Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, message } => ApiError::Invalid { field, message },
            Error::NotFound => ApiError::NotFound,
            Error::Forbidden => ApiError::Forbidden,
            Error::Conflict(message) => ApiError::Conflict(message),
            Error::TooLarge(message) => ApiError::TooLarge(message),
            other => ApiError::Internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(Error::Database(e))
    }
}

impl ApiError {
    /// The status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (kind, title, detail, field) = match &self {
            ApiError::BadRequest(m) => ("bad-request", "Bad request", m.clone(), None),
            ApiError::Invalid { field, message } => (
                "invalid-field",
                "Invalid field",
                format!("{field}: {message}"),
                Some(field.as_str()),
            ),
            ApiError::Unauthorized(m) => ("unauthorized", "Unauthorized", m.clone(), None),
            ApiError::Forbidden => (
                "forbidden",
                "Forbidden",
                "your role does not allow this; see docs/PERMISSIONS.md or ask an administrator"
                    .into(),
                None,
            ),
            ApiError::NotFound => ("not-found", "Not found", "no such object".into(), None),
            ApiError::Conflict(m) => ("conflict", "Conflict", m.clone(), None),
            ApiError::TooLarge(m) => ("too-large", "Too large", m.clone(), None),
            ApiError::TooManyRequests { retry_after_secs } => (
                "too-many-requests",
                "Too many requests",
                format!(
                    "too many attempts from your address; try again in {retry_after_secs} seconds"
                ),
                None,
            ),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (
                    "internal",
                    "Internal error",
                    "the server could not complete the request; the error is in its log".into(),
                    None,
                )
            }
        };
        let body = Problem {
            kind: format!("/problems/{kind}"),
            title,
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let ApiError::Unauthorized(_) = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"khetnet\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
