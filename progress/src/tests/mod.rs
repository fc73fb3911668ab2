use std::borrow::Borrow;

use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use uuid::Uuid;
use visitlog_schema::{Collection, EventRecord, EventType, Kind, RecordValidator, SCHEMA_VERSION};

use super::*;

mod check;
mod properties;
mod rules;

const VIDEO: &str = "Python/Getting-started/English";

/// A learner's events as the server would stamp them, on a clock that
/// moves 10 s per event, plus the media time of each stretch reported (so
/// that honest watching is plausible).
struct Script {
    now: DateTime<Utc>,
    events: Vec<EventRecord>,
    visitor: Option<Uuid>,
    visit: u32,
    /// The `page_view` of the video events (the latest `view()` after `on_page()`).
    page: Option<Uuid>,
    /// Send `page_view` on video events (set by `on_page`).
    pages: bool,
    duration: Option<f64>,
    video: String,
}

impl Script {
    fn new() -> Self {
        Self {
            now: DateTime::from_timestamp(1_763_000_000, 0).unwrap(),
            events: Vec::new(),
            visitor: Some(Uuid::now_v7()),
            visit: 1,
            page: None,
            pages: false,
            duration: Some(100.0),
            video: VIDEO.to_owned(),
        }
    }

    /// Lets `secs` of server time pass.
    fn wait(&mut self, secs: f64) -> &mut Self {
        self.now += Duration::milliseconds((secs * 1000.0) as i64);
        self
    }

    fn push(&mut self, kind: EventType, f: impl FnOnce(&mut EventRecord)) -> &mut Self {
        let ts = self.now;
        self.now += Duration::seconds(10);
        let mut e = EventRecord {
            // Strictly increasing v7 ids, as the server stamps them.
            id: Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ts.timestamp() as u64,
                ts.timestamp_subsec_nanos(),
            )),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts,
            event_type: kind,
            learner: "user:alice".into(),
            user: Some("alice".into()),
            visitor_id: self.visitor,
            visit_number: self.visitor.map(|_| self.visit),
            session_id: None,
            foss: "Python".into(),
            tutorial: "Getting-started".into(),
            language: "English".into(),
            video_id: kind.is_video().then(|| self.video.clone()),
            position: None,
            duration: if kind.is_video() { self.duration } else { None },
            from: None,
            to: None,
            played_from: None,
            rate: None,
            page_view: if kind.is_video() && self.pages {
                self.page
            } else {
                None
            },
            client_event_id: None,
            active_ms: None,
            staff: false,
        };
        f(&mut e);
        self.events.push(e);
        self
    }

    fn view(&mut self) -> &mut Self {
        self.page = Some(Uuid::nil()); // set below, to the page view's id
        self.push(EventType::PageView, |_| {});
        self.page = self.events.last().map(|e| e.id);
        self
    }

    /// Video events from now on name their page view.
    fn on_page(&mut self) -> &mut Self {
        self.pages = true;
        self
    }

    /// The last event, to adjust.
    fn last(&mut self) -> &mut EventRecord {
        self.events.last_mut().unwrap()
    }

    fn play(&mut self, at: f64) -> &mut Self {
        self.push(EventType::VideoPlay, |e| e.position = Some(at))
    }

    /// A heartbeat reporting the stretch `from..to` watched (that much
    /// media time passes first).
    fn watched(&mut self, from: f64, to: f64) -> &mut Self {
        self.wait((to - from).max(0.0));
        self.push(EventType::VideoProgress, |e| {
            e.played_from = Some(from);
            e.position = Some(to);
        })
    }

    fn seek(&mut self, from: f64, to: f64) -> &mut Self {
        self.push(EventType::VideoSeek, |e| {
            e.from = Some(from);
            e.to = Some(to);
            e.position = Some(to);
        })
    }

    /// The end reached, playing from `from`.
    fn ended(&mut self, from: f64) -> &mut Self {
        let end = self.duration.unwrap_or(100.0);
        self.wait((end - from).max(0.0));
        self.push(EventType::VideoEnded, |e| {
            e.played_from = Some(from);
            e.position = Some(end);
        })
    }

    /// A pause at `at`, with no stretch said (edX-style).
    fn pause(&mut self, at: f64) -> &mut Self {
        self.push(EventType::VideoPause, |e| e.position = Some(at))
    }

    fn mark(&mut self, complete: bool) -> &mut Self {
        let kind = if complete {
            EventType::TutorialComplete
        } else {
            EventType::TutorialIncomplete
        };
        self.push(kind, |_| {})
    }

    fn next_visit(&mut self) -> &mut Self {
        self.visit += 1;
        self
    }

    fn fold(&self) -> Progress {
        Progress::fold(None, &self.events, &Rules::default()).unwrap()
    }
}

