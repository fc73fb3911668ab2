//! Reading stored records back for the analytics, and writing what they
//! derive: whole documents replaced by `_id`, each checked client-side
//! against its collection's validator first (a bug guard: code built them).

use std::collections::HashMap;

use bson::{Bson, Document, RawDocumentBuf, doc};
use chrono::SecondsFormat;
use futures_util::TryStreamExt;
use mongodb::Collection;
use visitlog_schema::{Collection as Coll, RecordValidator, RequestRecord};

use crate::error::Result;
use crate::sink::Sink;
use crate::sink::write_command::{self, Verb};

/// `page_views`.
pub const PAGE_VIEWS: &str = Coll::PageViews.name();
/// `sessions`.
pub const SESSIONS: &str = Coll::Sessions.name();

/// Documents per reply when the analytics stream stored documents: what
/// memory holds of a stream at a time.
pub const READ_BATCH: u32 = 1000;

/// Reads a stored `request_logs` document back: `ts` is a BSON date there
/// and an RFC 3339 string in the record type.
pub fn request_from_document(mut doc: Document) -> Option<RequestRecord> {
    if let Some(Bson::DateTime(ts)) = doc.get("ts") {
        let text = ts.to_chrono().to_rfc3339_opts(SecondsFormat::Millis, true);
        doc.insert("ts", text);
    }
    bson::from_document(doc)
        .inspect_err(
            |error| tracing::warn!(%error, "unreadable request record skipped by the analytics"),
        )
        .ok()
}

/// All documents `filter` finds in `coll`, sorted.
pub async fn find_all(
    coll: &Collection<Document>,
    filter: Document,
    sort: Document,
) -> Result<Vec<Document>> {
    Ok(coll
        .find(filter)
        .sort(sort)
        .batch_size(READ_BATCH)
        .await?
        .try_collect()
        .await?)
}

/// Replaces (or creates) each document by its `_id`, in unordered commands
/// with the write concern ([`write_command::send`]); returns how many it
/// wrote. A document that fails
/// its collection's validator is logged and not written.
pub async fn replace_all(sink: &Sink, collection: Coll, docs: Vec<Document>) -> Result<u64> {
    let Some(validator) = validator(collection) else {
        return Ok(0); // Never: the validators are compiled into the schema crate, and tested.
    };
    let docs = docs
        .into_iter()
        .filter(|d| {
            let id = d.get("_id").map(ToString::to_string).unwrap_or_default();
            crate::sink::valid(validator, d, &id)
        })
        .collect();
    replace_checked(sink, collection, docs).await
}

/// [`replace_all`] of documents already checked against their validator's
/// rules on their type (`PageView::check`). A document whose stored copy
/// already holds the same figures ([`unchanged`]) is not written again: a
/// visit computed every interval while it lasts would otherwise rewrite
/// every page view it had, where one or two changed. Returns how many it
/// wrote.
pub async fn replace_checked(sink: &Sink, collection: Coll, docs: Vec<Document>) -> Result<u64> {
    let name = collection.name();
    let stored_in = sink.database().collection::<Document>(name);
    let mut statements = Vec::with_capacity(docs.len());
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        let chunk: Vec<Document> = docs.by_ref().take(write_command::MAX_STATEMENTS).collect();
        let ids: Vec<&str> = chunk.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        let mut stored: HashMap<String, Document> = HashMap::with_capacity(ids.len());
        if !ids.is_empty() {
            let mut cursor = stored_in
                .find(doc! { "_id": { "$in": ids } })
                .batch_size(READ_BATCH)
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let Ok(id) = d.get_str("_id") {
                    stored.insert(id.to_owned(), d);
                }
            }
        }
        for d in chunk {
            let Some(id) = d.get("_id").cloned() else {
                continue;
            };
            let before = d.get_str("_id").ok().and_then(|id| stored.get(id));
            if before.is_some_and(|before| unchanged(before, &d)) {
                continue;
            }
            let statement = doc! { "q": { "_id": id }, "u": d, "upsert": true };
            statements.push(
                RawDocumentBuf::from_document(&statement).map_err(mongodb::error::Error::from)?,
            );
        }
    }
    let sent = statements.len() as u64;
    let errors = write_command::send(sink.database(), Verb::Update, name, statements).await?;
    Ok(sent - errors.refused)
}

