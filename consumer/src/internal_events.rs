//! What the consumer counts, in Vector's instrumentation style: one struct
//! per internal event whose `emit` both logs and counts it, so a count and
//! its log line never drift apart; the status page and `stats` read the
//! counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since this instance started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Documents inserted into `request_logs` and `events`.
    pub stored: AtomicU64,
    /// Records already stored (replayed after a crash or redelivered).
    pub duplicates: AtomicU64,
    /// Records sent to `dead_letters`.
    pub dead_lettered: AtomicU64,
    /// Derived documents written (`video_positions`, `tutorial_progress`).
    pub derived: AtomicU64,
    /// Batches completed.
    pub batches: AtomicU64,
    /// Batch attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Records given back to the queue from dead instances.
    pub reaped: AtomicU64,
    /// `learner_links` documents written as new or earlier (replays too).
    pub links: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// See [`Metrics::stored`].
    pub stored: u64,
    /// See [`Metrics::duplicates`].
    pub duplicates: u64,
    /// See [`Metrics::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Metrics::derived`].
    pub derived: u64,
    /// See [`Metrics::batches`].
    pub batches: u64,
    /// See [`Metrics::retries`].
    pub retries: u64,
    /// See [`Metrics::reaped`].
    pub reaped: u64,
    /// See [`Metrics::links`].
    pub links: u64,
}

impl MetricsSnapshot {
    /// The counters the fleet adds up (see [`crate::fleet::Totals`]).
    pub fn totals(&self) -> crate::fleet::Totals {
        crate::fleet::Totals {
            stored: self.stored,
            duplicates: self.duplicates,
            dead_lettered: self.dead_lettered,
            derived: self.derived,
            retries: self.retries,
            batches: self.batches,
        }
    }
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            dead_lettered: get(&self.dead_lettered),
            derived: get(&self.derived),
            batches: get(&self.batches),
            retries: get(&self.retries),
            reaped: get(&self.reaped),
            links: get(&self.links),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Logs a dependency's state only when it changes, not on every retry, and
/// remembers it for the status page.
#[derive(Debug)]
pub(crate) struct StateLog {
    what: &'static str,
    failing: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<Option<DependencyState>>,
}

/// The states of Redis and MongoDB as one instance sees them.
#[derive(Debug)]
pub struct Dependencies {
    pub(crate) redis: StateLog,
    pub(crate) mongodb: StateLog,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            redis: StateLog::new("Redis"),
            mongodb: StateLog::new("MongoDB"),
        }
    }
}

impl Dependencies {
    /// Redis's and MongoDB's states; `None` before the first attempt.
    pub fn snapshot(&self) -> (Option<DependencyState>, Option<DependencyState>) {
        (self.redis.snapshot(), self.mongodb.snapshot())
    }
}

/// Whether a dependency answers, since when, and its last error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DependencyState {
    /// `ok` or `error`.
    pub state: &'static str,
    /// When it entered this state.
    pub since: chrono::DateTime<chrono::Utc>,
    /// The last error (secrets in URLs masked); kept after recovery.
    pub last_error: Option<String>,
}

impl StateLog {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self {
            what,
            failing: std::sync::atomic::AtomicBool::new(false),
            state: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let message = visitlog_schema::redact_urls_in(&error.to_string());
        let changed = !self.failing.swap(true, Ordering::Relaxed);
        if changed {
            tracing::warn!(error = %message, "{} unavailable; retrying with backoff", self.what);
        }
        self.set("error", Some(message), changed);
    }

    pub(crate) fn ok(&self) {
        let changed = self.failing.swap(false, Ordering::Relaxed);
        if changed {
            tracing::info!("{} available again", self.what);
        }
        self.set("ok", None, changed);
    }

    fn set(&self, state: &'static str, error: Option<String>, changed: bool) {
        let mut slot = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match slot.as_mut() {
            Some(s) => {
                if changed || s.state != state {
                    s.state = state;
                    s.since = chrono::Utc::now();
                }
                if error.is_some() {
                    s.last_error = error;
                }
            }
            None => {
                *slot = Some(DependencyState {
                    state,
                    since: chrono::Utc::now(),
                    last_error: error,
                });
            }
        }
    }

    /// The current state; `None` before the first attempt.
    pub(crate) fn snapshot(&self) -> Option<DependencyState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A batch was stored in MongoDB (derivation and acknowledgement follow).
pub(crate) struct BatchStored<'a>(pub(crate) &'a crate::sink::Stored);

impl BatchStored<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let stored = self.0;
        Metrics::add(&metrics.stored, stored.inserted);
        Metrics::add(&metrics.duplicates, stored.duplicates);
        Metrics::add(&metrics.dead_lettered, stored.dead_lettered);
        Metrics::add(&metrics.links, stored.links);
        if stored.dead_lettered > 0 {
            tracing::warn!(
                records = stored.dead_lettered,
                "records sent to dead_letters"
            );
        }
    }
}

/// A batch attempt (storing or deriving) failed and will be retried.
pub(crate) struct BatchRetried<'a> {
    pub(crate) error: &'a crate::error::Error,
    /// MongoDB's state, failed unless the error says MongoDB is fine.
    pub(crate) mongodb: &'a StateLog,
}

impl BatchRetried<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        match self.error {
            crate::error::Error::Contention(_) => {
                tracing::debug!(error = %self.error, "deriving again");
            }
            _ => self.mongodb.failed(self.error),
        }
        Metrics::add(&metrics.retries, 1);
    }
}

/// Derived documents were written.
pub(crate) struct DocumentsDerived(pub(crate) u64);

impl DocumentsDerived {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        tracing::trace!(documents = self.0, "derived documents written");
        Metrics::add(&metrics.derived, self.0);
    }
}

/// A batch was stored, derived and acknowledged.
pub(crate) struct BatchCompleted;

impl BatchCompleted {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        tracing::trace!("batch completed");
        Metrics::add(&metrics.batches, 1);
    }
}

/// Records of dead instances went back to the queue (each reap is logged
/// per instance where it happens, in `source::reap`).
pub(crate) struct RecordsReaped(pub(crate) u64);

impl RecordsReaped {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.reaped, self.0);
    }
}
