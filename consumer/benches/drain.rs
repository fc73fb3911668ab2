//! How fast the consumer drains the queue, what it costs, and whether it or
//! the database is the bottleneck.
//!
//! Run with: `scripts/bench` (or `cargo bench -p visitlog-consumer --bench drain`
//! with `scripts/services` running). Reports, against the services' MongoDB:
//! - `raw insert_many`: documents/s of unordered `insert_many` of the plain
//!   records' documents, made beforehand, in batches of 1000 from one
//!   client, the most this server takes; and the client's CPU per document
//!   meanwhile, the driver's and the runtime's floor under a drain;
//! - `seed`: the seed design's Python bulk consumer (`benches/seed/consumer.py`:
//!   `LPOP 1000`, `json.loads`, `insert_many`) on the same plain records:
//!   its rate and its CPU per record, start-up excluded;
//! - `drain`: records/s from a pre-filled queue into `request_logs` by the
//!   real `visitlog-consumer` binary, and its own CPU time per record (from
//!   /proc, from its first batch on: start-up excluded), for plain request
//!   records at several batch sizes and for tutorial page views (which also
//!   derive a `page.view` event, a learner link and analytics marks);
//! - `learning`: the same for learning events (video heartbeats of many
//!   learners, interleaved), which also derive `video_positions` and
//!   `tutorial_progress`;
//! - `mix`: a realistic mix (60 % page views of tutorial pages, 30 % other
//!   requests, 10 % learning events and pings; 1,000 learners, 50
//!   tutorials in 3 languages) with the analytics off and on: the drain
//!   rate, and with them on also the time and CPU until every figure is
//!   computed (no key pending).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use visitlog_consumer::batch::request_document;
use visitlog_consumer::sink::Sink;
use visitlog_schema::RequestRecord;
use visitlog_tests::{Namespace, count, queue_lengths, shared_mongodb_uri, test_database};

/// The daemon's allocator, set up as it does, so that the raw
/// `insert_many` below costs what the driver costs inside the daemon.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BUILT: &str = env!("CARGO_BIN_EXE_visitlog-consumer");

/// The consumer binary: this build's, or `VISITLOG_BENCH_CONSUMER` (an
/// older build, for a before and after in one run).
fn bin() -> String {
    std::env::var("VISITLOG_BENCH_CONSUMER").unwrap_or_else(|_| BUILT.to_owned())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces): utime is 14th, stime 15th overall.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0);
    ticks as f64 / hz
}

/// Unordered `insert_many` of already-made documents, 1000 a call from one
/// client: documents/s, and this process's CPU per document meanwhile (the
/// driver's and the runtime's share of a drain, with nothing to parse).
async fn raw_insert_many(uri: &str, n: usize) -> (f64, f64) {
    // The same collection as the consumer writes: validator and indexes.
    let db = test_database();
    let sink = Sink::new(uri, &db).await.unwrap();
    sink.setup(&visitlog_consumer::sink::Retention::default())
        .await
        .unwrap();
    let coll = sink
        .request_logs()
        .clone_with_type::<bson::RawDocumentBuf>();
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    // The plain records the drains below take, as the consumer stores them.
    let docs: Vec<bson::RawDocumentBuf> = (0..n)
        .map(|i| {
            let payload = visitlog_tests::plain_request_payload(i);
            let r: RequestRecord = serde_json::from_slice(&payload).unwrap();
            request_document(&r).unwrap()
        })
        .collect();
    let pid = std::process::id();
    let cpu = cpu_seconds(pid);
    let started = Instant::now();
    for chunk in docs.chunks(1000) {
        coll.insert_many(chunk).ordered(false).await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid) - cpu) * 1e6 / n as f64;
    client.database(&db).drop().await.unwrap();
    (rate, cpu)
}

/// Video heartbeats of `learners` learners, 10 s apart, interleaved, in
/// server-time order as the middleware would queue them.
fn learning_payloads(n: usize, learners: usize) -> Vec<Vec<u8>> {
    let t0 = chrono::Utc::now() - chrono::Duration::hours(2);
    (0..n)
        .map(|i| {
            let learner = i % learners;
            let step = (i / learners) as f64;
            let mut e = visitlog_schema::EventRecord::example();
            e.ts = t0 + chrono::Duration::milliseconds(i as i64);
            e.id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                e.ts.timestamp() as u64,
                e.ts.timestamp_subsec_nanos(),
            ));
            e.learner = format!("user:learner{learner}");
            e.user = Some(format!("learner{learner}"));
            e.tutorial = format!("Tutorial-{}", learner % 5);
            e.video_id = Some(format!("Python/Tutorial-{}/English", learner % 5));
            e.duration = Some(3600.0);
            e.played_from = Some((step * 10.0) % 3590.0);
            e.position = Some((step * 10.0) % 3590.0 + 10.0);
            serde_json::to_vec(&e).unwrap()
        })
        .collect()
}

