//! The learning-events endpoint: a page's script posts what the learner did
//! with the video (`video.play`, `video.pause`, `video.seek`,
//! `video.progress`, `video.ended`) and with the tutorial
//! (`tutorial.complete`, `tutorial.incomplete`). Each event is checked,
//! stamped by the server (UUID v7 `_id`, `ts`, learner, visitor and visit)
//! and shipped like a request record, with `kind: "event"`.
//!
//! Mount it with [`CaptureLayer::events`]; the handler never waits on Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::Utc;
use http::request::Parts;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use visitlog_schema::{
    EventRecord, EventType, Kind, Learner, SCHEMA_VERSION, limits, truncate_chars,
};

use crate::identity::Identify;
use crate::layer::{CaptureLayer, Shared};
use crate::record::Item;
use crate::visitor::Visit;

/// Most events in one request (the batch form a beacon sends).
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

/// Longest video, in seconds (a day).
const MAX_SECONDS: f64 = 86_400.0;

/// The fields a client event may carry.
const FIELDS: &[&str] = &[
    "type",
    "foss",
    "tutorial",
    "language",
    "video_id",
    "position",
    "duration",
    "from",
    "to",
    "played_from",
];

struct Endpoint {
    shared: Arc<Shared>,
    identify: Arc<dyn Identify>,
}

impl CaptureLayer {
    /// The learning-events endpoint, to mount on the app's router:
    ///
    /// ```no_run
    /// # use axum::Router;
    /// # fn app(capture: visitlog_middleware::CaptureLayer) -> Router {
    /// Router::new()
    ///     .route("/visitlog/events", capture.events())
    ///     .layer(capture)
    /// # }
    /// ```
    ///
    /// It takes `POST` with a JSON event or an array of them, and answers
    /// 202, or 400 naming the bad field, 401 (login required), 403 (another
    /// origin), 413 (over `events_max_bytes`), 415 (not JSON) or 503 (the
    /// shipper is full). Mounted behind the layer, events share the visit the
    /// layer just worked out; elsewhere the visitor cookie is read as it is.
    pub fn events<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let endpoint = Arc::new(Endpoint {
            shared: self.shared.clone(),
            identify: self.identify.clone(),
        });
        axum::routing::post(move |request: Request<Body>| {
            let endpoint = endpoint.clone();
            async move { endpoint.handle(request).await }
        })
    }
}

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
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            field: None,
            message: message.into(),
            retry_after: None,
        }
    }

    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
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

impl Endpoint {
    async fn handle(&self, request: Request<Body>) -> Response {
        match self.accept(request).await {
            Ok(n) => (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response(),
            Err(refusal) => refusal.into_response(),
        }
    }

    async fn accept(&self, request: Request<Body>) -> Result<usize, Refusal> {
        let (parts, body) = request.into_parts();
        let config = &self.shared.events;
        if !is_json(&parts.headers) {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
        same_origin(&parts, &config.origins)
            .map_err(|why| Refusal::new(StatusCode::FORBIDDEN, why))?;
        let now = Utc::now();
        let identity = self.identify.identify(&parts);
        let visit = parts
            .extensions
            .get::<Visit>()
            .copied()
            .or_else(|| self.shared.visitor.peek(&parts.headers, now));
        let user = identity
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|u| truncate_chars(u, limits::SHORT));
        if user.is_none() && !config.anonymous {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "log in to record learning progress",
            ));
        }
        let learner = Learner::of(user, visit.map(|v| v.visitor_id)).ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "no visitor cookie: log in, or allow the visitor cookie",
            )
        })?;

        let learner = learner.key();
        if let Err(wait) = config.limit.check(&learner) {
            let secs = rate::retry_after_secs(wait);
            self.shared
                .counters
                .events_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many learning-event requests; retry in {secs} s"),
                )
            });
        }

        let too_large = || {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {} bytes", config.max_bytes),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > config.max_bytes) {
            return Err(too_large());
        }
        let bytes = match Limited::new(body, config.max_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "could not read the body",
                ));
            }
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("not JSON: {e}")))?;
        let events = parse_events(&value)?;

        let n = events.len();
        let items = events.into_iter().map(|event| Item::Event {
            record: Box::new(event.stamp(now, &learner, user, visit)),
            session: identity.session_id.clone(),
        });
        // All or nothing: a client that retries after a 503 must not create
        // duplicates of the events that did get through.
        if !self.shared.hand_over_all(n, items) {
            self.shared
                .counters
                .events_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal {
                retry_after: Some(1),
                ..Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the log shipper is busy; no event was accepted, retry later",
                )
            });
        }
        self.shared
            .counters
            .events
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One checked client event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientEvent {
    pub(crate) event_type: EventType,
    pub(crate) foss: String,
    pub(crate) tutorial: String,
    pub(crate) language: String,
    pub(crate) video_id: Option<String>,
    pub(crate) position: Option<f64>,
    pub(crate) duration: Option<f64>,
    pub(crate) from: Option<f64>,
    pub(crate) to: Option<f64>,
    pub(crate) played_from: Option<f64>,
}