#[test]
fn coverage_reaching_the_threshold_completes() {
    let mut s = Script::new();
    s.view().play(0.0).watched(0.0, 40.0).watched(40.0, 79.0);
    let p = s.fold();
    assert!(!p.completed, "79 % is under the threshold");
    assert_eq!(p.watched, vec![[0, 79]]);
    assert!((p.coverage - 0.79).abs() < 1e-9);
    s.watched(79.0, 80.0);
    let p = s.fold();
    assert!(p.completed);
    assert_eq!(p.completed_by, Some(CompletedBy::Auto));
    assert_eq!(p.completed_rule, Some(CompletedRule::Coverage));
    assert_eq!(p.completed_at, Some(s.events[4].ts));
}

/// Issue 11 changed this rule: watching past the threshold position no
/// longer completes (it took the position for coverage); only coverage,
/// or the end point with half the video watched, does.
#[test]
fn seeking_near_the_end_and_watching_from_there_does_not_complete() {
    let mut s = Script::new();
    s.play(0.0).seek(0.0, 85.0).play(85.0);
    assert!(!s.fold().completed, "jumping to 85 % is not watching it");
    s.watched(85.0, 90.0);
    let p = s.fold();
    assert!(!p.completed, "5 % watched");
    assert!((p.coverage - 0.05).abs() < 1e-9);
}

/// Issue 11 changed this rule: `video.ended` completes only under the
/// watching rules.
#[test]
fn ended_completes_only_by_the_rules_and_the_threshold_is_configurable() {
    let mut s = Script::new();
    s.play(95.0).ended(95.0);
    let p = s.fold();
    assert!(!p.completed, "5 s at the end");
    let mut s = Script::new();
    s.play(0.0).watched(0.0, 50.0);
    let strict = Rules {
        completion_threshold: 0.5,
        ..Rules::default()
    };
    assert!(Progress::fold(None, &s.events, &strict).unwrap().completed);
    assert!(!s.fold().completed);
    s.play(90.0).ended(90.0);
    let p = s.fold();
    assert_eq!(
        p.completed_rule,
        Some(CompletedRule::End),
        "half, and the end"
    );
}

/// Issue 11 changed this rule: after a manual "incomplete" only what is
/// watched after the mark counts, in any visit (it blocked the rest of the
/// visit, whatever was watched, and nothing after it).
#[test]
fn manual_marks_win_and_incomplete_counts_only_watching_after_it() {
    let mut s = Script::new();
    s.view().play(0.0).watched(0.0, 90.0).mark(true);
    let p = s.fold();
    assert_eq!(
        (p.completed, p.completed_by, p.completed_rule),
        (true, Some(CompletedBy::Manual), Some(CompletedRule::Manual))
    );
    // Marked incomplete: what was watched before does not count, the end does not either.
    s.mark(false).play(90.0).ended(90.0);
    let p = s.fold();
    assert!(!p.completed);
    assert_eq!(
        (p.completed_at, p.completed_by, p.completed_rule),
        (None, None, None)
    );
    assert_eq!(p.manual.as_ref().map(|m| m.completed), Some(false));
    assert!((p.coverage - 1.0).abs() < 1e-9, "seen stays");
    // Watching it again, in this visit or another, does.
    s.next_visit().view().play(0.0).watched(0.0, 80.0);
    let p = s.fold();
    assert_eq!(
        (p.completed, p.completed_by, p.completed_rule),
        (true, Some(CompletedBy::Auto), Some(CompletedRule::Coverage))
    );
    assert_eq!(p.visits, 2);
}

