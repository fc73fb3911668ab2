//! Storing a prepared batch: unordered bulk inserts in which a replayed
//! record is a duplicate-key no-op, a client's retry of an event already
//! stored (same `client_event_id`) is dropped, per-document refusals become
//! dead letters, and only trouble worth retrying the whole batch is an
//! error. The batch's learner links and catalog publications are stored
//! here too, before anything is derived (so progress folds its events on
//! the catalog they came with).

use std::collections::{HashMap, HashSet};

use bson::{Document, RawDocumentBuf, doc};
use chrono::Utc;
use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::error::{ErrorKind, WriteFailure};
use uuid::Uuid;

use super::{DUPLICATE_KEY, LearnerLink, Sink, TutorialKey};
use crate::batch::{DeadLetter, Prepared, PreparedEvent};
use crate::error::Result;
use visitlog_schema::EventRecord;

/// The largest document MongoDB stores (`maxBsonObjectSize`).
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// What a stored batch gives the derivation.
#[derive(Debug, Default, Clone)]
pub struct ToDerive {
    /// The stored events (replays included: they are derived again).
    pub events: Vec<EventRecord>,
    /// The links whose stored document is this batch's (see
    /// [`Sink::record_links`]).
    pub links: Vec<LearnerLink>,
    /// The analytics keys the batch touches: its request records', and its
    /// stored events'.
    pub marks: Vec<crate::analytics::Mark>,
    /// Tutorials whose catalog main video (or its duration) the batch's
    /// publications changed: every learner's progress in them is folded
    /// again.
    pub catalog_tutorials: Vec<TutorialKey>,
}

/// What storing one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// New documents.
    pub inserted: u64,
    /// Documents that were already there (a replayed batch).
    pub duplicates: u64,
    /// Records sent to `dead_letters`, including ones MongoDB refused.
    pub dead_lettered: u64,
    /// `learner_links` documents now this batch's (new, earlier, replayed).
    pub links: u64,
    /// The newest `ts` among the batch's stored records.
    pub newest: Option<chrono::DateTime<Utc>>,
}

