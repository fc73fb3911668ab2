//! Erasure and export of one person's data end to end: two learners and an
//! anonymous visitor use the example site, the consumer stores and derives
//! it all, more of it waits on the queue, and then `visitlog-consumer
//! export` writes one learner's data and `erase` removes it from Redis and
//! every collection, leaving everyone else's.

#![allow(clippy::unwrap_used)]

#[path = "../../consumer/tests/common/mod.rs"]
mod common;
mod support;

use std::process::Command;
use std::time::Duration;

use bson::{Document, doc};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use visitlog_consumer::analytics::{DerivedKind, Mark, Marks};
use visitlog_tests::{Namespace, eventually, shared_mongodb_uri, test_database};

use common::{InProcess, config};
use support::{CaptureConfig, Site};

const PAGE: &str = "/watch/Python/Getting-started/English/";

use support::Client as Browser;

impl Browser {
    /// `GET path`, which must answer 200.
    async fn page(&mut self, site: &Site, path: &str) {
        let response = self.get(site.url(path)).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }

    async fn watch(&mut self, site: &Site) {
        let events = json!([
            {"type": "video.play", "foss": "Python", "tutorial": "Getting-started", "language": "English",
             "video_id": "Python/Getting-started/English", "position": 0.0, "duration": 120.0},
            {"type": "video.pause", "foss": "Python", "tutorial": "Getting-started", "language": "English",
             "video_id": "Python/Getting-started/English", "position": 5.0, "duration": 120.0, "played_from": 0.0},
        ]);
        let (status, answer) = self.post_events(site, &events).await;
        assert_eq!(status, 202, "{answer}");
    }
}

/// Documents of `collection` naming `user` (as user or learner).
async fn of_user(uri: &str, db: &str, collection: &str, user: &str) -> u64 {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database(db)
        .collection::<Document>(collection)
        .count_documents(
            doc! { "$or": [ { "user": user }, { "learner": format!("user:{user}") } ] },
        )
        .await
        .unwrap()
}

fn consumer_command(ns: &Namespace, uri: &str, db: &str) -> Command {
    let mut c = Command::new(support::consumer_binary());
    c.env_clear()
        .env("VISITLOG_REDIS_URL", ns.redis_url())
        .env("VISITLOG_QUEUE", ns.queue())
        .env("VISITLOG_MONGODB_URI", uri)
        .env("VISITLOG_DATABASE", db)
        .env("VISITLOG_SHUTDOWN_DEADLINE", "1s");
    c
}

