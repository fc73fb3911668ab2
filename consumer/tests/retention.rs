//! Retention set, changed and removed after the fact. On a real MongoDB a
//! changed TTL through `createIndexes` fails with IndexOptionsConflict (85),
//! which nx-27017 silently accepts; this test runs against whichever server
//! the run has (a real `mongod` when one is on PATH or named by
//! `VISITLOG_TEST_MONGODB_URI`), and checks what the server lists after each
//! start.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bson::{Document, doc};
use futures_util::TryStreamExt;
use visitlog_consumer::sink::{Retention, Sink};
use visitlog_tests::{shared_mongodb_uri, test_database};

const DAY: u64 = 86_400;

/// The TTL, in seconds, of the index on exactly `keys`; `Some(None)` for an
/// index without one, `None` when there is no such index.
async fn ttl(uri: &str, db: &str, collection: &str, keys: Document) -> Option<Option<u64>> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let mut cursor = client
        .database(db)
        .collection::<Document>(collection)
        .list_indexes()
        .await
        .unwrap();
    while let Some(index) = cursor.try_next().await.unwrap() {
        // Field names only: nx-27017 lists `{at: -1}` as `{at: 1}`.
        if index.keys.keys().eq(keys.keys()) {
            return Some(
                index
                    .options
                    .and_then(|o| o.expire_after)
                    .map(|d| d.as_secs()),
            );
        }
    }
    None
}

async fn ttls(uri: &str, db: &str) -> [Option<Option<u64>>; 5] {
    [
        ttl(uri, db, "request_logs", doc! { "ts": 1 }).await,
        ttl(uri, db, "events", doc! { "ts": 1 }).await,
        ttl(uri, db, "dead_letters", doc! { "at": -1 }).await,
        ttl(uri, db, "page_views", doc! { "start": 1 }).await,
        ttl(uri, db, "sessions", doc! { "start": 1 }).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_set_changed_and_removed_by_later_starts() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let sink = Sink::new(&uri, &db).await.unwrap();
    let days = |n: u64| Some(Duration::from_secs(n * DAY));

    sink.setup(&Retention::default()).await.unwrap();
    assert_eq!(ttls(&uri, &db).await, [Some(None); 5]);

    let all = Retention {
        requests: days(30),
        events: days(400),
        dead_letters: days(90),
        analytics: days(730),
    };
    sink.setup(&all).await.unwrap();
    let expected = |r: &Retention| {
        let s = |d: Option<Duration>| Some(d.map(|d| d.as_secs()));
        [
            s(r.requests),
            s(r.events),
            s(r.dead_letters),
            s(r.analytics),
            s(r.analytics),
        ]
    };
    assert_eq!(ttls(&uri, &db).await, expected(&all));

    // Changed later (the case a real server refuses through createIndexes).
    let longer = Retention {
        requests: days(60),
        ..all
    };
    sink.setup(&longer).await.unwrap();
    assert_eq!(ttls(&uri, &db).await, expected(&longer));
    // The same again: nothing to do, no error.
    sink.setup(&longer).await.unwrap();
    assert_eq!(ttls(&uri, &db).await, expected(&longer));

    // Removed: documents are kept again.
    sink.setup(&Retention::default()).await.unwrap();
    assert_eq!(ttls(&uri, &db).await, [Some(None); 5]);
}
