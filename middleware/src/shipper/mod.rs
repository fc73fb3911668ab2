//! The background task that moves captured requests (and learning events,
//! and catalog publications) to Redis.
//!
//! The request path only does a `try_send` into a bounded channel. This task
//! turns each capture into a record (see [`crate::enrich`]), keeps records in
//! a bounded buffer ([`buffer`]), and sends them in batches with one `RPUSH` each, flushing
//! on count, bytes or time, whichever comes first.
//!
//! While Redis is down or stalled, records wait in the buffer and the task
//! retries with capped exponential backoff, reconnecting each time. When the
//! buffer is full, the newest records are dropped and counted (the oldest are
//! kept, so a gap is one contiguous stretch). A batch whose `RPUSH` timed out
//! may have reached Redis anyway; it is sent again, and the consumer drops the
//! duplicate by its `_id`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use visitlog_schema::keys::QueueKeys;
use visitlog_schema::{RedisConn, RedisTarget, Timeouts};

use crate::config::{Config, redact_url};
use crate::enrich::Enricher;
use crate::error::ConfigError;
use crate::shared::Item;

mod buffer;

use self::buffer::{Buffer, Limits};
use crate::stats::{Counters, Stats};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Captures taken off the channel per wake-up.
const RECV_CHUNK: usize = 256;

/// After taking what the channel held, the shipper leaves it this long
/// before reading it again, so that a busy app's requests wake it once a
/// millisecond or so, each time for a chunk, rather than once each.
/// Records reach Redis that much later; nothing waits on it, and a channel
/// of 1,024 slots or more holds a millisecond of 100,000 requests/s many
/// times over.
const RECV_NAP: Duration = Duration::from_millis(1);

/// A channel smaller than this is read on every wake-up instead.
const NAP_MIN_CHANNEL: usize = 1024;

/// What a page view's JSON record usually takes, geo and user agent included.
const RECORD_BYTES: usize = 1024;

/// How often the counters are copied to the `metrics` facade.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// The background half of [`crate::CaptureLayer`]: spawn it with
/// [`Shipper::spawn`] (or run [`Shipper::run`] on a task of your own).
#[must_use = "records are only sent to Redis while the shipper runs"]
pub struct Shipper {
    pub(crate) rx: mpsc::Receiver<Item>,
    pub(crate) enricher: Enricher,
    target: RedisTarget,
    keys: QueueKeys,
    /// The shard the next batch goes to: batches take the shards in turn.
    next_shard: std::sync::atomic::AtomicUsize,
    config: Config,
    pub(crate) counters: Arc<Counters>,
    shutdown: watch::Receiver<Option<Instant>>,
    shutdown_tx: watch::Sender<Option<Instant>>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("redis_url", &redact_url(&self.config.redis_url))
            .field("queue", &self.config.queue)
            .finish_non_exhaustive()
    }
}

/// Controls a spawned [`Shipper`]: read its counters, flush it on shutdown.
#[derive(Debug)]
pub struct ShipperHandle {
    shutdown: watch::Sender<Option<Instant>>,
    pub(crate) counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl ShipperHandle {
    /// The counters, as [`crate::CaptureLayer::stats`] gives them.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stops taking new records and sends what is buffered, for at most
    /// `deadline`. Records still unsent then are counted as dropped.
    pub async fn shutdown(self, deadline: Duration) -> Stats {
        let _ = self.shutdown.send(Some(Instant::now() + deadline));
        // The task itself honours the deadline; the margin covers scheduling.
        let _ = tokio::time::timeout(deadline + Duration::from_secs(1), self.task).await;
        self.counters.snapshot()
    }
}

type SendFuture = Pin<Box<dyn Future<Output = SendOutcome> + Send>>;

struct SendOutcome {
    conn: Option<RedisConn>,
    batch: Vec<Vec<u8>>,
    result: Result<(), String>,
}

impl Shipper {
    /// The shipper for the records that arrive on `rx`; no connection is
    /// made yet.
    pub(crate) fn new(
        config: Config,
        enricher: Enricher,
        rx: mpsc::Receiver<Item>,
        counters: Arc<Counters>,
    ) -> Result<Self, ConfigError> {
        let target = config.redis_target()?;
        let keys = config.queue_keys();
        let (shutdown_tx, shutdown) = watch::channel(None);
        tracing::debug!(redis = %redact_url(&config.redis_url), queue = %config.queue, "visitlog: capture layer ready");
        Ok(Self {
            rx,
            enricher,
            target,
            keys,
            next_shard: std::sync::atomic::AtomicUsize::new(0),
            config,
            counters,
            shutdown,
            shutdown_tx,
        })
    }

