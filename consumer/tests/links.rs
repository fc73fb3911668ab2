//! Learners across login (`learner_links`) and client retries
//! (`client_event_id`): a user's progress is exactly the fold of their
//! events plus their browser's events from before the login, whatever the
//! order the link and the events arrive in, replayed, or split between two
//! racing consumers; and a retried event is stored and counted once.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bson::{Document, doc};
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use uuid::Uuid;
use visitlog_consumer::batch::Preparer;
use visitlog_consumer::sink::Sink;
use visitlog_progress::{Progress, Rules, page_view};
use visitlog_schema::{
    EventRecord, EventType, Kind, Learner, RequestRecord, SCHEMA_VERSION, Tutorial, progress_id,
};
use visitlog_tests::{Namespace, eventually, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(60);
const FOSS: &str = "Python";
const TUTORIAL: &str = "Functions";
const LANGUAGE: &str = "Marathi";

/// A UUID v7 stamped at `ts`.
fn id_at(ts: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ts.timestamp() as u64,
        ts.timestamp_subsec_nanos(),
    ))
}

/// A `video.progress` of `learner` in the tutorial, `from..to` watched.
fn watch(learner: &Learner, visitor: Uuid, ts: DateTime<Utc>, from: f64, to: f64) -> EventRecord {
    EventRecord {
        id: id_at(ts),
        schema_version: SCHEMA_VERSION,
        kind: Kind::Event,
        ts,
        event_type: EventType::VideoProgress,
        learner: learner.key(),
        user: match learner {
            Learner::User(u) => Some(u.clone()),
            Learner::Visitor(_) => None,
        },
        visitor_id: Some(visitor),
        visit_number: Some(1),
        session_id: None,
        foss: FOSS.into(),
        tutorial: TUTORIAL.into(),
        language: LANGUAGE.into(),
        video_id: Some(format!("{FOSS}/{TUTORIAL}/{LANGUAGE}")),
        position: Some(to),
        duration: Some(600.0),
        from: None,
        to: None,
        played_from: Some(from),
        rate: Some(1.0),
        page_view: None,
        client_event_id: None,
        active_ms: None,
        staff: false,
    }
}

/// The request that logs `user` in on the tutorial page of browser `visitor`.
fn login(user: &str, visitor: Uuid, ts: DateTime<Utc>) -> RequestRecord {
    let mut r = RequestRecord::example();
    r.id = id_at(ts);
    r.ts = ts;
    r.user = Some(user.into());
    r.visitor_id = Some(visitor);
    r.path = format!("/watch/{FOSS}/{TUTORIAL}/{LANGUAGE}/");
    r.tutorial = Some(Tutorial {
        foss: FOSS.into(),
        tutorial: TUTORIAL.into(),
        language: LANGUAGE.into(),
    });
    r
}

/// One learner's story: a browser watches before login, logs in, watches
/// as the user, and after a logout watches as the visitor again.
struct Story {
    user: String,
    visitor: Uuid,
    before: Vec<EventRecord>,
    login: RequestRecord,
    after_login: Vec<EventRecord>,
    logged_out: Vec<EventRecord>,
}

impl Story {
    fn new(user: &str, t0: DateTime<Utc>) -> Self {
        let visitor = Uuid::now_v7();
        let v = Learner::Visitor(visitor);
        let u = Learner::User(user.into());
        let s = |n: i64| t0 + chrono::Duration::milliseconds(n);
        Self {
            user: user.into(),
            visitor,
            before: vec![
                watch(&v, visitor, s(1_000), 0.0, 100.0),
                watch(&v, visitor, s(2_000), 100.0, 200.0),
                // Just before the login.
                watch(&v, visitor, s(9_900), 200.0, 300.0),
            ],
            login: login(user, visitor, s(10_000)),
            after_login: vec![watch(&u, visitor, s(20_000), 300.0, 400.0)],
            // At the login's very millisecond, then later: neither is
            // before the login.
            logged_out: vec![
                watch(&v, visitor, s(10_000), 400.0, 450.0),
                watch(&v, visitor, s(30_000), 450.0, 590.0),
            ],
        }
    }

    /// The login on a page that is no tutorial's: the user's document then
    /// starts from their own events alone.
    fn login_elsewhere(mut self) -> Self {
        self.login.tutorial = None;
        self.login.path = "/login".into();
        self.login.route = None;
        self
    }

