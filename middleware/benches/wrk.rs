//! What a request costs end to end at saturation: `wrk` against a
//! hello-world axum app served over loopback, bare and behind
//! `CaptureLayer`, in one run, turn about.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-middleware --bench
//! wrk` with `wrk` and `redis-server` on PATH). Each round is 5 s of `wrk -t1
//! -c32` per app (`VISITLOG_BENCH_SECONDS` changes it), three rounds. The
//! layered app has what a production one has: the test GeoIP database, a
//! trusted proxy's `X-Forwarded-For`, a returning visitor's cookie, a
//! browser's user agent, and a private `redis-server` on the same machine
//! that the shipper sends every record to. Reported per app: requests/s,
//! the server process's CPU per request (the shipper's included for the
//! layered app), Redis's CPU per request, and the records the shipper
//! dropped (must be 0).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use visitlog_middleware::{CaptureLayer, Identity};

/// What a production app would use; the library does not need it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod support;

use support::UA;

const PATH: &str = "/watch/Python/Getting-started/English/?t=42";

/// CPU seconds (user + system) of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // The kernel's USER_HZ, 100 on Linux.
    ticks / 100.0
}

/// The `Set-Cookie` value (name=value) of a first visit to `addr`.
fn first_visit_cookie(addr: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {PATH} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {UA}\r\nX-Forwarded-For: 81.2.69.142\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("the layer sets a visitor cookie")
        .to_owned()
}

struct Run {
    rps: f64,
    server_us: f64,
    redis_us: f64,
}

/// `wrk` against `addr` for `seconds`; requests/s and CPU per request.
fn wrk(addr: SocketAddr, cookie: &str, seconds: u64, redis_pid: u32) -> Run {
    let me = std::process::id();
    let (server0, redis0) = (cpu_seconds(me), cpu_seconds(redis_pid));
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s")])
        .args(["-H", &format!("User-Agent: {UA}")])
        .args(["-H", "Accept-Language: en-GB,en;q=0.9"])
        .args(["-H", "Referer: https://tutorials.example/"])
        .args(["-H", "X-Forwarded-For: 81.2.69.142"])
        .args(["-H", &format!("Cookie: {cookie}")])
        .arg(format!("http://{addr}{PATH}"))
        .output()
        .expect("wrk on PATH (Debian package wrk)");
    let (server1, redis1) = (cpu_seconds(me), cpu_seconds(redis_pid));
    let text = String::from_utf8_lossy(&out.stdout);
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    let rps = requests / seconds as f64;
    Run {
        rps,
        server_us: (server1 - server0) * 1e6 / requests,
        redis_us: (redis1 - redis0) * 1e6 / requests,
    }
}

fn main() {
    let seconds: u64 = std::env::var("VISITLOG_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = support::config(
        format!("redis://127.0.0.1:{port}"),
        "visitlog-bench:wrk".to_owned(),
    )
    .buffer_records(1_000_000)
    .buffer_bytes(1 << 30);
    let (bare_addr, layered_addr, shipper) = rt.block_on(async {
        let (layer, shipper) = CaptureLayer::new(config).unwrap();
        let layer =
            layer.identify(|_: &http::request::Parts| Identity::user("alice").with_session("s1"));
        let shipper = shipper.spawn();
        let hello = || {
            Router::new().route(
                "/watch/{foss}/{tutorial}/{language}/",
                get(|| async { "<html>tutorial page</html>" }),
            )
        };
        let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let layered = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (bare.local_addr().unwrap(), layered.local_addr().unwrap());
        let bare_app = hello();
        let layered_app = hello().layer(layer);
        tokio::spawn(async move { axum::serve(bare, bare_app).await });
        tokio::spawn(async move {
            axum::serve(
                layered,
                layered_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        (addrs.0, addrs.1, shipper)
    });
    let cookie = first_visit_cookie(layered_addr);
    println!(
        "wrk -t1 -c32, {seconds} s a run, bare and layered in turn; redis-server and wrk on the same 2 cores"
    );
    println!("| run | requests/s | server CPU per request | Redis CPU per request |");
    println!("|---|---|---|---|");
    let (mut bare, mut layered) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        for (name, addr, runs) in [
            ("bare", bare_addr, &mut bare),
            ("layered", layered_addr, &mut layered),
        ] {
            let run = wrk(addr, &cookie, seconds, redis.id());
            println!(
                "| {name} {round} | {:.0} | {:.1} µs | {:.2} µs |",
                run.rps, run.server_us, run.redis_us
            );
            runs.push(run);
        }
    }
    let median = |runs: &mut Vec<Run>| {
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        (runs[runs.len() / 2].rps, runs[runs.len() / 2].server_us)
    };
    let ((bare_rps, bare_us), (layered_rps, layered_us)) =
        (median(&mut bare), median(&mut layered));
    let stats = rt.block_on(shipper.shutdown(Duration::from_secs(30)));
    println!(
        "median: bare {bare_rps:.0}/s, layered {layered_rps:.0}/s ({:.2}× bare); server CPU {bare_us:.1} → {layered_us:.1} µs per request (+{:.1} µs); shipped {}, dropped {}",
        layered_rps / bare_rps,
        layered_us - bare_us,
        stats.shipped,
        stats.dropped
    );
    let _ = redis.kill();
    let _ = redis.wait();
}