/// `n` records of a site's traffic: 1,000 learners moving through 50
/// tutorials in 3 languages, each tutorial page followed by pings and
/// video heartbeats, between visits to other pages.
fn mix_payloads(n: usize) -> Vec<Vec<u8>> {
    use visitlog_schema::{EventRecord, EventType, Tutorial};
    let t0 = chrono::Utc::now() - chrono::Duration::hours(3);
    let languages = ["English", "Hindi", "Marathi"];
    let mut out = Vec::with_capacity(n);
    let mut pages: Vec<Option<(uuid::Uuid, Tutorial)>> = vec![None; 1000];
    for i in 0..n {
        let learner = i % 1000;
        let step = i / 1000;
        let ts = t0 + chrono::Duration::milliseconds(i as i64 * 10);
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ts.timestamp() as u64,
            ts.timestamp_subsec_nanos(),
        ));
        let user = format!("learner{learner}");
        let visitor = uuid::Uuid::from_u128(learner as u128 + 1);
        let roll = (i * 7919) % 100;
        if roll < 90 || pages[learner].is_none() {
            let mut r = RequestRecord::example();
            r.id = id;
            r.ts = ts;
            r.user = Some(user);
            r.visitor_id = Some(visitor);
            r.visit_number = Some(1 + (step / 20) as u32);
            if roll < 60 || pages[learner].is_none() {
                let t = Tutorial {
                    foss: format!("Foss-{}", (learner + step) % 10),
                    tutorial: format!("Tutorial-{}", (learner + step) % 50),
                    language: languages[learner % 3].to_owned(),
                };
                r.path = format!("/watch/{}/{}/{}/", t.foss, t.tutorial, t.language);
                r.tutorial = Some(t.clone());
                pages[learner] = Some((id, t));
            } else {
                r.route = None;
                r.tutorial = None;
                r.view_args.clear();
                if roll < 75 {
                    r.path = "/".to_owned();
                } else {
                    r.path = format!("/static/app-{}.css", roll % 3);
                    r.content_type = Some("text/css".to_owned());
                }
            }
            out.push(serde_json::to_vec(&r).unwrap());
        } else if let Some((page, t)) = &pages[learner] {
            let mut e = EventRecord::example();
            e.id = id;
            e.ts = ts;
            e.learner = format!("user:{user}");
            e.user = Some(user);
            e.visitor_id = Some(visitor);
            e.foss = t.foss.clone();
            e.tutorial = t.tutorial.clone();
            e.language = t.language.clone();
            e.page_view = Some(*page);
            e.rate = None;
            if roll < 95 {
                e.event_type = EventType::PagePing;
                e.active_ms = Some(15_000);
                e.video_id = None;
                e.position = None;
                e.duration = None;
                e.played_from = None;
            } else {
                e.video_id = Some(format!("{}/{}/{}", t.foss, t.tutorial, t.language));
                e.duration = Some(600.0);
                e.played_from = Some((step % 59) as f64 * 10.0);
                e.position = Some((step % 59) as f64 * 10.0 + 10.0);
            }
            out.push(serde_json::to_vec(&e).unwrap());
        }
    }
    out
}

/// A view of one of 50 tutorial pages by one of 1,000 logged-in learners,
/// each on their own browser.
fn tutorial_payload(n: usize) -> Vec<u8> {
    let mut r = RequestRecord::example();
    r.id = uuid::Uuid::now_v7();
    let learner = n % 1000;
    r.visitor_id = Some(uuid::Uuid::from_u128(1 + learner as u128));
    r.user = Some(format!("learner{learner}"));
    let t = visitlog_schema::Tutorial {
        foss: "Python".to_owned(),
        tutorial: format!("Tutorial-{}", (n / 1000) % 50),
        language: "English".to_owned(),
    };
    r.path = format!("/watch/{}/{}/{}/", t.foss, t.tutorial, t.language);
    r.view_args = [
        ("foss".to_owned(), t.foss.clone()),
        ("tutorial".to_owned(), t.tutorial.clone()),
        ("language".to_owned(), t.language.clone()),
    ]
    .into();
    r.tutorial = Some(t);
    serde_json::to_vec(&r).unwrap()
}

