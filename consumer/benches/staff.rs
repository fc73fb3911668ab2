//! How long the staff API takes to answer over a year of daily documents.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-consumer --bench
//! staff` with `scripts/services` running). Seeds a database (indexes by
//! `visitlog-consumer setup`) with a year of a site of 150 tutorial pages
//! (50 tutorials in 3 languages, all in the catalog with a video): 365
//! `site_daily`, 54,750 `tutorial_daily`, `VISITLOG_BENCH_PAGE_VIEWS` page
//! views a day (default 300, 1,000 visitors and 400 learners in all), 150
//! `video_stats`, and one learner with 400 sessions and 150 progress
//! documents. Then asks each endpoint (through the router, as a browser
//! would) over the last 30 days and over the whole year, 15 times each,
//! and prints the median and the 95th percentile (of 15: the second
//! slowest).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use bson::Document;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use http_body_util::BodyExt;
use tower::ServiceExt;
use visitlog_analytics::staff::{Access, AnalyticsReader, Scope, StaffRouter};
use visitlog_analytics::{
    Count, PageView, Segment, Session, SiteDaily, Totals, TutorialDaily, VideoStats,
    tutorial_day_id,
};
use visitlog_tests::{shared_mongodb_uri, test_database};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");
const TUTORIALS: usize = 50;
const LANGUAGES: [&str; 3] = ["English", "Hindi", "Tamil"];
const DAYS: i64 = 365;
const RUNS: usize = 15;

fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
}

fn tutorial(i: usize) -> (String, String) {
    (format!("FOSS-{}", i % 5), format!("Tutorial-{i:02}"))
}

async fn insert(db: &mongodb::Database, name: &str, docs: Vec<Document>) {
    for chunk in docs.chunks(1000) {
        db.collection::<Document>(name)
            .insert_many(chunk.to_vec())
            .await
            .unwrap();
    }
}

fn totals(views: u64) -> Totals {
    Totals {
        page_views: views,
        visits: views * 8 / 10,
        learners: views / 3,
        anonymous_visitors: views / 2,
        returning_visits: views / 4,
        time_on_page_s_sum: views as f64 * 95.0,
        time_on_page_n: views * 9 / 10,
        completions_auto: views / 20,
        completions_manual: views / 50,
        video_s: views as f64 * 70.0,
    }
}

