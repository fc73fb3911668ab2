//! The order in which batches derive progress documents: batches take
//! their places in per-document lines in fetch order (one ticket at a
//! time), then each waits only for the earlier batches of the same
//! documents. A long refold thus holds up that learner's later batches,
//! not anyone else's.

use std::collections::{HashMap, VecDeque};

/// Batches waiting to derive progress documents: per progress id, the
/// tickets of the batches that will derive it, in fetch order.
pub(super) struct Lines {
    /// The ticket now allowed to take its places (fetch order).
    turn: tokio::sync::watch::Sender<u64>,
    waiting: std::sync::Mutex<HashMap<String, VecDeque<u64>>>,
    /// Changes whenever a batch leaves its lines.
    moved: tokio::sync::watch::Sender<u64>,
}

/// A batch's places in the lines of its progress documents; left on drop.
pub(super) struct Places<'a> {
    lines: &'a Lines,
    ticket: u64,
    keys: Vec<String>,
}

impl Lines {
    pub(super) fn new() -> Self {
        Self {
            turn: tokio::sync::watch::Sender::new(0),
            waiting: std::sync::Mutex::default(),
            moved: tokio::sync::watch::Sender::new(0),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<u64>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the batch with `ticket` may take its places in line.
    pub(super) async fn wait_turn(&self, ticket: u64) {
        let mut turn = self.turn.subscribe();
        let _ = turn.wait_for(|serving| *serving >= ticket).await;
    }

    /// Lets the next batch take its places.
    pub(super) fn pass_turn(&self, ticket: u64) {
        self.turn
            .send_modify(|serving| *serving = (*serving).max(ticket + 1));
    }

    /// Queues batch `ticket` behind the batches already waiting for `keys`.
    pub(super) fn join(&self, ticket: u64, keys: impl Iterator<Item = String>) -> Places<'_> {
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
    pub(super) async fn first(&self, places: &Places<'_>) {
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
