//! The layer driven in process with `service_fn`: no network, no Redis.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt};
use visitlog_schema::{Collection, RecordValidator, RequestRecord, limits};

use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn config() -> Config {
    Config::default()
        .cookie_key(KEY)
        .trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()])
        .redis_url("redis://127.0.0.1:1".to_owned())
}

async fn hello(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello, world")))
}

fn request(uri: &str) -> http::request::Builder {
    Request::builder()
        .uri(uri)
        .extension(SocketAddr::from(([127, 0, 0, 1], 40000)))
}

/// Sends `req` through `svc` and reads the body to the end, as a server
/// would (the layer finishes the record when the body ends).
async fn send<S, B>(svc: S, req: Request<Full<Bytes>>) -> Response<Bytes>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = svc.oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// Sends `req` through the layer and returns the response and the stored record.
async fn drive(
    layer: &CaptureLayer,
    shipper: &mut Shipper,
    req: Request<Full<Bytes>>,
) -> (Response<Bytes>, RequestRecord) {
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(hello);
    let response = send(svc, req).await;
    let record = next_request(shipper).expect("a record per request");
    let json = serde_json::to_value(&record).unwrap();
    RecordValidator::new(Collection::RequestLogs)
        .unwrap()
        .validate(&json)
        .unwrap();
    (response, record)
}

/// The next request record the layer handed to the shipper. The shipper
/// writes its JSON straight from what was captured; that must be byte for
/// byte the serialised record, which this checks for every test's request.
fn next_request(shipper: &mut Shipper) -> Option<RequestRecord> {
    match shipper.rx.try_recv().ok()? {
        crate::shared::Item::Request(captured) => {
            let record = shipper.enricher.record(captured.clone());
            let mut written = Vec::new();
            shipper
                .enricher
                .write_json(&captured, &mut written)
                .unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&record).unwrap(),
                "the shipper's JSON is the record's"
            );
            Some(record)
        }
        crate::shared::Item::Event { .. } => panic!("expected a request, got an event"),
        crate::shared::Item::Catalog(_) => panic!("expected a request, got a catalog"),
    }
}

fn cookie_of(response: &Response<Bytes>) -> String {
    let set = response
        .headers()
        .get(http::header::SET_COOKIE)
        .expect("visitor cookie set");
    set.to_str().unwrap().split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_request_becomes_a_complete_record() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let layer = layer
        .identify(|_: &http::request::Parts| Identity::user("alice").with_session("sess-secret-1"));
    let req = request("/watch/Python/Getting%20started/English/?t=42&password=hunter2")
        .method("GET")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        )
        .header("referer", "https://example.org/list?token=abc&page=2#frag")
        .header("accept-language", "en-GB")
        .header("authorization", "Bearer very-secret")
        .header("x-forwarded-for", "81.2.69.142")
        .body(Full::default())
        .unwrap();
    let (response, r) = drive(&layer, &mut shipper, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "hello, world");
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/watch/Python/Getting%20started/English/");
    assert_eq!(r.query.as_deref(), Some("t=42&password=[redacted]"));
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes_sent, 12);
    assert!(r.latency_ms >= 0.0);
    assert_eq!(
        r.referer.as_deref(),
        Some("https://example.org/list?token=[redacted]&page=2")
    );
    assert_eq!(
        r.ip,
        Some("81.2.69.142".parse().unwrap()),
        "trusted proxy header used"
    );
    assert_eq!(r.ua.name.as_deref(), Some("Firefox"));
    assert_eq!(r.user.as_deref(), Some("alice"));
    let session = r.session_id.as_deref().unwrap();
    assert_eq!(session.len(), 32);
    assert!(!session.contains("sess-secret"));
    assert_eq!(r.visit_number, Some(1));
    assert_eq!((r.new_visit, r.returning), (Some(true), Some(false)));
    let tutorial = r.tutorial.as_ref().unwrap();
    assert_eq!(
        (
            tutorial.foss.as_str(),
            tutorial.tutorial.as_str(),
            tutorial.language.as_str()
        ),
        ("Python", "Getting started", "English")
    );
    assert_eq!(
        r.view_args.get("tutorial").map(String::as_str),
        Some("Getting started")
    );
    assert_eq!(
        r.headers.get("accept-language").map(String::as_str),
        Some("en-GB")
    );
    assert!(!r.headers.contains_key("authorization"));
    let json = serde_json::to_string(&r).unwrap();
    for secret in ["hunter2", "very-secret", "sess-secret", "abc&", "frag", KEY] {
        assert!(!json.contains(secret), "{secret} leaked into {json}");
    }
    // Same session, same hash: sessions can still be grouped.
    let again = request("/").body(Full::default()).unwrap();
    let (_, r2) = drive(&layer, &mut shipper, again).await;
    assert_eq!(r2.session_id, r.session_id);
}

