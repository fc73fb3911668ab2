//! Events stored under another tutorial than an import names now: an edX
//! video not yet in the catalog is imported under its course and block id,
//! and importing the same file again once the catalog lists it moves its
//! events to the catalog's tutorial. Each such event is replaced in place
//! (same `_id`: still stored once), and the progress it leaves is folded
//! again without it.

use bson::doc;
use futures_util::TryStreamExt;
use visitlog_progress::event_from_document;
use visitlog_schema::EventRecord;

use super::Sink;
use super::derive::Refolds;
use super::history::Target;
use crate::analytics::Mark;
use crate::error::Result;

/// Ids looked up at once.
const CHUNK: usize = 1000;

/// What moving events did.
#[derive(Debug, Default)]
pub struct Moved {
    /// Events now stored under the tutorial the import names.
    pub events: u64,
    /// The progress histories they left, to fold again.
    pub refolds: Refolds,
    /// The analytics keys of where they were.
    pub marks: Vec<Mark>,
}

impl Sink {
    /// Replaces each stored event of `events` whose tutorial (FOSS,
    /// tutorial, language) differs from the one given here; an event not
    /// stored yet is left to [`Sink::store`].
    pub async fn reattribute(&self, events: &[&EventRecord]) -> Result<Moved> {
        let mut moved = Moved::default();
        for chunk in events.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|e| e.id.to_string()).collect();
            let mut cursor = self.events.find(doc! { "_id": { "$in": ids } }).await?;
            let mut stored = std::collections::HashMap::new();
            while let Some(d) = cursor.try_next().await? {
                if let Ok(old) = event_from_document(d) {
                    stored.insert(old.id, old);
                }
            }
            for &new in chunk {
                let Some(old) = stored.get(&new.id) else {
                    continue;
                };
                if (&old.foss, &old.tutorial, &old.language)
                    == (&new.foss, &new.tutorial, &new.language)
                {
                    continue;
                }
                let doc = match visitlog_progress::event_document(new) {
                    Ok(doc) => doc,
                    // It was made into BSON once already, when prepared.
                    Err(e) => {
                        tracing::error!(event = %new.id, error = %e, "event not moved");
                        continue;
                    }
                };
                self.events
                    .replace_one(doc! { "_id": new.id.to_string() }, doc)
                    .await?;
                tracing::debug!(event = %new.id, from = %old.tutorial, to = %new.tutorial, "event moved to the catalog's tutorial");
                moved.refolds.add_target(Target::new(
                    &old.learner,
                    &old.foss,
                    &old.tutorial,
                    &old.language,
                ));
                moved
                    .marks
                    .extend(crate::analytics::batch::event_marks(std::slice::from_ref(
                        old,
                    )));
                moved.events += 1;
            }
        }
        Ok(moved)
    }

    /// Deletes the progress documents of `moved`'s histories that have no
    /// event left (all of them moved): folding an empty history writes
    /// nothing, so they would stay. Only those: a history emptied by
    /// retention keeps its document. Returns how many it deleted.
    pub async fn forget_emptied(&self, moved: &Moved) -> Result<u64> {
        let mut deleted = 0;
        for target in moved.refolds.targets() {
            let left = self
                .events
                .find_one(doc! {
                    "learner": &target.learner,
                    "foss": &target.foss,
                    "tutorial": &target.tutorial,
                    "language": &target.language,
                })
                .projection(doc! { "_id": 1 })
                .await?;
            if left.is_none() {
                deleted += self
                    .progress
                    .delete_one(doc! { "_id": target.id() })
                    .await?
                    .deleted_count;
            }
        }
        Ok(deleted)
    }
}
