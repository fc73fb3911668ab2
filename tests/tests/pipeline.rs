//! The acceptance run, through the example site: requests flow
//! while the `visitlog-consumer` binary is SIGKILLed, and every record is
//! stored exactly once.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Child;
use std::time::Duration;

use visitlog_tests::consumer::{self, terminate};
use visitlog_tests::{
    Namespace, count, http, queue_lengths, shared_mongodb_uri, test_database, wait_count,
};

use support::{CaptureConfig, Site, consumer_binary};

fn spawn(ns: &Namespace, uri: &str, db: &str, id: &str) -> Child {
    consumer::spawn(&consumer_binary(), ns, uri, db, id).unwrap()
}

async fn wait_until_stored(uri: &str, db: &str, n: u64) {
    let within = Duration::from_secs(120);
    wait_count(uri, db, "request_logs", n, within)
        .await
        .unwrap();
}

/// The acceptance run: 20,000 requests through the example site,
/// the consumer SIGKILLed three times while they flow, and every record in
/// `request_logs` exactly once at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_survive_three_sigkills_exactly_once() {
    const N: usize = 20_000;
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let site = Site::start(ns.config()).await.unwrap();
    let client = http();

    // Traffic: 16 clients in parallel, each its own visitor.
    let base = site.base.clone();
    let traffic = tokio::spawn(async move {
        let mut clients = Vec::new();
        for c in 0..16 {
            let (client, base) = (client.clone(), base.clone());
            clients.push(tokio::spawn(async move {
                for i in (c..N).step_by(16) {
                    let r = client
                        .get(format!("{base}/watch/Python/Functions/English/?i={i}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
    });

    let mut consumer = spawn(&ns, &uri, &db, "box-1");
    // Kill at three points of the run. The second restart takes a new id, so
    // the dead instance's batch comes back through reaping, not recovery.
    for (threshold, next_id) in [(3_000, "box-1"), (8_000, "box-2"), (13_000, "box-2")] {
        wait_until_stored(&uri, &db, threshold).await;
        consumer.kill().unwrap();
        consumer.wait().unwrap();
        consumer = spawn(&ns, &uri, &db, next_id);
    }
    traffic.await.unwrap();
    let stats = site.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (stats.captured, stats.shipped, stats.dropped),
        (N as u64, N as u64, 0)
    );

    wait_until_stored(&uri, &db, N as u64).await;
    // Settle: nothing more may arrive, nothing may be left behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), N as u64);
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (0, 0)
    );
    assert_eq!(count(&uri, &db, "dead_letters").await.unwrap(), 0);
    terminate(&consumer);
    assert!(consumer.wait().unwrap().success());
}
