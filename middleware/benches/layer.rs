//! What the layer adds to a request, and how fast the shipper drains.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-middleware --bench layer`
//! with `VISITLOG_TEST_REDIS_URL` set, or `redis-server` on PATH).
//!
//! - `request/bare`: a `service_fn` answering a small body.
//! - `request/layered`: the same behind `CaptureLayer`, with a visitor cookie,
//!   a trusted `X-Forwarded-For` and a browser UA; UA and geo are cached
//!   after the first request, as they are in steady state. The shipper runs
//!   meanwhile, sending to a real Redis.
//! - `pipeline/ship`: requests through the layer until Redis has acknowledged
//!   every record: the throughput of capture + enrichment + JSON + `RPUSH`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::{ServiceBuilder, service_fn};
use visitlog_middleware::{CaptureLayer, Identity};

mod support;

use support::{handler, redis, request, runtime, serve, visitor_cookie};

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (redis_url, mut redis_child) = redis();
    let queue = format!("visitlog-bench:{}", std::process::id());
    let config = support::config(redis_url.clone(), queue.clone())
        .buffer_records(1_000_000)
        .buffer_bytes(1 << 30);
    // The request path is timed on a one-thread runtime that also runs the
    // shipper: a chunk of requests never yields, so the shipper works only
    // between chunks (untimed), and the figure is the request path's own
    // cost, not its share of two cores with the shipper and Redis.
    let one = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = |rt: &tokio::runtime::Runtime| {
        let (layer, shipper) = CaptureLayer::new(config.clone()).unwrap();
        let layer =
            layer.identify(|_: &http::request::Parts| Identity::user("alice").with_session("s1"));
        let shipper = rt.block_on(async { shipper.spawn() });
        (layer, shipper)
    };
    let (request_layer, request_shipper) = start(&one);
    let (layer, shipper) = start(&rt);

    let bare = ServiceBuilder::new().service_fn(handler);
    let layered = |layer: &CaptureLayer| {
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(service_fn(handler))
    };
    let request_layered = layered(&request_layer);
    let layered = layered(&layer);
    // A returning browser's cookie, so the request path verifies and re-signs it.
    let cookie = rt.block_on(visitor_cookie(layered.clone()));

    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    // Both are timed the same way: chunks of requests inside one
    // `block_on`; between chunks, untimed, the shipper catches up so the
    // channel never overflows and every request takes the normal path.
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| one.block_on(timed(iters, || serve(bare, request(&cookie)), || 0)));
    });
    group.bench_function("layered", |b| {
        b.iter_custom(|iters| {
            one.block_on(timed(
                iters,
                || serve(request_layered.clone(), request(&cookie)),
                || request_layer.stats().buffered,
            ))
        });
    });
    group.finish();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("ship", |b| {
        // Throughput, not latency: each sample ships a block of at least
        // 50,000 records (so the 100 ms flush timer does not dominate) and
        // reports the time per record.
        b.iter_custom(|iters| {
            let block = iters.max(50_000);
            rt.block_on(async {
                let target = layer.stats().shipped + block;
                let started = Instant::now();
                for _ in 0..block {
                    serve(layered.clone(), request(&cookie)).await;
                    while layer.stats().buffered > 8192 {
                        tokio::task::yield_now().await;
                    }
                }
                while layer.stats().shipped < target {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                started.elapsed().mul_f64(iters as f64 / block as f64)
            })
        });
    });
    group.finish();

    let request_stats = one.block_on(request_shipper.shutdown(Duration::from_secs(10)));
    assert_eq!(
        request_stats.dropped, 0,
        "the benchmark must not drop records"
    );
    let stats = rt.block_on(shipper.shutdown(Duration::from_secs(10)));
    eprintln!("shipper: {stats:?}");
    assert_eq!(stats.dropped, 0, "the benchmark must not drop records");
    if let Ok(client) = redis::Client::open(redis_url.as_str())
        && let Ok(mut conn) = client.get_connection()
    {
        let _: Result<(), _> = redis::cmd("DEL").arg(&queue).query(&mut conn);
    }
    if let Some(child) = redis_child.as_mut() {
        let _ = child.kill();
    }
}

/// The time `iters` requests take, in chunks of 2048; between chunks,
/// untimed, it waits until the shipper holds at most 512 records.
async fn timed<F: std::future::Future>(
    iters: u64,
    mut one: impl FnMut() -> F,
    buffered: impl Fn() -> u64,
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(2048);
        let started = Instant::now();
        for _ in 0..chunk {
            std::hint::black_box(one().await);
        }
        timed += started.elapsed();
        left -= chunk;
        while buffered() > 512 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    timed
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
