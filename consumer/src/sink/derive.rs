//! Documents derived from stored events: resume positions
//! (`video_positions`) and learning progress (`tutorial_progress`), written
//! with conditional upserts so that consumers racing for the same learner
//! never lose an update, and histories folded again when events arrive late
//! or a learner link adds a browser's events to a user's history.
//! Over 400 lines because the race handling (conditions, retries after a
//! lost race, refolds) only reads right in one place.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bson::{Document, RawDocumentBuf, doc, rawdoc};
use futures_util::TryStreamExt;

use super::history::Target;
use super::write_command::{self, Verb};
use super::{CatalogMain, Sink, TUTORIAL_PROGRESS, ToDerive, TutorialKey, VIDEO_POSITIONS, valid};
use crate::error::{Error, Result};
use crate::retry::Backoff;
use visitlog_progress::{Progress, Rules, VideoPosition, needs_refold};
use visitlog_schema::EventRecord;

/// Attempts at writing derived documents when other consumers keep winning
/// the race for the same learner; then the whole batch is retried.
const DERIVE_ATTEMPTS: usize = 10;

impl Sink {
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
    /// document per learner and tutorial, never their events (but for a
    /// link the batch wrote: which tutorials its visitor has events in).
    ///
    /// A user's document also folds the events their browser made before
    /// they logged in on it (see `links`): a batch's events of a linked
    /// visitor, and the links it wrote, make the user's documents they
    /// touch fold again.
    ///
    /// Progress is folded on the catalog's main video of its tutorial and
    /// language when the catalog names one (its duration wins over the
    /// reported ones); the tutorials whose main video the batch's
    /// publications changed are folded again for every learner.
    pub async fn derive(&self, batch: &ToDerive, rules: &Rules) -> Result<(u64, Refolds)> {
        let events = &batch.events;
        let mut refolds = Refolds::default();
        for target in self.link_targets(events, &batch.links).await? {
            refolds.add_target(target);
        }
        for target in self.tutorial_targets(&batch.catalog_tutorials).await? {
            refolds.add_target(target);
        }
        if events.is_empty() {
            return Ok((0, refolds));
        }
        let mut written = self.derive_positions(events).await?;
        let mut groups: BTreeMap<String, Vec<EventRecord>> = BTreeMap::new();
        for e in events.iter().filter(|e| !e.event_type.is_page_activity()) {
            groups.entry(e.progress_id()).or_default().push(e.clone());
        }
        for batch in groups.values_mut() {
            batch.sort_by_key(|e| e.id);
            batch.dedup_by_key(|e| e.id);
        }
        let keys: HashSet<TutorialKey> = groups
            .values()
            .filter_map(|b| b.first())
            .map(|e| (e.foss.clone(), e.tutorial.clone(), e.language.clone()))
            .collect();
        let mains = self.catalog_mains(&keys).await?;
        let main_of =
            |e: &EventRecord| mains.get(&(e.foss.clone(), e.tutorial.clone(), e.language.clone()));
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
                let main = batch.first().and_then(main_of);
                // Also a document folded on another main video than the
                // catalog's now (a publication raced this batch's read).
                if needs_refold(old, batch)
                    || (existing.contains_key(key) && old.is_none())
                    || old.is_some_and(|p| !folded_on(p, main))
                {
                    refolds.add(batch);
                    continue;
                }
                let main = main.map(CatalogMain::as_main);
                let new = Progress::fold_with(old.cloned(), batch, rules, main);
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
    ///
    /// Also returns the analytics keys the new documents touch: a history
    /// folded again may move a completion to another day, or add seconds
    /// watched to videos no event of the batch named (a login's link).
    pub async fn refold(
        &self,
        refolds: &Refolds,
        rules: &Rules,
    ) -> Result<(u64, Vec<crate::analytics::Mark>)> {
        let mut marks = Vec::new();
        let mut written = 0;
        let mut pending: Vec<&Target> = refolds.0.values().collect();
        let mut pauses = contention_backoff();
        for attempt in 0..DERIVE_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let keys: Vec<String> = pending.iter().map(|t| t.id()).collect();
            // The documents first, then the histories: see above.
            let (existing, olds) = self.read_progress(&keys).await?;
            let (mut folded, stale) = self.fold_histories(&pending, rules).await?;
            let mut statements = Vec::new();
            let mut written_keys = Vec::new();
            let mut again: Vec<&Target> = Vec::new();
            for (key, target) in keys.iter().zip(&pending) {
                if stale.contains(key) {
                    again.push(target);
                    continue;
                }
                let new = folded.remove(key);
                let old = olds.get(key);
                marks.extend(
                    old.into_iter()
                        .chain(new.as_ref())
                        .flat_map(crate::analytics::batch::progress_marks),
                );
                let unreadable = existing.get(key).filter(|_| old.is_none());
                if let Some(statement) = self.progress_statement(key, new, old, unreadable) {
                    statements.push(statement);
                    written_keys.push(*target);
                }
            }
            let outcome = self.update_all(TUTORIAL_PROGRESS, statements).await?;
            written += outcome.written;
            again.extend(outcome.conflicts.iter().map(|&i| written_keys[i]));
            pending = again;
            if !pending.is_empty() {
                contention_pause(&mut pauses, attempt, pending.len()).await;
            }
        }
        if pending.is_empty() {
            Ok((written, marks))
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
    /// Written as raw BSON in one pass; checked first on the typed document
    /// ([`Progress::check`], the validator's rules: a guard against our own
    /// bugs).
    fn progress_statement(
        &self,
        key: &str,
        new: Option<Progress>,
        old: Option<&Progress>,
        unreadable: Option<&Document>,
    ) -> Option<RawDocumentBuf> {
        let new = new?;
        if Some(&new) == old {
            return None; // A replay: nothing new.
        }
        if let Err(f) = new.check() {
            tracing::error!(collection = TUTORIAL_PROGRESS, id = %key, field = %f.path, error = %f.message, "derived document fails its validator; not written");
            return None;
        }
        let written = new.to_raw_document().map_err(|e| e.to_string());
        let filter = match (old, unreadable) {
            (Some(o), _) => Ok(rawdoc! {
                "_id": key,
                "through": o.through.to_string(),
                "folded": i64::try_from(o.folded).unwrap_or(i64::MAX),
            }),
            // An unreadable document: replace only what we read.
            (None, Some(unreadable)) => {
                RawDocumentBuf::from_document(unreadable).map_err(|e| e.to_string())
            }
            // No document yet: create one only if there still is none.
            (None, None) => Ok(rawdoc! { "_id": key, "folded": { "$lt": 0 } }),
        };
        match (filter, written) {
            (Ok(filter), Ok(doc)) => Some(rawdoc! { "q": filter, "u": doc, "upsert": true }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(progress = %key, error = %e, "progress document not written");
                None
            }
        }
    }

    /// Resume positions: the newest video event per learner and video.
    async fn derive_positions(&self, events: &[EventRecord]) -> Result<u64> {
        let mut latest: BTreeMap<String, (uuid::Uuid, Document)> = BTreeMap::new();
        for e in events {
            let Some(doc) = VideoPosition::of(e).and_then(|p| p.to_document().ok()) else {
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
        let outcome = self
            .update_documents(VIDEO_POSITIONS, statements.clone())
            .await?;
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
        let outcome =
            write_command::send_documents(&self.db, Verb::Update, VIDEO_POSITIONS, &again).await?;
        Ok(outcome.modified)
    }

    /// [`Sink::update_all`] of statements made as `Document`s.
    pub(super) async fn update_documents(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<UpdateOutcome> {
        self.update_all(collection, write_command::raw(&statements)?)
            .await
    }

    /// Unordered `update` commands of these statements, with the write
    /// concern ([`write_command::send`]); which lost a race (11000) is
    /// reported by index, any other refusal is logged.
    pub(super) async fn update_all(
        &self,
        collection: &str,
        statements: Vec<RawDocumentBuf>,
    ) -> Result<UpdateOutcome> {
        let total = statements.len() as u64;
        let errors = write_command::send(&self.db, Verb::Update, collection, statements).await?;
        Ok(UpdateOutcome {
            written: total - errors.refused,
            conflicts: errors.duplicates,
        })
    }
}

/// Progress documents whose whole history must be folded again, by id.
#[derive(Debug, Default, Clone)]
pub struct Refolds(BTreeMap<String, Target>);

impl Refolds {
    /// Adds the history of `batch` (events of one progress document).
    fn add(&mut self, batch: &[EventRecord]) {
        if let Some(e) = batch.first() {
            self.add_target(Target::new(&e.learner, &e.foss, &e.tutorial, &e.language));
        }
    }

    /// Adds one progress document's history.
    pub(super) fn add_target(&mut self, target: Target) {
        self.0.insert(target.id(), target);
    }

    /// Adds `other`'s histories.
    pub fn merge(&mut self, other: Refolds) {
        self.0.extend(other.0);
    }

    /// The histories.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &Target> {
        self.0.values()
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

/// Whether `p` can have been folded on the catalog's `main` video: it shows
/// no other main video, nor another duration of it. (A document folded
/// without the catalog shows the longest video; one folded on the catalog
/// shows its main video, or none while that is unwatched.)
fn folded_on(p: &Progress, main: Option<&CatalogMain>) -> bool {
    let Some(main) = main else {
        return true; // Nothing to compare with.
    };
    match p.video_id.as_deref() {
        None => true,
        Some(v) if v != main.video_id => false,
        Some(_) => main.duration.is_none_or(|d| p.duration == Some(d)),
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

/// What an `update` command did.
#[derive(Debug, Default)]
pub(super) struct UpdateOutcome {
    /// Statements that wrote.
    pub(super) written: u64,
    /// Indexes of statements that lost a race.
    pub(super) conflicts: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_folded_on_another_main_video_is_folded_again() {
        let main = CatalogMain {
            video_id: "main".into(),
            duration: Some(200.0),
        };
        let mut p = Progress::new("user:a", "F", "T", "L", chrono::Utc::now());
        assert!(folded_on(&p, Some(&main)), "nothing watched yet");
        assert!(folded_on(&p, None));
        p.video_id = Some("long".into());
        assert!(
            !folded_on(&p, Some(&main)),
            "the longest, not the catalog's"
        );
        assert!(folded_on(&p, None));
        p.video_id = Some("main".into());
        p.duration = Some(300.0);
        assert!(!folded_on(&p, Some(&main)), "the reported duration");
        p.duration = Some(200.0);
        assert!(folded_on(&p, Some(&main)));
    }
}
