//! Learning progress end to end: the example site's events endpoint, Redis,
//! the consumer deriving state into MongoDB, and the site reading it back.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bson::doc;
use chrono::{SubsecRound, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use visitlog_progress::{Progress, Rules};
use visitlog_schema::{EventRecord, EventType, Kind, Learner, SCHEMA_VERSION, progress_id};
use visitlog_tests::{Namespace, Site, cookies, http, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const PAGE: &str = "/watch/Python/Getting-started/English/";
const API: &str = "/api/progress/Python/Getting-started/English";
const WAIT: Duration = Duration::from_secs(60);

/// One browser: its own visitor cookie and session.
struct Browser {
    client: reqwest::Client,
    cookies: Vec<String>,
    origin: String,
}

impl Browser {
    fn new(site: &Site) -> Self {
        Self {
            client: http(),
            cookies: Vec::new(),
            origin: site.base.clone(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for cookie in cookies(response) {
            let name = cookie.split('=').next().unwrap_or_default().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(cookie);
        }
    }

    async fn get(&mut self, url: String) -> reqwest::Response {
        let response = self
            .client
            .get(url)
            .header("cookie", self.cookies.join("; "))
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    async fn login(&mut self, site: &Site, user: &str) {
        let response = self
            .client
            .post(site.url("/login"))
            .header("cookie", self.cookies.join("; "))
            .form(&[("username", user)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        self.keep(&response);
    }

    async fn post_events(&mut self, site: &Site, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(site.url("/visitlog/events"))
            .header("cookie", self.cookies.join("; "))
            .header("origin", &self.origin)
            .json(body)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends one event and insists it was accepted.
    async fn send(&mut self, site: &Site, event: Value) {
        let (status, answer) = self.post_events(site, &event).await;
        assert_eq!(status, 202, "{event} -> {answer}");
    }

    /// Polls `/api/progress` until `check` holds.
    async fn wait_progress(&mut self, site: &Site, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let response = self.get(site.url(API)).await;
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if check(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "progress never matched: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    // Laptop: log in, open the tutorial, watch to 42 s and pause.
    let mut laptop = Browser::new(&site);
    laptop.get(site.url("/")).await;
    laptop.login(&site, "alice").await;
    let page = laptop.get(site.url(PAGE)).await.text().await.unwrap();
    assert!(page.contains(r#"data-resume="0""#), "nothing to resume yet");
    laptop.send(&site, video("video.play", 0.0, None)).await;
    laptop
        .send(&site, video("video.progress", 10.0, Some(0.0)))
        .await;
    laptop
        .send(&site, video("video.progress", 20.0, Some(10.0)))
        .await;
    laptop
        .send(&site, video("video.progress", 30.0, Some(20.0)))
        .await;
    laptop
        .send(&site, video("video.pause", 42.0, Some(30.0)))
        .await;
    let p = laptop
        // Positions and progress are separate documents: wait for both.
        .wait_progress(&site, |p| {
            p["resume_position"] == 42.0 && p["coverage"].as_f64().is_some_and(|c| c > 0.0)
        })
        .await;
    assert_eq!(p["completed"], false);
    assert!(
        (p["coverage"].as_f64().unwrap() - 42.0 / 120.0).abs() < 1e-9,
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
        .send(&site, video("video.pause", 60.0, Some(42.0)))
        .await;
    let p = phone
        .wait_progress(&site, |p| {
            p["resume_position"] == 60.0
                && p["visits"] == 2
                && p["coverage"].as_f64().is_some_and(|c| c > 0.4)
        })
        .await;
    assert!((p["coverage"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{p}");
    // Rewatching from the start moves the resume position back.
    phone
        .send(
            &site,
            json!({"type": "video.seek", "foss": "Python", "tutorial": "Getting-started",
                   "language": "English", "video_id": "Python/Getting-started/English",
                   "from": 60.0, "to": 5.0, "duration": 120.0}),
        )
        .await;
    phone
        .wait_progress(&site, |p| p["resume_position"] == 5.0)
        .await;

    // Marked complete, then incomplete; watching to the end in the same
    // visit does not complete it again.
    phone.send(&site, mark("tutorial.complete")).await;
    phone.wait_progress(&site, |p| p["completed"] == true).await;
    phone.send(&site, mark("tutorial.incomplete")).await;
    phone
        .wait_progress(&site, |p| p["completed"] == false)
        .await;
    phone.send(&site, video("video.play", 100.0, None)).await;
    phone
        .send(&site, video("video.ended", 120.0, Some(100.0)))
        .await;
    // The ended stretch is folded (coverage 80 of 120 s), not just positioned.
    let p = phone
        .wait_progress(&site, |p| {
            p["resume_position"] == 0.0 && p["coverage"].as_f64().is_some_and(|c| c > 0.6)
        })
        .await;
    assert_eq!(p["completed"], false, "blocked for the rest of this visit");
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

fn event(i: usize, t0: chrono::DateTime<Utc>, kind: EventType, visit: u32) -> EventRecord {
    let ts = t0 + chrono::Duration::milliseconds(i as i64 * 1000);
    let (position, played_from) = match kind {
        EventType::VideoProgress => (Some((i % 600) as f64), Some((i % 600) as f64 - 1.0)),
        _ => (None, None),
    };
    EventRecord {
        id: Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        )),
        schema_version: SCHEMA_VERSION,
        kind: Kind::Event,
        ts,
        event_type: kind,
        learner: Learner::User("racer".into()).key(),
        user: Some("racer".into()),
        visitor_id: Some(Uuid::from_u128(7)),
        visit_number: Some(visit),
        session_id: None,
        foss: "Python".into(),
        tutorial: "Functions".into(),
        language: "Marathi".into(),
        video_id: kind
            .is_video()
            .then(|| "Python/Functions/Marathi".to_owned()),
        position: position.map(|p: f64| p.max(1.0)),
        duration: kind.is_video().then_some(600.0),
        from: None,
        to: None,
        played_from: played_from.map(|p: f64| p.max(0.0)),
    }
}

/// Two consumers with small batches race on one learner; the events arrive
/// in shuffled order and are delivered twice. The document is exactly the
/// fold of the events in server order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_consumers_shuffled_and_replayed_events_give_the_exact_fold() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // Records carry millisecond times.
    let t0 = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
    let mut events: Vec<EventRecord> = (1..400)
        .map(|i| event(i, t0, EventType::VideoProgress, 1))
        .collect();
    events.push(event(400, t0, EventType::TutorialIncomplete, 1));
    events.extend((401..500).map(|i| event(i, t0, EventType::VideoProgress, 1)));
    events.push(event(500, t0, EventType::TutorialComplete, 2));
    let mut expected_events: Vec<EventRecord> = events.to_vec();
    expected_events.sort_by_key(|e| e.id);
    let expected = Progress::fold(None, &expected_events, &Rules::default()).unwrap();

    let mut payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    use rand::seq::SliceRandom;
    payloads.shuffle(&mut rand::rng());
    let small = |id: &str| visitlog_consumer::config::Config {
        batch_size: 7,
        ..config(&ns, &uri, &db, id)
    };
    let a = InProcess::start(small("race-a"));
    let b = InProcess::start(small("race-b"));
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    payloads.reverse();
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap(); // every event twice

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let progress = client
        .database(&db)
        .collection::<bson::Document>("tutorial_progress");
    let id = progress_id("user:racer", "Python", "Functions", "Marathi");
    let deadline = tokio::time::Instant::now() + WAIT;
    let stored = loop {
        let queue = visitlog_tests::queue_lengths(ns.redis_url(), ns.queue())
            .await
            .unwrap();
        let doc = progress.find_one(doc! { "_id": &id }).await.unwrap();
        if queue == (0, 0)
            && let Some(doc) = doc
            && doc
                .get_i64("folded")
                .ok()
                .or(doc.get_i32("folded").ok().map(i64::from))
                == Some(expected.folded as i64)
        {
            break Progress::from_document(&doc).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "never converged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!(stored, expected);
    assert!(
        stored.completed,
        "the manual complete, in a later visit, is last"
    );
    assert!(a.batches > 0 && b.batches > 0, "both consumers worked");
    assert_eq!(a.duplicates + b.duplicates, 500, "each replayed event once");
    let positions = client
        .database(&db)
        .collection::<bson::Document>("video_positions");
    let learner = Learner::User("racer".into()).key();
    let position = positions
        .find_one(doc! { "learner": learner })
        .await
        .unwrap()
        .unwrap();
    // The newest video event (499) wins, though it was not the last to arrive.
    assert_eq!(position.get_f64("position").unwrap(), 499.0);
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

    browser.goto(&site.url("/")).await.unwrap();
    browser
        .eval("document.querySelector('input[name=username]').value = 'carol'; document.querySelector('form').submit(); true")
        .await
        .unwrap();
    browser
        .wait_for("document.getElementById('user') !== null")
        .await
        .unwrap();
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
    let deadline = tokio::time::Instant::now() + WAIT;
    let resume = loop {
        let answer = browser
            .eval(&format!("fetch('{API}').then(r => r.json())"))
            .await
            .unwrap();
        // The pause, not the play just before it.
        if let Some(at) = answer["resume_position"]
            .as_f64()
            .filter(|p| (p - played).abs() < 0.5)
        {
            break at;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
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
