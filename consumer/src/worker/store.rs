//! One batch, from its processing list to acknowledged: prepared, stored
//! (retried until MongoDB takes it), derived in fetch order per learner,
//! acknowledged, and added to the fleet totals. Every retry here gives up
//! only when the shutdown deadline passes (the batch then stays in its
//! processing list and is handed back).

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryFutureExt;

use super::Ctx;
use crate::error::Error;
use crate::fleet::Totals;
use crate::internal_events::{BatchCompleted, BatchRetried, BatchStored, DocumentsDerived};
use crate::retry::{Backoff, Retry};

/// Stores one batch, retrying until MongoDB takes it, then acknowledges it.
pub(super) async fn store_batch(
    ctx: Arc<Ctx>,
    slot: usize,
    records: Vec<Vec<u8>>,
    ticket: u64,
) -> usize {
    let records = Arc::new(records);
    let mut retry = ctx.retry(ctx.config.max_backoff);
    let mut batch_retries = 0;
    let (mut folds, batch_counts) = loop {
        let ctx2 = ctx.clone();
        let raw = records.clone();
        // Parsing and validating a thousand records is CPU work.
        let prepared =
            match tokio::task::spawn_blocking(move || ctx2.preparer.prepare(raw.to_vec())).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "preparing a batch failed");
                    // Left in its processing list; the batches after it go on.
                    ctx.lines.wait_turn(ticket).await;
                    ctx.lines.pass_turn(ticket);
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
                BatchStored(&stored).emit(&ctx.metrics);
                break (events, stored);
            }
            Err(error) => {
                BatchRetried {
                    error: &error,
                    mongodb: &ctx.deps.mongodb,
                }
                .emit(&ctx.metrics);
                batch_retries += 1;
                if !retry.pause().await {
                    return slot;
                }
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
    ctx.lines.wait_turn(ticket).await;
    let places = ctx
        .lines
        .join(ticket, folds.events.iter().map(|f| f.progress_id()));
    ctx.lines.pass_turn(ticket);
    ctx.lines.first(&places).await;
    let Some((mut derived, refolds)) = retry_derive(&ctx, &mut batch_retries, || {
        ctx.sink.derive(&folds, ctx.preparer.rules())
    })
    .await
    else {
        return slot;
    };
    // Histories to fold again (late events, replays), streamed; the batch
    // is acknowledged only once they are written.
    if !refolds.is_empty() {
        tracing::debug!(histories = refolds.len(), "folding histories again");
        let Some((written, marks)) = retry_derive(&ctx, &mut batch_retries, || {
            ctx.sink.refold(&refolds, ctx.preparer.rules())
        })
        .await
        else {
            return slot;
        };
        derived += written;
        folds.marks.extend(marks);
    }
    drop(places);
    // The analytics keys the batch touched, before it is acknowledged: a
    // crash now replays the batch and its marks. With the analytics on,
    // as one document the analytics expand (see `analytics::journal`).
    let marks = std::mem::take(&mut folds.marks);
    let journal = ctx.config.analytics;
    let book = ctx.analytics.marks();
    if retry_derive(&ctx, &mut batch_retries, || {
        let marks = marks.clone();
        async move {
            match journal {
                true => book.journal(marks).await,
                false => book.mark(marks).await,
            }
        }
        .map_ok(|_| (0, ()))
    })
    .await
    .is_none()
    {
        return slot;
    }
    let mut retry = ctx.retry(Duration::from_secs(5).min(ctx.config.max_backoff));
    // Stored but not acknowledged: a crash now means a harmless replay.
    let acked = retry
        .until_ok(
            || ctx.source.ack(slot),
            |e| {
                ctx.deps.redis.failed(&e);
                Ok(())
            },
        )
        .await;
    if !matches!(acked, Ok(Some(()))) {
        return slot;
    }
    BatchCompleted.emit(&ctx.metrics);
    // Fleet-wide totals, for every instance's status page; best effort.
    let totals = Totals {
        stored: batch_counts.inserted,
        duplicates: batch_counts.duplicates,
        dead_lettered: batch_counts.dead_lettered,
        derived,
        retries: batch_retries,
        batches: 1,
    };
    if let Err(e) = ctx.source.add_totals(&totals).await {
        tracing::debug!(error = %e, "fleet totals not updated");
    }
    slot
}

/// Runs a derivation step until MongoDB takes it; counts the documents it
/// wrote and returns them with the rest of its answer; `None` once the
/// shutdown deadline passed.
async fn retry_derive<T, F, Fut>(ctx: &Ctx, retries: &mut u64, mut step: F) -> Option<(u64, T)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<(u64, T)>>,
{
    let mut retry = ctx.retry(ctx.config.max_backoff);
    let outcome = retry
        .until_ok(&mut step, |error| {
            BatchRetried {
                error: &error,
                mongodb: &ctx.deps.mongodb,
            }
            .emit(&ctx.metrics);
            *retries += 1;
            Ok::<(), Error>(())
        })
        .await;
    let (written, rest) = outcome.ok().flatten()?;
    DocumentsDerived(written).emit(&ctx.metrics);
    Some((written, rest))
}

impl Ctx {
    /// A retry with `max` as its longest pause, given up at the shutdown deadline.
    pub(super) fn retry(&self, max: Duration) -> Retry {
        Retry::new(Backoff::new(max), self.deadline.clone())
    }
}