const COLLECTIONS: [&str; 6] = [
    "request_logs",
    "events",
    "page_views",
    "sessions",
    "tutorial_progress",
    "video_positions",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_learner_is_exported_then_erased_everywhere_and_no_one_else() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(config(&ns, &uri, &db, "erasure"));
    let site = Site::start(ns.config()).await.unwrap();

    let mut erin = Browser::new(&site);
    erin.page(&site, "/").await; // anonymous first: linked at login
    erin.login(&site, "erin").await;
    erin.page(&site, PAGE).await;
    erin.watch(&site).await;
    let mut frank = Browser::new(&site);
    frank.login(&site, "frank").await;
    frank.page(&site, PAGE).await;
    frank.watch(&site).await;
    let mut anonymous = Browser::new(&site);
    anonymous.page(&site, PAGE).await;

    // Stored and derived: progress and page views of both learners.
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(200),
        async || {
            for user in ["erin", "frank"] {
                for collection in ["request_logs", "events", "tutorial_progress", "page_views"] {
                    let n = of_user(&uri, &db, collection, user).await;
                    if n == 0 {
                        return Err(format!("no {collection} of {user} yet"));
                    }
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    consumer.stop().await;

    // Consumer stopped: these wait on the queue.
    erin.page(&site, PAGE).await;
    frank.page(&site, PAGE).await;
    site.shutdown(Duration::from_secs(5)).await;
    let queued = ns.records().await.unwrap();
    assert_eq!(queued.iter().filter(|r| r["user"] == "erin").count(), 1);

    // Export: erin's documents only, as JSON lines, in a file only its owner reads.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("erin.jsonl");
    let out = consumer_command(&ns, &uri, &db)
        .args(["export", "--user", "erin", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let places: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l["collection"].as_str().unwrap())
        .collect();
    for place in [
        "request_logs",
        "events",
        "tutorial_progress",
        "page_views",
        "learner_links",
    ] {
        assert!(places.contains(place), "{place} missing from {places:?}");
    }
    assert!(places.iter().any(|p| p.starts_with("redis:")), "{places:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("frank"), "another learner in the export");
    // The visit before login is erin's too (her browser, linked to her only).
    let visitor = lines
        .iter()
        .find(|l| l["collection"] == "learner_links")
        .map(|l| l["document"]["visitor_id"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        lines.iter().any(|l| l["collection"] == "request_logs"
            && l["document"]["visitor_id"] == visitor.as_str()
            && l["document"]["user"].is_null()),
        "the anonymous visit before login is not in the export"
    );

    // Marks naming her that wait for a consumer (the analytics off or
    // behind): her learner's, a visit of her browser, and a batch's
    // document listing them with frank's.
    let sink = visitlog_consumer::sink::Sink::new(&uri, &db).await.unwrap();
    let book = Marks::new(
        sink.database(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
        "test",
    );
    let hers = [
        Mark::learner("user:erin", 1),
        Mark::new(DerivedKind::Visit, format!("{visitor}:1")),
    ];
    let his = [
        Mark::learner("user:frank", 1),
        Mark::new(DerivedKind::Visit, "00000000-0000-7000-8000-000000000001:1"),
    ];
    book.mark(hers.clone()).await.unwrap();
    book.mark(his.clone()).await.unwrap();
    book.journal(hers.into_iter().chain(his)).await.unwrap();

    // Erase: gone from the queue and every collection; the others stay.
    let out = consumer_command(&ns, &uri, &db)
        .args(["erase", "--user", "erin"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("redis queue: 1"), "{printed}");
    assert!(printed.contains("tutorial_progress: 1"), "{printed}");
    for collection in COLLECTIONS {
        assert_eq!(
            of_user(&uri, &db, collection, "erin").await,
            0,
            "{collection}"
        );
        assert!(
            of_user(&uri, &db, collection, "frank").await > 0 || collection == "sessions",
            "{collection}"
        );
    }
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let database = client.database(&db);
    for collection in ["request_logs", "events", "page_views", "learner_links"] {
        let left = database
            .collection::<Document>(collection)
            .count_documents(doc! { "visitor_id": &visitor })
            .await
            .unwrap();
        assert_eq!(left, 0, "{collection} still holds erin's browser");
    }
    let queued = ns.records().await.unwrap();
    assert!(queued.iter().all(|r| r["user"] != "erin"));
    assert_eq!(queued.iter().filter(|r| r["user"] == "frank").count(), 1);
    // No mark names her any more; frank's stay, listed ones too.
    let marks: Vec<Document> = database
        .collection::<Document>("derivations")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text = format!("{marks:?}");
    assert!(!text.contains("erin") && !text.contains(&visitor), "{text}");
    assert!(printed.contains("derivations: "), "{printed}");
    // The batch document planted above (the consumer's own may be there).
    let listed = marks
        .iter()
        .filter(|m| m.get_str("kind") == Ok("batch"))
        .filter_map(|m| m.get_document("args").ok()?.get_array("marks").ok())
        .find(|listed| format!("{listed:?}").contains("000000000001:1"))
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(text.contains("learner:user:frank"), "{text}");
    // The figures her records fed are to be derived again.
    let marks = database
        .collection::<Document>("derivations")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert!(marks > 0);
    assert!(
        printed.contains("figures marked to be derived again"),
        "{printed}"
    );

    // The anonymous visitor, by id.
    let stranger = database
        .collection::<Document>("request_logs")
        .find_one(doc! { "user": null, "visitor_id": { "$ne": &visitor } })
        .await
        .unwrap()
        .unwrap();
    let stranger = stranger.get_str("visitor_id").unwrap().to_owned();
    let out = consumer_command(&ns, &uri, &db)
        .args(["erase", "--visitor", &stranger])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = database
        .collection::<Document>("request_logs")
        .count_documents(doc! { "visitor_id": &stranger })
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Neither or both: a clear error.
    let out = consumer_command(&ns, &uri, &db)
        .args(["erase"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}
