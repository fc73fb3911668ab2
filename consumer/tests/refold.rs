//! Folding a learner's whole history again (a late event, a replay): in
//! bounded memory whatever its length, and without holding up other
//! learners. And resume positions that race.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bson::{Document, doc};
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;
use visitlog_consumer::batch::event_document;
use visitlog_consumer::sink::{Sink, position_statement};
use visitlog_progress::{Progress, Rules, VideoPosition};
use visitlog_schema::{EventRecord, EventType, Learner, progress_id};
use visitlog_tests::{
    Namespace, eventually, push, queue_lengths, shared_mongodb_uri, test_database,
};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(120);

/// An event of `user` in one tutorial, its id stamped at `ts`.
fn event(user: &str, ts: DateTime<Utc>, i: usize) -> EventRecord {
    EventRecord {
        id: Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        )),
        ts,
        event_type: EventType::VideoProgress,
        learner: Learner::User(user.into()).key(),
        user: Some(user.into()),
        visitor_id: Some(Uuid::from_u128(7)),
        visit_number: Some(1),
        session_id: None,
        foss: "Python".into(),
        tutorial: "Functions".into(),
        language: "Marathi".into(),
        video_id: Some("Python/Functions/Marathi".into()),
        position: Some((i % 590 + 1) as f64),
        duration: Some(600.0),
        played_from: Some((i % 590) as f64),
        rate: None,
        client_event_id: None,
        ..EventRecord::example()
    }
}

/// The `video_positions` document `e` makes.
fn video_position(e: &EventRecord) -> Option<Document> {
    VideoPosition::of(e).map(|p| p.to_document().unwrap())
}

fn progress_of(user: &str) -> String {
    progress_id(
        &Learner::User(user.into()).key(),
        "Python",
        "Functions",
        "Marathi",
    )
}

/// Stores `n` events of `user`, one a millisecond from `t0`, straight into
/// `events`, and the progress document they fold to, as if the consumer had
/// derived them; returns the events.
async fn stored_history(
    uri: &str,
    db: &str,
    user: &str,
    t0: DateTime<Utc>,
    n: usize,
) -> Vec<EventRecord> {
    let sink = Sink::new(uri, db).await.unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    let events: Vec<EventRecord> = (0..n)
        .map(|i| event(user, t0 + chrono::Duration::milliseconds(i as i64), i))
        .collect();
    for chunk in events.chunks(5000) {
        let docs: Vec<bson::RawDocumentBuf> =
            chunk.iter().map(|e| event_document(e).unwrap()).collect();
        sink.events()
            .clone_with_type::<bson::RawDocumentBuf>()
            .insert_many(docs)
            .await
            .unwrap();
    }
    let folds: Vec<EventRecord> = events.to_vec();
    let progress = Progress::fold(None, &folds, &Rules::default()).unwrap();
    sink.tutorial_progress()
        .insert_one(progress.to_document().unwrap())
        .await
        .unwrap();
    events
}

/// The fold of `events`, as the consumer must store it.
fn expected(events: &[EventRecord]) -> Progress {
    let mut folds: Vec<EventRecord> = events.to_vec();
    folds.sort_by_key(|e| e.id);
    Progress::fold(None, &folds, &Rules::default()).unwrap()
}

async fn progress_doc(uri: &str, db: &str, id: &str) -> Option<Document> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database(db)
        .collection::<Document>("tutorial_progress")
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
}

