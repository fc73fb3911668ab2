//! `visitlog-consumer import` against the real services, with generated
//! Open edX tracking logs: plain and gzip files read from a directory, bad
//! lines counted by reason and nothing else lost, the pipeline's viewing
//! rules, a re-import that adds nothing, a video imported before its
//! catalog entry and moved after it, and an imported history whose derived
//! documents equal those of the same records consumed live off the queue.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use visitlog_consumer::analytics::store::request_from_document;
use visitlog_progress::{Progress, event_from_document};
use visitlog_schema::{CatalogItem, EventType, progress_id};
use visitlog_tests::{Namespace, eventually, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");
const COURSE: &str = "course-v1:Org+CS101+2014";
const V1: &str = "block-v1:Org+CS101+2014+type@video+block@v1";
const V2: &str = "block-v1:Org+CS101+2014+type@video+block@v2";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2014, 10, 25, 10, 0, 0).unwrap()
}

/// An edX time `secs` after [`t0`], with microseconds as edX writes them.
fn at(secs: f64) -> String {
    let t = t0() + chrono::Duration::microseconds((secs * 1e6) as i64);
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn server(user: &str, secs: f64, path: &str) -> Value {
    json!({
        "username": user, "event_source": "server", "name": path, "event_type": path,
        "time": at(secs), "event": "{\"POST\": {}, \"GET\": {}}",
        "agent": "Mozilla/5.0 (X11; Linux x86_64; rv:33.0) Gecko/20100101 Firefox/33.0",
        "ip": "81.2.69.142", "host": "lms.example.org",
        "session": format!("session-of-{user}"), "referer": "https://lms.example.org/dashboard",
        "page": null,
        "context": { "user_id": 7, "course_id": COURSE, "path": path, "org_id": "Org" },
    })
}

/// A browser video event; `data` is the event's fields besides `id` and `code`.
fn video(user: &str, secs: f64, event_type: &str, id: &str, data: Value) -> Value {
    let mut event = json!({ "id": id, "code": "html5" });
    for (k, v) in data.as_object().unwrap() {
        event[k] = v.clone();
    }
    json!({
        "username": user, "event_source": "browser", "name": event_type,
        "event_type": event_type, "time": at(secs),
        "event": event.to_string(),
        "agent": "Mozilla/5.0 (X11; Linux x86_64; rv:33.0) Gecko/20100101 Firefox/33.0",
        "ip": "81.2.69.142", "host": "lms.example.org", "session": format!("session-of-{user}"),
        "referer": "https://lms.example.org/courses/x/courseware/",
        "page": "https://lms.example.org/courses/x/courseware/",
        "context": { "user_id": 7, "course_id": COURSE, "path": "/event" },
    })
}

/// Day one: alice watches V1 with a seek (play → seek → play whose
/// reported position is stale → pause), and V2 (not in the catalog yet);
/// bob watches V1 to its end at 1.5×; a page view of a visitlog-style
/// tutorial route; a malformed line, a line without a time, an event of
/// another type, an anonymous video event and a position over 10 hours.
fn day_one() -> Vec<String> {
    let lines = [
        server(
            "alice",
            0.0,
            &format!("/courses/{COURSE}/courseware/week1/intro/"),
        ),
        server("alice", 1.0, "/watch/Python/Intro/English/"),
        video("alice", 5.0, "load_video", V1, json!({})),
        video("alice", 6.0, "play_video", V1, json!({ "currentTime": 0 })),
        video(
            "alice",
            36.0,
            "seek_video",
            V1,
            json!({ "old_time": 30, "new_time": 60, "type": "onSlideSeek" }),
        ),
        video(
            "alice",
            36.1,
            "play_video",
            V1,
            json!({ "currentTime": 30 }),
        ),
        video(
            "alice",
            76.0,
            "pause_video",
            V1,
            json!({ "currentTime": "100.0" }),
        ),
        video(
            "alice",
            200.0,
            "play_video",
            V2,
            json!({ "currentTime": 0 }),
        ),
        video(
            "alice",
            250.0,
            "pause_video",
            V2,
            json!({ "currentTime": 50 }),
        ),
        video("bob", 10.0, "play_video", V1, json!({ "currentTime": 0 })),
        video(
            "bob",
            11.0,
            "speed_change_video",
            V1,
            json!({ "current_time": 1, "old_speed": "1.0", "new_speed": "1.50" }),
        ),
        video(
            "bob",
            90.0,
            "stop_video",
            V1,
            json!({ "currentTime": 119.5 }),
        ),
        video("", 95.0, "play_video", V1, json!({ "currentTime": 3 })),
        video(
            "bob",
            96.0,
            "play_video",
            V1,
            json!({ "currentTime": 40_000 }),
        ),
        json!({ "username": "bob", "event_source": "server", "event_type": "problem_check", "time": at(97.0), "event": {} }),
        json!({ "username": "bob", "event_source": "server", "event_type": "/dashboard" }),
    ];
    let mut out: Vec<String> = lines.iter().map(Value::to_string).collect();
    out.insert(4, "{\"username\": \"alice\", \"time\": ".to_owned());
    out
}

/// Day two (gzip): alice's page close, and V1 again from where she was.
fn day_two() -> Vec<String> {
    let day = 86_400.0;
    [
        video("alice", day, "play_video", V1, json!({ "currentTime": 100 })),
        video("alice", day + 20.0, "pause_video", V1, json!({ "currentTime": 120 })),
        json!({
            "username": "alice", "event_source": "browser", "event_type": "page_close",
            "time": at(day + 30.0), "event": "", "page": format!("https://lms.example.org/courses/{COURSE}/courseware/week1/intro/?x=1#t"),
            "agent": "Mozilla/5.0 (X11; Linux x86_64; rv:33.0) Gecko/20100101 Firefox/33.0", "session": "session-of-alice",
            "context": { "course_id": COURSE },
        }),
        // A page served, a handler the video posted to while it was open
        // (no page view), and its page_close (the same view, not another).
        server("alice", day + 40.0, &format!("/courses/{COURSE}/courseware/week2/")),
        {
            let path = format!("/courses/{COURSE}/xblock/{V1}/handler/xmodule_handler/save_user_state");
            let mut post = server("alice", day + 41.0, &path);
            post["event"] = json!({ "GET": {}, "POST": { "saved_video_position": ["00:02:00"] } });
            post
        },
        json!({
            "username": "alice", "event_source": "browser", "event_type": "page_close",
            "time": at(day + 50.0), "event": "", "session": "session-of-alice",
            "page": format!("https://lms.example.org/courses/{COURSE}/courseware/week2/"),
        }),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

fn write_logs(dir: &Path) {
    std::fs::write(dir.join("edx-events-2014-10-25.log"), day_one().join("\n")).unwrap();
    let file = std::fs::File::create(dir.join("edx-events-2014-10-26.log.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all((day_two().join("\n") + "\n").as_bytes())
        .unwrap();
    gz.finish().unwrap();
}

fn consumer(uri: &str, db: &str, args: &[&str]) -> Output {
    let ns = Namespace::new();
    visitlog_tests::consumer::command(BIN.as_ref(), &ns, uri, db)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn import(uri: &str, db: &str, args: &[&str]) -> String {
    let out = consumer(uri, db, &[&["import"], args].concat());
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn load_catalog(uri: &str, db: &str, items: &[CatalogItem]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.json");
    std::fs::write(&path, serde_json::to_vec(items).unwrap()).unwrap();
    let out = consumer(uri, db, &["catalog", "import", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn item(tutorial: &str, video: &str, duration: f64) -> CatalogItem {
    CatalogItem {
        foss: "Python".into(),
        tutorial: tutorial.into(),
        language: "English".into(),
        video_id: video.into(),
        title: tutorial.into(),
        duration: Some(duration),
        order: 1,
        main: true,
        level: None,
    }
}

async fn collection(uri: &str, db: &str, name: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
        .collection(name)
}

async fn all(uri: &str, db: &str, name: &str) -> Vec<Document> {
    common::documents(uri, db, name).await
}

async fn progress(
    uri: &str,
    db: &str,
    learner: &str,
    tutorial: (&str, &str, &str),
) -> Option<Progress> {
    let id = progress_id(learner, tutorial.0, tutorial.1, tutorial.2);
    common::stored_progress(uri, db, &id).await
}

#[tokio::test]
async fn edx_logs_import_with_the_pipeline_rules_and_again_add_nothing() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    load_catalog(&uri, &db, &[item("Intro", V1, 120.0)]);

    // A dry run reads and checks everything and writes nothing.
    let dry = import(&uri, &db, &["--dry-run", dir.path().to_str().unwrap()]);
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    assert_eq!(all(&uri, &db, "events").await.len(), 0);

    let out = import(&uri, &db, &[dir.path().to_str().unwrap()]);
    assert!(out.contains("read 2 files, 23 lines"), "{out}");
    let size = std::fs::metadata(dir.path().join("edx-events-2014-10-25.log"))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join("edx-events-2014-10-26.log.gz"))
            .unwrap()
            .len();
    let shown = format!("{:.1} KiB in", size as f64 / 1024.0);
    assert!(out.contains(&shown), "{shown}: {out}");
    // 4 page requests (2 server pages, the dashboard has no time, page_close), 10 video events.
    assert!(
        out.contains(
            "records: 15 (request 5, video.play 5, video.pause 3, video.ended 1, video.seek 1)"
        ),
        "{out}"
    );
    assert!(out.contains("15 new, 0 already stored"), "{out}");
    assert!(
        out.contains("not JSON: 1 (edx-events-2014-10-25.log:5)"),
        "{out}"
    );
    assert!(
        out.contains("no time: 1 (edx-events-2014-10-25.log:17)"),
        "{out}"
    );
    assert!(out.contains("video event without a username: 1"), "{out}");
    assert!(
        out.contains("video time missing, negative or over 10 hours: 1"),
        "{out}"
    );
    assert!(
        out.contains("not imported: 1 events of other types (problem_check 1)"),
        "{out}"
    );
    assert!(
        out.contains("speed changes (the rate of later stretches) 1"),
        "{out}"
    );
    assert!(out.contains("video loads (nothing to record) 1"), "{out}");
    assert!(out.contains(&format!("videos not in the catalog: 1, with 2 events, imported under FOSS = course id, tutorial = video id, language `und`: {V2}")), "{out}");

    // Request records: enriched as live ones, in the event's own time.
    let requests = all(&uri, &db, "request_logs").await;
    assert_eq!(requests.len(), 5);
    let records: Vec<_> = requests
        .into_iter()
        .filter_map(request_from_document)
        .collect();
    let course_page = records
        .iter()
        .find(|r| r.path.contains("courseware") && r.query.is_none())
        .unwrap();
    assert_eq!(course_page.ts, t0());
    assert_eq!(
        course_page.route.as_deref(),
        Some("/courses/{course_id}/courseware/week1/intro/")
    );
    assert_eq!(
        course_page.view_args.get("course_id").map(String::as_str),
        Some(COURSE)
    );
    assert_eq!(course_page.user.as_deref(), Some("alice"));
    assert_eq!(course_page.ua.name.as_deref(), Some("Firefox"));
    let session = course_page.session_id.clone().unwrap();
    assert_eq!(session.len(), 32);
    assert!(!session.contains("alice"));
    let close = records
        .iter()
        .find(|r| r.query.as_deref() == Some("x=1"))
        .unwrap();
    assert_eq!(close.session_id.as_deref(), Some(session.as_str()));
    let tutorial_page = records.iter().find(|r| r.tutorial.is_some()).unwrap();
    assert_eq!(tutorial_page.tutorial.as_ref().unwrap().tutorial, "Intro");
    // The handler is a POST answered with JSON; week 2 is one page (its
    // page_close was the same view).
    let handler = records
        .iter()
        .find(|r| r.path.ends_with("save_user_state"))
        .unwrap();
    assert_eq!(handler.method, "POST");
    assert_eq!(handler.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.path.ends_with("/week2/"))
            .count(),
        1
    );
    assert!(
        out.contains("page closes (of pages served in the logs) 1"),
        "{out}"
    );
    // Visits: alice's edX session is her visitor; day one's two pages are
    // one visit, day two's a returning one.
    let week2 = records
        .iter()
        .find(|r| r.path.ends_with("/week2/"))
        .unwrap();
    assert!(course_page.visitor_id.is_some());
    assert_eq!(
        (tutorial_page.visitor_id, tutorial_page.visit_number),
        (course_page.visitor_id, course_page.visit_number)
    );
    assert_eq!(course_page.new_visit, Some(true));
    assert!(
        all(&uri, &db, "learner_links").await.is_empty(),
        "an edX session is no browser to link"
    );
    assert_eq!(tutorial_page.new_visit, Some(false));
    // Day two begins with the page close (a page served outside the logs).
    assert_eq!(close.visitor_id, course_page.visitor_id);
    assert_ne!(close.visit_number, course_page.visit_number);
    assert_eq!((close.new_visit, close.returning), (Some(true), Some(true)));
    assert_eq!(
        (week2.visitor_id, week2.visit_number, week2.new_visit),
        (close.visitor_id, close.visit_number, Some(false))
    );
    let pages = all(&uri, &db, "page_views").await;
    let first = pages
        .iter()
        .find(|p| {
            p.get_str("path")
                .is_ok_and(|p| p.ends_with("/week1/intro/"))
        })
        .unwrap();
    assert_eq!(
        first.get_f64("time_on_page_s").ok(),
        Some(1.0),
        "the next page of the visit came a second later: {first}"
    );
    let paths: Vec<&str> = pages
        .iter()
        .filter_map(|p| p.get_str("path").ok())
        .collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("handler")), "{paths:?}");

    // alice: 0–30 credited, the seek's target 60 starts the next viewing
    // (not the stale 30), 60–100, then 100–120 the next day; the end.
    let alice = progress(&uri, &db, "user:alice", ("Python", "Intro", "English"))
        .await
        .unwrap();
    let v1 = alice.videos.iter().find(|v| v.video_id == V1).unwrap();
    assert_eq!(v1.seen.len(), 90, "{:?}", alice.watched);
    assert_eq!(alice.watched, vec![[0, 30], [60, 120]]);
    assert!(alice.completed, "the end point was covered");
    // bob: 0–119.5 at 1.5× (not suspect: 80 s at 1.5 is 120 s of media).
    let bob = progress(&uri, &db, "user:bob", ("Python", "Intro", "English"))
        .await
        .unwrap();
    assert!(bob.completed);
    assert_eq!(bob.videos[0].suspect, 0);
    // V2 lives under its course until the catalog knows it.
    let v2 = progress(&uri, &db, "user:alice", (COURSE, V2, "und"))
        .await
        .unwrap();
    assert_eq!(v2.watched, vec![[0, 50]]);
    // The figures were derived: the video's stats count both learners.
    let stats = collection(&uri, &db, "video_stats")
        .await
        .find_one(doc! { "_id": V1 })
        .await
        .unwrap()
        .unwrap();
    let viewers = match stats.get("viewers") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => panic!("viewers: {other:?}"),
    };
    assert_eq!(viewers, 2, "{stats}");

    // Again: nothing new, nothing changed.
    let before = derived(&uri, &db).await;
    let again = import(&uri, &db, &[dir.path().to_str().unwrap()]);
    assert!(
        again.contains("0 new, 15 already stored (duplicates)"),
        "{again}"
    );
    assert_eq!(derived(&uri, &db).await, before);
}

#[tokio::test]
async fn a_video_imported_before_its_catalog_entry_moves_to_it_on_a_second_import() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    load_catalog(&uri, &db, &[item("Intro", V1, 120.0)]);
    let first = import(&uri, &db, &[dir.path().to_str().unwrap()]);
    assert!(first.contains("videos not in the catalog: 1"), "{first}");
    assert!(
        progress(&uri, &db, "user:alice", (COURSE, V2, "und"))
            .await
            .is_some()
    );

    // The operator loads V2's entry and imports the same files again.
    load_catalog(
        &uri,
        &db,
        &[item("Intro", V1, 120.0), item("Loops", V2, 60.0)],
    );
    let second = import(&uri, &db, &[dir.path().to_str().unwrap()]);
    assert!(
        second.contains("2 stored events moved to the tutorial the catalog names"),
        "{second}"
    );
    assert!(!second.contains("videos not in the catalog"), "{second}");
    let events = collection(&uri, &db, "events").await;
    assert_eq!(
        events
            .count_documents(doc! { "video_id": V2, "tutorial": "Loops" })
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        events
            .count_documents(doc! { "foss": COURSE })
            .await
            .unwrap(),
        0
    );
    let moved = progress(&uri, &db, "user:alice", ("Python", "Loops", "English"))
        .await
        .unwrap();
    assert_eq!(moved.watched, vec![[0, 50]]);
    assert_eq!(moved.duration, Some(60.0));
    assert!(
        progress(&uri, &db, "user:alice", (COURSE, V2, "und"))
            .await
            .is_none()
    );
    // A third time: nothing left to move.
    let third = import(&uri, &db, &[dir.path().to_str().unwrap()]);
    assert!(!third.contains("moved"), "{third}");
    assert!(third.contains("0 new, 15 already stored"), "{third}");
}

/// The derived collections, without what says when they were derived.
async fn derived(uri: &str, db: &str) -> Vec<(String, Vec<Document>)> {
    let mut out = Vec::new();
    for name in [
        "tutorial_progress",
        "video_positions",
        "page_views",
        "sessions",
        "video_stats",
        "tutorial_daily",
        "site_daily",
    ] {
        let mut docs = all(uri, db, name).await;
        for d in &mut docs {
            strip(d);
        }
        out.push((name.to_owned(), docs));
    }
    out
}

fn strip(d: &mut Document) {
    for key in ["derived_at", "fence", "gen"] {
        d.remove(key);
    }
    for (_, value) in d.iter_mut() {
        if let Bson::Document(inner) = value {
            strip(inner);
        }
    }
}

#[tokio::test]
async fn an_imported_history_derives_what_the_same_records_do_live() {
    let uri = shared_mongodb_uri();
    let (imported, live, moved) = (test_database(), test_database(), test_database());
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    for db in [&imported, &live, &moved] {
        load_catalog(
            &uri,
            db,
            &[item("Intro", V1, 120.0), item("Loops", V2, 60.0)],
        );
    }
    import(&uri, &imported, &[dir.path().to_str().unwrap()]);

    // The same records, as the queue would carry them, in time order.
    let mut payloads: Vec<(String, Vec<u8>)> = Vec::new();
    for d in all(&uri, &imported, "request_logs").await {
        let r = request_from_document(d).unwrap();
        payloads.push((r.id.to_string(), serde_json::to_vec(&r).unwrap()));
    }
    for d in all(&uri, &imported, "events").await {
        let e = event_from_document(d).unwrap();
        if e.event_type != EventType::PageView {
            payloads.push((e.id.to_string(), serde_json::to_vec(&e).unwrap()));
        }
    }
    payloads.sort();
    let payloads: Vec<Vec<u8>> = payloads.into_iter().map(|(_, p)| p).collect();

    // Live: off the queue, a few at a time, through the daemon.
    let ns = Namespace::new();
    let mut cfg = config(&ns, &uri, &live, "live");
    cfg.derive_interval = Duration::from_millis(100);
    let consumer = InProcess::start(cfg);
    for chunk in payloads.chunks(4) {
        push(ns.redis_url(), ns.queue(), chunk).await.unwrap();
    }
    let want = derived(&uri, &imported).await;
    for (name, docs) in &want {
        assert!(!docs.is_empty(), "the import derived no {name}");
    }
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let got = derived(&uri, &live).await;
            if got == want {
                Ok(())
            } else {
                Err(format!("live: {got:?}\nimported: {want:?}"))
            }
        },
    )
    .await
    .unwrap();
    consumer.stop().await;

    // And the same records as JSON lines, imported into a third database.
    let jsonl = dir.path().join("export.jsonl");
    let mut text: Vec<u8> = payloads.join(&b'\n');
    text.extend_from_slice(b"\n{\"kind\":\"event\",\"schema_version\":1}\n");
    std::fs::write(&jsonl, text).unwrap();
    let out = import(
        &uri,
        &moved,
        &["--format", "jsonl", jsonl.to_str().unwrap()],
    );
    assert!(out.contains(&format!("{} new", payloads.len())), "{out}");
    assert!(out.contains("skipped: 1 lines"), "{out}");
    assert!(out.contains("refused:"), "{out}");
    assert_eq!(derived(&uri, &moved).await, want);
}

#[tokio::test]
async fn bad_paths_and_broken_files_are_named() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    let out = consumer(
        &uri,
        &db,
        &["import", dir.path().join("missing.log").to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing.log"),
        "{}",
        text(&out.stderr)
    );

    // A gzip file cut short: the lines before the damage are imported, the
    // file is named, the exit status says it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(
            gz,
            "{}",
            server(
                "carol",
                f64::from(i),
                &format!("/courses/{COURSE}/about/{i}")
            )
        )
        .unwrap();
    }
    let bytes = gz.finish().unwrap();
    let cut = dir.path().join("cut.log.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = consumer(&uri, &db, &["import", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error: ") && stdout.contains("cut.log.gz"),
        "{stdout}"
    );
    let stored = collection(&uri, &db, "request_logs")
        .await
        .count_documents(doc! {})
        .await
        .unwrap();
    assert!(stored > 100 && stored < 2000, "{stored} stored");
}

