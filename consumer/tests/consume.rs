//! The consumer against real Redis and a real MongoDB wire-protocol server.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{InProcess, config};
use visitlog_consumer::config::Config;
use visitlog_tests::{
    MongoServer, Namespace, RedisServer, count, eventually, push, queue_lengths, request_payload,
    shared_mongodb_uri, test_database, wait_count,
};

// Generous: on a loaded 2-core machine 6,000 records through nx-27017 took 54 s.
const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_payloads_are_dead_lettered_and_the_good_records_around_them_stored() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let mut wrong_types: serde_json::Value = serde_json::from_slice(&request_payload(0)).unwrap();
    wrong_types["status"] = "two hundred".into();
    wrong_types["ua"]["is_bot"] = 1.into();
    let two_megabytes = format!(
        r#"{{"kind":"request","path":"{}"}}"#,
        "a".repeat(2 * 1024 * 1024)
    )
    .into_bytes();
    let payloads = vec![
        request_payload(1),
        b"this is not JSON".to_vec(),
        request_payload(2),
        serde_json::to_vec(&wrong_types).unwrap(),
        two_megabytes,
        vec![0xC3, 0x28, 0xFF, b'{'],
        Vec::new(),
        request_payload(3),
    ];
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    let consumer = InProcess::start(config(&ns, &uri, &db, "poison"));
    wait_count(&uri, &db, "dead_letters", 5, WAIT)
        .await
        .unwrap();
    wait_count(&uri, &db, "request_logs", 3, WAIT)
        .await
        .unwrap();
    let stats = consumer.stop().await;
    assert_eq!((stats.stored, stats.dead_lettered), (3, 5));
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), 3);
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (0, 0)
    );

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let letters: Vec<bson::Document> = {
        use futures_util::TryStreamExt;
        let cursor = client
            .database(&db)
            .collection::<bson::Document>("dead_letters")
            .find(bson::doc! {})
            .await
            .unwrap();
        cursor.try_collect().await.unwrap()
    };
    let reasons: Vec<&str> = letters
        .iter()
        .map(|d| d.get_str("reason").unwrap())
        .collect();
    for expected in [
        "not JSON",
        "/status",
        "validator",
        "not UTF-8",
        "empty payload",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions {expected}: {reasons:?}"
        );
    }
    for letter in &letters {
        assert_eq!(letter.get_str("consumer").unwrap(), "poison");
        assert!(letter.get_datetime("at").is_ok());
        assert!(letter.contains_key("payload") || letter.contains_key("payload_raw"));
    }
    let size = |d: &bson::Document| match d.get("size") {
        Some(bson::Bson::Int64(n)) => *n,
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        other => panic!("size is {other:?}"),
    };
    let big = letters.iter().find(|d| size(d) > 2_000_000).unwrap();
    assert_eq!(
        big.get_str("payload").unwrap().len() as i64,
        size(big),
        "2 MB kept whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_one_queue_and_store_everything_once() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let n = 6000;
    let a = InProcess::start(Config {
        batch_size: 200,
        ..config(&ns, &uri, &db, "a")
    });
    let b = InProcess::start(Config {
        batch_size: 200,
        ..config(&ns, &uri, &db, "b")
    });
    ns.fill(0..n).await.unwrap();
    wait_count(&uri, &db, "request_logs", n as u64, WAIT)
        .await
        .unwrap();
    // Stored, then derived, then acknowledged: stopping before the acks
    // would hand a stored batch back (a harmless duplicate, but not this test's point).
    while queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sa, sb) = (a.stop().await, b.stop().await);
    assert_eq!(sa.stored + sb.stored, n as u64, "{sa:?} {sb:?}");
    assert!(
        sa.stored > 0 && sb.stored > 0,
        "both took work: {sa:?} {sb:?}"
    );
    assert_eq!(sa.duplicates + sb.duplicates, 0);
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), n as u64);
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_stopped_mid_run_loses_nothing() {
    let ns = Namespace::new();
    let mut mongo = MongoServer::start().unwrap();
    let db = test_database();
    let consumer = InProcess::start(Config {
        batch_size: 100,
        ..config(&ns, &mongo.uri(), &db, "m")
    });
    ns.fill(0..1000).await.unwrap();
    wait_count(&mongo.uri(), &db, "request_logs", 1000, WAIT)
        .await
        .unwrap();
    // Stored, then derived (page views), then acknowledged: wait for the acks.
    while queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    mongo.stop();
    ns.fill(1000..3000).await.unwrap();
    // The consumer notices (once the driver gives up selecting a server,
    // up to its 5 s timeout) and retries.
    eventually(WAIT, Duration::from_millis(100), async || {
        match consumer.metrics.snapshot().retries {
            0 => Err("no retry yet"),
            _ => Ok(()),
        }
    })
    .await
    .unwrap();
    // Nothing was dropped: what could not be stored waits in Redis.
    let (pending, processing) = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
    assert_eq!(
        pending + processing,
        2000,
        "pending {pending}, processing {processing}"
    );

    mongo.restart().unwrap();
    wait_count(&mongo.uri(), &db, "request_logs", 3000, WAIT)
        .await
        .unwrap();
    // A batch whose insert the outage cut off is put back and taken again
    // (its records already stored count as duplicates): wait until the
    // queue is empty, not only until every record is stored.
    eventually(
        WAIT,
        Duration::from_millis(100),
        async || match queue_lengths(ns.redis_url(), ns.queue()).await {
            Ok((0, 0)) => Ok(()),
            other => Err(format!("queue: {other:?}")),
        },
    )
    .await
    .unwrap();
    let stats = consumer.stop().await;
    assert_eq!(
        count(&mongo.uri(), &db, "request_logs").await.unwrap(),
        3000
    );
    assert_eq!(stats.stored, 3000);
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_delays_but_loses_nothing() {
    let redis = RedisServer::start().unwrap();
    let ns = Namespace::on(redis.url());
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(config(&ns, &uri, &db, "r"));
    ns.fill(0..500).await.unwrap();
    wait_count(&uri, &db, "request_logs", 500, WAIT)
        .await
        .unwrap();
    redis.pause().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.resume().unwrap();
    ns.fill(500..1000).await.unwrap();
    wait_count(&uri, &db, "request_logs", 1000, WAIT)
        .await
        .unwrap();
    consumer.stop().await;
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_batches_go_back_to_the_queue() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // A consumer that died holding a batch: records in its processing list,
    // registered, and no heartbeat.
    let payloads: Vec<Vec<u8>> = (0..300).map(request_payload).collect();
    let dead_list = visitlog_schema::keys::processing_list(ns.queue(), "ghost", 0);
    push(ns.redis_url(), &dead_list, &payloads).await.unwrap();
    let client = redis::Client::open(ns.redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SADD")
        .arg(visitlog_schema::keys::consumers(ns.queue()))
        .arg("ghost")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let consumer = InProcess::start(config(&ns, &uri, &db, "live"));
    wait_count(&uri, &db, "request_logs", 300, WAIT)
        .await
        .unwrap();
    // Stored, then derived and marked, then acknowledged: wait for the ack.
    while queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() != (0, 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = consumer.stop().await;
    assert_eq!(stats.reaped, 300);
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (0, 0)
    );
    redis::cmd("DEL")
        .arg(&dead_list)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// Polls until neither the queue nor any processing list holds a record.
async fn wait_drained(ns: &Namespace) {
    eventually(WAIT, Duration::from_millis(50), async || {
        let lengths = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
        if lengths == (0, 0) {
            return Ok(());
        }
        Err(format!("(pending, processing) = {lengths:?}"))
    })
    .await
    .unwrap();
}

/// A run with `max-in-flight 4` crashed holding four batches; the restart
/// has `max-in-flight 2`. Slots 0 and 1 are finished, and the lists of
/// slots 2 and 3 (found with SCAN) go back to the queue: nothing stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_fewer_slots_recovers_every_list_of_its_id() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    for slot in 0..4 {
        let payloads: Vec<Vec<u8>> = (slot * 100..slot * 100 + 100)
            .map(request_payload)
            .collect();
        let list = visitlog_schema::keys::processing_list(ns.queue(), "shrunk", slot);
        push(ns.redis_url(), &list, &payloads).await.unwrap();
    }
    let consumer = InProcess::start(Config {
        max_in_flight: 2,
        ..config(&ns, &uri, &db, "shrunk")
    });
    wait_count(&uri, &db, "request_logs", 400, WAIT)
        .await
        .unwrap();
    wait_drained(&ns).await;
    let stats = consumer.stop().await;
    assert_eq!(stats.stored, 400);
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), 400);
}