#[tokio::test]
async fn the_visitor_cookie_carries_the_visitor_across_requests() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let (first, r1) = drive(
        &layer,
        &mut shipper,
        request("/").body(Full::default()).unwrap(),
    )
    .await;
    let cookie = cookie_of(&first);
    let req = request("/about")
        .header("cookie", cookie)
        .body(Full::default())
        .unwrap();
    let (_, r2) = drive(&layer, &mut shipper, req).await;
    assert_eq!(r1.visitor_id, r2.visitor_id);
    assert_eq!((r2.visit_number, r2.new_visit), (Some(1), Some(false)));

    let req = request("/")
        .header("cookie", "visitlog_vid=v1.forged.AAAA")
        .body(Full::default())
        .unwrap();
    let (_, r3) = drive(&layer, &mut shipper, req).await;
    assert_ne!(r3.visitor_id, r1.visitor_id);
    assert_eq!(layer.stats().rejected_cookies, 1);
}

#[tokio::test]
async fn untrusted_peers_and_anonymised_addresses() {
    let (layer, mut shipper) = CaptureLayer::new(config().anonymize_ip(true)).unwrap();
    let req = Request::builder()
        .uri("/")
        .extension(SocketAddr::from(([203, 0, 113, 77], 5555)))
        .header("x-forwarded-for", "81.2.69.142")
        .body(Full::default())
        .unwrap();
    let (_, r) = drive(&layer, &mut shipper, req).await;
    assert_eq!(r.ip, Some("203.0.113.0".parse().unwrap()));
    // No peer address at all: unknown, not guessed from headers.
    let req = Request::builder()
        .uri("/")
        .header("x-forwarded-for", "81.2.69.142")
        .body(Full::default())
        .unwrap();
    let (_, r) = drive(&layer, &mut shipper, req).await;
    assert_eq!(r.ip, None);
}

#[tokio::test]
async fn the_app_can_name_the_user_on_the_response() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let svc =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_: Request<Full<Bytes>>| async {
                let mut response = Response::new(Full::<Bytes>::from("welcome"));
                response.extensions_mut().insert(Identity::user("bob"));
                Ok::<_, Infallible>(response)
            });
    send(
        svc,
        request("/login")
            .method("POST")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let record = next_request(&mut shipper).unwrap();
    assert_eq!(record.user.as_deref(), Some("bob"));
    assert_eq!(record.method, "POST");
}

/// Issue 12: staff (marked by the identity hook) are stored, flagged, so
/// that figures leave them out; an HTML response is recorded as
/// `text/html`, what makes a request a page view.
#[tokio::test]
async fn staff_and_the_responses_media_type_are_recorded() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let layer =
        layer.identify(
            |req: &http::request::Parts| match req.headers.contains_key("x-staff") {
                true => Identity::user("carol").staff(),
                false => Identity::user("dave"),
            },
        );
    let html = |_: Request<Full<Bytes>>| async {
        let mut response = Response::new(Full::<Bytes>::from("<!doctype html><p>hi</p>"));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("Text/HTML; charset=utf-8"),
        );
        Ok::<_, Infallible>(response)
    };
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(html);
    let staff = request("/").header("x-staff", "1").body(Full::default());
    send(svc.clone(), staff.unwrap()).await;
    let record = next_request(&mut shipper).unwrap();
    assert_eq!(record.user.as_deref(), Some("carol"));
    assert!(record.staff, "the hook said staff");
    assert_eq!(record.content_type.as_deref(), Some("text/html"));
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(
        (&json["staff"], &json["content_type"]),
        (&true.into(), &"text/html".into())
    );

    send(svc, request("/").body(Full::default()).unwrap()).await;
    let record = next_request(&mut shipper).unwrap();
    assert!(!record.staff, "a learner is not staff");
    // No content type (the plain `hello` service) is recorded as none.
    let (_, plain) = drive(
        &layer,
        &mut shipper,
        request("/x").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(plain.content_type, None);
}

#[tokio::test]
async fn streamed_bodies_are_counted_when_they_end() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let svc =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_: Request<Full<Bytes>>| async {
                let chunks = (0..3).map(|_| {
                    Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"0123456789")))
                });
                Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
                    chunks,
                ))))
            });
    let response = svc
        .oneshot(request("/stream").body(Full::default()).unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    // Nothing is recorded while the body is still being sent.
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().map(Bytes::len), Some(10));
    assert!(shipper.rx.try_recv().is_err());
    while body.frame().await.is_some() {}
    let record = next_request(&mut shipper).unwrap();
    assert_eq!(record.bytes_sent, 30);
}

