//! The analytics through the real consumer: a scripted day of traffic goes
//! onto the queue, and the derived collections hold the figures the rules
//! give; the same traffic replayed, reordered, or consumed by two
//! consumers at once, gives the very same documents.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType, Learner, RequestRecord, Tutorial};
use visitlog_tests::{Namespace, eventually, push, shared_mongodb_uri, test_database};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(90);

/// The collections the analytics write.
const DERIVED: [&str; 6] = [
    "page_views",
    "sessions",
    "video_stats",
    "tutorial_daily",
    "site_daily",
    "rollups",
];

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, h, m, s).unwrap()
}

fn id_at(ts: DateTime<Utc>, n: u16) -> Uuid {
    // Distinct ids for records of the same millisecond, still in time order.
    let base = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ts.timestamp() as u64,
        ts.timestamp_subsec_nanos(),
    ));
    let mut bytes = *base.as_bytes();
    bytes[8] = 0x80;
    bytes[9] = (n >> 8) as u8;
    bytes[10] = n as u8;
    Uuid::from_bytes(bytes)
}

/// A user and their browser's visitor id.
type Who = (&'static str, u128);

struct Traffic {
    payloads: Vec<Vec<u8>>,
    n: u16,
}

impl Traffic {
    fn new() -> Self {
        Self {
            payloads: Vec::new(),
            n: 0,
        }
    }

    fn next(&mut self) -> u16 {
        self.n += 1;
        self.n
    }

    /// A page of `user` (or anonymous) on `visitor`'s visit `visit`.
    #[allow(clippy::too_many_arguments)]
    fn page(
        &mut self,
        ts: DateTime<Utc>,
        path: &str,
        user: Option<&str>,
        visitor: u128,
        visit: u32,
        tutorial: Option<(&str, &str, &str)>,
        ua: (&str, &str, bool),
        staff: bool,
    ) -> Uuid {
        let mut r = RequestRecord::example();
        r.id = id_at(ts, self.next());
        r.ts = ts;
        r.path = path.to_owned();
        r.user = user.map(str::to_owned);
        r.visitor_id = Some(Uuid::from_u128(visitor));
        r.visit_number = Some(visit);
        r.new_visit = Some(false);
        r.returning = Some(visit > 1);
        r.tutorial = tutorial.map(|(f, t, l)| Tutorial {
            foss: f.into(),
            tutorial: t.into(),
            language: l.into(),
        });
        r.ua.name = Some(ua.0.to_owned());
        r.ua.os = Some(ua.1.to_owned());
        r.ua.is_bot = ua.2;
        r.staff = staff;
        self.payloads.push(serde_json::to_vec(&r).unwrap());
        r.id
    }

    fn event(&mut self, ts: DateTime<Utc>, (user, visitor): Who, kind: EventType) -> EventRecord {
        let mut e = EventRecord::example();
        e.id = id_at(ts, self.next());
        e.ts = ts;
        e.event_type = kind;
        e.learner = Learner::User(user.into()).key();
        e.user = Some(user.into());
        e.visitor_id = Some(Uuid::from_u128(visitor));
        e.visit_number = Some(1);
        e.foss = "Python".into();
        e.tutorial = "Functions".into();
        e.language = "English".into();
        e.video_id = None;
        e.position = None;
        e.duration = None;
        e.played_from = None;
        e.rate = None;
        e
    }

    fn ping(
        &mut self,
        ts: DateTime<Utc>,
        (user, visitor): Who,
        page: Uuid,
        kind: EventType,
        active_ms: u64,
    ) {
        let mut e = self.event(ts, (user, visitor), kind);
        // The endpoint stamps staff from the identity hook.
        e.staff = user == "tom";
        e.page_view = Some(page);
        e.active_ms = Some(active_ms);
        self.payloads.push(serde_json::to_vec(&e).unwrap());
    }

    fn watch(
        &mut self,
        ts: DateTime<Utc>,
        (user, visitor): Who,
        page: Uuid,
        kind: EventType,
        from: f64,
        to: f64,
    ) {
        let mut e = self.event(ts, (user, visitor), kind);
        e.video_id = Some("py-functions-en".into());
        e.duration = Some(120.0);
        e.position = Some(to);
        e.played_from = (kind != EventType::VideoPlay).then_some(from);
        e.page_view = Some(page);
        self.payloads.push(serde_json::to_vec(&e).unwrap());
    }
}

const FIREFOX: (&str, &str, bool) = ("Firefox", "Linux", false);
const PHONE: (&str, &str, bool) = ("Chrome", "Android", false);
const BOT: (&str, &str, bool) = ("Googlebot", "UNKNOWN", true);
const FUNCTIONS: Option<(&str, &str, &str)> = Some(("Python", "Functions", "English"));

/// A morning of one learner on two devices, a staff member and a bot.
fn morning() -> Traffic {
    let mut t = Traffic::new();
    // Ann, on her laptop: the home page, then the tutorial for a minute
    // and a half with pings, watching the video, then a last page.
    t.page(at(9, 0, 0), "/", Some("ann"), 1, 1, None, FIREFOX, false);
    let tutorial = t.page(
        at(9, 0, 20),
        "/watch/Python/Functions/English/",
        Some("ann"),
        1,
        1,
        FUNCTIONS,
        FIREFOX,
        false,
    );
    t.watch(
        at(9, 0, 25),
        ("ann", 1),
        tutorial,
        EventType::VideoPlay,
        0.0,
        0.0,
    );
    t.ping(
        at(9, 0, 35),
        ("ann", 1),
        tutorial,
        EventType::PagePing,
        15_000,
    );
    t.ping(
        at(9, 0, 50),
        ("ann", 1),
        tutorial,
        EventType::PagePing,
        45_000,
    );
    t.watch(
        at(9, 1, 25),
        ("ann", 1),
        tutorial,
        EventType::VideoPause,
        0.0,
        60.0,
    );
    t.ping(
        at(9, 1, 50),
        ("ann", 1),
        tutorial,
        EventType::PageHide,
        5_000,
    );
    t.page(
        at(9, 2, 0),
        "/about/",
        Some("ann"),
        1,
        1,
        None,
        FIREFOX,
        false,
    );
    // Twenty minutes later on her phone: the same session (a learner's, not a browser's).
    t.page(at(9, 22, 0), "/", Some("ann"), 2, 1, None, PHONE, false);
    // An hour later: a new session.
    t.page(at(10, 30, 0), "/", Some("ann"), 1, 2, None, FIREFOX, false);
    // A ping naming no page of hers (forged, or lost): no activity.
    t.ping(
        at(11, 30, 0),
        ("ann", 1),
        Uuid::from_u128(99),
        EventType::PagePing,
        15_000,
    );
    // Staff and a bot: stored, counted nowhere.
    let staff = t.page(
        at(9, 5, 0),
        "/watch/Python/Functions/English/",
        Some("tom"),
        3,
        1,
        FUNCTIONS,
        FIREFOX,
        true,
    );
    t.ping(at(9, 5, 15), ("tom", 3), staff, EventType::PagePing, 15_000);
    t.page(
        at(9, 6, 0),
        "/watch/Python/Functions/English/",
        None,
        4,
        1,
        FUNCTIONS,
        BOT,
        false,
    );
    t
}

/// The derived collections, without `derived_at` and `fence` (when and by
/// which claim, not what).
async fn snapshot(uri: &str, db: &str) -> BTreeMap<&'static str, Vec<Document>> {
    let mut out = BTreeMap::new();
    for name in DERIVED {
        let mut docs = common::documents(uri, db, name).await;
        for d in &mut docs {
            d.remove("derived_at");
            d.remove("fence");
        }
        out.insert(name, docs);
    }
    out
}

