//! The site's assets come from tower-http's `ServeDir`: byte ranges (the
//! player seeks), conditional requests, media types; and they make no
//! request records.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use visitlog_middleware::{CaptureLayer, Config};

fn site() -> (axum::Router, CaptureLayer) {
    let config = Config::default()
        .cookie_key("0123456789abcdef0123456789abcdef")
        .redis_url("redis://127.0.0.1:1".to_owned());
    let (capture, _shipper) = CaptureLayer::new(config).unwrap();
    (visitlog_example::app(capture.clone()), capture)
}

async fn get(
    app: &axum::Router,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> axum::response::Response {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn assets_are_served_with_ranges_and_conditional_requests() {
    let (app, capture) = site();
    let size = std::fs::metadata(format!("{}/sample.webm", visitlog_example::assets::ASSETS))
        .unwrap()
        .len();

    let whole = get(&app, "/static/sample.webm", &[]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[header::CONTENT_TYPE], "video/webm");
    assert_eq!(whole.headers()[header::ACCEPT_RANGES], "bytes");
    let modified = whole.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_owned();

    let part = get(
        &app,
        "/static/sample.webm",
        &[(header::RANGE, "bytes=100-199")],
    )
    .await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()[header::CONTENT_RANGE],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(
        part.into_body().collect().await.unwrap().to_bytes().len(),
        100
    );

    let beyond = get(
        &app,
        "/static/sample.webm",
        &[(header::RANGE, &format!("bytes={size}-"))],
    )
    .await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let cached = get(
        &app,
        "/static/sample.webm",
        &[(header::IF_MODIFIED_SINCE, &modified)],
    )
    .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let script = get(&app, "/static/progress.js", &[]).await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    let missing = get(&app, "/static/../Cargo.toml", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Assets are not page traffic.
    let stats = capture.stats();
    assert_eq!((stats.captured, stats.skipped), (0, 6));
}
