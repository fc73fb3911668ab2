//! The Redis side: taking batches off the queue without ever losing one.
//!
//! A batch is moved atomically (a Lua script) from the queue into one of this
//! instance's processing lists (`{queue}:processing:{id}:{slot}`), stored,
//! and only then deleted. A crash at any moment leaves every record either on
//! the queue or in a processing list: the instance finishes its own lists when
//! it starts again (all of them, found with `SCAN`, whatever `max-in-flight`
//! was), and any instance gives the lists whose owner has no heartbeat back
//! to the queue (found with `SCAN` too, not through the set of ids).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult, Script};
use tokio::sync::OnceCell;
use visitlog_schema::keys;

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
    fetch: Script,
    hand_back: Script,
    reap: Script,
}

/// Another live process uses this consumer id.
#[derive(Debug, thiserror::Error)]
#[error(
    "consumer id `{id}` is in use by a live instance ({holder}); give this one another --consumer-id, \
     or wait for that heartbeat to expire"
)]
pub struct IdInUse {
    /// The id.
    pub id: String,
    /// The heartbeat value of the holder (`host pid token`).
    pub holder: String,
}

impl Source {
    /// Prepares the source; no connection is made until first used.
    pub fn new(
        redis_url: &str,
        queue: &str,
        id: &str,
        slots: usize,
        wait: Duration,
    ) -> RedisResult<Self> {
        Ok(Self::with_client(
            redis::Client::open(redis_url)?,
            queue,
            id,
            slots,
            wait,
        ))
    }

    fn with_client(
        client: redis::Client,
        queue: &str,
        id: &str,
        slots: usize,
        wait: Duration,
    ) -> Self {
        Self {
            client,
            conn: OnceCell::new(),
            blocking: OnceCell::new(),
            queue: queue.to_owned(),
            id: id.to_owned(),
            slots,
            wait,
            fetch: Script::new(include_str!("lua/fetch.lua")),
            hand_back: Script::new(include_str!("lua/hand_back.lua")),
            reap: Script::new(include_str!("lua/reap.lua")),
        }
    }

    /// The same source with connections of its own (for the status endpoint,
    /// which must answer while the worker's connection is busy).
    pub fn with_own_connection(&self) -> Self {
        Self::with_client(
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

    async fn conn(&self) -> RedisResult<ConnectionManager> {
        self.manager(&self.conn, Duration::from_secs(5)).await
    }

    /// The queue key.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The processing list of `slot`.
    pub fn slot_key(&self, slot: usize) -> String {
        keys::processing_list(&self.queue, &self.id, slot)
    }

    fn heartbeat_key(&self) -> String {
        keys::heartbeat(&self.queue, &self.id)
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }

    /// Claims the consumer id: refuses when a live process elsewhere holds it;
    /// takes it over from a dead process of this host (a restart).
    pub async fn register(&self, token: &str, ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.conn().await?;
        let current: Option<String> = conn.get(self.heartbeat_key()).await?;
        if let Some(holder) = current {
            let mut parts = holder.split(' ');
            let (host, pid) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let same_host = host == hostname_string();
            let alive = same_host && std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !same_host || (alive && pid != std::process::id().to_string()) {
                return Err(IdInUse {
                    id: self.id.clone(),
                    holder,
                }
                .into());
            }
        }
        let _: () = conn.sadd(keys::consumers(&self.queue), &self.id).await?;
        self.heartbeat(token, ttl).await?;
        Ok(())
    }

    /// Says this instance is alive for another `ttl`.
    pub async fn heartbeat(&self, token: &str, ttl: Duration) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let value = format!("{} {} {token}", hostname_string(), std::process::id());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // Back into the set too: an instance stalled past its TTL was reaped
        // (and dropped from the set), and must show in the fleet again.
        redis::pipe()
            .cmd("SET")
            .arg(self.heartbeat_key())
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .sadd(keys::consumers(&self.queue), &self.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Leaves cleanly: the heartbeat goes, and the id leaves the set.
    pub async fn unregister(&self) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let _: () = conn.del(self.heartbeat_key()).await?;
        let _: () = conn.del(keys::status(&self.queue, &self.id)).await?;
        let _: () = conn.srem(keys::consumers(&self.queue), &self.id).await?;
        Ok(())
    }

    /// What is in a processing list (left there by a crash, or in flight).
    pub async fn slot_records(&self, slot: usize) -> RedisResult<Vec<Vec<u8>>> {
        let mut conn = self.conn().await?;
        conn.lrange(self.slot_key(slot), 0, -1).await
    }

    /// Moves up to `max` records into `slot`'s list and returns everything
    /// the list holds; waits up to the flush interval for a first record
    /// when the queue is empty.
    pub async fn fetch(&self, slot: usize, max: usize) -> RedisResult<Vec<Vec<u8>>> {
        let mut conn = self.conn().await?;
        let key = self.slot_key(slot);
        let records: Vec<Vec<u8>> = self
            .fetch
            .key(&self.queue)
            .key(&key)
            .arg(max)
            .invoke_async(&mut conn)
            .await?;
        if !records.is_empty() {
            return Ok(records);
        }
        let mut blocking = self
            .manager(&self.blocking, self.wait + Duration::from_secs(5))
            .await?;
        let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.queue)
            .arg(&key)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(self.wait.as_secs_f64())
            .query_async(&mut blocking)
            .await?;
        let Some(first) = first else {
            return Ok(Vec::new());
        };
        if max == 1 {
            return Ok(vec![first]);
        }
        // The script returns the whole list, `first` included.
        self.fetch
            .key(&self.queue)
            .key(&key)
            .arg(max - 1)
            .invoke_async(&mut conn)
            .await
    }

    /// The batch in `slot` is stored: forget it.
    pub async fn ack(&self, slot: usize) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        conn.del(self.slot_key(slot)).await
    }

