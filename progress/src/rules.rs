//! What counts: the completion threshold, whose visits count, and which
//! request records are tutorial page views.

use visitlog_schema::{EventRecord, EventType, Learner, RequestRecord};

/// How events become progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Coverage or watched position, as a fraction of the duration, that
    /// completes a tutorial automatically.
    pub completion_threshold: f64,
    /// Count visits of anonymous visitors to tutorial pages too (useful when
    /// the site accepts anonymous events).
    pub anonymous_visits: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            completion_threshold: 0.8,
            anonymous_visits: false,
        }
    }
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
    })
}
