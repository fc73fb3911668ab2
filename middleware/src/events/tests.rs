use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use visitlog_schema::{Collection, EventType, RecordValidator};

use super::origin::same_origin;
use super::parse::{ClientEvent, FIELDS, MAX_SECONDS, RATES, parse_event, parse_events};
use super::*;
use crate::shared::Item;
use crate::{CaptureLayer, Config, Identity, Shipper};
use uuid::Uuid;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn event() -> Value {
    json!({
        "type": "video.progress", "foss": "Python", "tutorial": "Getting-started",
        "language": "English", "video_id": "Python/Getting-started/English",
        "position": 42.0, "duration": 600.0, "played_from": 32.0
    })
}

fn with(mut event: Value, key: &str, value: Value) -> Value {
    event[key] = value;
    event
}

fn without(mut event: Value, key: &str) -> Value {
    event.as_object_mut().unwrap().remove(key);
    event
}

fn refused_field(value: Value) -> String {
    let refusal = parse_events(&value).expect_err("should be refused");
    assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
    refusal.field.unwrap_or_else(|| refusal.message.clone())
}

#[test]
fn good_events_parse() {
    let e = parse_event(&event()).unwrap();
    assert_eq!(e.event_type, EventType::VideoProgress);
    assert_eq!((e.position, e.played_from), (Some(42.0), Some(32.0)));
    let seek = json!({"type": "video.seek", "foss": "f", "tutorial": "t", "language": "l",
        "video_id": "v", "from": 10, "to": 100, "duration": 120, "played_from": 2});
    let e = parse_event(&seek).unwrap();
    assert_eq!(
        e.position,
        Some(100.0),
        "a seek's position is where it went"
    );
    let complete =
        json!({"type": "tutorial.complete", "foss": "f", "tutorial": "t", "language": "l"});
    assert!(parse_event(&complete).unwrap().video_id.is_none());
    let batch = json!([event(), complete]);
    assert_eq!(parse_events(&batch).unwrap().len(), 2);
}

#[test]
fn duration_may_be_unknown_and_rate_page_view_and_client_id_are_kept() {
    // Live streams and media whose metadata has not loaded: no duration.
    let live = without(event(), "duration");
    let parsed = parse_event(&live).unwrap();
    assert_eq!((parsed.duration, parsed.position), (None, Some(42.0)));
    let view = Uuid::now_v7();
    let id = Uuid::new_v4();
    let e = json!({"type": "video.pause", "foss": "f", "tutorial": "t", "language": "l",
        "video_id": "v", "position": 20, "duration": 60, "rate": 1.5,
        "page_view": view.to_string(), "client_event_id": id.to_string()});
    let parsed = parse_event(&e).unwrap();
    assert_eq!(parsed.rate, Some(1.5));
    assert_eq!(parsed.page_view, Some(view));
    assert_eq!(parsed.client_event_id, Some(id));
    // A rate means nothing for a manual mark.
    let mark = json!({"type": "tutorial.complete", "foss": "f", "tutorial": "t",
        "language": "l", "rate": 1});
    assert_eq!(refused_field(mark), "rate");
}

