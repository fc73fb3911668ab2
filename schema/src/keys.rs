//! Redis key names shared by the middleware (producer) and the consumer.
//!
//! Every key visitlog touches is derived from the queue name, so one Redis
//! server can carry several independent queues (one per site, or per test).

/// The Redis list the middleware appends records to, unless configured.
pub const DEFAULT_QUEUE: &str = "visitlog:queue";

/// Most shards a queue may be split into (`VISITLOG_QUEUE_SHARDS`).
pub const MAX_SHARDS: usize = 256;

/// The keys of one queue, in every deployment.
///
/// - **One shard, one server or Sentinel** (the default): the queue is the
///   list named `queue`, and every other key is derived from that name, as
///   before sharding existed.
/// - **`n` shards**: the records are spread over the lists `{queue:0}` …
///   `{queue:n-1}`. The braces are a Redis Cluster hash tag: a shard's
///   processing lists and heartbeats (`{queue:i}:processing:…`) carry its
///   tag, so each shard's keys, and every script on them, stay on one slot,
///   while the shards themselves spread over the cluster's masters.
/// - **Cluster**: the fleet-wide keys (status, totals, the set of consumers)
///   are derived from `{queue}`, so they share one slot and can be written
///   in one pipeline; with one shard, the queue is `{queue}` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueKeys {
    base: String,
    shards: Vec<String>,
    strays: Vec<String>,
}

impl QueueKeys {
    /// The keys of `queue` split into `shards` lists (at least one), named
    /// for a cluster when `cluster`. Check the name with [`check_queue`].
    pub fn new(queue: &str, shards: usize, cluster: bool) -> Self {
        let base = if cluster {
            format!("{{{queue}}}")
        } else {
            queue.to_owned()
        };
        let sharded = |range: std::ops::Range<usize>| {
            range
                .map(|i| format!("{{{queue}:{i}}}"))
                .collect::<Vec<_>>()
        };
        let n = shards.max(1);
        let shards = if n == 1 {
            vec![base.clone()]
        } else {
            sharded(0..n)
        };
        // Every name another count or mode would fill: the queue itself,
        // its cluster name, and each shard; less ours. A name with braces
        // cannot be sharded or clustered (`check_queue`), so no producer
        // fills any other name of it.
        let strays = if queue.contains(['{', '}']) {
            Vec::new()
        } else {
            [queue.to_owned(), format!("{{{queue}}}")]
                .into_iter()
                .chain(sharded(0..MAX_SHARDS))
                .filter(|list| !shards.contains(list))
                .collect()
        };
        Self {
            base,
            shards,
            strays,
        }
    }

    /// The name fleet-wide keys derive from ([`heartbeat`], [`status`],
    /// [`totals`], [`consumers`]).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The shard lists, in order.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The lists a producer given another shard count or mode would fill
    /// and these keys never read: the queue's plain and cluster names and
    /// `{queue:0}` … `{queue:255}`, less these keys' own shards. Records on
    /// them mean the apps and the consumers were given different
    /// `VISITLOG_QUEUE_SHARDS` (or `VISITLOG_REDIS_MODE`), and would wait
    /// there for ever.
    pub fn strays(&self) -> &[String] {
        &self.strays
    }

    /// The shard list whose derived key `key` is (a processing list or
    /// heartbeat of it), or `key` itself.
    pub fn shard_of(&self, key: &str) -> Option<usize> {
        self.shards.iter().position(|shard| {
            key == shard
                || key
                    .strip_prefix(shard.as_str())
                    .is_some_and(|rest| rest.starts_with(':'))
        })
    }
}

/// Refuses a queue name that cannot be split into shards or used on a
/// cluster: braces would change the hash tags the keys rely on.
pub fn check_queue(queue: &str, shards: usize, cluster: bool) -> Result<(), String> {
    if queue.is_empty() {
        return Err("is empty".to_owned());
    }
    if !(1..=MAX_SHARDS).contains(&shards) {
        return Err(format!("shards must be between 1 and {MAX_SHARDS}"));
    }
    if (shards > 1 || cluster) && queue.contains(['{', '}']) {
        return Err(
            "holds `{` or `}`, which a sharded or clustered queue uses for its hash tags"
                .to_owned(),
        );
    }
    Ok(())
}

/// The list a consumer instance moves one batch into while it stores it;
/// an instance has one such list per batch it may have in flight (`slot`).
pub fn processing_list(queue: &str, consumer_id: &str, slot: usize) -> String {
    format!("{queue}:processing:{consumer_id}:{slot}")
}

/// The pattern matching every processing list of `consumer_id` (for `SCAN`).
pub fn processing_pattern(queue: &str, consumer_id: &str) -> String {
    format!("{queue}:processing:{consumer_id}:*")
}

