//! The tutorial page and its script against issue 11's rules, end to end
//! (the example site, Redis, the consumer in process, MongoDB, and headless
//! Chromium where the page is involved): playback before the metadata is
//! tracked (10), the page's own resume seek is never reported (11), events
//! that could not be sent survive a blocked endpoint and a reload, once each
//! (12), and one tutorial across languages (9), through the site and
//! through `ProgressReader`.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

// The consumer in process, as its own tests run it.
#[path = "../../consumer/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use bson::doc;
use chrono::Utc;
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use visitlog_progress::{Progress, ProgressReader, VideoPosition, event_from_document};
use visitlog_schema::{EventRecord, EventType, Learner};
use visitlog_tests::browser::{Browser, artifacts_dir};
use visitlog_tests::{Namespace, cookies, eventually, http, shared_mongodb_uri, test_database};

use common::{InProcess, config};
use support::{CaptureConfig, Site, log_in};

const PAGE: &str = "/watch/Python/Getting-started/English/";
const HINDI: &str = "/watch/Python/Getting-started/Hindi/";
const API: &str = "/api/progress/Python/Getting-started/English";
const WAIT: Duration = Duration::from_secs(60);

/// Everything one test needs: a namespace, a database, the consumer and the site.
struct World {
    uri: String,
    db: String,
    consumer: InProcess,
    site: Site,
    _ns: Namespace,
}

impl World {
    async fn start(id: &str) -> Self {
        let ns = Namespace::new();
        let (uri, db) = (shared_mongodb_uri(), test_database());
        let consumer = InProcess::start(config(&ns, &uri, &db, id));
        let site = Site::start_with_progress(ns.config(), &uri, &db)
            .await
            .unwrap();
        Self {
            uri,
            db,
            consumer,
            site,
            _ns: ns,
        }
    }

    /// `learner`'s stored learning events, in server order. Page activity
    /// (`page.ping`, `page.hide`: issue 12, tested in page_activity.rs) is
    /// left out: it comes and goes with timers and page changes.
    async fn events(&self, learner: &str) -> Vec<EventRecord> {
        let docs: Vec<bson::Document> = mongodb::Client::with_uri_str(&self.uri)
            .await
            .unwrap()
            .database(&self.db)
            .collection("events")
            .find(doc! { "learner": learner })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut events: Vec<EventRecord> = docs
            .into_iter()
            .map(|d| event_from_document(d).unwrap())
            .filter(|e| !e.event_type.is_page_activity())
            .collect();
        events.sort_by_key(|e| e.id);
        events
    }

    /// Waits until `learner`'s stored events satisfy `check`.
    async fn wait_events(
        &self,
        learner: &str,
        check: impl Fn(&[EventRecord]) -> bool,
    ) -> Vec<EventRecord> {
        eventually(WAIT, Duration::from_millis(200), async || {
            let events = self.events(learner).await;
            if check(&events) {
                Ok(events)
            } else {
                Err(format!("events never matched: {:?}", kinds(&events)))
            }
        })
        .await
        .unwrap()
    }

    /// Waits for `learner`'s play and pause: one stretch, up to `watched`.
    async fn wait_play_and_pause(&self, learner: &str, watched: f64) {
        let events = self
            .wait_events(learner, |e| {
                e.iter().any(|e| e.event_type == EventType::VideoPause)
            })
            .await;
        let video = video_events(&events);
        assert_eq!(
            kinds(&video.iter().map(|e| (*e).clone()).collect::<Vec<_>>()),
            ["video.play", "video.pause"]
        );
        assert!(
            (video[1].position.unwrap() - watched).abs() < 0.3,
            "{video:?}"
        );
    }

    async fn stop(self) {
        self.site.shutdown(Duration::from_secs(5)).await;
        let snapshot = self.consumer.stop().await;
        assert_eq!(snapshot.dead_lettered, 0);
    }
}