async fn seed(uri: &str, db_name: &str, per_day: usize) {
    let setup = Command::new(BIN)
        .args(["--mongodb-uri", uri, "--database", db_name, "setup"])
        .output()
        .unwrap();
    assert!(setup.status.success(), "{setup:?}");
    let db = mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db_name);
    let now = Utc::now();
    let first = last_day() - chrono::Duration::days(DAYS - 1);
    let (mut tutorial_days, mut site_days, mut pages) = (Vec::new(), Vec::new(), Vec::new());
    let top = |prefix: &str, n: u64| -> Vec<Count> {
        (0..20u64)
            .map(|i| Count {
                name: format!("{prefix}{i}"),
                count: n / (i + 1),
            })
            .collect()
    };
    for (d, day) in first.iter_days().take(DAYS as usize).enumerate() {
        let day_s = day.to_string();
        for i in 0..TUTORIALS {
            let (foss, name) = tutorial(i);
            for language in LANGUAGES {
                let t = TutorialDaily {
                    id: tutorial_day_id(&foss, &name, language, &day_s),
                    foss: foss.clone(),
                    tutorial: name.clone(),
                    language: language.into(),
                    day: day_s.clone(),
                    date: midnight(day),
                    totals: totals(((i + d) % 7 + 1) as u64),
                    fence: 1,
                    derived_at: now,
                };
                tutorial_days.push(t.to_document().unwrap());
            }
        }
        let s = SiteDaily {
            id: day_s.clone(),
            day: day_s.clone(),
            date: midnight(day),
            totals: totals(per_day as u64),
            sessions: per_day as u64 / 3,
            bounces: per_day as u64 / 10,
            session_s_sum: per_day as f64 * 200.0,
            countries: top("C", per_day as u64),
            browsers: top("B", per_day as u64),
            os: top("O", per_day as u64),
            referrers: top("R", per_day as u64),
            fence: 1,
            derived_at: now,
        };
        site_days.push(s.to_document().unwrap());
        for k in 0..per_day {
            let i = (d * per_day + k) % TUTORIALS;
            let (foss, name) = tutorial(i);
            let visitor = (d * 7 + k) % 1000;
            let learner = (visitor < 400).then(|| format!("user:l{visitor}"));
            let start = midnight(day) + chrono::Duration::seconds(k as i64 * 60);
            let p = PageView {
                id: uuid::Uuid::now_v7().to_string(),
                learner: learner.clone(),
                user: learner.as_ref().map(|l| l[5..].to_owned()),
                visitor_id: Some(uuid::Uuid::from_u128(visitor as u128 + 1).to_string()),
                visit_number: Some(1),
                path: format!("/watch/{foss}/{name}/English/"),
                route: None,
                tutorial: Some(visitlog_schema::Tutorial {
                    foss,
                    tutorial: name,
                    language: "English".into(),
                }),
                start,
                last_seen: start,
                engaged_s: 30.0,
                time_on_page_s: Some(60.0),
                estimated: false,
                day: day_s.clone(),
                pings: 4,
                new_visit: true,
                returning: Some(false),
                country: Some("IN".into()),
                browser: Some("Firefox".into()),
                os: Some("Linux".into()),
                referrer_domain: None,
                fence: 1,
                derived_at: now,
            };
            pages.push(p.to_document().unwrap());
        }
    }
    insert(&db, "tutorial_daily", tutorial_days).await;
    insert(&db, "site_daily", site_days).await;
    insert(&db, "page_views", pages).await;
    let (mut catalog, mut stats) = (Vec::new(), Vec::new());
    for i in 0..TUTORIALS {
        let (foss, name) = tutorial(i);
        for language in LANGUAGES {
            let video = format!("{foss}/{name}/{language}");
            catalog.push(bson::doc! {
                "_id": &video, "foss": &foss, "tutorial": &name, "language": language,
                "title": format!("{name} ({language})"), "duration": 600.0, "order": i as i64,
                "main": true, "level": bson::Bson::Null, "version": bson::DateTime::now(),
                "version_ms": 1_i64, "active": true,
                "publication": uuid::Uuid::nil().to_string(),
            });
            let v = VideoStats {
                id: video.clone(),
                video_id: video,
                foss: Some(foss.clone()),
                tutorial: Some(name.clone()),
                language: Some(language.into()),
                duration: Some(600.0),
                viewers: 120,
                plays: 300,
                watch_s: 40_000.0,
                unique_s: 30_000,
                coverage_mean: Some(0.42),
                coverage_p50: Some(0.4),
                completions: 30,
                users_at_start: 120,
                users_at_end: 35,
                segments: (0..120)
                    .map(|k| Segment {
                        start: k * 5,
                        viewers: 120 - u64::from(k * 7 / 10),
                        views: 200 - u64::from(k),
                    })
                    .collect(),
                fence: 1,
                derived_at: now,
            };
            stats.push(v.to_document().unwrap());
        }
    }
    insert(&db, "catalog", catalog).await;
    insert(&db, "video_stats", stats).await;
    // One learner's history: 400 sessions over the year.
    let sessions: Vec<Document> = (0..400)
        .map(|k| {
            let start = midnight(first) + chrono::Duration::hours(k * 21);
            Session {
                id: visitlog_analytics::session_id("user:l1", start),
                learner: "user:l1".into(),
                start,
                end: start + chrono::Duration::minutes(20),
                duration_s: 1200.0,
                engaged_s: 600.0,
                page_views: 3,
                tutorials: Vec::new(),
                video_s: 300.0,
                devices: Vec::new(),
                country: Some("IN".into()),
                returning: true,
                entry_path: None,
                exit_path: None,
                bounce: false,
                short: false,
                day: start.format("%Y-%m-%d").to_string(),
                fence: 1,
                derived_at: now,
            }
            .to_document()
            .unwrap()
        })
        .collect();
    insert(&db, "sessions", sessions).await;
}

fn staff(_: &axum::http::request::Parts) -> Access {
    Access::Learners(Scope::all().viewer("bench"))
}

async fn time(app: &axum::Router, uri: &str) -> (Duration, Duration, usize) {
    let mut took = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{uri}: {}",
            response.status()
        );
        bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len();
        took.push(started.elapsed());
    }
    took.sort();
    (took[RUNS / 2], took[RUNS - 2], bytes)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let uri = shared_mongodb_uri();
    let kind = std::env::var("VISITLOG_TEST_MONGODB_KIND").unwrap_or_else(|_| "unknown".into());
    let per_day: usize = std::env::var("VISITLOG_BENCH_PAGE_VIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let db_name = test_database();
    let started = Instant::now();
    seed(&uri, &db_name, per_day).await;
    println!(
        "MongoDB: {kind}; a year seeded in {:.0} s ({} page views a day)\n",
        started.elapsed().as_secs_f64(),
        per_day
    );
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db_name);
    let app = StaffRouter::new(AnalyticsReader::new(&db), staff).into_router();
    let to = last_day();
    let month = format!("from={}&to={to}", to - chrono::Duration::days(29));
    let year = format!("from={}&to={to}", to - chrono::Duration::days(DAYS - 1));
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "endpoint", "p50 ms", "p95 ms", "bytes"
    );
    for (name, path) in [
        ("overview", "/api/overview"),
        ("overview, one FOSS", "/api/overview?foss=FOSS-1"),
        ("tutorials", "/api/tutorials"),
        ("unwatched", "/api/unwatched"),
        ("video", "/api/videos/FOSS-1%2FTutorial-01%2FEnglish"),
        ("learner", "/api/learners/l1"),
    ] {
        for (range, q) in [("30 days", &month), ("a year", &year)] {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (p50, p95, bytes) = time(&app, &format!("{path}{sep}{q}")).await;
            println!(
                "{:<44} {:>9.1} {:>9.1} {:>9}",
                format!("{name}, {range}"),
                p50.as_secs_f64() * 1000.0,
                p95.as_secs_f64() * 1000.0,
                bytes
            );
        }
    }
    db.drop().await.unwrap();
}
