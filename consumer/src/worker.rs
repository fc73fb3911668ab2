//! The consumer loop: fetch batches into processing lists, store them,
//! acknowledge them; heartbeats, reaping dead instances, graceful shutdown.
//!
//! One task fetches (a `BLMOVE` in flight is never cancelled, so no record
//! can land in a processing list behind our back); each batch is stored by a
//! task of its own, up to `max-in-flight` at once, retrying with backoff
//! until MongoDB takes it; only then is its processing list deleted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::TryFutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::batch::Preparer;
use crate::config::Config;
use crate::internal_events::{
    Backoff, Dependencies, Metrics, MetricsSnapshot, StateLog, mask_secrets,
};
use crate::notify;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::{IdInUse, InstanceStatus, Source};
use crate::status::{self, StatusState};

/// How `run` starts.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Create or update collections and indexes first.
    pub setup: bool,
    /// Serve the status endpoint on `status-addr`.
    pub status: bool,
}

struct Ctx {
    /// Batches take their places in `lines` in the order they were fetched
    /// (the queue's order), one at a time: the ticket now being served.
    turn: tokio::sync::watch::Sender<u64>,
    /// Batches derive each progress document in fetch order, so batches of
    /// one process never make each other fold a learner's history again;
    /// batches of other learners go on meanwhile (see `store_batch`).
    lines: Lines,
    config: Config,
    id: String,
    source: Source,
    sink: Sink,
    preparer: Preparer,
    metrics: Arc<Metrics>,
    status: Arc<StatusState>,
    deps: Arc<Dependencies>,
}