#[test]
fn every_bad_input_names_its_field() {
    let cases = [
        (with(event(), "type", json!("video.rewind")), "type"),
        (with(event(), "type", json!("page.view")), "type"),
        (without(event(), "type"), "type"),
        (with(event(), "position", json!(-1)), "position"),
        (with(event(), "position", json!(601)), "position"),
        (with(event(), "position", json!("42")), "position"),
        (with(event(), "position", json!(1e12)), "position"),
        (without(event(), "position"), "position"),
        (with(event(), "duration", json!(0)), "duration"),
        (with(event(), "rate", json!(5)), "rate"),
        (with(event(), "rate", json!(0.1)), "rate"),
        (with(event(), "rate", json!("1")), "rate"),
        (with(event(), "page_view", json!("not-a-uuid")), "page_view"),
        (with(event(), "page_view", json!(7)), "page_view"),
        (
            with(event(), "client_event_id", json!("")),
            "client_event_id",
        ),
        (without(event(), "foss"), "foss"),
        (with(event(), "tutorial", json!("")), "tutorial"),
        (with(event(), "language", json!(7)), "language"),
        (without(event(), "video_id"), "video_id"),
        (
            with(event(), "video_id", json!("v".repeat(600))),
            "video_id",
        ),
        (with(event(), "played_from", json!(50)), "played_from"),
        (with(event(), "from", json!(1)), "from"),
        (with(event(), "password", json!("x")), "password"),
        (
            with(event(), "type", json!("video.seek")), // no from/to
            "from",
        ),
        (json!([]), "events"),
        (
            json!([event(), with(event(), "position", json!(-3))]),
            "position",
        ),
    ];
    for (value, field) in cases {
        assert_eq!(refused_field(value.clone()), field, "{value}");
    }
    let batch = json!([event(), with(event(), "position", json!(-3))]);
    let message = parse_events(&batch).unwrap_err().message;
    assert!(message.starts_with("events[1].position"), "{message}");
    assert!(parse_event(&json!("video.play")).is_err());
    let too_many = Value::Array(vec![event(); MAX_EVENTS_PER_REQUEST + 1]);
    assert_eq!(refused_field(too_many), "events");
}

fn parts(headers: &[(&str, &str)]) -> Parts {
    let mut request = Request::builder().uri("/visitlog/events");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap().into_parts().0
}

