//! How long each collection keeps its documents: TTL indexes, added,
//! changed or removed at every start to match the configuration.
//!
//! A real MongoDB refuses `createIndexes` on an index that exists with other
//! options (`IndexOptionsConflict`, code 85), so a changed TTL goes through
//! `collMod`, and where that cannot do it (an index that had no TTL, or
//! loses it; MongoDB before 5.1; a server that accepts `collMod` and
//! ignores it, as nx-27017 does) the index is dropped and made again: it is
//! only an index, no document is touched. What the server lists afterwards
//! is checked, so a change that did not take is an error, never silent.

use std::time::Duration;

use bson::{Document, doc};
use futures_util::TryStreamExt;
use mongodb::IndexModel;
use mongodb::options::IndexOptions;
use visitlog_schema::Collection as Coll;

use super::{DEAD_LETTERS, EVENTS, REQUEST_LOGS, Sink};
use crate::error::{Error, Result};

/// The configured lifetimes; `None` keeps documents for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `request_logs`, by `ts` (`retention`).
    pub requests: Option<Duration>,
    /// `events`, by `ts` (`events-retention`).
    pub events: Option<Duration>,
    /// `dead_letters`, by `at` (`dead-letters-retention`).
    pub dead_letters: Option<Duration>,
    /// The per-visit analytics, `page_views` and `sessions`, by `start`
    /// (`analytics-retention`).
    pub analytics: Option<Duration>,
}

impl Retention {
    /// Each collection, the field its TTL index is on, and its lifetime.
    fn indexes(&self) -> [(&'static str, Document, Option<Duration>); 5] {
        [
            (REQUEST_LOGS, doc! { "ts": 1 }, self.requests),
            (EVENTS, doc! { "ts": 1 }, self.events),
            (DEAD_LETTERS, doc! { "at": -1 }, self.dead_letters),
            (Coll::PageViews.name(), doc! { "start": 1 }, self.analytics),
            (Coll::Sessions.name(), doc! { "start": 1 }, self.analytics),
        ]
    }
}

impl Sink {
    /// Makes every TTL index say what `retention` says.
    pub(crate) async fn apply_retention(&self, retention: &Retention) -> Result<()> {
        for (collection, keys, keep) in retention.indexes() {
            self.ensure_ttl(collection, keys, keep).await?;
        }
        Ok(())
    }

    /// The index on `keys` of `collection` expires documents after `keep`
    /// (or never, with `None`).
    async fn ensure_ttl(
        &self,
        collection: &str,
        keys: Document,
        keep: Option<Duration>,
    ) -> Result<()> {
        let want = keep.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let coll = self.db.collection::<Document>(collection);
        let existing = self.index_on(collection, &keys).await?;
        let Some((name, current)) = existing else {
            return self.create_index(collection, keys, keep).await;
        };
        if current == want {
            return Ok(());
        }
        if let (Some(_), Some(seconds)) = (current, want) {
            self.db
                .run_command(doc! {
                    "collMod": collection,
                    "index": { "keyPattern": keys.clone(), "expireAfterSeconds": seconds },
                })
                .await?;
            if self.index_on(collection, &keys).await?.map(|(_, ttl)| ttl) == Some(want) {
                tracing::info!(collection, seconds, "retention changed");
                return Ok(());
            }
        }
        coll.drop_index(name).await?;
        self.create_index(collection, keys.clone(), keep).await?;
        let now = self.index_on(collection, &keys).await?.map(|(_, ttl)| ttl);
        if now != Some(want) {
            return Err(Error::Retention(format!(
                "{collection}: the server lists {now:?} seconds after the change to {want:?}"
            )));
        }
        tracing::info!(collection, seconds = ?want, "retention changed");
        Ok(())
    }

    async fn create_index(
        &self,
        collection: &str,
        keys: Document,
        keep: Option<Duration>,
    ) -> Result<()> {
        let options = IndexOptions::builder().expire_after(keep).build();
        self.db
            .collection::<Document>(collection)
            .create_index(IndexModel::builder().keys(keys).options(options).build())
            .await?;
        Ok(())
    }

    /// The name and TTL (seconds) of the index on `keys`' fields.
    pub(crate) async fn index_on(
        &self,
        collection: &str,
        keys: &Document,
    ) -> Result<Option<(String, Option<i64>)>> {
        let mut cursor = self
            .db
            .collection::<Document>(collection)
            .list_indexes()
            .await?;
        while let Some(index) = cursor.try_next().await? {
            if !same_fields(&index.keys, keys) {
                continue;
            }
            let options = index.options.unwrap_or_default();
            let ttl = options
                .expire_after
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            return Ok(Some((options.name.unwrap_or_default(), ttl)));
        }
        Ok(None)
    }
}

/// The same fields in the same order. The direction is left out: a TTL
/// index has one field, whose direction changes nothing, and nx-27017 lists
/// `{at: -1}` as `{at: 1}`.
fn same_fields(a: &Document, b: &Document) -> bool {
    a.keys().eq(b.keys())
}
