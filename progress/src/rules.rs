//! What counts: when watching completes a tutorial, what a stretch of
//! playback is worth, how much a page may plausibly report, whose visits
//! count, and which request records are tutorial page views.

use visitlog_schema::{EventRecord, EventType, Learner, RequestRecord};

/// How events become progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Coverage of the main video (seconds watched since the latest manual
    /// "incomplete", over the duration) that completes a tutorial
    /// automatically (`completed_rule: "coverage"`).
    pub completion_threshold: f64,
    /// The other way to complete (`completed_rule: "end"`): a stretch of at
    /// least [`Rules::end_min_stretch`] seconds covering the point
    /// max(d − `end_window`, `end_fraction` · d), with coverage of at least
    /// `end_min_coverage` (edx-analytics-pipeline: max(d − 30, 0.95 d)).
    pub end_window: f64,
    /// See [`Rules::end_window`].
    pub end_fraction: f64,
    /// See [`Rules::end_window`].
    pub end_min_coverage: f64,
    /// See [`Rules::end_window`].
    pub end_min_stretch: f64,
    /// Stretches shorter than this (seconds of media) are not viewings at
    /// all and count nowhere (edX discards viewings under 0.25 s).
    pub min_viewing: f64,
    /// Media seconds a page view may report beyond rate × the server time
    /// since it was served; stretches past it are `suspect`.
    pub plausibility_slack: f64,
    /// Count visits of anonymous visitors to tutorial pages too (useful when
    /// the site accepts anonymous events).
    pub anonymous_visits: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            completion_threshold: 0.8,
            end_window: 30.0,
            end_fraction: 0.95,
            end_min_coverage: 0.5,
            end_min_stretch: 1.0,
            min_viewing: 0.25,
            plausibility_slack: 10.0,
            anonymous_visits: false,
        }
    }
}

impl Rules {
    /// The point of a video of `duration` seconds a stretch must cover for
    /// the "watched to the end" rule.
    pub fn end_point(&self, duration: f64) -> f64 {
        (duration - self.end_window).max(self.end_fraction * duration)
    }
}

/// What a catalog knows of a tutorial's main video (issue 12 builds the
/// catalog): its id, and its duration when known, which then wins over the
/// durations pages report. Without it the main video is the one with the
/// longest reported duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MainVideo<'a> {
    /// The main video's `video_id`.
    pub video_id: &'a str,
    /// Its duration in seconds, when the catalog knows it.
    pub duration: Option<f64>,
}

/// The `page.view` event a request record makes, when it is a successful
/// visit to a tutorial page by a person (not a bot).
pub fn page_view(record: &RequestRecord, rules: &Rules) -> Option<EventRecord> {
    let tutorial = record.tutorial.as_ref()?;
    let ok = record.method == "GET" && (200..400).contains(&record.status) && !record.ua.is_bot;
    if !ok || (record.user.is_none() && !rules.anonymous_visits) {
        return None;
    }
    let learner = Learner::of(record.user.as_deref(), record.visitor_id)?;
    Some(EventRecord {
        id: record.id,
        schema_version: record.schema_version,
        kind: visitlog_schema::Kind::Event,
        ts: record.ts,
        event_type: EventType::PageView,
        learner: learner.key(),
        user: record.user.clone(),
        visitor_id: record.visitor_id,
        visit_number: record.visit_number,
        session_id: record.session_id.clone(),
        foss: tutorial.foss.clone(),
        tutorial: tutorial.tutorial.clone(),
        language: tutorial.language.clone(),
        video_id: None,
        position: None,
        duration: None,
        from: None,
        to: None,
        played_from: None,
        rate: None,
        page_view: None,
        client_event_id: None,
        active_ms: None,
        staff: record.staff,
    })
}
