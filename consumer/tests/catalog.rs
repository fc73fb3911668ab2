//! The catalog against the real services: `catalog import` of JSON and CSV
//! (idempotent, all or nothing, `--dry-run`), publications off the queue
//! (an older replay changes nothing, a newer one retires what it leaves
//! out), and progress folded on the catalog's main video whether the
//! catalog came before or after the events.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use bson::{Document, doc};
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use uuid::Uuid;
use visitlog_progress::{MainVideo, Progress, Rules};
use visitlog_schema::{
    CatalogItem, CatalogRecord, EventRecord, EventType, Kind, Learner, SCHEMA_VERSION, progress_id,
};
use visitlog_tests::{
    Namespace, eventually, push, queue_lengths, shared_mongodb_uri, test_database,
};

use common::{InProcess, config};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");
const WAIT: Duration = Duration::from_secs(60);

fn item(foss: &str, tutorial: &str, video: &str, main: bool, duration: Option<f64>) -> CatalogItem {
    CatalogItem {
        foss: foss.into(),
        tutorial: tutorial.into(),
        language: "English".into(),
        video_id: video.into(),
        title: format!("{tutorial}: {video}"),
        duration,
        order: 1,
        main,
        level: None,
    }
}

/// `visitlog-consumer catalog import ARGS` on `db`, with `stdin` as input.
fn import(uri: &str, db: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let ns = Namespace::new();
    let mut child = visitlog_tests::consumer::command(BIN.as_ref(), &ns, uri, db)
        .args(["catalog", "import"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The catalog's documents, by `_id`, without the publication's fields.
async fn catalog(uri: &str, db: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client
        .database(db)
        .collection::<Document>("catalog")
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn ids_active(docs: &[Document]) -> Vec<(String, bool)> {
    docs.iter()
        .map(|d| {
            (
                d.get_str("_id").unwrap().to_owned(),
                d.get_bool("active").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn import_json_and_csv_again_and_again_changes_nothing() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("python.json");
    let items = vec![
        item("Python", "Intro", "p1", true, Some(600.0)),
        item("Python", "Intro", "p2", false, None),
    ];
    std::fs::write(&json, serde_json::to_vec(&items).unwrap()).unwrap();
    let out = import(&uri, &db, &[json.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Python: 2 items, 2 new, 0 updated, 0 unchanged, 0 retired"),
        "{}",
        text(&out.stdout)
    );
    // CSV from standard input: another FOSS, its own publication.
    let csv = "foss,tutorial,language,video_id,title,duration,order,main,level\n\
               Java,Hello,English,j1,Hello,90.5,1,yes,beginner\n";
    let out = import(&uri, &db, &["-"], Some(csv));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Java: 1 items, 1 new"),
        "{}",
        text(&out.stdout)
    );
    let first = catalog(&uri, &db).await;
    assert_eq!(first.len(), 3, "{first:#?}");
    let j1 = first.iter().find(|d| d.get_str("_id") == Ok("j1")).unwrap();
    assert_eq!(j1.get_f64("duration").unwrap(), 90.5);
    assert_eq!(j1.get_str("level").unwrap(), "beginner");
    assert!(j1.get_bool("main").unwrap() && j1.get_bool("active").unwrap());
    let p2 = first.iter().find(|d| d.get_str("_id") == Ok("p2")).unwrap();
    assert_eq!(p2.get("duration"), Some(&bson::Bson::Null));
    // Again: a newer publication saying the same; only its version moves.
    let out = import(&uri, &db, &[json.to_str().unwrap()], None);
    assert!(
        text(&out.stdout).contains("Python: 2 items, 0 new, 0 updated, 2 unchanged, 0 retired"),
        "{}",
        text(&out.stdout)
    );
    let strip = |docs: Vec<Document>| -> Vec<Document> {
        docs.into_iter()
            .map(|mut d| {
                for field in ["version", "version_ms", "publication"] {
                    d.remove(field);
                }
                d
            })
            .collect()
    };
    assert_eq!(strip(catalog(&uri, &db).await), strip(first));
}

#[tokio::test]
async fn a_bad_row_imports_nothing_and_a_dry_run_writes_nothing() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let csv = "foss,tutorial,language,video_id,title,duration,order,main,level\n\
               Python,Intro,English,p1,Intro,600,1,yes,\n\
               Python,Intro,English,p2,Extra,ten minutes,2,no,\n\
               Python,Lists,English,p3,Lists,300,3,maybe,\n";
    let out = import(&uri, &db, &["-"], Some(csv));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 3: duration:"), "{stderr}");
    assert!(stderr.contains("line 4: main:"), "{stderr}");
    assert!(catalog(&uri, &db).await.is_empty(), "nothing imported");
    let good = csv.replace("ten minutes", "600").replace("maybe", "true");
    let out = import(&uri, &db, &["--dry-run", "-"], Some(&good));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Python: 3 items, 3 new")
            && text(&out.stdout).contains("dry run"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        catalog(&uri, &db).await.is_empty(),
        "a dry run writes nothing"
    );
}

/// Waits until the queue is drained and acknowledged.
async fn drained(ns: &Namespace) {
    eventually(
        WAIT,
        Duration::from_millis(50),
        async || match queue_lengths(ns.redis_url(), ns.queue()).await {
            Ok((0, 0)) => Ok(()),
            other => Err(format!("queue not drained: {other:?}")),
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn off_the_queue_the_newest_publication_wins_and_retires_what_it_leaves_out() {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let ns = Namespace::new();
    let consumer = InProcess::start(config(&ns, &uri, &db, "catalog-1"));
    let t0 = Utc::now().trunc_subsecs(3) - chrono::Duration::hours(1);
    let older = CatalogRecord::at(
        "Python",
        vec![
            item("Python", "Intro", "p1", true, Some(100.0)),
            item("Python", "Intro", "p2", false, None),
        ],
        t0,
    );
    let newer = CatalogRecord::at(
        "Python",
        vec![
            item("Python", "Intro", "p1", true, Some(120.0)),
            item("Python", "Intro", "p2", false, None),
        ],
        t0 + chrono::Duration::seconds(1),
    );
    let newest = CatalogRecord::at(
        "Python",
        vec![item("Python", "Intro", "p1", true, Some(120.0))],
        t0 + chrono::Duration::seconds(2),
    );
    let payload = |r: &CatalogRecord| serde_json::to_vec(r).unwrap();
    push(ns.redis_url(), ns.queue(), &[payload(&newer)])
        .await
        .unwrap();
    drained(&ns).await;
    let after_newer = catalog(&uri, &db).await;
    assert_eq!(after_newer.len(), 2);
    // The older publication, late (or replayed): nothing changes.
    push(
        ns.redis_url(),
        ns.queue(),
        &[payload(&older), payload(&newer)],
    )
    .await
    .unwrap();
    drained(&ns).await;
    assert_eq!(catalog(&uri, &db).await, after_newer);
    assert_eq!(
        after_newer[0].get_f64("duration").unwrap(),
        120.0,
        "the newer duration"
    );
    // The newest leaves p2 out: inactive, still there.
    push(
        ns.redis_url(),
        ns.queue(),
        &[payload(&newest), payload(&older)],
    )
    .await
    .unwrap();
    drained(&ns).await;
    let last = catalog(&uri, &db).await;
    assert_eq!(
        ids_active(&last),
        vec![("p1".to_owned(), true), ("p2".to_owned(), false)]
    );
    for d in &last {
        assert_eq!(d.get_str("publication").unwrap(), newest.id.to_string());
        assert_eq!(
            d.get_i64("version_ms").unwrap(),
            newest.version.timestamp_millis()
        );
    }
    // A bad publication is a dead letter naming the field.
    let mut bad = newest.clone();
    bad.items.push(item("Python", "Intro", "p3", true, None));
    push(ns.redis_url(), ns.queue(), &[payload(&bad)])
        .await
        .unwrap();
    drained(&ns).await;
    let metrics = consumer.stop().await;
    assert_eq!(metrics.dead_lettered, 1);
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let letter = client
        .database(&db)
        .collection::<Document>("dead_letters")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(
        letter.get_str("reason").unwrap().contains("items[1].main"),
        "{letter}"
    );
    assert_eq!(catalog(&uri, &db).await, last);
}

/// A video event of `learner` at `ts`: media `from..to` of `video`, whose
/// page reports `duration`.
fn watch(
    learner: &str,
    ts: DateTime<Utc>,
    video: &str,
    from: f64,
    to: f64,
    duration: f64,
) -> EventRecord {
    EventRecord {
        id: Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        )),
        schema_version: SCHEMA_VERSION,
        kind: Kind::Event,
        ts,
        event_type: EventType::VideoProgress,
        learner: Learner::User(learner.into()).key(),
        user: Some(learner.into()),
        visitor_id: Some(Uuid::from_u128(9)),
        visit_number: Some(1),
        session_id: None,
        foss: "Python".into(),
        tutorial: "Intro".into(),
        language: "English".into(),
        video_id: Some(video.into()),
        position: Some(to),
        duration: Some(duration),
        from: None,
        to: None,
        played_from: Some(from),
        rate: None,
        page_view: None,
        client_event_id: None,
        active_ms: None,
        staff: false,
    }
}

async fn progress_doc(uri: &str, db: &str, id: &str) -> Option<Progress> {
    common::stored_progress(uri, db, id).await
}

#[tokio::test]
async fn progress_is_the_same_whether_the_catalog_comes_before_or_after_the_events() {
    let uri = shared_mongodb_uri();
    let t0 = Utc::now().trunc_subsecs(3) - chrono::Duration::hours(1);
    // The main video is the shorter one, and the catalog's duration (200 s)
    // is not the one pages report (300 s): 180 s watched completes it only
    // on the catalog's terms.
    let mut events = Vec::new();
    for i in 0..18 {
        let at = t0 + chrono::Duration::seconds(11 * (i + 1));
        events.push(watch(
            "cat",
            at,
            "main",
            10.0 * i as f64,
            10.0 * (i + 1) as f64,
            300.0,
        ));
    }
    for i in 0..3 {
        let at = t0 + chrono::Duration::seconds(300 + 11 * (i + 1));
        events.push(watch(
            "cat",
            at,
            "long",
            10.0 * i as f64,
            10.0 * (i + 1) as f64,
            900.0,
        ));
    }
    let publication = CatalogRecord::at(
        "Python",
        vec![
            item("Python", "Intro", "main", true, Some(200.0)),
            item("Python", "Intro", "long", false, Some(900.0)),
        ],
        t0,
    );
    let rules = Rules::default();
    let main = MainVideo {
        video_id: "main",
        duration: Some(200.0),
    };
    let expected = Progress::fold_with(None, &events, &rules, Some(main)).unwrap();
    let without = Progress::fold(None, &events, &rules).unwrap();
    assert!(expected.completed && expected.video_id.as_deref() == Some("main"));
    assert_eq!(expected.duration, Some(200.0));
    assert!(!without.completed && without.video_id.as_deref() == Some("long"));
    let id = progress_id(
        &Learner::User("cat".into()).key(),
        "Python",
        "Intro",
        "English",
    );
    let catalog_payload = serde_json::to_vec(&publication).unwrap();
    let event_payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let mut results = Vec::new();
    for catalog_first in [false, true] {
        let db = test_database();
        let ns = Namespace::new();
        let consumer = InProcess::start(config(&ns, &uri, &db, "catalog-2"));
        let (first, second) = if catalog_first {
            (vec![catalog_payload.clone()], event_payloads.clone())
        } else {
            (event_payloads.clone(), vec![catalog_payload.clone()])
        };
        push(ns.redis_url(), ns.queue(), &first).await.unwrap();
        drained(&ns).await;
        if !catalog_first {
            // The events alone: the longest reported video is the main one.
            assert_eq!(progress_doc(&uri, &db, &id).await.unwrap(), without);
        }
        push(ns.redis_url(), ns.queue(), &second).await.unwrap();
        drained(&ns).await;
        consumer.stop().await;
        results.push(progress_doc(&uri, &db, &id).await.unwrap());
    }
    assert_eq!(results[0], expected, "events, then the catalog");
    assert_eq!(results[1], expected, "the catalog, then the events");
}

/// Two FOSS published at the same instant, in both orders of their ids:
/// neither publication touches the other's videos. (nx-27017, given an
/// update filter `{_id, $or}`, replaced another FOSS's older video with
/// this one: a video vanished from the catalog in about half the runs.)
#[tokio::test]
async fn publications_of_two_foss_at_the_same_instant_keep_each_others_videos() {
    let uri = shared_mongodb_uri();
    for python_first in [true, false] {
        let db = test_database();
        let sink = visitlog_consumer::sink::Sink::new(&uri, &db).await.unwrap();
        sink.setup(&visitlog_consumer::sink::Retention::default())
            .await
            .unwrap();
        let t = Utc::now().trunc_subsecs(3);
        let mut python = CatalogRecord::at(
            "Python",
            vec![
                item("Python", "Functions", "py-functions", true, Some(120.0)),
                item("Python", "Intro", "py-intro", true, Some(60.0)),
            ],
            t,
        );
        let mut scilab = CatalogRecord::at(
            "Scilab",
            vec![item(
                "Scilab",
                "Vectors",
                "scilab-vectors",
                true,
                Some(90.0),
            )],
            t,
        );
        // The same instant; which id is smaller decides which older
        // documents the second publication's filter would have matched.
        let (low, high) = (
            uuid::Uuid::from_u128(1 << 80),
            uuid::Uuid::from_u128(2 << 80),
        );
        (python.id, scilab.id) = match python_first {
            true => (low, high),
            false => (high, low),
        };
        for record in [&python, &scilab] {
            sink.apply_catalog(record, false).await.unwrap();
        }
        let ids = ids_active(&catalog(&uri, &db).await);
        assert_eq!(
            ids,
            [
                ("py-functions".to_owned(), true),
                ("py-intro".to_owned(), true),
                ("scilab-vectors".to_owned(), true)
            ],
            "python first: {python_first}"
        );
    }
}
