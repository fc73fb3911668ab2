//! Retrying: one capped exponential backoff with jitter, and one loop that
//! sleeps it between attempts while listening for shutdown. Every retry in
//! the consumer goes through here, so none can keep a stopping daemon
//! asleep, and none retries in a busy loop.

use std::time::Duration;

use rand::Rng;

use crate::shutdown::Shutdown;

/// The first pause of a fresh backoff.
const FIRST: Duration = Duration::from_millis(100);

/// Capped exponential backoff with ±20 % jitter; [`Backoff::reset`] on success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// From 100 ms, doubling up to `max`.
    pub(crate) fn new(max: Duration) -> Self {
        Self::starting_at(FIRST.min(max), max)
    }

    /// From `first`, doubling up to `max`.
    pub(crate) fn starting_at(first: Duration, max: Duration) -> Self {
        Self {
            first,
            next: first,
            max,
        }
    }

    /// The pause before the next attempt, doubling the one after.
    pub(crate) fn pause(&mut self) -> Duration {
        let pause = self.next.mul_f64(rand::rng().random_range(0.8..1.2));
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Back to the first pause (an attempt succeeded).
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A backoff that gives way to a shutdown signal while it sleeps.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    backoff: Backoff,
    stop: Shutdown,
}

impl Retry {
    /// Pauses of `backoff`, cut short by `stop`.
    pub(crate) fn new(backoff: Backoff, stop: Shutdown) -> Self {
        Self { backoff, stop }
    }

    /// Sleeps the next pause; `false` if `stop` fired first (or had fired).
    pub(crate) async fn pause(&mut self) -> bool {
        if self.stop.is_requested() {
            return false;
        }
        tokio::select! {
            () = self.stop.requested() => false,
            () = tokio::time::sleep(self.backoff.pause()) => true,
        }
    }

    /// Back to the first pause (an attempt succeeded).
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
    }

    /// Runs `op` until it succeeds, pausing between attempts: `Ok(None)` if
    /// `stop` fired first; `Err` when `on_error` gives up on an error
    /// (returns it) instead of taking it as worth another attempt.
    pub(crate) async fn until_ok<T, E, F, Fut>(
        &mut self,
        mut op: F,
        mut on_error: impl FnMut(E) -> Result<(), E>,
    ) -> Result<Option<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            match op().await {
                Ok(v) => {
                    self.reset();
                    return Ok(Some(v));
                }
                Err(e) => on_error(e)?,
            }
            if !self.pause().await {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(350));
        let pauses: Vec<u128> = (0..4).map(|_| b.pause().as_millis()).collect();
        assert!((80..120).contains(&pauses[0]), "{pauses:?}");
        assert!((160..240).contains(&pauses[1]), "{pauses:?}");
        assert!((280..420).contains(&pauses[2]), "{pauses:?}");
        assert!((280..420).contains(&pauses[3]), "{pauses:?}");
        b.reset();
        assert!(b.pause() < Duration::from_millis(120));
    }

    #[tokio::test]
    async fn a_sleeping_retry_wakes_up_for_shutdown() {
        let (tx, stop) = Shutdown::manual();
        let mut retry = Retry::new(Backoff::new(Duration::from_secs(60)), stop);
        let mut attempts = 0;
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            retry.until_ok(
                || {
                    attempts += 1;
                    if attempts == 3 {
                        let _ = tx.send(true);
                    }
                    std::future::ready(Err::<(), _>("down"))
                },
                |_| Ok(()),
            ),
        )
        .await
        .expect("shutdown ends the retry");
        assert_eq!(outcome, Ok(None));
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn a_fatal_error_ends_the_retry() {
        let (_tx, stop) = Shutdown::manual();
        let mut retry = Retry::new(Backoff::new(Duration::from_secs(1)), stop);
        let outcome: Result<Option<()>, &str> = retry
            .until_ok(|| std::future::ready(Err("bad uri")), Err)
            .await;
        assert_eq!(outcome, Err("bad uri"));
    }
}
