//! Daily figures per tutorial and for the site.

use visitlog_progress::{CompletedBy, Progress};

use super::*;

fn day() -> String {
    day_of(t0())
}

fn key(name: &str) -> TutorialDayKey {
    TutorialDayKey {
        foss: "Python".into(),
        tutorial: name.into(),
        language: "English".into(),
        day: day(),
    }
}

fn site(pages: &[PageView], sessions: &[Session], done: &[Progress]) -> SiteDaily {
    let mut d = SiteDay::new(&day(), &rules());
    pages.iter().for_each(|p| d.add_page(p));
    sessions.iter().for_each(|s| d.add_session(s));
    done.iter().for_each(|p| d.add_completion(p));
    d.finish()
}

fn tutorial_day(
    name: &str,
    pages: &[PageView],
    sessions: &[Session],
    done: &[Progress],
) -> TutorialDaily {
    let mut d = TutorialDay::new(key(name), &rules());
    pages.iter().for_each(|p| d.add_page(p));
    sessions.iter().for_each(|s| d.add_session(s));
    done.iter().for_each(|p| d.add_completion(p));
    d.finish()
}

/// Alice: two visits (the second returning), three pages; an anonymous
/// browser: one page of another tutorial; bob: one page.
fn pages() -> Vec<PageView> {
    let alice = Uuid::now_v7();
    let mut first = page(0.0, alice, 1, Some("alice"));
    first.new_visit = Some(true);
    let second = page(60.0, alice, 1, Some("alice"));
    let mut again = page(7200.0, alice, 2, Some("alice"));
    (again.new_visit, again.returning) = (Some(true), Some(true));
    let mut anonymous = page(100.0, Uuid::now_v7(), 1, None);
    anonymous.tutorial = Some(tutorial("Loops"));
    let bob = page(200.0, Uuid::now_v7(), 1, Some("bob"));
    let mut out = visit_page_views(&[first, second], &[], &rules());
    for r in [again, anonymous, bob] {
        out.extend(visit_page_views(&[r], &[], &rules()));
    }
    out
}

#[test]
fn visits_learners_anonymous_visitors_and_returning_are_distinct_counts() {
    let pages = pages();
    let s = site(&pages, &[], &[]);
    let t = &s.totals;
    assert_eq!((t.page_views, t.visits, t.learners), (5, 4, 2));
    assert_eq!((t.anonymous_visitors, t.returning_visits), (1, 1));
    // Only alice's first page has a time (to her next page); the rest are last pages.
    assert_eq!((t.time_on_page_n, t.time_on_page_s_sum), (1, 60.0));
    let g = tutorial_day("Getting-started", &pages, &[], &[]);
    assert_eq!(
        (g.totals.page_views, g.totals.visits, g.totals.learners),
        (4, 3, 2)
    );
    assert_eq!(g.totals.anonymous_visitors, 0);
    let l = tutorial_day("Loops", &pages, &[], &[]);
    assert_eq!(
        (
            l.totals.page_views,
            l.totals.visits,
            l.totals.anonymous_visitors
        ),
        (1, 1, 1)
    );
    assert_eq!(l.id, tutorial_day_id("Python", "Loops", "English", &day()));
    assert_eq!(l.date, DateTime::from_timestamp(1_762_992_000, 0).unwrap());
}

#[test]
fn a_document_given_twice_or_of_another_day_counts_once_or_not_at_all() {
    let mut pages = pages();
    pages.push(pages[0].clone());
    let mut tomorrow = pages[1].clone();
    tomorrow.id = Uuid::now_v7().to_string();
    tomorrow.day = "2025-11-14".into();
    pages.push(tomorrow);
    assert_eq!(site(&pages, &[], &[]).totals.page_views, 5);
}

fn completed(user: &str, by: CompletedBy, at_secs: f64, staff: bool) -> Progress {
    let mut p = Progress::new(
        &format!("user:{user}"),
        "Python",
        "Getting-started",
        "English",
        t0(),
    );
    p.completed = true;
    p.completed_by = Some(by);
    p.completed_at = Some(at(at_secs));
    p.staff = staff;
    p
}

