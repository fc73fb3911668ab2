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

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use tokio::sync::OnceCell;
use visitlog_schema::keys;

mod claim;
mod hand_back;
mod reap;

/// The Lua scripts, each loaded (and hashed) once per process.
static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fetch.lua")));
static HAND_BACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/hand_back.lua")));
static REAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/reap.lua")));

/// Queue-side operations of one consumer instance. Cheap to share by reference.
pub struct Source {
    client: redis::Client,
    /// Commands; reconnects by itself once made.
    conn: OnceCell<ConnectionManager>,
    /// `BLMOVE` only: a blocking command holds up its connection.
    blocking: OnceCell<ConnectionManager>,
    queue: String,
    id: String,
    slots: usize,
    wait: Duration,
}

impl Source {
    /// Prepares the source on `client` (see [`crate::config::Config::redis_client`]);
    /// no connection is made until first used.
    pub fn new(client: redis::Client, queue: &str, id: &str, slots: usize, wait: Duration) -> Self {
        Self {
            client,
            conn: OnceCell::new(),
            blocking: OnceCell::new(),
            queue: queue.to_owned(),
            id: id.to_owned(),
            slots,
            wait,
        }
    }

    /// The Redis client, for one-off commands (the status endpoint's
    /// dead-letter actions).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The same source with connections of its own (for the status endpoint,
    /// which must answer while the worker's connection is busy).
    pub fn with_own_connection(&self) -> Self {
        Self::new(
            self.client.clone(),
            &self.queue,
            &self.id,
            self.slots,
            self.wait,
        )
    }

    async fn manager(
        &self,
        cell: &OnceCell<ConnectionManager>,
        response: Duration,
    ) -> RedisResult<ConnectionManager> {
        let manager = cell
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    .set_response_timeout(Some(response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(manager.clone())
    }

    /// The command connection (not the blocking one).
    pub(crate) async fn conn(&self) -> RedisResult<ConnectionManager> {
        self.manager(&self.conn, Duration::from_secs(5)).await
    }

    /// The queue key.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// This instance's consumer id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The processing list of `slot`.
    pub fn slot_key(&self, slot: usize) -> String {
        keys::processing_list(&self.queue, &self.id, slot)
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
    /// does not carry it. Fails when `CONFIG` is disabled or renamed.
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
}

/// The `SCAN` pattern of every processing list of `queue`.
pub(crate) fn processing_pattern(queue: &str) -> String {
    format!("{}:processing:*", glob_escape(queue))
}

/// `s` with the characters special to `SCAN MATCH` escaped (`*`, `?`, `[`,
/// `]`, `\`): a key part matched literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every key matching `pattern`, sorted.
pub(crate) async fn scan<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    pattern: &str,
) -> RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        found.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    Ok(found)
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
