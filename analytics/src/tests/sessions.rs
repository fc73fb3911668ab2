//! Sessions: splits, devices, bounce, short sessions and credited video time.

use super::*;

fn of(learner: &str, pages: &[PageView], events: &[EventRecord]) -> Vec<Session> {
    sessions(learner, pages, events, &rules())
}

fn views(records: &[RequestRecord], pings: &[EventRecord]) -> Vec<PageView> {
    visit_page_views(records, pings, &rules())
}

#[test]
fn a_session_splits_after_more_than_the_timeout_not_at_it() {
    let v = Uuid::now_v7();
    let a = page(0.0, v, 1, Some("alice"));
    let at_timeout = page(1800.0, v, 1, Some("alice"));
    let s = of("user:alice", &views(&[a.clone(), at_timeout], &[]), &[]);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].page_views, s[0].duration_s), (2, 1800.0));
    let past = page(1800.001, v, 1, Some("alice"));
    let s = of("user:alice", &views(&[a, past], &[]), &[]);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].start, at(1800.001));
    assert_ne!(s[0].id, s[1].id);
    // The timeout is configurable.
    let mut r = rules();
    r.session_timeout = std::time::Duration::from_secs(60);
    let close = [
        page(0.0, v, 1, Some("alice")),
        page(61.0, v, 1, Some("alice")),
    ];
    let s = sessions("user:alice", &views(&close, &[]), &[], &r);
    assert_eq!(s.len(), 2);
}

#[test]
fn pings_and_events_keep_a_session_going() {
    let v = Uuid::now_v7();
    let a = page(0.0, v, 1, Some("alice"));
    let b = page(3000.0, v, 1, Some("alice"));
    // A ping at 25 min and a pause at 45 min bridge the 50-minute gap.
    let pings = [ping(&a, 1500.0, 15_000)];
    let mut pause = event(&a, 2700.0, EventType::VideoPause);
    pause.position = Some(10.0);
    let s = of(
        "user:alice",
        &views(&[a.clone(), b], &pings),
        &[pings[0].clone(), pause],
    );
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].end, s[0].engaged_s), (at(3000.0), 15.0));
    assert_eq!(s[0].tutorials[0].engaged_s, 15.0);
}

#[test]
fn one_session_across_devices_for_a_logged_in_learner() {
    let laptop = page(0.0, Uuid::now_v7(), 4, Some("alice"));
    let mut phone = page(600.0, Uuid::now_v7(), 1, Some("alice"));
    phone.ua.name = Some("Chrome".into());
    phone.ua.os = Some("Android".into());
    let mut back = page(900.0, laptop.visitor_id.unwrap(), 4, Some("alice"));
    back.path = "/courses/".into();
    let mut pages = views(&[laptop.clone(), back], &[]);
    pages.extend(views(&[phone], &[]));
    pages.sort_by_key(|p| p.start);
    let s = of("user:alice", &pages, &[]);
    assert_eq!(s.len(), 1);
    let devices: Vec<_> = s[0]
        .devices
        .iter()
        .map(|d| (d.browser.as_deref().unwrap(), d.os.as_deref().unwrap()))
        .collect();
    assert_eq!(devices, [("Firefox", "Linux"), ("Chrome", "Android")]);
    assert_eq!(s[0].page_views, 3);
    assert_eq!(s[0].entry_path.as_deref(), Some(laptop.path.as_str()));
    assert_eq!(s[0].exit_path.as_deref(), Some("/courses/"));
    assert_eq!(s[0].country.as_deref(), Some("GB"));
    // Another learner's pages are not this learner's session.
    assert!(of("user:bob", &pages, &[]).is_empty());
}

#[test]
fn bounce_is_one_page_under_ten_engaged_seconds() {
    let v = Uuid::now_v7();
    let a = page(0.0, v, 1, Some("alice"));
    let bounce = |active_ms: u64| {
        let pings = [ping(&a, 15.0, active_ms)];
        of(
            "user:alice",
            &views(std::slice::from_ref(&a), &pings),
            &pings,
        )[0]
        .bounce
    };
    assert!(bounce(9_999));
    assert!(!bounce(10_000));
    let two = [a.clone(), page(20.0, v, 1, Some("alice"))];
    assert!(!of("user:alice", &views(&two, &[]), &[])[0].bounce);
}

#[test]
fn short_sessions_are_kept_and_flagged() {
    let a = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let s = of("user:alice", &views(std::slice::from_ref(&a), &[]), &[]);
    assert_eq!(s.len(), 1, "kept");
    assert!(s[0].short && s[0].duration_s == 0.0);
    let pings = [ping(&a, 5.0, 5_000)];
    let s = of(
        "user:alice",
        &views(std::slice::from_ref(&a), &pings),
        &pings,
    );
    assert!(!s[0].short, "5 s is not under 5 s");
    assert!(!s[0].returning);
}

#[test]
fn video_seconds_are_what_the_progress_rules_credit() {
    let a = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let pages = views(std::slice::from_ref(&a), &[]);
    let mut play = event(&a, 1.0, EventType::VideoPlay);
    play.position = Some(0.0);
    let honest = [view_event(&a), play.clone(), watched(&a, 31.0, 0.0, 30.0)];
    let s = of("user:alice", &pages, &honest);
    assert_eq!(s[0].video_s, 30.0);
    assert_eq!(s[0].tutorials.len(), 1);
    assert_eq!(s[0].tutorials[0].video_s, 30.0);
    // The whole video claimed 10 s after the page was served: suspect, nothing.
    let claim = [view_event(&a), play, watched(&a, 10.0, 0.0, 100.0)];
    let s = of("user:alice", &pages, &claim);
    assert_eq!(s[0].video_s, 0.0);
}

#[test]
fn staff_events_are_not_activity() {
    let a = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let mut late = watched(&a, 600.0, 0.0, 30.0);
    late.staff = true;
    let mut staff_ping = ping(&a, 300.0, 20_000);
    staff_ping.staff = true;
    let s = of(
        "user:alice",
        &views(std::slice::from_ref(&a), &[]),
        &[staff_ping, late],
    );
    assert_eq!(
        (s[0].end, s[0].video_s, s[0].engaged_s),
        (at(0.0), 0.0, 0.0)
    );
}

#[test]
fn sessions_of_events_alone_have_no_pages() {
    let a = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let pings = [ping(&a, 15.0, 12_000)];
    let s = of("user:alice", &[], &pings);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].page_views, s[0].entry_path.clone(), s[0].bounce),
        (0, None, false)
    );
    assert_eq!(s[0].engaged_s, 12.0);
}
