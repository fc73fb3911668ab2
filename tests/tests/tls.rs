//! Managed Redis speaks TLS: the layer ships and the consumer drains over
//! `rediss://`, checking the server's certificate against a private CA
//! (`VISITLOG_REDIS_CA_CERT`) that the test makes; a certificate from any
//! other CA is refused, and nothing is shipped to that server.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use visitlog_middleware::{Config, Stats};
use visitlog_tests::{
    RedisServer, TestCa, consumer, shared_mongodb_uri, test_database, wait_count,
};

mod support;

fn config(url: String, queue: &str) -> Config {
    Config::default()
        .redis_url(url)
        .queue(queue.to_owned())
        .cookie_key("integration-test-key-0123456789abcdef")
        .flush_interval(Duration::from_millis(20))
        .redis_timeout(Duration::from_millis(500))
}

/// Sends `n` requests through the layer built from `config`; its stats
/// after a shutdown of at most `deadline`.
async fn ship(config: Config, n: usize, deadline: Duration) -> Stats {
    let (app, shipper) = support::hello_app(config);
    support::hello_requests(&app, 0, n).await;
    shipper.shutdown(deadline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_travel_over_tls_checked_against_a_private_ca() {
    let ca = TestCa::new().unwrap();
    let redis = RedisServer::start_tls(&ca).unwrap();
    let queue = format!("visitlog-test:tls:{}", uuid::Uuid::new_v4());
    let stats = ship(
        config(redis.url(), &queue).redis_ca_cert(&ca.ca),
        50,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (stats.shipped, stats.send_errors, stats.dropped),
        (50, 0, 0),
        "{stats:?}"
    );

    // The consumer drains the same queue over TLS into MongoDB.
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let mut child = std::process::Command::new(support::consumer_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VISITLOG_REDIS_URL", redis.url())
        .env("VISITLOG_REDIS_CA_CERT", &ca.ca)
        .env("VISITLOG_QUEUE", &queue)
        .env("VISITLOG_MONGODB_URI", &uri)
        .env("VISITLOG_DATABASE", &db)
        .env("VISITLOG_STATUS_ADDR", "127.0.0.1:0")
        .env("VISITLOG_FLUSH_INTERVAL", "50ms")
        .args(["--consumer-id", "tls", "run"])
        .spawn()
        .unwrap();
    let stored = wait_count(&uri, &db, "request_logs", 50, Duration::from_secs(60)).await;
    consumer::terminate(&child);
    let status = child.wait().unwrap();
    stored.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let ca = TestCa::new().unwrap();
    let stranger = TestCa::new().unwrap();
    let redis = RedisServer::start_tls(&ca).unwrap();
    let queue = format!("visitlog-test:tls:{}", uuid::Uuid::new_v4());
    // The wrong private CA, then the system's roots (which know neither).
    for config in [
        config(redis.url(), &queue).redis_ca_cert(&stranger.ca),
        config(redis.url(), &queue),
    ] {
        let stats = ship(config, 5, Duration::from_millis(500)).await;
        assert_eq!(stats.shipped, 0, "{stats:?}");
        assert!(stats.send_errors > 0, "{stats:?}");
        assert_eq!(stats.dropped, 5, "{stats:?}");
    }
    let client =
        visitlog_schema::redis_client(&redis.url(), Some(&std::fs::read(&ca.ca).unwrap())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = redis::cmd("LLEN")
        .arg(&queue)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);

    // The consumer's one-shot commands say whose certificate failed; a CA
    // file that is not PEM is refused at start under its key.
    let out = std::process::Command::new(support::consumer_binary())
        .env_clear()
        .env("VISITLOG_REDIS_URL", redis.url())
        .env("VISITLOG_REDIS_CA_CERT", &stranger.ca)
        .env("VISITLOG_MONGODB_URI", shared_mongodb_uri())
        .arg("stats")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("Redis at {}", redis.url())), "{err}");
    let out = std::process::Command::new(support::consumer_binary())
        .env_clear()
        .env("VISITLOG_REDIS_CA_CERT", &ca.key)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("redis-ca-cert") && err.contains("no PEM certificate"),
        "{err}"
    );
}
