//! What the layer has done: [`Counters`], bumped by the request path, the
//! events endpoint and the shipper task, and [`Stats`], the snapshot the app
//! reads from the layer or the shipper's handle.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the layer, the shipper and the app.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) captured: AtomicU64,
    pub(crate) shipped: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) rejected_cookies: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) events_refused: AtomicU64,
    pub(crate) catalog: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let captured = self.captured.load(Ordering::Relaxed);
        let shipped = self.shipped.load(Ordering::Relaxed);
        let dropped = self.dropped.load(Ordering::Relaxed);
        Stats {
            captured,
            shipped,
            dropped,
            buffered: captured.saturating_sub(shipped).saturating_sub(dropped),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            rejected_cookies: self.rejected_cookies.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            events_refused: self.events_refused.load(Ordering::Relaxed),
            catalog: self.catalog.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What the layer has done since it was built; see [`crate::CaptureLayer::stats`].
///
/// `captured == shipped + dropped + buffered` at all times.
///
/// Serialises to a flat JSON object of counters, for an app's status page.
/// New counters may be added in a minor release, hence `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Records handed to the shipper: requests, learning events and catalog
    /// publications.
    pub captured: u64,
    /// Records Redis acknowledged.
    pub shipped: u64,
    /// Records given up: buffer full, or still buffered at the shutdown deadline.
    pub dropped: u64,
    /// Records waiting in memory (channel, buffer, or a batch in flight).
    pub buffered: u64,
    /// Failed connection attempts and `RPUSH`es (each retried).
    pub send_errors: u64,
    /// Visitor cookies that failed verification (forged or tampered).
    pub rejected_cookies: u64,
    /// Learning events accepted by the events endpoint (counted in `captured` too).
    pub events: u64,
    /// Learning-event requests refused whole with 429 (rate limit) or 503
    /// (shipper busy); their events were never captured, the client keeps them.
    pub events_refused: u64,
    /// Catalog publications handed to the shipper by a
    /// [`crate::CatalogPublisher`] (counted in `captured` too).
    pub catalog: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_serialise_as_flat_counters() {
        let counters = Counters::default();
        Counters::add(&counters.captured, 3);
        Counters::add(&counters.shipped, 2);
        let json = serde_json::to_value(counters.snapshot()).expect("plain counters");
        assert_eq!(json["captured"], 3);
        assert_eq!(json["shipped"], 2);
        assert_eq!(json["buffered"], 1);
        assert_eq!(json["events_refused"], 0);
    }
}