fn kinds(events: &[EventRecord]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn video_events(events: &[EventRecord]) -> Vec<&EventRecord> {
    events.iter().filter(|e| e.event_type.is_video()).collect()
}

/// The page's `data-page-view`, the id of the request record that served it.
async fn page_view_of(browser: &mut Browser) -> Uuid {
    let id = browser
        .eval("document.getElementById('player').dataset.pageView")
        .await
        .unwrap();
    id.as_str().unwrap().parse().unwrap()
}

const WAIT_METADATA: &str = "if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, { once: true }));";

/// A browser logged in as `user` on the English tutorial page, in a world
/// of its own; `None` when there is no Chromium (and the harness allows it).
async fn learner_on_page(id: &str, user: &str) -> Option<(Browser, World)> {
    let mut browser = Browser::launch().await.unwrap()?;
    let world = World::start(id).await;
    log_in(&mut browser, &world.site, user).await;
    open(&mut browser, &world.site, PAGE).await;
    Some((browser, world))
}

/// Opens a tutorial page and waits until its video's metadata is known.
async fn open(browser: &mut Browser, site: &Site, path: &str) {
    browser.goto(&site.url(path)).await.unwrap();
    browser
        .eval(&format!(
            "(async () => {{ const v = document.getElementById('player'); {WAIT_METADATA} return true; }})()"
        ))
        .await
        .unwrap();
}

fn assert_no_console_errors(browser: &Browser) {
    assert!(
        browser.console_errors.is_empty(),
        "{:?}",
        browser.console_errors
    );
}

/// Plays for `ms`, pauses, and returns where it paused.
async fn play_for(browser: &mut Browser, ms: u64) -> f64 {
    browser
        .eval(&format!(
            "(async () => {{
                const v = document.getElementById('player');
                v.muted = true;
                await v.play();
                await new Promise(r => setTimeout(r, {ms}));
                v.pause();
                return v.currentTime;
            }})()"
        ))
        .await
        .unwrap()
        .as_f64()
        .unwrap()
}

/// Rule 10: with `preload="none"` the browser knows nothing of the video
/// until the learner presses play; the stretch watched from then on is
/// reported whole (the old script sent one pause without a stretch), with
/// the page view, the speed and a client event id on every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_that_starts_before_the_metadata_is_tracked() {
    let Some(mut browser) = Browser::launch().await.unwrap() else {
        return;
    };
    let world = World::start("preload-none").await;
    log_in(&mut browser, &world.site, "erin").await;
    browser
        .goto(&world.site.url(&format!("{PAGE}?preload=none")))
        .await
        .unwrap();
    let state = browser
        .eval("(() => { const v = document.getElementById('player'); return [v.preload, v.readyState]; })()")
        .await
        .unwrap();
    assert_eq!(state, json!(["none", 0]), "no metadata before play");
    let page_view = page_view_of(&mut browser).await;
    let paused = play_for(&mut browser, 3000).await;
    assert!(paused > 1.5, "the video played: {paused}");

    let events = world
        .wait_events("user:erin", |e| {
            e.iter().any(|e| e.event_type == EventType::VideoPause)
        })
        .await;
    let video = video_events(&events);
    assert_eq!(
        kinds(&events),
        ["page.view", "video.play", "video.pause"],
        "{events:?}"
    );
    let pause = video[1];
    assert_eq!(pause.played_from, Some(0.0), "the stretch starts at 0");
    assert!((pause.position.unwrap() - paused).abs() < 0.3, "{pause:?}");
    assert!(
        (pause.duration.unwrap() - 30.0).abs() < 0.5,
        "duration known by then"
    );
    for e in &video {
        assert_eq!(e.page_view, Some(page_view), "{e:?}");
        assert_eq!(e.rate, Some(1.0), "{e:?}");
        assert!(e.client_event_id.is_some(), "{e:?}");
    }
    assert_eq!(events[0].id, page_view, "page_view names the page's record");
    assert_no_console_errors(&browser);
    world.stop().await;
}

