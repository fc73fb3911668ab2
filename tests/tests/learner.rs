//! Learning progress end to end: the example site's events endpoint, Redis,
//! the consumer deriving state into MongoDB, and the site reading it back.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

// The consumer in process, as its own tests run it.
#[path = "../../consumer/tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use bson::doc;
use serde_json::{Value, json};
use visitlog_tests::{Namespace, eventually, shared_mongodb_uri, test_database};

use common::{InProcess, config};
use support::{CaptureConfig, Site, log_in};

const PAGE: &str = "/watch/Python/Getting-started/English/";
const API: &str = "/api/progress/Python/Getting-started/English";
const WAIT: Duration = Duration::from_secs(60);

/// One browser: its own visitor cookie and session.
use support::Client as Browser;

impl Browser {
    /// Sends one event and insists it was accepted.
    async fn send(&mut self, site: &Site, event: Value) {
        let (status, answer) = self.post_events(site, &event).await;
        assert_eq!(status, 202, "{event} -> {answer}");
    }

    /// Polls `/api/progress` until `check` holds.
    async fn wait_progress(&mut self, site: &Site, check: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, Duration::from_millis(100), async || {
            let response = self.get(site.url(API)).await;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if check(&body) {
                Ok(body)
            } else {
                Err(format!("progress never matched: {body}"))
            }
        })
        .await
        .unwrap()
    }
}

fn video(kind: &str, position: f64, played_from: Option<f64>) -> Value {
    let mut e = json!({
        "type": kind, "foss": "Python", "tutorial": "Getting-started", "language": "English",
        "video_id": "Python/Getting-started/English", "position": position, "duration": 120.0,
    });
    if let Some(from) = played_from {
        e["played_from"] = from.into();
    }
    e
}