/// Runs until `shutdown` fires; returns the counters.
pub async fn run(
    config: Config,
    options: RunOptions,
    mut shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> anyhow::Result<MetricsSnapshot> {
    config.validate()?;
    let id = config.consumer_id();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let source = Source::new(
        &config.redis_url,
        &config.queue,
        &id,
        config.max_in_flight,
        config.flush_interval,
    )
    .context("redis-url")?;
    let deps = Arc::new(Dependencies::default());
    // A DNS hiccup resolving a mongodb+srv:// URI is retried; a malformed
    // URI is not.
    let sink = start_up_step(
        "resolving the MongoDB URI",
        &deps.mongodb,
        config.max_backoff,
        &mut shutdown,
        || Sink::new(&config.mongodb_uri, &config.database),
        |e: &mongodb::error::Error| {
            !matches!(
                *e.kind,
                mongodb::error::ErrorKind::DnsResolve { .. } | mongodb::error::ErrorKind::Io(_)
            )
        },
    )
    .await
    .context("mongodb-uri")?;
    let Some(sink) = sink else {
        return Ok(metrics.snapshot());
    };
    // The status endpoint has its own Redis connection: it must answer
    // while the worker's is busy or broken.
    let status_source = source.with_own_connection();
    let status = Arc::new(StatusState::new(
        InstanceStatus::this_process(&id),
        config.queue.clone(),
        metrics.clone(),
        config.status_token.clone(),
        status_source,
        sink.clone(),
        deps.clone(),
    ));
    let ctx = Arc::new(Ctx {
        turn: tokio::sync::watch::Sender::new(0),
        lines: Lines {
            waiting: std::sync::Mutex::default(),
            moved: tokio::sync::watch::Sender::new(0),
        },
        preparer: Preparer::with_rules(config.rules())?,
        config,
        id,
        source,
        sink,
        metrics,
        status,
        deps,
    });
    // Stopped however `run` ends, early returns included.
    let mut status_tasks = AbortOnDrop(Vec::new());
    if options.status {
        let mut stop = shutdown.clone();
        status_tasks.0.push(
            status::serve(
                ctx.config.status_addr,
                status::Limits::of(&ctx.config),
                ctx.status.clone(),
                async move {
                    stop.requested().await;
                },
            )
            .await?,
        );
        let sampler = ctx.status.clone();
        // With the heartbeat (5 s by default): the figures are as fresh as the fleet's.
        let every = ctx.config.heartbeat_interval;
        status_tasks.0.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sampler.sample().await;
            }
        }));
    }

    // READY only once both answer; until then, wait (and listen for SIGTERM).
    if !wait_for_services(&ctx, &mut shutdown).await {
        return Ok(ctx.metrics.snapshot());
    }
    check_eviction_policy(&ctx.source).await;
    // Every start-up step retries like the loop does, and gives way to
    // SIGTERM: a hiccup of Redis or MongoDB here must not end the daemon.
    if options.setup {
        let done = start_up_step(
            "setting up MongoDB collections",
            &ctx.deps.mongodb,
            ctx.config.max_backoff,
            &mut shutdown,
            || ctx.sink.setup(ctx.config.retention),
            |_| false,
        )
        .await?;
        if done.is_none() {
            return Ok(ctx.metrics.snapshot());
        }
    }
    // Only a live holder of the id is final; anything else is Redis's.
    let registered = start_up_step(
        "registering the consumer id",
        &ctx.deps.redis,
        ctx.config.max_backoff,
        &mut shutdown,
        || ctx.source.register(&token, ctx.config.heartbeat_ttl),
        |e: &anyhow::Error| e.is::<IdInUse>(),
    )
    .await?;
    if registered.is_none() {
        return Ok(ctx.metrics.snapshot());
    }
    if let Err(e) = ctx
        .source
        .publish_status(&self_status(&ctx, "running"), ctx.config.heartbeat_ttl)
        .await
    {
        ctx.deps.redis.failed(&e);
    }
    tracing::info!(consumer = %ctx.id, queue = %ctx.config.queue, database = %ctx.config.database, "visitlog-consumer running");
    notify::ready();

    let slots = ctx.config.max_in_flight;
    let (free_tx, free_rx) = mpsc::unbounded_channel::<usize>();
    let (batch_tx, mut batch_rx) = mpsc::channel::<(usize, Vec<Vec<u8>>)>(slots);
    let mut tasks: JoinSet<usize> = JoinSet::new();
    let mut tickets = 0u64..;

    // Lists a previous run left in slots this run does not have (it ran
    // with a higher max-in-flight): back to the head of the queue.
    let Some(own) = retry_redis(&ctx, || ctx.source.own_lists(), &mut shutdown).await else {
        return Ok(ctx.metrics.snapshot());
    };
    let beyond: Vec<String> = own
        .into_iter()
        .filter(|list| ctx.source.slot_of(list).is_none_or(|slot| slot >= slots))
        .collect();
    if !beyond.is_empty() {
        let Some(n) = retry_redis(&ctx, || ctx.source.hand_back(&beyond), &mut shutdown).await
        else {
            return Ok(ctx.metrics.snapshot());
        };
        tracing::info!(
            lists = beyond.len(),
            records = n,
            "handed back batches a previous run left beyond max-in-flight"
        );
    }
    // Our own unfinished batches first (we were killed while storing them).
    for slot in 0..slots {
        let records = retry_redis(&ctx, || ctx.source.slot_records(slot), &mut shutdown).await;
        match records {
            Some(records) if !records.is_empty() => {
                tracing::info!(
                    slot,
                    records = records.len(),
                    "finishing a batch left by the previous run"
                );
                tasks.spawn(store_batch(
                    ctx.clone(),
                    slot,
                    records,
                    tickets.next().unwrap_or_default(),
                ));
            }
            Some(_) => {
                let _ = free_tx.send(slot);
            }
            None => return Ok(ctx.metrics.snapshot()),
        }
    }
    let fetcher = tokio::spawn(fetch_loop(ctx.clone(), free_rx, batch_tx, shutdown.clone()));

    let tick = notify::watchdog_interval().map_or(ctx.config.heartbeat_interval, |w| {
        w.min(ctx.config.heartbeat_interval)
    });
    let mut heartbeat = tokio::time::interval(tick);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.requested() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(slot) = joined {
                    let _ = free_tx.send(slot);
                }
            }
            Some((slot, records)) = batch_rx.recv() => {
                tasks.spawn(store_batch(ctx.clone(), slot, records, tickets.next().unwrap_or_default()));
            }
            _ = heartbeat.tick() => {
                notify::watchdog();
                match ctx.source.heartbeat(&token, ctx.config.heartbeat_ttl).await {
                    Ok(()) => ctx.deps.redis.ok(),
                    Err(e) => ctx.deps.redis.failed(&e),
                }
                let said = self_status(&ctx, "running");
                if let Err(e) = ctx.source.publish_status(&said, ctx.config.heartbeat_ttl).await {
                    ctx.deps.redis.failed(&e);
                }
                match ctx.source.reap_dead().await {
                    Ok(n) => Metrics::add(&ctx.metrics.reaped, n),
                    Err(e) => ctx.deps.redis.failed(&e),
                }
            }
        }
    }

    // Shutdown: take no new batches; finish in-flight ones until the deadline.
    notify::stopping();
    drop(free_tx);
    let deadline = Instant::now() + ctx.config.shutdown_deadline;
    let mut fetcher_done = false;
    while !(tasks.is_empty() && fetcher_done) {
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => drop(joined),
            batch = batch_rx.recv(), if !fetcher_done => match batch {
                Some((slot, records)) => { tasks.spawn(store_batch(ctx.clone(), slot, records, tickets.next().unwrap_or_default())); }
                None => fetcher_done = true,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let unfinished = tasks.len();
    tasks.abort_all();
    fetcher.abort();
    // Whatever is still in a processing list of ours (found with SCAN,
    // whatever its slot) goes back to the head of the queue. Only then does
    // the id leave: if the hand-back fails (Redis at maxmemory, say), the
    // heartbeat expires by itself and any consumer reaps the lists, or this
    // one finishes them at its next start.
    match ctx.source.hand_back_all().await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(
                    records = n,
                    batches = unfinished,
                    "handed unfinished batches back to the queue"
                );
            }
            if let Err(e) = ctx.source.unregister().await {
                tracing::debug!(error = %mask_secrets(&e.to_string()), "unregister failed");
            }
        }
        Err(e) => {
            tracing::warn!(error = %mask_secrets(&e.to_string()), "could not hand batches back; they stay in this consumer's processing lists and are recovered at its next start, or by another consumer once its heartbeat expires")
        }
    }
    drop(status_tasks);
    let snapshot = ctx.metrics.snapshot();
    tracing::info!(
        stored = snapshot.stored,
        duplicates = snapshot.duplicates,
        dead_lettered = snapshot.dead_lettered,
        "visitlog-consumer stopped"
    );
    Ok(snapshot)
}

