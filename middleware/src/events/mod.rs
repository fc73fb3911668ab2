//! The learning-events endpoint: a page's script posts what the learner did
//! with the video (`video.play`, `video.pause`, `video.seek`,
//! `video.progress`, `video.ended`) and with the tutorial
//! (`tutorial.complete`, `tutorial.incomplete`). Each event is checked,
//! stamped by the server (UUID v7 `_id`, `ts`, learner, visitor and visit)
//! and shipped like a request record, with `kind: "event"`.
//!
//! Mount it with [`crate::CaptureLayer::events`]; the handler never waits
//! on Redis.
//!
//! Its jobs, one file each: [`endpoint`] (the handler: who may post, rate
//! limit, body limit, hand-over to the shipper, all or nothing), [`parse`]
//! (checking each event and stamping it into an `EventRecord`), [`origin`]
//! (the content type and same-origin checks) and [`rate`] (the per-learner
//! rate limit). [`Refusal`] is the answer any of them gives a bad request.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::json;

mod endpoint;
mod origin;
mod parse;
pub(crate) mod rate;

/// Most events in one request (the batch form a beacon sends).
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

/// A refusal, answered as `{"error": ..., "field": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) field: Option<String>,
    pub(crate) message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            field: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {}", message.into()),
            field: Some(field),
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "field": self.field });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests;