#[tokio::test]
async fn inner_errors_and_abandoned_requests_are_recorded() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let mut failing = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_: Request<Full<Bytes>>| async { Err::<Response<Full<Bytes>>, _>("boom") });
    assert!(
        failing
            .ready()
            .await
            .unwrap()
            .call(request("/err").body(Full::default()).unwrap())
            .await
            .is_err()
    );
    assert_eq!(next_request(&mut shipper).unwrap().status, 500);

    let mut slow =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_: Request<Full<Bytes>>| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            });
    let future = slow
        .ready()
        .await
        .unwrap()
        .call(request("/slow").body(Full::default()).unwrap());
    drop(future);
    assert_eq!(next_request(&mut shipper).unwrap().status, 499);
}

/// Whatever a client sends, the record stays within the validator's limits.
#[tokio::test]
async fn hostile_requests_still_give_valid_records() {
    let (layer, mut shipper) =
        CaptureLayer::new(config().capture_headers(vec![http::header::ACCEPT_LANGUAGE])).unwrap();
    let long = "a".repeat(10_000);
    let cases = [
        request(&format!("/{long}?{long}=1&{long}")),
        request("/watch/%FF%FE/x/y/").header(
            "user-agent",
            HeaderValue::from_bytes(b"Mozilla \xff\xfe").unwrap(),
        ),
        request("/")
            .method("PROPFINDVERYLONGMETHODNAMEWHICHGOESONANDON")
            .header("referer", long.as_str()),
        request("/")
            .header("user-agent", long.as_str())
            .header("accept-language", long.as_str()),
        request("/").header("x-forwarded-for", "999.1.1.1, ::ffff:zz"),
        request("/").header("cookie", format!("visitlog_vid={long}")),
        request(&format!("/watch/{long}/{long}/{long}/")),
    ];
    for builder in cases {
        let (_, record) = drive(&layer, &mut shipper, builder.body(Full::default()).unwrap()).await;
        assert!(record.path.chars().count() <= limits::URL);
    }
}

