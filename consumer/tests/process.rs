//! The `visitlog-consumer` binary as ops run it: killed, terminated, set up twice.

// Test helpers panic on failure; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use visitlog_tests::consumer::{self, terminate};
use visitlog_tests::{
    Namespace, count, queue_lengths, shared_mongodb_uri, test_database, wait_count,
};

const BIN: &str = env!("CARGO_BIN_EXE_visitlog-consumer");

fn command(ns: &Namespace, uri: &str, db: &str) -> Command {
    consumer::command(Path::new(BIN), ns, uri, db)
}

fn spawn(ns: &Namespace, uri: &str, db: &str, id: &str) -> Child {
    consumer::spawn(Path::new(BIN), ns, uri, db, id).unwrap()
}

fn run(ns: &Namespace, uri: &str, db: &str, args: &[&str]) -> Output {
    command(ns, uri, db).args(args).output().unwrap()
}

async fn wait_until_stored(uri: &str, db: &str, n: u64) {
    wait_count(uri, db, "request_logs", n, Duration::from_secs(120))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let n = 5000;
    ns.fill(0..n).await.unwrap();
    let mut run = command(&ns, &uri, &db);
    run.args(["--consumer-id", "drain", "--batch-size", "300", "run"]);
    let consumer = Logged::spawn(run);
    wait_until_stored(&uri, &db, 600).await;
    let started = Instant::now();
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status:?}\n{log}");
    // Batches were in flight: none of their tasks may outlive the runtime
    // and meet the MongoDB driver's pool gone (it panics; with the release
    // profile's `panic = "abort"` the daemon would die on SIGABRT).
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Every record is stored or back on the queue; none is stuck in processing.
    let (pending, processing) = queue_lengths(ns.redis_url(), ns.queue()).await.unwrap();
    let stored = count(&uri, &db, "request_logs").await.unwrap();
    assert_eq!(processing, 0);
    assert_eq!(
        stored + pending,
        n as u64,
        "stored {stored}, pending {pending}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_is_a_no_op() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let indexes = || async {
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let coll = client
            .database(&db)
            .collection::<bson::Document>("request_logs");
        let mut keys: Vec<String> = {
            use futures_util::TryStreamExt;
            coll.list_indexes()
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        }
        .into_iter()
        .map(|i| i.keys.to_string())
        .collect();
        keys.sort();
        keys
    };
    let first = run(&ns, &uri, &db, &["setup"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let after_first = indexes().await;
    assert!(
        after_first.iter().any(|k| k.contains("\"visitor_id\"")),
        "{after_first:?}"
    );
    let second = run(&ns, &uri, &db, &["setup"]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(indexes().await, after_first);
}

#[test]
fn check_config_accepts_the_sample_and_names_bad_keys() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/visitlog-consumer.toml");
    let ok = Command::new(BIN)
        .args([
            "--config",
            sample,
            "--mongodb-uri",
            "mongodb://ops:s3cret@db:27017",
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let shown = String::from_utf8_lossy(&ok.stdout);
    assert!(shown.contains("batch-size = 1000"), "{shown}");
    assert!(
        shown.contains("mongodb://ops:***@db:27017") && !shown.contains("s3cret"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "batch-size = 10\nbatchsize = 5\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&bad)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("batchsize") && err.lines().count() == 1,
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["--batch-size", "0", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch-size"));
}

/// An operator's round trip: list, requeue after a fix, purge, stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_requeued_and_purged() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    assert!(run(&ns, &uri, &db, &["setup"]).status.success());
    // A record dead-lettered for a cause that has since been fixed, and a
    // payload that is simply garbage.
    let fixed = visitlog_tests::request_payload(1);
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let dead = client
        .database(&db)
        .collection::<bson::Document>("dead_letters");
    dead.insert_one(bson::doc! {
        "_id": "fixed", "reason": "rejected by MongoDB (code 121): validator too strict",
        "at": bson::DateTime::now(), "consumer": "c", "queue": ns.queue(),
        "size": fixed.len() as i64, "truncated": false,
        "payload": String::from_utf8(fixed).unwrap(),
    })
    .await
    .unwrap();
    dead.insert_one(bson::doc! {
        "_id": "junk", "reason": "not JSON: expected value", "at": bson::DateTime::now(),
        "consumer": "c", "queue": ns.queue(), "size": 4_i64, "truncated": false, "payload": "junk",
    })
    .await
    .unwrap();

    let listed = run(&ns, &uri, &db, &["dead-letters", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("validator too strict") && listed.contains("size=4"),
        "{listed}"
    );

    let no_selection = run(&ns, &uri, &db, &["dead-letters", "requeue"]);
    assert_eq!(
        no_selection.status.code(),
        Some(1),
        "requeue without a selection is refused"
    );

    let requeued = run(
        &ns,
        &uri,
        &db,
        &[
            "dead-letters",
            "requeue",
            "--reason-contains",
            "validator too strict",
        ],
    );
    assert!(
        requeued.status.success(),
        "{}",
        String::from_utf8_lossy(&requeued.stderr)
    );
    assert!(String::from_utf8_lossy(&requeued.stdout).contains("requeued 1"));
    assert_eq!(
        queue_lengths(ns.redis_url(), ns.queue()).await.unwrap(),
        (1, 0)
    );

    let stats = run(&ns, &uri, &db, &["stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        (stats["pending"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(1), Some(1))
    );

    let mut consumer = spawn(&ns, &uri, &db, "ops");
    wait_until_stored(&uri, &db, 1).await;
    terminate(&consumer);
    assert!(consumer.wait().unwrap().success());

    let purged = run(&ns, &uri, &db, &["dead-letters", "purge", "--id", "junk"]);
    assert!(String::from_utf8_lossy(&purged.stdout).contains("deleted 1"));
    assert_eq!(count(&uri, &db, "dead_letters").await.unwrap(), 0);
}

/// `--help` with the secrets in the environment, as systemd's
/// `EnvironmentFile` gives them: no password shows, in any help page; and
/// `check-config` masks all three kinds of secret.
#[test]
fn help_and_check_config_never_print_a_password() {
    let secrets = [
        ("VISITLOG_REDIS_URL", "redis://:redis-pw-1@127.0.0.1:6379/0"),
        (
            "VISITLOG_MONGODB_URI",
            "mongodb://app:mongo-pw@2@db:27017/?authSource=admin",
        ),
        ("VISITLOG_STATUS_TOKEN", "status-token-0123456789"),
    ];
    let needles = ["redis-pw-1", "mongo-pw", "pw@2", "status-token-0123456789"];
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
        &["dead-letters", "requeue", "--help"],
    ] {
        let out = Command::new(BIN).envs(secrets).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("VISITLOG_MONGODB_URI"), "{args:?}: {text}");
        for needle in needles {
            assert!(!text.contains(needle), "{args:?} shows {needle}: {text}");
        }
    }
    // A password with `@`, a socket URL's `pass=`.
    for (var, url, secret, masked) in [
        (
            "VISITLOG_MONGODB_URI",
            "mongodb://app:p@ss@db:27017",
            "ss@db",
            "mongodb://app:***@db:27017",
        ),
        (
            "VISITLOG_REDIS_URL",
            "redis+unix:///tmp/r.sock?db=0&pass=secret",
            "secret",
            "redis+unix:///tmp/r.sock?db=0&pass=***",
        ),
    ] {
        let out = Command::new(BIN)
            .env(var, url)
            .arg("check-config")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shown.contains(masked) && !shown.contains(secret), "{shown}");
    }
}

/// Redis lists a client could never connect with are refused by
/// `check-config`, named where the operator wrote them, the password
/// never shown; a password holding a comma is one URL.
#[test]
fn check_config_refuses_redis_lists_no_client_can_use() {
    for (mode, urls, says) in [
        ("cluster", "redis://:pw-k7@h:1/3", "database 0 only"),
        ("cluster", "redis://:pw-k7@a:1,rediss://:pw-k7@b:2", "mixes"),
        (
            "cluster",
            "redis://:pw-k7@a:1,redis://:other@b:2",
            "same user and password",
        ),
        (
            "sentinel",
            "redis://:pw-k7@a:1/1,redis://b:2/2",
            "different databases",
        ),
    ] {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("VISITLOG_REDIS_MODE", mode)
            .env("VISITLOG_REDIS_URL", urls);
        if mode == "sentinel" {
            command.env("VISITLOG_REDIS_SENTINEL_MASTER", "m");
        }
        let out = command.arg("check-config").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{urls} accepted");
        assert!(
            err.contains(says) && err.contains("redis-url (environment VISITLOG_REDIS_URL)"),
            "{urls}: {err}"
        );
        assert!(!err.contains("pw-k7"), "{err}");
    }
    let out = Command::new(BIN)
        .env_clear()
        .env("VISITLOG_REDIS_URL", "redis://:pa,ss@127.0.0.1:6379")
        .arg("check-config")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("redis://:***@127.0.0.1:6379") && !shown.contains("pa,ss"),
        "{shown}"
    );
}

/// `check-config` refuses what would break at run time, naming the setting.
#[test]
fn check_config_refuses_unsafe_ids_backoff_and_deadline() {
    for (args, key) in [
        (&["--consumer-id", "web*"][..], "consumer-id"),
        (&["--consumer-id", "web[1]"], "consumer-id"),
        (&["--consumer-id", "a:b"], "consumer-id"),
        (&["--consumer-id", "web 1"], "consumer-id"),
        (&["--consumer-id", "wéb"], "consumer-id"),
        (&["--max-backoff", "0s"], "max-backoff"),
        (
            &["--heartbeat-ttl", "10s", "--shutdown-deadline", "10s"],
            "shutdown-deadline",
        ),
        (
            &["--heartbeat-ttl", "10s", "--shutdown-deadline", "15s"],
            "shutdown-deadline",
        ),
        (&["--status-max-connections", "0"], "status-max-connections"),
        (&["--status-header-timeout", "0s"], "status-header-timeout"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .args(args)
            .arg("check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} accepted");
        assert!(err.contains(key), "{args:?}: {err}");
    }
    let ok = Command::new(BIN)
        .env_clear()
        .args(["--consumer-id", "Web-1.eu_west", "--heartbeat-ttl", "11s"])
        .args(["--shutdown-deadline", "10s", "check-config"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A `run` whose stderr is read line by line as it comes.
struct Logged {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Logged {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a line containing `needle`; fails if the process exits first.
    async fn wait_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread catch up before showing the log.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("exited ({status}) before `{needle}`:\n{}", self.text());
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within 60 s:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM; the exit status, which must come within 15 s.
    async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return (status, self.text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running 15 s after SIGTERM:\n{}", self.text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn redis_admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn redis_do(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<()>(conn).await.unwrap();
}

/// A Redis that may evict keys gets a warning at start (naming the
/// policy); `noeviction` does not; a Redis that refuses `CONFIG` is not
/// checked, and the consumer runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_warned_about_at_start() {
    let redis = visitlog_tests::RedisServer::start().unwrap();
    let mut admin = redis_admin(&redis.url()).await;
    let (uri, db) = (shared_mongodb_uri(), test_database());
    // No CONFIG for this user: as with a renamed or disabled command.
    redis_do(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "noconfig",
            "on",
            ">noconfig-pw",
            "~*",
            "&*",
            "+@all",
            "-config",
        ],
    )
    .await;
    let no_config_url = redis
        .url()
        .replace("redis://", "redis://noconfig:noconfig-pw@");
    for (policy, url, warned) in [
        ("allkeys-lru", redis.url(), true),
        ("noeviction", redis.url(), false),
        ("volatile-lru", no_config_url, false),
    ] {
        redis_do(&mut admin, &["CONFIG", "SET", "maxmemory-policy", policy]).await;
        let ns = Namespace::on(url);
        let mut command = command(&ns, &uri, &db);
        command
            .env("RUST_LOG", "info")
            .args(["--consumer-id", "policy", "run", "--no-status"]);
        let mut consumer = Logged::spawn(command);
        consumer.wait_line("visitlog-consumer running").await;
        let (status, log) = consumer.terminate().await;
        assert!(status.success(), "{status}: {log}");
        assert_eq!(
            log.contains("maxmemory-policy") && log.contains(policy),
            warned,
            "{policy}: {log}"
        );
    }
}

/// The middleware was told another shard count than the consumer: the
/// consumer names the lists it does not read at start; told the same
/// count, it drains them all, and its `stats` counts every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_shards_the_consumer_does_not_read_are_named_at_start() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let keys = visitlog_schema::keys::QueueKeys::new(ns.queue(), 3, false);
    for (i, shard) in keys.shards().iter().enumerate() {
        visitlog_tests::push(ns.redis_url(), shard, &[visitlog_tests::request_payload(i)])
            .await
            .unwrap();
    }
    let mut first = command(&ns, &uri, &db);
    first
        .env("RUST_LOG", "info")
        .args(["--consumer-id", "shards", "run", "--no-status"]);
    let mut consumer = Logged::spawn(first);
    consumer.wait_line("visitlog-consumer running").await;
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status}: {log}");
    for shard in keys.shards() {
        assert!(log.contains(&format!("{shard} (1)")), "{shard}: {log}");
    }
    assert!(log.contains("VISITLOG_QUEUE_SHARDS"), "{log}");

    let mut second = command(&ns, &uri, &db);
    second
        .env("RUST_LOG", "info")
        .env("VISITLOG_QUEUE_SHARDS", "3")
        .args(["--consumer-id", "shards", "run", "--no-status"]);
    let consumer = Logged::spawn(second);
    wait_count(&uri, &db, "request_logs", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("VISITLOG_QUEUE_SHARDS"), "{log}");
    assert_eq!(count(&uri, &db, "request_logs").await.unwrap(), 3);
}

/// Redis answers PING but refuses the commands of `register` (an ACL, as a
/// hiccup would): the daemon retries with backoff instead of exiting, runs
/// once Redis accepts them, and stores. SIGTERM during the retries exits 0
/// at once. No log line shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_steps_retry_until_redis_accepts_them_and_give_way_to_sigterm() {
    let redis = visitlog_tests::RedisServer::start().unwrap();
    let mut admin = redis_admin(&redis.url()).await;
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let restrict = ["ACL", "SETUSER", "visitlog", "reset", "on", ">acl-pw-7f3"]
        .into_iter()
        .chain(["~*", "&*", "+ping", "+client", "+hello", "+auth"]);
    let restrict: Vec<&str> = restrict.collect();
    redis_do(&mut admin, &restrict).await;
    let url = redis
        .url()
        .replace("redis://", "redis://visitlog:acl-pw-7f3@");
    let ns = Namespace::on(url);

    // SIGTERM while register is being retried: exit 0, promptly.
    let mut command_1 = command(&ns, &uri, &db);
    command_1
        .env("RUST_LOG", "info")
        .args(["--consumer-id", "hiccup", "run", "--no-status"]);
    let mut consumer = Logged::spawn(command_1);
    consumer
        .wait_line("registering the consumer id failed")
        .await;
    let started = Instant::now();
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status}: {log}");
    assert!(started.elapsed() < Duration::from_secs(10), "{log}");
    assert!(!log.contains("acl-pw-7f3"), "{log}");

    // Redis accepts them after a while: the daemon ends up running.
    let mut command_2 = command(&ns, &uri, &db);
    command_2
        .env("RUST_LOG", "info")
        .args(["--consumer-id", "hiccup", "run", "--no-status"]);
    let mut consumer = Logged::spawn(command_2);
    consumer
        .wait_line("registering the consumer id failed")
        .await;
    redis_do(&mut admin, &["ACL", "SETUSER", "visitlog", "+@all"]).await;
    consumer.wait_line("visitlog-consumer running").await;
    visitlog_tests::push(
        &redis.url(),
        ns.queue(),
        &[visitlog_tests::request_payload(1)],
    )
    .await
    .unwrap();
    wait_until_stored(&uri, &db, 1).await;
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("acl-pw-7f3"), "{log}");
}

/// `systemd-analyze security --offline` scores both units (when systemd's
/// tools are installed): the README promises 1.2, and more than 1.5 fails.
#[test]
fn the_units_are_hardened() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    for unit in ["visitlog-consumer.service", "visitlog-consumer@.service"] {
        let Ok(out) = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(dist.join(unit))
            .output()
        else {
            eprintln!("skipping: systemd-analyze not installed");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{unit}: no score in\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(score <= 1.5, "{unit}: exposure {score}\n{text}");
    }
}

/// Two instances of the template on one host, each from its own file
/// (`consumer-%i.toml`: its id and status address), run side by side and
/// share the queue; a third reusing the first's id is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_template_instances_run_side_by_side() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let port = visitlog_tests::free_port().unwrap();
        let file = dir.path().join(format!("consumer-{name}.toml"));
        std::fs::write(
            &file,
            format!("consumer-id = \"host-{name}\"\nstatus-addr = \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let mut run = command(&ns, &uri, &db);
        run.env_remove("VISITLOG_STATUS_ADDR")
            .env("RUST_LOG", "info")
            .arg("--config")
            .arg(&file)
            .arg("run");
        let mut logged = Logged::spawn(run);
        logged.wait_line("visitlog-consumer running").await;
        instances.push((logged, port, file));
    }
    for (_, port, _) in &instances {
        let health = visitlog_tests::http()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "instance on {port}");
    }
    ns.fill(0..2000).await.unwrap();
    wait_until_stored(&uri, &db, 2000).await;

    // A copy of instance a's file: its id is in use.
    let mut twin = command(&ns, &uri, &db);
    twin.env_remove("VISITLOG_STATUS_ADDR")
        .arg("--config")
        .arg(&instances[0].2)
        .args(["run", "--no-status"]);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || twin.output().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("consumer id `host-a` is in use"), "{err}");

    for (logged, _, _) in instances {
        let (status, log) = logged.terminate().await;
        assert!(status.success(), "{status}: {log}");
    }
}

