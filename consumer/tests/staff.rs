//! The staff router against traffic this test sends through a consumer:
//! every endpoint's figures exact, the 401/403 rules, scopes, the privacy
//! floor and CSV.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bson::{Document, doc};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;
use visitlog_analytics::staff::{Access, AnalyticsReader, Scope, StaffRouter};
use visitlog_schema::{
    CatalogItem, CatalogRecord, EventRecord, EventType, Learner, RequestRecord, Tutorial,
};
use visitlog_tests::{Namespace, eventually, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(120);
const D1: &str = "2026-11-20";
const D2: &str = "2026-11-21";

fn at(day: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, s).unwrap()
}

#[derive(Default)]
struct Traffic {
    payloads: Vec<Vec<u8>>,
}

impl Traffic {
    /// A tutorial page of `user` (or anonymous) on browser `visitor`.
    fn page(
        &mut self,
        ts: DateTime<Utc>,
        user: Option<&str>,
        visitor: u128,
        t: (&str, &str),
    ) -> Uuid {
        let mut r = RequestRecord::example();
        r.id = Uuid::now_v7();
        r.ts = ts;
        r.path = format!("/watch/{}/{}/English/", t.0, t.1);
        r.user = user.map(str::to_owned);
        r.visitor_id = Some(Uuid::from_u128(visitor));
        r.visit_number = Some(1);
        r.new_visit = Some(true);
        r.returning = Some(false);
        r.tutorial = Some(Tutorial {
            foss: t.0.into(),
            tutorial: t.1.into(),
            language: "English".into(),
        });
        self.payloads.push(serde_json::to_vec(&r).unwrap());
        r.id
    }

    fn event(
        &mut self,
        ts: DateTime<Utc>,
        user: &str,
        visitor: u128,
        t: (&str, &str),
        kind: EventType,
    ) -> EventRecord {
        let mut e = EventRecord::example();
        e.id = Uuid::now_v7();
        e.ts = ts;
        e.event_type = kind;
        e.learner = Learner::User(user.into()).key();
        e.user = Some(user.into());
        e.visitor_id = Some(Uuid::from_u128(visitor));
        e.visit_number = Some(1);
        e.foss = t.0.into();
        e.tutorial = t.1.into();
        e.language = "English".into();
        e.video_id = None;
        e.position = None;
        e.duration = None;
        e.played_from = None;
        e.rate = None;
        e
    }

    /// `user` plays `video` (of `duration` s) from 0 to `to` on `page`.
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &mut self,
        ts: DateTime<Utc>,
        user: &str,
        visitor: u128,
        t: (&str, &str),
        page: Uuid,
        video: (&str, f64),
        to: f64,
    ) {
        for (kind, dt, from, pos) in [
            (EventType::VideoPlay, 2, None, 0.0),
            (EventType::VideoPause, 2 + to as i64, Some(0.0), to),
        ] {
            let mut e = self.event(ts + chrono::Duration::seconds(dt), user, visitor, t, kind);
            e.video_id = Some(video.0.into());
            e.duration = Some(video.1);
            e.position = Some(pos);
            e.played_from = from;
            e.page_view = Some(page);
            self.payloads.push(serde_json::to_vec(&e).unwrap());
        }
    }

    fn ping(&mut self, ts: DateTime<Utc>, user: &str, visitor: u128, t: (&str, &str), page: Uuid) {
        let mut e = self.event(ts, user, visitor, t, EventType::PagePing);
        e.page_view = Some(page);
        e.active_ms = Some(15_000);
        self.payloads.push(serde_json::to_vec(&e).unwrap());
    }

    fn complete(
        &mut self,
        ts: DateTime<Utc>,
        user: &str,
        visitor: u128,
        t: (&str, &str),
        page: Uuid,
    ) {
        let mut e = self.event(ts, user, visitor, t, EventType::TutorialComplete);
        e.page_view = Some(page);
        self.payloads.push(serde_json::to_vec(&e).unwrap());
    }
}

const FUNCTIONS: (&str, &str) = ("Python", "Functions");
const START: (&str, &str) = ("Python", "Getting-started");
const VECTORS: (&str, &str) = ("Scilab", "Vectors");

