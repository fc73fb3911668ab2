//! Start-up: every step retries like the loop does and gives way to
//! SIGTERM, so a hiccup of Redis or MongoDB here never ends the daemon.
//! READY is sent only once both answer, collections are set up and the
//! consumer id is ours.

use std::collections::VecDeque;
use std::time::Duration;

use visitlog_schema::{redact_url, redact_urls_in};

use super::{Ctx, RunOptions};
use crate::error::{Error, Result};
use crate::internal_events::StateLog;
use crate::notify;
use crate::retry::{Backoff, Retry};
use crate::shutdown::Shutdown;
use crate::source::Source;

/// Runs one start-up step until it succeeds, retrying with the loop's
/// backoff and listening for shutdown meanwhile: `Ok(None)` if shutdown came
/// first, `Err` only for an error `fatal` says no retry can fix.
pub(super) async fn step<T, E, F, Fut>(
    what: &str,
    dependency: &StateLog,
    retry: &mut Retry,
    op: F,
    fatal: impl Fn(&E) -> bool,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempts = 0u32;
    let done = retry
        .until_ok(op, |e| {
            if fatal(&e) {
                return Err(e);
            }
            attempts += 1;
            // Every time (at most one line per max-backoff once it has
            // grown): a step that never succeeds must not go quiet.
            let message = redact_urls_in(&e.to_string());
            tracing::warn!(error = %message, attempts, "{what} failed; retrying with backoff");
            dependency.failed(&message);
            Ok(())
        })
        .await?;
    if done.is_some() {
        if attempts > 0 {
            tracing::info!(attempts = attempts + 1, "{what}: done");
        }
        dependency.ok();
    }
    Ok(done)
}

