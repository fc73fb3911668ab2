//! Dead letters: written keyed by payload hash (a replay rewrites the
//! same document), read and acted on by the status page and the
//! `dead-letters` commands.

use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;

use super::Sink;
use crate::batch::DeadLetterDocument;
use crate::error::Result;

impl Sink {
    /// Writes one dead letter. A replace keyed by the payload hash: a replay
    /// rewrites the same document, and a requeued record that fails again
    /// renews it.
    pub(super) async fn put_dead_letter(&self, mut doc: Document) -> mongodb::error::Result<()> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        doc.insert("written", uuid::Uuid::now_v7().to_string());
        self.dead
            .replace_one(doc! { "_id": id }, doc)
            .upsert(true)
            .await
            .map(drop)
    }

    /// The number of dead letters.
    pub async fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.dead.count_documents(doc! {}).await?)
    }

    /// The number of dead letters, from collection metadata (cheap).
    pub async fn dead_letter_estimate(&self) -> Result<u64> {
        Ok(self.dead.estimated_document_count().await?)
    }

    /// The newest `limit` dead letters.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetterDocument>> {
        let docs: Vec<Document> = self
            .dead
            .find(doc! {})
            .sort(doc! { "at": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(readable(docs))
    }

    /// Dead letters matching `filter`.
    pub async fn find_dead_letters(&self, filter: Document) -> Result<Vec<DeadLetterDocument>> {
        let docs: Vec<Document> = self
            .dead
            .find(filter)
            .sort(doc! { "at": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(readable(docs))
    }

    /// Deletes one dead letter if it is unchanged since it was read: the
    /// same write (`written`), or for one written before that field, the
    /// same time.
    pub async fn remove_dead_letter(&self, letter: &DeadLetterDocument) -> Result<bool> {
        let filter = match &letter.written {
            Some(written) => doc! { "_id": &letter.id, "written": written },
            None => doc! {
                "_id": &letter.id,
                "at": bson::DateTime::from_chrono(letter.at),
                "written": { "$exists": false },
            },
        };
        let result = self.dead.delete_one(filter).await?;
        Ok(result.deleted_count == 1)
    }

    /// Deletes dead letters matching `filter`; returns how many.
    pub async fn purge_dead_letters(&self, filter: Document) -> Result<u64> {
        Ok(self.dead.delete_many(filter).await?.deleted_count)
    }
}

/// The documents read as dead letters; one that is not (written by hand,
/// say) is logged and left out rather than hiding all the others.
fn readable(docs: Vec<Document>) -> Vec<DeadLetterDocument> {
    docs.into_iter()
        .filter_map(|d| match bson::from_document(d) {
            Ok(letter) => Some(letter),
            Err(error) => {
                tracing::warn!(%error, "unreadable dead letter skipped");
                None
            }
        })
        .collect()
}