/// A log of `learners` learners, each opening a page and watching V1 or
/// V2 with a seek and a pause: 9 lines each, in time order, 7 records
/// (a request and 6 video events).
fn many_learners(learners: u32) -> String {
    let mut lines = Vec::new();
    for n in 0..learners {
        let (user, t) = (format!("learner{n}"), f64::from(n) * 7.0);
        let v = if n % 2 == 0 { V1 } else { V2 };
        lines.push(server(
            &user,
            t,
            &format!("/courses/{COURSE}/courseware/week1/intro/"),
        ));
        let watching = [
            (1.0, "load_video", json!({})),
            (2.0, "play_video", json!({ "currentTime": 0 })),
            (
                12.0,
                "seek_video",
                json!({ "old_time": 10, "new_time": 20 }),
            ),
            (12.1, "play_video", json!({ "currentTime": 10 })),
            (40.0, "pause_video", json!({ "currentTime": 48 })),
            (41.0, "play_video", json!({ "currentTime": 48 })),
            (50.0, "stop_video", json!({ "currentTime": 57 })),
        ];
        for (dt, kind, data) in watching {
            lines.push(video(&user, t + dt, kind, v, data));
        }
        lines.push(json!({ "username": &user, "event_source": "server", "event_type": "problem_check", "time": at(t + 60.0), "event": {} }));
    }
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// An import killed at any point and run again, and two imports of the
/// same file at once, end where one import ends: every record once, the
/// same derived documents.
#[tokio::test]
async fn a_killed_import_run_again_and_two_at_once_end_as_one() {
    let uri = shared_mongodb_uri();
    let (once, killed, twice) = (test_database(), test_database(), test_database());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("many.log");
    std::fs::write(&log, many_learners(400)).unwrap();
    let log = log.to_str().unwrap();
    let catalog = [item("Intro", V1, 60.0), item("Loops", V2, 60.0)];
    for db in [&once, &killed, &twice] {
        load_catalog(&uri, db, &catalog);
    }
    let out = import(&uri, &once, &[log]);
    assert!(out.contains("2,800 new"), "{out}");
    let expected = derived(&uri, &once).await;
    assert!(expected.iter().all(|(_, docs)| !docs.is_empty()));

    // Killed once its first batches are stored, then run again.
    let ns = Namespace::new();
    let mut child = visitlog_tests::consumer::command(BIN.as_ref(), &ns, &uri, &killed)
        .args(["import", log])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = collection(&uri, &killed, "events").await;
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            match events.count_documents(doc! {}).await.unwrap() {
                0 => Err("no event stored yet"),
                _ => Ok(()),
            }
        },
    )
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let stored = events.count_documents(doc! {}).await.unwrap();
    assert!(stored < 2_400, "killed before the end ({stored} events)");
    let again = import(&uri, &killed, &[log]);
    assert!(again.contains("already stored"), "{again}");
    assert_eq!(derived(&uri, &killed).await, expected);

    // Two at once.
    let spawn = || {
        let ns = Namespace::new();
        visitlog_tests::consumer::command(BIN.as_ref(), &ns, &uri, &twice)
            .args(["import", log])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    assert_eq!(all(&uri, &twice, "events").await.len(), 2_400);
    assert_eq!(all(&uri, &twice, "request_logs").await.len(), 400);
    assert_eq!(derived(&uri, &twice).await, expected);
}