/// Rule 11: reloading a page with a resume position starts the video there
/// without reporting a seek (the old script sent `video.seek {from: P, to:
/// P}`, newer than the last heartbeat), so the resume position does not
/// move. Then rule 9 in the page: the Hindi page continues from the English
/// position, "Continue from 0:03 (English)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_own_resume_seek_is_not_reported() {
    let Some((mut browser, world)) = learner_on_page("resume", "frank").await else {
        return;
    };
    let paused = play_for(&mut browser, 3000).await;
    let api = format!("fetch('{API}').then(r => r.json())");
    eventually(WAIT, Duration::from_millis(200), async || {
        let answer = browser.eval(&api).await.unwrap();
        answer["resume_position"]
            .as_f64()
            .filter(|p| (p - paused).abs() < 0.3)
            .ok_or(format!("no resume position yet: {answer}"))
    })
    .await
    .unwrap();

    // Reload: the player starts at the position, and nothing says "seek".
    browser.goto(&world.site.url(PAGE)).await.unwrap();
    browser
        .wait_for(&format!(
            "(() => {{ const v = document.getElementById('player'); return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - {paused}) < 0.3; }})()"
        ))
        .await
        .unwrap();
    // A mark sent after the page settled: once it is stored, anything the
    // page reported before it is stored too.
    browser
        .eval("document.getElementById('mark-complete').click(); true")
        .await
        .unwrap();
    let events = world
        .wait_events("user:frank", |e| {
            e.iter()
                .any(|e| e.event_type == EventType::TutorialComplete)
        })
        .await;
    assert!(
        !events.iter().any(|e| e.event_type == EventType::VideoSeek),
        "no seek reported: {:?}",
        kinds(&events)
    );
    let answer = browser.eval(&api).await.unwrap();
    assert!(
        (answer["resume_position"].as_f64().unwrap() - paused).abs() < 0.3,
        "the resume position stays: {answer}"
    );

    // The same tutorial in Hindi continues from the English position
    // (mapped by fraction: both videos are the 30 s sample), and says it is
    // completed in English.
    browser.goto(&world.site.url(HINDI)).await.unwrap();
    browser
        .wait_for(&format!(
            "(() => {{ const v = document.getElementById('player'); return v.readyState >= 1 && Math.abs(v.currentTime - {paused}) < 0.3; }})()"
        ))
        .await
        .unwrap();
    let shown = browser
        .eval("[document.getElementById('resume').textContent, document.getElementById('completed-in').textContent, document.getElementById('status').textContent]")
        .await
        .unwrap();
    assert_eq!(
        shown,
        json!([
            format!("Continue from 0:0{} (English)", paused.floor()),
            "Completed in English",
            "not completed"
        ])
    );
    let path = artifacts_dir().join("tutorial-page-other-language.png");
    browser.screenshot(&path).await.unwrap();
    assert_no_console_errors(&browser);
    world.stop().await;
}

/// Rule 12: the events endpoint is unreachable while the learner watches,
/// seeks and watches again, then reloads the page, still offline; when the
/// endpoint comes back, every event of the first page arrives exactly once
/// (counted by `client_event_id`), in the order it happened, with that
/// page's `page_view`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_events_survive_a_blocked_endpoint_and_a_reload_once_each() {
    let Some((mut browser, world)) = learner_on_page("outbox", "grace").await else {
        return;
    };
    let first_page = page_view_of(&mut browser).await;
    browser.call("Network.enable", json!({})).await.unwrap();
    let block = |urls: Value| json!({ "urls": urls });
    browser
        .call(
            "Network.setBlockedURLs",
            block(json!(["*/visitlog/events*"])),
        )
        .await
        .unwrap();

    let first = play_for(&mut browser, 1500).await;
    browser
        .eval("(async () => { const v = document.getElementById('player'); const s = new Promise(r => v.addEventListener('seeked', r, { once: true })); v.currentTime = 12; await s; return true; })()")
        .await
        .unwrap();
    let second = play_for(&mut browser, 1500).await;
    assert!(first > 0.7 && second > 12.7, "{first} {second}");
    // Nothing got through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(video_events(&world.events("user:grace").await).is_empty());

    // Reload while still offline: the first page saves its outbox; the
    // second takes it (and removes the saved copy) and keeps retrying.
    browser.goto(&world.site.url(PAGE)).await.unwrap();
    let saved = saved_outboxes(&mut browser).await;
    assert_eq!(saved, json!([]), "taken by the new page: {saved}");
    browser
        .call("Network.setBlockedURLs", block(json!([])))
        .await
        .unwrap();

    world
        .wait_events("user:grace", |e| {
            e.iter()
                .filter(|e| e.event_type == EventType::VideoPause)
                .count()
                >= 2
        })
        .await;
    // Give a duplicate the time to arrive, if the page were to send one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = world.events("user:grace").await;
    let video = video_events(&events);
    assert_eq!(
        video
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "video.play",
            "video.pause",
            "video.seek",
            "video.play",
            "video.pause"
        ],
        "in the order they happened"
    );
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for e in &video {
        *seen.entry(e.client_event_id.unwrap()).or_default() += 1;
        assert_eq!(e.page_view, Some(first_page), "{e:?}");
    }
    assert!(seen.values().all(|&n| n == 1), "each once: {seen:?}");
    assert!(video[1].played_from.unwrap() < 0.1, "{:?}", video[1]);
    assert!((video[1].position.unwrap() - first).abs() < 0.3);
    assert_eq!(
        (video[2].from, video[2].to),
        (video[1].position, Some(12.0))
    );
    assert!(
        (video[4].played_from.unwrap() - 12.0).abs() < 0.1,
        "{:?}",
        video[4]
    );
    assert!((video[4].position.unwrap() - second).abs() < 0.3);
    world.stop().await;
}

