//! What an operator can do from the status page, as Flower and Sidekiq let
//! them: requeue or purge dead letters, one or all. `POST` only, behind the
//! status token, and safe from cross-site requests: the body must be JSON
//! (a form on another site cannot send that without a CORS preflight,
//! which this endpoint never grants), and a browser's `Origin` and
//! `Sec-Fetch-Site` must say the page is this endpoint's own.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use visitlog_schema::redact_urls_in;

use super::state::StatusState;
use crate::admin::{self, Selection};

/// Most ids one action names.
const MAX_IDS: usize = 200;

/// `{"ids": [...]}` or `{"all": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /api/dead-letters/requeue`.
pub(super) async fn requeue(
    State(state): State<Arc<StatusState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let selection = match selection(&headers, &body) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    match admin::requeue_into(
        &state.sink,
        state.source.target(),
        state.source.keys(),
        &selection,
    )
    .await
    {
        Ok((requeued, skipped)) => {
            tracing::info!(
                requeued,
                skipped,
                "dead letters requeued from the status page"
            );
            Json(json!({ "requeued": requeued, "skipped_truncated": skipped })).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// `POST /api/dead-letters/purge`.
pub(super) async fn purge(
    State(state): State<Arc<StatusState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let selection = match selection(&headers, &body) {
        Ok(s) => s,
        Err(refusal) => return refusal.into_response(),
    };
    match state
        .sink
        .purge_dead_letters(selection_filter(&selection))
        .await
    {
        Ok(purged) => {
            tracing::info!(purged, "dead letters purged from the status page");
            Json(json!({ "purged": purged })).into_response()
        }
        Err(e) => failed(&e),
    }
}

fn selection_filter(selection: &Selection) -> bson::Document {
    match selection.all {
        true => bson::doc! {},
        false => bson::doc! { "_id": { "$in": selection.ids.clone() } },
    }
}

/// The checked request: same-origin JSON naming some dead letters.
fn selection(headers: &HeaderMap, body: &[u8]) -> Result<Selection, Refusal> {
    let refuse = |status: StatusCode, message: &str| Err(Refusal(status, message.to_owned()));
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return refuse(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !own {
            return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
    }
    let action: Action = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"ids\": [...]}} or {{\"all\": true}}: {e}"),
            );
        }
    };
    if action.ids.len() > MAX_IDS {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_IDS} ids at once"),
        );
    }
    if action.ids.is_empty() && !action.all {
        return refuse(
            StatusCode::BAD_REQUEST,
            "say which: {\"ids\": [...]} or {\"all\": true}",
        );
    }
    Ok(Selection {
        ids: action.ids,
        reason_contains: None,
        all: action.all,
    })
}

/// A request refused before anything was done: its status and why.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn failed(e: &crate::error::Error) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": redact_urls_in(&e.to_string()) })),
    )
        .into_response()
}
