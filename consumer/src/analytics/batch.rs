//! The marks a stored batch makes: which visits, learners, videos and days
//! its records touch. Computed from the records alone (no reads), so a
//! replayed batch makes the same marks, and marking twice is harmless.

use visitlog_analytics::{day_of, is_page_view, tutorial_day_id, visit_key};
use visitlog_schema::{EventRecord, EventType, Learner, RequestRecord};

use super::marks::{DerivedKind, Mark};

/// The marks of one request record: its visit (whose page views it joins)
/// when it is a page view. The page view's learner, days and tutorial are
/// marked when the visit is computed.
pub fn request_marks(r: &RequestRecord) -> Option<Mark> {
    is_page_view(r).then(|| Mark::new(DerivedKind::Visit, visit_key(r)))
}

/// The marks of stored events: a ping's page view (by id), each learner
/// from its earliest event, each video watched, and the tutorial days and
/// days whose completions may have changed. Staff events touch no figure.
pub fn event_marks(events: &[EventRecord]) -> Vec<Mark> {
    let mut marks = Vec::new();
    for e in events.iter().filter(|e| !e.staff) {
        let ms = e.ts.timestamp_millis();
        if e.learner.parse::<Learner>().is_ok() {
            marks.push(Mark::learner(&e.learner, ms));
        }
        if e.event_type.is_page_activity() {
            if let Some(page) = e.page_view {
                marks.push(Mark::new(DerivedKind::Visit, format!("page:{page}")));
            }
            continue;
        }
        if e.event_type == EventType::PageView {
            continue; // Its request record marked its visit.
        }
        if let Some(video) = &e.video_id {
            marks.push(Mark::new(DerivedKind::Video, video.clone()));
        }
        // A completion (manual, or by the rules on a video event) counts
        // on the day of the event that made it.
        let day = day_of(e.ts);
        marks.push(tutorial_day(&e.foss, &e.tutorial, &e.language, &day));
        marks.push(Mark::new(DerivedKind::Day, day));
    }
    marks
}

/// The mark of one `tutorial_daily` document.
pub fn tutorial_day(foss: &str, tutorial: &str, language: &str, day: &str) -> Mark {
    Mark {
        args: bson::doc! { "foss": foss, "tutorial": tutorial, "language": language, "day": day },
        ..Mark::new(
            DerivedKind::TutorialDay,
            tutorial_day_id(foss, tutorial, language, day),
        )
    }
}
