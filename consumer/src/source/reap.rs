//! Dead instances' batches back to the queue: any live instance does it,
//! with each heartbeat.

use redis::{AsyncCommands, RedisResult};
use visitlog_schema::keys;

use super::{REAP, Source, processing_pattern, scan};

impl Source {
    /// Gives the batches of dead instances back to the queue; returns how
    /// many records went back.
    ///
    /// Walks the processing lists themselves (`SCAN`), not the set of
    /// consumer ids: a list whose owner's heartbeat is missing is reaped
    /// even if the owner left the set (or never was in it).
    pub async fn reap_dead(&self) -> RedisResult<u64> {
        let mut conn = self.conn().await?;
        let prefix = format!("{}:processing:", self.queue);
        let lists = scan(&mut conn, &processing_pattern(&self.queue)).await?;
        let mut by_owner: std::collections::BTreeMap<&str, Vec<&str>> =
            std::collections::BTreeMap::new();
        for list in &lists {
            let Some((owner, _slot)) = list
                .strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit_once(':'))
            else {
                continue;
            };
            if owner != self.id {
                by_owner.entry(owner).or_default().push(list);
            }
        }
        let mut moved = 0;
        for (id, lists) in by_owner {
            let heartbeat = keys::heartbeat(&self.queue, id);
            if conn.exists(&heartbeat).await? {
                continue;
            }
            let mut call = REAP.key(&self.queue);
            call.key(&heartbeat).key(keys::consumers(&self.queue));
            for list in lists {
                call.key(list);
            }
            let n: i64 = call.arg(id).invoke_async(&mut conn).await?;
            if n > 0 {
                tracing::warn!(consumer = %id, records = n, "visitlog-consumer: gave a dead consumer's batches back to the queue");
                moved += n.unsigned_abs();
            }
        }
        Ok(moved)
    }
}
