//! Page views and time on page.

use super::*;

fn one(r: &RequestRecord, pings: &[EventRecord]) -> PageView {
    let views = visit_page_views(std::slice::from_ref(r), pings, &rules());
    assert_eq!(views.len(), 1);
    views.into_iter().next().unwrap()
}

#[test]
fn page_views_are_successful_html_gets_by_people() {
    let ok = page(0.0, Uuid::now_v7(), 1, None);
    assert!(is_page_view(&ok));
    type Change = Box<dyn Fn(&mut RequestRecord)>;
    let cases: Vec<(&str, Change)> = vec![
        ("POST", Box::new(|r| r.method = "POST".into())),
        ("304", Box::new(|r| r.status = 304)),
        ("404", Box::new(|r| r.status = 404)),
        ("bot", Box::new(|r| r.ua.is_bot = true)),
        ("staff", Box::new(|r| r.staff = true)),
        (
            "json",
            Box::new(|r| r.content_type = Some("application/json".into())),
        ),
        (
            "old record, a file",
            Box::new(|r| {
                r.content_type = None;
                r.path = "/static/progress.js".into();
            }),
        ),
    ];
    for (what, change) in cases {
        let mut r = ok.clone();
        change(&mut r);
        assert!(!is_page_view(&r), "{what}");
        assert!(visit_page_views(&[r], &[], &rules()).is_empty(), "{what}");
    }
    let mut r = ok.clone();
    r.content_type = Some("application/xhtml+xml".into());
    assert!(is_page_view(&r));
    r.status = 299;
    assert!(is_page_view(&r));
    r.content_type = None;
    r.path = "/watch/Python/Getting-started/English/".into();
    assert!(is_page_view(&r), "an older record of a page");
    r.path = "/about".into();
    assert!(is_page_view(&r));
}

#[test]
fn time_on_page_is_measured_from_pings_with_engaged_time_capped() {
    let r = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let mut hide = ping(&r, 42.0, 5_000);
    hide.event_type = EventType::PageHide;
    // 30 s of activity in one ping is not believed past 20 s.
    let pings = [ping(&r, 15.0, 15_000), ping(&r, 30.0, 30_000), hide];
    let p = one(&r, &pings);
    assert_eq!(p.time_on_page_s, Some(42.0));
    assert_eq!(p.engaged_s, 15.0 + 20.0 + 5.0);
    assert!(!p.estimated);
    assert_eq!((p.last_seen, p.pings), (at(42.0), 3));
    // Measured even when the visit goes on to another page.
    let next = page(300.0, r.visitor_id.unwrap(), 1, Some("alice"));
    let views = visit_page_views(&[r.clone(), next], &pings, &rules());
    assert_eq!(
        (views[0].time_on_page_s, views[0].estimated),
        (Some(42.0), false)
    );
}

#[test]
fn engaged_time_never_exceeds_time_on_page() {
    let r = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let p = one(&r, &[ping(&r, 5.0, 20_000)]);
    assert_eq!((p.time_on_page_s, p.engaged_s), (Some(5.0), 5.0));
}