fn item(t: (&str, &str), video: &str, duration: f64, order: u32) -> CatalogItem {
    CatalogItem {
        foss: t.0.into(),
        tutorial: t.1.into(),
        language: "English".into(),
        video_id: video.into(),
        title: format!("{}: {}", t.0, t.1),
        duration: Some(duration),
        order,
        main: true,
        level: None,
    }
}

/// Two days: six learners on Python Functions (five watch half its video,
/// one pings, one marks it complete), an anonymous visitor, two learners
/// on Scilab Vectors (one watches a third); Getting-started is in the
/// catalog and never opened.
fn two_days() -> Traffic {
    let mut t = Traffic::default();
    let version = at(19, 12, 0, 0);
    for (foss, items) in [
        (
            "Python",
            vec![
                item(FUNCTIONS, "py-functions", 120.0, 2),
                item(START, "py-start", 60.0, 1),
            ],
        ),
        ("Scilab", vec![item(VECTORS, "scilab-vectors", 90.0, 1)]),
    ] {
        t.payloads
            .push(serde_json::to_vec(&CatalogRecord::at(foss, items, version)).unwrap());
    }
    for i in 1..=6u32 {
        let user = format!("u{i}");
        let ts = at(20, 9, i, 0);
        let page = t.page(ts, Some(&user), u128::from(i), FUNCTIONS);
        if i <= 5 {
            t.watch(
                ts,
                &user,
                u128::from(i),
                FUNCTIONS,
                page,
                ("py-functions", 120.0),
                60.0,
            );
        }
        if i == 1 {
            t.ping(
                ts + chrono::Duration::seconds(30),
                &user,
                1,
                FUNCTIONS,
                page,
            );
            t.complete(
                ts + chrono::Duration::seconds(40),
                &user,
                1,
                FUNCTIONS,
                page,
            );
        }
    }
    t.page(at(21, 8, 0, 0), None, 20, FUNCTIONS);
    let a = t.page(at(21, 10, 0, 0), Some("a"), 11, VECTORS);
    t.watch(
        at(21, 10, 0, 0),
        "a",
        11,
        VECTORS,
        a,
        ("scilab-vectors", 90.0),
        30.0,
    );
    t.page(at(21, 11, 0, 0), Some("b"), 12, VECTORS);
    t
}

/// Sends the traffic through a consumer and waits for the derivations.
async fn derived() -> (String, String) {
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let ns = Namespace::new();
    let traffic = two_days();
    push(ns.redis_url(), ns.queue(), &traffic.payloads)
        .await
        .unwrap();
    let consumer = InProcess::start(visitlog_consumer::config::Config {
        derive_interval: Duration::from_millis(200),
        ..config(&ns, &uri, &db, "staff")
    });
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let d = client.database(&db);
    eventually(WAIT, Duration::from_millis(250), async || {
        let count = |name: &'static str, filter: Document| {
            let c = d.collection::<Document>(name);
            async move { c.count_documents(filter).await.unwrap() }
        };
        let pending = count("derivations", doc! {}).await;
        let videos = count("video_stats", doc! { "viewers": { "$gt": 0 } }).await;
        let days = count("site_daily", doc! {}).await;
        let pages = count("page_views", doc! {}).await;
        match (pending, videos, days, pages) {
            (0, 2, 2, 9) => Ok(()),
            other => Err(format!(
                "pending, watched videos, days, page views: {other:?}"
            )),
        }
    })
    .await
    .unwrap();
    consumer.stop().await;
    (uri, db)
}

/// Grants by a test header: the app's staff check stands in for this.
fn access(parts: &axum::http::request::Parts) -> Access {
    match parts.headers.get("x-test").and_then(|v| v.to_str().ok()) {
        None => Access::Unauthenticated,
        Some("staff") => Access::Learners(Scope::all().viewer("admin")),
        Some("aggregates") => Access::Aggregates(Scope::all()),
        Some("scilab") => Access::Aggregates(Scope::foss(["Scilab"])),
        Some(_) => Access::Denied,
    }
}

struct Api(axum::Router);