    fn user_key(&self) -> String {
        Learner::User(self.user.clone()).key()
    }

    /// Every payload, each once.
    fn payloads(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .before
            .iter()
            .chain(&self.after_login)
            .chain(&self.logged_out)
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect();
        out.push(serde_json::to_vec(&self.login).unwrap());
        out
    }

    /// The user's progress: their events (the login's page view among
    /// them) and the browser's from before the login, on the user's empty
    /// progress.
    fn expected_user(&self) -> Progress {
        let mut events: Vec<EventRecord> = self.before.clone();
        events.extend(page_view(&self.login, &Rules::default()));
        events.extend(self.after_login.iter().cloned());
        events.sort_by_key(|e| e.id);
        let empty = Progress::new(&self.user_key(), FOSS, TUTORIAL, LANGUAGE, events[0].ts);
        Progress::fold(Some(empty), &events, &Rules::default()).unwrap()
    }

    /// The browser's own progress: all of its events, as before links.
    fn expected_visitor(&self) -> Progress {
        let mut events: Vec<EventRecord> = self.before.clone();
        events.extend(self.logged_out.iter().cloned());
        events.sort_by_key(|e| e.id);
        Progress::fold(None, &events, &Rules::default()).unwrap()
    }

    fn user_progress_id(&self) -> String {
        progress_id(&self.user_key(), FOSS, TUTORIAL, LANGUAGE)
    }

    fn visitor_progress_id(&self) -> String {
        progress_id(
            &Learner::Visitor(self.visitor).key(),
            FOSS,
            TUTORIAL,
            LANGUAGE,
        )
    }
}

/// Stores, derives and refolds one batch, as a consumer does.
async fn process(sink: &Sink, payloads: Vec<Vec<u8>>) {
    let prepared = Preparer::new().unwrap().prepare(payloads);
    assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
    let (_, batch) = sink.store(prepared, "t", "q", 1 << 20).await.unwrap();
    let (_, refolds) = sink.derive(&batch, &Rules::default()).await.unwrap();
    sink.refold(&refolds, &Rules::default()).await.unwrap();
}

async fn progress(sink: &Sink, id: &str) -> Option<Progress> {
    sink.tutorial_progress()
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .map(|d| Progress::from_document(&d).unwrap())
}

async fn fresh_sink() -> Sink {
    let sink = Sink::new(&shared_mongodb_uri(), &test_database())
        .await
        .unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    sink
}

/// The link and the events in every order the queue may give them, each
/// batch then replayed: the user's document is the fold of their events and
/// the browser's before the login, the browser's the fold of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_progress_counts_their_browser_before_login_in_any_order() {
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let story = Story::new("linked", t0);
    let json = |e: &EventRecord| serde_json::to_vec(e).unwrap();
    let before: Vec<Vec<u8>> = story.before.iter().map(json).collect();
    let link = vec![serde_json::to_vec(&story.login).unwrap()];
    let user: Vec<Vec<u8>> = story.after_login.iter().map(json).collect();
    let out: Vec<Vec<u8>> = story.logged_out.iter().map(json).collect();
    let orders: Vec<(&str, Vec<Vec<Vec<u8>>>)> = vec![
        ("one batch", vec![story.payloads()]),
        (
            "as it happened",
            vec![before.clone(), link.clone(), user.clone(), out.clone()],
        ),
        (
            "link last",
            vec![user.clone(), out.clone(), before.clone(), link.clone()],
        ),
        (
            "link first",
            vec![link.clone(), user.clone(), before.clone(), out.clone()],
        ),
        (
            "reversed",
            vec![out.clone(), user.clone(), link.clone(), before.clone()],
        ),
    ];
    for (name, batches) in orders {
        let sink = fresh_sink().await;
        for (pass, replay) in [("", false), (", replayed", true)] {
            for batch in &batches {
                process(&sink, batch.clone()).await;
            }
            assert_eq!(
                progress(&sink, &story.user_progress_id()).await,
                Some(story.expected_user()),
                "{name}{pass}: the user's document (replay: {replay})"
            );
            assert_eq!(
                progress(&sink, &story.visitor_progress_id()).await,
                Some(story.expected_visitor()),
                "{name}{pass}: the browser's document"
            );
        }
        let links: Vec<Document> = sink
            .learner_links()
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(links.len(), 1, "{name}: one link per browser and user");
        assert_eq!(links[0].get_str("user").unwrap(), story.user_key());
        assert_eq!(
            links[0].get_str("visitor_id").unwrap(),
            story.visitor.to_string()
        );
        assert_eq!(
            links[0].get_datetime("at").unwrap().to_chrono(),
            story.login.ts
        );
    }
}

