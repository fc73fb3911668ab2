//! Dead instances' batches back to the queue: any live instance does it,
//! with each heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use redis::{AsyncCommands, RedisResult};
use visitlog_schema::keys;

use super::{REAP, Source, processing_pattern};

impl Source {
    /// Gives the batches of dead instances back to the queue; returns how
    /// many records went back.
    ///
    /// Walks the processing lists themselves (`SCAN`, shard by shard), not
    /// the set of consumer ids: a list whose owner's heartbeat is missing is
    /// reaped even if the owner left the set (or never was in it). The
    /// heartbeat checked is the one in the list's shard, in the same script
    /// that moves the list.
    pub async fn reap_dead(&self) -> RedisResult<u64> {
        let mut conn = self.conn().await?;
        let mut moved = 0;
        let mut dead = BTreeSet::new();
        for shard in self.keys.shards() {
            let prefix = format!("{shard}:processing:");
            let lists = conn.scan_near(shard, &processing_pattern(shard)).await?;
            let mut by_owner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
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
            for (id, lists) in by_owner {
                let heartbeat = keys::heartbeat(shard, id);
                if conn.exists(&heartbeat).await? {
                    continue;
                }
                let mut call = REAP.key(shard);
                call.key(&heartbeat);
                for list in lists {
                    call.key(list);
                }
                let n: i64 = call.invoke_async(&mut conn).await?;
                if n >= 0 {
                    dead.insert(id.to_owned());
                }
                if n > 0 {
                    tracing::warn!(consumer = %id, records = n, "visitlog-consumer: gave a dead consumer's batches back to the queue");
                    moved += n.unsigned_abs();
                }
            }
        }
        // Out of the fleet, unless it came back meanwhile.
        let base = self.keys.base();
        for id in dead {
            if !conn.exists::<_, bool>(keys::heartbeat(base, &id)).await? {
                let _: () = conn.srem(keys::consumers(base), &id).await?;
            }
        }
        Ok(moved)
    }
}
