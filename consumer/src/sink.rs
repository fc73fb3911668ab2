//! The MongoDB side: collections with validators and indexes, bulk inserts
//! that make replays harmless, and dead letters.

use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::Utc;
use futures_util::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use visitlog_schema::Collection as Coll;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use visitlog_schema::RecordValidator;

use crate::batch::{DeadLetter, Prepared};
use crate::error::{Error, Result};
use crate::progress::{FoldEvent, Progress, Rules, needs_refold, video_position};
use crate::retry::Backoff;

/// MongoDB's duplicate-key error: the record is already stored.
const DUPLICATE_KEY: i32 = 11000;
/// MongoDB's "namespace exists" error on `create`.
const NAMESPACE_EXISTS: i32 = 48;

/// The largest document MongoDB stores (`maxBsonObjectSize`).
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Collection names.
pub const REQUEST_LOGS: &str = "request_logs";
/// Where records that cannot be stored go.
pub const DEAD_LETTERS: &str = "dead_letters";
/// Learning events, and page views of tutorial pages.
pub const EVENTS: &str = "events";
/// Resume positions.
pub const VIDEO_POSITIONS: &str = "video_positions";
/// Tutorial progress.
pub const TUTORIAL_PROGRESS: &str = "tutorial_progress";

/// Attempts at writing derived documents when other consumers keep winning
/// the race for the same learner; then the whole batch is retried.
const DERIVE_ATTEMPTS: usize = 10;

/// Events per reply when a history is read back for a refold: what memory
/// holds of it at a time.
const HISTORY_BATCH: u32 = 1000;

/// Handles to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sink {
    db: Database,
    requests: Collection<Document>,
    events: Collection<Document>,
    progress: Collection<Document>,
    dead: Collection<Document>,
    validators: std::sync::Arc<DerivedValidators>,
}

/// Client-side checks of derived documents (a bug guard: they are built by code).
#[derive(Debug)]
struct DerivedValidators {
    positions: RecordValidator,
    progress: RecordValidator,
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
    /// The newest `ts` among the batch's stored records.
    pub newest: Option<chrono::DateTime<Utc>>,
}

