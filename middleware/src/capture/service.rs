//! [`Capture`]: the service that [`crate::CaptureLayer`] wraps around yours.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::Utc;
use http::{Request, Response};
use tokio::time::Instant;
use tower::Service;
use uuid::Uuid;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::pending::Pending;
use super::policy::Policy;
use crate::enrich::ua::UaInput;
use crate::enrich::{Captured, client_ip};
use crate::shared::Shared;
use crate::stats::Counters;

/// The route template a non-axum router matched, put in the request
/// extensions so the layer records it (axum's `MatchedPath` is read directly).
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Arc<str>);

/// Captures every request passing through `S`. Built by [`crate::CaptureLayer`].
///
/// `call` never waits on anything but the inner service: the record is
/// finished when the response body ends and handed to the shipper with a
/// non-blocking `try_send`.
#[derive(Clone)]
pub struct Capture<S> {
    inner: S,
    shared: Arc<Shared>,
    policy: Policy,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Capture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("inner", &self.inner)
            .field("stats", &self.shared.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl<S> Capture<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, policy: Policy) -> Self {
        Self {
            inner,
            shared,
            policy,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Capture<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let ts = Utc::now();
        let (mut parts, body) = request.into_parts();
        let shared = &self.shared;
        if self.policy.skips(&parts) {
            Counters::add(&shared.counters.skipped, 1);
            let future = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture::new(future, Pending::none());
        }
        let identity = shared.identify(&parts);
        let observed = shared.visitor.observe(&parts.headers, ts);
        if observed.rejected {
            Counters::add(&shared.counters.rejected_cookies, 1);
        }
        let id = Uuid::now_v7();
        let keep = self
            .policy
            .keeps(observed.visit.map_or(id, |visit| visit.visitor_id));
        let client_ip = client_ip::resolve(
            peer_ip(&parts.extensions),
            &parts.headers,
            &shared.trusted_proxies,
            shared.forwarded_header,
        );
        let headers = shared
            .capture_headers
            .iter()
            .filter_map(|name| Some((name.clone(), parts.headers.get(name)?.clone())))
            .collect();
        let captured = Captured {
            id,
            ts,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            route: matched_route(&parts.extensions),
            // Set by the guard: 499 until the response head arrives.
            status: 0,
            latency: std::time::Duration::ZERO,
            bytes_sent: 0,
            referer: parts.headers.get(http::header::REFERER).cloned(),
            ua: UaInput::from_headers(&parts.headers),
            headers,
            client_ip,
            visit: observed.visit,
            identity,
            content_type: None,
            request_id: parts.headers.get(X_REQUEST_ID).cloned(),
            sample_rate: self.policy.sample,
        };
        // Handlers behind the layer (the learning-events endpoint) read the visit here.
        if let Some(visit) = captured.visit {
            parts.extensions.insert(visit);
            parts.extensions.insert(VisitorId(visit.visitor_id));
        }
        // A page embeds it as its page view id (learning events cite it).
        // Sampled out, the request makes no record, so it has no id to cite.
        if keep {
            parts.extensions.insert(RecordId(captured.id));
        }
        let pending = Pending::new(
            Arc::clone(shared),
            start,
            observed.set_cookie,
            captured,
            keep,
        );
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(future, pending)
    }
}

/// The id of the request record this request makes, as a request
/// extension for the handlers behind the layer: a tutorial page embeds it
/// (`data-page-view`) so that its learning events name the page view they
/// come from.
///
/// ```
/// # use axum::Extension;
/// # use visitlog_middleware::RecordId;
/// async fn page(Extension(RecordId(id)): Extension<RecordId>) -> String {
///     format!("<video data-page-view=\"{id}\">")
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId(pub Uuid);

/// The visitor id of the request's first-party cookie, as a request
/// extension for the handlers behind the layer (absent when the browser
/// asked not to be tracked). It is the `visitor_id` of the request's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VisitorId(pub Uuid);

/// Put in a response's extensions, it tells the layer not to record the
/// request (counted in [`crate::Stats::skipped`]). The learning-events
/// endpoint's answers carry it: the events are stored, their POSTs are not
/// page traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotRecorded;

/// The header whose value the record keeps as `request_id`.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The socket peer: axum's `ConnectInfo<SocketAddr>`, or a plain `SocketAddr`
/// extension that any hyper server loop can insert.
fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The route template the framework matched, when it tells us.
fn matched_route(extensions: &http::Extensions) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return Some(path.as_str().to_owned());
    }
    extensions.get::<MatchedRoute>().map(|r| r.0.to_string())
}
