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
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

pub mod browser;
pub mod consumer;

/// A `redis-server` process owned by one test; killed on drop.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()?)
    }

    /// Starts a server on `port` (to restart one that was stopped).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::launch(port, None)
    }

    /// Starts a server on `port` that wants `password` (`requirepass`).
    pub fn start_with_password(port: u16, password: &str) -> anyhow::Result<Self> {
        Self::launch(port, Some(password.to_owned()))
    }

    fn launch(port: u16, password: Option<String>) -> anyhow::Result<Self> {
        let mut command = Command::new("redis-server");
        if let Some(p) = &password {
            command.args(["--requirepass", p]);
        }
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server: run scripts/services start, or install the redis-server package")?;
        let server = Self {
            port,
            password,
            child: Some(child),
        };
        wait_for_port(port, Duration::from_secs(10))?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`, with the password when there is one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (its data is gone; nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: connections are accepted by the
    /// kernel but nothing is ever answered, as with a stalled server.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused server with SIGCONT.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.child else {
            bail!("server not running")
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.resume();
        self.stop();
    }
}

/// The shared Redis of this test run.
pub fn shared_redis_url() -> String {
    static PRIVATE: OnceLock<Result<RedisServer, String>> = OnceLock::new();
    if let Ok(url) = std::env::var("VISITLOG_TEST_REDIS_URL") {
        return url;
    }
    match PRIVATE.get_or_init(|| RedisServer::start().map_err(|e| format!("{e:#}"))) {
        Ok(server) => server.url(),
        Err(e) => panic!("no Redis for tests: {e}"),
    }
}

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

/// An HTTP client that does not follow redirects, so tests see each response.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
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

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nothing listens on port {port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The shared MongoDB of this test run (from `scripts/services`).
pub fn shared_mongodb_uri() -> String {
    std::env::var("VISITLOG_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!("VISITLOG_TEST_MONGODB_URI is not set: run the tests with scripts/test")
    })
}

/// A fresh database name for one test.
pub fn test_database() -> String {
    format!("visitlog_test_{}", uuid::Uuid::new_v4().simple())
}

/// A MongoDB server owned by one test (to stop and restart it): a real
/// `mongod` when one is on PATH, else nx-27017 from the virtualenv that
/// `scripts/services` made. Data survives a restart; killed on drop.
pub struct MongoServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl MongoServer {
    /// Starts a server on a free port with an empty data directory.
    pub fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port()?,
            dir: tempfile::Builder::new()
                .prefix("visitlog-mongo-")
                .tempdir()?,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Kills the server; its data stays for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let port = self.port.to_string();
        let dir = self.dir.path();
        let mut command = if which("mongod") {
            let mut c = Command::new("mongod");
            c.args(["--bind_ip", "127.0.0.1", "--port", &port, "--dbpath"])
                .arg(dir);
            c
        } else {
            let nx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/nx-27017");
            anyhow::ensure!(
                nx.exists(),
                "no mongod and no {}: run scripts/services start once",
                nx.display()
            );
            let mut c = Command::new(nx);
            c.args(["--host", "127.0.0.1", "--port", &port, "--data-dir"])
                .arg(dir);
            c.arg("--log-file")
                .arg(dir.join("nx.log"))
                .arg("--pid-file")
                .arg(dir.join("nx.pid"));
            c
        };
        self.child = Some(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_for_port(self.port, Duration::from_secs(20))
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
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

/// Waits until `collection` holds `n` documents (or more).
pub async fn wait_count(
    uri: &str,
    database: &str,
    collection: &str,
    n: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    eventually(within, Duration::from_millis(100), async || {
        let found = count(uri, database, collection).await.unwrap_or(0);
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