impl Sink {
    /// Stores a prepared batch; returns what it did and the stored events
    /// and links, for [`Sink::derive`]. `Err` only for trouble worth retrying the whole
    /// batch (network, server down, write concern): per-document refusals
    /// become dead letters, and duplicates are counted, not errors.
    pub async fn store(
        &self,
        prepared: Prepared,
        consumer: &str,
        queue: &str,
        dead_letter_max_bytes: usize,
    ) -> Result<(Stored, ToDerive)> {
        let mut stored = Stored {
            newest: prepared.newest,
            ..Stored::default()
        };
        let mut dead = prepared.dead;
        let mut marks = prepared.marks;
        // Publications in queue order; whatever the order, the newest wins.
        let mut catalog_tutorials = std::collections::BTreeSet::new();
        for (record, _) in &prepared.catalogs {
            let summary = self.apply_catalog(record, false).await?;
            tracing::info!(%summary, publication = %record.id, "catalog publication applied");
            if summary.new + summary.updated + summary.retired > 0 {
                stored.inserted += 1;
            } else {
                stored.duplicates += 1;
            }
            catalog_tutorials.extend(summary.mains_changed);
            // `video_stats` take their duration and tutorial from the catalog.
            marks.extend(record.items.iter().map(|item| {
                crate::analytics::Mark::new(
                    crate::analytics::DerivedKind::Video,
                    item.video_id.clone(),
                )
            }));
        }
        let (docs, raws): (Vec<RawDocumentBuf>, Vec<Option<Vec<u8>>>) = prepared
            .requests
            .into_iter()
            .map(|(doc, raw)| (doc, Some(raw)))
            .unzip();
        let (refused, _) = insert_all(&self.requests, docs, &raws, &mut stored, &mut dead).await?;
        // Links of stored request records only (a replayed one is stored).
        let links: Vec<LearnerLink> = prepared
            .links
            .into_iter()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, link)| link)
            .collect();
        let links = self.record_links(links).await?;
        stored.links = links.len() as u64;
        let (events, replays) = self.drop_retries(prepared.events, &mut stored).await?;
        let mut folds = Vec::with_capacity(events.len());
        let mut docs = Vec::with_capacity(events.len());
        let mut raws = Vec::with_capacity(events.len());
        for event in events {
            docs.push(event.doc);
            raws.push(event.raw);
            folds.push(event.fold);
        }
        let (mut refused, retries) =
            insert_all(&self.events, docs, &raws, &mut stored, &mut dead).await?;
        // Refused by the client-id index: a retry another consumer stored
        // meanwhile, never derived; unless the check above saw this very
        // event stored (a replay, whichever index MongoDB names).
        refused.extend(
            retries
                .into_iter()
                .filter(|&i| folds.get(i).is_none_or(|e| !replays.contains(&e.id))),
        );
        // Only stored events take part: a refold reads them back from `events`.
        let folds: Vec<EventRecord> = folds
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, f)| f)
            .collect();
        let now = Utc::now();
        for letter in &dead {
            tracing::debug!(reason = %letter.reason, "dead letter");
            let doc = letter.document(now, consumer, queue, dead_letter_max_bytes);
            let size = bson::to_vec(&doc).map_or(usize::MAX, |b| b.len());
            let refusal = if size > MAX_DOCUMENT_BYTES {
                Some(format!(
                    "a document of {size} bytes is more than MongoDB takes"
                ))
            } else {
                match self.put_dead_letter(doc).await {
                    Ok(()) => None,
                    Err(e) if refused_document(&e) => Some(e.to_string()),
                    Err(e) => return Err(e.into()),
                }
            };
            // MongoDB would not take this document: keep what identifies
            // the record rather than retry the batch forever.
            if let Some(why) = refusal {
                tracing::warn!(%why, size = letter.raw.len(), "dead letter written without its payload");
                let minimal = letter.minimal_document(now, consumer, queue, &why);
                self.put_dead_letter(minimal).await?;
            }
        }
        stored.dead_lettered = dead.len() as u64;
        Ok((
            stored,
            ToDerive {
                marks: {
                    marks.extend(crate::analytics::batch::event_marks(&folds));
                    marks
                },
                events: folds,
                links,
                catalog_tutorials: catalog_tutorials.into_iter().collect(),
            },
        ))
    }

    /// Leaves out events that are a client's retry of another (same learner
    /// and `client_event_id`, another `_id`): of those in the batch all but
    /// the earliest, and any whose pair is already stored under another
    /// `_id`. They count as duplicates and are never derived. A replay of
    /// the stored event itself (same `_id`) goes on: it is derived again,
    /// as every replay is; their ids are returned. Two consumers storing two retries at once both
    /// pass this check; the unique index then refuses one (see
    /// [`insert_all`]), and the fold skips a client id it already folded,
    /// for a server without the index.
    async fn drop_retries(
        &self,
        events: Vec<PreparedEvent>,
        stored: &mut Stored,
    ) -> Result<(Vec<PreparedEvent>, HashSet<Uuid>)> {
        let key = |e: &EventRecord| e.client_event_id.map(|c| (e.learner.clone(), c));
        // The earliest `_id` per pair: in the batch, then as stored.
        let mut first: HashMap<(String, Uuid), Uuid> = HashMap::new();
        for e in events.iter().map(|e| &e.fold) {
            if let Some(k) = key(e) {
                let id = first.entry(k).or_insert(e.id);
                *id = (*id).min(e.id);
            }
        }
        if first.is_empty() {
            return Ok((events, HashSet::new()));
        }
        let pairs: Vec<(String, Uuid)> = first.keys().cloned().collect();
        let mut stored_ids = HashSet::new();
        for chunk in pairs.chunks(200) {
            let any: Vec<Document> = chunk
                .iter()
                .map(|(learner, c)| doc! { "learner": learner, "client_event_id": c.to_string() })
                .collect();
            let mut cursor = self
                .events
                .find(doc! { "$or": any })
                .projection(doc! { "_id": 1, "learner": 1, "client_event_id": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let read = || -> Option<((String, Uuid), Uuid)> {
                    let learner = d.get_str("learner").ok()?.to_owned();
                    let client = d.get_str("client_event_id").ok()?.parse().ok()?;
                    Some(((learner, client), d.get_str("_id").ok()?.parse().ok()?))
                };
                // The stored one wins, whichever is earlier.
                if let Some((k, id)) = read() {
                    first.insert(k, id);
                    stored_ids.insert(id);
                }
            }
        }
        let mut kept = Vec::with_capacity(events.len());
        let mut replays = HashSet::new();
        for event in events {
            match key(&event.fold).and_then(|k| first.get(&k)) {
                Some(&id) if id != event.fold.id => {
                    tracing::debug!(event = %event.fold.id, original = %id, "a retry of a stored event; dropped");
                    stored.duplicates += u64::from(event.raw.is_some());
                }
                Some(_) if stored_ids.contains(&event.fold.id) => {
                    replays.insert(event.fold.id);
                    kept.push(event);
                }
                _ => kept.push(event),
            }
        }
        Ok((kept, replays))
    }
}

