//! What the benchmarks share: the request, the handler, a Redis and the test GeoIP database.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

pub(crate) const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

pub(crate) async fn handler(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from(
        &b"<html>tutorial page</html>"[..],
    )))
}

pub(crate) fn request(cookie: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/watch/Python/Getting-started/English/?t=42")
        .header("user-agent", UA)
        .header("accept-language", "en-GB,en;q=0.9")
        .header("referer", "https://tutorials.example/")
        .header("x-forwarded-for", "81.2.69.142")
        .header("cookie", cookie)
        .extension(SocketAddr::from(([127, 0, 0, 1], 50000)))
        .body(Full::default())
        .unwrap()
}

/// One request through `svc`, its body read to the end as a server would
/// (the layer finishes the record when the body ends).
pub(crate) async fn serve<S, B>(svc: S, request: Request<Full<Bytes>>) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = svc.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

/// A returning browser's `Cookie` header: the visitor cookie a first request
/// through the layered `svc` was given.
pub(crate) async fn visitor_cookie<S, B>(svc: S) -> String
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let response = svc.oneshot(request("")).await.unwrap();
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// A Redis for the shipper: the test services' one, or a private server.
pub(crate) fn redis() -> (String, Option<Child>) {
    if let Ok(url) = std::env::var("VISITLOG_TEST_REDIS_URL") {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH, or VISITLOG_TEST_REDIS_URL");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    (format!("redis://127.0.0.1:{port}"), Some(child))
}

/// The layer's configuration every benchmark uses: a cookie key, loopback
/// as the trusted proxy, and the test GeoIP database when it is there.
pub(crate) fn config(redis_url: String, queue: String) -> visitlog_middleware::Config {
    let config = visitlog_middleware::Config::default()
        .redis_url(redis_url)
        .queue(queue)
        .cookie_key("bench-key-0123456789abcdef0123456789")
        .trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()]);
    match geodb() {
        Some(path) => config.geodb(path),
        None => config,
    }
}

pub(crate) fn geodb() -> Option<PathBuf> {
    let dir = std::env::var_os("VISITLOG_TEST_DATA").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/maxminddb-test-data/maxminddb-3.2.0/tests/data")
        },
        PathBuf::from,
    );
    let path = dir.join("test-data/GeoIP2-City-Test.mmdb");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("no MaxMind test database (scripts/fetch-test-data): benchmarking without geo");
        None
    }
}

/// The runtime the benchmarks drive the layer on: two threads, as this machine has cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
