//! The fetch loop: one task claims a batch for each free slot, so a
//! `BLMOVE` in flight is never cancelled and no record lands in a
//! processing list behind our back.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Ctx;
use crate::retry::{Backoff, Retry};
use crate::shutdown::Shutdown;

/// Fetches a batch for each free slot it is given, until shutdown.
pub(super) async fn fetch_loop(
    ctx: Arc<Ctx>,
    mut free: mpsc::UnboundedReceiver<usize>,
    batches: mpsc::Sender<(usize, Vec<Vec<u8>>)>,
    shutdown: Shutdown,
) {
    let mut retry = Retry::new(Backoff::new(ctx.config.max_backoff), shutdown.clone());
    while let Some(slot) = free.recv().await {
        loop {
            if shutdown.is_requested() {
                return;
            }
            let fetched = ctx.source.fetch(slot, ctx.config.batch_size).await;
            if fetched.is_ok() {
                ctx.deps.redis.ok();
            }
            // A failed claim ends a backlog too: while Redis is away the
            // records wait there whatever we do, so the analytics may have
            // MongoDB meanwhile.
            let taken = fetched.as_ref().map_or(0, Vec::len);
            ctx.analytics
                .backlog()
                .claimed(taken, ctx.config.batch_size);
            match fetched {
                Ok(records) if records.is_empty() => {}
                Ok(records) => {
                    retry.reset();
                    if batches.send((slot, records)).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    ctx.deps.redis.failed(&e);
                    if !retry.pause().await {
                        return;
                    }
                }
            }
        }
    }
}
