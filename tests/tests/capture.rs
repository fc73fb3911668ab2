//! The capture path end to end: the example site, the layer, a real Redis.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use visitlog_schema::{Collection, RecordValidator};
mod support;

use visitlog_tests::{Namespace, RedisServer, cookies, eventually, geo_test_db, http};

use support::{CaptureConfig, Site};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const WAIT: Duration = Duration::from_secs(20);

fn validate(record: &Value) {
    RecordValidator::new(Collection::RequestLogs)
        .unwrap()
        .validate(record)
        .unwrap_or_else(|e| panic!("{e}: {record}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_on_the_list_with_every_field_filled() {
    let ns = Namespace::new();
    let config = ns
        .config()
        .geodb(geo_test_db("GeoIP2-City-Test.mmdb"))
        .trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()]);
    let site = Site::start(config).await.unwrap();
    let client = http();

    let login = client
        .post(site.url("/login"))
        .form(&[("username", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let jar = cookies(&login).join("; ");
    assert!(
        jar.contains("session=") && jar.contains("visitlog_vid="),
        "{jar}"
    );

    let page = client
        .get(site.url("/watch/Python/Getting-started/English/?t=5&token=s3cret"))
        .header("cookie", &jar)
        .header("user-agent", FIREFOX)
        .header("referer", "http://127.0.0.1/")
        .header("accept-language", "en-GB,en;q=0.8")
        .header("x-forwarded-for", "81.2.69.142")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"data-video-id="Python/Getting-started/English""#),
        "{html}"
    );

    let records = ns.wait_for(2, WAIT).await.unwrap();
    let login_record = &records[0];
    assert_eq!(login_record["method"], "POST");
    assert_eq!(
        login_record["user"], "alice",
        "the login response names the user"
    );

    let r = &records[1];
    validate(r);
    for (field, value) in r.as_object().unwrap() {
        assert!(!value.is_null(), "field {field} is null in {r}");
    }
    assert_eq!(r["kind"], "request");
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["path"], "/watch/Python/Getting-started/English/");
    assert_eq!(r["query"], "t=5&token=[redacted]");
    assert_eq!(r["route"], "/watch/{foss}/{tutorial}/{language}/");
    assert_eq!(r["status"], 200);
    assert_eq!(r["bytes_sent"].as_u64(), Some(html.len() as u64));
    assert_eq!(r["referer"], "http://127.0.0.1/");
    assert_eq!(r["ip"], "81.2.69.142");
    assert_eq!(r["geo"]["country_code"], "GB");
    assert_eq!(r["geo"]["city"], "London");
    assert_eq!(r["geo"]["region"], "England");
    assert_eq!(r["geo"]["time_zone"], "Europe/London");
    assert_eq!(r["ua"]["name"], "Firefox");
    assert_eq!(r["ua"]["os"], "Linux");
    assert_eq!(r["user"], "alice");
    assert_eq!(r["session_id"].as_str().map(str::len), Some(32));
    assert_eq!(r["visitor_id"], login_record["visitor_id"]);
    assert_eq!(
        (&r["visit_number"], &r["new_visit"], &r["returning"]),
        (&Value::from(1), &Value::from(false), &Value::from(false))
    );
    assert_eq!(r["view_args"]["foss"], "Python");
    assert_eq!(r["tutorial"]["tutorial"], "Getting-started");
    assert_eq!(r["tutorial"]["language"], "English");
    assert_eq!(r["headers"]["accept-language"], "en-GB,en;q=0.8");
    // UUID v7, time-ordered: the later request sorts after the earlier one.
    assert!(r["_id"].as_str().unwrap() > login_record["_id"].as_str().unwrap());
    assert!(!r.to_string().contains("s3cret"));

    let home = client.get(site.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let records = ns.wait_for(3, WAIT).await.unwrap();
    assert_eq!(
        records[2]["tutorial"],
        Value::Null,
        "the home page is not a tutorial"
    );
    assert_eq!(records[2]["user"], Value::Null);
    let stats = site.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.captured, stats.shipped, stats.dropped), (3, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_comes_from_a_trusted_proxy_header_and_never_an_untrusted_one() {
    let trusted_ns = Namespace::new();
    let trusted = Site::start(
        trusted_ns
            .config()
            .geodb(geo_test_db("GeoLite2-City-Test.mmdb"))
            .trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()]),
    )
    .await
    .unwrap();
    let untrusted_ns = Namespace::new();
    let untrusted = Site::start(
        untrusted_ns
            .config()
            .geodb(geo_test_db("GeoLite2-City-Test.mmdb")),
    )
    .await
    .unwrap();
    let client = http();
    for (site, xff) in [
        (&trusted, "2001:218::"),
        (&trusted, "81.2.69.142"),
        (&untrusted, "81.2.69.142"),
    ] {
        let r = client
            .get(site.url("/"))
            .header("x-forwarded-for", xff)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let records = trusted_ns.wait_for(2, WAIT).await.unwrap();
    assert_eq!(records[0]["ip"], "2001:218::");
    assert_eq!(records[0]["geo"]["country_code"], "JP");
    assert_eq!(records[0]["geo"]["country"], "Japan");
    assert_eq!(records[1]["geo"]["city"], "London");
    let records = untrusted_ns.wait_for(1, WAIT).await.unwrap();
    assert_eq!(
        records[0]["ip"], "127.0.0.1",
        "header from an untrusted peer ignored"
    );
    assert_eq!(records[0]["geo"], Value::Null, "loopback has no location");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_geo_database_means_no_geo_not_a_failure() {
    let ns = Namespace::new();
    let site = Site::start(
        ns.config()
            .geodb("/nonexistent/GeoLite2-City.mmdb")
            .trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()]),
    )
    .await
    .unwrap();
    let r = http()
        .get(site.url("/"))
        .header("x-forwarded-for", "81.2.69.142")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let records = ns.wait_for(1, WAIT).await.unwrap();
    assert_eq!(records[0]["ip"], "81.2.69.142");
    assert_eq!(records[0]["geo"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_visits_across_the_timeout() {
    let ns = Namespace::new();
    let site = Site::start(
        ns.config()
            .visit_timeout(Duration::from_secs(1))
            .returning_window(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let client = http();
    let mut jar = String::new();
    let get = async |jar: &mut String| {
        let r = client
            .get(site.url("/"))
            .header("cookie", jar.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let fresh = cookies(&r);
        if !fresh.is_empty() {
            *jar = fresh.join("; ");
        }
    };
    get(&mut jar).await; // first visit
    get(&mut jar).await; // same visit
    tokio::time::sleep(Duration::from_millis(2100)).await;
    get(&mut jar).await; // second visit, returning
    get(&mut jar).await; // still the second visit

    let records = ns.wait_for(4, WAIT).await.unwrap();
    let visit = |r: &Value| {
        (
            r["visit_number"].as_u64().unwrap(),
            r["new_visit"].as_bool().unwrap(),
            r["returning"].as_bool().unwrap(),
        )
    };
    assert_eq!(visit(&records[0]), (1, true, false));
    assert_eq!(visit(&records[1]), (1, false, false));
    assert_eq!(visit(&records[2]), (2, true, true));
    assert_eq!(visit(&records[3]), (2, false, true));
    assert!(
        records
            .iter()
            .all(|r| r["visitor_id"] == records[0]["visitor_id"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_cookie_is_a_new_visitor_and_counted() {
    let ns = Namespace::new();
    let site = Site::start(ns.config()).await.unwrap();
    let client = http();
    let first = client.get(site.url("/")).send().await.unwrap();
    let cookie = cookies(&first).pop().unwrap();
    // Flip one character of the payload: the signature no longer matches.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let second = client
        .get(site.url("/"))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200, "a bad cookie never fails the request");
    assert!(!cookies(&second).is_empty(), "a fresh cookie replaces it");

    let records = ns.wait_for(2, WAIT).await.unwrap();
    assert_ne!(records[0]["visitor_id"], records[1]["visitor_id"]);
    assert_eq!(records[1]["visit_number"], 1);
    let stats: Value = client
        .get(site.url("/visitlog/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["rejected_cookies"], 1);
}

/// Sends `n` requests one after another; returns each latency. Panics on any failure.
async fn timed_requests(site: &Site, n: usize) -> Vec<Duration> {
    let client = http();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = client
            .get(site.url(&format!("/watch/Python/Functions/English/?n={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

/// What "keeps its latency" means here: no request waits on Redis. A request
/// that waited would take at least the Redis timeout (500 ms in these tests);
/// loopback requests to the example take about a millisecond.
fn assert_unaffected(outage: &[Duration], baseline: &[Duration]) {
    let max = *outage.last().unwrap();
    let median = outage[outage.len() / 2];
    let base_median = baseline[baseline.len() / 2];
    assert!(
        max < Duration::from_millis(250),
        "slowest request took {max:?}"
    );
    assert!(
        median < base_median * 5 + Duration::from_millis(5),
        "median {median:?} vs {base_median:?} with Redis up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_their_latency_while_redis_is_down_and_records_follow_when_it_is_back() {
    let mut redis = RedisServer::start().unwrap();
    let ns = Namespace::on(redis.url());
    let site = Site::start(ns.config()).await.unwrap();
    let baseline = timed_requests(&site, 100).await;
    ns.wait_for(100, WAIT).await.unwrap();

    redis.stop();
    let outage = timed_requests(&site, 300).await;
    assert_unaffected(&outage, &baseline);
    let stats = site.capture.stats();
    assert_eq!(
        (stats.captured, stats.shipped, stats.dropped),
        (400, 100, 0)
    );
    assert!(stats.send_errors >= 1);

    // The list died with the server; the 300 buffered records arrive on the new one.
    let _redis = RedisServer::start_on(redis.port()).unwrap();
    let records = ns.wait_for(300, WAIT).await.unwrap();
    assert_eq!(records.len(), 300);
    let stats = site.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.shipped, stats.dropped, stats.buffered), (400, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_their_latency_while_redis_is_stalled() {
    let redis = RedisServer::start().unwrap();
    let ns = Namespace::on(redis.url());
    let site = Site::start(ns.config()).await.unwrap();
    let baseline = timed_requests(&site, 100).await;
    ns.wait_for(100, WAIT).await.unwrap();

    // Accepts connections, never answers.
    redis.pause().unwrap();
    let outage = timed_requests(&site, 300).await;
    assert_unaffected(&outage, &baseline);
    redis.resume().unwrap();

    // Batches that timed out may have been applied when the server woke up
    // and then sent again: at-least-once, the consumer deduplicates by `_id`.
    // So 400 entries on the list are not yet 400 records: wait for 400 ids.
    let distinct = || async {
        let records = ns.records().await.unwrap_or_default();
        let mut ids: Vec<String> = records
            .iter()
            .filter_map(|r| r["_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let _ = eventually(WAIT, Duration::from_millis(25), async || {
        let n = distinct().await;
        if n >= 400 {
            Ok(n)
        } else {
            Err(format!("{n} distinct records"))
        }
    })
    .await;
    assert_eq!(distinct().await, 400, "every request arrived");
    let stats = site.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.captured, stats.dropped), (400, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_newest_and_counts_them() {
    let mut redis = RedisServer::start().unwrap();
    let ns = Namespace::on(redis.url());
    let site = Site::start(ns.config().buffer_records(50)).await.unwrap();
    redis.stop();
    let client = http();
    for i in 0..200 {
        let r = client
            .get(site.url(&format!("/?n={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Let the shipper take everything off the channel before Redis returns.
    eventually(WAIT, Duration::from_millis(20), async || {
        let stats = site.capture.stats();
        if stats.buffered > 50 {
            Err(format!("{stats:?}"))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    let stats = site.capture.stats();
    assert_eq!(
        (stats.captured, stats.dropped, stats.buffered),
        (200, 150, 50)
    );

    let _redis = RedisServer::start_on(redis.port()).unwrap();
    let records = ns.wait_for(50, WAIT).await.unwrap();
    // The oldest were kept: n=0..49, in order.
    let kept: Vec<String> = records
        .iter()
        .map(|r| r["query"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("n={i}")).collect();
    assert_eq!(kept, expected);
    let stats = site.shutdown(Duration::from_secs(2)).await;
    assert_eq!((stats.shipped, stats.dropped), (50, 150));
}

/// Ten seconds of as many GETs as 32 keep-alive clients can send, against
/// a healthy Redis: nothing is dropped, and every captured record is on the
/// list. (The shipper once preferred new captures over sending, so under a
/// flood it sent nothing and dropped most records although Redis was idle.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_get_flood_loses_nothing_with_redis_healthy() {
    let ns = Namespace::new();
    let site = Site::start(ns.config()).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    for c in 0..32 {
        let url = site.url(&format!(
            "/watch/Python/Getting-started/English/?client={c}"
        ));
        clients.push(tokio::spawn(async move {
            let client = http();
            let mut ok = 0u64;
            while Instant::now() < until {
                let r = client.get(&url).send().await.expect("the site answers");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("a body");
                ok += 1;
            }
            ok
        }));
    }
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    let stats = site.shutdown(Duration::from_secs(10)).await;
    eprintln!("flood: {sent} requests in 10 s, {stats:?}");
    assert!(sent > 1000, "too thin a flood to prove anything: {sent}");
    assert_eq!(stats.captured, sent);
    assert_eq!((stats.dropped, stats.shipped), (0, sent), "{stats:?}");
    assert_every_record_once_on_list(&ns, sent, &stats).await;
}

/// One logged-in learner floods the events endpoint with 100-event arrays
/// while another visitor browses: the learner gets 429 with Retry-After past
/// the burst, and nobody's records are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_learner_flooding_events_is_limited_and_nobody_loses_records() {
    let ns = Namespace::new();
    // A low limit, so that even a slow debug build goes past it.
    let config = ns
        .config()
        .events_max_bytes(64 * 1024)
        .events_rate(2.0)
        .events_burst(4);
    let site = Site::start(config).await.unwrap();
    let client = http();
    let login = client
        .post(site.url("/login"))
        .form(&[("username", "mallory")])
        .send()
        .await
        .unwrap();
    let jar = cookies(&login).join("; ");
    let event = serde_json::json!({"type": "video.progress", "foss": "Python",
        "tutorial": "Getting-started", "language": "English",
        "video_id": "Python/Getting-started/English", "position": 5, "duration": 30,
        "played_from": 0});
    let body = serde_json::to_string(&vec![event; 100]).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let (client, jar, body, url, origin) = (
            client.clone(),
            jar.clone(),
            body.clone(),
            site.url("/visitlog/events"),
            site.base.clone(),
        );
        flooders.push(tokio::spawn(async move {
            let (mut accepted, mut limited) = (0u64, 0u64);
            while Instant::now() < until {
                let r = client
                    .post(&url)
                    .header("cookie", &jar)
                    .header("origin", &origin)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    202 => accepted += 1,
                    429 => {
                        let retry: u64 = r.headers()["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!(retry >= 1);
                        limited += 1;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            (accepted, limited)
        }));
    }
    let browse = site.url("/watch/Python/Functions/English/");
    let mut pages = 0u64;
    while Instant::now() < until {
        assert_eq!(client.get(&browse).send().await.unwrap().status(), 200);
        pages += 1;
    }
    let (mut accepted, mut limited) = (0, 0);
    for f in flooders {
        let (a, l) = f.await.unwrap();
        accepted += a;
        limited += l;
    }
    let stats = site.shutdown(Duration::from_secs(10)).await;
    eprintln!("events flood: {accepted} accepted, {limited} limited, {pages} pages; {stats:?}");
    // 4 at once, then 2 a second, for about 5 s (and slack for timing).
    assert!((4..=4 + 2 * 7).contains(&accepted), "{accepted}");
    assert!(limited > 0);
    assert_eq!(stats.events, accepted * 100);
    assert_eq!(stats.events_refused, limited);
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_every_record_once_on_list(&ns, stats.captured, &stats).await;
    // Every page view got its record and every accepted event; the events
    // requests themselves are not page traffic.
    assert_eq!(stats.captured, 1 + pages + accepted * 100);
    assert_eq!(stats.skipped, accepted + limited);
}

/// Every captured record is on the list. A batch whose `RPUSH` timed out
/// after reaching Redis is sent again (at least once; the consumer keeps one
/// copy by `_id`), so on a loaded machine the list may hold a record twice,
/// but only after a send error, and never lacks one.
async fn assert_every_record_once_on_list(
    ns: &Namespace,
    captured: u64,
    stats: &visitlog_middleware::Stats,
) {
    let records = ns.records().await.unwrap();
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["_id"].as_str().expect("every record has an _id"))
        .collect();
    assert_eq!(ids.len() as u64, captured, "{stats:?}");
    if stats.send_errors == 0 {
        assert_eq!(records.len() as u64, captured, "{stats:?}");
    }
}
