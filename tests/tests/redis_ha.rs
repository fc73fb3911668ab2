//! Redis past one server. A Redis Cluster of three masters carries a queue
//! split into shards: the layer spreads its batches over them, two
//! consumers drain 100,000 records, none lost and none stored twice. A
//! master watched by Redis Sentinel dies mid-run: the layer and the
//! consumer follow the failover to the replica, and every record the
//! replica had received arrives. The same when a cluster master holding a
//! shard dies: its replica takes over the shard.

#![allow(clippy::unwrap_used)]

use std::process::Child;
use std::time::Duration;

use support::{hello_app as app, hello_requests as requests};
use visitlog_middleware::{Config, RedisMode};
use visitlog_schema::keys::QueueKeys;
use visitlog_schema::{RedisConn, RedisTarget, Timeouts};
use visitlog_tests::redis_ha::{RedisCluster, SENTINEL_MASTER, SentinelGroup};
use visitlog_tests::{
    consumer, count, shared_mongodb_uri, test_database, wait_count, wait_count_every,
};

mod support;

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    response: Duration::from_secs(10),
};

fn layer_config(mode: RedisMode, urls: String, queue: &str, shards: usize) -> Config {
    Config::default()
        .redis_mode(mode)
        .redis_url(urls)
        .queue(queue.to_owned())
        .queue_shards(shards)
        .cookie_key("integration-test-key-0123456789abcdef")
        .flush_interval(Duration::from_millis(20))
        .batch_records(100)
        .redis_timeout(Duration::from_millis(500))
}

/// A consumer process in `mode` on `urls`.
fn spawn_consumer(
    mode: &str,
    urls: &str,
    master: Option<&str>,
    queue: &str,
    shards: usize,
    (uri, db): (&str, &str),
    id: &str,
) -> Child {
    let mut command = std::process::Command::new(support::consumer_binary());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VISITLOG_REDIS_MODE", mode)
        .env("VISITLOG_REDIS_URL", urls)
        .env("VISITLOG_QUEUE", queue)
        .env("VISITLOG_QUEUE_SHARDS", shards.to_string())
        .env("VISITLOG_MONGODB_URI", uri)
        .env("VISITLOG_DATABASE", db)
        .env("VISITLOG_STATUS_ADDR", "127.0.0.1:0")
        .env("VISITLOG_FLUSH_INTERVAL", "50ms")
        .env("VISITLOG_HEARTBEAT_INTERVAL", "1s")
        .env("VISITLOG_HEARTBEAT_TTL", "5s")
        .env("VISITLOG_SHUTDOWN_DEADLINE", "4s")
        .env("VISITLOG_MAX_BACKOFF", "1s")
        .env("VISITLOG_ANALYTICS", "false")
        .args(["--consumer-id", id, "run"]);
    if let Some(master) = master {
        command.env("VISITLOG_REDIS_SENTINEL_MASTER", master);
    }
    command.spawn().unwrap()
}

/// `uri` with a minute's connect timeout. The driver's monitor checks the
/// server with that timeout and, when a check fails, interrupts every
/// operation in flight; nx-27017 (one Python thread) can answer a check
/// more than the default 10 s late while it inserts 100,000 documents on a
/// loaded machine, and each interrupted batch is then stored again.
fn patient(uri: &str) -> String {
    let separator = match (uri.contains('?'), uri.ends_with('/')) {
        (true, _) => "&",
        (false, true) => "?",
        (false, false) => "/?",
    };
    format!("{uri}{separator}connectTimeoutMS=60000")
}

