//! The status endpoint of a running consumer: JSON API, metrics, health,
//! the fleet, the token, no leaked secrets, and the dashboard in Chromium.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::Value;
use visitlog_consumer::config::Config;
use visitlog_tests::{
    Namespace, RedisServer, eventually, free_port, http, push, request_payload, shared_mongodb_uri,
    test_database,
};

use common::{InProcess, config};

const WAIT: Duration = Duration::from_secs(60);

fn with_status(config: Config, token: Option<&str>) -> (Config, String) {
    let port = free_port().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (
        Config {
            status_addr: addr,
            status_token: token.map(str::to_owned),
            ..config
        },
        format!("http://{addr}"),
    )
}

fn start(config: Config) -> InProcess {
    InProcess::start_with_status(config)
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http().get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn json(url: &str) -> Value {
    serde_json::from_str(&get(url, None).await.1).unwrap_or(Value::Null)
}

/// Polls `url` until `check` holds on its JSON.
async fn wait_json(url: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, Duration::from_millis(100), async || {
        let v = json(url).await;
        if check(&v) {
            return Ok(v);
        }
        Err(format!("{url} never matched: {v}"))
    })
    .await
    .unwrap()
}

/// Polls until `/healthz` answers 200.
async fn wait_healthy(base: &str) {
    eventually(WAIT, Duration::from_millis(100), async || {
        if get(&format!("{base}/healthz"), None).await.0 != 200 {
            Err("/healthz never answered 200")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_follows_the_records_and_the_fleet() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let (cfg, base) = with_status(config(&ns, &uri, &db, "status-a"), None);
    let a = start(cfg);
    let (code, body) = get(&format!("{base}/healthz"), None).await;
    let (code, body) = if code == 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        get(&format!("{base}/healthz"), None).await
    } else {
        (code, body)
    };
    assert_eq!(code, 200, "{body}");
    let before = wait_json(&format!("{base}/api/status"), |s| {
        s["queue"]["pending"] == 0
    })
    .await;
    assert_eq!(before["instance"]["id"], "status-a");
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert!(before["commit"].is_string());
    assert_eq!(before["redis"]["state"], "ok");
    assert_eq!(before["mongodb"]["state"], "ok");

    // Records flow: totals, rates, latency, lag, metrics move.
    let mut payloads: Vec<Vec<u8>> = (0..600).map(request_payload).collect();
    payloads.push(format!("not json {}", "x".repeat(2000)).into_bytes());
    push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
    let s = wait_json(&format!("{base}/api/status"), |s| {
        s["totals"]["all"]["stored"] == 600 && s["queue"]["dead_letters"] == 1
    })
    .await;
    assert_eq!(s["totals"]["instance"]["stored"], 600);
    assert_eq!(s["totals"]["instance"]["dead_lettered"], 1);
    assert!(s["batch_latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{s}");
    assert!(
        s["batch_latency_ms"]["p99"].as_f64().unwrap()
            >= s["batch_latency_ms"]["p50"].as_f64().unwrap()
    );
    assert!(s["lag_seconds"].as_f64().is_some(), "{s}");
    let s = wait_json(&format!("{base}/api/status"), |s| {
        s["rates"]["all"]["stored_per_second_1m"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    })
    .await;
    assert!(s["history"].as_array().unwrap().len() >= 2);
    let queue = json(&format!("{base}/api/queue")).await;
    assert_eq!(queue["pending"], 0);
    assert_eq!(queue["processing_total"], 0);
    let dead = json(&format!("{base}/api/dead-letters?limit=5")).await;
    assert_eq!(dead.as_array().unwrap().len(), 1);
    assert!(dead[0]["reason"].as_str().unwrap().contains("not JSON"));
    assert_eq!(dead[0]["payload"].as_str().unwrap().chars().count(), 512);
    assert_eq!(dead[0]["payload_truncated"], true);
    let (_, metrics) = get(&format!("{base}/metrics"), None).await;
    for line in [
        "visitlog_consumer_records_stored_total 600",
        "visitlog_consumer_records_dead_lettered_total 1",
        "visitlog_consumer_queue_pending 0",
        "visitlog_consumer_dead_letters 1",
        "visitlog_consumer_dependency_up{dependency=\"redis\"} 1",
        "# TYPE visitlog_consumer_batch_duration_seconds histogram",
        "# TYPE visitlog_consumer_derivation_lag_seconds gauge",
        "# TYPE visitlog_consumer_derivations_pending gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // The analytics' backlog: the page views of 600 records, marked.
    let d = &s["derivations"];
    assert!(
        d["lag_seconds"].as_f64().is_some() && d["pending"].as_u64().is_some(),
        "{s}"
    );
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 200);

    // A second instance shows up in the first one's fleet, and is gone once
    // its heartbeat expires (killed: no goodbye).
    let b = InProcess::start(config(&ns, &uri, &db, "status-b"));
    let ids = |c: &Value| -> Vec<String> {
        c.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let fleet = wait_json(&format!("{base}/api/consumers"), |c| {
        ids(c).len() == 2
            && c.as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "running")
    })
    .await;
    let other = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "status-b")
        .unwrap();
    assert_eq!(other["state"], "running");
    assert!(
        other["pid"].is_u64() && other["host"].is_string() && other["last_heartbeat"].is_string()
    );
    b.task.abort();
    wait_json(&format!("{base}/api/consumers"), |c| ids(c) == ["status-a"]).await;
    let (_, metrics) = get(&format!("{base}/metrics"), None).await;
    assert!(metrics.contains("visitlog_consumer_consumers_online 1"));

    // Totals survive a restart of the instance.
    a.stop().await;
    let (cfg, base) = with_status(config(&ns, &uri, &db, "status-a"), None);
    let a = start(cfg);
    let s = wait_json(&format!("{base}/api/status"), |s| {
        s["sampled_at"].is_string()
    })
    .await;
    assert_eq!(s["totals"]["all"]["stored"], 600);
    assert_eq!(s["totals"]["instance"]["stored"], 0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_the_token_is_enforced_and_no_password_leaks() {
    let port = free_port().unwrap();
    let password = "hunter2-very-secret";
    let mut redis = RedisServer::start_with_password(port, password).unwrap();
    let ns = Namespace::on(redis.url());
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let token = "status-token-0123456789";
    let (cfg, base) = with_status(config(&ns, &uri, &db, "guarded"), Some(token));
    let consumer = start(cfg);

    // /healthz is open; everything else wants the token.
    wait_healthy(&base).await;
    for path in [
        "/",
        "/api/status",
        "/api/consumers",
        "/api/queue",
        "/api/dead-letters",
        "/metrics",
        "/readyz",
    ] {
        assert_eq!(
            get(&format!("{base}{path}"), None).await.0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            get(&format!("{base}{path}"), Some("wrong-token-0123456789"))
                .await
                .0,
            401,
            "{path}"
        );
    }
    let basic = http()
        .get(format!("{base}/api/status"))
        .basic_auth("ops", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200, "basic auth with the token as password");

    // Ready, then Redis goes away: 503 naming Redis; back: 200.
    let ready = |expect: u16| {
        let base = base.clone();
        async move {
            eventually(WAIT, Duration::from_millis(200), async || {
                let (code, body) = get(&format!("{base}/readyz"), Some(token)).await;
                if code == expect {
                    return Ok(body);
                }
                Err(format!("readyz never {expect}: {code} {body}"))
            })
            .await
            .unwrap()
        }
    };
    ready(200).await;
    redis.stop();
    let body = ready(503).await;
    assert!(body.contains("redis"), "{body}");
    // Every answer, while Redis is failing: no password anywhere.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for path in [
        "/",
        "/api/status",
        "/api/consumers",
        "/api/queue",
        "/metrics",
        "/readyz",
    ] {
        let (_, body) = get(&format!("{base}{path}"), Some(token)).await;
        assert!(
            !body.contains(password),
            "{path} leaks the Redis password: {body}"
        );
    }
    let status: Value =
        serde_json::from_str(&get(&format!("{base}/api/status"), Some(token)).await.1).unwrap();
    assert_eq!(status["redis"]["state"], "error", "{status}");
    let _redis = RedisServer::start_with_password(port, password).unwrap();
    ready(200).await;
    consumer.stop().await;
}

/// The dashboard in headless Chromium: the fleet table and both charts
/// render, it refreshes by itself, and the console stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_dashboard() {
    let Some(mut browser) = visitlog_tests::browser::Browser::launch().await.unwrap() else {
        return;
    };
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // A forgiving heartbeat TTL: the page must show both, even on a loaded machine.
    let patient = |id: &str| Config {
        heartbeat_ttl: Duration::from_secs(5),
        ..config(&ns, &uri, &db, id)
    };
    let (cfg, base) = with_status(patient("dashboard-a"), None);
    let a = start(cfg);
    let b = InProcess::start(patient("dashboard-b"));
    // Some traffic in steps, so the charts have a shape.
    for step in 0..5 {
        let payloads: Vec<Vec<u8>> = (step * 300..step * 300 + 300)
            .map(|i| {
                let mut r = visitlog_schema::RequestRecord::example();
                r.id = uuid::Uuid::now_v7();
                r.ts = chrono::Utc::now();
                r.query = Some(format!("n={i}"));
                serde_json::to_vec(&r).unwrap()
            })
            .collect();
        push(ns.redis_url(), ns.queue(), &payloads).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Two records no one can store: dead letters to list and act on.
    push(
        ns.redis_url(),
        ns.queue(),
        &[b"not json {".to_vec(), b"[1, 2".to_vec()],
    )
    .await
    .unwrap();
    wait_json(&format!("{base}/api/status"), |s| {
        s["totals"]["all"]["stored"] == 1500 && s["queue"]["dead_letters"] == 2
    })
    .await;

    wait_healthy(&base).await;
    browser.goto(&format!("{base}/")).await.unwrap();
    browser
        .wait_for("document.querySelectorAll('#fleet tbody tr').length === 2")
        .await
        .unwrap();
    browser
        .wait_for("document.querySelectorAll('#depth polyline.series').length === 1 && document.querySelectorAll('#rate polyline.series').length === 1")
        .await
        .unwrap();
    let first = browser
        .eval("document.getElementById('sub').textContent")
        .await
        .unwrap();
    browser
        .wait_for(&format!(
            "document.getElementById('sub').textContent !== {first}"
        ))
        .await
        .unwrap();
    let rows = browser
        .eval("[...document.querySelectorAll('#fleet tbody tr td:first-child')].map(td => td.textContent).sort()")
        .await
        .unwrap();
    assert_eq!(rows, serde_json::json!(["dashboard-a", "dashboard-b"]));
    let errors_shown = browser
        .eval("getComputedStyle(document.getElementById('error')).display")
        .await
        .unwrap();
    assert_eq!(errors_shown, "none", "no error banner while all is well");
    // The charts have a time axis: four clock times under each.
    let ticks = browser
        .eval("[...document.querySelectorAll('#depth text.tick')].map(t => t.textContent)")
        .await
        .unwrap();
    let ticks = ticks.as_array().unwrap();
    assert_eq!(ticks.len(), 4, "{ticks:?}");
    assert!(
        ticks.iter().all(|t| t.as_str().unwrap().contains(':')),
        "{ticks:?}"
    );
    // Dead letters with their reasons; purge one from the page.
    browser
        .wait_for("document.querySelectorAll('#dead tbody tr button.danger').length === 2")
        .await
        .unwrap();
    let reasons = browser
        .eval("[...document.querySelectorAll('#dead td.reason')].map(td => td.textContent).join(' | ')")
        .await
        .unwrap();
    assert!(reasons.as_str().unwrap().contains("not JSON"), "{reasons}");
    browser
        .eval("window.confirm = () => true; document.querySelector('#dead tbody tr button.danger').click(); true")
        .await
        .unwrap();
    browser
        .wait_for("document.querySelectorAll('#dead tbody tr button.danger').length === 1 && document.getElementById('done').textContent === 'purged 1'")
        .await
        .unwrap();
    let path = visitlog_tests::browser::artifacts_dir().join("dashboard.png");
    browser.screenshot(&path).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    assert!(
        browser.console_errors.is_empty(),
        "console errors: {:?}",
        browser.console_errors
    );
    b.stop().await;
    a.stop().await;
}

/// The sample alert rules name metrics the consumer exports, and pass
/// `promtool check rules` when promtool is installed.
#[test]
fn the_alert_rules_use_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/visitlog-consumer.rules.yml"
    );
    let rules = std::fs::read_to_string(path).unwrap();
    for alert in [
        "VisitlogQueueGrowing",
        "VisitlogOldestPendingTooOld",
        "VisitlogNoConsumerOnline",
        "VisitlogDeadLettersRising",
        "VisitlogAnalyticsLagging",
        "VisitlogRecordsStranded",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "{alert} missing"
        );
    }
    for metric in [
        "visitlog_consumer_queue_pending",
        "visitlog_consumer_queue_oldest_pending_age_seconds",
        "visitlog_consumer_consumers_online",
        "visitlog_consumer_dead_letters",
        "visitlog_consumer_derivation_lag_seconds",
        "visitlog_consumer_queue_stranded_records",
    ] {
        assert!(rules.contains(metric), "{metric} unused");
    }
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules", path])
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An app given another `VISITLOG_QUEUE_SHARDS` than the consumers fills
/// lists they never read. The records are not taken (nothing says they
/// belong to this fleet's shards), but every figure names them: the status
/// JSON by list, the metric, `stats`; and they are no longer counted once
/// the lists are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_lists_of_another_shard_count_are_reported_not_lost_from_sight() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // The consumer reads one list (the queue itself); the app was told 2.
    let (cfg, base) = with_status(config(&ns, &uri, &db, "stray-1"), None);
    let one = cfg.clone();
    let a = start(cfg);
    let (s0, s1) = (
        format!("{{{}:0}}", ns.queue()),
        format!("{{{}:1}}", ns.queue()),
    );
    let payloads: Vec<Vec<u8>> = (0..5).map(request_payload).collect();
    push(ns.redis_url(), &s0, &payloads[..3]).await.unwrap();
    push(ns.redis_url(), &s1, &payloads[3..]).await.unwrap();
    push(ns.redis_url(), ns.queue(), &payloads[..1])
        .await
        .unwrap();
    let queue = wait_json(&format!("{base}/api/queue"), |q| {
        q["stranded_total"] == 5 && q["pending"] == 0
    })
    .await;
    assert_eq!(queue["stranded"][&s0], 3, "{queue}");
    assert_eq!(queue["stranded"][&s1], 2, "{queue}");
    assert_eq!(queue["stranded"].as_object().unwrap().len(), 2, "{queue}");
    let (_, metrics) = get(&format!("{base}/metrics"), None).await;
    assert!(
        metrics.contains("visitlog_consumer_queue_stranded_records 5"),
        "{metrics}"
    );
    let stats = visitlog_consumer::admin::stats(&one).await.unwrap();
    assert_eq!(stats["stranded"][&s0], 3, "{stats}");
    // The record on the list it reads was stored; the stray ones were not.
    eventually(
        WAIT,
        Duration::from_millis(100),
        async || match visitlog_tests::count(&uri, &db, "request_logs").await {
            Ok(1) => Ok(()),
            other => Err(format!("request_logs: {other:?}, not 1")),
        },
    )
    .await
    .unwrap();
    // Gone (drained by consumers of the right count, say): no longer counted.
    let client = redis::Client::open(ns.redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&s0)
        .arg(&s1)
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_json(&format!("{base}/api/queue"), |q| q["stranded_total"] == 0).await;
    a.stop().await;

    // The other way round: consumers of 2 shards, an app of one.
    let two = Config {
        queue_shards: 2,
        ..config(&ns, &uri, &db, "stray-2")
    };
    push(ns.redis_url(), ns.queue(), &payloads[..2])
        .await
        .unwrap();
    let stats = visitlog_consumer::admin::stats(&two).await.unwrap();
    assert_eq!(stats["stranded"][ns.queue()], 2, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
}

/// Polls until the status endpoint answers `/healthz`.
async fn wait_healthz(base: &str) {
    eventually(WAIT, Duration::from_millis(50), async || {
        if get(&format!("{base}/healthz"), None).await.0 != 200 {
            Err("never answered")
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
}

/// Whether the server closed `socket` (end of file, or reset).
fn closed_by_server(socket: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match socket.try_read(&mut buf) {
            Ok(0) => return true,
            // A response to read first (keep-alive sockets).
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Polls until at least `n` of `sockets` are closed by the server.
async fn wait_closed(sockets: &[tokio::net::TcpStream], n: usize, what: &str) {
    eventually(WAIT, Duration::from_millis(50), async || {
        let closed = sockets.iter().filter(|s| closed_by_server(s)).count();
        if closed >= n {
            return Ok(());
        }
        Err(format!(
            "{what}: {closed} of {} closed, expected {n}",
            sockets.len()
        ))
    })
    .await
    .unwrap();
}

/// More idle sockets than the cap: the connections idle the longest make
/// way, at most `status-max-connections` stay open, and `/healthz` still
/// answers at once (the timeouts are far away: only the cap can explain it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_cannot_exhaust_the_status_endpoint() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let (cfg, base) = with_status(
        Config {
            status_max_connections: 8,
            status_header_timeout: Duration::from_secs(600),
            status_idle_timeout: Duration::from_secs(600),
            ..config(&ns, &uri, &db, "idle-cap")
        },
        None,
    );
    let addr = cfg.status_addr;
    let consumer = start(cfg);
    wait_healthz(&base).await;

    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    wait_closed(&idle, 40 - 8, "idle sockets beyond the cap").await;
    let started = tokio::time::Instant::now();
    let (code, body) = get(&format!("{base}/healthz"), None).await;
    assert_eq!((code, body.contains("alive")), (200, true), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Still at most the cap open.
    wait_closed(&idle, 40 - 8 + 1, "after /healthz").await;
    consumer.stop().await;
}

/// A connection that never sends a request, and a keep-alive connection
/// after its response, are closed after `status-header-timeout`; one that
/// stalls halfway through its headers is closed after `status-idle-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_status_connections_are_closed_after_the_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    for (header, idle, partial) in [(1, 600, false), (600, 1, true)] {
        let (cfg, base) = with_status(
            Config {
                status_header_timeout: Duration::from_secs(header),
                status_idle_timeout: Duration::from_secs(idle),
                ..config(&ns, &uri, &db, "idle-timeout")
            },
            None,
        );
        let addr = cfg.status_addr;
        let consumer = start(cfg);
        wait_healthz(&base).await;

        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = if partial {
            "GET /healthz HTTP/1.1\r\nHost: x\r\n".to_owned()
        } else {
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned()
        };
        kept.write_all(request.as_bytes()).await.unwrap();
        if !partial {
            let mut response = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&response).contains("alive") {
                let n = tokio::time::timeout(WAIT, kept.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "closed before answering");
                response.extend_from_slice(&buf[..n]);
            }
        }
        let sockets = [silent, kept];
        wait_closed(&sockets, 2, &format!("header {header}s, idle {idle}s")).await;
        consumer.stop().await;
    }
}

/// The dead-letter actions: behind the token, JSON only, never from another
/// site; one or all, requeued (back on the queue) or purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_requeued_and_purged_from_the_status_endpoint() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let token = "a-status-token-long-enough";
    let (cfg, base) = with_status(config(&ns, &uri, &db, "actions"), Some(token));
    let consumer = start(cfg);
    wait_healthy(&base).await;
    push(
        ns.redis_url(),
        ns.queue(),
        &[b"nope 1".to_vec(), b"nope 2".to_vec(), b"nope 3".to_vec()],
    )
    .await
    .unwrap();
    let list = || async {
        let r = http()
            .get(format!("{base}/api/dead-letters"))
            .bearer_auth(token)
            .send()
            .await;
        let r = r.unwrap_or_else(|e| panic!("{e:?}"));
        let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    eventually(WAIT, Duration::from_millis(100), async || {
        let n = list().await.as_array().unwrap().len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} dead letters"))
        }
    })
    .await
    .unwrap();
    let first = list().await[0]["id"].as_str().unwrap().to_owned();
    let post =
        |action: &str, body: &str, content_type: &str, origin: Option<&str>, with_token: bool| {
            let mut request = http()
                .post(format!("{base}/api/dead-letters/{action}"))
                .header("content-type", content_type)
                .body(body.to_owned());
            if with_token {
                request = request.bearer_auth(token);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            async move {
                let r = request.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
    let all = r#"{"all": true}"#;
    assert_eq!(
        post("purge", all, "application/json", None, false).await.0,
        401
    );
    assert_eq!(post("purge", all, "text/plain", None, true).await.0, 415);
    assert_eq!(
        post(
            "purge",
            "all=true",
            "application/x-www-form-urlencoded",
            None,
            true
        )
        .await
        .0,
        415
    );
    assert_eq!(
        post(
            "purge",
            all,
            "application/json",
            Some("https://evil.example"),
            true
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post("purge", "{}", "application/json", None, true).await.0,
        400
    );
    assert_eq!(
        list().await.as_array().unwrap().len(),
        3,
        "nothing refused did anything"
    );

    let ids = serde_json::json!({ "ids": [first] }).to_string();
    let (status, body) = post("purge", &ids, "application/json", Some(&base), true).await;
    assert_eq!((status, body.as_str()), (200, r#"{"purged":1}"#));
    let (status, body) = post("requeue", all, "application/json", None, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["requeued"], 2);
    // Back on the queue, they fail again and come back as dead letters.
    eventually(WAIT, Duration::from_millis(100), async || {
        let n = list().await.as_array().unwrap().len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} dead letters"))
        }
    })
    .await
    .unwrap();
    consumer.stop().await;
}
