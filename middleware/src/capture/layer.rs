//! [`CaptureLayer`]: built from a [`Config`], paired with its [`Shipper`]
//! (as tower-http's `InFlightRequestsLayer::pair` pairs a layer with the
//! loop the app spawns).

use std::sync::Arc;

use rand::RngCore;
use tokio::sync::mpsc;
use tower::Layer;

use super::service::Capture;
use crate::config::Config;
use crate::enrich::Enricher;
use crate::error::ConfigError;
use crate::identity::Identify;
use crate::shared::Shared;
use crate::shipper::Shipper;
use crate::stats::{Counters, Stats};

/// Most captures waiting between the request path and the shipper task.
const CHANNEL_CAPACITY: usize = 8192;

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
        let key = cookie_key(&config);
        let (tx, rx) = mpsc::channel(config.buffer_records.clamp(1, CHANNEL_CAPACITY));
        let counters = Arc::new(Counters::default());
        let enricher = Enricher::new(&config, &key)?;
        let shared = Shared::new(&config, &key, tx, counters.clone());
        let shipper = Shipper::new(config, enricher, rx, counters)?;
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

/// The configured key that signs visitor cookies, or a random one (with a
/// warning: cookies then do not survive a restart).
fn cookie_key(config: &Config) -> Vec<u8> {
    config.cookie_key.clone().unwrap_or_else(|| {
        tracing::warn!(
            "visitlog: no VISITLOG_COOKIE_KEY set; using a random key, so visitor cookies will not survive a restart"
        );
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    })
}
