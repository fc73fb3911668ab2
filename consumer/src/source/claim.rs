//! A batch's life in its slot: claimed from the queue into the slot's
//! processing list, read back after a crash, and deleted (acknowledged)
//! once stored.

use std::time::Duration;

use redis::{AsyncCommands, RedisResult};

use super::{FETCH, Source};

impl Source {
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
        let records: Vec<Vec<u8>> = FETCH
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
        FETCH
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
}
