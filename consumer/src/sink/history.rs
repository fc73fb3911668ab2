//! A progress document's history read back from `events` and folded, for
//! a refold: streamed in `_id` order in bounded memory. A user's history is
//! their own events plus each linked visitor's from before the link (see
//! `links`); everyone else's is their own events.

use std::collections::{BTreeMap, HashMap, HashSet};

use bson::{Document, doc};
use futures_util::TryStreamExt;
use visitlog_progress::{MainVideo, Progress, Rules, event_from_document};
use visitlog_schema::EventRecord;

use super::{CatalogMain, LearnerLink, Sink, TutorialKey};
use crate::error::{Error, Result};

/// Events per reply when a history is read back for a refold: what memory
/// holds of it at a time.
const HISTORY_BATCH: u32 = 1000;

impl Sink {
    /// Folds the history of each target, oldest first; returns the folded
    /// state by progress id, and the ids whose user's links changed while
    /// their history was read (folded again by the caller: a link's
    /// consumer may have looked for the visitor's events before they were
    /// stored, and only this check then catches a history read with the
    /// old link).
    ///
    /// A user's history is their events plus those of each linked visitor
    /// from before the link; a user with links is read on its own, merged
    /// by `_id` ([`Sink::fold_linked`]), every other history in chunks.
    pub(super) async fn fold_histories(
        &self,
        targets: &[&Target],
        rules: &Rules,
    ) -> Result<(HashMap<String, Progress>, HashSet<String>)> {
        let users: Vec<String> = targets
            .iter()
            .filter(|t| t.learner.starts_with("user:"))
            .map(|t| t.learner.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let links = self.links_by("user", &users).await?;
        // The catalog's main videos, read once for all the histories.
        let keys: HashSet<TutorialKey> = targets.iter().map(|t| t.key()).collect();
        let mains = self.catalog_mains(&keys).await?;
        let (linked, plain): (Vec<&Target>, Vec<&Target>) =
            targets.iter().partition(|t| links.contains_key(&t.learner));
        let mut out = self.fold_plain(&plain, rules, &mains).await?;
        for target in linked {
            let main = mains.get(&target.key()).map(CatalogMain::as_main);
            if let Some(p) = self
                .fold_linked(target, &links[&target.learner], rules, main)
                .await?
            {
                out.insert(target.id(), p);
            }
        }
        let now = self.links_by("user", &users).await?;
        let stale = targets
            .iter()
            .filter(|t| links.get(&t.learner) != now.get(&t.learner))
            .map(|t| t.id())
            .collect();
        Ok((out, stale))
    }

    /// Folds the history of a user with `links`: their events and each
    /// linked visitor's from before its link, in `_id` order, on the user's
    /// empty progress. The visitors' later events are read and skipped
    /// here: nx-27017 compares dates only to the second.
    async fn fold_linked(
        &self,
        target: &Target,
        links: &[LearnerLink],
        rules: &Rules,
        main: Option<MainVideo<'_>>,
    ) -> Result<Option<Progress>> {
        let clause = |learner: &str| doc! { "learner": learner, "foss": &target.foss, "tutorial": &target.tutorial, "language": &target.language };
        let mut any = vec![clause(&target.learner)];
        any.extend(links.iter().map(|l| clause(&l.visitor_key())));
        let mut cursor = self
            .events
            .find(doc! { "$or": any })
            .sort(doc! { "_id": 1 })
            .batch_size(HISTORY_BATCH)
            .await?;
        let mut state: Option<Progress> = None;
        while let Some(d) = cursor.try_next().await? {
            let Some(e) = readable(d) else {
                continue;
            };
            if e.learner != target.learner && !links.iter().any(|l| l.counts(&e)) {
                continue;
            }
            let p = match state.take() {
                Some(p) if e.id <= p.through => {
                    return Err(Error::History(format!(
                        "{} not in `_id` order",
                        target.id()
                    )));
                }
                Some(p) => p,
                None => Progress::new(
                    &target.learner,
                    &target.foss,
                    &target.tutorial,
                    &target.language,
                    e.ts,
                ),
            };
            state = Some(Progress::fold_one_with(Some(p), &e, rules, main));
        }
        Ok(state)
    }

    /// Streams the stored events of each target's learner and tutorial
    /// through the fold, oldest first; returns the folded state by progress
    /// id. One query per tutorial and hundred learners, sorted so that each history comes
    /// whole and in `_id` order; read in small batches, so memory holds one
    /// batch and one state per target, whatever the histories' lengths.
    async fn fold_plain(
        &self,
        targets: &[&Target],
        rules: &Rules,
        mains: &HashMap<TutorialKey, CatalogMain>,
    ) -> Result<HashMap<String, Progress>> {
        let mut out: HashMap<String, Progress> = HashMap::new();
        // Per tutorial, its learners: exact `$in` queries, which every
        // server answers from the index (an `$or` of one clause per target
        // made nx-27017 test every event against every clause).
        let mut by_tutorial: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
        for t in targets {
            by_tutorial
                .entry((t.foss.as_str(), t.tutorial.as_str(), t.language.as_str()))
                .or_default()
                .push(t.learner.as_str());
        }
        let mut queries: Vec<Document> = Vec::new();
        for ((foss, tutorial, language), learners) in &by_tutorial {
            for chunk in learners.chunks(100) {
                queries.push(doc! { "learner": { "$in": chunk }, "foss": *foss, "tutorial": *tutorial, "language": *language });
            }
        }
        drop(by_tutorial);
        for filter in queries {
            let mut cursor = self
                .events
                .find(filter)
                .sort(doc! { "learner": 1, "foss": 1, "tutorial": 1, "language": 1, "_id": 1 })
                .batch_size(HISTORY_BATCH)
                .await?;
            // The history being folded: its id and state.
            let mut current: Option<(String, Progress)> = None;
            while let Some(d) = cursor.try_next().await? {
                let Some(e) = readable(d) else {
                    continue;
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
                let main = mains
                    .get(&(e.foss.clone(), e.tutorial.clone(), e.language.clone()))
                    .map(CatalogMain::as_main);
                current = Some((key, Progress::fold_one_with(state, &e, rules, main)));
            }
            if let Some((k, p)) = current {
                out.insert(k, p);
            }
        }
        Ok(out)
    }
}

/// A stored event as read back; an unreadable one is logged and skipped
/// (the fold goes on without it rather than stop every later batch).
/// Page activity (`page.ping`, `page.hide`) is time on page, not
/// learning: skipped too.
fn readable(d: Document) -> Option<EventRecord> {
    event_from_document(d)
        .inspect_err(|error| tracing::warn!(%error, "unreadable stored event skipped"))
        .ok()
        .filter(|e| !e.event_type.is_page_activity())
}

/// One progress document: a learner in one tutorial and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) learner: String,
    pub(crate) foss: String,
    pub(crate) tutorial: String,
    pub(crate) language: String,
}

impl Target {
    pub(crate) fn new(learner: &str, foss: &str, tutorial: &str, language: &str) -> Self {
        Self {
            learner: learner.to_owned(),
            foss: foss.to_owned(),
            tutorial: tutorial.to_owned(),
            language: language.to_owned(),
        }
    }

    /// Its tutorial and language.
    pub(crate) fn key(&self) -> TutorialKey {
        (
            self.foss.clone(),
            self.tutorial.clone(),
            self.language.clone(),
        )
    }

    /// The progress document's `_id`.
    pub(crate) fn id(&self) -> String {
        visitlog_schema::progress_id(&self.learner, &self.foss, &self.tutorial, &self.language)
    }
}