/// Waits until every payload is stored and no analytics key is pending.
async fn settled(uri: &str, db: &str, ns: &Namespace, records: u64) {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let db = client.database(db);
    eventually(WAIT, Duration::from_millis(200), async || {
        let stored = db
            .collection::<Document>("request_logs")
            .count_documents(doc! {})
            .await
            .unwrap()
            + db.collection::<Document>("events")
                .count_documents(doc! {})
                .await
                .unwrap();
        let pending = db
            .collection::<Document>("derivations")
            .count_documents(doc! {})
            .await
            .unwrap();
        let (queued, processing) = visitlog_tests::queue_lengths(ns.redis_url(), ns.queue())
            .await
            .unwrap();
        if stored >= records && pending == 0 && queued == 0 && processing == 0 {
            Ok(())
        } else {
            Err(format!(
                "stored {stored} of {records}, {pending} keys pending, {queued} queued"
            ))
        }
    })
    .await
    .unwrap();
}

fn analytics_config(
    ns: &Namespace,
    uri: &str,
    db: &str,
    id: &str,
) -> visitlog_consumer::config::Config {
    visitlog_consumer::config::Config {
        derive_interval: Duration::from_millis(200),
        batch_size: 4,
        ..config(ns, uri, db, id)
    }
}

/// Runs `payloads` through `consumers` consumers and returns the derived
/// collections.
async fn derive(payloads: &[Vec<u8>], consumers: usize) -> BTreeMap<&'static str, Vec<Document>> {
    derive_in(payloads, consumers, &test_database()).await
}