fn mark(kind: &str) -> Value {
    json!({"type": kind, "foss": "Python", "tutorial": "Getting-started", "language": "English"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_resumes_on_another_device_and_marks_complete_and_incomplete() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(config(&ns, &uri, &db, "progress-1"));
    let site = Site::start_with_progress(ns.config(), &uri, &db)
        .await
        .unwrap();

    // Laptop: log in, open the tutorial, watch from 32 s to 42 s and pause.
    // (This client posts at once: what a page may report is rate × the time
    // since its first event plus 10 s, so each device here plays 10 s.)
    let mut laptop = Browser::new(&site);
    laptop.get(site.url("/")).await;
    laptop.login(&site, "alice").await;
    let page = laptop.get(site.url(PAGE)).await.text().await.unwrap();
    assert!(page.contains(r#"data-resume="0""#), "nothing to resume yet");
    laptop.send(&site, video("video.play", 32.0, None)).await;
    laptop
        .send(&site, video("video.progress", 37.0, Some(32.0)))
        .await;
    laptop
        .send(&site, video("video.pause", 42.0, Some(37.0)))
        .await;
    let p = laptop
        // Positions and progress are separate documents: wait for both.
        .wait_progress(&site, |p| {
            p["resume_position"] == 42.0 && p["coverage"].as_f64().is_some_and(|c| c > 0.0)
        })
        .await;
    assert_eq!(p["completed"], false);
    assert!(
        (p["coverage"].as_f64().unwrap() - 10.0 / 120.0).abs() < 1e-9,
        "{p}"
    );
    assert_eq!(p["visits"], 1);
    // Reload: offered 42 s.
    let page = laptop.get(site.url(PAGE)).await.text().await.unwrap();
    assert!(page.contains(r#"data-resume="42""#), "{page}");
    assert!(page.contains("Resume at <span id=\"resume-at\">0:42</span>"));

    // Phone: another browser, same user, continues from 42.
    let mut phone = Browser::new(&site);
    phone.login(&site, "alice").await;
    let page = phone.get(site.url(PAGE)).await.text().await.unwrap();
    assert!(page.contains(r#"data-resume="42""#), "any device resumes");
    phone.send(&site, video("video.play", 42.0, None)).await;
    phone
        .send(&site, video("video.pause", 50.0, Some(42.0)))
        .await;
    let p = phone
        .wait_progress(&site, |p| {
            p["resume_position"] == 50.0
                && p["visits"] == 2
                && p["coverage"].as_f64().is_some_and(|c| c > 0.1)
        })
        .await;
    assert!((p["coverage"].as_f64().unwrap() - 0.15).abs() < 1e-9, "{p}");
    // Rewatching from the start moves the resume position back.
    phone
        .send(
            &site,
            json!({"type": "video.seek", "foss": "Python", "tutorial": "Getting-started",
                   "language": "English", "video_id": "Python/Getting-started/English",
                   "from": 50.0, "to": 5.0, "duration": 120.0}),
        )
        .await;
    phone
        .wait_progress(&site, |p| p["resume_position"] == 5.0)
        .await;

    // Marked complete, then incomplete; the end watched after the mark does
    // not complete it again (only watching after the mark counts).
    phone.send(&site, mark("tutorial.complete")).await;
    let p = phone.wait_progress(&site, |p| p["completed"] == true).await;
    assert_eq!(p["completed_rule"], "manual");
    phone.send(&site, mark("tutorial.incomplete")).await;
    phone
        .wait_progress(&site, |p| p["completed"] == false)
        .await;
    phone.send(&site, video("video.play", 118.0, None)).await;
    phone
        .send(&site, video("video.ended", 120.0, Some(118.0)))
        .await;
    // The ended stretch is folded (coverage 20 of 120 s), not just positioned.
    let p = phone
        .wait_progress(&site, |p| {
            p["resume_position"] == 0.0 && p["coverage"].as_f64().is_some_and(|c| c > 0.16)
        })
        .await;
    assert_eq!(p["completed"], false, "2 s watched since the mark");
    assert_eq!(p["completed_rule"], Value::Null);
    let page = phone.get(site.url(PAGE)).await.text().await.unwrap();
    assert!(page.contains(r#"<b id="status">not completed</b>"#));

    // Anonymous: refused, and nothing about them reaches MongoDB.
    let mut anonymous = Browser::new(&site);
    anonymous.get(site.url(PAGE)).await;
    let (status, answer) = anonymous
        .post_events(&site, &video("video.play", 1.0, None))
        .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(anonymous.get(site.url(API)).await.status(), 401);

    // Every bad input, through the site.
    let too_big = Value::Array(vec![video("video.progress", 1.0, Some(0.0)); 99]);
    for (body, status, field) in [
        (json!({"type": "video.rewind"}), 400, "type"),
        (video("video.pause", -1.0, None), 400, "position"),
        (video("video.pause", 121.0, None), 400, "position"),
        (
            json!({"type": "video.play", "foss": "Python"}),
            400,
            "tutorial",
        ),
        (
            video("video.play", 1.0, None).tap_set("duration", json!("long")),
            400,
            "duration",
        ),
        (too_big, 413, ""),
    ] {
        let (got, answer) = phone.post_events(&site, &body).await;
        assert_eq!(got, status, "{answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{answer}");
        }
    }
    let response = phone
        .client
        .post(site.url("/visitlog/events"))
        .header("cookie", phone.cookies.join("; "))
        .header("origin", &phone.origin)
        .header("content-type", "text/plain")
        .body(video("video.play", 1.0, None).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = phone
        .client
        .post(site.url("/visitlog/events"))
        .header("cookie", phone.cookies.join("; "))
        .header("origin", "https://evil.example")
        .json(&video("video.play", 1.0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "another site cannot post for alice");

    site.shutdown(Duration::from_secs(5)).await;
    let snapshot = consumer.stop().await;
    assert!(snapshot.derived > 0);
    assert_eq!(snapshot.dead_lettered, 0);
}

trait TapSet {
    fn tap_set(self, key: &str, value: Value) -> Value;
}

impl TapSet for Value {
    fn tap_set(mut self, key: &str, value: Value) -> Value {
        self[key] = value;
        self
    }
}

/// The real page in headless Chromium: log in, play the video for a few
/// seconds, pause; the events reach MongoDB and the reloaded page resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_the_video_and_the_page_resumes_it() {
    let Some(mut browser) = visitlog_tests::browser::Browser::launch().await.unwrap() else {
        return;
    };
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(config(&ns, &uri, &db, "chromium"));
    let site = Site::start_with_progress(ns.config(), &uri, &db)
        .await
        .unwrap();

    log_in(&mut browser, &site, "carol").await;
    browser.goto(&site.url(PAGE)).await.unwrap();
    let played = browser
        .eval(
            "(async () => {
                const v = document.getElementById('player');
                v.muted = true;
                if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, { once: true }));
                await v.play();
                await new Promise(r => setTimeout(r, 3000));
                v.pause();
                return v.currentTime;
            })()",
        )
        .await
        .unwrap();
    let played = played.as_f64().unwrap();
    assert!(played > 1.5, "the video played: {played}");

    // The events reached MongoDB, and the site reads the position back.
    let events = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db)
        .collection::<bson::Document>("events");
    let resume = eventually(WAIT, Duration::from_millis(200), async || {
        let answer = browser
            .eval(&format!("fetch('{API}').then(r => r.json())"))
            .await
            .unwrap();
        // The pause, not the play just before it.
        answer["resume_position"]
            .as_f64()
            .filter(|p| (p - played).abs() < 0.5)
            .ok_or(format!("no progress: {answer}"))
    })
    .await
    .unwrap();
    let kinds: Vec<String> = events
        .distinct("type", doc! { "learner": "user:carol" })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| b.as_str().map(str::to_owned))
        .collect();
    for kind in ["page.view", "video.play", "video.pause"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }

    // Reload: the page offers the position and the player starts there.
    browser.goto(&site.url(PAGE)).await.unwrap();
    browser
        .wait_for(&format!(
            "(() => {{ const v = document.getElementById('player'); return v.readyState >= 1 && Math.abs(v.currentTime - {resume}) < 0.6; }})()"
        ))
        .await
        .unwrap();
    let shown = browser
        .eval("document.getElementById('resume').hidden ? '' : document.getElementById('resume').textContent")
        .await
        .unwrap();
    assert!(
        shown.as_str().unwrap().starts_with("Resume at 0:0"),
        "{shown}"
    );
    let path = visitlog_tests::browser::artifacts_dir().join("tutorial-page.png");
    browser.screenshot(&path).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    assert!(
        browser.console_errors.is_empty(),
        "console errors: {:?}",
        browser.console_errors
    );

    site.shutdown(Duration::from_secs(5)).await;
    consumer.stop().await;
}

/// The `data-page-view` a page embeds: its request record's id.
fn page_view_of(html: &str) -> String {
    let at = html.find("data-page-view=\"").unwrap() + "data-page-view=\"".len();
    html[at..at + 36].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learners_visit_becomes_the_sites_figures() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let consumer = InProcess::start(visitlog_consumer::config::Config {
        derive_interval: Duration::from_millis(200),
        ..config(&ns, &uri, &db, "analytics-1")
    });
    let site = Site::start_with_progress(ns.config(), &uri, &db)
        .await
        .unwrap();
    assert_eq!(
        site.publish_catalog().unwrap(),
        3,
        "one publication per FOSS"
    );

    // Ann logs in, reads a tutorial with its pings, watches 5 s, goes home.
    let mut laptop = Browser::new(&site);
    laptop.login(&site, "ann").await;
    let html = laptop.get(site.url(PAGE)).await.text().await.unwrap();
    let page = page_view_of(&html);
    let ping = |kind: &str, ms: u64| {
        json!({"type": kind, "page_view": page, "active_ms": ms,
               "foss": "Python", "tutorial": "Getting-started", "language": "English"})
    };
    laptop.send(&site, video("video.play", 0.0, None)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    laptop.send(&site, ping("page.ping", 1_000)).await;
    let mut pause = video("video.pause", 5.0, Some(0.0));
    pause["page_view"] = page.clone().into();
    laptop.send(&site, pause).await;
    laptop.send(&site, ping("page.hide", 200)).await;
    laptop.get(site.url("/")).await;

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let db = client.database(&db);
    let found = |name: &'static str, filter: bson::Document| {
        let coll = db.collection::<bson::Document>(name);
        async move {
            eventually(WAIT, Duration::from_millis(200), async || {
                match coll.find_one(filter.clone()).await.unwrap() {
                    Some(d) => Ok(d),
                    None => Err(format!("nothing in {name} matches {filter}")),
                }
            })
            .await
            .unwrap()
        }
    };
    let viewed = found("page_views", doc! { "_id": &page, "pings": 2 }).await;
    assert_eq!(viewed.get_str("learner"), Ok("user:ann"));
    assert_eq!(viewed.get_bool("estimated"), Ok(false), "{viewed}");
    assert!(viewed.get_f64("time_on_page_s").unwrap() >= 1.0, "{viewed}");
    assert!(
        (viewed.get_f64("engaged_s").unwrap() - 1.2).abs() < 1e-9,
        "{viewed}"
    );
    let session = found(
        "sessions",
        // Derivations settle in passes: wait for the one that has seen it all.
        doc! { "learner": "user:ann", "page_views": { "$gte": 2 }, "video_s": { "$gte": 5.0 - 1e-9 } },
    )
    .await;
    assert_eq!(session.get_bool("bounce"), Ok(false));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let daily = found(
        "tutorial_daily",
        doc! {
            "foss": "Python", "tutorial": "Getting-started", "language": "English", "day": &today,
            "page_views": 1, "time_on_page_n": 1,
        },
    )
    .await;
    let n = |d: &bson::Document, k: &str| {
        d.get(k)
            .and_then(bson::Bson::as_i64)
            .or_else(|| d.get(k).and_then(bson::Bson::as_i32).map(i64::from))
    };
    assert_eq!(n(&daily, "learners"), Some(1), "{daily}");
    found("site_daily", doc! { "_id": &today, "learners": 1 }).await;
    // The catalog makes every video show, watched or not.
    let watched = found(
        "video_stats",
        doc! { "_id": "Python/Getting-started/English", "viewers": 1 },
    )
    .await;
    assert_eq!(
        watched.get_f64("duration"),
        Ok(visitlog_example::SAMPLE_SECONDS)
    );
    found(
        "video_stats",
        doc! { "_id": "Scilab/Vectors/English", "viewers": 0 },
    )
    .await;
    consumer.stop().await;
}
