//! This instance's own processing lists back to the head of the queue: at
//! start (lists of slots beyond `max-in-flight`) and at shutdown (batches
//! not finished by the deadline).

use redis::RedisResult;

use super::{HAND_BACK, Source, glob_escape, scan};

impl Source {
    /// Every processing list of this instance, whatever its slot: also
    /// those of slots beyond `max-in-flight`, left by a run that had more.
    pub async fn own_lists(&self) -> RedisResult<Vec<String>> {
        let mut conn = self.conn().await?;
        let pattern = format!(
            "{}:processing:{}:*",
            glob_escape(&self.queue),
            glob_escape(&self.id)
        );
        scan(&mut conn, &pattern).await
    }

    /// The slot of one of this instance's processing lists; `None` for
    /// another key.
    pub fn slot_of(&self, key: &str) -> Option<usize> {
        let prefix = format!("{}:processing:{}:", self.queue, self.id);
        key.strip_prefix(&prefix)?.parse().ok()
    }

    /// Puts the given processing lists back at the head of the queue, in
    /// their order, and deletes them; returns how many records went back.
    pub async fn hand_back(&self, lists: &[String]) -> RedisResult<u64> {
        if lists.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut call = HAND_BACK.key(&self.queue);
        for list in lists {
            call.key(list);
        }
        call.invoke_async(&mut conn).await
    }

    /// Puts every processing list of this instance (found with `SCAN`, so
    /// whatever its slot) back at the head of the queue.
    pub async fn hand_back_all(&self) -> RedisResult<u64> {
        let lists = self.own_lists().await?;
        self.hand_back(&lists).await
    }
}