    /// Spawns the shipper on the current Tokio runtime.
    pub fn spawn(self) -> ShipperHandle {
        let shutdown = self.shutdown_tx.clone();
        let counters = self.counters.clone();
        let task = tokio::spawn(self.run());
        ShipperHandle {
            shutdown,
            counters,
            task,
        }
    }

    /// Runs until shutdown is requested through a handle, or every
    /// [`crate::CaptureLayer`] is dropped; then flushes what it can.
    pub async fn run(mut self) {
        let watcher = self
            .enricher
            .geo
            .as_ref()
            .map(|db| db.watch(self.config.geodb_reload));
        let limits = Limits::of(&self.config);
        let mut buffer = Buffer::new(limits);
        let mut conn: Option<RedisConn> = None;
        let mut in_flight: Option<SendFuture> = None;
        let mut backoff = Backoff::default();
        let mut retry_at: Option<Instant> = None;
        let mut healthy = true;
        let mut overflowing = false;
        let redis_timeout = self.config.redis_timeout;

        let mut items = Vec::with_capacity(RECV_CHUNK);
        Stats::describe_metrics();
        let mut publish_at = Instant::now();
        // The channel is not read before this (see `RECV_NAP`).
        let mut listen_at: Option<Instant> = None;
        let naps = self.rx.max_capacity() >= NAP_MIN_CHANNEL;

        let deadline = loop {
            let now = Instant::now();
            if now >= publish_at {
                self.counters.snapshot().publish_metrics();
                publish_at = now + METRICS_INTERVAL;
            }
            // A batch goes out as soon as nothing is in flight and one is due,
            // checked here, before waiting on anything: a channel that never
            // empties (sustained load) must not keep the sender waiting.
            let send_at = (in_flight.is_none())
                .then(|| buffer.due_at(retry_at))
                .flatten();
            if send_at.is_some_and(|at| at <= now) {
                let batch = buffer.take_batch();
                in_flight = Some(self.send(conn.take(), batch, redis_timeout));
                continue;
            }
            let listening = listen_at.is_none_or(|at| at <= now);
            let wake_at = [send_at, Some(publish_at), listen_at.filter(|_| !listening)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(publish_at);

            tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    let deadline = if changed.is_ok() { *self.shutdown.borrow() } else { None };
                    break deadline.unwrap_or_else(Instant::now);
                }
                outcome = async { in_flight.as_mut().expect("guarded by is_some").await }, if in_flight.is_some() => {
                    in_flight = None;
                    match self.settle(&mut buffer, &mut conn, outcome) {
                        Ok(()) => {
                            backoff = Backoff::default();
                            retry_at = None;
                            if !healthy {
                                healthy = true;
                                tracing::info!(queue = %self.config.queue, buffered = buffer.len(), "visitlog: Redis reachable again, sending buffered records");
                            }
                        }
                        Err(error) => {
                            if healthy {
                                healthy = false;
                                tracing::warn!(redis = %redact_url(&self.config.redis_url), %error, "visitlog: cannot send to Redis; buffering records and retrying");
                            }
                            retry_at = Some(Instant::now() + jitter(backoff.next()));
                        }
                    }
                }
                received = self.rx.recv_many(&mut items, RECV_CHUNK), if listening => {
                    if received == 0 {
                        // Every layer is gone: flush what is left, promptly.
                        break Instant::now() + redis_timeout;
                    }
                    for item in items.drain(..) {
                        let accepted = self.push(&mut buffer, item);
                        if accepted {
                            overflowing = false;
                        } else if !overflowing {
                            overflowing = true;
                            tracing::warn!(limit_records = limits.buffer_records, limit_bytes = limits.buffer_bytes, "visitlog: buffer full; dropping the newest records until Redis catches up");
                        }
                    }
                    if received == RECV_CHUNK {
                        // Under a flood the channel is always ready: let the
                        // Redis connection's task, and the app's, have the thread.
                        listen_at = None;
                        tokio::task::yield_now().await;
                    } else if naps {
                        listen_at = Some(Instant::now() + RECV_NAP);
                    }
                }
                // Wakes the loop, whose top starts the send, publishes the
                // counters or reads the channel again.
                () = tokio::time::sleep_until(wake_at) => {}
            }
        };

        let counters = self.counters.clone();
        self.drain(buffer, conn, in_flight, deadline).await;
        counters.snapshot().publish_metrics();
        if let Some(w) = watcher {
            w.abort();
        }
    }