#[test]
fn same_origin_check() {
    let none: &[String] = &[];
    let ok = |h: &[(&str, &str)]| same_origin(&parts(h), none);
    ok(&[("host", "site.test"), ("origin", "https://site.test")]).unwrap();
    ok(&[
        ("host", "site.test:8080"),
        ("referer", "http://site.test:8080/watch/a/b/c/"),
    ])
    .unwrap();
    ok(&[
        ("sec-fetch-site", "same-origin"),
        ("origin", "https://site.test"),
    ])
    .unwrap();
    ok(&[("host", "site.test"), ("origin", "https://evil.test")]).unwrap_err();
    ok(&[("host", "site.test"), ("origin", "null")]).unwrap_err();
    ok(&[
        ("host", "site.test"),
        ("referer", "https://site.test.evil.test/"),
    ])
    .unwrap_err();
    ok(&[
        ("host", "site.test"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://site.test"),
    ])
    .unwrap_err();
    ok(&[("host", "site.test")]).unwrap_err();
    let allowed = vec!["https://www.site.test".to_owned()];
    same_origin(
        &parts(&[
            ("host", "api.site.test"),
            ("sec-fetch-site", "same-site"),
            ("origin", "https://www.site.test"),
        ]),
        &allowed,
    )
    .unwrap();
}

fn app(config: Config) -> (Router, Shipper) {
    let (capture, shipper) = CaptureLayer::new(
        config
            .cookie_key(KEY)
            .redis_url("redis://127.0.0.1:1".to_owned()),
    )
    .unwrap();
    let capture = capture.identify(|req: &Parts| {
        match req.headers.get("x-user").and_then(|v| v.to_str().ok()) {
            Some(user) if req.headers.contains_key("x-staff") => {
                Identity::user(user).with_session("secret-session").staff()
            }
            Some(user) => Identity::user(user).with_session("secret-session"),
            None => Identity::anonymous(),
        }
    });
    let router = Router::new()
        .route("/visitlog/events", capture.events())
        .layer(capture);
    (router, shipper)
}

fn post(_: ()) -> http::request::Builder {
    post_with("http://site.test", "application/json")
}

fn post_with(origin: &str, content_type: &str) -> http::request::Builder {
    Request::builder()
        .method("POST")
        .uri("/visitlog/events")
        .header("host", "site.test")
        .header("origin", origin)
        .header("content-type", content_type)
        .extension(SocketAddr::from(([127, 0, 0, 1], 40000)))
}

async fn answer(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Events the endpoint shipped (the layer's request records are skipped).
fn shipped_events(shipper: &mut Shipper) -> Vec<visitlog_schema::EventRecord> {
    let mut out = Vec::new();
    while let Ok(item) = shipper.rx.try_recv() {
        if let Item::Event { record, session } = item {
            out.push(shipper.enricher.event(*record, session));
        }
    }
    out
}

#[tokio::test]
async fn accepted_events_are_stamped_and_shipped() {
    let (router, mut shipper) = app(Config::default());
    let body = json!([event(), with(event(), "type", json!("video.pause"))]).to_string();
    let request = post(())
        .header("x-user", "alice")
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = answer(&router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let events = shipped_events(&mut shipper);
    assert_eq!(events.len(), 2);
    let validator = RecordValidator::new(Collection::Events).unwrap();
    for e in &events {
        validator
            .validate(&serde_json::to_value(e).unwrap())
            .unwrap();
        assert_eq!(e.learner, "user:alice");
        assert_eq!(e.user.as_deref(), Some("alice"));
        assert!(e.visitor_id.is_some() && e.visit_number == Some(1));
        let session = e.session_id.as_deref().unwrap();
        assert!(!session.contains("secret"), "the session id is hashed");
    }
    assert!(events[0].id < events[1].id, "server order within a batch");
    assert_eq!(events[1].event_type, EventType::VideoPause);
}

#[tokio::test]
async fn refusals_answer_with_the_right_status() {
    let (router, mut shipper) = app(Config::default());
    let good = event().to_string();
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        // Not logged in, and anonymous events are off by default.
        (
            post(()).body(Body::from(good.clone())).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            post_with("http://site.test", "text/plain")
                .header("x-user", "alice")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post_with("https://evil.test", "application/json")
                .header("x-user", "alice")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::FORBIDDEN,
        ),
        (
            post(())
                .header("x-user", "alice")
                .body(Body::from(format!(
                    "[{}]",
                    vec![good.as_str(); 99].join(",")
                )))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            post(())
                .header("x-user", "alice")
                .body(Body::from("{not json"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(())
                .header("x-user", "alice")
                .body(Body::from(with(event(), "position", json!(-1)).to_string()))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (request, expected) in cases {
        let (status, answer) = answer(&router, request).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert!(
        shipped_events(&mut shipper).is_empty(),
        "nothing refused is shipped"
    );
    let get = Request::builder()
        .uri("/visitlog/events")
        .body(Body::empty())
        .unwrap();
    assert_eq!(answer(&router, get).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn anonymous_visitors_when_allowed() {
    let (router, mut shipper) = app(Config::default().events_anonymous(true));
    let request = post(()).body(Body::from(event().to_string())).unwrap();
    let (status, _) = answer(&router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = shipped_events(&mut shipper);
    assert!(
        events[0].learner.starts_with("visitor:"),
        "{}",
        events[0].learner
    );
    assert_eq!(events[0].user, None);
    // Opted out of the visitor cookie: no learner to key progress on.
    let (router, _shipper) = app(Config::default().events_anonymous(true).respect_dnt(true));
    let request = post(())
        .header("dnt", "1")
        .body(Body::from(event().to_string()))
        .unwrap();
    assert_eq!(answer(&router, request).await.0, StatusCode::UNAUTHORIZED);
}

fn batch_of(n: usize) -> String {
    let one = json!({"type": "video.pause", "foss": "f", "tutorial": "t", "language": "l",
        "video_id": "v", "position": 1, "duration": 9});
    serde_json::to_string(&vec![one; n]).unwrap()
}

#[tokio::test]
async fn one_learner_is_rate_limited_with_retry_after_and_others_are_not() {
    let (router, mut shipper) = app(Config::default().events_rate(1.0).events_burst(3));
    let send = |user: &'static str| {
        post(())
            .header("x-user", user)
            .body(Body::from(event().to_string()))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(answer(&router, send("alice")).await.0, StatusCode::ACCEPTED);
    }
    let response = router.clone().oneshot(send("alice")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1);
    // Bob has a bucket of his own.
    assert_eq!(answer(&router, send("bob")).await.0, StatusCode::ACCEPTED);
    assert_eq!(shipped_events(&mut shipper).len(), 4);
    let stats = shipper.counters.snapshot();
    assert_eq!((stats.events, stats.events_refused), (4, 1));
    // A refused request was never captured: nothing to drop or to ship.
    assert_eq!(stats.dropped, 0);
}

#[tokio::test]
async fn an_array_is_accepted_whole_or_not_at_all() {
    // A channel of 64 slots: a quarter stays free for page views.
    let (router, mut shipper) = app(Config::default()
        .buffer_records(64)
        .events_rate(0.0)
        .events_max_bytes(64 * 1024));
    let send = |n: usize| {
        post(())
            .header("x-user", "alice")
            .body(Body::from(batch_of(n)))
            .unwrap()
    };
    let (status, body) = answer(&router, send(40)).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(40))
    );
    // 24 slots left, 16 of them kept for requests: 20 do not fit, and none is taken.
    let response = router.clone().oneshot(send(20)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no event was accepted"),
        "{body}"
    );
    let stats = shipper.counters.snapshot();
    // The two POSTs make no request records of their own.
    assert_eq!(
        (
            stats.captured,
            stats.events,
            stats.events_refused,
            stats.skipped
        ),
        (40, 40, 1, 2)
    );
    assert_eq!(shipped_events(&mut shipper).len(), 40);
    // Once the shipper has taken them, the retry goes through whole.
    let (status, body) = answer(&router, send(20)).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(20))
    );
    assert_eq!(shipped_events(&mut shipper).len(), 20);
    // And page views still have their room.
    assert!(shipper.rx.capacity() >= 16);
}

#[tokio::test]
async fn more_than_the_bound_per_body_is_refused() {
    let (router, _shipper) = app(Config::default().events_max_bytes(64 * 1024));
    let request = post(())
        .header("x-user", "alice")
        .body(Body::from(batch_of(MAX_EVENTS_PER_REQUEST + 1)))
        .unwrap();
    let (status, body) = answer(&router, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "events");
}

/// Property tests: `PROPTEST_CASES=100000 scripts/bench` runs them at length.
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z._]{0,12}".prop_map(Value::from),
            "\\PC{0,300}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        prop::sample::select(FIELDS).prop_map(str::to_owned),
                        "\\PC{0,200}"
                    ],
                    inner,
                    0..10
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Whatever came back either holds up or is a short, clear refusal.
    fn check(result: Result<Vec<ClientEvent>, Refusal>) -> Result<(), TestCaseError> {
        match result {
            Ok(events) => {
                prop_assert!(!events.is_empty() && events.len() <= MAX_EVENTS_PER_REQUEST);
                for e in events {
                    let times = [e.position, e.duration, e.from, e.to, e.played_from];
                    for t in times.into_iter().flatten() {
                        prop_assert!(t.is_finite() && (0.0..=MAX_SECONDS).contains(&t));
                    }
                    if let Some(d) = e.duration {
                        prop_assert!(d > 0.0);
                        for t in [e.position, e.from, e.to, e.played_from]
                            .into_iter()
                            .flatten()
                        {
                            prop_assert!(t <= d);
                        }
                    }
                    prop_assert!(!e.foss.trim().is_empty());
                    if e.event_type.is_video() {
                        prop_assert!(e.video_id.is_some());
                    }
                    if let Some(rate) = e.rate {
                        prop_assert!(e.event_type.is_video() && RATES.contains(&rate));
                    }
                }
            }
            Err(refusal) => {
                prop_assert!(refusal.status.is_client_error());
                prop_assert!(!refusal.message.is_empty());
                prop_assert!(
                    refusal.message.chars().count() <= 300,
                    "{}",
                    refusal.message
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn proptest_events_body_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                check(parse_events(&value))?;
            }
        }

        #[test]
        fn proptest_events_body_any_json(value in any_json()) {
            check(parse_events(&value))?;
        }

        #[test]
        fn proptest_events_body_one_field_changed(
            field in prop::sample::select(FIELDS),
            value in any_json(),
            twice in any::<bool>(),
        ) {
            let mut e = event();
            e[field] = value.clone();
            let body = if twice { json!([e.clone(), e]) } else { e };
            check(parse_events(&body))?;
        }
    }
}

fn ping() -> Value {
    json!({
        "type": "page.ping", "page_view": "0190f7a2-1c3d-7e4f-8a9b-0c1d2e3f4a5b",
        "active_ms": 15000
    })
}

#[test]
fn page_activity_names_its_page_and_active_time() {
    let e = parse_event(&ping()).unwrap();
    assert_eq!(e.event_type, EventType::PagePing);
    assert_eq!(e.active_ms, Some(15000));
    assert!(e.page_view.is_some() && e.foss.is_empty() && e.video_id.is_none());
    // On a tutorial page it names the tutorial, all three names.
    let named = json!({"foss": "Python", "tutorial": "Intro", "language": "English"});
    let mut hide = with(ping(), "type", json!("page.hide"));
    for (k, v) in named.as_object().unwrap() {
        hide[k] = v.clone();
    }
    let e = parse_event(&hide).unwrap();
    assert_eq!(
        (e.event_type, e.foss.as_str()),
        (EventType::PageHide, "Python")
    );
    for (bad, field) in [
        (without(ping(), "page_view"), "page_view"),
        (without(ping(), "active_ms"), "active_ms"),
        (with(ping(), "active_ms", json!(-1)), "active_ms"),
        (with(ping(), "active_ms", json!(1.5)), "active_ms"),
        (with(ping(), "active_ms", json!(3_600_001)), "active_ms"),
        (with(ping(), "active_ms", json!("15000")), "active_ms"),
        (with(ping(), "page_view", json!("not-a-uuid")), "page_view"),
        (with(ping(), "position", json!(3.0)), "position"),
        (with(ping(), "video_id", json!("v")), "video_id"),
        (with(ping(), "foss", json!("Python")), "tutorial"),
        (with(event(), "active_ms", json!(10)), "active_ms"),
    ] {
        assert_eq!(refused_field(bad), field);
    }
}

#[tokio::test]
async fn staff_events_are_marked_and_page_activity_is_shipped() {
    let (router, mut shipper) = app(Config::default());
    let body = json!([ping(), event()]).to_string();
    let request = post(())
        .header("x-user", "alice")
        .header("x-staff", "1")
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = answer(&router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let events = shipped_events(&mut shipper);
    let validator = RecordValidator::new(Collection::Events).unwrap();
    for e in &events {
        validator
            .validate(&serde_json::to_value(e).unwrap())
            .unwrap();
        assert!(e.staff, "the identity hook said staff");
    }
    assert_eq!(events[0].event_type, EventType::PagePing);
    assert_eq!(events[0].active_ms, Some(15000));
}

/// `events()` called before `.identify(..)` still sees the hook: the layer
/// has one hook, read at each request (it used to be copied at the call,
/// which gave every learner 401).
#[tokio::test]
async fn the_hook_set_after_events_is_the_one_used() {
    let (capture, mut shipper) = CaptureLayer::new(
        Config::default()
            .cookie_key(KEY)
            .redis_url("redis://127.0.0.1:1".to_owned()),
    )
    .unwrap();
    let events = capture.events();
    let capture = capture.identify(|_: &Parts| Identity::user("bob"));
    let router = Router::new()
        .route("/visitlog/events", events)
        .layer(capture);
    let request = post(()).body(Body::from(event().to_string())).unwrap();
    let (status, body) = answer(&router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let events = shipped_events(&mut shipper);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].learner, "user:bob");
    assert_eq!(
        shipper.counters.snapshot().skipped,
        1,
        "the POST is no page view"
    );
}