/// Inserts unordered; counts new and duplicate records (documents without a
/// payload of their own, the derived page views, are not records), turns
/// other refusals into dead letters (or a log line, for derived documents)
/// and returns the indexes of refused documents, and of those refused by
/// the `client_event_id` index (a retry of another event, which must not be
/// derived, unlike a replay of the same `_id`).
async fn insert_all(
    collection: &Collection<Document>,
    docs: Vec<RawDocumentBuf>,
    raws: &[Option<Vec<u8>>],
    stored: &mut Stored,
    dead: &mut Vec<DeadLetter>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut refused = Vec::new();
    let mut retries = Vec::new();
    if docs.is_empty() {
        return Ok((refused, retries));
    }
    let records = raws.iter().filter(|r| r.is_some()).count() as u64;
    // Raw documents, sent as they were written (see `batch`).
    let raw = collection.clone_with_type::<RawDocumentBuf>();
    let errors = match raw.insert_many(docs).ordered(false).await {
        Ok(_) => Vec::new(),
        Err(e) => {
            let ErrorKind::InsertMany(failure) = e.kind.as_ref() else {
                return Err(e.into());
            };
            if failure.write_concern_error.is_some() {
                return Err(e.into());
            }
            failure.write_errors.clone().unwrap_or_default()
        }
    };
    let mut failed_records = 0;
    for error in &errors {
        let raw = raws.get(error.index).and_then(Option::as_ref);
        failed_records += u64::from(raw.is_some());
        if error.code == DUPLICATE_KEY {
            stored.duplicates += u64::from(raw.is_some());
            // Both MongoDB and nx-27017 name the index in the message.
            if error.message.contains("client_event_id") {
                retries.push(error.index);
            }
            continue;
        }
        refused.push(error.index);
        // Refused by the server (121: validation failed).
        let reason = format!(
            "rejected by MongoDB (code {}): {}",
            error.code, error.message
        );
        match raw {
            Some(raw) => dead.push(DeadLetter::new(raw.clone(), reason)),
            None => {
                tracing::error!(collection = collection.name(), %reason, "derived document not stored")
            }
        }
    }
    stored.inserted += records - failed_records;
    Ok((refused, retries))
}

/// Whether MongoDB (or the driver, before sending) refused a document as
/// such: writing it again would fail again. Network trouble, a server going
/// away and write concern errors are not; they are worth retrying.
fn refused_document(e: &mongodb::error::Error) -> bool {
    /// BadValue, DocumentValidationFailure, BSONObjectTooLarge, and the
    /// "document too large" codes of inserts and upserts.
    const REFUSALS: [i32; 5] = [2, 121, 10334, 17419, 17420];
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(_))
        | ErrorKind::InvalidArgument { .. }
        | ErrorKind::BsonSerialization(_) => true,
        ErrorKind::Command(c) => REFUSALS.contains(&c.code),
        _ => false,
    }
}
