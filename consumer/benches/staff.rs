//! How long the staff API takes to answer over a year of daily documents.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-consumer --bench
//! staff` with `scripts/services` running). Seeds a database (indexes by
//! `visitlog-consumer setup`) with 400 days of a site of 150 tutorial pages
//! (50 tutorials of 5 FOSS in 3 languages, all in the catalog with a
//! video): `VISITLOG_BENCH_PAGE_VIEWS` page views a day (default 300, from
//! 1,000 visitors of whom 400 log in) and a session per three of them, put
//! through the consumer's own day fold into `site_daily` and the day's
//! rollup, and each month's rollup from its days, as the derivations
//! write them; 150 `video_stats` and the `videos` rollup; one learner with
//! 400 sessions. Then asks
//! each endpoint (through the router, as a browser would) over 30 days,
//! over a year, and over a year with the most days outside whole months
//! (59), 15 times each, and prints the median and the 95th percentile (of
//! 15: the second slowest).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
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
    AnalyticsRules, PageView, PeriodSum, Rollup, Segment, Session, SessionTutorial, SiteDay, Span,
    VideoIndex, VideoReach, VideoStats,
};
use visitlog_tests::{shared_mongodb_uri, test_database};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");
const TUTORIALS: usize = 50;
const LANGUAGES: [&str; 3] = ["English", "Hindi", "Tamil"];
/// Days seeded, ending on [`last_day`].
const SEEDED: i64 = 400;
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