impl Api {
    async fn get(
        &self,
        who: Option<&str>,
        uri: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::get(uri);
        if let Some(who) = who {
            req = req.header("x-test", who);
        }
        let res = self
            .0
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    async fn json(&self, who: &str, uri: &str) -> Value {
        let (status, headers, body) = self.get(Some(who), uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        serde_json::from_str(&body).unwrap()
    }
}

fn range(uri: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}from={D1}&to={D2}")
}

#[tokio::test]
async fn staff_see_exact_figures_learners_see_nothing_and_the_floor_hides_the_few() {
    let (uri, db) = derived().await;
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let reader = AnalyticsReader::new(&client.database(&db));
    let api = Api(StaffRouter::new(reader, access).into_router());

    // --- who may ask
    let (status, headers, body) = api.get(None, "/api/overview").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    for path in [
        "/api/overview",
        "/api/tutorials",
        "/api/unwatched",
        "/api/videos/py-functions",
        "/api/learners/u1",
    ] {
        let (status, _, body) = api.get(Some("learner"), path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            !body.contains("py-functions\",") && !body.contains("u1\""),
            "nothing leaks: {body}"
        );
    }
    let (status, _, _) = api
        .get(Some("aggregates"), &range("/api/learners/u1"))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a learner's data needs Learners"
    );

    // --- the overview, as staff
    let o = api.json("staff", &range("/api/overview")).await;
    assert_eq!(o["page_views"], json!(9));
    assert_eq!(o["visits"], json!(9));
    assert_eq!(o["visitors"], json!(9), "nine browsers");
    assert_eq!(
        o["learners"],
        json!(8),
        "the anonymous visitor is not a learner"
    );
    assert_eq!(o["video_s"], json!(330.0), "5 × 60 s + 30 s");
    assert_eq!(o["completions"], json!(1));
    assert_eq!(
        o["avg_time_on_page_s"],
        json!(30.0),
        "the one page with a ping"
    );
    assert_eq!(o["series"].as_array().unwrap().len(), 2);
    assert_eq!(o["series"][0]["day"], json!(D1));
    assert_eq!(o["series"][0]["page_views"], json!(6));
    assert_eq!(o["series"][1]["page_views"], json!(3));
    let sessions = o["sessions"].as_u64().unwrap();
    assert!(sessions >= 8, "one per learner at least: {o}");
    assert!(o["bounce_rate"].as_f64().unwrap() > 0.0);
    assert!(o["avg_session_s"].as_f64().is_some());
    assert_eq!(o["hidden"], json!(false));

    // --- tutorials
    let t = api.json("staff", &range("/api/tutorials")).await;
    let rows = t["tutorials"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "the unopened catalog tutorial too: {t}");
    let row = |name: &str| rows.iter().find(|r| r["tutorial"] == json!(name)).unwrap();
    let f = row("Functions");
    assert_eq!(
        (&f["views"], &f["visitors"], &f["learners"]),
        (&json!(7), &json!(7), &json!(6))
    );
    assert_eq!(
        (&f["completions"], &f["video_s"], &f["watched"]),
        (&json!(1), &json!(300.0), &json!(true))
    );
    assert_eq!(f["video_id"], json!("py-functions"));
    assert_eq!(
        f["coverage_mean"],
        json!(0.5),
        "60 of 120 s for each of five viewers"
    );
    let v = row("Vectors");
    assert_eq!(
        (&v["views"], &v["learners"], &v["watched"]),
        (&json!(2), &json!(2), &json!(true))
    );
    let s = row("Getting-started");
    assert_eq!(
        (&s["views"], &s["watched"], &s["video_id"]),
        (&json!(0), &json!(false), &json!("py-start"))
    );
    assert_eq!(rows[0]["tutorial"], json!("Functions"), "most viewed first");

    // --- the floor: 2 learners on Vectors are hidden below Learners, 6 on Functions are not
    let t = api.json("aggregates", &range("/api/tutorials")).await;
    let rows = t["tutorials"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["tutorial"] == json!(name)).unwrap();
    assert_eq!(row("Vectors")["hidden"], json!(true));
    assert!(row("Vectors")["views"].is_null() && row("Vectors")["completions"].is_null());
    assert_eq!(row("Vectors")["foss"], json!("Scilab"), "names stay");
    assert_eq!(row("Functions")["views"], json!(7));
    assert_eq!(
        row("Getting-started")["hidden"],
        json!(false),
        "no learner, nothing to hide"
    );