/// A later request of the same browser and user arrives first: the link
/// first has its time, then the login's; the user's document ends with
/// exactly the browser's events before the login, not before the later
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_login_arriving_late_moves_the_link_back() {
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let story = Story::new("moved", t0);
    let sink = fresh_sink().await;
    // A request at 35 s, when every browser event has happened.
    let mut later = story.login.clone();
    later.ts = t0 + chrono::Duration::seconds(35);
    later.id = id_at(later.ts);
    later.tutorial = None;
    later.path = "/".into();
    process(&sink, vec![serde_json::to_vec(&later).unwrap()]).await;
    let mut all = story.payloads();
    all.retain(|p| p != &serde_json::to_vec(&story.login).unwrap());
    process(&sink, all).await;
    // So far every browser event (logged-out ones too) is the user's.
    let mut counted: Vec<EventRecord> = story.before.clone();
    counted.extend(story.logged_out.iter().cloned());
    counted.extend(story.after_login.iter().cloned());
    counted.sort_by_key(|e| e.id);
    let empty = Progress::new(&story.user_key(), FOSS, TUTORIAL, LANGUAGE, t0);
    let so_far = Progress::fold(Some(empty), &counted, &Rules::default()).unwrap();
    assert_eq!(
        progress(&sink, &story.user_progress_id()).await,
        Some(so_far)
    );
    // The login itself, late.
    process(&sink, vec![serde_json::to_vec(&story.login).unwrap()]).await;
    assert_eq!(
        progress(&sink, &story.user_progress_id()).await,
        Some(story.expected_user())
    );
}

/// Two consumers store the link and the browser's events at the same time,
/// many times over: one of them always sees the other, and the user's
/// document is exactly the fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_racing_over_a_link_and_events_give_the_exact_fold() {
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    // Two consumers of one database.
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let a = Sink::new(&uri, &db).await.unwrap();
    a.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    let b = Sink::new(&uri, &db).await.unwrap();
    for i in 0..20 {
        // The link's batch has no event of the user: nothing but the link
        // can bring the browser's events into the user's document.
        let story = Story::new(&format!("racer{i}"), t0).login_elsewhere();
        let json = |e: &EventRecord| serde_json::to_vec(e).unwrap();
        let mut events: Vec<Vec<u8>> = story.before.iter().map(json).collect();
        events.extend(story.after_login.iter().map(json));
        events.extend(story.logged_out.iter().map(json));
        let link = vec![serde_json::to_vec(&story.login).unwrap()];
        if i % 2 == 0 {
            tokio::join!(process(&a, link), process(&b, events));
        } else {
            tokio::join!(process(&a, events), process(&b, link));
        }
        assert_eq!(
            progress(&a, &story.user_progress_id()).await,
            Some(story.expected_user()),
            "race {i}"
        );
        assert_eq!(
            progress(&a, &story.visitor_progress_id()).await,
            Some(story.expected_visitor()),
            "race {i}"
        );
    }
}