/// What a computation stamps on every derived document: the claim that
/// wrote it and when. Not part of its figures.
const STAMPS: [&str; 2] = ["fence", "derived_at"];

/// Whether `stored` holds the figures `new` would write: the same fields
/// with equal values (in any order), the [`STAMPS`] aside. Skipping such a
/// write is safe: the stored document is what a computation from what is
/// stored now gives, and the marks it feeds are written all the same.
fn unchanged(stored: &Document, new: &Document) -> bool {
    let figures = |d: &Document| d.keys().filter(|k| !STAMPS.contains(&k.as_str())).count();
    figures(stored) == figures(new)
        && new
            .iter()
            .filter(|(k, _)| !STAMPS.contains(&k.as_str()))
            .all(|(k, v)| stored.get(k).is_some_and(|s| same(s, v)))
}

/// Equal values, an integer equal to the same integer of another width (a
/// server may store a small `Int64` as an `Int32`; nx-27017 does).
fn same(stored: &Bson, new: &Bson) -> bool {
    match (stored, new) {
        (Bson::Int32(a), Bson::Int64(b)) | (Bson::Int64(b), Bson::Int32(a)) => i64::from(*a) == *b,
        (Bson::Document(a), Bson::Document(b)) => {
            a.len() == b.len() && b.iter().all(|(k, v)| a.get(k).is_some_and(|s| same(s, v)))
        }
        (Bson::Array(a), Bson::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(s, v)| same(s, v))
        }
        _ => stored == new,
    }
}

/// The validator of a derived collection, compiled once.
fn validator(collection: Coll) -> Option<&'static RecordValidator> {
    static ALL: std::sync::OnceLock<Vec<RecordValidator>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        [
            Coll::PageViews,
            Coll::Sessions,
            Coll::VideoStats,
            Coll::TutorialDaily,
            Coll::SiteDaily,
            Coll::Rollups,
        ]
        .into_iter()
        .filter_map(|c| RecordValidator::new(c).ok())
        .collect()
    })
    .iter()
    .find(|v| v.collection() == collection)
}

/// Deletes the documents of `collection` with these ids.
pub async fn delete_ids(sink: &Sink, collection: &str, ids: Vec<String>) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = sink
        .database()
        .collection::<Document>(collection)
        .delete_many(doc! { "_id": { "$in": ids } })
        .await?;
    Ok(result.deleted_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_figures_are_told_from_changed_ones() {
        let stored = doc! {
            "_id": "p", "pings": 2_i32, "fence": 1_i32, "derived_at": bson::DateTime::from_millis(1),
            "tutorial": { "foss": "py", "n": 1_i32 }, "marks": [1_i32, { "a": 2_i64 }], "t": 1.5,
        };
        // Another order, other stamps, integers of the width the code wrote.
        let same_figures = doc! {
            "derived_at": bson::DateTime::from_millis(2), "fence": 7_i64, "t": 1.5,
            "marks": [1_i64, { "a": 2_i32 }], "tutorial": { "n": 1_i64, "foss": "py" },
            "pings": 2_i64, "_id": "p",
        };
        assert!(unchanged(&stored, &same_figures));
        let changed = |f: &dyn Fn(&mut Document)| {
            let mut d = same_figures.clone();
            f(&mut d);
            !unchanged(&stored, &d)
        };
        assert!(changed(&|d| {
            d.insert("pings", 3_i64);
        }));
        assert!(changed(&|d| {
            d.insert("t", 1.0);
        }));
        assert!(changed(&|d| {
            d.insert("t", 2_i64); // A double is not an integer.
        }));
        assert!(changed(&|d| {
            d.insert("extra", bson::Bson::Null);
        }));
        assert!(changed(&|d| {
            d.remove("pings");
        }));
        assert!(changed(&|d| {
            d.insert("tutorial", doc! { "foss": "py" });
        }));
        assert!(changed(&|d| {
            d.insert("marks", bson::bson!([{ "a": 2_i32 }, 1_i64]));
        }));
        assert!(changed(&|d| {
            d.insert("tutorial", doc! { "n": 1_i64, "foss": "r" });
        }));
    }
}