    // --- a video
    let v = api.json("staff", "/api/videos/py-functions").await;
    assert_eq!(
        (&v["viewers"], &v["plays"], &v["watch_s"]),
        (&json!(5), &json!(5), &json!(300.0))
    );
    assert_eq!(
        (&v["users_at_start"], &v["users_at_end"]),
        (&json!(5), &json!(0))
    );
    assert_eq!(v["title"], json!("Python: Functions"));
    let segments = v["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 24, "120 s in 5 s segments");
    assert_eq!(segments[11]["viewers"], json!(5));
    assert_eq!(segments[12]["viewers"], json!(0));
    let few = api.json("aggregates", "/api/videos/scilab-vectors").await;
    assert_eq!(
        (&few["hidden"], &few["viewers"], &few["segments"]),
        (&json!(true), &Value::Null, &Value::Null)
    );
    let (status, _, _) = api.get(Some("staff"), "/api/videos/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // --- unwatched
    let u = api.json("staff", &range("/api/unwatched")).await;
    let ids: Vec<&str> = u["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["py-start"]);
    let u = api
        .json("staff", &format!("/api/unwatched?from={D2}&to={D2}"))
        .await;
    let ids: Vec<&str> = u["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["py-start", "py-functions"],
        "catalog order; Functions had no video second on {D2}"
    );

    // --- one learner
    let l = api.json("staff", &range("/api/learners/u1")).await;
    assert_eq!(l["learner"], json!("user:u1"));
    let tutorials = l["tutorials"].as_array().unwrap();
    assert_eq!(tutorials.len(), 1);
    assert_eq!(
        (&tutorials[0]["completed"], &tutorials[0]["completed_by"]),
        (&json!(true), &json!("manual"))
    );
    assert_eq!(l["sessions"].as_array().unwrap().len(), 1);
    let l = api.json("staff", &range("/api/learners/user:nobody")).await;
    assert_eq!(l["tutorials"], json!([]));

    // --- a part of the site: Scilab only
    let (status, _, body) = api
        .get(Some("scilab"), &range("/api/overview?foss=Python"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = api.get(Some("scilab"), "/api/videos/py-functions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let t = api.json("scilab", &range("/api/tutorials")).await;
    assert_eq!(t["foss"], json!(["Scilab"]));
    assert_eq!(t["tutorials"].as_array().unwrap().len(), 1);
    let o = api.json("scilab", &range("/api/overview")).await;
    assert_eq!(o["hidden"], json!(true), "two learners: under the floor");
    assert!(o["page_views"].is_null());
    let o = api.json("staff", &range("/api/overview?foss=Scilab")).await;
    assert_eq!(
        (&o["page_views"], &o["learners"], &o["video_s"]),
        (&json!(2), &json!(2), &json!(30.0))
    );
    assert!(
        o["sessions"].is_null() && o["countries"] == json!([]),
        "site-only figures"
    );

    // --- CSV
    let (status, headers, body) = api
        .get(Some("staff"), &range("/api/tutorials?format=csv"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("tutorials-2026-11-20-2026-11-21.csv")
    );
    let mut csv = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(&csv.headers().unwrap()[0], "foss");
    let records: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    assert_eq!((&records[0][1], &records[0][4]), ("Functions", "7"));
    for path in [
        "/api/overview",
        "/api/unwatched",
        "/api/videos/py-functions",
        "/api/learners/u1",
    ] {
        let (status, headers, body) = api
            .get(Some("staff"), &range(&format!("{path}?format=csv")))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/csv; charset=utf-8",
            "{path}"
        );
        assert!(
            body.lines().count() >= 2,
            "{path}: a header and rows: {body}"
        );
    }

    // --- bad questions
    for (q, says) in [
        ("/api/overview?from=2026-02-30", "YYYY-MM-DD"),
        ("/api/overview?from=2020-01-01&to=2026-01-01", "at most 366"),
        ("/api/tutorials?format=xml", "json or csv"),
        ("/api/overview?from=2026-11-21&to=2026-11-20", "before"),
    ] {
        let (status, _, body) = api.get(Some("staff"), q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(body.contains(says), "{q}: {body}");
    }
}