#[test]
fn watched_intervals_derive_from_the_seconds_and_stay_bounded() {
    let mut w = Seconds::default();
    w.insert(10..20);
    w.insert(30..40);
    w.insert(20..30);
    assert_eq!(w.intervals(), vec![[10, 40]]);
    w.insert(0..5);
    w.insert(50..50); // empty
    w.insert(3..12);
    assert_eq!(w.intervals(), vec![[0, 40]]);
    assert_eq!((w.len(), w.count_below(20)), (40, 20));
    assert_eq!(Seconds::from_intervals(&w.intervals()), w);
    w.insert(86_399..90_000);
    assert_eq!(w.len(), 41, "nothing past 86,400 s");
    // A learner who skims second by second for hours: the list is bounded,
    // the seconds exact.
    let mut w = Seconds::default();
    for i in 0..10_000u32 {
        w.insert(i * 2..i * 2 + 1);
    }
    assert_eq!(w.len(), 10_000);
    let shown = watched_intervals(&w);
    assert_eq!(shown.len(), MAX_WATCHED_INTERVALS);
    assert!(
        shown.windows(2).all(|p| p[0][1] < p[1][0]),
        "sorted and disjoint"
    );
    assert_eq!((shown[0][0], shown[255][1]), (0, 19_999));
}

#[test]
fn visits_are_distinct_per_browser_visit() {
    let mut s = Script::new();
    s.view().view().view(); // three pages in one visit
    s.next_visit().view();
    let laptop = s.visitor;
    s.visitor = Some(Uuid::now_v7()); // a phone
    s.visit = 1;
    s.view();
    s.visitor = laptop;
    s.visit = 2;
    s.view(); // laptop again, same visit 2
    let p = s.fold();
    assert_eq!(p.visits, 3);
    assert_eq!(p.first_visit, Some(s.events[0].ts));
    assert_eq!(p.last_visit, Some(s.events[5].ts));
}

#[test]
fn a_rewatch_moves_the_resume_position_back_and_ended_resets_it() {
    let mut s = Script::new();
    s.watched(0.0, 60.0).seek(60.0, 5.0).ended(90.0);
    let at = |i: usize| VideoPosition::of(&s.events[i]).unwrap().position;
    assert_eq!(at(0), 60.0);
    assert_eq!(at(1), 5.0);
    assert_eq!(at(2), 0.0);
    let mut s = Script::new();
    s.view().mark(true);
    assert!(VideoPosition::of(&s.events[0]).is_none());
    assert!(VideoPosition::of(&s.events[1]).is_none());
}

/// Two visits with a bit of everything: watching, a manual mark, the end.
fn two_visits() -> Script {
    let mut s = Script::new();
    s.view()
        .play(0.0)
        .watched(0.0, 30.0)
        .mark(false)
        .next_visit()
        .view()
        .play(50.0)
        .ended(50.0);
    s
}

#[test]
fn documents_round_trip_and_pass_the_validator() {
    let s = two_visits();
    let p = s.fold();
    let doc = p.to_document().unwrap();
    assert_eq!(Progress::from_document(&doc).unwrap(), p);
    let validator = RecordValidator::new(Collection::TutorialProgress).unwrap();
    validator.validate(&json_for_validation(&doc)).unwrap();
    let position = VideoPosition::of(&s.events[2])
        .unwrap()
        .to_document()
        .unwrap();
    RecordValidator::new(Collection::VideoPositions)
        .unwrap()
        .validate(&json_for_validation(&position))
        .unwrap();
}

