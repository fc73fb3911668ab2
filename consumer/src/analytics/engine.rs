//! The derivation loop: every second, for each kind in dependency order,
//! claim the due marks, compute their documents from what is stored, write
//! them, mark what they feed (and the keys of the same kind they hand their
//! work over to), and settle the claims. Runs in every consumer with
//! analytics on; the claims keep two consumers off the same key.

use std::time::Duration;

use visitlog_analytics::AnalyticsRules;

use super::backlog::Backlog;
use super::marks::{Claimed, DerivedKind, Mark, Marks};
use crate::error::Result;
use crate::shutdown::Shutdown;
use crate::sink::Sink;

/// Keys claimed at once: one round of reads per kind.
const CLAIM: i64 = 200;

/// Batch documents claimed at once: each lists up to 1,000 marks, and the
/// expansion's writes must end well within the lease on a slow server.
const CLAIM_BATCHES: i64 = 20;

/// How long a claim holds: well past any computation's time, so that only
/// a consumer that died lets another take its keys.
pub const LEASE: Duration = Duration::from_secs(120);

/// What the derivations need.
#[derive(Debug, Clone)]
pub struct Analytics {
    pub(super) sink: Sink,
    pub(super) marks: Marks,
    pub(super) rules: AnalyticsRules,
    backlog: Backlog,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Documents written or deleted (one whose figures did not change is
    /// not written again).
    pub written: u64,
    /// Keys computed.
    pub keys: u64,
}

/// What one computation of claimed keys did.
#[derive(Debug, Default)]
pub(super) struct Computed {
    /// Documents written or deleted.
    pub(super) written: u64,
    /// The keys of later kinds the writes feed.
    pub(super) feeds: Vec<Mark>,
    /// Keys of the same kind that own what a claimed key named (a page's
    /// visit): marked due at once, the claimed key's mark having waited
    /// its interval already, and computed in the same pass.
    pub(super) handed: Vec<Mark>,
}

impl Analytics {
    /// Derivations on `sink`'s database by `owner`, computing a touched key
    /// within `interval`.
    pub fn new(sink: Sink, rules: AnalyticsRules, interval: Duration, owner: &str) -> Self {
        let marks = Marks::new(sink.database(), interval, LEASE, owner);
        Self {
            sink,
            marks,
            rules,
            backlog: Backlog::default(),
        }
    }

    /// The marks, for a batch to write its own.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// What the fetch loop reports, for the derivations to wait while the
    /// queue has a backlog.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Derives until `shutdown` fires. A failed pass is logged and tried
    /// again a little later: its marks stay, and claims lapse by themselves.
    /// While the queue has a backlog, passes wait ([`Backlog::defers`]).
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut pause = Duration::from_secs(1);
        let mut last_pass: Option<std::time::Instant> = None;
        let mut deferring = false;
        let interval = self.marks.interval();
        loop {
            let defer = last_pass.is_some_and(|t| self.backlog.defers(t.elapsed(), interval));
            if defer != deferring {
                deferring = defer;
                if defer {
                    tracing::info!(
                        at_most_s = Backlog::bound(interval).as_secs(),
                        "queue backlog: analytics wait until it is drained"
                    );
                }
            }
            if defer {
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            last_pass = Some(std::time::Instant::now());
            match self.pass().await {
                Ok(passed) => {
                    if passed.written > 0 {
                        tracing::debug!(
                            documents = passed.written,
                            keys = passed.keys,
                            "analytics derived"
                        );
                    }
                    pause = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "analytics derivation failed; trying again");
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass over every kind, in dependency order, until no key of a
    /// kind is due.
    pub async fn pass(&self) -> Result<Passed> {
        let mut passed = Passed::default();
        for kind in DerivedKind::ORDER {
            let limit = match kind {
                DerivedKind::Batch => CLAIM_BATCHES,
                _ => CLAIM,
            };
            loop {
                let claimed = self.marks.claim(kind, limit).await?;
                if claimed.is_empty() {
                    break;
                }
                let started = std::time::Instant::now();
                let computed = self.compute(kind, &claimed).await?;
                tracing::debug!(
                    kind = kind.as_str(),
                    keys = claimed.len(),
                    documents = computed.written,
                    ms = started.elapsed().as_millis() as u64,
                    "derived"
                );
                passed.written += computed.written;
                passed.keys += claimed.len() as u64;
                // Before settling: a crash in between leaves the claimed
                // marks, computed again once their lease lapses.
                self.marks.mark(computed.feeds).await?;
                let handed = !computed.handed.is_empty();
                self.marks.mark_now(computed.handed).await?;
                // What one key cost: the tutorial days claimed together
                // share one read of their day, so each cost all of it.
                let cost = match kind {
                    DerivedKind::TutorialDay => started.elapsed(),
                    _ => started.elapsed() / u32::try_from(claimed.len()).unwrap_or(u32::MAX),
                };
                self.marks.settle_after(&claimed, cost).await?;
                if (claimed.len() as i64) < limit && !handed {
                    break;
                }
            }
        }
        Ok(passed)
    }

    async fn compute(&self, kind: DerivedKind, claimed: &[Claimed]) -> Result<Computed> {
        match kind {
            DerivedKind::Batch => {
                let keys = self.marks.expand(claimed).await?;
                tracing::debug!(batches = claimed.len(), keys, "batches' marks expanded");
                Ok(Computed::default())
            }
            DerivedKind::Visit => self.visits(claimed).await,
            DerivedKind::Learner => self.learners(claimed).await,
            DerivedKind::Video => self.videos(claimed).await,
            DerivedKind::Videos => self.video_index(claimed).await,
            DerivedKind::TutorialDay => self.tutorial_days(claimed).await,
            DerivedKind::Day => self.days(claimed).await,
            DerivedKind::Month => self.months(claimed).await,
        }
    }
}