/// The status endpoint's tasks, aborted when `run` returns.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs one start-up step until it succeeds, retrying with the loop's
/// backoff and listening for shutdown meanwhile: `Ok(None)` if shutdown came
/// first, `Err` only for an error `fatal` says no retry can fix.
async fn start_up_step<T, E, F, Fut>(
    what: &str,
    dependency: &StateLog,
    max_backoff: Duration,
    shutdown: &mut Shutdown,
    mut op: F,
    fatal: impl Fn(&E) -> bool,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::new(max_backoff);
    let mut attempts = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if attempts > 0 {
                    tracing::info!(attempts = attempts + 1, "{what}: done");
                }
                dependency.ok();
                return Ok(Some(v));
            }
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => {
                // Every time (at most one line per max-backoff once it has
                // grown): a step that never succeeds must not go quiet.
                let message = mask_secrets(&e.to_string());
                tracing::warn!(error = %message, attempts = attempts + 1, "{what} failed; retrying with backoff");
                dependency.failed(&message);
            }
        }
        attempts += 1;
        tokio::select! {
            () = shutdown.requested() => return Ok(None),
            () = tokio::time::sleep(backoff.pause()) => {}
        }
    }
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
            error = %mask_secrets(&e.to_string()),
            "cannot read Redis maxmemory-policy (CONFIG disabled or renamed?); not checked"
        ),
    }
}

/// Pings Redis and MongoDB until both answer; `false` if shutdown came first.
async fn wait_for_services(ctx: &Ctx, shutdown: &mut Shutdown) -> bool {
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    loop {
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
        if redis.is_ok() && mongo.is_ok() {
            return true;
        }
        tokio::select! {
            () = shutdown.requested() => return false,
            () = tokio::time::sleep(backoff.pause()) => {}
        }
    }
}

async fn retry_redis<T, F, Fut>(ctx: &Ctx, mut op: F, shutdown: &mut Shutdown) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    loop {
        match op().await {
            Ok(v) => {
                ctx.deps.redis.ok();
                return Some(v);
            }
            Err(e) => ctx.deps.redis.failed(&e),
        }
        tokio::select! {
            () = shutdown.requested() => return None,
            () = tokio::time::sleep(backoff.pause()) => {}
        }
    }
}

