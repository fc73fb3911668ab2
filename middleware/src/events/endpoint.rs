//! The handler: from an HTTP request to events handed to the shipper, or a
//! [`Refusal`]. Mounted with [`CaptureLayer::events`]; never waits on Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::Utc;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use visitlog_schema::{Learner, limits, user_name};

use super::origin::{is_json, same_origin};
use super::parse::parse_events;
use super::{Refusal, rate};
use crate::capture::{CaptureLayer, NotRecorded};
use crate::shared::{Item, Shared};
use crate::visitor::Visit;

struct Endpoint {
    shared: Arc<Shared>,
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
    /// Who posts is the layer's identity hook at the time of the request, so
    /// `.identify(..)` may come before or after this call. Its POSTs are not
    /// request records (the events are stored): the answers carry
    /// [`NotRecorded`].
    pub fn events<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let endpoint = Arc::new(Endpoint {
            shared: self.shared.clone(),
        });
        axum::routing::post(move |request: Request<Body>| {
            let endpoint = endpoint.clone();
            async move { endpoint.handle(request).await }
        })
    }
}

impl Endpoint {
    async fn handle(&self, request: Request<Body>) -> Response {
        let mut response = match self.accept(request).await {
            Ok(n) => (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response(),
            Err(refusal) => refusal.into_response(),
        };
        response.extensions_mut().insert(NotRecorded);
        response
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
        let identity = self.shared.identify(&parts);
        let visit = parts
            .extensions
            .get::<Visit>()
            .copied()
            .or_else(|| self.shared.visitor.peek(&parts.headers, now));
        let user = match identity.user.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => Some(user_name(u).ok_or_else(|| {
                Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "user names over {} characters cannot record learning progress",
                        limits::SHORT
                    ),
                )
            })?),
        };
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
            record: Box::new(event.stamp(now, &learner, user, visit, identity.staff)),
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