/// The whole daemon, two of them, small batches, every payload twice and
/// shuffled: the documents converge to the exact folds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_daemons_with_links_shuffled_and_replayed_give_the_exact_fold() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let stories: Vec<Story> = (0..5)
        .map(|i| Story::new(&format!("daemon{i}"), t0))
        .collect();
    let mut payloads: Vec<Vec<u8>> = stories.iter().flat_map(Story::payloads).collect();
    use rand::seq::SliceRandom;
    payloads.shuffle(&mut rand::rng());
    let small = |id: &str| visitlog_consumer::config::Config {
        batch_size: 3,
        ..config(&ns, &uri, &db, id)
    };
    let a = InProcess::start(small("links-a"));
    let b = InProcess::start(small("links-b"));
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    payloads.reverse();
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    let sink = Sink::new(&uri, &db).await.unwrap();
    for story in &stories {
        for (id, want) in [
            (story.user_progress_id(), story.expected_user()),
            (story.visitor_progress_id(), story.expected_visitor()),
        ] {
            eventually(WAIT, Duration::from_millis(100), async || {
                let got = progress(&sink, &id).await;
                if got.as_ref() == Some(&want) {
                    return Ok(());
                }
                Err(format!("{id}: {got:?}\nwanted {want:?}"))
            })
            .await
            .unwrap();
        }
    }
    eventually(
        WAIT,
        Duration::from_millis(100),
        async || match visitlog_tests::queue_lengths(ns.redis_url(), ns.queue()).await {
            Ok((0, 0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await
    .unwrap();
    let (a, b) = (a.stop().await, b.stop().await);
    assert!(a.batches > 0 && b.batches > 0, "both consumers worked");
    assert!(
        a.links + b.links >= stories.len() as u64,
        "every link recorded: {} + {}",
        a.links,
        b.links
    );
}

/// A client's retry (same `client_event_id`, a new `_id`) is stored once
/// and counted once, in the same batch or a later one; another learner may
/// use the same client id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_is_stored_and_counted_once() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let visitor = Uuid::now_v7();
    let alice = Learner::User("alice".into());
    let bob = Learner::User("bob".into());
    let with_client = |mut e: EventRecord, c: u128| {
        e.client_event_id = Some(Uuid::from_u128(c));
        e
    };
    let s = |n: i64| t0 + chrono::Duration::seconds(n);
    let first = with_client(watch(&alice, visitor, s(1), 0.0, 60.0), 1);
    // The retry of `first`: the server gave it a new id and time.
    let retry = EventRecord {
        id: id_at(s(5)),
        ts: s(5),
        ..first.clone()
    };
    let other = with_client(watch(&alice, visitor, s(8), 60.0, 120.0), 2);
    let other_retry = EventRecord {
        id: id_at(s(9)),
        ts: s(9),
        ..other.clone()
    };
    let bobs = with_client(watch(&bob, visitor, s(3), 0.0, 30.0), 1);
    let json = |e: &EventRecord| serde_json::to_vec(e).unwrap();

    let consumer = InProcess::start(config(&ns, &uri, &db, "retries"));
    push(ns.redis_url(), ns.queue(), &[json(&first), json(&bobs)])
        .await
        .unwrap();
    visitlog_tests::wait_count(&uri, &db, "events", 2, WAIT)
        .await
        .unwrap();
    // A later batch: a retry of a stored event, and a pair of its own.
    push(
        ns.redis_url(),
        ns.queue(),
        &[json(&retry), json(&other), json(&other_retry)],
    )
    .await
    .unwrap();
    eventually(
        WAIT,
        Duration::from_millis(50),
        async || match visitlog_tests::queue_lengths(ns.redis_url(), ns.queue()).await {
            Ok((0, 0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await
    .unwrap();
    let stats = consumer.stop().await;
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let stored: Vec<String> = client
        .database(&db)
        .collection::<Document>("events")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_owned())
        .collect();
    let mut want = [first.id, other.id, bobs.id]
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>();
    want.sort();
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, want, "each client id once per learner");
    assert_eq!(stats.duplicates, 2);
    let sink = Sink::new(&uri, &db).await.unwrap();
    let alices = progress(&sink, &progress_id(&alice.key(), FOSS, TUTORIAL, LANGUAGE))
        .await
        .unwrap();
    let expected = Progress::fold(None, [&first, &other], &Rules::default()).unwrap();
    assert_eq!(alices, expected, "counted once");
    assert_eq!(alices.folded, 2);
}

/// A batch stored, then the consumer died before deriving it: its replay
/// derives the events, client ids and all (a replay of the stored event is
/// not a client's retry, whichever index the server names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_crash_derives_events_with_client_ids() {
    let sink = fresh_sink().await;
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let alice = Learner::User("alice".into());
    let mut e = watch(&alice, Uuid::now_v7(), t0, 0.0, 60.0);
    e.client_event_id = Some(Uuid::now_v7());
    let payload = vec![serde_json::to_vec(&e).unwrap()];
    let prepared = Preparer::new().unwrap().prepare(payload.clone());
    let (stored, _) = sink.store(prepared, "t", "q", 1 << 20).await.unwrap();
    assert_eq!(stored.inserted, 1);
    let id = progress_id(&alice.key(), FOSS, TUTORIAL, LANGUAGE);
    assert_eq!(progress(&sink, &id).await, None, "died before deriving");
    process(&sink, payload).await;
    assert_eq!(
        progress(&sink, &id).await,
        Progress::fold(None, [&e], &Rules::default())
    );
}