#[test]
fn without_pings_time_on_page_runs_to_the_next_page_capped_and_the_last_is_null() {
    let v = Uuid::now_v7();
    let a = page(0.0, v, 1, Some("alice"));
    let b = page(90.0, v, 1, Some("alice"));
    let c = page(90.0 + 7200.0, v, 1, Some("alice"));
    // Another visit of the same browser in between is not the next page.
    let other = page(30.0, v, 2, Some("alice"));
    let views = visit_page_views(&[c.clone(), other, b.clone(), a.clone()], &[], &rules());
    let by_id = |r: &RequestRecord| {
        views
            .iter()
            .find(|p| p.id == r.id.to_string())
            .unwrap()
            .clone()
    };
    let (pa, pb, pc) = (by_id(&a), by_id(&b), by_id(&c));
    assert_eq!(
        (pa.time_on_page_s, pa.estimated, pa.engaged_s),
        (Some(90.0), true, 0.0)
    );
    assert_eq!(pa.last_seen, pa.start);
    assert_eq!(
        (pb.time_on_page_s, pb.estimated),
        (Some(1800.0), true),
        "capped"
    );
    assert_eq!(
        (pc.time_on_page_s, pc.estimated),
        (None, false),
        "last: null, not 0"
    );
    let alone = views.iter().find(|p| p.visit_number == Some(2)).unwrap();
    assert_eq!(alone.time_on_page_s, None);
    // Sorted by start.
    let starts: Vec<_> = views.iter().map(|p| p.start).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn pings_of_another_learner_page_or_time_are_ignored() {
    let r = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    let mut mallory = ping(&r, 60.0, 10_000);
    mallory.learner = "user:mallory".into();
    let mut elsewhere = ping(&r, 70.0, 10_000);
    elsewhere.page_view = Some(Uuid::now_v7());
    let mut staff = ping(&r, 80.0, 10_000);
    staff.staff = true;
    let before = ping(&r, -1.0, 10_000);
    let too_late = ping(&r, 24.0 * 3600.0 + 0.001, 10_000);
    let p = one(&r, &[mallory, elsewhere, staff, before, too_late]);
    assert_eq!((p.pings, p.time_on_page_s), (0, None));
    // The horizon itself still counts, and a ping stored twice counts once.
    let last = ping(&r, 24.0 * 3600.0, 10_000);
    let p = one(&r, &[last.clone(), last]);
    assert_eq!(
        (p.pings, p.time_on_page_s, p.engaged_s),
        (1, Some(86_400.0), 10.0)
    );
}

#[test]
fn a_page_without_a_cookie_is_a_visit_of_its_own() {
    let mut a = page(0.0, Uuid::now_v7(), 1, None);
    a.visitor_id = None;
    a.visit_number = None;
    let mut b = a.clone();
    b.ts = at(10.0);
    b.id = id_at(b.ts);
    assert_eq!(visit_key(&a), format!("page:{}", a.id));
    let views = visit_page_views(&[a, b], &[], &rules());
    assert!(views.iter().all(|p| p.time_on_page_s.is_none()));
    assert!(views.iter().all(|p| p.learner.is_none()));
    let v = page(0.0, Uuid::now_v7(), 3, None);
    assert_eq!(visit_key(&v), format!("{}:3", v.visitor_id.unwrap()));
    let p = one(&v, &[]);
    assert_eq!(p.visit(), visit_key(&v));
    assert_eq!(
        p.learner,
        Some(format!("visitor:{}", v.visitor_id.unwrap()))
    );
}

#[test]
fn page_views_carry_what_the_daily_figures_count() {
    let mut r = page(0.0, Uuid::now_v7(), 1, Some("alice"));
    r.referer = Some("https://WWW.Example.org:8443/search?q=python".into());
    r.new_visit = Some(true);
    r.returning = None;
    let p = one(&r, &[]);
    assert_eq!(p.referrer_domain.as_deref(), Some("example.org"));
    assert_eq!(
        (p.country.as_deref(), p.browser.as_deref(), p.os.as_deref()),
        (Some("GB"), Some("Firefox"), Some("Linux"))
    );
    assert_eq!((p.new_visit, p.returning), (true, None));
    assert_eq!(p.day, "2025-11-13");
    assert_eq!(p.tutorial, r.tutorial);
}

#[test]
fn referrer_domains_are_bare_lowercase_hosts() {
    let cases = [
        ("https://www.google.com/search?q=x", Some("google.com")),
        (
            "http://user:pw@Spoken-Tutorial.org:80/x",
            Some("spoken-tutorial.org"),
        ),
        ("https://[2001:db8::1]:443/", Some("2001:db8::1")),
        (
            "android-app://com.google.android.gm/",
            Some("com.google.android.gm"),
        ),
        ("example.net/path", Some("example.net")),
        ("https:///nothing", None),
        ("", None),
    ];
    for (referer, want) in cases {
        assert_eq!(referrer_domain(referer).as_deref(), want, "{referer}");
    }
}
