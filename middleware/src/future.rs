//! The response future: stamps status, latency and the visitor cookie on the
//! response head and hands the unfinished record to the body.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use uuid::Uuid;

use crate::body::ResponseBody;
use crate::identity::Identity;
use crate::layer::Shared;
use crate::record::{Captured, Item};
use crate::ua::UaInput;
use crate::visitor::Visit;

/// Status recorded when the client went away before the response was ready
/// (nginx's convention).
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request on its way through the inner service.
pub(crate) struct Pending {
    pub(crate) shared: Arc<Shared>,
    pub(crate) start: Instant,
    pub(crate) set_cookie: Option<HeaderValue>,
    pub(crate) id: Uuid,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) route: Option<String>,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) ua: UaInput,
    pub(crate) headers: Vec<(http::HeaderName, HeaderValue)>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) visit: Option<Visit>,
    pub(crate) identity: Identity,
    /// Set when the response head is known.
    pub(crate) status: u16,
    pub(crate) latency: Duration,
}

impl Pending {
    /// Hands the record to the shipper without waiting; counts a drop if it
    /// cannot take it.
    pub(crate) fn finish(self: Box<Self>, bytes_sent: u64) {
        let p = *self;
        let captured = Captured {
            id: p.id,
            ts: p.ts,
            method: p.method,
            uri: p.uri,
            route: p.route,
            status: p.status,
            latency: p.latency,
            bytes_sent,
            referer: p.referer,
            ua: p.ua,
            headers: p.headers,
            client_ip: p.client_ip,
            visit: p.visit,
            identity: p.identity,
        };
        p.shared.hand_over(Item::Request(captured));
    }
}

pin_project! {
    /// Response future of [`crate::Capture`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Box<Pending>>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the inner service answered: the client left.
            if let Some(mut pending) = this.project().pending.take() {
                pending.latency = pending.start.elapsed();
                pending.status = CLIENT_CLOSED_REQUEST;
                pending.finish(0);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Box<Pending>) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut pending) = this.pending.take() else {
            // Polled after completion; the inner future decides what that means.
            return Poll::Ready(result.map(|res| res.map(ResponseBody::untracked)));
        };
        pending.latency = pending.start.elapsed();
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(identity) = response.extensions().get::<Identity>() {
                    pending.identity = identity.clone();
                }
                if let Some(cookie) = pending.set_cookie.take() {
                    response
                        .headers_mut()
                        .append(http::header::SET_COOKIE, cookie);
                }
                pending.status = response.status().as_u16();
                Ok(response.map(|body| ResponseBody::new(body, pending)))
            }
            Err(e) => {
                // The server turns a service error into a 500 (or a reset).
                pending.status = StatusCode::INTERNAL_SERVER_ERROR.as_u16();
                pending.finish(0);
                Err(e)
            }
        })
    }
}
