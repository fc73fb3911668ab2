//! Reading stored records back for the analytics, and writing what they
//! derive: whole documents replaced by `_id`, each checked client-side
//! against its collection's validator first (a bug guard: code built them).

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
/// rules on their type (`PageView::check`).
pub async fn replace_checked(sink: &Sink, collection: Coll, docs: Vec<Document>) -> Result<u64> {
    let collection = collection.name();
    let mut statements = Vec::with_capacity(docs.len());
    for d in docs {
        let Some(id) = d.get("_id").cloned() else {
            continue;
        };
        let statement = doc! { "q": { "_id": id }, "u": d, "upsert": true };
        statements
            .push(RawDocumentBuf::from_document(&statement).map_err(mongodb::error::Error::from)?);
    }
    let sent = statements.len() as u64;
    let errors = write_command::send(sink.database(), Verb::Update, collection, statements).await?;
    Ok(sent - errors.refused)
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