impl ClientEvent {
    fn stamp(
        self,
        ts: chrono::DateTime<Utc>,
        learner: &str,
        user: Option<&str>,
        visit: Option<Visit>,
    ) -> EventRecord {
        EventRecord {
            id: Uuid::now_v7(),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts,
            event_type: self.event_type,
            learner: learner.to_owned(),
            user: user.map(str::to_owned),
            visitor_id: visit.map(|v| v.visitor_id),
            visit_number: visit.map(|v| v.visit_number),
            session_id: None,
            foss: self.foss,
            tutorial: self.tutorial,
            language: self.language,
            video_id: self.video_id,
            position: self.position,
            duration: self.duration,
            from: self.from,
            to: self.to,
            played_from: self.played_from,
        }
    }
}

/// One event object, or a non-empty array of them.
pub(crate) fn parse_events(value: &Value) -> Result<Vec<ClientEvent>, Refusal> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Refusal::field("events", "empty array"));
            }
            if items.len() > MAX_EVENTS_PER_REQUEST {
                return Err(Refusal::field(
                    "events",
                    format!("more than {MAX_EVENTS_PER_REQUEST} events"),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    parse_event(item).map_err(|mut r| {
                        r.message = format!("events[{i}].{}", r.message);
                        r
                    })
                })
                .collect()
        }
        item => parse_event(item).map(|e| vec![e]),
    }
}