/// Fetches a batch for each free slot it is given, until shutdown.
async fn fetch_loop(
    ctx: Arc<Ctx>,
    mut free: mpsc::UnboundedReceiver<usize>,
    batches: mpsc::Sender<(usize, Vec<Vec<u8>>)>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    while let Some(slot) = free.recv().await {
        loop {
            if shutdown.is_requested() {
                return;
            }
            match ctx.source.fetch(slot, ctx.config.batch_size).await {
                Ok(records) if records.is_empty() => ctx.deps.redis.ok(),
                Ok(records) => {
                    ctx.deps.redis.ok();
                    backoff = Backoff::new(ctx.config.max_backoff);
                    if batches.send((slot, records)).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    ctx.deps.redis.failed(&e);
                    tokio::time::sleep(backoff.pause()).await;
                }
            }
        }
    }
}

/// Stores one batch, retrying until MongoDB takes it, then acknowledges it.
async fn store_batch(ctx: Arc<Ctx>, slot: usize, records: Vec<Vec<u8>>, ticket: u64) -> usize {
    let records = Arc::new(records);
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    let mut batch_retries = 0;
    let (folds, batch_counts) = loop {
        let ctx2 = ctx.clone();
        let raw = records.clone();
        // Parsing and validating a thousand records is CPU work.
        let prepared =
            match tokio::task::spawn_blocking(move || ctx2.preparer.prepare(raw.to_vec())).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "preparing a batch failed");
                    // Left in its processing list; the batches after it go on.
                    wait_turn(&ctx, ticket).await;
                    pass_turn(&ctx, ticket);
                    return slot;
                }
            };
        let started = tokio::time::Instant::now();
        match ctx
            .sink
            .store(
                prepared,
                &ctx.id,
                &ctx.config.queue,
                ctx.config.dead_letter_max_bytes,
            )
            .await
        {
            Ok((stored, events)) => {
                ctx.deps.mongodb.ok();
                ctx.status.batch_stored(started.elapsed(), stored.newest);
                Metrics::add(&ctx.metrics.stored, stored.inserted);
                Metrics::add(&ctx.metrics.duplicates, stored.duplicates);
                Metrics::add(&ctx.metrics.dead_lettered, stored.dead_lettered);
                if stored.dead_lettered > 0 {
                    tracing::warn!(
                        records = stored.dead_lettered,
                        "records sent to dead_letters"
                    );
                }
                break (events, stored);
            }
            Err(e) => {
                ctx.deps.mongodb.failed(&e);
                Metrics::add(&ctx.metrics.retries, 1);
                batch_retries += 1;
                tokio::time::sleep(backoff.pause()).await;
            }
        }
    };
    // Learning state, in fetch order per learner and tutorial; retried
    // until MongoDB takes it. The turn only orders the places taken in
    // line: a batch then waits for the earlier batches of the same
    // documents, not for all earlier batches, so a long refold (a late
    // event after a long history) holds up that learner's later batches,
    // not anyone else's. Exactly-once does not rest on this order but on
    // conditional writes (see `Sink::derive` and `Sink::refold`); the order
    // only keeps this process from racing itself.
    wait_turn(&ctx, ticket).await;
    let places = ctx
        .lines
        .join(ticket, folds.iter().map(|f| f.progress_id()));
    pass_turn(&ctx, ticket);
    ctx.lines.first(&places).await;
    let (mut derived, refolds) = retry_derive(&ctx, &mut batch_retries, || {
        ctx.sink.derive(&folds, ctx.preparer.rules())
    })
    .await;
    // Histories to fold again (late events, replays), streamed; the batch
    // is acknowledged only once they are written.
    if !refolds.is_empty() {
        tracing::debug!(histories = refolds.len(), "folding histories again");
        let (written, ()) = retry_derive(&ctx, &mut batch_retries, || {
            ctx.sink
                .refold(&refolds, ctx.preparer.rules())
                .map_ok(|written| (written, ()))
        })
        .await;
        derived += written;
    }
    drop(places);
    let mut backoff = Backoff::new(Duration::from_secs(5).min(ctx.config.max_backoff));
    while let Err(e) = ctx.source.ack(slot).await {
        // Stored but not acknowledged: a crash now means a harmless replay.
        ctx.deps.redis.failed(&e);
        tokio::time::sleep(backoff.pause()).await;
    }
    Metrics::add(&ctx.metrics.batches, 1);
    // Fleet-wide totals, for every instance's status page; best effort.
    let totals = [
        ("stored", batch_counts.inserted),
        ("duplicates", batch_counts.duplicates),
        ("dead_lettered", batch_counts.dead_lettered),
        ("derived", derived),
        ("retries", batch_retries),
        ("batches", 1),
    ];
    if let Err(e) = ctx.source.add_totals(&totals).await {
        tracing::debug!(error = %e, "fleet totals not updated");
    }
    slot
}

