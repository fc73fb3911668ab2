//! The `visitlog-consumer` binary as ops run it: killed, terminated, set up twice.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use visitlog_tests::{
    Namespace, Site, count, http, queue_lengths, shared_mongodb_uri, test_database, wait_count,
};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");

fn command(ns: &Namespace, uri: &str, db: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VISITLOG_REDIS_URL", ns.redis_url())
        .env("VISITLOG_QUEUE", ns.queue())
        .env("VISITLOG_MONGODB_URI", uri)
        .env("VISITLOG_DATABASE", db)
        .env("VISITLOG_HEARTBEAT_INTERVAL", "200ms")
        .env("VISITLOG_HEARTBEAT_TTL", "1s")
        .env("VISITLOG_FLUSH_INTERVAL", "50ms")
        .env("VISITLOG_MAX_BACKOFF", "500ms")
        // Tests run in parallel: any free port, never the default 5555.
        .env("VISITLOG_STATUS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    c
}

fn spawn(ns: &Namespace, uri: &str, db: &str, id: &str) -> Child {
    command(ns, uri, db)
        .args(["--consumer-id", id, "--batch-size", "300", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn run(ns: &Namespace, uri: &str, db: &str, args: &[&str]) -> Output {
    command(ns, uri, db).args(args).output().unwrap()
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_until_stored(uri: &str, db: &str, n: u64) {
    wait_count(uri, db, "request_logs", n, Duration::from_secs(120))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let n = 5000;
    ns.fill(0..n).await.unwrap();
    let consumer = spawn(&ns, &uri, &db, "drain");
    wait_until_stored(&uri, &db, 600).await;
    terminate(&consumer);
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let mut consumer = consumer;
        consumer.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Every record is stored or back on the queue; none is stuck in processing.
    let (pending, processing) = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
    let stored = count(&uri, &db, "request_logs").await.unwrap();
    assert_eq!(processing, 0);
    assert_eq!(
        stored + pending,
        n as u64,
        "stored {stored}, pending {pending}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_is_a_no_op() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let indexes = || async {
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let coll = client
            .database(&db)
            .collection::<bson::Document>("request_logs");
        let mut keys: Vec<String> = {
            use futures_util::TryStreamExt;
            coll.list_indexes()
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        }
        .into_iter()
        .map(|i| i.keys.to_string())
        .collect();
        keys.sort();
        keys
    };
    let first = run(&ns, &uri, &db, &["setup"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let after_first = indexes().await;
    assert!(
        after_first.iter().any(|k| k.contains("\"visitor_id\"")),
        "{after_first:?}"
    );
    let second = run(&ns, &uri, &db, &["setup"]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(indexes().await, after_first);
}

#[test]
fn check_config_accepts_the_sample_and_names_bad_keys() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/visitlog-consumer.toml");
    let ok = Command::new(BIN)
        .args([
            "--config",
            sample,
            "--mongodb-uri",
            "mongodb://ops:s3cret@db:27017",
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let shown = String::from_utf8_lossy(&ok.stdout);
    assert!(shown.contains("batch-size = 1000"), "{shown}");
    assert!(
        shown.contains("mongodb://ops:***@db:27017") && !shown.contains("s3cret"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "batch-size = 10\nbatchsize = 5\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&bad)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("batchsize") && err.lines().count() == 1,
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["--batch-size", "0", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch-size"));
}

/// An operator's round trip: list, requeue after a fix, purge, stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_requeued_and_purged() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    assert!(run(&ns, &uri, &db, &["setup"]).status.success());
    // A record dead-lettered for a cause that has since been fixed, and a
    // payload that is simply garbage.
    let fixed = visitlog_tests::request_payload(1);
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let dead = client
        .database(&db)
        .collection::<bson::Document>("dead_letters");
    dead.insert_one(bson::doc! {
        "_id": "fixed", "reason": "rejected by MongoDB (code 121): validator too strict",
        "at": bson::DateTime::now(), "consumer": "c", "queue": ns.queue(),
        "size": fixed.len() as i64, "truncated": false,
        "payload": String::from_utf8(fixed).unwrap(),
    })
    .await
    .unwrap();
    dead.insert_one(bson::doc! {
        "_id": "junk", "reason": "not JSON: expected value", "at": bson::DateTime::now(),
        "consumer": "c", "queue": ns.queue(), "size": 4_i64, "truncated": false, "payload": "junk",
    })
    .await
    .unwrap();

    let listed = run(&ns, &uri, &db, &["dead-letters", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("validator too strict") && listed.contains("size=4"),
        "{listed}"
    );

    let no_selection = run(&ns, &uri, &db, &["dead-letters", "requeue"]);
    assert_eq!(
        no_selection.status.code(),
        Some(1),
        "requeue without a selection is refused"
    );

    let requeued = run(
        &ns,
        &uri,
        &db,
        &[
            "dead-letters",
            "requeue",
            "--reason-contains",
            "validator too strict",
        ],
    );
    assert!(
        requeued.status.success(),
        "{}",
        String::from_utf8_lossy(&requeued.stderr)
    );
    assert!(String::from_utf8_lossy(&requeued.stdout).contains("requeued 1"));
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (1, 0)
    );

    let stats = run(&ns, &uri, &db, &["stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        (stats["pending"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(1), Some(1))
    );

    let mut consumer = spawn(&ns, &uri, &db, "ops");
    wait_until_stored(&uri, &db, 1).await;
    terminate(&consumer);
    assert!(consumer.wait().unwrap().success());

    let purged = run(&ns, &uri, &db, &["dead-letters", "purge", "--id", "junk"]);
    assert!(String::from_utf8_lossy(&purged.stdout).contains("deleted 1"));
    assert_eq!(count(&uri, &db, "dead_letters").await.unwrap(), 0);
}