/// The consumer's rule, simulated: fold on top when the batch is all newer,
/// else fold the stored history again. Stored = every event of every batch
/// handled so far (events are stored before they are derived).
fn deliver(batches: &[Vec<EventRecord>]) -> Progress {
    let rules = Rules::default();
    let mut stored: Vec<EventRecord> = Vec::new();
    let mut doc: Option<Progress> = None;
    for batch in batches {
        for e in batch {
            if !stored.iter().any(|s| s.id == e.id) {
                stored.push(e.clone());
            }
        }
        let mut batch = batch.clone();
        batch.sort_by_key(|e| e.id);
        doc = if needs_refold(doc.as_ref(), &batch) {
            let mut history = stored.clone();
            history.sort_by_key(|e| e.id);
            Progress::fold(None, &history, &rules)
        } else {
            Progress::fold(doc, &batch, &rules)
        };
    }
    doc.unwrap()
}

#[test]
fn any_batch_order_split_or_replay_gives_the_same_document() {
    let mut s = Script::new();
    s.view()
        .play(0.0)
        .watched(0.0, 10.0)
        .watched(10.0, 20.0)
        .mark(true)
        .mark(false);
    s.watched(20.0, 70.0)
        .seek(70.0, 10.0)
        .watched(10.0, 30.0)
        .ended(30.0);
    s.next_visit()
        .view()
        .play(0.0)
        .watched(0.0, 90.0)
        .ended(90.0);
    let expected = s.fold();
    assert!(expected.completed);
    assert_eq!(deliver(&[s.events.clone()]), expected);
    let mut rng = rand::rng();
    for _ in 0..500 {
        let mut events = s.events.clone();
        events.shuffle(&mut rng);
        let mut batches: Vec<Vec<EventRecord>> = Vec::new();
        let mut rest = events.as_slice();
        while !rest.is_empty() {
            let n = rand::Rng::random_range(&mut rng, 1..=rest.len().min(5));
            batches.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        // Replay a few batches, as after a crash or a redelivery.
        for _ in 0..3 {
            let i = rand::Rng::random_range(&mut rng, 0..batches.len());
            let again = batches[i].clone();
            let at = rand::Rng::random_range(&mut rng, i..=batches.len());
            batches.insert(at, again);
        }
        assert_eq!(deliver(&batches), expected);
    }
}

/// An event that counts how many of its kind are alive at once.
struct Tracked<'a> {
    event: EventRecord,
    live: &'a std::cell::Cell<usize>,
}

