//! Learning progress derived by racing consumers: the stored document is
//! exactly the fold of the events, whatever their order, split or replay.
//! (The learner end to end, through the example site, is in `tests/tests/learner.rs`.)

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bson::doc;
use chrono::{SubsecRound, Utc};
use uuid::Uuid;
use visitlog_progress::{Progress, Rules};
use visitlog_schema::{EventRecord, EventType, Learner, progress_id};
use visitlog_tests::{Namespace, eventually, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(60);

fn event(i: usize, t0: chrono::DateTime<Utc>, kind: EventType, visit: u32) -> EventRecord {
    let ts = t0 + chrono::Duration::milliseconds(i as i64 * 1000);
    let (position, played_from) = match kind {
        EventType::VideoProgress => (Some((i % 600) as f64), Some((i % 600) as f64 - 1.0)),
        _ => (None, None),
    };
    EventRecord {
        id: Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        )),
        ts,
        event_type: kind,
        learner: Learner::User("racer".into()).key(),
        user: Some("racer".into()),
        visitor_id: Some(Uuid::from_u128(7)),
        visit_number: Some(visit),
        session_id: None,
        foss: "Python".into(),
        tutorial: "Functions".into(),
        language: "Marathi".into(),
        video_id: kind
            .is_video()
            .then(|| "Python/Functions/Marathi".to_owned()),
        position: position.map(|p: f64| p.max(1.0)),
        duration: kind.is_video().then_some(600.0),
        played_from: played_from.map(|p: f64| p.max(0.0)),
        rate: None,
        client_event_id: Some(Uuid::from_u128(i as u128)),
        ..EventRecord::example()
    }
}

/// Two consumers with small batches race on one learner; the events arrive
/// in shuffled order and are delivered twice, and a tenth of them also come
/// as a client's retry (same `client_event_id`). One event per client id is
/// stored, and the document is exactly the fold of those in server order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_consumers_shuffled_and_replayed_events_give_the_exact_fold() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // Records carry millisecond times.
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let mut events: Vec<EventRecord> = (1..400)
        .map(|i| event(i, t0, EventType::VideoProgress, 1))
        .collect();
    events.push(event(400, t0, EventType::TutorialIncomplete, 1));
    events.extend((401..500).map(|i| event(i, t0, EventType::VideoProgress, 1)));
    events.push(event(500, t0, EventType::TutorialComplete, 2));
    let mut expected_events: Vec<EventRecord> = events.to_vec();
    expected_events.sort_by_key(|e| e.id);
    let expected = Progress::fold(None, &expected_events, &Rules::default()).unwrap();

    let mut payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    // Every tenth event also comes as a client's retry: the same client id
    // under an id and time of its own, a second later (the same content).
    let retries: Vec<EventRecord> = events
        .iter()
        .filter(|e| e.client_event_id.is_some_and(|c| c.as_u128() % 10 == 0))
        .map(|e| {
            let ts = e.ts + chrono::Duration::milliseconds(1);
            EventRecord {
                id: Uuid::new_v7(uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    ts.timestamp() as u64,
                    ts.timestamp_subsec_nanos(),
                )),
                ts,
                ..e.clone()
            }
        })
        .collect();
    assert_eq!(retries.len(), 50);
    payloads.extend(retries.iter().map(|e| serde_json::to_vec(e).unwrap()));
    use rand::seq::SliceRandom;
    payloads.shuffle(&mut rand::rng());
    let small = |id: &str| visitlog_consumer::config::Config {
        batch_size: 7,
        ..config(&ns, &uri, &db, id)
    };
    let a = InProcess::start(small("race-a"));
    let b = InProcess::start(small("race-b"));
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    payloads.reverse();
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap(); // every event twice

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let progress = client
        .database(&db)
        .collection::<bson::Document>("tutorial_progress");
    let id = progress_id("user:racer", "Python", "Functions", "Marathi");
    let stored = eventually(WAIT, Duration::from_millis(100), async || {
        let queue = visitlog_tests::queue_lengths(ns.redis_url(), ns.queue())
            .await
            .unwrap();
        let doc = progress.find_one(doc! { "_id": &id }).await.unwrap();
        if queue == (0, 0)
            && let Some(doc) = doc
            && doc
                .get_i64("folded")
                .ok()
                .or(doc.get_i32("folded").ok().map(i64::from))
                == Some(expected.folded as i64)
        {
            return Ok(Progress::from_document(&doc).unwrap());
        }
        Err("never converged")
    })
    .await
    .unwrap();
    let (a, b) = (a.stop().await, b.stop().await);
    // Of an event and its retry, the one stored first stays: the document
    // is the fold of the originals with those retries in their place.
    let kept: std::collections::HashSet<String> = {
        use futures_util::TryStreamExt;
        client
            .database(&db)
            .collection::<bson::Document>("events")
            .find(doc! {})
            .await
            .unwrap()
            .try_collect::<Vec<bson::Document>>()
            .await
            .unwrap()
            .iter()
            .map(|d| d.get_str("_id").unwrap().to_owned())
            .collect()
    };
    let mut folded: Vec<EventRecord> = expected_events
        .iter()
        .map(|e| {
            match retries
                .iter()
                .find(|r| r.client_event_id == e.client_event_id)
            {
                Some(r) if kept.contains(&r.id.to_string()) => r.clone(),
                _ => e.clone(),
            }
        })
        .collect();
    assert!(folded.iter().all(|e| kept.contains(&e.id.to_string())));
    folded.sort_by_key(|e| e.id);
    let expected = Progress::fold(None, &folded, &Rules::default()).unwrap();
    assert_eq!(stored, expected);
    assert!(
        stored.completed,
        "the manual complete, in a later visit, is last"
    );
    assert!(a.batches > 0 && b.batches > 0, "both consumers worked");
    // 500 replays, and each retry twice (or its original, when the retry
    // was stored first): one event per client id.
    assert_eq!(a.duplicates + b.duplicates, 600, "each replayed event once");
    let stored_events = client
        .database(&db)
        .collection::<bson::Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored_events, 500, "one event per client id");
    let positions = client
        .database(&db)
        .collection::<bson::Document>("video_positions");
    let learner = Learner::User("racer".into()).key();
    let position = positions
        .find_one(doc! { "learner": learner })
        .await
        .unwrap()
        .unwrap();
    // The newest video event (499) wins, though it was not the last to arrive.
    assert_eq!(position.get_f64("position").unwrap(), 499.0);
}