/// The set of consumer ids that have worked on `queue`.
pub fn consumers(queue: &str) -> String {
    format!("{queue}:consumers")
}

/// The expiring key a consumer instance refreshes while it is alive.
pub fn heartbeat(queue: &str, consumer_id: &str) -> String {
    format!("{queue}:heartbeat:{consumer_id}")
}

/// What a consumer instance says of itself (JSON), expiring with its heartbeat.
pub fn status(queue: &str, consumer_id: &str) -> String {
    format!("{queue}:status:{consumer_id}")
}

/// Fleet-wide totals (a hash of counters), kept across restarts.
pub fn totals(queue: &str) -> String {
    format!("{queue}:totals")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_on_one_server_keeps_the_names_of_before() {
        let keys = QueueKeys::new(DEFAULT_QUEUE, 1, false);
        assert_eq!(keys.base(), DEFAULT_QUEUE);
        assert_eq!(keys.shards(), [DEFAULT_QUEUE]);
        assert_eq!(
            keys.shard_of(&processing_list(DEFAULT_QUEUE, "c1", 0)),
            Some(0)
        );
        assert_eq!(keys.shard_of("visitlog:queue2:processing:c1:0"), None);
    }

    #[test]
    fn shards_carry_one_hash_tag_each_and_the_fleet_keys_another() {
        let keys = QueueKeys::new("q", 3, true);
        assert_eq!(keys.base(), "{q}");
        assert_eq!(keys.shards(), ["{q:0}", "{q:1}", "{q:2}"]);
        let list = processing_list(&keys.shards()[2], "c1", 0);
        assert_eq!(list, "{q:2}:processing:c1:0");
        assert_eq!(keys.shard_of(&list), Some(2));
        assert_eq!(keys.shard_of(&heartbeat(&keys.shards()[1], "c1")), Some(1));
        assert_eq!(keys.shard_of(&totals(keys.base())), None);
        // One shard on a cluster: the queue shares the fleet keys' slot.
        assert_eq!(QueueKeys::new("q", 1, true).shards(), ["{q}"]);
        // Sharded on one server: the same shard names, plain fleet keys.
        let keys = QueueKeys::new("q", 2, false);
        assert_eq!(
            (keys.base(), keys.shards()),
            ("q", &["{q:0}".to_owned(), "{q:1}".to_owned()][..])
        );
    }

    #[test]
    fn strays_are_every_list_another_shard_count_would_fill() {
        for (shards, cluster) in [(1, false), (1, true), (2, false), (3, true), (256, false)] {
            let keys = QueueKeys::new("q", shards, cluster);
            let strays = keys.strays();
            // Every other count's and mode's lists, and none of this one's.
            for other in 1..=MAX_SHARDS {
                for mode in [false, true] {
                    for list in QueueKeys::new("q", other, mode).shards() {
                        let ours = keys.shards().contains(list);
                        assert_ne!(ours, strays.contains(list), "{shards} vs {other}: {list}");
                    }
                }
            }
            assert!(strays.iter().all(|s| keys.shard_of(s).is_none()));
            assert_eq!(strays.len() + keys.shards().len(), MAX_SHARDS + 2);
        }
        assert_eq!(
            QueueKeys::new("q", 2, false).strays()[..3],
            ["q".to_owned(), "{q}".to_owned(), "{q:2}".to_owned()]
        );
        assert_eq!(QueueKeys::new("q", MAX_SHARDS, true).strays(), ["q", "{q}"]);
        // A name no sharded producer can use has none.
        assert!(QueueKeys::new("a{b}", 1, false).strays().is_empty());
    }

    #[test]
    fn queue_names_that_would_break_the_tags_are_refused() {
        assert!(check_queue("visitlog:queue", 8, true).is_ok());
        assert!(check_queue("a{b}", 1, false).is_ok());
        assert!(check_queue("a{b}", 2, false).is_err());
        assert!(check_queue("a{b}", 1, true).is_err());
        assert!(check_queue("q", 0, false).is_err());
        assert!(check_queue("q", MAX_SHARDS + 1, false).is_err());
        assert!(check_queue("", 1, false).is_err());
    }

    #[test]
    fn keys_derive_from_the_queue_name() {
        assert_eq!(processing_list("q", "c1", 0), "q:processing:c1:0");
        assert_eq!(processing_pattern("q", "c1"), "q:processing:c1:*");
        assert_eq!(consumers("q"), "q:consumers");
        assert_eq!(status("q", "c1"), "q:status:c1");
        assert_eq!(totals("q"), "q:totals");
        assert_eq!(
            heartbeat(DEFAULT_QUEUE, "c1"),
            "visitlog:queue:heartbeat:c1"
        );
    }
}
