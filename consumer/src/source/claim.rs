//! A batch's life in its slot: claimed from a shard of the queue into the
//! slot's processing list in that shard, read back after a crash, and
//! deleted (acknowledged) once stored.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{AsyncCommands, RedisResult};
use visitlog_schema::keys;

use super::{FETCH, Source};

impl Source {
    /// What is in a processing list (left there by a crash, or in flight).
    pub async fn slot_records(&self, slot: usize) -> RedisResult<Vec<Vec<u8>>> {
        let mut conn = self.conn().await?;
        conn.lrange(self.slot_key(slot), 0, -1).await
    }

    /// Moves up to `max` records into `slot`'s list and returns everything
    /// the list holds. Shards are tried in turn, starting one further at
    /// each claim; when all are empty, waits up to the flush interval for a
    /// first record on one of them (the next in turn).
    pub async fn fetch(&self, slot: usize, max: usize) -> RedisResult<Vec<Vec<u8>>> {
        let mut conn = self.conn().await?;
        let shards = self.keys.shards();
        let start = self.next_shard.fetch_add(1, Ordering::Relaxed);
        for turn in 0..shards.len() {
            let shard = (start + turn) % shards.len();
            let key = keys::processing_list(&shards[shard], &self.id, slot);
            let records: Vec<Vec<u8>> = FETCH
                .key(&shards[shard])
                .key(&key)
                .arg(max)
                .invoke_async(&mut conn)
                .await?;
            if !records.is_empty() {
                self.set_slot_shard(slot, shard);
                return Ok(records);
            }
        }
        let shard = start % shards.len();
        let key = keys::processing_list(&shards[shard], &self.id, slot);
        let mut blocking = self
            .lasting(&self.blocking, self.wait + Duration::from_secs(5))
            .await?;
        let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&shards[shard])
            .arg(&key)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(self.wait.as_secs_f64())
            .query_async(&mut blocking)
            .await?;
        let Some(first) = first else {
            return Ok(Vec::new());
        };
        self.set_slot_shard(slot, shard);
        if max == 1 {
            return Ok(vec![first]);
        }
        // The script returns the whole list, `first` included.
        FETCH
            .key(&shards[shard])
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
}
