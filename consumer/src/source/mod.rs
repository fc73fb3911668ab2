//! The Redis side: taking batches off the queue without ever losing one.
//!
//! A batch is moved atomically (a Lua script) from the queue into one of this
//! instance's processing lists (`{queue}:processing:{id}:{slot}`), stored,
//! and only then deleted. A crash at any moment leaves every record either on
//! the queue or in a processing list: the instance finishes its own lists when
//! it starts again (all of them, found with `SCAN`, whatever `max-in-flight`
//! was), and any instance gives the lists whose owner has no heartbeat back
//! to the queue (found with `SCAN` too, not through the set of ids).
//!
//! One file per group of operations: [`claim`] (a batch's life in its slot:
//! fetch, read back, acknowledge), [`hand_back`] (own lists back to the
//! queue), [`reap`] (dead instances' lists back to the queue). What an
//! instance says of itself and reads of the others is [`crate::fleet`].

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::{RedisResult, Script};
use tokio::sync::OnceCell;
use visitlog_schema::keys::{self, QueueKeys};
use visitlog_schema::{RedisConn, RedisTarget, Timeouts};

mod claim;
mod hand_back;
mod reap;

/// The Lua scripts, each loaded (and hashed) once per process.
static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fetch.lua")));
static HAND_BACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/hand_back.lua")));
static REAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/reap.lua")));

/// Deadline to connect to a Redis node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Queue-side operations of one consumer instance. Cheap to share by reference.
///
/// The queue may be split into shards ([`QueueKeys`]): a batch is claimed
/// from one shard into a processing list of that shard, so each script
/// touches one hash tag; the shard a slot's batch came from is remembered
/// until the batch is acknowledged.
pub struct Source {
    target: RedisTarget,
    /// Commands; reconnects by itself once made.
    conn: OnceCell<RedisConn>,
    /// `BLMOVE` only: a blocking command holds up its connection.
    blocking: OnceCell<RedisConn>,
    queue: String,
    keys: QueueKeys,
    id: String,
    slots: usize,
    wait: Duration,
    /// The shard each slot's batch is in.
    slot_shards: Mutex<Vec<usize>>,
    /// Where the next claim starts looking, so shards are served in turn.
    next_shard: AtomicUsize,
}

impl Source {
    /// Prepares the source of `queue` (named by `keys`) on `target`; no
    /// connection is made until first used.
    pub fn new(
        target: RedisTarget,
        queue: &str,
        keys: QueueKeys,
        id: &str,
        slots: usize,
        wait: Duration,
    ) -> Self {
        Self {
            target,
            conn: OnceCell::new(),
            blocking: OnceCell::new(),
            queue: queue.to_owned(),
            keys,
            id: id.to_owned(),
            slots,
            wait,
            slot_shards: Mutex::new(vec![0; slots]),
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Where Redis is, for one-off commands (the status endpoint's
    /// dead-letter actions).
    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The same source with connections of its own (for the status endpoint,
    /// which must answer while the worker's connection is busy).
    pub fn with_own_connection(&self) -> Self {
        Self::new(
            self.target.clone(),
            &self.queue,
            self.keys.clone(),
            &self.id,
            self.slots,
            self.wait,
        )
    }

    async fn lasting(
        &self,
        cell: &OnceCell<RedisConn>,
        response: Duration,
    ) -> RedisResult<RedisConn> {
        let conn = cell
            .get_or_try_init(|| {
                self.target.connect_lasting(Timeouts {
                    connect: CONNECT_TIMEOUT,
                    response,
                })
            })
            .await?;
        Ok(conn.clone())
    }

    /// The command connection (not the blocking one).
    pub(crate) async fn conn(&self) -> RedisResult<RedisConn> {
        self.lasting(&self.conn, Duration::from_secs(5)).await
    }

    /// The queue's name, as configured.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The queue's keys.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// This instance's consumer id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    fn slot_shard(&self, slot: usize) -> usize {
        self.slot_shards
            .lock()
            .map_or(0, |shards| shards.get(slot).copied().unwrap_or(0))
    }

    fn set_slot_shard(&self, slot: usize, shard: usize) {
        if let Ok(mut shards) = self.slot_shards.lock()
            && let Some(s) = shards.get_mut(slot)
        {
            *s = shard;
        }
    }

    /// The processing list of `slot`, in the shard its batch is from.
    pub fn slot_key(&self, slot: usize) -> String {
        let shard = &self.keys.shards()[self.slot_shard(slot) % self.keys.shards().len()];
        keys::processing_list(shard, &self.id, slot)
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }

    /// Redis's `maxmemory-policy` (`CONFIG GET`); `None` when the reply
    /// does not carry it. Fails when `CONFIG` is disabled or renamed. On a
    /// cluster, the node asked is the one holding the first shard.
    pub async fn eviction_policy(&self) -> RedisResult<Option<String>> {
        let mut conn = self.conn().await?;
        let reply: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await?;
        Ok(reply.get("maxmemory-policy").cloned())
    }

    /// Slots this instance may use.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Non-empty lists this instance does not read but another shard
    /// count or mode of the same queue would ([`QueueKeys::strays`]): a
    /// middleware told another `VISITLOG_QUEUE_SHARDS` fills them.
    pub async fn stray_lists(&self) -> RedisResult<BTreeMap<String, u64>> {
        stranded(&self.conn().await?, &self.keys).await
    }
}

/// The `SCAN` pattern of every processing list of one shard.
pub(crate) fn processing_pattern(shard: &str) -> String {
    format!("{}:processing:*", glob_escape(shard))
}

/// `s` with the characters special to `SCAN MATCH` escaped (`*`, `?`, `[`,
/// `]`, `\`): a key part matched literally.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What an operator should do about records on lists of another shard
/// count, said at start-up and by the status sampler.
pub(crate) const STRAY_ADVICE: &str = "records wait on lists of this queue that this consumer does not read: the middleware's VISITLOG_QUEUE_SHARDS or VISITLOG_REDIS_MODE differs from this consumer's queue-shards or redis-mode; give both the same, and these records are taken (README, Redis Cluster)";

/// The stray lists of `keys` that hold records ([`QueueKeys::strays`]),
/// with their lengths. One `LLEN` after the other, stopping at the first
/// error: sent together, 257 of them kept a cluster client that was
/// failing over too busy for anything else.
pub(crate) async fn stranded(
    conn: &RedisConn,
    keys: &QueueKeys,
) -> RedisResult<BTreeMap<String, u64>> {
    let mut conn = conn.clone();
    let mut out = BTreeMap::new();
    for list in keys.strays() {
        let n: u64 = redis::cmd("LLEN").arg(list).query_async(&mut conn).await?;
        if n > 0 {
            out.insert(list.clone(), n);
        }
    }
    Ok(out)
}

/// Every processing list of every shard, sorted.
pub(crate) async fn processing_lists(
    conn: &mut RedisConn,
    keys: &QueueKeys,
) -> RedisResult<Vec<String>> {
    let mut all = Vec::new();
    for shard in keys.shards() {
        all.extend(conn.scan_near(shard, &processing_pattern(shard)).await?);
    }
    all.sort();
    Ok(all)
}

/// This host's name, safe inside a consumer id and a heartbeat value (any
/// character outside `[A-Za-z0-9._-]` becomes `_`).
pub(crate) fn hostname_string() -> String {
    hostname::get().map_or_else(
        |_| "host".to_owned(),
        |h| {
            h.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        },
    )
}