/// Start-up with MongoDB unreachable says, every few seconds, what it waits
/// for and where, never the password; SIGTERM ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_says_what_it_waits_for() {
    let ns = Namespace::new();
    let port = visitlog_tests::free_port().unwrap();
    let uri = format!("mongodb://app:sekrit-pw@127.0.0.1:{port}/?serverSelectionTimeoutMS=300");
    let mut run = command(&ns, &uri, &test_database());
    run.env("RUST_LOG", "info")
        .args(["--consumer-id", "waiting", "run", "--no-status"]);
    let mut consumer = Logged::spawn(run);
    consumer
        .wait_line(&format!(
            "waiting for MongoDB at mongodb://app:***@127.0.0.1:{port}"
        ))
        .await;
    let started = Instant::now();
    consumer.wait_line("attempt=3").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let (status, log) = consumer.terminate().await;
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("sekrit-pw"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes off a terminal: {log}"
    );
}

/// A bad duration in a variable is told under the variable's name; a
/// failing `stats` names the dependency and its address.
#[test]
fn errors_name_the_variable_and_the_dependency() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let out = command(&ns, &uri, &db)
        .env("VISITLOG_HEARTBEAT_INTERVAL", "soon")
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in VISITLOG_HEARTBEAT_INTERVAL"), "{err}");

    let port = visitlog_tests::free_port().unwrap();
    let out = command(&ns, &uri, &db)
        .env(
            "VISITLOG_REDIS_URL",
            format!("redis://:pw-x9@127.0.0.1:{port}"),
        )
        .arg("stats")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("Redis at redis://:***@127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("pw-x9"), "{err}");
}

/// `check-config` says where each value came from, and a setting in both
/// the file and the environment is warned about.
#[test]
fn check_config_names_each_values_origin() {
    let ns = Namespace::new();
    let (uri, db) = (shared_mongodb_uri(), test_database());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "batch-size = 10\nqueue = \"from-file\"\n").unwrap();
    let out = command(&ns, &uri, &db)
        .arg("--config")
        .arg(&file)
        .args(["--max-in-flight", "3", "check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_owned()
    };
    assert!(
        line("batch-size").ends_with(&format!("# file {}", file.display())),
        "{shown}"
    );
    assert!(
        line("queue").ends_with("# environment VISITLOG_QUEUE"),
        "{shown}"
    );
    assert!(
        line("max-in-flight").ends_with("# flag --max-in-flight"),
        "{shown}"
    );
    assert!(
        line("max-backoff").ends_with("# environment VISITLOG_MAX_BACKOFF"),
        "{shown}"
    );
    assert!(line("session-timeout").ends_with("# default"), "{shown}");
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains(
            "queue: the configuration file's value is overridden by environment VISITLOG_QUEUE"
        ),
        "{warned}"
    );
}
