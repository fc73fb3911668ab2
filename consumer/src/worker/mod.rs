//! The consumer daemon: [`run`] loads its parts, spawns each, and waits.
//!
//! One task fetches (a `BLMOVE` in flight is never cancelled, so no record
//! can land in a processing list behind our back); each batch is stored by a
//! task of its own, up to `max-in-flight` at once, retrying with backoff
//! until MongoDB takes it; only then is its processing list deleted.
//! [`start`] holds the start-up steps, `store` one batch's life, `lines`
//! the per-learner derivation order, `fetch` the fetch loop and `beat` what
//! each heartbeat does.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use visitlog_schema::redact_urls_in;

use crate::batch::Preparer;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fleet::InstanceStatus;
use crate::internal_events::{Dependencies, Metrics, MetricsSnapshot};
use crate::notify;
use crate::retry::{Backoff, Retry};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::Source;
use crate::status::{self, StatusState};

mod beat;
mod fetch;
mod lines;
mod start;
mod store;

/// How `run` starts.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Create or update collections and indexes first.
    pub setup: bool,
    /// Serve the status endpoint on `status-addr`.
    pub status: bool,
}

/// What every part of a running consumer shares.
struct Ctx {
    /// Batches derive each progress document in fetch order, so batches of
    /// one process never make each other fold a learner's history again;
    /// batches of other learners go on meanwhile (see `store`).
    lines: lines::Lines,
    config: Config,
    id: String,
    source: Source,
    sink: Sink,
    /// The analytics: every batch marks what it touched; the loop (when
    /// `analytics` is on) computes it.
    analytics: crate::analytics::Analytics,
    preparer: Preparer,
    metrics: Arc<Metrics>,
    status: Arc<StatusState>,
    deps: Arc<Dependencies>,
    /// Fires when the shutdown deadline passes: batches still retrying stop.
    deadline: Shutdown,
}

/// Runs until `shutdown` fires; returns the counters.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> Result<MetricsSnapshot> {
    let (deadline_tx, deadline) = Shutdown::manual();
    let Some(ctx) = load(config, &shutdown, metrics.clone(), deadline).await? else {
        return Ok(metrics.snapshot());
    };
    let ctx = Arc::new(ctx);
    // Stopped however `run` ends, early returns included.
    let status = match options.status {
        true => Some(serve_status(&ctx, &shutdown).await?),
        false => None,
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    if !start::start(&ctx, options, &token, &shutdown).await? {
        return Ok(ctx.metrics.snapshot());
    }
    let Some(leftovers) = start::leftovers(&ctx, &shutdown).await else {
        return Ok(ctx.metrics.snapshot());
    };
    let mut batches = Batches::new(ctx.clone());
    let (free_tx, free_rx) = mpsc::unbounded_channel::<usize>();
    for (slot, records) in leftovers {
        match records.is_empty() {
            true => drop(free_tx.send(slot)),
            false => batches.spawn(slot, records),
        }
    }
    let derivations = ctx.config.analytics.then(|| {
        AbortOnDrop(vec![tokio::spawn(
            ctx.analytics.clone().run(shutdown.clone()),
        )])
    });
    let (batch_tx, batch_rx) = mpsc::channel(ctx.config.max_in_flight);
    let fetcher = tokio::spawn(fetch::fetch_loop(
        ctx.clone(),
        free_rx,
        batch_tx,
        shutdown.clone(),
    ));
    let batch_rx = consume(&ctx, &mut batches, &free_tx, batch_rx, &token, shutdown).await;
    // Shutdown: take no new batches; finish in-flight ones until the deadline.
    notify::stopping();
    drop(free_tx);
    let unfinished = batches.drain(batch_rx, ctx.config.shutdown_deadline).await;
    let _ = deadline_tx.send(true);
    batches.tasks.abort_all();
    fetcher.abort();
    // Wait until they are gone: a task still polling MongoDB while the
    // runtime ends would meet the driver's pool already dropped (it panics).
    while batches.tasks.join_next().await.is_some() {}
    let _ = fetcher.await;
    if let Some(derivations) = derivations {
        derivations.stop().await;
    }
    leave(&ctx, unfinished).await;
    if let Some(status) = status {
        status.stop().await;
    }
    ctx.sink.close().await;
    let snapshot = ctx.metrics.snapshot();
    tracing::info!(
        stored = snapshot.stored,
        duplicates = snapshot.duplicates,
        dead_lettered = snapshot.dead_lettered,
        "visitlog-consumer stopped"
    );
    Ok(snapshot)
}

