//! `/metrics`: the Prometheus (OpenMetrics) text of this instance's
//! counters, the last sample's gauges, the dependencies' states and the
//! batch-latency histogram.
//!
//! Counter names follow one order, `visitlog_consumer_<noun>_<verb>_total`.
//! Four older names did not (`records_duplicate`, `derived_documents`,
//! `batches`, `batch_retries`); since dashboards and alerts use them, they
//! are still exported beside the new ones for this release.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::COMMIT;
use super::state::StatusState;

/// One counter: its name, its old name if it was renamed, its help.
struct Counter {
    name: &'static str,
    old_name: Option<&'static str>,
    help: &'static str,
    value: u64,
}

impl StatusState {
    /// The Prometheus text exposition.
    pub fn metrics_text(&self) -> String {
        let mut registry = Registry::with_prefix("visitlog_consumer");
        let m = self.metrics.snapshot();
        let counter = |name, old_name, help, value| Counter {
            name,
            old_name,
            help,
            value,
        };
        let counters = [
            counter(
                "records_stored",
                None,
                "Records stored in MongoDB by this instance (requests and events)",
                m.stored,
            ),
            counter(
                "records_duplicated",
                Some("records_duplicate"),
                "Records skipped as already stored (redelivered)",
                m.duplicates,
            ),
            counter(
                "records_dead_lettered",
                None,
                "Records sent to dead_letters",
                m.dead_lettered,
            ),
            counter(
                "documents_derived",
                Some("derived_documents"),
                "video_positions and tutorial_progress documents written",
                m.derived,
            ),
            counter(
                "batches_completed",
                Some("batches"),
                "Batches completed",
                m.batches,
            ),
            counter(
                "batches_retried",
                Some("batch_retries"),
                "Batch attempts that failed and were retried",
                m.retries,
            ),
            counter(
                "records_reaped",
                None,
                "Records given back to the queue from dead instances",
                m.reaped,
            ),
            counter(
                "links_recorded",
                None,
                "learner_links written as new or earlier (a login on a browser)",
                m.links,
            ),
        ];
        for c in counters {
            registry.register(c.name, c.help, ConstCounter::new(c.value));
            if let Some(old) = c.old_name {
                let help = format!("{} (old name of {}_total)", c.help, c.name);
                registry.register(old, help, ConstCounter::new(c.value));
            }
        }
        if let Some(s) = self.last_sample() {
            let gauges: [(&str, &str, i64); 5] = [
                (
                    "queue_pending",
                    "Records waiting on the queue",
                    s.lengths.pending as i64,
                ),
                (
                    "processing_records",
                    "Records in processing lists",
                    s.lengths.processing_total() as i64,
                ),
                (
                    "queue_stranded_records",
                    "Records on lists of the queue this shard count never reads (VISITLOG_QUEUE_SHARDS differs between the apps and the consumers)",
                    s.lengths.stranded_total() as i64,
                ),
                (
                    "consumers_online",
                    "Instances with a live heartbeat",
                    s.consumers.len() as i64,
                ),
                (
                    "dead_letters",
                    "Documents in dead_letters",
                    s.dead_letters.unwrap_or(0) as i64,
                ),
            ];
            for (name, help, value) in gauges {
                registry.register(name, help, ConstGauge::new(value));
            }
            if let Some(d) = s.derivations {
                registry.register(
                    "derivation_lag_seconds",
                    "How long the oldest analytics key due to be computed again has waited past its due time",
                    ConstGauge::new(d.lag_seconds),
                );
                registry.register(
                    "derivations_pending",
                    "Analytics keys marked to be computed again",
                    ConstGauge::new(d.pending as i64),
                );
            }
            registry.register(
                "queue_oldest_pending_age_seconds",
                "Age of the record at the head of the queue (0 when empty)",
                ConstGauge::new(s.oldest_pending_age_seconds.unwrap_or(0.0)),
            );
        }
        if let Some(lag) = self.lag_seconds(self.last_sample().as_ref()) {
            registry.register(
                "lag_seconds",
                "Now minus the newest stored record's time while records wait; 0 when none waits",
                ConstGauge::new(lag),
            );
        }
        let up = Family::<Vec<(String, String)>, Gauge>::default();
        let (redis, mongodb) = self.dependencies.snapshot();
        for (name, state) in [("redis", redis), ("mongodb", mongodb)] {
            up.get_or_create(&vec![("dependency".to_owned(), name.to_owned())])
                .set(i64::from(state.is_some_and(|s| s.state == "ok")));
        }
        registry.register(
            "dependency_up",
            "1 when the dependency answered last time",
            up,
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("commit".to_owned(), COMMIT.to_owned()),
        ])
        .set(1);
        registry.register("build_info", "Version and commit; always 1", info);
        registry.register(
            "batch_duration_seconds",
            "Time MongoDB took to store a batch",
            self.histogram.clone(),
        );
        let mut out = String::new();
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `/metrics`.
pub(super) async fn metrics(State(state): State<Arc<StatusState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics_text(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fleet::InstanceStatus;
    use crate::internal_events::{Dependencies, Metrics};

    /// Renamed counters are exported under both names for this release.
    #[tokio::test]
    async fn renamed_counters_keep_their_old_names_too() {
        let metrics = Arc::new(Metrics::default());
        Metrics::add(&metrics.derived, 3);
        Metrics::add(&metrics.batches, 2);
        let source = crate::source::Source::new(
            visitlog_schema::RedisTarget::new(
                visitlog_schema::RedisMode::Standalone,
                "redis://127.0.0.1:1",
                None,
                None,
            )
            .unwrap(),
            "q",
            visitlog_schema::keys::QueueKeys::new("q", 1, false),
            "c",
            1,
            std::time::Duration::from_millis(10),
        );
        let sink = crate::sink::Sink::new("mongodb://127.0.0.1:1", "db")
            .await
            .unwrap();
        let state = StatusState::new(
            InstanceStatus::this_process("c"),
            "q".into(),
            metrics,
            None,
            source,
            sink,
            Arc::new(Dependencies::default()),
        );
        let text = state.metrics_text();
        for line in [
            "visitlog_consumer_documents_derived_total 3",
            "visitlog_consumer_derived_documents_total 3",
            "visitlog_consumer_batches_completed_total 2",
            "visitlog_consumer_batches_total 2",
            "visitlog_consumer_records_duplicated_total 0",
            "visitlog_consumer_records_duplicate_total 0",
            "visitlog_consumer_batches_retried_total 0",
            "visitlog_consumer_batch_retries_total 0",
            "visitlog_consumer_records_stored_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
