//! Per-learner rate limit of the events endpoint: a token bucket (GCRA) per
//! learner key, so one learner's script, or a hostile client, cannot fill
//! the channel every request record also goes through.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Checks between two sweeps of buckets that have refilled (and so carry no
/// state worth keeping): memory stays bounded by the learners of the last
/// moments, not all learners ever seen.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket per learner; `None` inside when the limit is off.
pub(crate) struct LearnerLimit {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

impl LearnerLimit {
    /// `rate` requests per second on average, `burst` at once; `rate == 0` is no limit.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let limiter = (rate > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| unreachable!("the period is at least 1 ns"))
                .allow_burst(burst);
            RateLimiter::keyed(quota)
        });
        Self {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token for `learner`; `Err(wait)` says when the next one comes.
    pub(crate) fn check(&self, learner: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&learner.to_owned())
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Learners with a bucket in memory.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

/// `Retry-After` in whole seconds, at least 1 (a 0 would invite a hot loop).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = LearnerLimit::new(2.0, 3);
        for _ in 0..3 {
            assert!(limit.check("user:alice").is_ok());
        }
        let wait = limit.check("user:alice").expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        // Another learner has a bucket of their own.
        assert!(limit.check("user:bob").is_ok());
        std::thread::sleep(Duration::from_millis(600));
        assert!(limit.check("user:alice").is_ok(), "a token came back");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = LearnerLimit::new(0.0, 1);
        for _ in 0..1000 {
            assert!(limit.check("user:alice").is_ok());
        }
        assert_eq!(limit.tracked(), 0);
    }

    #[test]
    fn buckets_of_idle_learners_are_swept() {
        let limit = LearnerLimit::new(1000.0, 1);
        for i in 0..SWEEP_EVERY - 1 {
            let _ = limit.check(&format!("visitor:{i}"));
        }
        assert!(limit.tracked() > 1000);
        std::thread::sleep(Duration::from_millis(20));
        let _ = limit.check("user:last");
        assert!(limit.tracked() < 10, "{}", limit.tracked());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