/// A fresh queue holding `payloads`, and a fresh database set up by
/// `visitlog-consumer setup` (collections, validators, indexes).
async fn prepared(uri: &str, payloads: &[Vec<u8>]) -> (Namespace, String) {
    let ns = Namespace::new();
    let db = test_database();
    visitlog_tests::push(ns.redis_url(), ns.queue(), payloads)
        .await
        .unwrap();
    let setup = Command::new(bin())
        .args(["--mongodb-uri", uri, "--database", &db, "setup"])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    (ns, db)
}

/// What one drain measured.
struct Drained {
    /// Records per second until the queue was empty.
    rate: f64,
    /// Consumer CPU seconds per 100,000 records until then.
    cpu: f64,
    /// With `settle`: seconds and CPU per 100,000 until no analytics key
    /// was pending.
    settled: Option<(f64, f64)>,
}

async fn drain(
    uri: &str,
    payloads: &[Vec<u8>],
    collection: &str,
    batch: usize,
    in_flight: usize,
) -> (f64, f64) {
    let d = drain_with(uri, payloads, collection, batch, in_flight, &[], false).await;
    (d.rate, d.cpu)
}

async fn drain_with(
    uri: &str,
    payloads: &[Vec<u8>],
    collection: &str,
    batch: usize,
    in_flight: usize,
    args: &[&str],
    settle: bool,
) -> Drained {
    let n = payloads.len();
    let (ns, db) = prepared(uri, payloads).await;
    let mut child = Command::new(bin())
        .args([
            "--redis-url",
            ns.redis_url(),
            "--queue",
            ns.queue(),
            "--mongodb-uri",
            uri,
            "--database",
            &db,
        ])
        .args([
            "--batch-size",
            &batch.to_string(),
            "--max-in-flight",
            &in_flight.to_string(),
        ])
        .args(args)
        .args(["run", "--no-setup", "--no-status"])
        // `VISITLOG_BENCH_LOG=visitlog_consumer=debug` shows what the consumer does.
        .env(
            "RUST_LOG",
            std::env::var("VISITLOG_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Start-up excluded: the clock and the CPU count from the first batch taken.
    while queue_lengths(ns.redis_url(), ns.queue()).await.unwrap().0 == n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    let cpu_before = cpu_seconds(child.id());
    // Done when nothing waits or is in flight: a batch leaves its processing
    // list only after MongoDB took it. (Polling a count would load the server.)
    loop {
        if queue_lengths(ns.redis_url(), ns.queue()).await.unwrap() == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let mut settled = None;
    if settle {
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let marks = client
            .database(&db)
            .collection::<bson::Document>("derivations");
        while marks.estimated_document_count().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        settled = Some((
            started.elapsed().as_secs_f64(),
            (cpu_seconds(child.id()) - cpu_before) * 100_000.0 / n as f64,
        ));
    }
    if !collection.is_empty() {
        assert_eq!(count(uri, &db, collection).await.unwrap(), n as u64);
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
    Drained {
        rate: n as f64 / elapsed,
        cpu: cpu * 100_000.0 / n as f64,
        settled,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to run quickly.
    }
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let uri = shared_mongodb_uri();
    let kind = std::env::var("VISITLOG_TEST_MONGODB_KIND").unwrap_or_else(|_| "unknown".into());
    let n: usize = std::env::var("VISITLOG_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // `VISITLOG_BENCH_ONLY=mix` (or raw, drain, learning) runs one part;
    // `defaults` only the seed and plain records at the defaults, for
    // builds compared turn about (`VISITLOG_BENCH_CONSUMER`); `in-flight`
    // the seed and plain records at batch 1000 with one and two batches in
    // flight, in the order `VISITLOG_BENCH_IN_FLIGHT` gives (`1,2`);
    // `tutorial` tutorial page views alone, at the defaults.
    let only = std::env::var("VISITLOG_BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;
    println!("MongoDB: {kind}; {n} records per run\n");
    let (raw, raw_cpu) = raw_insert_many(&uri, n).await;
    println!(
        "raw insert_many (1000/batch, 1 client): {raw:>9.0} docs/s, client CPU {raw_cpu:.1} µs per document"
    );
    if part("drain") || ["defaults", "in-flight", "tutorial"].contains(&only.as_str()) {
        drains(&uri, n, raw, &only).await;
    }
    if part("learning") {
        learning(&uri, n).await;
    }
    if part("mix") {
        mix(&uri, n).await;
    }
}

/// The seed design's consumer on `payloads`: records/s and CPU µs per
/// record, start-up excluded (it counts its own from its first `LPOP`).
async fn seed(uri: &str, payloads: &[Vec<u8>]) -> Option<(f64, f64)> {
    let python = std::env::var("VISITLOG_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/seed/consumer.py");
    // The same collection, validator and indexes as visitlog writes.
    let (ns, db) = prepared(uri, payloads).await;
    let out = Command::new(python)
        .args([script, ns.redis_url(), ns.queue(), uri, &db])
        .output()
        .ok()?;
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let stored = count(uri, &db, "request_logs").await.unwrap();
    client.database(&db).drop().await.unwrap();
    if !out.status.success() {
        eprintln!("seed consumer: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    assert_eq!(stored, payloads.len() as u64);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
    let (cpu, elapsed) = (figures.next()?, figures.next()?);
    let n = payloads.len() as f64;
    Some((n / elapsed, cpu * 1e6 / n))
}

async fn drains(uri: &str, n: usize, raw: f64, only: &str) {
    // Only plain records at batch 1000: the rest of the drains is skipped.
    let plain_only = only == "defaults" || only == "in-flight";
    if only == "tutorial" {
        return tutorial_drain(uri, n, raw).await;
    }
    let plain: Vec<Vec<u8>> = (0..n).map(visitlog_tests::plain_request_payload).collect();
    match seed(uri, &plain).await {
        Some((rate, cpu)) => println!(
            "seed consumer (Python, LPOP 1000):     {rate:>9.0} records/s ({:>3.0}% of raw), its CPU {cpu:.1} µs per record",
            100.0 * rate / raw
        ),
        None => println!("seed consumer: not run (needs python3 with pymongo and redis)"),
    }
    let rows: Vec<(usize, usize)> = match only {
        "defaults" => vec![(1000, 2)],
        "in-flight" => std::env::var("VISITLOG_BENCH_IN_FLIGHT")
            .unwrap_or_else(|_| "1,2".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .map(|n| (1000, n))
            .collect(),
        _ => vec![(100, 2), (1000, 1), (1000, 2), (5000, 2)],
    };
    for (batch, in_flight) in rows {
        let (rate, cpu) = drain(uri, &plain, "request_logs", batch, in_flight).await;
        println!(
            "plain requests, batch-size {batch:>4}, in-flight {in_flight}: {rate:>9.0} records/s ({:>3.0}% of raw), consumer CPU {:.1} µs per record",
            100.0 * rate / raw,
            cpu * 10.0
        );
    }
    if plain_only {
        return;
    }
    // Storing alone: the analytics engine off (it computes page views,
    // visits and days from the same records meanwhile).
    let args = ["--analytics", "false"];
    let d = drain_with(uri, &plain, "request_logs", 1000, 2, &args, false).await;
    println!(
        "plain requests, analytics off, batch-size 1000, in-flight 2: {:>9.0} records/s ({:>3.0}% of raw), consumer CPU {:.1} µs per record",
        d.rate,
        100.0 * d.rate / raw,
        d.cpu * 10.0
    );
    tutorial_drain(uri, n, raw).await;
}

/// Tutorial page views at the defaults (`VISITLOG_BENCH_ONLY=tutorial` runs
/// this alone).
async fn tutorial_drain(uri: &str, n: usize, raw: f64) {
    let pages: Vec<Vec<u8>> = (0..n).map(tutorial_payload).collect();
    let (rate, cpu) = drain(uri, &pages, "request_logs", 1000, 2).await;
    println!(
        "tutorial page views, batch-size 1000, in-flight 2: {rate:>9.0} records/s ({:>3.0}% of raw), consumer CPU {:.1} µs per record",
        100.0 * rate / raw,
        cpu * 10.0
    );
}

async fn learning(uri: &str, n: usize) {
    for learners in [50, 1000] {
        let events = learning_payloads(n, learners);
        let (rate, cpu) = drain(uri, &events, "events", 1000, 2).await;
        println!(
            "learning events, {learners:>4} learners, batch-size 1000, in-flight 2: {rate:>9.0} events/s, consumer CPU {cpu:.2} s per 100k events"
        );
    }
}

async fn mix(uri: &str, n: usize) {
    let mix = mix_payloads(n);
    for analytics in ["false", "true"] {
        let args = ["--analytics", analytics];
        let d = drain_with(uri, &mix, "", 1000, 2, &args, analytics == "true").await;
        let settled = d.settled.map_or(String::new(), |(s, cpu)| {
            format!(
                "; every figure computed after {s:.1} s, consumer CPU {cpu:.2} s per 100k records"
            )
        });
        println!(
            "mix, analytics {analytics:>5}: {:>9.0} records/s, consumer CPU {:.2} s per 100k records{settled}",
            d.rate, d.cpu
        );
    }
}