#[test]
fn completions_count_by_rule_on_the_day_they_happened_without_staff() {
    let done = [
        completed("a", CompletedBy::Auto, 10.0, false),
        completed("b", CompletedBy::Auto, 20.0, false),
        completed("c", CompletedBy::Manual, 30.0, false),
        completed("d", CompletedBy::Auto, 40.0, true),
        completed("e", CompletedBy::Auto, 86_400.0, false),
        completed("a", CompletedBy::Auto, 10.0, false),
    ];
    let s = site(&[], &[], &done);
    assert_eq!(
        (s.totals.completions_auto, s.totals.completions_manual),
        (2, 1)
    );
    let t = tutorial_day("Getting-started", &[], &[], &done);
    assert_eq!(
        (t.totals.completions_auto, t.totals.completions_manual),
        (2, 1)
    );
    assert_eq!(
        tutorial_day("Loops", &[], &[], &done)
            .totals
            .completions_auto,
        0
    );
}

#[test]
fn video_seconds_sessions_and_bounces_come_from_sessions_of_the_day() {
    let a = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let mut play = event(&a, 1.0, EventType::VideoPlay);
    play.position = Some(0.0);
    let events = [view_event(&a), play, watched(&a, 31.0, 0.0, 30.0)];
    let pages = visit_page_views(std::slice::from_ref(&a), &[], &rules());
    let mut all = sessions("user:alice", &pages, &events, &rules());
    let mut yesterday = all[0].clone();
    yesterday.id = session_id("user:alice", at(-86_400.0));
    yesterday.day = "2025-11-12".into();
    all.push(yesterday);
    all.push(all[0].clone());
    let s = site(&pages, &all, &[]);
    assert_eq!((s.sessions, s.bounces, s.totals.video_s), (1, 1, 30.0));
    assert!(all[0].duration_s > 0.0);
    assert_eq!(
        s.session_s_sum, all[0].duration_s,
        "the day's one session, once"
    );
    let t = tutorial_day("Getting-started", &pages, &all, &[]);
    assert_eq!(t.totals.video_s, 30.0);
    assert_eq!(tutorial_day("Loops", &pages, &all, &[]).totals.video_s, 0.0);
}

#[test]
fn top_lists_count_visits_most_first_ties_by_name_at_most_twenty() {
    let mut records = Vec::new();
    // Country k gets visits by k % 3 + 1 (ties among equals), 25 countries.
    for k in 0..25u32 {
        for _ in 0..(k % 3 + 1) {
            let mut r = page(f64::from(k), Uuid::now_v7(), 1, None);
            if let Some(g) = r.geo.as_mut() {
                g.country_code = Some(format!("C{k:02}"));
            }
            r.new_visit = Some(true);
            records.push(r);
        }
    }
    // A second page of one visit does not count again, nor its referrer.
    let mut more = records[0].clone();
    more.ts = at(100.0);
    more.id = id_at(more.ts);
    more.new_visit = Some(false);
    more.referer = Some("https://other.example/".into());
    more.ua.name = Some("Chrome".into());
    // Given first: the visit's first page is still the earlier one.
    let mut pages = visit_page_views(&[more], &[], &rules());
    for r in &records {
        pages.extend(visit_page_views(std::slice::from_ref(r), &[], &rules()));
    }
    let s = site(&pages, &[], &[]);
    assert_eq!(s.countries.len(), 20);
    let names: Vec<&str> = s.countries.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(&names[..3], ["C02", "C05", "C08"]);
    assert_eq!(s.countries[0].count, 3);
    assert!(s.countries.windows(2).all(|w| w[0].count > w[1].count
        || (w[0].count == w[1].count && w[0].name < w[1].name)));
    let visits = s.totals.visits;
    assert_eq!(
        s.browsers,
        vec![Count {
            name: "Firefox".into(),
            count: visits
        }]
    );
    assert_eq!(
        s.referrers,
        vec![Count {
            name: "example.org".into(),
            count: visits
        }]
    );
}
