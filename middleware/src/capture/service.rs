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
use crate::enrich::ua::UaInput;
use crate::enrich::{Captured, client_ip};
use crate::identity::Identify;
use crate::shared::Shared;

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
    identify: Arc<dyn Identify>,
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
    pub(crate) fn new(inner: S, shared: Arc<Shared>, identify: Arc<dyn Identify>) -> Self {
        Self {
            inner,
            shared,
            identify,
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
        let identity = self.identify.identify(&parts);
        let observed = shared.visitor.observe(&parts.headers, ts);
        if observed.rejected {
            shared
                .counters
                .rejected_cookies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
            id: Uuid::now_v7(),
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
        };
        // Handlers behind the layer (the learning-events endpoint) read the visit here.
        if let Some(visit) = captured.visit {
            parts.extensions.insert(visit);
        }
        // A page embeds it as its page view id (learning events cite it).
        parts.extensions.insert(RecordId(captured.id));
        let pending = Pending::new(Arc::clone(shared), start, observed.set_cookie, captured);
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