/// Waits for Redis and MongoDB, sets up collections, registers the id and
/// says READY; `false` if shutdown came first.
pub(super) async fn start(
    ctx: &Ctx,
    options: RunOptions,
    token: &str,
    shutdown: &Shutdown,
) -> Result<bool> {
    if !wait_for_services(ctx, shutdown).await {
        return Ok(false);
    }
    let mut retry = Retry::new(Backoff::new(ctx.config.max_backoff), shutdown.clone());
    check_eviction_policy(&ctx.source).await;
    check_stray_lists(&ctx.source).await;
    if options.setup {
        notify::status("setting up MongoDB collections and indexes");
        // Index builds on big collections can outlast TimeoutStartSec: keep
        // asking for more time while setup runs.
        let extend = tokio::spawn(async {
            loop {
                notify::extend_start(Duration::from_secs(60));
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
        });
        let done = step(
            "setting up MongoDB collections",
            &ctx.deps.mongodb,
            &mut retry,
            || async {
                ctx.sink.setup(&ctx.config.retention()).await?;
                ctx.analytics.setup().await
            },
            |_| false,
        )
        .await;
        extend.abort();
        let done = done?;
        if done.is_none() {
            return Ok(false);
        }
    }
    // Only a live holder of the id is final; anything else is Redis's.
    let registered = step(
        "registering the consumer id",
        &ctx.deps.redis,
        &mut retry,
        || ctx.source.register(token, ctx.config.heartbeat_ttl),
        |e| matches!(e, Error::IdInUse { .. }),
    )
    .await?;
    if registered.is_none() {
        return Ok(false);
    }
    ctx.publish_report().await;
    tracing::info!(consumer = %ctx.id, queue = %ctx.config.queue, database = %ctx.config.database, "visitlog-consumer running");
    notify::ready();
    Ok(true)
}

/// Longest pause between two looks at Redis and MongoDB while starting, so
/// that the log says every few seconds what the start waits for.
const START_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Pings Redis and MongoDB until both answer, saying in the log (and to
/// systemd, `STATUS=`) what it waits for, by address without password, at
/// each attempt; `false` if shutdown came first.
async fn wait_for_services(ctx: &Ctx, shutdown: &Shutdown) -> bool {
    let max = ctx.config.max_backoff.min(START_PAUSE_MAX);
    let mut retry = Retry::new(Backoff::new(max), shutdown.clone());
    let mut attempts = 0u32;
    let both = || {
        attempts += 1;
        let attempt = attempts;
        async move {
            let redis = ctx.source.ping().await;
            let mongo = ctx.sink.ping().await;
            match &redis {
                Ok(()) => ctx.deps.redis.ok(),
                Err(e) => ctx.deps.redis.failed(e),
            }
            match &mongo {
                Ok(()) => ctx.deps.mongodb.ok(),
                Err(e) => ctx.deps.mongodb.failed(e),
            }
            let mut waiting = Vec::new();
            if let Err(e) = &redis {
                waiting.push(format!(
                    "Redis at {} ({})",
                    redact_url(&ctx.config.redis_url),
                    redact_urls_in(&e.to_string())
                ));
            }
            if let Err(e) = &mongo {
                waiting.push(format!(
                    "MongoDB at {} ({})",
                    redact_url(&ctx.config.mongodb_uri),
                    redact_urls_in(&e.to_string())
                ));
            }
            if waiting.is_empty() {
                return Ok(());
            }
            let what = waiting.join(" and ");
            tracing::warn!(attempt, "waiting for {what}");
            notify::status(&format!("waiting for {what}"));
            Err(())
        }
    };
    matches!(retry.until_ok(both, |()| Ok(())).await, Ok(Some(())))
}

/// Warns unless Redis's `maxmemory-policy` is `noeviction`: an evicting
/// policy can drop the queue's records, processing lists and heartbeats.
async fn check_eviction_policy(source: &Source) {
    match source.eviction_policy().await {
        Ok(Some(policy)) if policy == "noeviction" => {
            tracing::debug!("Redis maxmemory-policy is noeviction");
        }
        Ok(Some(policy)) => tracing::warn!(
            %policy,
            "Redis maxmemory-policy is `{policy}`, not `noeviction`: at maxmemory Redis may evict queued records, processing lists and heartbeats, and records are lost; set `maxmemory-policy noeviction`"
        ),
        Ok(None) => tracing::debug!("Redis did not say its maxmemory-policy; not checked"),
        Err(e) => tracing::debug!(
            error = %redact_urls_in(&e.to_string()),
            "cannot read Redis maxmemory-policy (CONFIG disabled or renamed?); not checked"
        ),
    }
}

/// Warns about records on lists of the queue that this instance does not
/// read: the middleware has another `queue-shards` (or mode) than ours.
/// The status sampler warns again when the lists holding them change.
async fn check_stray_lists(source: &Source) {
    match source.stray_lists().await {
        Ok(stray) if stray.is_empty() => {}
        Ok(stray) => {
            let lists: Vec<String> = stray.iter().map(|(k, n)| format!("{k} ({n})")).collect();
            tracing::warn!(
                lists = %lists.join(", "),
                "{}",
                crate::source::STRAY_ADVICE
            );
        }
        Err(e) => tracing::debug!(
            error = %redact_urls_in(&e.to_string()),
            "cannot look for lists of other shard counts; not checked"
        ),
    }
}

/// Runs a Redis operation until it succeeds; `None` if shutdown came first.
async fn retry_redis<T, F, Fut>(ctx: &Ctx, retry: &mut Retry, op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let outcome = retry
        .until_ok(op, |e| {
            ctx.deps.redis.failed(&e);
            Ok::<(), redis::RedisError>(())
        })
        .await;
    let value = outcome.ok().flatten()?;
    ctx.deps.redis.ok();
    Some(value)
}

/// Batches a previous run left behind: lists of slots this run does not
/// have go back to the queue; the records of each slot of ours are
/// returned to be finished first (a `None` entry: the slot is free).
/// `None` if shutdown came first.
pub(super) async fn leftovers(
    ctx: &Ctx,
    shutdown: &Shutdown,
) -> Option<VecDeque<(usize, Vec<Vec<u8>>)>> {
    let slots = ctx.config.max_in_flight;
    let mut retry = Retry::new(Backoff::new(ctx.config.max_backoff), shutdown.clone());
    // It ran with a higher max-in-flight: back to the head of the queue.
    let own = retry_redis(ctx, &mut retry, || ctx.source.own_lists()).await?;
    let beyond = ctx.source.adopt(own);
    if !beyond.is_empty() {
        let n = retry_redis(ctx, &mut retry, || ctx.source.hand_back(&beyond)).await?;
        tracing::info!(
            lists = beyond.len(),
            records = n,
            "handed back batches a previous run left beyond max-in-flight"
        );
    }
    // Our own unfinished batches (we were killed while storing them).
    let mut out = VecDeque::with_capacity(slots);
    for slot in 0..slots {
        let records = retry_redis(ctx, &mut retry, || ctx.source.slot_records(slot)).await?;
        if !records.is_empty() {
            tracing::info!(
                slot,
                records = records.len(),
                "finishing a batch left by the previous run"
            );
        }
        out.push_back((slot, records));
    }
    Some(out)
}

/// The pause between heartbeats: the configured interval, or half the
/// systemd watchdog period when that is shorter.
pub(super) fn heartbeat_every(interval: Duration) -> Duration {
    notify::watchdog_interval().map_or(interval, |w| w.min(interval))
}