/// One day's page views and sessions, as the visit and learner folds
/// would have stored them.
fn traffic(d: usize, day: NaiveDate, per_day: usize) -> (Vec<PageView>, Vec<Session>) {
    let now = Utc::now();
    let day_s = day.to_string();
    let (mut pages, mut sessions) = (Vec::new(), Vec::new());
    for k in 0..per_day {
        let i = (d * per_day + k) % TUTORIALS;
        let (foss, name) = tutorial(i);
        let language = LANGUAGES[(d + k) % 3];
        let visitor = (d * 7 + k) % 1000;
        let learner = (visitor < 400).then(|| format!("user:l{visitor}"));
        let start = midnight(day) + chrono::Duration::seconds(k as i64 * 60);
        pages.push(PageView {
            id: uuid::Uuid::now_v7().to_string(),
            learner: learner.clone(),
            user: learner.as_ref().map(|l| l[5..].to_owned()),
            visitor_id: Some(uuid::Uuid::from_u128(visitor as u128 + 1).to_string()),
            visit_number: Some(1),
            path: format!("/watch/{foss}/{name}/{language}/"),
            route: None,
            tutorial: Some(visitlog_schema::Tutorial {
                foss: foss.clone(),
                tutorial: name.clone(),
                language: language.into(),
            }),
            start,
            last_seen: start,
            engaged_s: 30.0,
            time_on_page_s: Some(60.0 + (k % 90) as f64),
            estimated: false,
            day: day_s.clone(),
            pings: 4,
            new_visit: true,
            returning: Some(visitor.is_multiple_of(3)),
            country: Some(["IN", "BD", "NP", "LK", "US"][k % 5].into()),
            browser: Some(["Firefox", "Chrome", "Safari"][k % 3].into()),
            os: Some(["Linux", "Windows", "Android", "macOS"][k % 4].into()),
            referrer_domain: k.is_multiple_of(4).then(|| format!("r{}.example", k % 30)),
            fence: 1,
            derived_at: now,
        });
        if k.is_multiple_of(3) {
            sessions.push(Session {
                id: visitlog_analytics::session_id(&format!("v{visitor}"), start),
                learner: learner.unwrap_or_else(|| format!("visitor:{visitor}")),
                start,
                end: start + chrono::Duration::minutes(12),
                duration_s: 720.0,
                engaged_s: 300.0,
                page_views: 3,
                tutorials: vec![SessionTutorial {
                    foss,
                    tutorial: name,
                    language: language.into(),
                    engaged_s: 300.0,
                    video_s: 210.0,
                }],
                video_s: 210.0,
                devices: Vec::new(),
                country: Some("IN".into()),
                returning: false,
                entry_path: None,
                exit_path: None,
                bounce: k.is_multiple_of(30),
                short: false,
                day: day_s.clone(),
                fence: 1,
                derived_at: now,
            });
        }
    }
    (pages, sessions)
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
    let rules = AnalyticsRules::default();
    let first = last_day() - chrono::Duration::days(SEEDED - 1);
    let (mut site_days, mut rollups) = (Vec::new(), Vec::new());
    let mut months: BTreeMap<String, PeriodSum> = BTreeMap::new();
    for (d, day) in first.iter_days().take(SEEDED as usize).enumerate() {
        let day_s = day.to_string();
        let (pages, sessions) = traffic(d, day, per_day);
        let mut fold = SiteDay::new(&day_s, &rules);
        pages.iter().for_each(|p| fold.add_page(p));
        sessions.iter().for_each(|s| fold.add_session(s));
        let (mut daily, period) = fold.finish_with_period();
        (daily.fence, daily.derived_at) = (1, now);
        site_days.push(daily.to_document().unwrap());
        let mut rollup = Rollup::new(Span::Day, &day_s, &period).unwrap();
        (rollup.fence, rollup.derived_at) = (1, now);
        rollups.push(rollup.to_document().unwrap());
        months.entry(day_s[..7].to_owned()).or_default().add(period);
    }
    for (month, sum) in months {
        let mut rollup = Rollup::new(Span::Month, &format!("{month}-01"), &sum.finish()).unwrap();
        (rollup.fence, rollup.derived_at) = (1, now);
        rollups.push(rollup.to_document().unwrap());
    }
    for span in ["day", "month"] {
        let sizes: Vec<usize> = rollups
            .iter()
            .filter(|d| d.get_str("span") == Ok(span))
            .filter_map(|d| d.get_str("data").ok().map(str::len))
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len().max(1);
        println!("a {span}'s rollup: {} KB of data on average", mean / 1024);
    }
    insert(&db, "site_daily", site_days).await;
    insert(&db, "rollups", rollups).await;
    let (mut catalog, mut stats, mut index) = (Vec::new(), Vec::new(), VideoIndex::default());
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
            index.videos.push(VideoReach {
                video_id: v.video_id.clone(),
                foss: v.foss.clone(),
                viewers: v.viewers,
                coverage_mean: v.coverage_mean,
            });
            stats.push(v.to_document().unwrap());
        }
    }
    insert(&db, "catalog", catalog).await;
    insert(&db, "video_stats", stats).await;
    // The video index, as the derivation writes it after the videos.
    index.videos.sort_by(|a, b| a.video_id.cmp(&b.video_id));
    let mut videos = Rollup::videos(&index).unwrap();
    (videos.fence, videos.derived_at) = (1, now);
    insert(&db, "rollups", vec![videos.to_document().unwrap()]).await;
    // One learner's history: 400 sessions over the year.
    let start_of_year = last_day() - chrono::Duration::days(DAYS - 1);
    let sessions: Vec<Document> = (0..400)
        .map(|k| {
            let start = midnight(start_of_year) + chrono::Duration::hours(k * 21);
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
        "MongoDB: {kind}; {SEEDED} days seeded in {:.0} s ({} page views a day)\n",
        started.elapsed().as_secs_f64(),
        per_day
    );
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db_name);
    let app = StaffRouter::new(AnalyticsReader::new(&db), staff).into_router();
    // The last 30 days and the last year as of 29 November: neither is made
    // of whole months (30 days, and 11 months and 30 days); then the year
    // with the most days outside whole months, 2 November to 30 October.
    let to = last_day() - chrono::Duration::days(1);
    let month = format!("from={}&to={to}", to - chrono::Duration::days(29));
    let year = format!("from={}&to={to}", to - chrono::Duration::days(DAYS - 1));
    let worst = "from=2025-11-02&to=2026-10-30".to_owned();
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
        for (range, q) in [
            ("30 days", &month),
            ("a year", &year),
            ("a year, 59 edge days", &worst),
        ] {
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
