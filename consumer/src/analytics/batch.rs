//! The marks a stored batch makes: which visits, learners, videos and days
//! its records touch. Computed from the records alone (no reads), so a
//! replayed batch makes the same marks, and marking twice is harmless.

use visitlog_analytics::{day_of, is_page_view, tutorial_day_id, visit_key};
use visitlog_progress::Progress;
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

/// The marks of a progress document folded again: the day of its
/// completion (before and after: one may have moved it) and its videos.
pub fn progress_marks(p: &Progress) -> Vec<Mark> {
    let mut marks: Vec<Mark> = p
        .videos
        .iter()
        .map(|v| Mark::new(DerivedKind::Video, v.video_id.clone()))
        .collect();
    if let Some(at) = p.completed_at {
        let day = day_of(at);
        marks.push(tutorial_day(&p.foss, &p.tutorial, &p.language, &day));
        marks.push(Mark::new(DerivedKind::Day, day));
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use visitlog_schema::EventType;

    fn kinds(marks: &[Mark]) -> Vec<(DerivedKind, String)> {
        let mut k: Vec<_> = marks.iter().map(|m| (m.kind, m.key.clone())).collect();
        k.sort();
        k
    }

    #[test]
    fn a_page_view_marks_its_visit_and_other_requests_nothing() {
        let page = RequestRecord::example();
        let mark = request_marks(&page).unwrap();
        assert_eq!(
            (mark.kind, mark.key),
            (DerivedKind::Visit, visit_key(&page))
        );
        let mut css = RequestRecord::example();
        css.content_type = Some("text/css".into());
        assert!(request_marks(&css).is_none());
        let mut staff = RequestRecord::example();
        staff.staff = true;
        assert!(request_marks(&staff).is_none());
    }

    #[test]
    fn events_mark_their_learner_video_and_days_and_pings_their_page() {
        let e = EventRecord::example();
        let day = day_of(e.ts);
        let marks = event_marks(std::slice::from_ref(&e));
        assert_eq!(
            kinds(&marks),
            vec![
                (DerivedKind::Learner, e.learner.clone()),
                (DerivedKind::Video, e.video_id.clone().unwrap()),
                (
                    DerivedKind::TutorialDay,
                    tutorial_day_id(&e.foss, &e.tutorial, &e.language, &day)
                ),
                (DerivedKind::Day, day.clone()),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let mut ping = EventRecord::example();
        ping.event_type = EventType::PagePing;
        ping.page_view = Some(uuid::Uuid::nil());
        let marks = event_marks(&[ping.clone()]);
        assert!(
            kinds(&marks).contains(&(DerivedKind::Visit, format!("page:{}", uuid::Uuid::nil())))
        );
        assert!(!kinds(&marks).iter().any(|(k, _)| *k == DerivedKind::Day));
        ping.staff = true;
        assert!(event_marks(&[ping]).is_empty(), "staff touch no figure");
    }

    #[test]
    fn a_refolded_document_marks_its_completion_day_and_videos() {
        let e = EventRecord::example();
        let mut p = Progress::fold(None, [&e], &visitlog_progress::Rules::default()).unwrap();
        assert!(
            kinds(&progress_marks(&p))
                .iter()
                .all(|(k, _)| *k == DerivedKind::Video)
        );
        p.completed_at = Some(e.ts);
        let marks = kinds(&progress_marks(&p));
        assert!(marks.contains(&(DerivedKind::Day, day_of(e.ts))));
        assert!(marks.iter().any(|(k, _)| *k == DerivedKind::TutorialDay));
    }
}