/// Redis at `maxmemory` refuses the hand-back at shutdown: the consumer
/// stays registered (its lists are not orphaned), and once its heartbeat
/// has expired another consumer finds the lists by SCAN and gives them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hand_back_leaves_the_lists_to_be_reaped() {
    let redis = RedisServer::start().unwrap();
    let ns = Namespace::on(redis.url());
    let mut mongo = MongoServer::start().unwrap();
    let db = test_database();
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();

    let first = InProcess::start(Config {
        shutdown_deadline: Duration::from_millis(200),
        ..config(&ns, &mongo.uri(), &db, "oom")
    });
    ns.fill(0..10).await.unwrap();
    wait_count(&mongo.uri(), &db, "request_logs", 10, WAIT)
        .await
        .unwrap();
    wait_drained(&ns).await;

    // MongoDB goes away: the next records wait in processing lists.
    mongo.stop();
    ns.fill(10..310).await.unwrap();
    eventually(WAIT, Duration::from_millis(50), async || {
        if queue_lengths(ns.redis_url(), ns.queue()).await.unwrap().1 == 0 {
            Err("nothing fetched")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    // Redis at maxmemory: the hand-back's writes are refused.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    first.stop().await;
    let (pending, processing) = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
    assert!(processing > 0, "the hand-back did not fail");
    assert_eq!(pending + processing, 300);
    let member: bool = redis::cmd("SISMEMBER")
        .arg(visitlog_schema::keys::consumers(ns.queue()))
        .arg("oom")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        member,
        "unregistered although its batches were not handed back"
    );

    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    mongo.restart().unwrap();
    let second = InProcess::start(config(&ns, &mongo.uri(), &db, "other"));
    wait_count(&mongo.uri(), &db, "request_logs", 310, WAIT)
        .await
        .unwrap();
    wait_drained(&ns).await;
    let stats = second.stop().await;
    assert_eq!(stats.stored, 300);
    assert!(stats.reaped >= processing, "{stats:?}");
    assert_eq!(count(&mongo.uri(), &db, "request_logs").await.unwrap(), 310);
}

/// The reaper walks the processing lists, not the set of consumer ids: a
/// dead consumer that already left the set (its unregister ran, its
/// hand-back did not) still has its batch given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_of_a_consumer_that_left_the_set_are_reaped() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let payloads: Vec<Vec<u8>> = (0..200).map(request_payload).collect();
    let list = visitlog_schema::keys::processing_list(ns.queue(), "gone", 1);
    push(ns.redis_url(), &list, &payloads).await.unwrap();
    let consumer = InProcess::start(config(&ns, &uri, &db, "reaper"));
    wait_count(&uri, &db, "request_logs", 200, WAIT)
        .await
        .unwrap();
    wait_drained(&ns).await;
    let stats = consumer.stop().await;
    assert_eq!(stats.reaped, 200);
}