impl Sink {
    /// Prepares a client; connects lazily.
    pub async fn new(uri: &str, database: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(uri).await?;
        options
            .app_name
            .get_or_insert_with(|| "visitlog-consumer".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        let client = Client::with_options(options)?;
        let db = client.database(database);
        Ok(Self {
            requests: db.collection(REQUEST_LOGS),
            events: db.collection(EVENTS),
            progress: db.collection(TUTORIAL_PROGRESS),
            dead: db.collection(DEAD_LETTERS),
            validators: std::sync::Arc::new(DerivedValidators {
                positions: RecordValidator::new(Coll::VideoPositions)?,
                progress: RecordValidator::new(Coll::TutorialProgress)?,
            }),
            db,
        })
    }

    /// Answers when MongoDB does.
    pub async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    /// Creates the collections with their validators (or updates the
    /// validators with `collMod`) and the indexes. Idempotent.
    pub async fn setup(&self, retention: Option<Duration>) -> Result<()> {
        for collection in Coll::ALL {
            let validator = collection
                .validator_document()
                .ok()
                .and_then(|v| bson::to_document(&v).ok())
                .unwrap_or_default();
            let name = collection.name();
            let create = self
                .db
                .run_command(doc! {
                    "create": name,
                    "validator": validator.clone(),
                    "validationLevel": "strict",
                    "validationAction": "error",
                })
                .await;
            match create {
                Ok(_) => {}
                Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {
                    self.db
                        .run_command(doc! {
                            "collMod": name,
                            "validator": validator,
                            "validationLevel": "strict",
                            "validationAction": "error",
                        })
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Err(e) = self.db.run_command(doc! { "create": DEAD_LETTERS }).await
            && command_code(&e) != Some(NAMESPACE_EXISTS)
        {
            return Err(e.into());
        }
        let ts = match retention {
            Some(keep) => IndexModel::builder()
                .keys(doc! { "ts": 1 })
                .options(IndexOptions::builder().expire_after(keep).build())
                .build(),
            None => IndexModel::builder().keys(doc! { "ts": 1 }).build(),
        };
        let by = |field: &str| {
            IndexModel::builder()
                .keys(doc! { field: 1, "ts": 1 })
                .build()
        };
        self.requests
            .create_indexes([ts, by("visitor_id"), by("user"), by("tutorial.foss")])
            .await?;
        self.dead
            .create_indexes([IndexModel::builder().keys(doc! { "at": -1 }).build()])
            .await?;
        // A refold streams one learner's events for one tutorial in `_id`
        // order: with `_id` in the index, MongoDB reads them in that order
        // instead of sorting a long history. nx-27017, the wire-protocol
        // server the tests may use, accepts such an index and then refuses
        // every insert; it names itself in `buildInfo`, and gets the index
        // without `_id` (it sorts the history itself).
        let mut history = doc! { "learner": 1, "foss": 1, "tutorial": 1, "language": 1 };
        let build = self.db.run_command(doc! { "buildInfo": 1 }).await?;
        if build.get_str("process") != Ok("nx_27017") {
            history.insert("_id", 1);
        }
        self.events
            .create_index(IndexModel::builder().keys(history).build())
            .await?;
        self.events
            .create_indexes([IndexModel::builder().keys(doc! { "ts": 1 }).build()])
            .await?;
        self.progress
            .create_indexes([IndexModel::builder()
                .keys(doc! { "learner": 1, "foss": 1 })
                .build()])
            .await?;
        self.db
            .collection::<Document>(VIDEO_POSITIONS)
            .create_indexes([IndexModel::builder().keys(doc! { "learner": 1 }).build()])
            .await?;
        Ok(())
    }

    /// Stores a prepared batch; returns what it did and the stored events,
    /// for [`Sink::derive`]. `Err` only for trouble worth retrying the whole
    /// batch (network, server down, write concern): per-document refusals
    /// become dead letters, and duplicates are counted, not errors.
    pub async fn store(
        &self,
        prepared: Prepared,
        consumer: &str,
        queue: &str,
        dead_letter_max_bytes: usize,
    ) -> Result<(Stored, Vec<FoldEvent>)> {
        let mut stored = Stored {
            newest: prepared
                .requests
                .iter()
                .map(|(d, _)| d)
                .chain(prepared.events.iter().map(|e| &e.doc))
                .filter_map(|d| d.get_datetime("ts").ok())
                .max()
                .map(|t| t.to_chrono()),
            ..Stored::default()
        };
        let mut dead = prepared.dead;
        let (docs, raws): (Vec<Document>, Vec<Option<Vec<u8>>>) = prepared
            .requests
            .into_iter()
            .map(|(doc, raw)| (doc, Some(raw)))
            .unzip();
        insert_all(&self.requests, docs, &raws, &mut stored, &mut dead).await?;
        let mut folds = Vec::with_capacity(prepared.events.len());
        let mut docs = Vec::with_capacity(prepared.events.len());
        let mut raws = Vec::with_capacity(prepared.events.len());
        for event in prepared.events {
            docs.push(event.doc);
            raws.push(event.raw);
            folds.push(event.fold);
        }
        let refused = insert_all(&self.events, docs, &raws, &mut stored, &mut dead).await?;
        // Only stored events take part: a refold reads them back from `events`.
        let folds: Vec<FoldEvent> = folds
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
        Ok((stored, folds))
    }

    /// Updates `video_positions` and `tutorial_progress` from stored events;
    /// returns how many documents it wrote, and the progress documents that
    /// need their whole history folded again (late events, replays,
    /// unreadable documents), for [`Sink::refold`].
    ///
    /// Two consumers may derive for the same learner at once, so every write
    /// is conditional, and a lost race is a duplicate-key error (11000) of an
    /// upsert whose filter no longer matches, never a lost update:
    /// - a resume position is replaced only by a newer event
    ///   (`last_event < _id`; UUID v7 ids order events by server time);
    /// - a progress document is replaced only if it is still the one the
    ///   new state was folded from (`through` and `folded` unchanged), or
    ///   created only if there was none. The loser reads again and refolds.
    ///
    /// This part is quick whatever the learners' histories: it reads one
    /// document per learner and tutorial, never their events.
    pub async fn derive(&self, events: &[FoldEvent], rules: &Rules) -> Result<(u64, Refolds)> {
        if events.is_empty() {
            return Ok((0, Refolds::default()));
        }
        let mut written = self.derive_positions(events).await?;
        let mut groups: BTreeMap<String, Vec<FoldEvent>> = BTreeMap::new();
        for e in events {
            groups.entry(e.progress_id()).or_default().push(e.clone());
        }
        for batch in groups.values_mut() {
            batch.sort_by_key(|e| e.id);
            batch.dedup_by_key(|e| e.id);
        }
        let mut refolds = Refolds::default();
        let mut pending: Vec<String> = groups.keys().cloned().collect();
        let mut pauses = contention_backoff();
        for attempt in 0..DERIVE_ATTEMPTS {
            let (existing, olds) = self.read_progress(&pending).await?;
            let mut statements = Vec::new();
            let mut keys = Vec::new();
            for key in &pending {
                let batch = &groups[key];
                let old = olds.get(key);
                // Late events, replays, and documents that cannot be read:
                // the whole stored history is folded again, later.
                if needs_refold(old, batch) || (existing.contains_key(key) && old.is_none()) {
                    refolds.add(batch);
                    continue;
                }
                let new = Progress::fold(old.cloned(), batch, rules);
                if let Some(statement) = self.progress_statement(key, new, old, None) {
                    statements.push(statement);
                    keys.push(key.clone());
                }
            }
            let outcome = self.update_all(TUTORIAL_PROGRESS, statements).await?;
            written += outcome.written;
            if outcome.conflicts.is_empty() {
                return Ok((written, refolds));
            }
            pending = outcome.conflicts.iter().map(|&i| keys[i].clone()).collect();
            contention_pause(&mut pauses, attempt, pending.len()).await;
        }
        Err(Error::Contention(pending.len()))
    }

    /// Folds the whole stored history of each of `refolds` again and writes
    /// the results; returns how many documents it wrote.
    ///
    /// Histories are streamed from MongoDB in `_id` order and folded event
    /// by event, so memory stays bounded whatever their length. The worker
    /// orders derivations per progress document, not across all of them, so
    /// a long history holds up only later batches of the same learner and
    /// tutorial. Exactly-once holds whatever the order, because a progress
    /// document is written only if it is still
    /// the one read before the history was: the history read afterwards
    /// holds every event that document was folded from (events are stored
    /// before they are derived), so nothing folded by another batch (of this
    /// process or another) is lost. If that batch wrote in between, the
    /// write here misses (11000) and the history is read and folded again;
    /// if it writes afterwards, its events are either newer than `through`
    /// (folded on top) or not (it refolds too).
    pub async fn refold(&self, refolds: &Refolds, rules: &Rules) -> Result<u64> {
        let mut written = 0;
        let mut pending: Vec<&FoldEvent> = refolds.0.iter().collect();
        let mut pauses = contention_backoff();
        for attempt in 0..DERIVE_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let keys: Vec<String> = pending.iter().map(|e| e.progress_id()).collect();
            // The documents first, then the histories: see above.
            let (existing, olds) = self.read_progress(&keys).await?;
            let mut folded = self.fold_histories(&pending, rules).await?;
            let mut statements = Vec::new();
            let mut written_keys = Vec::new();
            for (key, representative) in keys.iter().zip(&pending) {
                let new = folded.remove(key);
                let old = olds.get(key);
                let unreadable = existing.get(key).filter(|_| old.is_none());
                if let Some(statement) = self.progress_statement(key, new, old, unreadable) {
                    statements.push(statement);
                    written_keys.push(*representative);
                }
            }
            let outcome = self.update_all(TUTORIAL_PROGRESS, statements).await?;
            written += outcome.written;
            pending = outcome.conflicts.iter().map(|&i| written_keys[i]).collect();
            if !pending.is_empty() {
                contention_pause(&mut pauses, attempt, pending.len()).await;
            }
        }
        if pending.is_empty() {
            Ok(written)
        } else {
            Err(Error::Contention(pending.len()))
        }
    }

    /// The `tutorial_progress` documents with these ids, as stored and as
    /// read (unreadable ones are logged and left out of the second map).
    async fn read_progress(
        &self,
        keys: &[String],
    ) -> Result<(HashMap<String, Document>, HashMap<String, Progress>)> {
        let existing: HashMap<String, Document> = self
            .progress
            .find(doc! { "_id": { "$in": keys } })
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), d)))
            .collect();
        let olds = existing
            .iter()
            .filter_map(|(key, d)| match Progress::from_document(d) {
                Ok(p) => Some((key.clone(), p)),
                Err(e) => {
                    tracing::warn!(progress = %key, error = %e, "unreadable progress document; folding its history again");
                    None
                }
            })
            .collect();
        Ok((existing, olds))
    }

    /// The conditional upsert that replaces `old` (or the `unreadable`
    /// document, or nothing) by `new`; `None` when there is nothing to write.
    fn progress_statement(
        &self,
        key: &str,
        new: Option<Progress>,
        old: Option<&Progress>,
        unreadable: Option<&Document>,
    ) -> Option<Document> {
        let new = new?;
        if Some(&new) == old {
            return None; // A replay: nothing new.
        }
        let doc = new.to_document();
        if !valid(&self.validators.progress, &doc, key) {
            return None;
        }
        let filter = match (old, unreadable) {
            (Some(o), _) => {
                doc! { "_id": key, "through": o.through.to_string(), "folded": i64::try_from(o.folded).unwrap_or(i64::MAX) }
            }
            // An unreadable document: replace only what we read.
            (None, Some(unreadable)) => unreadable.clone(),
            // No document yet: create one only if there still is none.
            (None, None) => doc! { "_id": key, "folded": { "$lt": 0 } },
        };
        Some(doc! { "q": filter, "u": doc, "upsert": true })
    }

    /// Resume positions: the newest video event per learner and video.
    async fn derive_positions(&self, events: &[FoldEvent]) -> Result<u64> {
        let mut latest: BTreeMap<String, (uuid::Uuid, Document)> = BTreeMap::new();
        for e in events {
            let Some(doc) = video_position(e) else {
                continue;
            };
            let id = doc.get_str("_id").unwrap_or_default().to_owned();
            if latest.get(&id).is_none_or(|(seen, _)| *seen < e.id) {
                latest.insert(id, (e.id, doc));
            }
        }
        let mut statements = Vec::with_capacity(latest.len());
        for (id, (event, doc)) in latest {
            if !valid(&self.validators.positions, &doc, &id) {
                continue;
            }
            // Upsert unless a newer event is already there.
            statements.push(position_statement(&id, event, doc, true));
        }
        self.write_positions(statements).await
    }

    /// Writes resume positions; returns how many documents it wrote.
    ///
    /// An upsert whose filter (`last_event < event`) misses inserts, and the
    /// insert collides on `_id` (11000) when a document exists: either a
    /// newer event is already there (it stays), or another consumer created
    /// the document between our filter's miss and our insert, possibly with
    /// an older event. Ignoring the collision would keep that older event;
    /// the colliding statements are run again instead (see
    /// [`Sink::write_positions_again`]).
    pub async fn write_positions(&self, statements: Vec<Document>) -> Result<u64> {
        let outcome = self.update_all(VIDEO_POSITIONS, statements.clone()).await?;
        if outcome.conflicts.is_empty() {
            return Ok(outcome.written);
        }
        let again: Vec<Document> = outcome
            .conflicts
            .iter()
            .filter_map(|&i| statements.get(i).cloned())
            .collect();
        Ok(outcome.written + self.write_positions_again(again).await?)
    }

    /// Runs resume-position statements that collided on `_id` again,
    /// without the upsert: the document exists now, so the same condition
    /// (`last_event < event`) decides, and the newest event wins whichever
    /// consumer created the document. Returns how many it replaced.
    pub async fn write_positions_again(&self, statements: Vec<Document>) -> Result<u64> {
        if statements.is_empty() {
            return Ok(0);
        }
        tracing::debug!(
            positions = statements.len(),
            "resume positions already there; comparing again"
        );
        let again: Vec<Document> = statements
            .into_iter()
            .map(|mut statement| {
                statement.insert("upsert", false);
                statement
            })
            .collect();
        let reply = self
            .db
            .run_command(doc! { "update": VIDEO_POSITIONS, "updates": again, "ordered": false })
            .await?;
        report_write_errors(VIDEO_POSITIONS, &reply)?;
        Ok(number_of(reply.get("nModified")))
    }

    /// Streams the stored events of each `keys` event's learner and tutorial
    /// through the fold, oldest first; returns the folded state by progress
    /// id. One query per hundred keys, sorted so that each history comes
    /// whole and in `_id` order; read in small batches, so memory holds one
    /// batch and one state per key, whatever the histories' lengths.
    async fn fold_histories(
        &self,
        keys: &[&FoldEvent],
        rules: &Rules,
    ) -> Result<HashMap<String, Progress>> {
        let mut out: HashMap<String, Progress> = HashMap::new();
        for chunk in keys.chunks(100) {
            let any: Vec<Document> = chunk
                .iter()
                .map(|e| doc! { "learner": &e.learner, "foss": &e.foss, "tutorial": &e.tutorial, "language": &e.language })
                .collect();
            let mut cursor = self
                .events
                .find(doc! { "$or": any })
                .sort(doc! { "learner": 1, "foss": 1, "tutorial": 1, "language": 1, "_id": 1 })
                .batch_size(HISTORY_BATCH)
                .await?;
            // The history being folded: its id and state.
            let mut current: Option<(String, Progress)> = None;
            while let Some(d) = cursor.try_next().await? {
                let e = match FoldEvent::from_document(&d) {
                    Ok(e) => e,
                    Err(error) => {
                        tracing::warn!(%error, "unreadable stored event skipped");
                        continue;
                    }
                };
                let key = e.progress_id();
                let state = match current.take() {
                    Some((k, p)) if k == key => {
                        if e.id <= p.through {
                            return Err(Error::History(format!("{key} not in `_id` order")));
                        }
                        Some(p)
                    }
                    Some((k, p)) => {
                        out.insert(k, p);
                        None
                    }
                    None => None,
                };
                if state.is_none() && out.contains_key(&key) {
                    return Err(Error::History(format!("{key} not read in one piece")));
                }
                current = Some((key, Progress::fold_one(state, &e, rules)));
            }
            if let Some((k, p)) = current {
                out.insert(k, p);
            }
        }
        Ok(out)
    }

    /// One `update` command with many statements, unordered; which lost a
    /// race (11000) is reported by index, any other refusal is logged.
    async fn update_all(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<UpdateOutcome> {
        let mut outcome = UpdateOutcome::default();
        if statements.is_empty() {
            return Ok(outcome);
        }
        let total = statements.len() as u64;
        let reply = self
            .db
            .run_command(doc! { "update": collection, "updates": statements, "ordered": false })
            .await?;
        let conflicts = report_write_errors(collection, &reply)?;
        outcome.written = total - conflicts.refused;
        outcome.conflicts = conflicts.duplicates;
        Ok(outcome)
    }

    /// Writes one dead letter. A replace keyed by the payload hash: a replay
    /// rewrites the same document, and a requeued record that fails again
    /// renews it.
    async fn put_dead_letter(&self, doc: Document) -> mongodb::error::Result<()> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
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
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<Document>> {
        Ok(self
            .dead
            .find(doc! {})
            .sort(doc! { "at": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Dead letters matching `filter`.
    pub async fn find_dead_letters(&self, filter: Document) -> Result<Vec<Document>> {
        Ok(self
            .dead
            .find(filter)
            .sort(doc! { "at": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Deletes one dead letter if it is unchanged since it was read.
    pub async fn remove_dead_letter(&self, id: &Bson, at: &Bson) -> Result<bool> {
        let result = self
            .dead
            .delete_one(doc! { "_id": id.clone(), "at": at.clone() })
            .await?;
        Ok(result.deleted_count == 1)
    }

    /// Deletes dead letters matching `filter`; returns how many.
    pub async fn purge_dead_letters(&self, filter: Document) -> Result<u64> {
        Ok(self.dead.delete_many(filter).await?.deleted_count)
    }

    /// The events collection.
    pub fn events(&self) -> &Collection<Document> {
        &self.events
    }

    /// The tutorial-progress collection.
    pub fn tutorial_progress(&self) -> &Collection<Document> {
        &self.progress
    }

    /// The request-logs collection, for tests and the benchmark.
    pub fn request_logs(&self) -> &Collection<Document> {
        &self.requests
    }
}

/// Progress documents whose whole history must be folded again: one event
/// of each (its learner and tutorial name the history).
#[derive(Debug, Default, Clone)]
pub struct Refolds(Vec<FoldEvent>);

impl Refolds {
    /// Adds the history of `batch` (events of one progress document).
    fn add(&mut self, batch: &[FoldEvent]) {
        if let Some(first) = batch.first() {
            self.0.push(first.clone());
        }
    }

    /// No history to fold again.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many histories.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The pauses before folding again after another consumer won the race
/// for the same documents: short (tens of milliseconds, doubling), since
/// the rival's write is already done; at most [`DERIVE_ATTEMPTS`] of them.
fn contention_backoff() -> Backoff {
    Backoff::starting_at(Duration::from_millis(25), Duration::from_millis(500))
}

/// Waits a little, more with each attempt, before folding again.
async fn contention_pause(pauses: &mut Backoff, attempt: usize, conflicts: usize) {
    tracing::debug!(
        attempt,
        conflicts,
        "another consumer updated the same progress; folding again"
    );
    tokio::time::sleep(pauses.pause()).await;
}

/// The conditional upsert of one resume position (see [`Sink::write_positions`]).
pub fn position_statement(id: &str, event: uuid::Uuid, doc: Document, upsert: bool) -> Document {
    doc! {
        "q": { "_id": id, "last_event": { "$lt": event.to_string() } },
        "u": doc,
        "upsert": upsert,
    }
}

/// Write errors of an `update` reply: duplicate keys (lost races) by
/// statement index, and how many statements were refused in all. Other
/// refusals are logged; a write concern error is an error.
fn report_write_errors(collection: &str, reply: &Document) -> Result<WriteErrors> {
    let mut out = WriteErrors::default();
    let errors = reply
        .get_array("writeErrors")
        .map(Vec::as_slice)
        .unwrap_or_default();
    for error in errors.iter().filter_map(Bson::as_document) {
        let code = error.get_i32("code").unwrap_or_default();
        let index = error
            .get_i32("index")
            .ok()
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or_default();
        if code == DUPLICATE_KEY {
            out.duplicates.push(index);
        } else {
            tracing::error!(collection, code, error = %error.get_str("errmsg").unwrap_or_default(), "derived document refused by MongoDB");
        }
    }
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(Error::WriteConcern {
            collection: collection.to_owned(),
            detail: concern.to_string(),
        });
    }
    out.refused = errors.len() as u64;
    Ok(out)
}

#[derive(Debug, Default)]
struct WriteErrors {
    duplicates: Vec<usize>,
    refused: u64,
}

/// A count in a server reply (int32 or int64).
fn number_of(b: Option<&Bson>) -> u64 {
    match b {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

#[derive(Debug, Default)]
struct UpdateOutcome {
    written: u64,
    /// Indexes of statements that lost a race.
    conflicts: Vec<usize>,
}

/// Inserts unordered; counts new and duplicate records (documents without a
/// payload of their own, the derived page views, are not records), turns
/// other refusals into dead letters (or a log line, for derived documents)
/// and returns the indexes of refused documents.
async fn insert_all(
    collection: &Collection<Document>,
    docs: Vec<Document>,
    raws: &[Option<Vec<u8>>],
    stored: &mut Stored,
    dead: &mut Vec<DeadLetter>,
) -> Result<Vec<usize>> {
    let mut refused = Vec::new();
    if docs.is_empty() {
        return Ok(refused);
    }
    let records = raws.iter().filter(|r| r.is_some()).count() as u64;
    let errors = match collection.insert_many(docs).ordered(false).await {
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
    Ok(refused)
}

/// Checks a derived document client-side (a guard against our own bugs: it
/// was built by code); logs and refuses one that fails.
fn valid(validator: &RecordValidator, doc: &Document, id: &str) -> bool {
    match validator.validate(&json_for_validation(doc)) {
        Ok(()) => true,
        Err(f) => {
            tracing::error!(collection = validator.collection().name(), %id, field = %f.path, error = %f.message, "derived document fails its validator; not written");
            false
        }
    }
}

/// A document as JSON for the client-side validator: dates become RFC 3339
/// strings, as they travel in records.
pub fn json_for_validation(doc: &Document) -> Value {
    fn convert(b: &Bson) -> Value {
        match b {
            Bson::DateTime(t) => Value::from(
                t.to_chrono()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            Bson::Document(d) => json_for_validation(d),
            Bson::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Bson::Double(v) => Value::from(*v),
            Bson::Int32(v) => Value::from(*v),
            Bson::Int64(v) => Value::from(*v),
            Bson::String(s) => Value::from(s.as_str()),
            Bson::Boolean(v) => Value::from(*v),
            Bson::Null => Value::Null,
            other => Value::from(other.to_string()),
        }
    }
    Value::Object(doc.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
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

/// The server's error code of a failed command, if it is one.
pub fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}