/// Runs a derivation step until MongoDB takes it; counts the documents it
/// wrote and returns them with the rest of its answer.
async fn retry_derive<T, F, Fut>(ctx: &Ctx, retries: &mut u64, mut step: F) -> (u64, T)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = mongodb::error::Result<(u64, T)>>,
{
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    loop {
        match step().await {
            Ok((written, rest)) => {
                Metrics::add(&ctx.metrics.derived, written);
                return (written, rest);
            }
            Err(e) => {
                match e.get_custom::<crate::sink::Contention>() {
                    Some(c) => tracing::debug!(%c, "deriving again"),
                    None => ctx.deps.mongodb.failed(&e),
                }
                Metrics::add(&ctx.metrics.retries, 1);
                *retries += 1;
                tokio::time::sleep(backoff.pause()).await;
            }
        }
    }
}

/// What this instance says of itself in Redis, with each heartbeat.
fn self_status(ctx: &Ctx, state: &str) -> serde_json::Value {
    let m = ctx.metrics.snapshot();
    let me = &ctx.status.instance;
    serde_json::json!({
        "id": me.id, "host": me.host, "pid": me.pid, "started": me.started,
        "last_heartbeat": chrono::Utc::now(), "state": state,
        "stored": m.stored, "duplicates": m.duplicates, "dead_lettered": m.dead_lettered,
        "derived": m.derived, "retries": m.retries, "batches": m.batches,
        "newest_stored": ctx.status.newest_stored(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// Batches waiting to derive progress documents: per progress id, the
/// tickets of the batches that will derive it, in fetch order.
struct Lines {
    waiting: std::sync::Mutex<HashMap<String, VecDeque<u64>>>,
    /// Changes whenever a batch leaves its lines.
    moved: tokio::sync::watch::Sender<u64>,
}

/// A batch's places in the lines of its progress documents; left on drop.
struct Places<'a> {
    lines: &'a Lines,
    ticket: u64,
    keys: Vec<String>,
}

impl Lines {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<u64>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues batch `ticket` behind the batches already waiting for `keys`.
    fn join(&self, ticket: u64, keys: impl Iterator<Item = String>) -> Places<'_> {
        let mut keys: Vec<String> = keys.collect();
        keys.sort_unstable();
        keys.dedup();
        let mut waiting = self.waiting();
        for key in &keys {
            waiting.entry(key.clone()).or_default().push_back(ticket);
        }
        Places {
            lines: self,
            ticket,
            keys,
        }
    }

    /// Waits until `places` are first in all their lines. Places are taken
    /// in ticket order, so the oldest waiting batch is always first in all
    /// of its lines: no batch waits forever.
    async fn first(&self, places: &Places<'_>) {
        let first = |_: &u64| {
            let waiting = self.waiting();
            places.keys.iter().all(|key| {
                waiting
                    .get(key)
                    .and_then(VecDeque::front)
                    .is_none_or(|t| *t == places.ticket)
            })
        };
        let _ = self.moved.subscribe().wait_for(first).await;
    }
}

impl Drop for Places<'_> {
    fn drop(&mut self) {
        {
            let mut waiting = self.lines.waiting();
            for key in &self.keys {
                if let Some(line) = waiting.get_mut(key) {
                    line.retain(|t| *t != self.ticket);
                    if line.is_empty() {
                        waiting.remove(key);
                    }
                }
            }
        }
        self.lines.moved.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Waits until the batch with `ticket` may take its places in line.
async fn wait_turn(ctx: &Ctx, ticket: u64) {
    let mut turn = ctx.turn.subscribe();
    let _ = turn.wait_for(|serving| *serving >= ticket).await;
}

/// Lets the next batch take its places.
fn pass_turn(ctx: &Ctx, ticket: u64) {
    ctx.turn
        .send_modify(|serving| *serving = (*serving).max(ticket + 1));
}