async fn derive_in(
    payloads: &[Vec<u8>],
    consumers: usize,
    db: &str,
) -> BTreeMap<&'static str, Vec<Document>> {
    let uri = shared_mongodb_uri();
    let db = db.to_owned();
    let ns = Namespace::new();
    push(ns.redis_url(), ns.queue(), payloads).await.unwrap();
    let running: Vec<InProcess> = (0..consumers)
        .map(|i| InProcess::start(analytics_config(&ns, &uri, &db, &format!("c{i}"))))
        .collect();
    let mut distinct = payloads.to_vec();
    distinct.sort();
    distinct.dedup();
    settled(&uri, &db, &ns, distinct.len() as u64).await;
    for c in running {
        c.stop().await;
    }
    snapshot(&uri, &db).await
}

fn by_id<'a>(docs: &'a [Document], id: &str) -> &'a Document {
    docs.iter()
        .find(|d| d.get_str("_id") == Ok(id))
        .unwrap_or_else(|| panic!("no {id} in {docs:?}"))
}

fn f64_of(d: &Document, key: &str) -> Option<f64> {
    match d.get(key) {
        Some(Bson::Double(f)) => Some(*f),
        Some(Bson::Int32(n)) => Some(f64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n as f64),
        _ => None,
    }
}

#[tokio::test]
async fn a_morning_of_traffic_gives_the_figures_the_rules_say() {
    let traffic = morning();
    let db = test_database();
    let derived = derive_in(&traffic.payloads, 1, &db).await;
    let pages = &derived["page_views"];
    // Staff and the bot have no page view.
    assert_eq!(pages.len(), 5, "{pages:#?}");
    let by_path = |path: &str, h: u32| {
        pages
            .iter()
            .find(|d| {
                d.get_str("path") == Ok(path)
                    && d.get_datetime("start")
                        .unwrap()
                        .to_chrono()
                        .format("%H")
                        .to_string()
                        == format!("{h:02}")
            })
            .unwrap()
    };
    let home = by_path("/", 9);
    assert_eq!(
        f64_of(home, "time_on_page_s"),
        Some(20.0),
        "to the next page of the visit"
    );
    assert_eq!(home.get_bool("estimated"), Ok(true));
    let tutorial = by_path("/watch/Python/Functions/English/", 9);
    assert_eq!(
        f64_of(tutorial, "time_on_page_s"),
        Some(90.0),
        "to the last ping"
    );
    assert_eq!(tutorial.get_bool("estimated"), Ok(false));
    assert_eq!(
        f64_of(tutorial, "engaged_s"),
        Some(40.0),
        "15 + 20 (capped) + 5"
    );
    let last = by_path("/about/", 9);
    assert_eq!(
        last.get("time_on_page_s"),
        Some(&Bson::Null),
        "the last page without pings is unknown, not 0"
    );

    let sessions = &derived["sessions"];
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let first = &sessions
        .iter()
        .find(|s| s.get_datetime("start").unwrap().to_chrono() == at(9, 0, 0))
        .unwrap();
    assert_eq!(
        first.get_datetime("end").unwrap().to_chrono(),
        at(9, 22, 0),
        "across devices"
    );
    assert_eq!(
        first
            .get_i64("page_views")
            .or_else(|_| first.get_i32("page_views").map(i64::from)),
        Ok(4)
    );
    assert_eq!(f64_of(first, "video_s"), Some(60.0));
    assert_eq!(first.get_array("devices").unwrap().len(), 2);
    assert_eq!(first.get_bool("bounce"), Ok(false));

    let video = by_id(&derived["video_stats"], "py-functions-en");
    assert_eq!(f64_of(video, "viewers"), Some(1.0));
    assert_eq!(f64_of(video, "watch_s"), Some(60.0));
    assert_eq!(f64_of(video, "users_at_start"), Some(1.0));
    assert_eq!(f64_of(video, "users_at_end"), Some(0.0));

    let daily = &derived["tutorial_daily"];
    assert_eq!(daily.len(), 1, "{daily:#?}");
    assert_eq!(
        f64_of(&daily[0], "page_views"),
        Some(1.0),
        "staff and bots excluded"
    );
    assert_eq!(f64_of(&daily[0], "video_s"), Some(60.0));
    let site = by_id(&derived["site_daily"], "2026-11-20");
    assert_eq!(f64_of(site, "page_views"), Some(5.0));
    assert_eq!(f64_of(site, "visits"), Some(3.0));
    assert_eq!(f64_of(site, "sessions"), Some(2.0));
    assert_eq!(f64_of(site, "learners"), Some(1.0));
    // The day's rollup holds the same figures, and its month's the day's.
    let rollups = &derived["rollups"];
    let ids: Vec<&str> = rollups
        .iter()
        .filter_map(|d| d.get_str("_id").ok())
        .collect();
    assert_eq!(ids, ["day:2026-11-20", "month:2026-11", "videos"]);
    let index = visitlog_analytics::Rollup::from_document(&{
        let mut d = by_id(rollups, "videos").clone();
        d.insert("fence", 0_i64);
        d.insert("derived_at", bson::DateTime::now());
        d
    })
    .unwrap()
    .video_index()
    .unwrap();
    let reach: Vec<(&str, u64, Option<f64>)> = index
        .videos
        .iter()
        .map(|v| (v.video_id.as_str(), v.viewers, v.coverage_mean))
        .collect();
    assert_eq!(
        reach,
        [("py-functions-en", 1, Some(0.5))],
        "as in video_stats"
    );
    let period =
        |id| visitlog_analytics::period_of(by_id(rollups, id).get_str("data").unwrap()).unwrap();
    let (day, month) = (period("day:2026-11-20"), period("month:2026-11"));
    assert_eq!(day.totals.page_views, 5);
    assert_eq!(day.sessions, 2);
    assert_eq!(
        (day.reach.visitors.count(), day.reach.learners.count()),
        (2, 1)
    );
    assert_eq!(day.tutorials.len(), 1);
    assert_eq!(day.tutorials[0].totals.video_s, 60.0);
    assert_eq!(month, day, "a month of one day is that day");

    // The terminal report reads the same figures back.
    let sink = visitlog_consumer::sink::Sink::new(&shared_mongodb_uri(), &db)
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let range = |d| visitlog_analytics::staff::Range::new(d, d, Vec::new()).unwrap();
    let report = visitlog_consumer::report::report(&sink, &range(day))
        .await
        .unwrap();
    let o = &report.overview;
    assert_eq!(
        (o.page_views, o.visits, o.visitors, o.learners, o.sessions),
        (5, 3, 2, 1, Some(2))
    );
    assert_eq!(report.tutorials.len(), 1);
    assert_eq!(report.tutorials[0].views, 1);
    assert!(report.table().contains("Python: Functions (English)"));
    let before = day.pred_opt().unwrap();
    let empty = visitlog_consumer::report::report(&sink, &range(before))
        .await
        .unwrap();
    let empty = (empty.overview.page_views, empty.tutorials.len());
    assert_eq!(empty, (0, 0), "no catalog here and nothing viewed: no row");
}

#[tokio::test]
async fn replays_reorders_and_two_consumers_give_the_same_documents() {
    let traffic = morning();
    let once = derive(&traffic.payloads, 1).await;
    assert!(!once["sessions"].is_empty());
    let mut replayed = traffic.payloads.clone();
    replayed.extend(traffic.payloads.iter().cloned());
    assert_eq!(derive(&replayed, 1).await, once, "replayed");
    let mut reversed = traffic.payloads.clone();
    reversed.reverse();
    assert_eq!(derive(&reversed, 1).await, once, "reversed");
    assert_eq!(derive(&reversed, 2).await, once, "two consumers");
}
