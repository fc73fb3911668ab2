//! The dirty-mark protocol against a real server: marks throttle, claims
//! exclude each other, settling deletes only what nothing re-marked (even a
//! mark made while the claim was made), a consumer overtaken by another
//! (its lease lapsed) marks the key again, and a visit's page views have
//! one key, whichever key a ping marks.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bson::{Document, doc};
use futures_util::TryStreamExt;
use visitlog_analytics::{AnalyticsRules, visit_key};
use visitlog_consumer::analytics::{Analytics, DerivedKind, Mark, Marks};
use visitlog_consumer::batch::Preparer;
use visitlog_consumer::sink::Sink;
use visitlog_schema::{EventRecord, EventType, RequestRecord};
use visitlog_tests::{shared_mongodb_uri, test_database};

async fn marks(owner: &str, interval: Duration, lease: Duration, db: &str) -> (Marks, Sink) {
    let sink = Sink::new(&shared_mongodb_uri(), db).await.unwrap();
    let marks = Marks::new(sink.database(), interval, lease, owner);
    marks.create_indexes().await.unwrap();
    (marks, sink)
}

async fn stored(sink: &Sink, id: &str) -> Option<Document> {
    sink.database()
        .collection::<Document>("derivations")
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
}

/// An integer field, whatever width the server stored.
fn int(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        Some(bson::Bson::Int64(n)) => *n,
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test]
async fn marks_are_throttled_claimed_once_and_settled() {
    let db = test_database();
    let (a, sink) = marks(
        "a",
        Duration::from_millis(300),
        Duration::from_secs(60),
        &db,
    )
    .await;
    let (b, _) = marks(
        "b",
        Duration::from_millis(300),
        Duration::from_secs(60),
        &db,
    )
    .await;
    a.mark([
        Mark::learner("user:ann", 5_000),
        Mark::learner("user:ann", 3_000),
    ])
    .await
    .unwrap();
    a.mark([Mark::learner("user:ann", 4_000)]).await.unwrap();
    let m = stored(&sink, "learner:user:ann").await.unwrap();
    assert_eq!(int(&m, "gen"), 2, "one increment per batch");
    assert_eq!(int(&m, "from_ms"), 3_000, "the earliest activity");
    // Not due before the interval.
    assert!(a.claim(DerivedKind::Learner, 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.lag().await.unwrap() >= Duration::from_millis(50));
    let claimed = a.claim(DerivedKind::Learner, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].mark.from_ms, Some(3_000));
    assert!(
        b.claim(DerivedKind::Learner, 10).await.unwrap().is_empty(),
        "held by a"
    );
    assert!(
        a.claim(DerivedKind::Video, 10).await.unwrap().is_empty(),
        "kinds apart"
    );
    // No mark since the claim: settled means gone.
    let s = a.settle(&claimed).await.unwrap();
    assert_eq!((s.done, s.overtaken), (1, 0));
    assert!(stored(&sink, "learner:user:ann").await.is_none());
    assert_eq!(a.pending().await.unwrap(), 0);

    // A mark during the computation keeps the key, due after the interval.
    a.mark([Mark::new(DerivedKind::Video, "v1")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = a.claim(DerivedKind::Video, 10).await.unwrap();
    a.mark([Mark::new(DerivedKind::Video, "v1")]).await.unwrap();
    a.settle(&claimed).await.unwrap();
    let m = stored(&sink, "video:v1").await.unwrap();
    assert_eq!(int(&m, "lease_ms"), 0, "released");
    assert!(
        a.claim(DerivedKind::Video, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.claim(DerivedKind::Video, 10).await.unwrap().len(), 1);

    // A learner marked while computed starts from its new activity next
    // time, not from the first activity ever.
    a.mark([Mark::learner("user:bob", 10_000)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = a.claim(DerivedKind::Learner, 10).await.unwrap();
    assert_eq!(claimed[0].mark.from_ms, Some(10_000));
    a.mark([Mark::learner("user:bob", 20_000)]).await.unwrap();
    a.settle(&claimed).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = a.claim(DerivedKind::Learner, 10).await.unwrap();
    assert_eq!(claimed[0].mark.from_ms, Some(20_000));
    // A claim that was never settled (its consumer died) hands its start
    // on: the next claim starts from the earlier of the two.
    a.mark([Mark::learner("user:bob", 30_000)]).await.unwrap();
    let (c, _) = marks("c", Duration::ZERO, Duration::ZERO, &db).await;
    sink.database()
        .collection::<Document>("derivations")
        .update_one(
            doc! { "_id": "learner:user:bob" },
            doc! { "$set": { "lease_ms": 0_i64, "due_ms": 0_i64 } },
        )
        .await
        .unwrap();
    let taken = c.claim(DerivedKind::Learner, 10).await.unwrap();
    assert_eq!(taken[0].mark.from_ms, Some(20_000));
}

#[tokio::test]
async fn an_overtaken_consumer_marks_the_key_again() {
    let db = test_database();
    // Leases lapse at once: b may claim what a holds.
    let (a, sink) = marks("a", Duration::ZERO, Duration::ZERO, &db).await;
    let (b, _) = marks("b", Duration::ZERO, Duration::ZERO, &db).await;
    a.mark([Mark::new(DerivedKind::Day, "2026-12-01")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let by_a = a.claim(DerivedKind::Day, 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let by_b = b.claim(DerivedKind::Day, 10).await.unwrap();
    assert_eq!((by_a.len(), by_b.len()), (1, 1));
    assert!(by_b[0].fence > by_a[0].fence);
    // b finishes first; a's write may be the older one: computed again.
    assert_eq!(b.settle(&by_b).await.unwrap().done, 1);
    assert!(stored(&sink, "day:2026-12-01").await.is_none());
    assert_eq!(a.settle(&by_a).await.unwrap().overtaken, 1);
    let again = stored(&sink, "day:2026-12-01").await.unwrap();
    assert_eq!(again.get_str("kind").unwrap(), "day");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let claimed = b.claim(DerivedKind::Day, 10).await.unwrap();
    assert_eq!(claimed[0].mark.key, "2026-12-01");
}

/// A claim's `gen` is the one its update matched: a mark that lands
/// between the update and the claim's read back is not computed (its
/// `from_ms` came after the claim took `from_ms`), so settling keeps it.
#[tokio::test]
async fn a_mark_made_while_a_claim_is_made_is_never_settled_away() {
    let db = test_database();
    let (a, sink) = marks("a", Duration::ZERO, Duration::from_secs(60), &db).await;
    let (b, _) = marks("b", Duration::ZERO, Duration::from_secs(60), &db).await;
    // Many learners marked from 20 s, then claimed by a while b marks each
    // from 10 s, one at a time: b's marks land before a's claim, between
    // its update and its read back, and after it.
    let learners: Vec<String> = (0..60).map(|i| format!("user:u{i}")).collect();
    for round in 0..5 {
        a.mark(learners.iter().map(|l| Mark::learner(l, 20_000)))
            .await
            .unwrap();
        let marking = async {
            for l in &learners {
                b.mark([Mark::learner(l, 10_000)]).await.unwrap();
            }
        };
        let (claimed, ()) = tokio::join!(a.claim(DerivedKind::Learner, 100), marking);
        let claimed = claimed.unwrap();
        assert!(!claimed.is_empty(), "round {round}: a claimed nothing");
        a.settle(&claimed).await.unwrap();
        for c in &claimed {
            // Computed from 10 s, or still marked from 10 s.
            let left = stored(&sink, &format!("learner:{}", c.mark.key)).await;
            let marked_from = left
                .as_ref()
                .filter(|m| m.contains_key("from_ms"))
                .map(|m| int(m, "from_ms"));
            assert!(
                c.mark.from_ms == Some(10_000) || marked_from == Some(10_000),
                "round {round}: {} claimed from {:?}, left {left:?}",
                c.mark.key,
                c.mark.from_ms
            );
        }
        // Start the next round afresh.
        sink.database()
            .collection::<Document>("derivations")
            .delete_many(doc! {})
            .await
            .unwrap();
    }
}

/// Stores records as a consumer does, and marks what they touch.
async fn store(sink: &Sink, marks: &Marks, records: &[&impl serde::Serialize]) {
    let raw = records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let prepared = Preparer::new().unwrap().prepare(raw);
    assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
    let (_, batch) = sink.store(prepared, "t", "q", 1 << 20).await.unwrap();
    marks.mark(batch.marks).await.unwrap();
}

/// Claims exclude per key, and a ping marks its page's key (`page:<id>`),
/// not its visit's: were both keys to compute the visit's page views, the
/// visit's claim could read before a ping and write after the page's claim
/// wrote it, both settling cleanly, the ping left out for good. The page's
/// key only marks the visit, so the visit's key writes it once more. a's
/// computation is played by hand: it writes the page view as a read before
/// the second ping gives it.
#[tokio::test]
async fn a_ping_during_its_visits_claim_is_never_left_out() {
    let db = test_database();
    let (a, sink) = marks("a", Duration::ZERO, Duration::from_secs(60), &db).await;
    let b = Analytics::new(sink.clone(), AnalyticsRules::default(), Duration::ZERO, "b");
    b.setup().await.unwrap();
    let page = RequestRecord::example();
    let ping = |s: i64| {
        let mut e = EventRecord::example();
        e.id = uuid::Uuid::now_v7();
        e.event_type = EventType::PagePing;
        e.ts = page.ts + chrono::Duration::seconds(s);
        (e.visitor_id, e.visit_number) = (page.visitor_id, page.visit_number);
        (e.video_id, e.position, e.duration) = (None, None, None);
        e.page_view = Some(page.id);
        e.active_ms = Some(15_000);
        e
    };
    let views = sink.database().collection::<Document>("page_views");
    let pings = async || {
        let v = views.find_one(doc! { "_id": page.id.to_string() }).await;
        int(&v.unwrap().unwrap(), "pings")
    };
    store(&sink, b.marks(), &[&page]).await;
    store(&sink, b.marks(), &[&ping(15)]).await;
    b.pass().await.unwrap();
    assert_eq!(pings().await, 1);
    // What a computation of the visit reading now writes.
    let older = views
        .find_one(doc! { "_id": page.id.to_string() })
        .await
        .unwrap()
        .unwrap();
    // a claims the visit (a replay of its page marked it) and reads ...
    a.mark([Mark::new(DerivedKind::Visit, visit_key(&page))])
        .await
        .unwrap();
    let held = a.claim(DerivedKind::Visit, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    // ... b stores a second ping and computes what it marked ...
    store(&sink, b.marks(), &[&ping(30)]).await;
    b.pass().await.unwrap();
    assert_eq!(pings().await, 1, "the visit is a's to write");
    // ... and a writes what it read, then settles.
    views
        .replace_one(doc! { "_id": page.id.to_string() }, older)
        .await
        .unwrap();
    a.settle(&held).await.unwrap();
    // What is still marked is computed: the page view has both pings.
    b.pass().await.unwrap();
    assert_eq!(a.pending().await.unwrap(), 0);
    assert_eq!(pings().await, 2, "the second ping left out");
}

/// A batch's marks written as one document come out as the marks they
/// were: each key once for all the batches expanded together, due when its
/// earliest batch's mark would have been, with the earliest `from_ms`; the
/// batch documents are gone once expanded, and expanding one twice (a
/// consumer that died mid-way) only marks again.
#[tokio::test]
async fn batches_of_marks_expand_into_each_key_once() {
    let db = test_database();
    let interval = Duration::from_millis(600);
    let (a, sink) = marks("a", interval, Duration::from_secs(60), &db).await;
    let coll = sink.database().collection::<Document>("derivations");
    let all = async || -> Vec<Document> {
        let found = coll.find(doc! {}).await.unwrap();
        found.try_collect().await.unwrap()
    };
    let kinds = async || {
        let all = all().await;
        let mut kinds: Vec<&str> = all.iter().map(|d| d.get_str("kind").unwrap()).collect();
        kinds.sort_unstable();
        kinds
            .iter()
            .map(|k| (*k).to_owned())
            .collect::<Vec<String>>()
    };
    let written = a
        .journal([
            Mark::new(DerivedKind::Visit, "v:1"),
            Mark::learner("user:ann", 5_000),
            Mark::new(DerivedKind::Visit, "v:1"),
        ])
        .await
        .unwrap();
    assert_eq!(written, 2, "distinct keys");
    let started = visitlog_consumer::analytics::marks::now_ms();
    a.journal([
        Mark::learner("user:ann", 3_000),
        Mark::new(DerivedKind::Day, "2026-12-03"),
    ])
    .await
    .unwrap();
    assert_eq!(kinds().await, ["batch", "batch"], "no key marked yet");
    assert_eq!(a.pending().await.unwrap(), 4, "the marks the batches list");
    // Due at the end of the half interval they were written in.
    let half = interval.as_millis() as i64 / 2;
    for b in all().await {
        let (due, at) = (
            int(&b, "due_ms"),
            int(b.get_document("args").unwrap(), "at_ms"),
        );
        assert!(due > at && due <= at + half && due % half == 0, "{b}");
    }
    tokio::time::sleep(interval / 2 + Duration::from_millis(50)).await;
    let batches = a.claim(DerivedKind::Batch, 10).await.unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(a.expand(&batches).await.unwrap(), 3);
    a.settle(&batches).await.unwrap();
    assert_eq!(kinds().await, ["day", "learner", "visit"]);
    assert_eq!(a.pending().await.unwrap(), 3);
    let visit = stored(&sink, "visit:v:1").await.unwrap();
    assert_eq!(int(&visit, "gen"), 1, "one statement for both marks");
    let learner = stored(&sink, "learner:user:ann").await.unwrap();
    assert_eq!(int(&learner, "gen"), 1, "one statement for both batches");
    assert_eq!(int(&learner, "from_ms"), 3_000, "the earliest activity");
    // Due a whole interval after the first batch, not after the expansion.
    let due = int(&visit, "due_ms");
    let interval_ms = interval.as_millis() as i64;
    assert!(
        due > started + interval_ms - 200 && due <= started + interval_ms,
        "{due} against {started}"
    );
    assert!(
        a.claim(DerivedKind::Visit, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    // An expansion run again (its consumer died before settling) marks again.
    assert_eq!(a.expand(&batches).await.unwrap(), 3);
    assert_eq!(int(&stored(&sink, "visit:v:1").await.unwrap(), "gen"), 2);
    tokio::time::sleep(interval).await;
    assert_eq!(a.claim(DerivedKind::Visit, 10).await.unwrap().len(), 1);
}

/// A visit computed again writes only the page views whose figures
/// changed: its next page gives the last one a time on page, and the pages
/// before keep their documents (`derived_at` of the first computation). A
/// replay, which changes nothing, writes none.
#[tokio::test]
async fn a_visit_computed_again_rewrites_only_what_changed() {
    let db = test_database();
    let (_, sink) = marks("a", Duration::ZERO, Duration::from_secs(60), &db).await;
    let b = Analytics::new(sink.clone(), AnalyticsRules::default(), Duration::ZERO, "b");
    b.setup().await.unwrap();
    let first = RequestRecord::example();
    let page = |n: i64| {
        let mut r = first.clone();
        r.id = uuid::Uuid::now_v7();
        r.ts = first.ts + chrono::Duration::seconds(60 * n);
        r
    };
    let pages = [page(0), page(1), page(2), page(3)];
    let views = sink.database().collection::<Document>("page_views");
    let stamps = async || -> Vec<(Option<bson::DateTime>, Option<f64>)> {
        let mut out = Vec::new();
        for p in &pages {
            let v = views
                .find_one(doc! { "_id": p.id.to_string() })
                .await
                .unwrap();
            out.push(v.map_or((None, None), |v| {
                (
                    v.get_datetime("derived_at").ok().copied(),
                    v.get_f64("time_on_page_s").ok(),
                )
            }));
        }
        out
    };
    store(&sink, b.marks(), &[&pages[0], &pages[1], &pages[2]]).await;
    b.pass().await.unwrap();
    let once = stamps().await;
    assert!(once[..3].iter().all(|(at, _)| at.is_some()), "{once:?}");
    assert_eq!(once[2].1, None, "the last page: time on page unknown");
    tokio::time::sleep(Duration::from_millis(5)).await;

    store(&sink, b.marks(), &[&pages[3]]).await;
    b.pass().await.unwrap();
    let twice = stamps().await;
    assert_eq!(twice[..2], once[..2], "unchanged pages written again");
    assert_eq!(twice[2].1, Some(60.0), "the next page ends the last one");
    assert!(twice[2].0 > once[2].0 && twice[3].0.is_some(), "{twice:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;

    // A replay marks the visit again; its page views stay as they were.
    store(&sink, b.marks(), &[&pages[1]]).await;
    b.pass().await.unwrap();
    assert_eq!(b.marks().pending().await.unwrap(), 0);
    assert_eq!(stamps().await, twice);
}

/// A key marked while it was computed waits ten times what computing it
/// took when that is longer than the interval (a busy day read whole), and
/// the interval otherwise.
#[tokio::test]
async fn an_expensive_key_waits_ten_times_its_cost() {
    let db = test_database();
    let (a, sink) = marks(
        "a",
        Duration::from_millis(100),
        Duration::from_secs(60),
        &db,
    )
    .await;
    let due_in = async |cost: Duration| {
        a.mark([Mark::new(DerivedKind::Day, "2026-12-01")])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let claimed = a.claim(DerivedKind::Day, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        a.mark([Mark::new(DerivedKind::Day, "2026-12-01")])
            .await
            .unwrap();
        let before = visitlog_consumer::analytics::marks::now_ms();
        assert_eq!(a.settle_after(&claimed, cost).await.unwrap().done, 1);
        let m = stored(&sink, "day:2026-12-01").await.unwrap();
        let due = int(&m, "due_ms") - before;
        // Claimable again once due (a claim is made at the due time).
        sink.database()
            .collection::<Document>("derivations")
            .update_one(
                doc! { "_id": "day:2026-12-01" },
                doc! { "$set": { "due_ms": 0_i64 } },
            )
            .await
            .unwrap();
        let claimed = a.claim(DerivedKind::Day, 10).await.unwrap();
        a.settle(&claimed).await.unwrap();
        due
    };
    let cheap = due_in(Duration::from_millis(2)).await;
    assert!((100..1_000).contains(&cheap), "the interval: {cheap} ms");
    let costly = due_in(Duration::from_secs(3)).await;
    assert!(
        (30_000..31_000).contains(&costly),
        "ten times 3 s: {costly} ms"
    );
    // A one-shot command's marks (interval 0: the import computes all it
    // touched before it exits) stay due at once, however costly.
    let (now, _) = marks("i", Duration::ZERO, Duration::from_secs(60), &db).await;
    now.mark([Mark::new(DerivedKind::Day, "2026-12-02")])
        .await
        .unwrap();
    let claimed = now.claim(DerivedKind::Day, 10).await.unwrap();
    now.mark([Mark::new(DerivedKind::Day, "2026-12-02")])
        .await
        .unwrap();
    now.settle_after(&claimed, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(now.claim(DerivedKind::Day, 10).await.unwrap().len(), 1);
}
