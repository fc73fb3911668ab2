//! What the status endpoint shows, kept between requests: this instance's
//! batch latencies and newest record, and a sample of the queue and the
//! fleet taken every few seconds (requests are answered from it and never
//! wait on Redis or MongoDB), with an hour of history for the charts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use visitlog_schema::redact_urls_in;

use crate::fleet::{FleetMember, InstanceStatus, QueueLengths, Totals};
use crate::internal_events::{Dependencies, Metrics};
use crate::sink::Sink;
use crate::source::Source;

/// Samples kept for the charts and rates: one hour.
const HISTORY: usize = 720;
/// Batch latencies kept for percentiles.
const LATENCIES: usize = 1024;
/// The lists of other shard counts are read at the first sample and every
/// this many after (a minute at the default `heartbeat-interval`): 257
/// `LLEN`s at every sample kept a cluster client that was failing over
/// too busy to register (a test caught it).
const STRAY_EVERY: u64 = 12;

/// What the status endpoint shows; shared with the worker.
pub struct StatusState {
    pub(crate) instance: InstanceStatus,
    pub(crate) queue: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<String>,
    pub(crate) source: Source,
    pub(crate) sink: Sink,
    pub(crate) dependencies: Arc<Dependencies>,
    pub(super) started_at: tokio::time::Instant,
    latencies: Mutex<VecDeque<f64>>,
    pub(super) histogram: Histogram,
    newest_stored: Mutex<Option<DateTime<Utc>>>,
    sample: Mutex<Option<Sample>>,
    history: Mutex<VecDeque<Point>>,
    /// Samples taken, for [`STRAY_EVERY`].
    samples: std::sync::atomic::AtomicU64,
}

/// One reading of the queue and the fleet.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The queue's and the processing lists' lengths.
    pub lengths: QueueLengths,
    /// Age of the record at the head of the queue, in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Documents in `dead_letters`.
    pub dead_letters: Option<u64>,
    /// Live instances, from their heartbeats.
    pub consumers: Vec<FleetMember>,
    /// Fleet-wide totals since the queue was first consumed.
    pub totals: Totals,
    /// The newest stored record's time, over the fleet.
    pub newest_stored: Option<DateTime<Utc>>,
    /// How far behind the analytics derivations are.
    pub derivations: Option<Derivations>,
    /// What went wrong reading it, if anything.
    pub error: Option<String>,
}

impl Sample {
    fn empty() -> Self {
        Self {
            at: Utc::now(),
            lengths: QueueLengths::default(),
            oldest_pending_age_seconds: None,
            dead_letters: None,
            consumers: Vec::new(),
            totals: Totals::default(),
            newest_stored: None,
            derivations: None,
            error: None,
        }
    }
}

/// The analytics derivations' backlog, over the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Derivations {
    /// How long the oldest due key has waited past its due time, in
    /// seconds (0 when none is due).
    pub lag_seconds: f64,
    /// Keys marked to be computed again.
    pub pending: u64,
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    /// Records waiting.
    pub pending: u64,
    /// Fleet-wide records stored so far.
    pub stored_all: u64,
    /// This instance's records stored so far.
    pub stored: u64,
}

