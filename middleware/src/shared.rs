//! The request path's side of the hand-over to the shipper: [`Item`], what
//! travels through the channel, and [`Shared`], what every request needs,
//! built once by [`crate::CaptureLayer::new`] and shared by the capturing
//! service and the learning-events endpoint. `Shared` owns the hand-over, so
//! both count captured and dropped records the same way.
//!
//! It lives apart from the layer so that dependencies point one way:
//! layer → service → future → body → pending guard → `Shared`, and the
//! shipper reads `Item`s without knowing the layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use tokio::sync::mpsc;
use visitlog_schema::{CatalogRecord, EventRecord};

use crate::config::Config;
use crate::enrich::Captured;
use crate::enrich::client_ip::ForwardedHeader;
use crate::identity::{Identify, Identity};
use crate::stats::Counters;
use crate::visitor::VisitorTracker;

/// What travels from the request path to the shipper.
///
/// Requests travel unboxed: they are the hot path, and the channel's slots
/// were sized for them before events shared it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    /// A finished request.
    Request(Captured),
    /// A learning event, stamped; the raw session id is hashed by the shipper.
    Event {
        record: Box<EventRecord>,
        session: Option<String>,
    },
    /// A publication of one FOSS's catalog, checked; shipped as it is.
    Catalog(Box<CatalogRecord>),
}

/// What every request needs, shared by all services the layer made.
pub(crate) struct Shared {
    pub(crate) tx: mpsc::Sender<Item>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) visitor: VisitorTracker,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) capture_headers: Vec<HeaderName>,
    pub(crate) events: EventSettings,
    /// The `Accept-CH` header HTML responses carry, when configured.
    pub(crate) accept_ch: Option<HeaderValue>,
    /// The app's identity hook. One for the layer and the events endpoint,
    /// whichever order the app set them up in.
    identify: ArcSwap<Box<dyn Identify>>,
}

/// How the learning-events endpoint decides who may post.
pub(crate) struct EventSettings {
    pub(crate) anonymous: bool,
    pub(crate) max_bytes: usize,
    pub(crate) origins: Vec<String>,
    #[cfg(feature = "axum")]
    pub(crate) limit: crate::events::rate::LearnerLimit,
}

impl Shared {
    /// The request path's part of `config`; `key` signs visitor cookies.
    pub(crate) fn new(
        config: &Config,
        key: &[u8],
        tx: mpsc::Sender<Item>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            tx,
            counters,
            visitor: VisitorTracker::new(
                key,
                config.cookie_name.clone(),
                config.cookie_secure,
                config.visit_timeout,
                config.returning_window,
                config.respect_dnt,
            ),
            trusted_proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
            capture_headers: config.capture_headers.clone(),
            accept_ch: config
                .accept_ch
                .then_some(HeaderValue::from_static(crate::enrich::ua::ACCEPT_CH)),
            identify: ArcSwap::from_pointee(Box::new(())),
            events: EventSettings {
                anonymous: config.events_anonymous,
                max_bytes: config.events_max_bytes,
                origins: config.events_origins.clone(),
                #[cfg(feature = "axum")]
                limit: crate::events::rate::LearnerLimit::new(
                    config.events_rate,
                    config.events_burst,
                ),
            },
        }
    }

    /// Replaces the identity hook.
    pub(crate) fn set_identify(&self, hook: Box<dyn Identify>) {
        self.identify.store(Arc::new(hook));
    }

    /// Who made the request: an [`Identity`] already in its extensions (an
    /// outer layer's), else the hook's answer.
    pub(crate) fn identify(&self, parts: &http::request::Parts) -> Identity {
        match parts.extensions.get::<Identity>() {
            Some(identity) => identity.clone(),
            None => self.identify.load().identify(parts),
        }
    }

    /// The identity the app learnt while handling the request, if any.
    pub(crate) fn identify_response(&self, extensions: &http::Extensions) -> Option<Identity> {
        self.identify.load().identify_response(extensions)
    }

    /// Hands an item to the shipper without waiting; counts it as captured,
    /// and as dropped when the channel cannot take it. `true` if taken.
    pub(crate) fn hand_over(&self, item: Item) -> bool {
        self.counters.captured.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(e) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::debug!("visitlog: shipper channel full; record dropped");
                }
                false
            }
        }
    }

    /// Hands over all `n` items or none: reserves channel room for every one
    /// first, and leaves a quarter of the channel free for request records,
    /// so a burst of learning events (or a catalog) never crowds page views
    /// out.
    pub(crate) fn hand_over_all(&self, n: usize, items: impl Iterator<Item = Item>) -> bool {
        let headroom = self.tx.max_capacity() / 4;
        if self.tx.capacity() < n.saturating_add(headroom) {
            return false;
        }
        let Ok(permits) = self.tx.try_reserve_many(n) else {
            return false;
        };
        self.counters
            .captured
            .fetch_add(n as u64, Ordering::Relaxed);
        for (permit, item) in permits.zip(items) {
            permit.send(item);
        }
        true
    }
}