/// Waits until the progress document `id` reads back as `want`.
async fn wait_progress(uri: &str, db: &str, id: &str, want: &Progress) {
    eventually(WAIT, Duration::from_millis(100), async || {
        let doc = progress_doc(uri, db, id).await;
        if let Some(d) = &doc
            && Progress::from_document(d).ok().as_ref() == Some(want)
        {
            return Ok(());
        }
        Err(format!(
            "progress {id} never became the fold of its events: {doc:?}"
        ))
    })
    .await
    .unwrap();
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `user` has one session from `start` to `end`.
async fn wait_session(uri: &str, db: &str, user: &str, start: DateTime<Utc>, end: DateTime<Utc>) {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let sessions = client.database(db).collection::<Document>("sessions");
    let learner = Learner::User(user.into()).key();
    let id = visitlog_analytics::session_id(&learner, start);
    eventually(WAIT, Duration::from_millis(200), async || {
        let doc = sessions.find_one(doc! { "_id": &id }).await.unwrap();
        match doc.as_ref().map(|d| d.get_datetime("end")) {
            Some(Ok(e)) if e.to_chrono() == end => Ok(()),
            _ => Err(format!("no session {id} of {user} ending {end}: {doc:?}")),
        }
    })
    .await
    .unwrap();
}

/// The case: one late event after 50,000 events of one learner. The
/// daemon folds the whole history again, and computes the learner's
/// sessions again over it, and its peak memory grows by a bounded amount,
/// not with the history. Measured here (debug build, nx-27017): the
/// refold, +15.8 MiB when the history was collected, under 1 MiB streamed
/// (the issue saw 166 MB with a release build); with the sessions computed
/// too, +259 MiB when their window was collected, +0.1 MiB streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_after_fifty_thousand_refolds_in_bounded_memory() {
    const N: usize = 50_000;
    /// What a refold may add to the daemon's peak memory.
    const BOUND: u64 = 6 * 1024 * 1024;
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let t0 = (Utc::now() - chrono::Duration::hours(2)).trunc_subsecs(3);
    let mut events = stored_history(&uri, &db, "long", t0, N).await;

    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_visitlog-consumer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("VISITLOG_REDIS_URL", ns.redis_url())
            .env("VISITLOG_QUEUE", ns.queue())
            .env("VISITLOG_MONGODB_URI", &uri)
            .env("VISITLOG_DATABASE", &db)
            .env("VISITLOG_FLUSH_INTERVAL", "50ms")
            .env("VISITLOG_MAX_BACKOFF", "500ms")
            .env("VISITLOG_STATUS_ADDR", "127.0.0.1:0")
            .env("VISITLOG_DERIVE_INTERVAL", "200ms")
            .env("RUST_LOG", "warn")
            .args(["--consumer-id", "refold-memory", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();

    // Warm up with full batches of another learner: what the daemon needs
    // anyway, before the refold.
    let warm: Vec<EventRecord> = (0..3000)
        .map(|i| event("warm", t0 + chrono::Duration::milliseconds(i as i64), i))
        .collect();
    let payloads: Vec<Vec<u8>> = warm
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    wait_progress(&uri, &db, &progress_of("warm"), &expected(&warm)).await;
    wait_session(&uri, &db, "warm", t0, warm[warm.len() - 1].ts).await;
    let before = peak_rss(pid);

    // One event older than everything stored: the whole history again.
    let late = event("long", t0 - chrono::Duration::seconds(1), 3);
    push(
        ns.redis_url(),
        ns.queue(),
        &[serde_json::to_vec(&late).unwrap()],
    )
    .await
    .unwrap();
    events.push(late.clone());
    wait_progress(&uri, &db, &progress_of("long"), &expected(&events)).await;
    // And the analytics compute the learner's sessions over it all.
    let last = t0 + chrono::Duration::milliseconds(N as i64 - 1);
    wait_session(&uri, &db, "long", late.ts, last).await;
    let after = peak_rss(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "refold of {} events: peak RSS {} -> {} MiB (+{:.1} MiB)",
        N + 1,
        before / (1024 * 1024),
        after / (1024 * 1024),
        growth as f64 / (1024.0 * 1024.0)
    );
    assert!(
        growth < BOUND,
        "a refold of {} events grew the peak memory by {growth} bytes",
        N + 1
    );
    drop(daemon);
}

/// A refold that cannot finish (another writer keeps changing the learner's
/// document under it) does not hold up a batch of an unrelated learner: that
/// one is derived and acknowledged meanwhile, and the refold completes with
/// the exact fold once the document holds still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_learners_batch_completes_while_a_refold_runs() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let t0 = (Utc::now() - chrono::Duration::hours(2)).trunc_subsecs(3);
    let mut events = stored_history(&uri, &db, "busy", t0, 5000).await;
    let busy = progress_of("busy");
    let consumer = InProcess::start(visitlog_consumer::config::Config {
        max_in_flight: 2,
        ..config(&ns, &uri, &db, "refold-turns")
    });

    // Another writer keeps changing the busy learner's document, so every
    // attempt at writing its refold misses and starts again.
    let stop = Arc::new(AtomicBool::new(false));
    let bumper = {
        let (stop, uri, db, busy) = (stop.clone(), uri.clone(), db.clone(), busy.clone());
        tokio::spawn(async move {
            let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
            let progress = client
                .database(&db)
                .collection::<Document>("tutorial_progress");
            let mut bumps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                progress
                    .update_one(doc! { "_id": &busy }, doc! { "$inc": { "folded": 1 } })
                    .await
                    .unwrap();
                bumps += 1;
            }
            bumps
        })
    };

    // A late event of the busy learner: its batch must fold 5,000 events again.
    let late = event("busy", t0 - chrono::Duration::seconds(1), 1);
    push(
        ns.redis_url(),
        ns.queue(),
        &[serde_json::to_vec(&late).unwrap()],
    )
    .await
    .unwrap();
    events.push(late);
    // Fetched (in a processing list) before the next batch is queued.
    eventually(WAIT, Duration::from_millis(20), async || {
        if queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 1) {
            Err("never fetched")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();

    // An unrelated learner's batch, fetched after it.
    let other: Vec<EventRecord> = (0..20)
        .map(|i| event("other", t0 + chrono::Duration::seconds(i as i64), i))
        .collect();
    let payloads: Vec<Vec<u8>> = other
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    wait_progress(&uri, &db, &progress_of("other"), &expected(&other)).await;
    // Acknowledged too, while the refold's batch is still in its list.
    eventually(WAIT, Duration::from_millis(20), async || {
        let lengths = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
        if lengths == (0, 1) {
            return Ok(());
        }
        Err(format!(
            "the unrelated batch was not acknowledged: {lengths:?}"
        ))
    })
    .await
    .unwrap();

    // Let the busy document hold still: the refold finishes, exactly.
    stop.store(true, Ordering::Relaxed);
    let bumps = bumper.await.unwrap();
    assert!(bumps > 0);
    wait_progress(&uri, &db, &busy, &expected(&events)).await;
    eventually(WAIT, Duration::from_millis(50), async || {
        if queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 0) {
            Err("never acknowledged")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    let stats = consumer.stop().await;
    assert_eq!(stats.batches, 2);
}

/// A first resume position written by two consumers at once: the loser's
/// upsert collides on `_id` (11000) with the winner's document. Whichever
/// event is newer must stay: the collision is not ignored, the statement is
/// compared again against the document now there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_position_that_collides_keeps_the_newest_event() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let sink = Sink::new(&uri, &db).await.unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    let positions = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db)
        .collection::<Document>("video_positions");
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let older = event("racer", t0, 10);
    let newer = event("racer", t0 + chrono::Duration::seconds(5), 20);
    let statement = |e: &EventRecord| {
        let doc = video_position(e).unwrap();
        let id = doc.get_str("_id").unwrap().to_owned();
        position_statement(&id, e.id, doc, true)
    };
    let stored = || async {
        positions
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap()
            .get_str("last_event")
            .unwrap()
            .to_owned()
    };

    // The race lost by the newer event: the other consumer's insert of the
    // older one landed between our filter's miss and our insert.
    positions
        .insert_one(video_position(&older).unwrap())
        .await
        .unwrap();
    assert_eq!(
        sink.write_positions_again(vec![statement(&newer)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(stored().await, newer.id.to_string(), "the newest wins");

    // The race lost by the older event: the newer stays.
    assert_eq!(
        sink.write_positions_again(vec![statement(&older)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(stored().await, newer.id.to_string());

    // Through the whole write: the collision path is taken (the document
    // is there with a newer event) and changes nothing; an older document
    // is replaced without a collision.
    assert_eq!(
        sink.write_positions(vec![statement(&older)]).await.unwrap(),
        0
    );
    assert_eq!(stored().await, newer.id.to_string());
    positions.delete_many(doc! {}).await.unwrap();
    positions
        .insert_one(video_position(&older).unwrap())
        .await
        .unwrap();
    assert_eq!(
        sink.write_positions(vec![statement(&newer)]).await.unwrap(),
        1
    );
    assert_eq!(stored().await, newer.id.to_string());

    // Two consumers racing for many first positions: the newest always wins.
    let rival = Sink::new(&uri, &db).await.unwrap();
    positions.delete_many(doc! {}).await.unwrap();
    let many: Vec<(EventRecord, EventRecord)> = (0..200)
        .map(|i| {
            let user = format!("racer{i}");
            (
                event(&user, t0, i),
                event(&user, t0 + chrono::Duration::seconds(5), i + 1),
            )
        })
        .collect();
    let olds: Vec<Document> = many.iter().map(|(o, _)| statement(o)).collect();
    let news: Vec<Document> = many.iter().map(|(_, n)| statement(n)).collect();
    let (a, b) = tokio::join!(sink.write_positions(olds), rival.write_positions(news));
    a.unwrap();
    b.unwrap();
    for (_, newest) in &many {
        let doc = positions
            .find_one(doc! { "learner": &newest.learner })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(doc.get_str("last_event").unwrap(), newest.id.to_string());
    }
}
