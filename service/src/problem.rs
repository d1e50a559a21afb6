//! Errors as RFC 9457 problem details (`application/problem+json`), each status mapped from the
//! core's [`ErrorKind`], so the service decides no status by reading a message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracevault_core::ErrorKind;

/// One error response.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// The request field to blame, when one is (`events[3].x`, `purpose`).
    pub field: Option<String>,
    /// Seconds a client should wait before trying again (429, 503).
    pub retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem { status, detail: detail.into(), field: None, retry_after_s: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The status for a core error of this kind.
    pub fn of_kind(kind: ErrorKind, detail: impl Into<String>) -> Problem {
        let status = match kind {
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Corrupt | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let p = Problem::new(status, detail);
        if kind == ErrorKind::Unavailable { p.retry_after(1) } else { p }
    }

    /// A short, stable name for the problem type (the `type` URI's last segment).
    fn slug(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad-input",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::GONE => "gone",
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too-many-requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://tracevault.dev/problems/{}", self.slug()),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tracevault\""));
        }
        response
    }
}

macro_rules! from_core_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Problem {
            fn from(e: $t) -> Problem {
                Problem::of_kind(e.kind(), e.to_string())
            }
        }
    )*};
}

from_core_error!(tracevault_core::AppendError, tracevault_core::ReadError);

impl From<tracevault_replay::ReplayError> for Problem {
    fn from(e: tracevault_replay::ReplayError) -> Problem {
        match e {
            tracevault_replay::ReplayError::Read(r) => r.into(),
            tracevault_replay::ReplayError::Invalid(m) => Problem::bad_request(m),
            other => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}