impl StatusState {
    /// Builds the state for one instance.
    pub fn new(
        instance: InstanceStatus,
        queue: String,
        metrics: Arc<Metrics>,
        token: Option<String>,
        source: Source,
        sink: Sink,
        dependencies: Arc<Dependencies>,
    ) -> Self {
        // Batch latency buckets: 5 ms to 30 s.
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Self {
            instance,
            queue,
            metrics,
            token,
            source,
            sink,
            dependencies,
            started_at: tokio::time::Instant::now(),
            latencies: Mutex::new(VecDeque::with_capacity(LATENCIES)),
            histogram: Histogram::new(buckets),
            newest_stored: Mutex::new(None),
            sample: Mutex::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            samples: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Notes one stored batch: how long MongoDB took, and its newest record.
    pub fn batch_stored(&self, took: Duration, newest: Option<DateTime<Utc>>) {
        let seconds = took.as_secs_f64();
        self.histogram.observe(seconds);
        let mut l = lock(&self.latencies);
        if l.len() == LATENCIES {
            l.pop_front();
        }
        l.push_back(seconds * 1000.0);
        drop(l);
        if let Some(ts) = newest {
            let mut n = lock(&self.newest_stored);
            *n = Some(n.map_or(ts, |old| old.max(ts)));
        }
    }

    /// The newest record this instance stored.
    pub fn newest_stored(&self) -> Option<DateTime<Utc>> {
        *lock(&self.newest_stored)
    }

    /// How far behind the stored records are; see [`lag`].
    pub(super) fn lag_seconds(&self, sample: Option<&Sample>) -> Option<f64> {
        lag(sample, self.newest_stored())
    }

    /// The last sample; `None` before the first.
    pub(super) fn last_sample(&self) -> Option<Sample> {
        lock(&self.sample).clone()
    }

    /// The charts' points.
    pub(super) fn history(&self) -> Vec<Point> {
        lock(&self.history).iter().copied().collect()
    }

    /// Batch latencies in milliseconds, sorted.
    pub(super) fn latencies(&self) -> Vec<f64> {
        let mut l: Vec<f64> = lock(&self.latencies).iter().copied().collect();
        l.sort_by(f64::total_cmp);
        l
    }

    /// Reads the queue and the fleet once, and keeps the reading.
    pub async fn sample(&self) {
        let observed = self.source.observe().await;
        match &observed {
            Ok(_) => self.dependencies.redis.ok(),
            Err(e) => self.dependencies.redis.failed(e),
        }
        let redis_ok = observed.is_ok();
        let mut sample = match observed {
            Ok(o) => Sample {
                at: Utc::now(),
                lengths: o.lengths,
                oldest_pending_age_seconds: o.oldest_pending.map(seconds_since),
                dead_letters: None,
                consumers: o.consumers,
                totals: o.totals,
                newest_stored: o.newest_stored,
                derivations: None,
                error: None,
            },
            Err(e) => {
                // Keep the last good figures; say why they are old.
                let mut old = self.last_sample().unwrap_or_else(Sample::empty);
                old.error = Some(format!("Redis: {}", redact_urls_in(&e.to_string())));
                old
            }
        };
        let marks = self.sink.marks();
        let backlog =
            async { Ok::<_, crate::error::Error>((marks.lag().await?, marks.pending().await?)) };
        sample.derivations = match tokio::time::timeout(Duration::from_secs(2), backlog).await {
            Ok(Ok((lag, pending))) => Some(Derivations {
                lag_seconds: lag.as_secs_f64(),
                pending,
            }),
            _ => self.last_sample().and_then(|s| s.derivations),
        };
        match tokio::time::timeout(Duration::from_secs(2), self.sink.dead_letter_estimate()).await {
            Ok(Ok(n)) => sample.dead_letters = Some(n),
            Ok(Err(e)) => {
                sample.dead_letters = self.last_sample().and_then(|s| s.dead_letters);
                sample
                    .error
                    .get_or_insert_with(|| format!("MongoDB: {}", redact_urls_in(&e.to_string())));
            }
            Err(_) => {
                sample.dead_letters = self.last_sample().and_then(|s| s.dead_letters);
                sample
                    .error
                    .get_or_insert_with(|| "MongoDB: no answer within 2 s".to_owned());
            }
        }
        let before = self.last_sample().map(|s| s.lengths.stranded);
        let n = self
            .samples
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sample.lengths.stranded = match (redis_ok, n % STRAY_EVERY) {
            (true, 0) => self.source.stray_lists().await.unwrap_or_else(|e| {
                // Not a reason to lose the other figures (an ACL may allow
                // only this fleet's own keys): the last reading stands.
                tracing::debug!(error = %redact_urls_in(&e.to_string()), "the lists of other shard counts could not be read");
                before.clone().unwrap_or_default()
            }),
            _ => before.clone().unwrap_or_default(),
        };
        warn_of_stranded(before.as_ref(), &sample.lengths.stranded);
        let point = Point {
            t: sample.at.timestamp(),
            pending: sample.lengths.pending,
            stored_all: sample.totals.stored,
            stored: self.metrics.snapshot().stored,
        };
        let mut history = lock(&self.history);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(point);
        drop(history);
        *lock(&self.sample) = Some(sample);
    }

    /// Records stored per second over the last `seconds`, for this instance
    /// and for the fleet, from the sampled history.
    pub(super) fn rates(&self, seconds: i64) -> (Option<f64>, Option<f64>) {
        let history = lock(&self.history);
        let (Some(last), Some(first)) = (history.back(), history.front()) else {
            return (None, None);
        };
        let from = history
            .iter()
            .find(|p| p.t >= last.t - seconds)
            .unwrap_or(first);
        let dt = (last.t - from.t) as f64;
        if dt <= 0.0 {
            return (None, None);
        }
        (
            Some(last.stored.saturating_sub(from.stored) as f64 / dt),
            Some(last.stored_all.saturating_sub(from.stored_all) as f64 / dt),
        )
    }
}

/// Seconds from `t` to now (0 for a time ahead of this clock).
/// Now minus the newest stored record's time (the fleet's, or this
/// instance's) while records wait on the queue or in processing lists, and 0
/// when nothing waits, so that a quiet site does not look late. `None`
/// before anything is known.
fn lag(sample: Option<&Sample>, own_newest: Option<DateTime<Utc>>) -> Option<f64> {
    let idle = sample.is_some_and(|s| {
        s.error.is_none() && s.lengths.pending + s.lengths.processing_total() == 0
    });
    if idle {
        return Some(0.0);
    }
    let newest = sample.and_then(|s| s.newest_stored).max(own_newest);
    newest.map(seconds_since)
}

pub(super) fn seconds_since(t: DateTime<Utc>) -> f64 {
    (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Says so when records start waiting on lists no consumer of this shard
/// count reads, or when the lists holding them change; and when none are
/// left. Once per change, not at every sample; not at the first sample,
/// since the start-up check has just said it.
fn warn_of_stranded(before: Option<&BTreeMap<String, u64>>, now: &BTreeMap<String, u64>) {
    let lists = |m: &BTreeMap<String, u64>| m.keys().cloned().collect::<Vec<_>>();
    let Some(before) = before else {
        return;
    };
    let had = lists(before);
    if now.is_empty() {
        if !had.is_empty() {
            tracing::info!("no records wait on lists of another shard count any more");
        }
        return;
    }
    if had != lists(now) {
        let records: u64 = now.values().sum();
        let where_ = lists(now).join(", ");
        tracing::warn!(records, lists = %where_, "{}", crate::source::STRAY_ADVICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet site is not late: with nothing waiting the lag is 0, however
    /// old the newest stored record; with records waiting it is their age.
    #[test]
    fn lag_is_zero_when_nothing_waits() {
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let mut sample = Sample::empty();
        sample.newest_stored = Some(hour_ago);
        assert_eq!(lag(Some(&sample), None), Some(0.0));
        sample.lengths.pending = 3;
        let behind = lag(Some(&sample), None).unwrap();
        assert!((3590.0..3700.0).contains(&behind), "{behind}");
        sample.lengths.pending = 0;
        sample.error = Some("Redis down".to_owned());
        assert!(lag(Some(&sample), Some(hour_ago)).unwrap() > 3500.0);
        assert_eq!(lag(None, None), None);
    }
}