/// Builds the parts: the Redis source, the MongoDB sink (a DNS hiccup
/// resolving a `mongodb+srv://` URI is retried, a malformed URI is not),
/// the record preparer and the status state. `None` if shutdown came first.
async fn load(
    config: Config,
    shutdown: &Shutdown,
    metrics: Arc<Metrics>,
    deadline: Shutdown,
) -> Result<Option<Ctx>> {
    config.validate()?;
    let id = config.consumer_id();
    let source = Source::new(
        config.redis_target()?,
        &config.queue,
        config.queue_keys(),
        &id,
        config.max_in_flight,
        config.flush_interval,
    );
    let deps = Arc::new(Dependencies::default());
    let mut retry = Retry::new(Backoff::new(config.max_backoff), shutdown.clone());
    let sink = start::step(
        "resolving the MongoDB URI",
        &deps.mongodb,
        &mut retry,
        || Sink::open(&config),
        |e: &Error| match e {
            Error::Mongo(e) => !matches!(
                *e.kind,
                mongodb::error::ErrorKind::DnsResolve { .. } | mongodb::error::ErrorKind::Io(_)
            ),
            _ => true,
        },
    )
    .await
    .map_err(|e| match e {
        Error::Mongo(e) => Error::MongoUri(e),
        other => other,
    })?;
    let Some(sink) = sink else {
        return Ok(None);
    };
    // The status endpoint has its own Redis connection: it must answer
    // while the worker's is busy or broken.
    let status = Arc::new(StatusState::new(
        InstanceStatus::this_process(&id),
        config.queue.clone(),
        metrics.clone(),
        config.status_token.clone(),
        source.with_own_connection(),
        sink.clone(),
        deps.clone(),
    ));
    let analytics = crate::analytics::Analytics::new(
        sink.clone(),
        config.analytics_rules(),
        config.derive_interval,
        &id,
    );
    Ok(Some(Ctx {
        lines: lines::Lines::new(),
        analytics,
        preparer: Preparer::with_rules(config.rules())?,
        config,
        id,
        source,
        sink,
        metrics,
        status,
        deps,
        deadline,
    }))
}

/// Serves the status endpoint and samples the fleet for it; the tasks stop
/// when the returned guard drops.
async fn serve_status(ctx: &Ctx, shutdown: &Shutdown) -> Result<AbortOnDrop> {
    let mut stop = shutdown.clone();
    let server = status::serve(
        ctx.config.status_addr,
        status::Limits::of(&ctx.config),
        ctx.status.clone(),
        async move { stop.requested().await },
    )
    .await?;
    let sampler = ctx.status.clone();
    // With the heartbeat (5 s by default): the figures are as fresh as the fleet's.
    let every = ctx.config.heartbeat_interval;
    let sampling = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sampler.sample().await;
        }
    });
    Ok(AbortOnDrop(vec![server, sampling]))
}

type Fetched = mpsc::Receiver<(usize, Vec<Vec<u8>>)>;

/// The loop: stores fetched batches, frees their slots, beats the heart;
/// until shutdown. Gives the fetched-batch channel back for the drain.
async fn consume(
    ctx: &Arc<Ctx>,
    batches: &mut Batches,
    free: &mpsc::UnboundedSender<usize>,
    mut fetched: Fetched,
    token: &str,
    mut shutdown: Shutdown,
) -> Fetched {
    let mut heartbeat =
        tokio::time::interval(start::heartbeat_every(ctx.config.heartbeat_interval));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.requested() => return fetched,
            Some(joined) = batches.tasks.join_next(), if !batches.tasks.is_empty() => {
                if let Ok(slot) = joined {
                    let _ = free.send(slot);
                }
            }
            Some((slot, records)) = fetched.recv() => batches.spawn(slot, records),
            _ = heartbeat.tick() => beat::beat(ctx, token).await,
        }
    }
}

/// Hands back what is still in a processing list of ours (found with SCAN,
/// whatever its slot), then leaves the fleet. Only then does the id leave:
/// if the hand-back fails (Redis at maxmemory, say), the heartbeat expires
/// by itself and any consumer reaps the lists, or this one finishes them at
/// its next start.
async fn leave(ctx: &Ctx, unfinished: usize) {
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
                tracing::debug!(error = %redact_urls_in(&e.to_string()), "unregister failed");
            }
        }
        Err(e) => {
            tracing::warn!(error = %redact_urls_in(&e.to_string()), "could not hand batches back; they stay in this consumer's processing lists and are recovered at its next start, or by another consumer once its heartbeat expires")
        }
    }
}

/// The batches being stored, one task each, with their fetch-order tickets.
struct Batches {
    ctx: Arc<Ctx>,
    tasks: JoinSet<usize>,
    tickets: std::ops::RangeFrom<u64>,
}

impl Batches {
    fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            tasks: JoinSet::new(),
            tickets: 0..,
        }
    }

    fn spawn(&mut self, slot: usize, records: Vec<Vec<u8>>) {
        let ticket = self.tickets.next().unwrap_or_default();
        self.tasks
            .spawn(store::store_batch(self.ctx.clone(), slot, records, ticket));
    }

    /// Lets in-flight batches (and the one the fetcher may still deliver)
    /// finish until `deadline` from now; returns how many did not.
    async fn drain(&mut self, mut fetched: Fetched, deadline: std::time::Duration) -> usize {
        let deadline = Instant::now() + deadline;
        let mut fetcher_done = false;
        while !(self.tasks.is_empty() && fetcher_done) {
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => drop(joined),
                batch = fetched.recv(), if !fetcher_done => match batch {
                    Some((slot, records)) => self.spawn(slot, records),
                    None => fetcher_done = true,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.tasks.len()
    }
}

/// The status endpoint's tasks, aborted when `run` returns.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Aborts the tasks and waits until they are gone.
    async fn stop(mut self) {
        for task in std::mem::take(&mut self.0) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
