//! The numbers behind every figure: timeouts, caps and thresholds, in one
//! place, with the defaults the README states.

use std::time::Duration;

/// How raw and derived documents become analytics figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyticsRules {
    /// Longest time on page estimated from the next page view of the same
    /// visit (the middleware's visit timeout, Matomo's 30 minutes).
    pub visit_timeout: Duration,
    /// A learner's new session starts after this long without a request or
    /// event (ELAT's 30 minutes idle); a gap of exactly this long does not split.
    pub session_timeout: Duration,
    /// Most engaged time one ping may add (its `active_ms` beyond this is
    /// not believed: the page pings every 15 s).
    pub engaged_cap: Duration,
    /// A session of one page view with less engaged time than this is a bounce.
    pub bounce_engaged_s: f64,
    /// A session shorter than this is flagged `short` (kept, not dropped).
    pub short_session_s: f64,
    /// Width of the `video_stats` segments, in seconds (progress counts
    /// views per [`visitlog_progress::SEGMENT_S`]).
    pub segment_s: u32,
    /// Pings later than this after their page was served are not its own
    /// (a tab left open for days, or a forged id).
    pub ping_horizon: Duration,
    /// Entries in the `site_daily` top lists.
    pub top_n: usize,
    /// The progress rules `video_s` is credited by.
    pub progress: visitlog_progress::Rules,
}

impl Default for AnalyticsRules {
    fn default() -> Self {
        Self {
            visit_timeout: Duration::from_secs(30 * 60),
            session_timeout: Duration::from_secs(30 * 60),
            engaged_cap: Duration::from_secs(20),
            bounce_engaged_s: 10.0,
            short_session_s: 5.0,
            segment_s: visitlog_progress::SEGMENT_S,
            ping_horizon: Duration::from_secs(24 * 3600),
            top_n: 20,
            progress: visitlog_progress::Rules::default(),
        }
    }
}

impl AnalyticsRules {
    /// The engaged seconds one ping adds: `min(active_ms, engaged_cap)`.
    pub fn engaged_of(&self, active_ms: Option<u64>) -> f64 {
        let cap = u64::try_from(self.engaged_cap.as_millis()).unwrap_or(u64::MAX);
        active_ms.unwrap_or(0).min(cap) as f64 / 1000.0
    }
}
