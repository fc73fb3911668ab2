//! Every write the consumer sends carries its write concern: the records'
//! inserts, and the commands it builds itself (derived documents, learner
//! links, dirty marks and their claims, the analytics), which the driver
//! sends exactly as given. A command monitor on the consumer's own client
//! sees every command of a batch, its derivations and the analytics pass
//! that follows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bson::{Bson, Document};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use visitlog_analytics::AnalyticsRules;
use visitlog_consumer::analytics::Analytics;
use visitlog_consumer::batch::Preparer;
use visitlog_consumer::sink::Sink;
use visitlog_progress::Rules;
use visitlog_schema::{EventRecord, EventType, RequestRecord};
use visitlog_tests::{shared_mongodb_uri, test_database};

/// Write commands seen: (command, collection, its `writeConcern`).
type Seen = Arc<Mutex<Vec<(String, String, Option<Document>)>>>;

async fn monitored_sink(
    database: &str,
    w: Option<mongodb::options::Acknowledgment>,
) -> (Sink, Seen) {
    let seen: Seen = Arc::default();
    let mut options = ClientOptions::parse(shared_mongodb_uri()).await.unwrap();
    let log = seen.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
        let CommandEvent::Started(started) = event else {
            return;
        };
        let name = started.command_name.clone();
        if !["insert", "update", "delete", "findAndModify"].contains(&name.as_str()) {
            return;
        }
        let collection = started
            .command
            .get_str(&name)
            .unwrap_or_default()
            .to_owned();
        let concern = started.command.get_document("writeConcern").ok().cloned();
        log.lock().unwrap().push((name, collection, concern));
    }));
    let sink = Sink::with_options(options, database, w).unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    (sink, seen)
}

/// A logged-in learner's tutorial page view, a video watched on it and a
/// page ping: a batch that stores, links, derives progress and resume
/// positions, and marks visits, learners, videos and days.
fn batch() -> Vec<Vec<u8>> {
    let page = RequestRecord::example();
    let event = |event_type: EventType, seconds: i64| {
        let mut e = EventRecord::example();
        e.id = uuid::Uuid::now_v7();
        e.event_type = event_type;
        e.ts = page.ts + chrono::Duration::seconds(seconds);
        (e.visitor_id, e.visit_number) = (page.visitor_id, page.visit_number);
        e
    };
    let mut ping = event(EventType::PagePing, 30);
    (
        ping.video_id,
        ping.position,
        ping.duration,
        ping.played_from,
        ping.rate,
    ) = (None, None, None, None, None);
    ping.page_view = Some(page.id);
    ping.active_ms = Some(15_000);
    let mut records = vec![serde_json::to_vec(&page).unwrap()];
    for e in [
        event(EventType::VideoPlay, 5),
        event(EventType::VideoProgress, 20),
        ping,
    ] {
        records.push(serde_json::to_vec(&e).unwrap());
    }
    records
}

/// Runs one batch and every analytics pass it causes, as a consumer does.
async fn consume(sink: &Sink) {
    let analytics = Analytics::new(sink.clone(), AnalyticsRules::default(), Duration::ZERO, "t");
    analytics.setup().await.unwrap();
    let prepared = Preparer::new().unwrap().prepare(batch());
    assert!(prepared.dead.is_empty(), "{:?}", prepared.dead);
    let (stored, derive) = sink.store(prepared, "t", "q", 1 << 20).await.unwrap();
    assert!(stored.inserted >= 4, "{stored:?}");
    let rules = Rules::default();
    let (_, refolds) = sink.derive(&derive, &rules).await.unwrap();
    sink.refold(&refolds, &rules).await.unwrap();
    // As a consumer with the analytics on writes them: as one document.
    analytics
        .marks()
        .journal(derive.marks.clone())
        .await
        .unwrap();
    for _ in 0..10 {
        analytics.pass().await.unwrap();
        if analytics.marks().pending().await.unwrap() == 0 {
            break;
        }
    }
    assert_eq!(analytics.marks().pending().await.unwrap(), 0);
}

fn written(seen: &Seen) -> BTreeSet<(String, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(c, coll, _)| (c.clone(), coll.clone()))
        .collect()
}

#[tokio::test]
async fn every_write_carries_the_write_concern() {
    let (sink, seen) = monitored_sink(&test_database(), None).await;
    seen.lock().unwrap().clear(); // Setup's own writes are not the point.
    consume(&sink).await;
    let without: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, w)| w.as_ref().and_then(|w| w.get("w")) != Some(&Bson::from("majority")))
        .cloned()
        .collect();
    assert!(
        without.is_empty(),
        "writes without w: majority: {without:?}"
    );
    // The batch's writes and the analytics' are all among them.
    let written = written(&seen);
    for (command, collection) in [
        ("insert", "request_logs"),
        ("insert", "events"),
        ("update", "learner_links"),
        ("update", "tutorial_progress"),
        ("update", "video_positions"),
        ("insert", "derivations"),
        ("update", "derivations"),
        ("delete", "derivations"),
        ("update", "page_views"),
        ("update", "sessions"),
        ("update", "video_stats"),
        ("update", "site_daily"),
    ] {
        assert!(
            written.contains(&(command.to_owned(), collection.to_owned())),
            "no {command} of {collection} in {written:?}"
        );
    }
}

#[tokio::test]
async fn a_configured_write_concern_is_the_one_sent() {
    let (sink, seen) = monitored_sink(
        &test_database(),
        Some(mongodb::options::Acknowledgment::Nodes(1)),
    )
    .await;
    seen.lock().unwrap().clear();
    consume(&sink).await;
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 10, "{seen:?}");
    for (command, collection, w) in seen.iter() {
        let w = w.as_ref().and_then(|w| w.get("w"));
        assert!(
            matches!(w, Some(Bson::Int32(1) | Bson::Int64(1))),
            "{command} {collection}: {w:?}"
        );
    }
}
