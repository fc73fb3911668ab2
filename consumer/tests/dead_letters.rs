//! Oversized payloads against real Redis and MongoDB: they become short dead
//! letters, and the good records behind them are stored and acknowledged.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;
use visitlog_consumer::batch::{DeadLetter, MAX_REASON_BYTES, Prepared, dead_letter_id};
use visitlog_consumer::sink::Sink;
use visitlog_tests::{
    Namespace, count, eventually, push, queue_lengths, request_payload, shared_mongodb_uri,
    test_database, wait_count,
};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(120);

async fn letters(uri: &str, db: &str) -> Vec<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
        .collection::<Document>("dead_letters")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn size(d: &Document) -> i64 {
    match d.get("size") {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        other => panic!("size is {other:?}"),
    }
}

/// The case: a 200 KB field gave a 200,069-character reason, and a
/// 13 MiB payload a dead letter MongoDB refused, retried forever with a good
/// record behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_become_short_dead_letters_and_the_batch_is_acknowledged() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let mut wide: serde_json::Value = serde_json::from_slice(&request_payload(1)).unwrap();
    wide["path"] = "w".repeat(200_000).into();
    let mut huge: serde_json::Value = serde_json::from_slice(&request_payload(2)).unwrap();
    huge["path"] = "h".repeat(13 * 1024 * 1024).into();
    let payloads = vec![
        serde_json::to_vec(&wide).unwrap(),
        serde_json::to_vec(&huge).unwrap(),
        request_payload(3),
    ];
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    let consumer = InProcess::start(config(&ns, &uri, &db, "oversized"));
    wait_count(&uri, &db, "request_logs", 1, WAIT)
        .await
        .unwrap();
    wait_count(&uri, &db, "dead_letters", 2, WAIT)
        .await
        .unwrap();
    eventually(WAIT, Duration::from_millis(50), async || {
        if queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 0) {
            Err("the batch was never acknowledged")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    let stats = consumer.stop().await;
    assert_eq!(
        (stats.stored, stats.dead_lettered, stats.batches),
        (1, 2, 1)
    );
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), 1);

    let letters = letters(&uri, &db).await;
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let reason = letter.get_str("reason").unwrap();
        assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
        // Which field, which rule; never the value.
        assert!(reason.contains("/path"), "{reason}");
        assert!(reason.contains("maxLength"), "{reason}");
        assert!(
            !reason.contains("wwwwwwww") && !reason.contains("hhhhhhhh"),
            "{reason}"
        );
    }
    let sizes: Vec<i64> = letters.iter().map(size).collect();
    assert!(sizes.contains(&(payloads[0].len() as i64)), "{sizes:?}");
    assert!(sizes.contains(&(payloads[1].len() as i64)), "{sizes:?}");
}

/// A dead letter MongoDB will not take (here: bigger than a document may
/// be) is written without its payload, and the batch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_mongodb_refuses_is_kept_without_its_payload() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let sink = Sink::new(&uri, &db).await.unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    let raw = vec![b'x'; 17 * 1024 * 1024];
    let prepared = Prepared {
        dead: vec![DeadLetter::new(raw.clone(), "not JSON: expected value")],
        ..Prepared::default()
    };
    // A limit above MongoDB's 16 MiB: the whole payload would be kept.
    let (stored, _) = sink
        .store(prepared, "c1", "q", 32 * 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(stored.dead_lettered, 1);
    let letters = letters(&uri, &db).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.get_str("_id").unwrap(), dead_letter_id(&raw));
    assert_eq!(size(letter), raw.len() as i64);
    assert!(letter.get_bool("truncated").unwrap(), "never requeued");
    assert!(!letter.contains_key("payload"));
    assert!(
        letter
            .get_str("reason")
            .unwrap()
            .starts_with("not JSON: expected value")
    );
    assert!(letter.get_str("payload_not_kept").is_ok());
}
