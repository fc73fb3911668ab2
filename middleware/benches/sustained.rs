//! The highest request rate the layer and its shipper sustain with nothing
//! dropped, against a real, healthy Redis.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-middleware --bench
//! sustained` with `VISITLOG_TEST_REDIS_URL` set, or `redis-server` on PATH).
//!
//! Requests are driven through the layered service in process at a paced
//! rate for a few seconds per step, on a 2-thread runtime (the shipper and
//! the request path share it, as in an app), with the default buffer and
//! batch settings. A step passes when every captured record reached Redis
//! and none was dropped; the rate goes up until a step fails or the request
//! path itself cannot go faster.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use tower::{ServiceBuilder, service_fn};
use visitlog_middleware::{CaptureLayer, Identity};

use support::{handler, redis, request, runtime, serve, visitor_cookie};

const STEP: Duration = Duration::from_secs(5);

struct Outcome {
    achieved: f64,
    captured: u64,
    shipped: u64,
    dropped: u64,
}

fn run_at(rt: &tokio::runtime::Runtime, redis_url: &str, rate: u64) -> Outcome {
    let queue = format!("visitlog-bench:sustained:{}:{rate}", std::process::id());
    let config = support::config(redis_url.to_owned(), queue.clone());
    let (layer, shipper) = CaptureLayer::new(config).unwrap();
    let layer =
        layer.identify(|_: &http::request::Parts| Identity::user("alice").with_session("s1"));
    let outcome = rt.block_on(async {
        let shipper = shipper.spawn();
        let svc = ServiceBuilder::new()
            .layer(layer.clone())
            .service(service_fn(handler));
        let cookie = visitor_cookie(svc.clone()).await;

        // Paced: every millisecond, catch up to `rate × elapsed`.
        let started = Instant::now();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while started.elapsed() < STEP {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                std::hint::black_box(serve(svc.clone(), request(&cookie)).await);
                sent += 1;
            }
        }
        let achieved = sent as f64 / started.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(30);
        while layer.stats().buffered > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = shipper.shutdown(Duration::from_secs(10)).await;
        Outcome {
            achieved,
            captured: stats.captured,
            shipped: stats.shipped,
            dropped: stats.dropped,
        }
    });
    if let Ok(client) = redis::Client::open(redis_url)
        && let Ok(mut conn) = client.get_connection()
    {
        let on_list: u64 = redis::cmd("LLEN").arg(&queue).query(&mut conn).unwrap_or(0);
        assert_eq!(
            on_list, outcome.shipped,
            "every shipped record is on the list"
        );
        let _: Result<(), _> = redis::cmd("DEL").arg(&queue).query(&mut conn);
    }
    outcome
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us skips the run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "sustained".contains(a.as_str())) {
        return;
    }
    let rt = runtime();
    let (redis_url, mut redis_child) = redis();
    println!(
        "sustained: {} s per step, 2 runtime threads, default buffer and batches",
        STEP.as_secs()
    );
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>8}",
        "target/s", "achieved/s", "captured", "shipped", "dropped"
    );
    let mut best: Option<f64> = None;
    let mut limit = "";
    for rate in [
        20_000, 30_000, 40_000, 45_000, 50_000, 55_000, 60_000, 70_000, 80_000, 100_000, 120_000,
        150_000,
    ] {
        let o = run_at(&rt, &redis_url, rate);
        println!(
            "{rate:>10} {:>10.0} {:>10} {:>10} {:>8}",
            o.achieved, o.captured, o.shipped, o.dropped
        );
        if o.dropped > 0 || o.shipped != o.captured {
            limit = "the shipper: records were dropped above this rate";
            break;
        }
        best = Some(o.achieved);
        if o.achieved < rate as f64 * 0.97 {
            limit = "the request path: the driver could not go faster, and nothing was dropped";
            break;
        }
    }
    match best {
        Some(rate) => println!(
            "highest sustained rate with zero drops: {rate:.0} requests/s (limit: {limit})"
        ),
        None => println!("records were dropped even at the lowest rate"),
    }
    if let Some(child) = redis_child.as_mut() {
        let _ = child.kill();
    }
}
