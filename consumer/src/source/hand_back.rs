//! This instance's own processing lists back to the head of their shard
//! of the queue: at start (lists of slots beyond `max-in-flight`) and at
//! shutdown (batches not finished by the deadline).

use std::collections::BTreeMap;

use redis::RedisResult;

use super::{HAND_BACK, Source, glob_escape};

impl Source {
    /// Every processing list of this instance, in every shard, whatever
    /// its slot: also those of slots beyond `max-in-flight`, left by a run
    /// that had more.
    pub async fn own_lists(&self) -> RedisResult<Vec<String>> {
        let mut conn = self.conn().await?;
        let mut all = Vec::new();
        for shard in self.keys.shards() {
            let pattern = format!(
                "{}:processing:{}:*",
                glob_escape(shard),
                glob_escape(&self.id)
            );
            all.extend(conn.scan_near(shard, &pattern).await?);
        }
        all.sort();
        Ok(all)
    }

    /// The slot of one of this instance's processing lists; `None` for
    /// another key.
    pub fn slot_of(&self, key: &str) -> Option<usize> {
        let shard = &self.keys.shards()[self.keys.shard_of(key)?];
        let prefix = format!("{shard}:processing:{}:", self.id);
        key.strip_prefix(&prefix)?.parse().ok()
    }

    /// Takes over the lists a previous run of this instance left: the
    /// first list of each slot this run has is that slot's batch, to be
    /// finished first ([`Self::slot_records`] reads it); the others (slots
    /// beyond `max-in-flight`, or a second list of one slot) are returned,
    /// to be handed back.
    pub fn adopt(&self, lists: Vec<String>) -> Vec<String> {
        let mut taken = vec![false; self.slots];
        let mut rest = Vec::new();
        for list in lists {
            let slot = self.slot_of(&list).filter(|&slot| slot < self.slots);
            match (slot, self.keys.shard_of(&list)) {
                (Some(slot), Some(shard)) if !taken[slot] => {
                    taken[slot] = true;
                    self.set_slot_shard(slot, shard);
                }
                _ => rest.push(list),
            }
        }
        rest
    }

    /// Puts the given processing lists back at the head of their shards,
    /// in their order, and deletes them; returns how many records went back.
    pub async fn hand_back(&self, lists: &[String]) -> RedisResult<u64> {
        let mut by_shard: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
        for list in lists {
            if let Some(shard) = self.keys.shard_of(list) {
                by_shard.entry(shard).or_default().push(list);
            }
        }
        if by_shard.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut moved = 0;
        for (shard, lists) in by_shard {
            let mut call = HAND_BACK.key(&self.keys.shards()[shard]);
            for list in lists {
                call.key(list);
            }
            let n: u64 = call.invoke_async(&mut conn).await?;
            moved += n;
        }
        Ok(moved)
    }

    /// Puts every processing list of this instance (found with `SCAN`, so
    /// whatever its slot) back at the head of the queue.
    pub async fn hand_back_all(&self) -> RedisResult<u64> {
        let lists = self.own_lists().await?;
        self.hand_back(&lists).await
    }
}
