//! `stats` and `dead-letters list|requeue|purge`: for an operator's shell.

use std::time::Duration;

use bson::{Document, doc};
use redis::AsyncCommands;
use visitlog_schema::keys::QueueKeys;
use visitlog_schema::{RedisConn, RedisTarget, Timeouts};

use crate::batch::DeadLetterDocument;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fleet::queue_stats;
use crate::sink::Sink;

/// Prints queue, processing and dead-letter counts as JSON.
pub async fn stats(config: &Config) -> Result<serde_json::Value> {
    let mut conn = connect(&config.redis_target()?).await?;
    let queue = queue_stats(&mut conn, &config.queue_keys()).await?;
    let sink = Sink::open(config).await?;
    let dead_letters = sink.dead_letter_count().await?;
    let stored = sink.request_logs().estimated_document_count().await?;
    let events = sink.events().estimated_document_count().await?;
    let progress = sink.tutorial_progress().estimated_document_count().await?;
    let marks = sink.marks();
    let derivations_pending = marks.pending().await?;
    let derivation_lag_seconds = marks.lag().await?.as_secs_f64();
    Ok(serde_json::json!({
        "queue": config.queue,
        "pending": queue.pending,
        "processing": queue.processing,
        "consumers_alive": queue.consumers_alive,
        "stranded": queue.stranded,
        "dead_letters": dead_letters,
        "request_logs": stored,
        "events": events,
        "tutorial_progress": progress,
        "derivations_pending": derivations_pending,
        "derivation_lag_seconds": derivation_lag_seconds,
    }))
}

/// One line per dead letter, newest first.
pub async fn list(config: &Config, limit: i64) -> Result<Vec<String>> {
    let sink = Sink::open(config).await?;
    Ok(sink
        .dead_letters(limit)
        .await?
        .iter()
        .map(describe)
        .collect())
}

fn describe(d: &DeadLetterDocument) -> String {
    let preview: String = match &d.payload {
        Some(s) => s.chars().take(80).collect(),
        None => "<binary>".to_owned(),
    };
    format!(
        "{} {} size={} reason={:?} payload={:?}",
        d.id,
        bson::DateTime::from_chrono(d.at),
        d.size,
        d.reason,
        preview
    )
}

/// Which dead letters a command applies to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// These ids.
    pub ids: Vec<String>,
    /// Those whose reason contains this text.
    pub reason_contains: Option<String>,
    /// Every dead letter.
    pub all: bool,
}

impl Selection {
    fn filter(&self) -> Result<Document> {
        let mut filter = Document::new();
        if !self.ids.is_empty() {
            filter.insert("_id", doc! { "$in": self.ids.clone() });
        }
        if let Some(text) = &self.reason_contains {
            filter.insert("reason", doc! { "$regex": escape_regex(text) });
        }
        if !self.all && filter.is_empty() {
            return Err(Error::NoSelection);
        }
        Ok(filter)
    }
}

/// Moves the selected dead letters back to the queue (after the cause was
/// fixed). Each is pushed first and deleted after, and only if it did not
/// change meanwhile: if the record fails again at once, its renewed dead
/// letter stays. Truncated ones cannot be requeued and are reported.
pub async fn requeue(config: &Config, selection: &Selection) -> Result<(u64, u64)> {
    let sink = Sink::open(config).await?;
    requeue_into(
        &sink,
        &config.redis_target()?,
        &config.queue_keys(),
        selection,
    )
    .await
}

/// One connection for an operator's command.
pub(crate) async fn connect(target: &RedisTarget) -> Result<RedisConn> {
    Ok(target
        .connect(Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(30),
        })
        .await?)
}

/// [`requeue`] with the consumer's own handles (the status endpoint's).
/// Each record goes to a shard in turn, as the middleware sends them.
pub async fn requeue_into(
    sink: &Sink,
    target: &RedisTarget,
    keys: &QueueKeys,
    selection: &Selection,
) -> Result<(u64, u64)> {
    let mut conn = connect(target).await?;
    let (mut requeued, mut skipped) = (0, 0);
    for letter in sink.find_dead_letters(selection.filter()?).await? {
        let payload = letter.payload_bytes();
        if letter.truncated || payload.is_empty() && letter.size > 0 {
            tracing::warn!(
                id = %letter.id,
                "payload was truncated when dead-lettered; not requeued"
            );
            skipped += 1;
            continue;
        }
        let shard = &keys.shards()[requeued as usize % keys.shards().len()];
        let _: () = conn.rpush(shard, payload).await?;
        sink.remove_dead_letter(&letter).await?;
        requeued += 1;
    }
    Ok((requeued, skipped))
}

/// Deletes the selected dead letters.
pub async fn purge(config: &Config, selection: &Selection) -> Result<u64> {
    let sink = Sink::open(config).await?;
    sink.purge_dead_letters(selection.filter()?).await
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