async fn llen(conn: &mut RedisConn, key: &str) -> u64 {
    redis::cmd("LLEN").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_carries_a_sharded_queue_through_two_consumers_losing_and_repeating_nothing() {
    const SHARDS: usize = 6;
    const TOTAL: usize = 100_000;
    const SHIPPED: usize = 2_000;
    let cluster = RedisCluster::start(3).unwrap();
    let queue = format!("visitlog-test:cluster:{}", uuid::Uuid::new_v4().simple());
    let keys = QueueKeys::new(&queue, SHARDS, true);
    let target = RedisTarget::new(RedisMode::Cluster, &cluster.urls(), None, None).unwrap();
    let mut conn = target.connect(TIMEOUTS).await.unwrap();

    // The layer spreads its batches over the shards, which the cluster
    // spreads over its masters.
    let (app, shipper) = app(layer_config(
        RedisMode::Cluster,
        cluster.urls(),
        &queue,
        SHARDS,
    ));
    requests(&app, 0, SHIPPED).await;
    let stats = shipper.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (stats.shipped, stats.dropped, stats.send_errors),
        (SHIPPED as u64, 0, 0),
        "{stats:?}"
    );
    let mut nodes_used = std::collections::BTreeSet::new();
    for shard in keys.shards() {
        assert!(llen(&mut conn, shard).await > 0, "{shard} got no batch");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(shard)
            .query_async(&mut conn)
            .await
            .unwrap();
        nodes_used.insert(u32::from(slot) * 3 / 16_384);
    }
    assert!(nodes_used.len() >= 2, "every shard on one master");

    // The rest straight onto the shards, in turn.
    let payloads: Vec<Vec<u8>> = (SHIPPED..TOTAL)
        .map(visitlog_tests::plain_request_payload)
        .collect();
    for (i, chunk) in payloads.chunks(1000).enumerate() {
        redis::cmd("RPUSH")
            .arg(&keys.shards()[i % SHARDS])
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    let (uri, db) = (shared_mongodb_uri(), test_database());
    let patient = patient(&uri);
    let consumers = ["c1", "c2"].map(|id| {
        spawn_consumer(
            "cluster",
            &cluster.urls(),
            None,
            &queue,
            SHARDS,
            (&patient, &db),
            id,
        )
    });
    // Two debug-build consumers into nx-27017 took about 600 s when two CI
    // runs shared a 2-core machine (one passed at 606 s, one had 97,600 at
    // 620 s); counting, a scan of the collection there, is kept to every 2 s.
    let stored = wait_count_every(
        &uri,
        &db,
        "request_logs",
        TOTAL as u64,
        Duration::from_secs(1200),
        Duration::from_secs(2),
    )
    .await;
    // What each instance says of itself, before it leaves.
    let mut stored_by = Vec::new();
    for id in ["c1", "c2"] {
        let report: Option<String> = redis::cmd("GET")
            .arg(visitlog_schema::keys::status(keys.base(), id))
            .query_async(&mut conn)
            .await
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&report.unwrap_or_default()).unwrap_or_default();
        stored_by.push(report["stored"].as_u64().unwrap_or(0));
    }
    for child in &consumers {
        consumer::terminate(child);
    }
    for mut child in consumers {
        assert!(child.wait().unwrap().success());
    }
    // Each batch adds to the fleet's totals once stored and acknowledged:
    // read after both have stopped. A batch retried after a timeout counts
    // its records already stored as duplicates; stored counts each record
    // once, however often it was delivered.
    let totals: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(visitlog_schema::keys::totals(keys.base()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.unwrap(), TOTAL as u64);
    assert_eq!(
        count(&uri, &db, "request_logs").await.unwrap(),
        TOTAL as u64
    );
    assert_eq!(
        totals.get("stored").copied(),
        Some(TOTAL as u64),
        "every record stored once: {totals:?}"
    );
    assert!(
        stored_by.iter().all(|&n| n > 0),
        "both consumers took part: {stored_by:?}"
    );
    for shard in keys.shards() {
        assert_eq!(llen(&mut conn, shard).await, 0, "{shard} not drained");
    }
    assert_eq!(
        cluster.keys("*:processing:*").unwrap(),
        Vec::<String>::new(),
        "no batch left in a processing list"
    );

    // Records an app of another shard count left, on whichever master
    // holds each list: `stats` names them.
    let strays = [format!("{{{queue}:{SHARDS}}}"), format!("{{{queue}}}")];
    for (n, stray) in [2, 1].into_iter().zip(&strays) {
        redis::cmd("RPUSH")
            .arg(stray)
            .arg(vec!["{}"; n])
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let out = std::process::Command::new(support::consumer_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VISITLOG_REDIS_MODE", "cluster")
        .env("VISITLOG_REDIS_URL", cluster.urls())
        .env("VISITLOG_QUEUE", &queue)
        .env("VISITLOG_QUEUE_SHARDS", SHARDS.to_string())
        .env("VISITLOG_MONGODB_URI", &patient)
        .env("VISITLOG_DATABASE", &db)
        .arg("stats")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["stranded"][&strays[0]], 2, "{stats}");
    assert_eq!(stats["stranded"][&strays[1]], 1, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_and_the_consumer_follow_a_sentinel_failover() {
    const BEFORE: usize = 1_500;
    const AFTER: usize = 1_500;
    let mut group = SentinelGroup::start().unwrap();
    let queue = format!("visitlog-test:sentinel:{}", uuid::Uuid::new_v4().simple());
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let child = spawn_consumer(
        "sentinel",
        &group.urls(),
        Some(SENTINEL_MASTER),
        &queue,
        1,
        (&uri, &db),
        "s1",
    );
    let (app, shipper) = app(layer_config(RedisMode::Sentinel, group.urls(), &queue, 1)
        .redis_sentinel_master(SENTINEL_MASTER));
    requests(&app, 0, BEFORE).await;
    visitlog_tests::eventually(
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || match shipper.stats().shipped {
            n if n == BEFORE as u64 => Ok(()),
            n => Err(format!("{n} of {BEFORE} shipped")),
        },
    )
    .await
    .unwrap();

    // Redis replicates asynchronously: what the master acknowledged but
    // had not yet sent to its replica dies with it (see the README). Wait
    // until the replica has everything, then kill the master at once: from
    // then on nothing may be lost.
    let master = RedisTarget::new(
        RedisMode::Standalone,
        &format!("redis://127.0.0.1:{}", group.first_master_port()),
        None,
        None,
    )
    .unwrap();
    let mut direct = master.connect(TIMEOUTS).await.unwrap();
    let replicas: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(replicas, 1);
    group.kill_master();

    // Requests go on during the failover: the layer buffers them.
    requests(&app, BEFORE, BEFORE + AFTER).await;
    group.wait_failover(Duration::from_secs(30)).unwrap();
    assert_eq!(group.master_port().unwrap(), group.replica_port());
    let stats = shipper.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        (stats.shipped, stats.dropped),
        ((BEFORE + AFTER) as u64, 0),
        "{stats:?}"
    );
    let stored = wait_count(
        &uri,
        &db,
        "request_logs",
        (BEFORE + AFTER) as u64,
        Duration::from_secs(120),
    )
    .await;
    consumer::terminate(&child);
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(stored.unwrap(), (BEFORE + AFTER) as u64);
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_and_the_consumer_follow_a_cluster_master_failover() {
    const SHARDS: usize = 3;
    const BEFORE: usize = 1_500;
    const AFTER: usize = 1_500;
    let mut cluster = RedisCluster::start_with_replicas(3, 1).unwrap();
    let queue = format!("visitlog-test:failover:{}", uuid::Uuid::new_v4().simple());
    let keys = QueueKeys::new(&queue, SHARDS, true);
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let child = spawn_consumer(
        "cluster",
        &cluster.urls(),
        None,
        &queue,
        SHARDS,
        (&uri, &db),
        "f1",
    );
    let (app, shipper) = app(layer_config(
        RedisMode::Cluster,
        cluster.urls(),
        &queue,
        SHARDS,
    ));
    requests(&app, 0, BEFORE).await;
    visitlog_tests::eventually(
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || match shipper.stats().shipped {
            n if n == BEFORE as u64 => Ok(()),
            n => Err(format!("{n} of {BEFORE} shipped")),
        },
    )
    .await
    .unwrap();

    // As with Sentinel: what a master acknowledged but had not yet sent to
    // its replica dies with it. Wait until every replica has everything,
    // then kill the master of the first shard: nothing may be lost.
    cluster.sync_replicas(1).unwrap();
    let shard = keys.shards()[0].clone();
    let dead = cluster.master_of(&shard).unwrap();
    cluster.kill(dead);

    // Requests go on during the failover: the layer buffers or sends them
    // to the shards still served.
    requests(&app, BEFORE, BEFORE + AFTER).await;
    cluster
        .wait_failover(&shard, dead, Duration::from_secs(30))
        .unwrap();
    let stats = shipper.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        (stats.shipped, stats.dropped),
        ((BEFORE + AFTER) as u64, 0),
        "{stats:?}"
    );
    let stored = wait_count(
        &uri,
        &db,
        "request_logs",
        (BEFORE + AFTER) as u64,
        Duration::from_secs(120),
    )
    .await;
    consumer::terminate(&child);
    let mut child = child;
    let status = child.wait().unwrap();
    assert_eq!(stored.unwrap(), (BEFORE + AFTER) as u64);
    assert_eq!(
        count(&uri, &db, "request_logs").await.unwrap(),
        (BEFORE + AFTER) as u64
    );
    assert!(status.success(), "{status}");
}

/// A database in the sentinels' URLs is the master's: the sentinels, which
/// have none (they refuse `SELECT`), are asked without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_the_sentinel_urls_is_the_masters() {
    let group = SentinelGroup::start().unwrap();
    let urls = group
        .urls()
        .split(',')
        .map(|u| format!("{u}/3"))
        .collect::<Vec<_>>()
        .join(",");
    let target = RedisTarget::new(RedisMode::Sentinel, &urls, Some(SENTINEL_MASTER), None).unwrap();
    let mut conn = target.connect(TIMEOUTS).await.unwrap();
    redis::cmd("SET")
        .arg("db-probe")
        .arg("3")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let master = group.master_port().unwrap();
    for (db, expected) in [(3, Some("3")), (0, None)] {
        let client = redis::Client::open(format!("redis://127.0.0.1:{master}/{db}")).unwrap();
        let mut direct = client.get_multiplexed_async_connection().await.unwrap();
        let got: Option<String> = redis::cmd("GET")
            .arg("db-probe")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), expected, "database {db}");
    }
}