/// Checks one event object: every rule names the field it is about.
pub(crate) fn parse_event(value: &Value) -> Result<ClientEvent, Refusal> {
    let Value::Object(map) = value else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "an event must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        // The name is the client's: echoed, but never at length.
        return Err(Refusal::field(truncate_chars(unknown, 64), "unknown field"));
    }
    let kind = string(map, "type", 64)?.ok_or_else(|| Refusal::field("type", "missing"))?;
    let event_type: EventType = kind.parse().map_err(|()| {
        let known: Vec<_> = EventType::CLIENT.iter().map(|t| t.as_str()).collect();
        Refusal::field(
            "type",
            format!("unknown type `{kind}`; one of {}", known.join(", ")),
        )
    })?;
    let required = |name: &'static str| -> Result<String, Refusal> {
        string(map, name, limits::VALUE)?.ok_or_else(|| Refusal::field(name, "missing"))
    };
    let foss = required("foss")?;
    let tutorial = required("tutorial")?;
    let language = required("language")?;
    let video = event_type.is_video();
    let video_id = match video {
        true => Some(required("video_id")?),
        false => string(map, "video_id", limits::VALUE)?,
    };
    let seconds = |name: &'static str, needed: bool| -> Result<Option<f64>, Refusal> {
        match (map.get(name), needed) {
            (None | Some(Value::Null), true) => Err(Refusal::field(name, "missing")),
            (None | Some(Value::Null), false) => Ok(None),
            (Some(Value::Number(n)), _) => {
                let v = n
                    .as_f64()
                    .ok_or_else(|| Refusal::field(name, "not a number"))?;
                if !v.is_finite() {
                    Err(Refusal::field(name, "must be finite"))
                } else if v < 0.0 {
                    Err(Refusal::field(name, "must not be negative"))
                } else if v > MAX_SECONDS {
                    Err(Refusal::field(name, format!("over {MAX_SECONDS} seconds")))
                } else {
                    Ok(Some(v))
                }
            }
            (Some(_), _) => Err(Refusal::field(name, "must be a number of seconds")),
        }
    };
    let seek = event_type == EventType::VideoSeek;
    let duration = seconds("duration", video)?;
    if duration == Some(0.0) {
        return Err(Refusal::field("duration", "must be more than 0"));
    }
    let from = seconds("from", seek)?;
    let to = seconds("to", seek)?;
    let position = seconds("position", video && !seek)?.or(to);
    let played_from = seconds("played_from", false)?;
    let not_for = |name: &str| Refusal::field(name, format!("does not apply to {event_type}"));
    if !seek && from.is_some() {
        return Err(not_for("from"));
    }
    if !seek && to.is_some() {
        return Err(not_for("to"));
    }
    if played_from.is_some() && !video {
        return Err(not_for("played_from"));
    }
    if played_from.is_some() && event_type == EventType::VideoPlay {
        return Err(not_for("played_from"));
    }
    if let Some(duration) = duration {
        for (name, value) in [
            ("position", position),
            ("from", from),
            ("to", to),
            ("played_from", played_from),
        ] {
            if value.is_some_and(|v| v > duration) {
                return Err(Refusal::field(name, "beyond the duration"));
            }
        }
    } else if position.is_some() {
        return Err(Refusal::field("duration", "missing (needed with position)"));
    }
    // The watched stretch ends where the seek started, or at the position.
    let end = if seek { from } else { position };
    if let (Some(start), Some(end)) = (played_from, end)
        && start > end
    {
        return Err(Refusal::field(
            "played_from",
            "after the end of the stretch it reports",
        ));
    }
    Ok(ClientEvent {
        event_type,
        foss,
        tutorial,
        language,
        video_id,
        position,
        duration,
        from,
        to,
        played_from,
    })
}

/// A string field: `Ok(None)` when absent or null; refused when empty, too
/// long or not a string.
fn string(map: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, Refusal> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Refusal::field(name, "empty")),
        Some(Value::String(s)) if s.chars().count() > max => Err(Refusal::field(
            name,
            format!("longer than {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Refusal::field(name, "must be a string")),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Another site must not be able to post events for a logged-in user:
/// `Sec-Fetch-Site` when the browser sends it, else the `Origin`, else the
/// `Referer` must be this site (its `Host`) or a configured origin.
pub(crate) fn same_origin(parts: &Parts, allowed: &[String]) -> Result<(), String> {
    let headers = &parts.headers;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN).filter(|o| *o != "null");
    let allowed_origin = origin.is_some_and(|o| {
        let o = o.trim_end_matches('/').to_ascii_lowercase();
        allowed.contains(&o)
    });
    if allowed_origin {
        return Ok(());
    }
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" => Ok(()),
            other => Err(format!("cross-origin request (Sec-Fetch-Site: {other})")),
        };
    }
    let host = text(header::HOST)
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .ok_or("no Host header")?;
    let (what, url) = match (origin, text(header::REFERER)) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return Err("no Origin or Referer header: cannot tell who sent this".into()),
    };
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    if !authority.is_empty() && authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("cross-origin request ({what} is not this site)"))
    }
}

pub(crate) mod rate;
#[cfg(test)]
mod tests;
