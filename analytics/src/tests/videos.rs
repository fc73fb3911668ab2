//! Video engagement from progress documents.

use visitlog_progress::Progress;

use super::*;

const VIDEO: &str = "Getting-started/video";

/// `user`'s progress after watching `stretches` of the 100-s video, each
/// reported once it could have been played.
fn progress(user: &str, stretches: &[(f64, f64)]) -> Progress {
    let r = page(0.0, Uuid::now_v7(), 1, Some(user));
    let mut events = vec![view_event(&r)];
    let mut t = 0.0;
    for &(a, b) in stretches {
        t += b - a + 1.0;
        events.push(watched(&r, t, a, b));
    }
    Progress::fold(None, &events, &visitlog_progress::Rules::default()).unwrap()
}

fn stats(docs: &[Progress], catalog: Option<f64>) -> VideoStats {
    let mut fold = VideoStatsFold::new(VIDEO, catalog, rules());
    docs.iter().for_each(|p| fold.add(p));
    fold.finish()
}

fn four_learners() -> Vec<Progress> {
    vec![
        progress("a", &[(0.0, 100.0)]),
        progress("b", &[(0.0, 20.0), (10.0, 30.0)]),
        progress("c", &[(90.0, 100.0)]),
        progress("d", &[(0.0, 50.0)]),
    ]
}

#[test]
fn viewers_plays_watch_time_and_unique_seconds() {
    let s = stats(&four_learners(), Some(100.0));
    assert_eq!((s.viewers, s.plays), (4, 5));
    assert_eq!(s.watch_s, 100.0 + 20.0 + 20.0 + 10.0 + 50.0);
    assert_eq!(s.unique_s, 100 + 30 + 10 + 50);
    assert_eq!(s.completions, 1, "only a's coverage completes");
    assert_eq!(s.duration, Some(100.0));
    assert_eq!(s.foss.as_deref(), Some("Python"));
}

#[test]
fn coverage_mean_and_lower_median_over_viewers() {
    let s = stats(&four_learners(), Some(100.0));
    let mean = s.coverage_mean.unwrap();
    assert!(
        (mean - (1.0 + 0.3 + 0.1 + 0.5) / 4.0).abs() < 1e-12,
        "{mean}"
    );
    // Sorted 0.1, 0.3, 0.5, 1.0: the lower of the middle two.
    assert_eq!(s.coverage_p50, Some(0.3));
}

#[test]
fn segments_count_viewers_and_views_and_the_ends() {
    let s = stats(&four_learners(), Some(100.0));
    assert_eq!(s.segments.len(), 20);
    assert_eq!(s.segments[19].start, 95);
    // [10, 15): a, b and d watched it; b twice.
    assert_eq!((s.segments[2].viewers, s.segments[2].views), (3, 4));
    // [25, 30): a, b (second stretch) and d.
    assert_eq!((s.segments[5].viewers, s.segments[5].views), (3, 3));
    // [60, 65): a only.
    assert_eq!((s.segments[12].viewers, s.segments[12].views), (1, 1));
    assert_eq!(s.users_at_start, 3, "a, b and d saw 0..5");
    // max(100 − 30, 95) = 95: the segment [95, 100), a and c.
    assert_eq!(s.users_at_end, 2);
    // For a 10-minute video the end is at 570 (d − 30).
    let long = stats(&[], Some(600.0));
    assert_eq!(long.segments.len(), 120);
}

#[test]
fn staff_documents_and_other_videos_count_nowhere() {
    let mut staff = progress("e", &[(0.0, 100.0)]);
    staff.staff = true;
    let mut other = progress("f", &[(0.0, 100.0)]);
    other.videos[0].video_id = "another".into();
    let s = stats(&[staff, other], Some(100.0));
    assert_eq!(
        (s.viewers, s.plays, s.completions, s.unique_s),
        (0, 0, 0, 0)
    );
    assert_eq!(s.watch_s, 0.0);
    assert!(s.segments.iter().all(|g| g.viewers == 0 && g.views == 0));
    assert_eq!((s.coverage_mean, s.coverage_p50), (None, None));
}

#[test]
fn a_learner_on_two_pages_is_one_viewer() {
    let first = progress("a", &[(0.0, 30.0)]);
    let mut second = progress("a", &[(20.0, 60.0)]);
    second.tutorial = "Another-page".into();
    let s = stats(&[first, second], Some(100.0));
    assert_eq!((s.viewers, s.unique_s, s.plays), (1, 60, 2));
    assert_eq!(s.coverage_p50, Some(0.6));
    assert_eq!(s.segments[4].viewers, 1, "[20, 25) once");
    assert_eq!(s.segments[4].views, 2, "but passed twice");
}

#[test]
fn the_duration_is_the_catalogs_else_the_largest_reported() {
    let docs = four_learners();
    assert_eq!(stats(&docs, None).duration, Some(100.0));
    let s = stats(&docs, Some(50.0));
    assert_eq!(s.segments.len(), 10);
    // Coverage counts seconds below the catalog's duration only.
    assert_eq!(s.coverage_p50, Some(0.6), "sorted 0, 0.6, 1, 1");
    assert_eq!(s.users_at_end, 2, "[45, 50) of max(20, 47.5): a and d");
}

#[test]
fn a_video_nobody_watched_still_has_its_document() {
    let s = VideoStatsFold::new(VIDEO, Some(60.0), rules())
        .tutorial("Python", "Getting-started", "English")
        .finish();
    assert_eq!((s.id.as_str(), s.viewers, s.segments.len()), (VIDEO, 0, 12));
    assert_eq!(s.tutorial.as_deref(), Some("Getting-started"));
}
