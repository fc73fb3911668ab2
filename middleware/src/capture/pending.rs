//! [`Pending`]: the guard that owns a request's unfinished record from `call`
//! until the response body ends, and hands it to the shipper when dropped.
//!
//! Finishing lives in this one `Drop`, whichever way the request ends: the
//! body ended or failed (the body drops the guard), the client went away
//! before the response head (the future is dropped with it, status 499), the
//! client went away mid-body (the body is dropped with it), or the inner
//! service failed (status 500). Like tower-http's in-flight guard, nothing has
//! to remember to call it.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use super::service::NotRecorded;
use crate::enrich::Captured;
use crate::shared::{Item, Shared};
use crate::stats::Counters;

/// Status recorded when the client went away before the response was ready
/// (nginx's convention).
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request's record on its way through the inner service and the body.
pub(crate) struct Pending(Option<Box<Unfinished>>);

/// Boxed so that the future and the body stay small to move.
struct Unfinished {
    shared: Arc<Shared>,
    start: Instant,
    set_cookie: Option<HeaderValue>,
    /// Set once the response head is known: latency is time to the head.
    responded: bool,
    /// Handed to the shipper when done; false when sampled out or when the
    /// response says [`NotRecorded`].
    keep: bool,
    captured: Captured,
}

impl Pending {
    /// Starts the record; until a response head arrives it says 499.
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Instant,
        set_cookie: Option<HeaderValue>,
        mut captured: Captured,
        keep: bool,
    ) -> Self {
        captured.status = CLIENT_CLOSED_REQUEST;
        Self(Some(Box::new(Unfinished {
            shared,
            start,
            set_cookie,
            responded: false,
            keep,
            captured,
        })))
    }

    /// No record: a request the app skips.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Stamps the response head: status, latency, a late [`Identity`] from
    /// the handler, and the visitor cookie the response must carry.
    pub(crate) fn respond<B>(&mut self, response: &mut Response<B>) {
        let Some(u) = self.0.as_mut() else { return };
        u.responded = true;
        u.captured.latency = u.start.elapsed();
        u.captured.status = response.status().as_u16();
        u.captured.content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        if let Some(identity) = u.shared.identify_response(response.extensions()) {
            u.captured.identity = identity;
        }
        if response.extensions().get::<NotRecorded>().is_some() {
            u.keep = false;
            u.captured.sample_rate = None;
        }
        if let Some(cookie) = u.set_cookie.take() {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
        if let Some(accept_ch) = &u.shared.accept_ch
            && is_html(&u.captured.content_type)
        {
            response.headers_mut().insert(
                http::header::HeaderName::from_static("accept-ch"),
                accept_ch.clone(),
            );
        }
    }

    /// The inner service failed: the server turns that into a 500 (or a
    /// reset). Finishes the record.
    pub(crate) fn fail(mut self) {
        if let Some(u) = self.0.as_mut() {
            u.captured.status = StatusCode::INTERNAL_SERVER_ERROR.as_u16();
        }
    }

    /// Counts body bytes sent to the client.
    pub(crate) fn sent(&mut self, bytes: usize) {
        if let Some(u) = self.0.as_mut() {
            u.captured.bytes_sent += bytes as u64;
        }
    }

    /// Finishes the record now (dropping the guard does the same).
    pub(crate) fn finish(self) {}
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(u) = self.0.take() else { return };
        let Unfinished {
            shared,
            start,
            responded,
            keep,
            mut captured,
            ..
        } = *u;
        if !keep {
            let counter = match captured.sample_rate {
                Some(_) => &shared.counters.sampled_out,
                None => &shared.counters.skipped,
            };
            Counters::add(counter, 1);
            return;
        }
        if !responded {
            captured.latency = start.elapsed();
        }
        shared.hand_over(Item::Request(captured));
    }
}

/// Browsers act on `Accept-CH` in navigation responses: HTML pages.
fn is_html(content_type: &Option<HeaderValue>) -> bool {
    content_type.as_ref().is_some_and(|v| {
        v.as_bytes()
            .get(..9)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"text/html"))
    })
}
