//! [`CaptureLayer`]: built from a [`Config`], paired with its [`Shipper`]
//! (as tower-http's `InFlightRequestsLayer::pair` pairs a layer with the
//! loop the app spawns).

use std::sync::Arc;

use rand::RngCore;
use tokio::sync::mpsc;
use tower::Layer;

use super::policy::Policy;
use super::service::Capture;
use crate::config::Config;
use crate::enrich::Enricher;
use crate::error::ConfigError;
use crate::identity::{FromExtension, Identify, Identity};
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
    policy: Policy,
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
            policy: Policy::default(),
        };
        Ok((layer, shipper))
    }

    /// Sets the hook that says who the user is and what the session is.
    ///
    /// The layer has one hook, shared by every clone of it and by the
    /// learning-events endpoint ([`CaptureLayer::events`]), whichever was set
    /// up first.
    pub fn identify(self, hook: impl Identify) -> Self {
        self.shared.set_identify(Box::new(hook));
        self
    }

    /// Reads who the user is from an extension of the app's own type `T`
    /// (its "current user", with `impl From<&T> for Identity`), in the
    /// request's extensions (an auth layer outside this one put it there) or
    /// in the response's (a handler or middleware inside this one did, e.g.
    /// after reading an async session). See [`FromExtension`].
    pub fn identify_from_extension<T>(self) -> Self
    where
        T: Send + Sync + 'static,
        for<'a> &'a T: Into<Identity>,
    {
        self.identify(FromExtension::<T>::new())
    }

    /// Requests for which `skip` answers true are not recorded: health
    /// checks, static files. They pass through untouched (no visitor
    /// cookie, no record, counted in [`Stats::skipped`]). The test runs on
    /// the request path for every request: keep it to a look at the head.
    ///
    /// ```no_run
    /// # fn f(capture: visitlog_middleware::CaptureLayer) -> visitlog_middleware::CaptureLayer {
    /// capture.skip_when(|req: &axum::http::request::Parts| {
    ///     let path = req.uri.path();
    ///     path == "/healthz" || path.starts_with("/static/")
    /// })
    /// # }
    /// ```
    pub fn skip_when<F>(mut self, skip: F) -> Self
    where
        F: Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    {
        self.policy.skip = Some(Arc::new(skip));
        self
    }

    /// Records only a share `ratio` of visitors (0.1 records one in ten), for
    /// sites too busy to keep every request. The choice is by visitor
    /// cookie, so a kept visitor's visits stay whole (a request without one
    /// is chosen on its own). Each stored record carries `sample_rate`, so
    /// that counts can be scaled by `1 / sample_rate`; the others count in
    /// [`Stats::sampled_out`]. `1.0` records everyone (the default).
    ///
    /// # Panics
    ///
    /// When `ratio` is not in (0, 1]: a programming error, like a zero
    /// `Duration` for an interval.
    pub fn sample(mut self, ratio: f64) -> Self {
        assert!(
            ratio > 0.0 && ratio <= 1.0,
            "CaptureLayer::sample takes a ratio in (0, 1], got {ratio}"
        );
        self.policy.sample = (ratio < 1.0).then_some(ratio);
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
        Capture::new(inner, self.shared.clone(), self.policy.clone())
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