    /// Every processing list of this instance, whatever its slot: also
    /// those of slots beyond `max-in-flight`, left by a run that had more.
    pub async fn own_lists(&self) -> RedisResult<Vec<String>> {
        let mut conn = self.conn().await?;
        let pattern = format!(
            "{}:processing:{}:*",
            glob_escape(&self.queue),
            glob_escape(&self.id)
        );
        scan(&mut conn, &pattern).await
    }

    /// The slot of one of this instance's processing lists; `None` for
    /// another key.
    pub fn slot_of(&self, key: &str) -> Option<usize> {
        let prefix = format!("{}:processing:{}:", self.queue, self.id);
        key.strip_prefix(&prefix)?.parse().ok()
    }

    /// Puts the given processing lists back at the head of the queue, in
    /// their order, and deletes them; returns how many records went back.
    pub async fn hand_back(&self, lists: &[String]) -> RedisResult<u64> {
        if lists.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut call = self.hand_back.key(&self.queue);
        for list in lists {
            call.key(list);
        }
        call.invoke_async(&mut conn).await
    }

    /// Puts every processing list of this instance (found with `SCAN`, so
    /// whatever its slot) back at the head of the queue.
    pub async fn hand_back_all(&self) -> RedisResult<u64> {
        let lists = self.own_lists().await?;
        self.hand_back(&lists).await
    }

    /// Gives the batches of dead instances back to the queue; returns how
    /// many records went back.
    ///
    /// Walks the processing lists themselves (`SCAN`), not the set of
    /// consumer ids: a list whose owner's heartbeat is missing is reaped
    /// even if the owner left the set (or never was in it).
    pub async fn reap_dead(&self) -> RedisResult<u64> {
        let mut conn = self.conn().await?;
        let prefix = format!("{}:processing:", self.queue);
        let lists = scan(
            &mut conn,
            &format!("{}:processing:*", glob_escape(&self.queue)),
        )
        .await?;
        let mut by_owner: std::collections::BTreeMap<&str, Vec<&str>> =
            std::collections::BTreeMap::new();
        for list in &lists {
            let Some((owner, _slot)) = list
                .strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit_once(':'))
            else {
                continue;
            };
            if owner != self.id {
                by_owner.entry(owner).or_default().push(list);
            }
        }
        let mut moved = 0;
        for (id, lists) in by_owner {
            let heartbeat = keys::heartbeat(&self.queue, id);
            if conn.exists(&heartbeat).await? {
                continue;
            }
            let mut call = self.reap.key(&self.queue);
            call.key(&heartbeat).key(keys::consumers(&self.queue));
            for list in lists {
                call.key(list);
            }
            let n: i64 = call.arg(id).invoke_async(&mut conn).await?;
            if n > 0 {
                tracing::warn!(consumer = %id, records = n, "visitlog-consumer: gave a dead consumer's batches back to the queue");
                moved += n.unsigned_abs();
            }
        }
        Ok(moved)
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

/// Who an instance is, as the status page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceStatus {
    /// Consumer id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it started.
    pub started: chrono::DateTime<chrono::Utc>,
}