#[tokio::test]
async fn a_full_channel_drops_and_counts_without_failing_the_request() {
    // No shipper running and room for one record: the next ones are dropped.
    let (layer, _shipper) = CaptureLayer::new(config().buffer_records(1)).unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(hello);
    for _ in 0..3 {
        let response = send(svc.clone(), request("/").body(Full::default()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let stats = layer.stats();
    assert_eq!((stats.captured, stats.dropped, stats.buffered), (3, 2, 1));
}

#[tokio::test]
async fn shutdown_gives_up_at_its_deadline_when_redis_is_unreachable() {
    let (layer, shipper) =
        CaptureLayer::new(config().flush_interval(Duration::from_millis(5))).unwrap();
    let handle = shipper.spawn();
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(hello);
    for _ in 0..5 {
        send(svc.clone(), request("/").body(Full::default()).unwrap()).await;
    }
    let started = std::time::Instant::now();
    let stats = handle.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (stats.captured, stats.shipped, stats.dropped, stats.buffered),
        (5, 0, 5, 0)
    );
    assert!(stats.send_errors >= 1);
}

/// What `skip_when` and `sample` leave out is never captured, and what
/// they keep says so; the books still balance.
#[tokio::test]
async fn skipped_and_sampled_out_requests_make_no_record() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let layer = layer
        .skip_when(|req: &http::request::Parts| req.uri.path().starts_with("/static/"))
        .sample(0.5);
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(hello);
    let skipped = send(
        svc,
        request("/static/app.css").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(skipped.body(), "hello, world");
    assert!(
        skipped.headers().get(http::header::SET_COOKIE).is_none(),
        "a skipped request passes through untouched"
    );
    assert!(next_request(&mut shipper).is_none());

    // New browsers, each a new visitor: about half are kept.
    let mut kept = Vec::new();
    for _ in 0..400 {
        let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(hello);
        let response = send(svc, request("/").body(Full::default()).unwrap()).await;
        assert!(response.headers().contains_key(http::header::SET_COOKIE));
        if let Some(record) = next_request(&mut shipper) {
            kept.push((cookie_of(&response), record));
        }
    }
    assert!(
        (140..260).contains(&kept.len()),
        "{} of 400 kept",
        kept.len()
    );
    assert!(kept.iter().all(|(_, r)| r.sample_rate == Some(0.5)));
    // A kept visitor stays kept: the choice is by visitor.
    let (cookie, first) = &kept[0];
    for _ in 0..5 {
        let req = request("/next")
            .header("cookie", cookie)
            .body(Full::default())
            .unwrap();
        let (_, again) = drive(&layer, &mut shipper, req).await;
        assert_eq!(again.visitor_id, first.visitor_id);
    }
    let stats = layer.stats();
    assert_eq!(stats.skipped, 1);
    assert_eq!(stats.captured as usize, kept.len() + 5);
    assert_eq!(stats.sampled_out as usize, 400 - kept.len());
    assert_eq!(
        stats.captured,
        stats.shipped + stats.dropped + stats.buffered
    );
}

/// Handlers read the visitor id and the record id; the record keeps the
/// request's `X-Request-Id`; a response can opt out with `NotRecorded`.
#[tokio::test]
async fn handlers_see_the_ids_and_the_request_id_is_kept() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let svc =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(move |req: Request<Full<Bytes>>| {
                let ids = (
                    req.extensions().get::<VisitorId>().copied(),
                    req.extensions().get::<RecordId>().copied(),
                );
                tx.send(ids).unwrap();
                let mut response = Response::new(Full::<Bytes>::from("ok"));
                if req.uri().path() == "/private" {
                    response.extensions_mut().insert(NotRecorded);
                }
                async move { Ok::<_, Infallible>(response) }
            });
    let req = request("/")
        .header("x-request-id", " f0e4c2f76c58916ec258f246851bea09 ")
        .body(Full::default())
        .unwrap();
    send(svc.clone(), req).await;
    let record = next_request(&mut shipper).unwrap();
    let (visitor, id) = seen.recv().await.unwrap();
    assert_eq!(visitor.map(|v| v.0), record.visitor_id);
    assert_eq!(id.map(|r| r.0), Some(record.id));
    assert_eq!(
        record.request_id.as_deref(),
        Some("f0e4c2f76c58916ec258f246851bea09")
    );
    let long = "r".repeat(500);
    send(
        svc.clone(),
        request("/")
            .header("x-request-id", &long)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let record = next_request(&mut shipper).unwrap();
    assert_eq!(record.request_id.map(|r| r.len()), Some(limits::REQUEST_ID));

    send(svc, request("/private").body(Full::default()).unwrap()).await;
    assert!(next_request(&mut shipper).is_none());
    assert_eq!(layer.stats().skipped, 1);
}

/// The app's own "current user" type, converted to an `Identity`.
#[derive(Clone)]
struct CurrentUser(&'static str);

impl From<&CurrentUser> for Identity {
    fn from(user: &CurrentUser) -> Self {
        Identity::user(user.0).with_session("s-1")
    }
}

/// `identify_from_extension` finds the app's type in the request (an auth
/// layer outside put it there) or in the response (a handler inside did,
/// after reading an async session).
#[tokio::test]
async fn identity_from_an_extension_of_the_request_or_the_response() {
    let (layer, mut shipper) = CaptureLayer::new(config()).unwrap();
    let layer = layer.identify_from_extension::<CurrentUser>();
    let svc = ServiceBuilder::new().layer(layer.clone()).service_fn(
        |req: Request<Full<Bytes>>| async move {
            let mut response = Response::new(Full::<Bytes>::from("ok"));
            if req.uri().path() == "/login" {
                response.extensions_mut().insert(CurrentUser("late"));
            }
            Ok::<_, Infallible>(response)
        },
    );
    let req = request("/")
        .extension(CurrentUser("outer"))
        .body(Full::default())
        .unwrap();
    send(svc.clone(), req).await;
    let record = next_request(&mut shipper).unwrap();
    assert_eq!(record.user.as_deref(), Some("outer"));
    assert!(record.session_id.is_some());

    send(
        svc.clone(),
        request("/login").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(
        next_request(&mut shipper).unwrap().user.as_deref(),
        Some("late")
    );

    send(svc, request("/").body(Full::default()).unwrap()).await;
    assert_eq!(next_request(&mut shipper).unwrap().user, None);
}

/// `Accept-CH` is opt-in and only on HTML responses.
#[tokio::test]
async fn accept_ch_is_asked_for_on_html_pages_when_configured() {
    async fn page(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
        let kind = if req.uri().path() == "/" {
            "text/html; charset=utf-8"
        } else {
            "text/css"
        };
        Ok(Response::builder()
            .header(http::header::CONTENT_TYPE, kind)
            .body(Full::from("x"))
            .unwrap())
    }
    for (on, path, expected) in [
        (
            true,
            "/",
            Some("Sec-CH-UA-Platform-Version, Sec-CH-UA-Full-Version-List"),
        ),
        (true, "/app.css", None),
        (false, "/", None),
    ] {
        let (layer, _shipper) = CaptureLayer::new(config().accept_ch(on)).unwrap();
        let svc = ServiceBuilder::new().layer(layer).service_fn(page);
        let response = send(svc, request(path).body(Full::default()).unwrap()).await;
        let header = response
            .headers()
            .get("accept-ch")
            .map(|v| v.to_str().unwrap());
        assert_eq!(header, expected, "{on} {path}");
    }
}