impl Borrow<EventRecord> for Tracked<'_> {
    fn borrow(&self) -> &EventRecord {
        &self.event
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

/// A refold streams a learner's history of any length through the fold:
/// the fold takes events one at a time and keeps none of them.
#[test]
fn a_long_history_folds_one_event_at_a_time() {
    const N: usize = 100_000;
    let mut s = Script::new();
    s.view().play(0.0);
    for i in 0..98 {
        s.watched(f64::from(i), f64::from(i + 1));
    }
    let template = s.events.clone();
    let live = std::cell::Cell::new(0);
    let most = std::cell::Cell::new(0);
    // Made on demand, as a database cursor yields them.
    let events = (0..N).map(|i| {
        live.set(live.get() + 1);
        most.set(most.get().max(live.get()));
        let mut event = template[i % template.len()].clone();
        event.id = Uuid::from_u128(i as u128 + 1);
        Tracked { event, live: &live }
    });
    let p = Progress::fold(None, events, &Rules::default()).unwrap();
    assert_eq!(p.folded, N as u64);
    assert_eq!(p.through, Uuid::from_u128(N as u128));
    assert_eq!(live.get(), 0);
    assert_eq!(most.get(), 1, "one event alive at a time");
    // The same state as folding a slice.
    let mut slice = template.clone();
    for (i, e) in slice.iter_mut().enumerate() {
        e.id = Uuid::from_u128(i as u128 + 1);
    }
    let a = Progress::fold(None, &slice, &Rules::default()).unwrap();
    let b = slice
        .iter()
        .fold(None, |p, e| {
            Some(Progress::fold_one(p, e, &Rules::default()))
        })
        .unwrap();
    assert_eq!(a, b);
}

/// The document each type writes, byte for byte the shape written before
/// the types were serde (documents already stored must read back, and new
/// ones must look the same to anyone querying them).
#[test]
fn documents_keep_their_stored_shape() {
    use bson::{Bson, doc};
    let s = two_visits();
    let p = s.fold();
    let date = |t: &Option<DateTime<Utc>>| t.map_or(Bson::Null, |t| Bson::DateTime(t.into()));
    let m = p.manual.as_ref().unwrap();
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let expected = doc! {
        "_id": &p.id,
        "learner": &p.learner,
        "foss": &p.foss,
        "tutorial": &p.tutorial,
        "language": &p.language,
        "video_id": p.video_id.as_deref().map_or(Bson::Null, Bson::from),
        "first_visit": date(&p.first_visit),
        "last_visit": date(&p.last_visit),
        "visits": i64::from(p.visits),
        "completed": p.completed,
        "completed_at": date(&p.completed_at),
        "completed_by": p.completed_by.map_or(Bson::Null, |b| Bson::from(b.to_string())),
        "completed_rule": p.completed_rule.map_or(Bson::Null, |b| Bson::from(b.to_string())),
        "watched": p.watched.iter().map(|[a, b]| Bson::Array(vec![Bson::Int64(i64::from(*a)), Bson::Int64(i64::from(*b))])).collect::<Vec<_>>(),
        "duration": p.duration.map_or(Bson::Null, Bson::Double),
        "coverage": p.coverage,
        "videos": [{
            "video_id": VIDEO,
            "duration": 100.0,
            // Seconds 0..30 and 50..100, one bit each, low bit first.
            "seen": b64(&[0xff, 0xff, 0xff, 0x3f, 0x00, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            "counted": b64(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            "played_s": 80.0,
            "wall_s": 80.0,
            "suspect_s": 0.0,
            "suspect": 0_i64,
            "end_reached": true,
            "coverage": 0.8,
            // Two credited stretches: 0..30 and 50..100.
            "plays": 2_i64,
            "views": [1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 0_i64, 0_i64, 0_i64, 0_i64,
                1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64, 1_i64],
        }],
        "ignored": 0_i64,
        "page_views": p.page_views.iter().map(|v| Bson::Document(doc! {
            "id": v.id.to_string(), "at": bson::DateTime::from_chrono(v.at), "wall_s": v.wall_s,
        })).collect::<Vec<_>>(),
        "streams": p.streams.iter().map(|v| Bson::Document(doc! {
            "context": &v.context, "video_id": &v.video_id, "playing": v.playing,
            "position": v.position, "since": bson::DateTime::from_chrono(v.since), "wall_s": v.wall_s,
        })).collect::<Vec<_>>(),
        "client_events": [],
        "manual": doc! {
            "completed": m.completed,
            "at": bson::DateTime::from_chrono(m.at),
            "visit": m.visit.as_deref().map_or(Bson::Null, Bson::from),
        },
        "recent_visits": p.recent_visits.iter().map(|r| Bson::Document(doc! {
            "visitor": r.visitor.to_string(), "visit": i64::from(r.visit),
        })).collect::<Vec<_>>(),
        "through": p.through.to_string(),
        "folded": p.folded as i64,
        "updated_at": bson::DateTime::from_chrono(p.updated_at),
        "staff": false,
    };
    let bytes = |d: &bson::Document| bson::to_vec(d).unwrap();
    assert_eq!(bytes(&p.to_document().unwrap()), bytes(&expected));
    // Never completed, never marked: nulls, not missing fields.
    let mut fresh = Script::new();
    fresh.play(0.0);
    let doc = fresh.fold().to_document().unwrap();
    for key in ["first_visit", "completed_at", "completed_by", "manual"] {
        assert_eq!(doc.get(key), Some(&Bson::Null), "{key}");
    }

    let e = &s.events[2];
    let expected = doc! {
        "_id": visitlog_schema::video_position_id(&e.learner, VIDEO),
        "learner": &e.learner,
        "video_id": VIDEO,
        "foss": &e.foss,
        "tutorial": &e.tutorial,
        "language": &e.language,
        "position": 30.0,
        "duration": 100.0,
        "updated_at": bson::DateTime::from_chrono(e.ts),
        "last_event": e.id.to_string(),
    };
    let position = VideoPosition::of(e).unwrap();
    assert_eq!(bytes(&position.to_document().unwrap()), bytes(&expected));
    assert_eq!(VideoPosition::from_document(&expected).unwrap(), position);
}

/// Documents written by hand or by other tools may hold any BSON number
/// type where a count or a number of seconds is expected.
#[test]
fn documents_read_back_with_any_number_type() {
    use bson::{Bson, doc};
    let mut s = Script::new();
    s.view().play(0.0).watched(0.0, 30.0);
    let p = s.fold();
    let mut stored = p.to_document().unwrap();
    stored.insert("visits", Bson::Double(1.0));
    stored.insert("folded", Bson::Int32(3));
    stored.insert("duration", Bson::Int32(100));
    stored.insert("coverage", Bson::Int64(0));
    stored.insert(
        "watched",
        vec![Bson::Array(vec![Bson::Int32(0), Bson::Double(30.0)])],
    );
    let visitor = p.recent_visits[0].visitor.to_string();
    stored.insert(
        "recent_visits",
        vec![Bson::Document(doc! { "visitor": &visitor, "visit": 1_i32 })],
    );
    let read = Progress::from_document(&stored).unwrap();
    assert_eq!((read.visits, read.folded), (1, 3));
    assert_eq!((read.duration, read.coverage), (Some(100.0), 0.0));
    assert_eq!(read.watched, vec![[0, 30]]);
    assert_eq!(read.recent_visits, p.recent_visits);
    // A document from before the per-video seconds: they come from `watched`.
    let mut old = stored.clone();
    for key in [
        "completed_rule",
        "staff",
        "videos",
        "ignored",
        "page_views",
        "streams",
        "client_events",
    ] {
        old.remove(key);
    }
    let read = Progress::from_document(&old).unwrap();
    assert_eq!(read.videos.len(), 1);
    assert_eq!(read.videos[0].seen.intervals(), vec![[0, 30]]);
    assert_eq!(read.videos[0].coverage, Some(0.3));
    assert_eq!(read.completed_rule, None);
    let more = s.watched(30.0, 40.0).events.last().cloned().unwrap();
    let p = Progress::fold(Some(read), [&more], &Rules::default()).unwrap();
    assert_eq!(p.watched, vec![[0, 40]], "folded on top, nothing lost");
    // A document without a coverage reads as none watched.
    stored.remove("coverage");
    assert_eq!(Progress::from_document(&stored).unwrap().coverage, 0.0);

    let mut position = VideoPosition::of(&s.events[2])
        .unwrap()
        .to_document()
        .unwrap();
    position.insert("position", Bson::Int32(30));
    position.insert("duration", Bson::Int64(100));
    let read = VideoPosition::from_document(&position).unwrap();
    assert_eq!((read.position, read.duration), (30.0, 100.0));
}

#[test]
fn events_round_trip_through_their_documents() {
    let mut e = EventRecord::example();
    e.id = Uuid::now_v7();
    let doc = event_document(&e).unwrap();
    assert!(matches!(doc.get("ts"), Some(bson::Bson::DateTime(_))));
    RecordValidator::new(Collection::Events)
        .unwrap()
        .validate(&json_for_validation(&doc))
        .unwrap();
    assert_eq!(event_from_document(doc.clone()).unwrap(), e);
    let mut whole = doc;
    whole.insert("position", 42_i32);
    assert_eq!(event_from_document(whole).unwrap().position, Some(42.0));
}
