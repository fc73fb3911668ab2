//! Shared builders for the rule tests: request records, pings and learning
//! events on a fixed clock, as the middleware and the server stamp them.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use visitlog_schema::{
    Collection, EventRecord, EventType, RecordValidator, RequestRecord, Tutorial,
};

use super::*;

mod daily;
mod page_view_check;
mod page_views;
mod properties;
mod sessions;
mod videos;

/// 2025-11-13 10:00:00 UTC.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_763_028_000, 0).unwrap()
}

fn at(secs: f64) -> DateTime<Utc> {
    t0() + Duration::milliseconds((secs * 1000.0).round() as i64)
}

/// A v7 id of `ts`, with random bits so ids of one instant still differ.
fn id_at(ts: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ts.timestamp() as u64,
        ts.timestamp_subsec_nanos(),
    ))
}

fn tutorial(name: &str) -> Tutorial {
    Tutorial {
        foss: "Python".into(),
        tutorial: name.into(),
        language: "English".into(),
    }
}

/// A tutorial page served to `user` (or anonymously) on browser `visitor`,
/// visit `visit`, `secs` after t0.
fn page(secs: f64, visitor: Uuid, visit: u32, user: Option<&str>) -> RequestRecord {
    let mut r = RequestRecord::example();
    r.ts = at(secs);
    r.id = id_at(r.ts);
    r.visitor_id = Some(visitor);
    r.visit_number = Some(visit);
    r.user = user.map(str::to_owned);
    r.new_visit = Some(false);
    r.returning = Some(false);
    r
}

fn learner_of(r: &RequestRecord) -> String {
    visitlog_schema::Learner::of(r.user.as_deref(), r.visitor_id)
        .unwrap()
        .key()
}

/// A `page.ping` from page `r`, `secs` after it was served.
fn ping(r: &RequestRecord, secs: f64, active_ms: u64) -> EventRecord {
    let mut e = event(r, secs, EventType::PagePing);
    e.active_ms = Some(active_ms);
    e.page_view = Some(r.id);
    e
}

/// An event of page `r`'s learner, `secs` after the page was served.
fn event(r: &RequestRecord, secs: f64, kind: EventType) -> EventRecord {
    let mut e = EventRecord::example();
    e.ts = r.ts + Duration::milliseconds((secs * 1000.0).round() as i64);
    e.id = id_at(e.ts);
    e.event_type = kind;
    e.learner = learner_of(r);
    e.user = r.user.clone();
    e.visitor_id = r.visitor_id;
    e.visit_number = r.visit_number;
    let t = r
        .tutorial
        .clone()
        .unwrap_or_else(|| tutorial("Getting-started"));
    (e.foss, e.tutorial, e.language) = (t.foss, t.tutorial, t.language);
    e.video_id = kind.is_video().then(|| format!("{}/video", e.tutorial));
    e.position = None;
    e.played_from = None;
    e.duration = kind.is_video().then_some(100.0);
    e.rate = None;
    e.page_view = kind.is_video().then_some(r.id);
    e
}

/// A heartbeat of page `r` saying `from..to` was watched, `secs` after it.
fn watched(r: &RequestRecord, secs: f64, from: f64, to: f64) -> EventRecord {
    let mut e = event(r, secs, EventType::VideoProgress);
    e.played_from = Some(from);
    e.position = Some(to);
    e
}

/// The `page.view` event the consumer stores for a tutorial page.
fn view_event(r: &RequestRecord) -> EventRecord {
    let rules = visitlog_progress::Rules {
        anonymous_visits: true,
        ..Default::default()
    };
    visitlog_progress::page_view(r, &rules).unwrap()
}

fn rules() -> AnalyticsRules {
    AnalyticsRules::default()
}

fn check(collection: Collection, doc: &bson::Document) {
    RecordValidator::new(collection)
        .unwrap()
        .validate(&visitlog_progress::json_for_validation(doc))
        .unwrap_or_else(|f| panic!("{}: {f}\n{doc}", collection.name()));
}

