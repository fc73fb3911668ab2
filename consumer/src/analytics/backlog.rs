//! Backlogs first: while the queue has a backlog, the derivation loop
//! waits, up to a bound, so the server's time goes to storing records.
//!
//! After an outage, or under a burst, the records waiting in Redis are what
//! is at risk (Redis memory, a failover's loss); the figures are not: their
//! marks stay, and every key is computed later from what is stored. A visit
//! computed while its records still arrive is computed again at the next
//! interval, so deferring also saves work: each key is computed once for
//! the whole backlog instead of once per interval while it drains. Matomo
//! makes the same trade with its archiving, which runs apart from tracking
//! and refreshes today's reports at most every few minutes.
//!
//! The fetch loop reports each claim: a full batch means more is waiting,
//! a short one that the queue is drained, and a failed one (Redis away)
//! that nothing can be taken meanwhile. The loop defers a pass while the
//! last claim was full, at most [`MAX_DEFERRED_INTERVALS`] derive intervals
//! since the last pass, so figures still move under a load the consumers
//! never catch up with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// At most this many derive intervals between passes while a backlog
/// lasts (60 s at the default `derive-interval` of 10 s).
pub const MAX_DEFERRED_INTERVALS: u32 = 6;

/// Whether this consumer's last claim found more waiting than a batch.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<AtomicBool>);

impl Backlog {
    /// What a claim found: `taken` records where a batch holds `batch_size`.
    pub fn claimed(&self, taken: usize, batch_size: usize) {
        self.0.store(taken >= batch_size, Ordering::Relaxed);
    }

    /// Whether the last claim was a full batch.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether a pass due now waits: a backlog, and less than the bound
    /// since the last pass began.
    pub fn defers(&self, since_last_pass: Duration, interval: Duration) -> bool {
        self.is_on() && since_last_pass < Self::bound(interval)
    }

    /// The longest wait between passes: [`MAX_DEFERRED_INTERVALS`] intervals.
    pub fn bound(interval: Duration) -> Duration {
        interval.saturating_mul(MAX_DEFERRED_INTERVALS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_defers_passes_up_to_the_bound() {
        let b = Backlog::default();
        let interval = Duration::from_secs(10);
        assert!(!b.defers(Duration::ZERO, interval), "no claim yet");
        b.claimed(1000, 1000);
        assert!(b.is_on());
        assert!(b.defers(Duration::from_secs(1), interval));
        assert!(b.defers(Duration::from_secs(59), interval));
        assert!(!b.defers(Duration::from_secs(60), interval), "the bound");
        // A clone shares the state: the fetch loop and the derivation loop.
        let seen = b.clone();
        b.claimed(999, 1000);
        assert!(!seen.defers(Duration::from_secs(1), interval), "drained");
        b.claimed(0, 1000);
        assert!(!seen.is_on());
    }
}
