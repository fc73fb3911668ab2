//! The harness of visitlog's integration tests: real services, one
//! namespace or one server per test, cleaned up after.
//!
//! Services come from `scripts/services` (`VISITLOG_TEST_REDIS_URL`); when
//! it has not run, a private `redis-server` is started for the test process.
//! Tests that stop or stall Redis start their own [`RedisServer`].
//!
//! The harness knows no visitlog crate but the schema: the web side (the
//! example site in process) is a support module of the cross-crate tests in
//! `tests/tests/`, so the consumer's tests, which use this harness, never
//! build the site.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

pub mod browser;
pub mod consumer;
pub mod redis_ha;
mod servers;

pub use servers::{
    MongoServer, RedisServer, TestCa, free_port, shared_mongodb_uri, shared_redis_url,
    test_database,
};

/// A queue name of its own for one test; its keys are deleted on drop.
pub struct Namespace {
    redis_url: String,
    queue: String,
}

impl Namespace {
    /// A fresh namespace on the shared Redis.
    pub fn new() -> Self {
        Self::on(shared_redis_url())
    }

    /// A fresh namespace on the Redis at `redis_url`.
    pub fn on(redis_url: String) -> Self {
        Self {
            redis_url,
            queue: format!("visitlog-test:{}:queue", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The queue key.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The Redis URL.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// Appends generated request records `range` (see [`request_payload`]).
    pub async fn fill(&self, range: std::ops::Range<usize>) -> anyhow::Result<()> {
        push(
            &self.redis_url,
            &self.queue,
            &range.map(request_payload).collect::<Vec<_>>(),
        )
        .await
    }

    /// Every record now on the queue, parsed.
    pub async fn records(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.queue)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        raw.iter()
            .map(|r| serde_json::from_slice(r).context("record on the queue is not JSON"))
            .collect()
    }

    /// Waits until the queue holds at least `n` records, then returns them all.
    pub async fn wait_for(
        &self,
        n: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        eventually(within, Duration::from_millis(25), async || {
            let records = self.records().await.unwrap_or_default();
            if records.len() >= n {
                Ok(records)
            } else {
                Err(format!(
                    "expected {n} records on {}, found {}",
                    self.queue,
                    records.len()
                ))
            }
        })
        .await
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Best effort: the server may be a stopped test server.
        if let Ok(client) = redis::Client::open(self.redis_url.as_str())
            && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
        {
            let _: Result<(), _> = redis::cmd("DEL").arg(&self.queue).query(&mut conn);
        }
    }
}

/// The user agent the harness's client sends: a browser's, since a request
/// without one (reqwest sends none) is a bot and counts in no figure.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

/// An HTTP client that does not follow redirects, so tests see each
/// response, and says it is a browser ([`BROWSER_UA`]).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER_UA)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

/// The `name=value` part of each `Set-Cookie` of `response`.
pub fn cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect()
}

/// MaxMind's test database `name`, fetched by `scripts/fetch-test-data`.
pub fn geo_test_db(name: &str) -> PathBuf {
    let dir = std::env::var_os("VISITLOG_TEST_DATA").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/maxminddb-test-data/maxminddb-3.2.0/tests/data")
        },
        PathBuf::from,
    );
    let path = dir.join("test-data").join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/fetch-test-data",
        path.display()
    );
    path
}

/// A request for `/` (no tutorial page) as the queue carries it: the
/// `n`th of 1,000 logged-in learners, each on their own browser.
pub fn plain_request_payload(n: usize) -> Vec<u8> {
    let mut r = visitlog_schema::RequestRecord::example();
    r.id = uuid::Uuid::now_v7();
    r.visitor_id = Some(uuid::Uuid::from_u128(1 + (n % 1000) as u128));
    r.user = Some(format!("learner{}", n % 1000));
    r.path = "/".to_owned();
    r.query = Some(format!("n={n}"));
    r.route = Some("/".to_owned());
    r.view_args.clear();
    r.tutorial = None;
    serde_json::to_vec(&r).unwrap_or_else(|e| panic!("serialising a record: {e}"))
}

/// A valid request record as the queue carries it, distinct per call.
pub fn request_payload(n: usize) -> Vec<u8> {
    let mut record = visitlog_schema::RequestRecord::example();
    record.id = uuid::Uuid::now_v7();
    record.query = Some(format!("n={n}"));
    serde_json::to_vec(&record).unwrap_or_else(|e| panic!("serialising a record: {e}"))
}

/// Appends `payloads` to the queue.
pub async fn push(redis_url: &str, queue: &str, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for chunk in payloads.chunks(1000) {
        redis::cmd("RPUSH")
            .arg(queue)
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// How many records wait on the queue and sit in processing lists.
pub async fn queue_lengths(redis_url: &str, queue: &str) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pending: u64 = redis::cmd("LLEN").arg(queue).query_async(&mut conn).await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:processing:*"))
        .query_async(&mut conn)
        .await?;
    let mut processing = 0;
    for key in keys {
        let n: u64 = redis::cmd("LLEN").arg(&key).query_async(&mut conn).await?;
        processing += n;
    }
    Ok((pending, processing))
}

/// Documents in `collection` of `database`.
pub async fn count(uri: &str, database: &str, collection: &str) -> anyhow::Result<u64> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    let n = client
        .database(database)
        .collection::<bson::Document>(collection)
        .count_documents(bson::doc! {})
        .await?;
    Ok(n)
}

/// Waits until `collection` holds `n` documents (or more), counting every
/// 100 ms.
pub async fn wait_count(
    uri: &str,
    database: &str,
    collection: &str,
    n: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    wait_count_every(
        uri,
        database,
        collection,
        n,
        within,
        Duration::from_millis(100),
    )
    .await
}

/// [`wait_count`], counting every `every`: a count scans the collection on
/// nx-27017, so a test of a long drain counts seldom, not to slow it.
pub async fn wait_count_every(
    uri: &str,
    database: &str,
    collection: &str,
    n: u64,
    within: Duration,
    every: Duration,
) -> anyhow::Result<u64> {
    eventually(within, every, async || {
        let found = count(uri, database, collection)
            .await
            .map_err(|e| format!("{database}.{collection} could not be counted: {e}"))?;
        if found >= n {
            Ok(found)
        } else {
            Err(format!(
                "{database}.{collection} holds {found} documents, expected {n}"
            ))
        }
    })
    .await
}

/// Runs `attempt` every `every` until it gives `Ok`, for at most `within`;
/// then fails with the last `Err` it gave, which says what it saw instead.
/// The one "poll until" of the tests.
pub async fn eventually<T, E: Display>(
    within: Duration,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                bail!("{seen} (after {within:?})")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