/// The page script's outboxes saved in this browser, by key.
async fn saved_outboxes(browser: &mut Browser) -> Value {
    browser
        .eval("Object.keys(localStorage).filter(k => k.startsWith('visitlog.outbox')).sort()")
        .await
        .unwrap()
}

/// Logs the browser's user out (from the home page's form).
async fn log_out(browser: &mut Browser, site: &Site) {
    browser.goto(&site.url("/")).await.unwrap();
    browser
        .eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await
        .unwrap();
    browser
        .wait_for("document.querySelector('input[name=username]') !== null")
        .await
        .unwrap();
}

/// A shared browser: what one learner left unsent is saved under that
/// learner and sent only by a page of the same learner, never under the
/// next user's login (the events would count as theirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learners_unsent_events_never_go_out_under_another_login() {
    let Some((mut browser, world)) = learner_on_page("outbox-owner", "heidi").await else {
        return;
    };
    browser.call("Network.enable", json!({})).await.unwrap();
    browser
        .call(
            "Network.setBlockedURLs",
            json!({ "urls": ["*/visitlog/events*"] }),
        )
        .await
        .unwrap();
    let watched = play_for(&mut browser, 1500).await;
    // Heidi leaves (her outbox is saved), logs out; Ivan logs in on the
    // same browser, the endpoint is back, and he opens the same tutorial.
    log_out(&mut browser, &world.site).await;
    let saved = saved_outboxes(&mut browser).await;
    assert_eq!(saved.as_array().map(Vec::len), Some(1), "{saved}");
    log_in(&mut browser, &world.site, "ivan").await;
    browser
        .call("Network.setBlockedURLs", json!({ "urls": [] }))
        .await
        .unwrap();
    open(&mut browser, &world.site, PAGE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(video_events(&world.events("user:ivan").await).is_empty());
    assert!(video_events(&world.events("user:heidi").await).is_empty());
    assert_eq!(saved_outboxes(&mut browser).await, saved, "still Heidi's");

    // Heidi back: her own page sends what she watched, once.
    log_out(&mut browser, &world.site).await;
    log_in(&mut browser, &world.site, "heidi").await;
    browser.goto(&world.site.url(PAGE)).await.unwrap();
    world.wait_play_and_pause("user:heidi", watched).await;
    // Heidi's saved outbox is taken. (Ivan's logout page may have saved his
    // `page.hide` for his next page: page activity goes with every page.)
    let left = saved_outboxes(&mut browser).await;
    let heidis = &saved[0];
    assert!(
        !left.as_array().unwrap().contains(heidis),
        "{heidis} still saved: {left}"
    );
    world.stop().await;
}

/// Rule 12, a `401`: the session ends while the learner watches (here: a
/// logout from another tab). The events are refused with 401, kept for the
/// learner's next page, and sent once they are logged in again; a page of
/// nobody (logged out) never sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_refused_for_an_ended_session_wait_for_the_next_login() {
    let Some((mut browser, world)) = learner_on_page("outbox-401", "judy").await else {
        return;
    };
    // The session ends behind the page's back.
    browser
        .eval("fetch('/logout', { method: 'POST', credentials: 'same-origin' }).then(() => true)")
        .await
        .unwrap();
    let watched = play_for(&mut browser, 1500).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let saved = saved_outboxes(&mut browser).await;
    assert_eq!(saved.as_array().map(Vec::len), Some(1), "kept: {saved}");
    // A logged-out page does not send them; the learner's next page does.
    browser.goto(&world.site.url(PAGE)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(video_events(&world.events("user:judy").await).is_empty());
    log_in(&mut browser, &world.site, "judy").await;
    browser.goto(&world.site.url(PAGE)).await.unwrap();
    world.wait_play_and_pause("user:judy", watched).await;
    world.stop().await;
}

