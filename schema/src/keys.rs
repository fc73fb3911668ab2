//! Redis key names shared by the middleware (producer) and the consumer.
//!
//! Every key visitlog touches is derived from the queue name, so one Redis
//! server can carry several independent queues (one per site, or per test).

/// The Redis list the middleware appends records to, unless configured.
pub const DEFAULT_QUEUE: &str = "visitlog:queue";

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