#[test]
fn every_document_passes_its_validator_and_reads_back() {
    let v = Uuid::now_v7();
    let mut first = page(0.0, v, 1, Some("alice"));
    first.new_visit = Some(true);
    let mut anonymous = page(5.0, Uuid::now_v7(), 1, None);
    anonymous.geo = None;
    anonymous.referer = None;
    anonymous.tutorial = None;
    let second = page(60.0, v, 1, Some("alice"));
    let pings = [ping(&second, 15.0, 15_000)];
    let mut views = visit_page_views(&[first.clone(), second.clone()], &pings, &rules());
    views.extend(visit_page_views(&[anonymous], &[], &rules()));
    for mut p in views.clone() {
        (p.fence, p.derived_at) = (7, at(3600.0));
        let doc = p.to_document().unwrap();
        check(Collection::PageViews, &doc);
        assert_eq!(PageView::from_document(&doc).unwrap(), p);
    }
    let events = [view_event(&first), watched(&first, 40.0, 0.0, 30.0)];
    let alice: Vec<&PageView> = views.iter().filter(|p| p.user.is_some()).collect();
    let sessions = sessions("user:alice", alice, &events, &rules());
    assert_eq!(sessions.len(), 1);
    let doc = sessions[0].to_document().unwrap();
    check(Collection::Sessions, &doc);
    assert_eq!(Session::from_document(&doc).unwrap(), sessions[0]);

    let progress =
        visitlog_progress::Progress::fold(None, &events, &visitlog_progress::Rules::default())
            .unwrap();
    let mut fold = VideoStatsFold::new("Getting-started/video", None, rules());
    fold.add(&progress);
    let stats = fold.finish();
    assert_eq!(stats.viewers, 1);
    let doc = stats.to_document().unwrap();
    check(Collection::VideoStats, &doc);
    assert_eq!(VideoStats::from_document(&doc).unwrap(), stats);
    // A video nobody watched: nulls where there is nothing to say.
    let empty = VideoStatsFold::new("nobody", None, rules()).finish();
    check(Collection::VideoStats, &empty.to_document().unwrap());

    let day = day_of(t0());
    let key = TutorialDayKey {
        foss: "Python".into(),
        tutorial: "Getting-started".into(),
        language: "English".into(),
        day: day.clone(),
    };
    let mut t = TutorialDay::new(key, &rules());
    let mut s = SiteDay::new(&day, &rules());
    for p in &views {
        t.add_page(p);
        s.add_page(p);
    }
    t.add_session(&sessions[0]);
    s.add_session(&sessions[0]);
    t.add_completion(&progress);
    s.add_completion(&progress);
    let t = t.finish();
    assert_eq!(t.totals.page_views, 2);
    let doc = t.to_document().unwrap();
    check(Collection::TutorialDaily, &doc);
    assert_eq!(TutorialDaily::from_document(&doc).unwrap(), t);
    let s = s.finish();
    assert_eq!((s.totals.page_views, s.sessions), (3, 1));
    let doc = s.to_document().unwrap();
    check(Collection::SiteDaily, &doc);
    assert_eq!(SiteDaily::from_document(&doc).unwrap(), s);
}

#[test]
fn ids_are_stable_hashes_and_days_are_utc() {
    assert_eq!(session_id("user:a", t0()), session_id("user:a", t0()));
    assert_ne!(session_id("user:a", t0()), session_id("user:a", at(0.001)));
    assert_eq!(session_id("user:a", t0()).len(), 32);
    assert_ne!(
        tutorial_day_id("a", "bc", "d", "2025-11-13"),
        tutorial_day_id("ab", "c", "d", "2025-11-13")
    );
    assert_eq!(day_of(t0()), "2025-11-13");
    let late = DateTime::parse_from_rfc3339("2025-11-13T23:59:59.999-01:00").unwrap();
    assert_eq!(day_of(late.with_timezone(&Utc)), "2025-11-14");
}
