//! [`CaptureLayer`]: built from a [`Config`], paired with its [`Shipper`]
//! (as tower-http's `InFlightRequestsLayer::pair` pairs a layer with the
//! loop the app spawns).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::RngCore;
use tokio::sync::{mpsc, watch};
use tower::Layer;
use visitlog_geodb::GeoDb;

use super::service::Capture;
use crate::config::{Config, redact_url};
use crate::enrich::Enricher;
use crate::enrich::route::RoutePattern;
use crate::enrich::ua::UaParser;
use crate::error::ConfigError;
use crate::identity::Identify;
use crate::shared::{EventSettings, Shared};
use crate::shipper::Shipper;
use crate::stats::{Counters, Stats};
use crate::visitor::VisitorTracker;

/// Most captures waiting between the request path and the shipper task.
const CHANNEL_CAPACITY: usize = 8192;

/// Parsed user agents kept in memory.
const UA_CACHE_CAPACITY: usize = 4096;

/// Parsed route templates kept in memory.
const ROUTE_CACHE_CAPACITY: usize = 1024;

/// Wraps a service so that every request becomes a record shipped to Redis.
///
/// Built with [`CaptureLayer::new`], which also returns the [`Shipper`] that
/// the app spawns. Cloning is cheap; all clones feed the same shipper.
#[derive(Clone)]
pub struct CaptureLayer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) identify: Arc<dyn Identify>,
}

impl std::fmt::Debug for CaptureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureLayer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CaptureLayer {
    /// Builds the layer and its shipper from `config`.
    ///
    /// Fails only on invalid configuration. A GeoIP database that cannot be
    /// opened is not an error: the layer logs one warning and records no geo.
    pub fn new(config: Config) -> Result<(Self, Shipper), ConfigError> {
        config.validate()?;
        let client = config.redis_client()?;
        let tutorial = RoutePattern::parse(&config.tutorial_route)
            .map_err(|e| ConfigError::new("VISITLOG_TUTORIAL_ROUTE", &config.tutorial_route, e))?;
        let key = config.cookie_key.clone().unwrap_or_else(|| {
            tracing::warn!(
                "visitlog: no VISITLOG_COOKIE_KEY set; using a random key, so visitor cookies will not survive a restart"
            );
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            key
        });
        let geo = config
            .geodb
            .as_ref()
            .and_then(|path| match GeoDb::open(path) {
                Ok(db) => Some(db),
                Err(e) => {
                    tracing::warn!(error = %e, "visitlog: running without GeoIP");
                    None
                }
            });
        let (tx, rx) = mpsc::channel(config.buffer_records.clamp(1, CHANNEL_CAPACITY));
        let (shutdown_tx, shutdown) = watch::channel(None);
        let counters = Arc::new(Counters::default());
        let shared = Shared {
            tx,
            counters: counters.clone(),
            visitor: VisitorTracker::new(
                &key,
                config.cookie_name.clone(),
                config.cookie_secure,
                config.visit_timeout,
                config.returning_window,
                config.respect_dnt,
            ),
            trusted_proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
            capture_headers: config.capture_headers.clone(),
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
        };
        let enricher = Enricher {
            geo,
            ua: UaParser::new(UA_CACHE_CAPACITY),
            tutorial,
            deny_params: config
                .deny_params
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            anonymize_ip: config.anonymize_ip,
            routes: quick_cache::sync::Cache::new(ROUTE_CACHE_CAPACITY),
            session_mac: Hmac::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
        };
        tracing::debug!(redis = %redact_url(&config.redis_url), queue = %config.queue, "visitlog: capture layer ready");
        let shipper = Shipper {
            rx,
            enricher,
            client,
            config: config.clone(),
            counters,
            shutdown,
            shutdown_tx,
        };
        let layer = Self {
            shared: Arc::new(shared),
            identify: Arc::new(()),
        };
        Ok((layer, shipper))
    }

    /// Sets the hook that says who the user is and what the session is.
    pub fn identify(mut self, hook: impl Identify) -> Self {
        self.identify = Arc::new(hook);
        self
    }

    /// Counters since the layer was built.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }
}

impl<S> Layer<S> for CaptureLayer {
    type Service = Capture<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Capture::new(inner, self.shared.clone(), self.identify.clone())
    }
}