/// Rule 9 through the site: English watched to half and marked complete;
/// the Hindi page and API continue from the English point mapped by
/// fraction (60 of 120 s → 15 of the 30 s sample) and say where it is
/// completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_language_continues_from_the_english_position() {
    let world = World::start("languages").await;
    let client = http();
    let login = client
        .post(world.site.url("/login"))
        .form(&[("username", "heidi")])
        .send()
        .await
        .unwrap();
    let cookie = cookies(&login).join("; ");
    let post = async |event: Value| {
        let response = client
            .post(world.site.url("/visitlog/events"))
            .header("cookie", &cookie)
            .header("origin", &world.site.base)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{event}");
    };
    let english = json!({"foss": "Python", "tutorial": "Getting-started", "language": "English",
        "video_id": "Python/Getting-started/English", "duration": 120.0});
    let with = |extra: Value| {
        let mut e = english.clone();
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    post(with(json!({"type": "video.play", "position": 0.0}))).await;
    post(with(
        json!({"type": "video.pause", "position": 60.0, "played_from": 0.0}),
    ))
    .await;
    post(json!({"type": "tutorial.complete", "foss": "Python", "tutorial": "Getting-started", "language": "English"})).await;

    let hindi_api = world.site.url("/api/progress/Python/Getting-started/Hindi");
    let answer = eventually(WAIT, Duration::from_millis(200), async || {
        let answer: Value = client
            .get(&hindi_api)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["completed_any_language"] == true && answer["resume_from_language"] == "English" {
            Ok(answer)
        } else {
            Err(format!("not yet: {answer}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(answer["completed"], false);
    assert_eq!(answer["completed_languages"], json!(["English"]));
    assert_eq!(answer["resume_position"], 15.0);
    assert_eq!(answer["resume_fraction"], 0.5);
    assert_eq!(answer["visits"], 0);

    let page = client
        .get(world.site.url(HINDI))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-resume="15""#), "{page}");
    assert!(page.contains(r#"Continue from <span id="resume-at">0:15</span> (English)"#));
    assert!(page.contains(r#"<p id="completed-in">Completed in English</p>"#));
    // English itself: its own position, and completed here.
    let english: Value = client
        .get(world.site.url(API))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(english["resume_position"], 60.0);
    assert_eq!(english["resume_from_language"], Value::Null);
    assert_eq!(english["completed"], true);
    world.stop().await;
}

/// `ProgressReader` against MongoDB: the cross-language read and one entry
/// per tutorial for a foss, from documents written as the consumer writes them.
#[tokio::test]
async fn the_reader_sees_a_tutorial_across_languages() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let database = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db);
    let learner = Learner::User("ivan".into());
    let key = learner.key();
    let now = Utc::now();
    let mut docs = Vec::new();
    for (tutorial, language, completed) in [
        ("Getting-started", "English", true),
        ("Getting-started", "Hindi", false),
        ("Functions", "Marathi", false),
    ] {
        let mut p = Progress::new(&key, "Python", tutorial, language, now);
        p.completed = completed;
        p.duration = Some(600.0);
        docs.push(p.to_document().unwrap());
    }
    // Another learner's completion does not count.
    let mut other = Progress::new("user:judy", "Python", "Functions", "English", now);
    other.completed = true;
    docs.push(other.to_document().unwrap());
    database
        .collection::<bson::Document>("tutorial_progress")
        .insert_many(docs)
        .await
        .unwrap();
    let video_id = "Python/Getting-started/English";
    let position = VideoPosition {
        id: visitlog_schema::video_position_id(&key, video_id),
        learner: key.clone(),
        video_id: video_id.into(),
        foss: "Python".into(),
        tutorial: "Getting-started".into(),
        language: "English".into(),
        position: 220.0,
        duration: 600.0,
        updated_at: now,
        last_event: Uuid::now_v7(),
    };
    database
        .collection::<bson::Document>("video_positions")
        .insert_one(position.to_document().unwrap())
        .await
        .unwrap();

    let reader = ProgressReader::new(&database);
    let tamil = reader
        .language_status(&learner, "Python", "Getting-started", "Tamil", Some(300.0))
        .await
        .unwrap();
    assert!(tamil.completed_any_language);
    assert_eq!(tamil.completed_languages, ["English"]);
    assert_eq!(tamil.resume_from_language.as_deref(), Some("English"));
    assert!((tamil.resume_position.unwrap() - 110.0).abs() < 1e-9);
    assert!(tamil.progress.is_none());
    let english = reader
        .language_status(&learner, "Python", "Getting-started", "English", None)
        .await
        .unwrap();
    assert_eq!(english.resume_position, Some(220.0));
    assert_eq!(english.resume_from_language, None);
    assert_eq!(english.progress.map(|p| p.completed), Some(true));

    let foss = reader.progress_for_foss(&learner, "Python").await.unwrap();
    let tutorials: Vec<_> = foss
        .iter()
        .map(|t| {
            (
                t.tutorial.as_str(),
                t.languages.len(),
                t.completed_any_language,
            )
        })
        .collect();
    assert_eq!(
        tutorials,
        [("Functions", 1, false), ("Getting-started", 2, true)],
        "one entry per tutorial; judy's completion is not ivan's"
    );
    database.drop().await.unwrap();
}
