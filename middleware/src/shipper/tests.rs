//! The shipper against a real Redis: `VISITLOG_TEST_REDIS_URL` (set by
//! `scripts/test`), else a `redis-server` of its own on a free port.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use http::{HeaderValue, Method};
use uuid::Uuid;

use super::*;
use crate::capture::CaptureLayer;
use crate::enrich::Captured;
use crate::enrich::ua::UaInput;
use crate::identity::Identity;

struct OwnRedis(Child, String);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_url() -> String {
    static OWN: OnceLock<OwnRedis> = OnceLock::new();
    if let Ok(url) = std::env::var("VISITLOG_TEST_REDIS_URL") {
        return url;
    }
    let own = OWN.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // A static is never dropped, so this server outlives the test
            // process: it must not hold the caller's stdout or stderr open
            // (a `cargo test | grep` would wait for it forever).
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH, or VISITLOG_TEST_REDIS_URL set (scripts/test)");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis(child, url)
    });
    own.1.clone()
}

fn captured(i: u64) -> Captured {
    Captured {
        id: Uuid::now_v7(),
        ts: chrono::Utc::now(),
        method: Method::GET,
        uri: format!("/watch/rust/intro/english/?n={i}")
            .parse()
            .expect("a URI"),
        route: Some("/watch/{foss}/{tutorial}/{language}/".to_owned()),
        status: 200,
        latency: Duration::from_micros(250),
        bytes_sent: 5120,
        referer: Some(HeaderValue::from_static("https://example.org/")),
        ua: UaInput {
            user_agent: Some(HeaderValue::from_static(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            )),
            ch_ua: None,
            ch_full_version_list: None,
            ch_platform: None,
            ch_platform_version: None,
            ch_mobile: None,
        },
        headers: Vec::new(),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(81, 2, 69, 142))),
        visit: None,
        identity: Identity::user("alice"),
        content_type: Some(HeaderValue::from_static("text/html; charset=utf-8")),
        request_id: None,
        sample_rate: None,
    }
}

async fn list_len(url: &str, queue: &str) -> u64 {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    redis::cmd("LLEN")
        .arg(queue)
        .query_async(&mut conn)
        .await
        .expect("LLEN")
}

async fn delete(url: &str, queue: &str) {
    let client = redis::Client::open(url).expect("a Redis URL");
    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
        let _: Result<i64, _> = redis::cmd("DEL").arg(queue).query_async(&mut conn).await;
    }
}

/// A producer that waits for channel space keeps the channel non-empty at
/// every poll, for ten seconds: the shape of a saturating flood. Batches must
/// still go out whenever nothing is in flight: most records are on the list
/// while the flood goes on, and every one is at the end. (Before the fix, the
/// loop preferred the channel over its flush timer and sent nothing during
/// the flood.) The buffer holds the whole flood, so how fast this machine's
/// Redis answers, under whatever else runs, cannot drop a record: that
/// rate is the sustained benchmark's business, not this test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_never_empties_does_not_stop_the_batches() {
    let url = redis_url();
    let queue = format!("visitlog-test:shipper:{}", Uuid::new_v4());
    let config = Config::default()
        .redis_url(url.clone())
        .queue(queue.clone())
        .buffer_records(5_000_000)
        .buffer_bytes(4 << 30)
        .cookie_key("0123456789abcdef0123456789abcdef");
    let (layer, shipper) = CaptureLayer::new(config).expect("a valid config");
    let tx = layer.shared.tx.clone();
    let counters = layer.shared.counters.clone();
    let handle = shipper.spawn();

    let until = Instant::now() + Duration::from_secs(10);
    let mut sent = 0u64;
    while Instant::now() < until {
        for _ in 0..64 {
            counters.captured.fetch_add(1, Ordering::Relaxed);
            tx.send(Item::Request(captured(sent)))
                .await
                .expect("the shipper runs");
            sent += 1;
        }
    }
    let during = handle.stats();
    drop(tx);
    let stats = handle.shutdown(Duration::from_secs(30)).await;
    let on_list = list_len(&url, &queue).await;
    delete(&url, &queue).await;
    assert!(
        sent > 10_000,
        "the flood was too thin to prove anything: {sent}"
    );
    assert!(
        during.shipped * 2 > sent,
        "batches stalled during the flood: {during:?} of {sent}"
    );
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.captured, sent);
    assert_eq!(stats.shipped, sent, "{stats:?}");
    assert_eq!(on_list, sent);
}