    /// Enriches and serialises one item into the buffer; `false` if dropped.
    fn push(&self, buffer: &mut Buffer, item: Item) -> bool {
        if buffer.is_full() {
            Counters::add(&self.counters.dropped, 1);
            return false;
        }
        match self.serialise(item) {
            Ok(json) => {
                buffer.push(json);
                true
            }
            Err(e) => {
                // Not reachable with the record types; counted, never a panic.
                tracing::error!(error = %e, "visitlog: record could not be serialised");
                Counters::add(&self.counters.dropped, 1);
                false
            }
        }
    }

    /// One item as the JSON record that goes on the Redis list.
    /// The buffer starts at a typical record's size, so that writing one
    /// seldom grows it, and is then trimmed (in place) to what it holds.
    pub(crate) fn serialise(&self, item: Item) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(RECORD_BYTES);
        match item {
            Item::Request(captured) => self.enricher.write_json(&captured, &mut out),
            Item::Event { record, session } => {
                serde_json::to_writer(&mut out, &self.enricher.event(*record, session))
            }
            Item::Catalog(record) => serde_json::to_writer(&mut out, &record),
        }?;
        out.shrink_to_fit();
        Ok(out)
    }

    /// After shutdown: take what is queued, send it until `deadline`, count the rest as dropped.
    async fn drain(
        mut self,
        mut buffer: Buffer,
        mut conn: Option<RedisConn>,
        mut in_flight: Option<SendFuture>,
        deadline: Instant,
    ) {
        self.rx.close();
        while let Some(item) = self.rx.recv().await {
            self.push(&mut buffer, item);
        }
        let mut backoff = Backoff::default();
        loop {
            let outcome = match in_flight.take() {
                Some(f) => tokio::time::timeout_at(deadline, f).await.ok(),
                None if buffer.is_empty() => break,
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    let batch = buffer.take_batch();
                    in_flight =
                        Some(self.send(conn.take(), batch, left.min(self.config.redis_timeout)));
                    continue;
                }
            };
            let Some(outcome) = outcome else { break };
            if self.settle(&mut buffer, &mut conn, outcome).is_err() {
                tokio::time::sleep_until((Instant::now() + backoff.next()).min(deadline)).await;
            }
        }
        // A batch still in flight at the deadline is abandoned with its future.
        // Whatever is neither shipped nor dropped by now is lost: the buffer,
        // and a batch abandoned in flight.
        let lost = self.counters.snapshot().buffered;
        if lost > 0 {
            self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(
                lost,
                "visitlog: shutdown deadline passed with records unsent"
            );
        }
    }

    /// Books a finished send: the batch is shipped, or on failure goes back
    /// to the front of the buffer and the error is counted. Keeps the
    /// connection if it is still good.
    fn settle(
        &self,
        buffer: &mut Buffer,
        conn: &mut Option<RedisConn>,
        outcome: SendOutcome,
    ) -> Result<(), String> {
        *conn = outcome.conn;
        match outcome.result {
            Ok(()) => {
                buffer.sent();
                Counters::add(&self.counters.shipped, outcome.batch.len());
                Ok(())
            }
            Err(error) => {
                Counters::add(&self.counters.send_errors, 1);
                buffer.restore(outcome.batch);
                Err(error)
            }
        }
    }

    fn send(&self, conn: Option<RedisConn>, batch: Vec<Vec<u8>>, timeout: Duration) -> SendFuture {
        let target = self.target.clone();
        let shards = self.keys.shards();
        let turn = self.next_shard.fetch_add(1, Ordering::Relaxed);
        let queue = shards[turn % shards.len()].clone();
        Box::pin(async move {
            let attempt = async {
                let mut conn = match conn {
                    Some(c) => c,
                    None => {
                        target
                            .connect(Timeouts {
                                connect: timeout,
                                response: timeout,
                            })
                            .await?
                    }
                };
                redis::cmd("RPUSH")
                    .arg(&queue)
                    .arg(&batch)
                    .query_async::<i64>(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(conn)
            };
            // Belt and braces: the connection's own timeouts do not cover every stall.
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(conn)) => SendOutcome {
                    conn: Some(conn),
                    batch,
                    result: Ok(()),
                },
                Ok(Err(e)) => SendOutcome {
                    conn: None,
                    batch,
                    result: Err(e.to_string()),
                },
                Err(_) => SendOutcome {
                    conn: None,
                    batch,
                    result: Err(format!("no answer within {timeout:?}")),
                },
            }
        })
    }
}

/// Capped exponential backoff between failed sends; a success starts over.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(BACKOFF_MIN)
    }
}

impl Backoff {
    /// The wait before the next attempt; the one after is twice as long.
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (wait * 2).min(BACKOFF_MAX);
        wait
    }
}

/// ±20 %, so many app instances do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests;