impl InstanceStatus {
    /// This process, as consumer `id`.
    pub fn this_process(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            host: hostname_string(),
            pid: std::process::id(),
            started: chrono::Utc::now(),
        }
    }
}

/// The queue and the fleet, as one instance sees them.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Records waiting.
    pub pending: u64,
    /// The time of the record at the head of the queue.
    pub oldest_pending: Option<chrono::DateTime<chrono::Utc>>,
    /// Processing lists and their lengths.
    pub processing: std::collections::BTreeMap<String, u64>,
    /// What each live instance last said of itself.
    pub consumers: Vec<serde_json::Value>,
    /// Fleet-wide totals.
    pub totals: std::collections::BTreeMap<String, u64>,
    /// The newest record any live instance stored.
    pub newest_stored: Option<chrono::DateTime<chrono::Utc>>,
}

impl Source {
    /// Writes what this instance says of itself, for `ttl` (with the heartbeat).
    pub async fn publish_status(
        &self,
        status: &serde_json::Value,
        ttl: Duration,
    ) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("SET")
            .arg(keys::status(&self.queue, &self.id))
            .arg(status.to_string())
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut conn)
            .await
    }

    /// Adds what a batch did to the fleet-wide totals.
    pub async fn add_totals(&self, counts: &[(&str, u64)]) -> RedisResult<()> {
        let mut conn = self.conn().await?;
        let key = keys::totals(&self.queue);
        let mut pipe = redis::pipe();
        for (field, n) in counts.iter().filter(|(_, n)| *n > 0) {
            pipe.hincr(&key, *field, *n).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Reads the queue and the fleet.
    pub async fn observe(&self) -> RedisResult<Observed> {
        let mut conn = self.conn().await?;
        let mut out = Observed {
            pending: conn.llen(&self.queue).await?,
            ..Observed::default()
        };
        let head: Option<Vec<u8>> = conn.lindex(&self.queue, 0).await?;
        out.oldest_pending = head.and_then(|raw| {
            let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
            chrono::DateTime::parse_from_rfc3339(v.get("ts")?.as_str()?)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        for list in scan(
            &mut conn,
            &format!("{}:processing:*", glob_escape(&self.queue)),
        )
        .await?
        {
            let n: u64 = conn.llen(&list).await?;
            out.processing.insert(list, n);
        }
        let mut members: Vec<String> = conn.smembers(keys::consumers(&self.queue)).await?;
        members.sort();
        for id in members {
            let said: Option<String> = conn.get(keys::status(&self.queue, &id)).await?;
            let alive: bool = conn.exists(keys::heartbeat(&self.queue, &id)).await?;
            match said.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) {
                Some(v) => {
                    if let Some(t) = v["newest_stored"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    {
                        let t = t.with_timezone(&chrono::Utc);
                        out.newest_stored = Some(out.newest_stored.map_or(t, |o| o.max(t)));
                    }
                    out.consumers.push(v);
                }
                None if alive => out
                    .consumers
                    .push(serde_json::json!({ "id": id, "state": "unknown" })),
                None => {}
            }
        }
        let totals: std::collections::HashMap<String, u64> =
            conn.hgetall(keys::totals(&self.queue)).await?;
        out.totals = totals.into_iter().collect();
        Ok(out)
    }
}

/// Queue-wide figures, for `stats` and the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Records waiting on the queue.
    pub pending: u64,
    /// Records in processing lists (in flight, or left by a dead instance).
    pub processing: u64,
    /// Instance ids with a live heartbeat.
    pub consumers_alive: Vec<String>,
}

/// Reads the queue-wide figures.
pub async fn queue_stats(redis_url: &str, queue: &str) -> RedisResult<QueueStats> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pending: u64 = conn.llen(queue).await?;
    let mut processing = 0;
    for list in scan(&mut conn, &format!("{}:processing:*", glob_escape(queue))).await? {
        let n: u64 = conn.llen(&list).await?;
        processing += n;
    }
    let members: Vec<String> = conn.smembers(keys::consumers(queue)).await?;
    let mut consumers_alive = Vec::new();
    for id in members {
        if conn.exists(keys::heartbeat(queue, &id)).await? {
            consumers_alive.push(id);
        }
    }
    consumers_alive.sort();
    Ok(QueueStats {
        pending,
        processing,
        consumers_alive,
    })
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

async fn scan<C: redis::aio::ConnectionLike + Send>(
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
