use std::borrow::Borrow;

use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use uuid::Uuid;
use visitlog_schema::{Collection, EventRecord, EventType, Kind, RecordValidator, SCHEMA_VERSION};

use super::*;

const VIDEO: &str = "Python/Getting-started/English";

struct Script {
    t0: DateTime<Utc>,
    events: Vec<EventRecord>,
    visitor: Uuid,
    visit: u32,
}

impl Script {
    fn new() -> Self {
        Self {
            t0: DateTime::from_timestamp(1_763_000_000, 0).unwrap(),
            events: Vec::new(),
            visitor: Uuid::now_v7(),
            visit: 1,
        }
    }

    fn push(&mut self, kind: EventType, f: impl FnOnce(&mut EventRecord)) -> &mut Self {
        let n = self.events.len() as i64;
        let ts = self.t0 + Duration::seconds(10 * n);
        let mut e = EventRecord {
            // Strictly increasing v7 ids, as the server stamps them.
            id: Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ts.timestamp() as u64,
                0,
            )),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Event,
            ts,
            event_type: kind,
            learner: "user:alice".into(),
            user: Some("alice".into()),
            visitor_id: Some(self.visitor),
            visit_number: Some(self.visit),
            session_id: None,
            foss: "Python".into(),
            tutorial: "Getting-started".into(),
            language: "English".into(),
            video_id: kind.is_video().then(|| VIDEO.to_owned()),
            position: None,
            duration: kind.is_video().then_some(100.0),
            from: None,
            to: None,
            played_from: None,
            rate: None,
            page_view: None,
            client_event_id: None,
        };
        f(&mut e);
        self.events.push(e);
        self
    }

    fn view(&mut self) -> &mut Self {
        self.push(EventType::PageView, |_| {})
    }

    fn play(&mut self, at: f64) -> &mut Self {
        self.push(EventType::VideoPlay, |e| e.position = Some(at))
    }

    /// A heartbeat reporting the stretch `from..to` watched.
    fn watched(&mut self, from: f64, to: f64) -> &mut Self {
        self.push(EventType::VideoProgress, |e| {
            e.played_from = Some(from);
            e.position = Some(to);
        })
    }

    fn seek(&mut self, from: f64, to: f64) -> &mut Self {
        self.push(EventType::VideoSeek, |e| {
            e.from = Some(from);
            e.position = Some(to);
        })
    }

    fn ended(&mut self, from: f64) -> &mut Self {
        self.push(EventType::VideoEnded, |e| {
            e.played_from = Some(from);
            e.position = Some(100.0);
        })
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
    assert_eq!(p.completed_at, Some(s.events[4].ts));
}

#[test]
fn watching_past_the_threshold_completes_but_seeking_there_does_not() {
    let mut s = Script::new();
    s.play(0.0).seek(0.0, 85.0).play(85.0);
    assert!(!s.fold().completed, "jumping to 85 % is not watching it");
    s.watched(85.0, 90.0);
    let p = s.fold();
    assert!(p.completed, "watched up to 90 %");
    assert!(p.coverage < 0.1);
}

#[test]
fn ended_completes_and_the_threshold_is_configurable() {
    let mut s = Script::new();
    s.play(95.0).ended(95.0);
    assert!(s.fold().completed);
    let mut s = Script::new();
    s.play(0.0).watched(0.0, 50.0);
    let strict = Rules {
        completion_threshold: 0.5,
        ..Rules::default()
    };
    assert!(Progress::fold(None, &s.events, &strict).unwrap().completed);
    assert!(!s.fold().completed);
}

#[test]
fn manual_marks_win_and_incomplete_holds_for_the_rest_of_the_visit() {
    let mut s = Script::new();
    s.view().mark(true);
    let p = s.fold();
    assert_eq!(
        (p.completed, p.completed_by),
        (true, Some(CompletedBy::Manual))
    );
    // Marked incomplete: watching to the end in the same visit does not re-complete.
    s.mark(false).play(0.0).watched(0.0, 95.0).ended(95.0);
    let p = s.fold();
    assert!(!p.completed);
    assert_eq!((p.completed_at, p.completed_by), (None, None));
    assert_eq!(p.manual.as_ref().map(|m| m.completed), Some(false));
    // A later visit can.
    s.next_visit().view().play(0.0).ended(0.0);
    let p = s.fold();
    assert_eq!(
        (p.completed, p.completed_by),
        (true, Some(CompletedBy::Auto))
    );
    assert_eq!(p.visits, 2);
}

#[test]
fn intervals_merge_and_stay_bounded() {
    let mut w = Vec::new();
    add_interval(&mut w, 10, 20);
    add_interval(&mut w, 30, 40);
    add_interval(&mut w, 20, 30); // touches both
    assert_eq!(w, vec![[10, 40]]);
    add_interval(&mut w, 0, 5);
    add_interval(&mut w, 50, 50); // empty
    add_interval(&mut w, 3, 12);
    assert_eq!(w, vec![[0, 40]]);
    assert!((coverage(&w, Some(80.0)) - 0.5).abs() < 1e-9);
    assert_eq!(coverage(&[[0, 100]], Some(90.0)), 1.0);
    // A learner who skims second by second for hours: still bounded.
    let mut w = Vec::new();
    for i in 0..10_000u32 {
        add_interval(&mut w, i * 2, i * 2 + 1);
    }
    assert_eq!(w.len(), MAX_INTERVALS);
    assert!(
        w.windows(2).all(|p| p[0][1] < p[1][0]),
        "sorted and disjoint"
    );
}

#[test]
fn visits_are_distinct_per_browser_visit() {
    let mut s = Script::new();
    s.view().view().view(); // three pages in one visit
    s.next_visit().view();
    let laptop = s.visitor;
    s.visitor = Uuid::now_v7(); // a phone
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
        "watched": p.watched.iter().map(|[a, b]| Bson::Array(vec![Bson::Int64(i64::from(*a)), Bson::Int64(i64::from(*b))])).collect::<Vec<_>>(),
        "duration": p.duration.map_or(Bson::Null, Bson::Double),
        "coverage": p.coverage,
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
