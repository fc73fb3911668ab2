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
    pub(crate) skipped: AtomicU64,
    pub(crate) sampled_out: AtomicU64,
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
            skipped: self.skipped.load(Ordering::Relaxed),
            sampled_out: self.sampled_out.load(Ordering::Relaxed),
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
    /// Requests not recorded because the app said so:
    /// [`crate::CaptureLayer::skip_when`], or a response carrying
    /// [`crate::NotRecorded`] (the learning-events endpoint's POSTs). Not in
    /// `captured`.
    pub skipped: u64,
    /// Requests of visitors left out by [`crate::CaptureLayer::sample`]. Not in
    /// `captured`.
    pub sampled_out: u64,
}

/// The counters under their names in the [`metrics`] facade: what an app's
/// exporter (`metrics-exporter-prometheus`, say) shows.
const COUNTERS: [(&str, &str); 10] = [
    (
        "visitlog_layer_captured_total",
        "records handed to the shipper",
    ),
    ("visitlog_layer_shipped_total", "records Redis acknowledged"),
    (
        "visitlog_layer_dropped_total",
        "records given up (buffer full or shutdown deadline)",
    ),
    (
        "visitlog_layer_send_errors_total",
        "failed connections and RPUSHes to Redis, each retried",
    ),
    (
        "visitlog_layer_rejected_cookies_total",
        "visitor cookies that failed verification",
    ),
    ("visitlog_layer_events_total", "learning events accepted"),
    (
        "visitlog_layer_events_refused_total",
        "learning-event requests refused whole (429 or 503)",
    ),
    (
        "visitlog_layer_catalog_total",
        "catalog publications handed to the shipper",
    ),
    (
        "visitlog_layer_skipped_total",
        "requests not recorded because the app said so",
    ),
    (
        "visitlog_layer_sampled_out_total",
        "requests of visitors left out by sampling",
    ),
];

/// The gauge of records waiting in memory.
const BUFFERED: &str = "visitlog_layer_buffered";

impl Stats {
    fn counters(&self) -> [u64; 10] {
        [
            self.captured,
            self.shipped,
            self.dropped,
            self.send_errors,
            self.rejected_cookies,
            self.events,
            self.events_refused,
            self.catalog,
            self.skipped,
            self.sampled_out,
        ]
    }

    /// Describes the metrics to the installed recorder (once, at spawn).
    pub(crate) fn describe_metrics() {
        for (name, help) in COUNTERS {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
        }
        metrics::describe_gauge!(BUFFERED, metrics::Unit::Count, "records waiting in memory");
    }

    /// Sets the facade's counters to this snapshot. The shipper calls it
    /// every second and at shutdown, off the request path; with no recorder
    /// installed it costs next to nothing.
    pub(crate) fn publish_metrics(&self) {
        for ((name, _), value) in COUNTERS.iter().zip(self.counters()) {
            metrics::counter!(*name).absolute(value);
        }
        metrics::gauge!(BUFFERED).set(self.buffered as f64);
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn stats_reach_the_metrics_facade() {
        let counters = Counters::default();
        Counters::add(&counters.captured, 5);
        Counters::add(&counters.shipped, 3);
        Counters::add(&counters.skipped, 2);
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            Stats::describe_metrics();
            counters.snapshot().publish_metrics();
        });
        let values: std::collections::HashMap<String, DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        assert_eq!(
            values["visitlog_layer_captured_total"],
            DebugValue::Counter(5)
        );
        assert_eq!(
            values["visitlog_layer_shipped_total"],
            DebugValue::Counter(3)
        );
        assert_eq!(
            values["visitlog_layer_skipped_total"],
            DebugValue::Counter(2)
        );
        assert_eq!(
            values["visitlog_layer_dropped_total"],
            DebugValue::Counter(0)
        );
        assert_eq!(
            values["visitlog_layer_buffered"],
            DebugValue::Gauge(2.0.into())
        );
        assert_eq!(values.len(), COUNTERS.len() + 1);
    }

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
