//! The `catalog` collection: applying one FOSS's publication (from the
//! queue or from `catalog import`, through this one code path) so that a
//! newer publication wins whatever the arrival order, and reading back the
//! main video of each tutorial and language for the progress fold.
//!
//! A publication P (FOSS F, version V, id I) replaces each of its videos'
//! documents only where the stored one is older, `(version_ms, publication)
//! < (V, I)`, and then marks every older document of F `active: false` with
//! P's version (kept, never deleted, so history stays readable and a late
//! replay of a publication in between cannot bring it back). A replay of an
//! older publication matches nothing and changes nothing.

use std::collections::{BTreeSet, HashMap};

use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use visitlog_schema::{CatalogItem, CatalogRecord};

use super::history::Target;
use super::{CATALOG, Refolds, Sink, valid};
use crate::error::Result;
use visitlog_progress::Rules;

/// A tutorial in one language, `(foss, tutorial, language)`: what a
/// catalog's main video belongs to and a progress document is of.
pub type TutorialKey = (String, String, String);

/// Keys per `$or` query when main videos are looked up.
const KEYS_PER_QUERY: usize = 100;

/// A stored `catalog` document, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The `video_id`.
    #[serde(rename = "_id")]
    pub video_id: String,
    /// Its FOSS.
    pub foss: String,
    /// Its tutorial.
    pub tutorial: String,
    /// Its language.
    pub language: String,
    /// Its title.
    pub title: String,
    /// Its duration in seconds, when known.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Its place in the series.
    #[serde(default)]
    pub order: i64,
    /// The tutorial's main video.
    #[serde(default)]
    pub main: bool,
    /// Its level.
    #[serde(default)]
    pub level: Option<String>,
    /// The publication that wrote it, in milliseconds.
    pub version_ms: i64,
    /// That publication's id.
    pub publication: String,
    /// Listed by its FOSS's newest publication.
    pub active: bool,
}

impl CatalogEntry {
    /// Whether this stored document is older than publication `record`.
    fn older_than(&self, record: &CatalogRecord) -> bool {
        (self.version_ms, self.publication.as_str())
            < (
                record.version.timestamp_millis(),
                record.id.to_string().as_str(),
            )
    }

    /// Whether it already says what `item` says, active.
    fn same_as(&self, item: &CatalogItem) -> bool {
        self.active
            && self.foss == item.foss
            && self.tutorial == item.tutorial
            && self.language == item.language
            && self.title == item.title
            && self.duration == item.duration
            && self.order == i64::from(item.order)
            && self.main == item.main
            && self.level == item.level
    }

    fn key(&self) -> TutorialKey {
        (
            self.foss.clone(),
            self.tutorial.clone(),
            self.language.clone(),
        )
    }
}

/// A tutorial's main video, as the catalog names it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogMain {
    /// Its `video_id`.
    pub video_id: String,
    /// Its duration, when the catalog knows it.
    pub duration: Option<f64>,
}

impl CatalogMain {
    /// What the progress fold takes.
    pub fn as_main(&self) -> visitlog_progress::MainVideo<'_> {
        visitlog_progress::MainVideo {
            video_id: &self.video_id,
            duration: self.duration,
        }
    }
}

/// What applying one publication did (or, for a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct CatalogSummary {
    /// The FOSS.
    pub foss: String,
    /// Items in the publication.
    pub items: u64,
    /// Videos the catalog did not have.
    pub new: u64,
    /// Videos whose document changes (another title, duration, order,
    /// main flag, level or tutorial, or inactive until now).
    pub updated: u64,
    /// Videos already as listed, or already written by a newer
    /// publication (which wins: nothing changes).
    pub unchanged: u64,
    /// Active videos of the FOSS the publication leaves out: now inactive.
    pub retired: u64,
    /// Tutorials whose main video or its duration changed: their progress
    /// is folded again.
    pub mains_changed: Vec<TutorialKey>,
}

impl std::fmt::Display for CatalogSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} items, {} new, {} updated, {} unchanged, {} retired",
            self.foss, self.items, self.new, self.updated, self.unchanged, self.retired
        )
    }
}

/// The stored document of `item` as publication `record` writes it.
pub fn catalog_document(record: &CatalogRecord, item: &CatalogItem) -> Document {
    doc! {
        "_id": &item.video_id,
        "foss": &item.foss,
        "tutorial": &item.tutorial,
        "language": &item.language,
        "title": &item.title,
        "duration": item.duration.map_or(Bson::Null, Bson::Double),
        "order": i64::from(item.order),
        "main": item.main,
        "level": item.level.as_ref().map_or(Bson::Null, |l| Bson::String(l.clone())),
        "version": bson::DateTime::from_chrono(record.version),
        "version_ms": record.version.timestamp_millis(),
        "active": true,
        "publication": record.id.to_string(),
    }
}

/// A stored document written again as it is (to retire it).
fn catalog_document_of(e: &CatalogEntry) -> Document {
    doc! {
        "_id": &e.video_id,
        "foss": &e.foss,
        "tutorial": &e.tutorial,
        "language": &e.language,
        "title": &e.title,
        "duration": e.duration.map_or(Bson::Null, Bson::Double),
        "order": e.order,
        "main": e.main,
        "level": e.level.as_ref().map_or(Bson::Null, |l| Bson::String(l.clone())),
        "active": e.active,
    }
}

/// The active main video per tutorial among `entries`; of two (a video
/// moved between FOSSes, a publication half applied), the newest, then the
/// smallest `video_id`, so every reader picks the same.
fn mains_of<'a>(
    entries: impl IntoIterator<Item = &'a CatalogEntry>,
) -> HashMap<TutorialKey, CatalogMain> {
    let mut best: HashMap<TutorialKey, &CatalogEntry> = HashMap::new();
    for e in entries.into_iter().filter(|e| e.main && e.active) {
        let better = best.get(&e.key()).is_none_or(|b| {
            (std::cmp::Reverse(e.version_ms), &e.video_id)
                < (std::cmp::Reverse(b.version_ms), &b.video_id)
        });
        if better {
            best.insert(e.key(), e);
        }
    }
    best.into_iter()
        .map(|(k, e)| {
            (
                k,
                CatalogMain {
                    video_id: e.video_id.clone(),
                    duration: e.duration,
                },
            )
        })
        .collect()
}

impl Sink {
    /// Applies one checked publication: see the module docs. With
    /// `dry_run`, reads only and says what it would change.
    ///
    /// Every document is checked against the `catalog` validator first;
    /// one that fails (a bug: the record was checked) stops the whole
    /// publication, since writing part of it would retire the rest.
    pub async fn apply_catalog(
        &self,
        record: &CatalogRecord,
        dry_run: bool,
    ) -> Result<CatalogSummary> {
        let mut summary = CatalogSummary {
            foss: record.foss.clone(),
            items: record.items.len() as u64,
            ..CatalogSummary::default()
        };
        let docs: Vec<Document> = record
            .items
            .iter()
            .map(|item| catalog_document(record, item))
            .collect();
        let ids: Vec<&str> = record.items.iter().map(|i| i.video_id.as_str()).collect();
        if !docs
            .iter()
            .zip(&ids)
            .all(|(d, id)| valid(&self.validators.catalog, d, id))
        {
            tracing::error!(foss = %record.foss, publication = %record.id, "catalog publication not applied");
            return Ok(summary);
        }
        let before = self
            .catalog_entries(
                doc! { "$or": [ { "foss": &record.foss }, { "_id": { "$in": &ids } } ] },
            )
            .await?;
        let by_id: HashMap<&str, &CatalogEntry> =
            before.iter().map(|e| (e.video_id.as_str(), e)).collect();
        for item in &record.items {
            match by_id.get(item.video_id.as_str()) {
                None => summary.new += 1,
                Some(e) if e.older_than(record) && !e.same_as(item) => summary.updated += 1,
                Some(_) => summary.unchanged += 1,
            }
        }
        let listed: BTreeSet<&str> = ids.iter().copied().collect();
        summary.retired = before
            .iter()
            .filter(|e| {
                e.foss == record.foss
                    && e.active
                    && e.older_than(record)
                    && !listed.contains(e.video_id.as_str())
            })
            .count() as u64;
        // The tutorials this publication may change the main video of.
        let mut keys: BTreeSet<TutorialKey> = before
            .iter()
            .filter(|e| e.foss == record.foss)
            .map(CatalogEntry::key)
            .collect();
        keys.extend(
            record
                .items
                .iter()
                .map(|i| (i.foss.clone(), i.tutorial.clone(), i.language.clone())),
        );
        let mains_before = mains_of(before.iter().filter(|e| e.foss == record.foss));
        // This very publication seen again (a batch retried after a crash
        // between applying it and refolding): its refolds may not have
        // happened, so all of its tutorials are folded again.
        let replay = before
            .iter()
            .any(|e| e.publication == record.id.to_string());
        if dry_run {
            let after = record
                .items
                .iter()
                .filter(|i| i.main)
                .map(|i| {
                    (
                        (i.foss.clone(), i.tutorial.clone(), i.language.clone()),
                        CatalogMain {
                            video_id: i.video_id.clone(),
                            duration: i.duration,
                        },
                    )
                })
                .collect();
            summary.mains_changed = changed(&keys, &mains_before, &after, false);
            return Ok(summary);
        }
        // No `$or` in an update's filter: nx-27017 then ignores the other
        // fields and replaces whatever older document matches the `$or`
        // first (another FOSS's video). So "older" is two statements: an
        // older version (or none: inserted), or the same version and a
        // smaller publication id. A duplicate key on the first is a
        // document at least as new: it stays, unless the second replaces it.
        let (v, id) = (record.version.timestamp_millis(), record.id.to_string());
        let statements: Vec<Document> = docs
            .into_iter()
            .flat_map(|d| {
                let key = d.get("_id").cloned().unwrap_or(Bson::Null);
                [
                    doc! {
                        "q": { "_id": key.clone(), "version_ms": { "$lt": v } },
                        "u": d.clone(),
                        "upsert": true,
                    },
                    doc! {
                        "q": { "_id": key, "version_ms": v, "publication": { "$lt": &id } },
                        "u": d,
                        "upsert": false,
                    },
                ]
            })
            .collect();
        self.update_documents(CATALOG, statements).await?;
        // Then what is left older of this FOSS, chosen here from its
        // documents: each replaced whole (nx-27017 stores `$set: {active:
        // false}` as 0), and only if still the document read.
        let mut statements = Vec::new();
        for e in self.catalog_entries(doc! { "foss": &record.foss }).await? {
            if !e.older_than(record) {
                continue;
            }
            let mut d = catalog_document_of(&e);
            d.insert("active", false);
            d.insert("version", bson::DateTime::from_chrono(record.version));
            d.insert("version_ms", v);
            d.insert("publication", &id);
            if !valid(&self.validators.catalog, &d, &e.video_id) {
                continue;
            }
            let q = doc! { "_id": &e.video_id, "version_ms": e.version_ms, "publication": &e.publication };
            statements.push(doc! { "q": q, "u": d, "upsert": false });
        }
        self.update_documents(CATALOG, statements).await?;
        let after = self
            .catalog_mains(keys.iter().filter(|k| k.0 == record.foss))
            .await?;
        summary.mains_changed = changed(&keys, &mains_before, &after, replay);
        Ok(summary)
    }

    /// The active main video of each of `keys` that has one: one query per
    /// hundred keys.
    pub async fn catalog_mains<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a TutorialKey>,
    ) -> Result<HashMap<TutorialKey, CatalogMain>> {
        let keys: Vec<&TutorialKey> = keys.into_iter().collect();
        let mut entries = Vec::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let any: Vec<Document> = chunk
                .iter()
                .map(|(f, t, l)| doc! { "foss": f, "tutorial": t, "language": l })
                .collect();
            entries.extend(
                self.catalog_entries(doc! { "main": true, "active": true, "$or": any })
                    .await?,
            );
        }
        Ok(mains_of(&entries))
    }

    /// Folds again every learner's progress in these tutorials (their main
    /// video changed); returns how many documents it wrote, and the
    /// analytics keys they touch.
    pub async fn refold_tutorials(
        &self,
        keys: &[TutorialKey],
        rules: &Rules,
    ) -> Result<(u64, Vec<crate::analytics::Mark>)> {
        let mut refolds = Refolds::default();
        for target in self.tutorial_targets(keys).await? {
            refolds.add_target(target);
        }
        if refolds.is_empty() {
            return Ok((0, Vec::new()));
        }
        self.refold(&refolds, rules).await
    }

    /// Every progress document of these tutorials, as refold targets.
    pub(crate) async fn tutorial_targets(&self, keys: &[TutorialKey]) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let any: Vec<Document> = chunk
                .iter()
                .map(|(f, t, l)| doc! { "foss": f, "tutorial": t, "language": l })
                .collect();
            let mut cursor = self
                .progress
                .find(doc! { "$or": any })
                .projection(doc! { "learner": 1, "foss": 1, "tutorial": 1, "language": 1 })
                .await?;
            while let Some(d) = cursor.try_next().await? {
                if let (Ok(learner), Ok(f), Ok(t), Ok(l)) = (
                    d.get_str("learner"),
                    d.get_str("foss"),
                    d.get_str("tutorial"),
                    d.get_str("language"),
                ) {
                    out.push(Target::new(learner, f, t, l));
                }
            }
        }
        Ok(out)
    }

    /// The `catalog` documents matching `filter`; unreadable ones are
    /// logged and left out.
    pub async fn catalog_entries(&self, filter: Document) -> Result<Vec<CatalogEntry>> {
        let mut cursor = self.catalog.find(filter).await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            match bson::from_document::<CatalogEntry>(d) {
                Ok(e) => out.push(e),
                Err(error) => tracing::warn!(%error, "unreadable catalog document skipped"),
            }
        }
        Ok(out)
    }
}

/// The tutorials among `keys` whose main video differs before and after
/// (all of them when `all`), in order.
fn changed(
    keys: &BTreeSet<TutorialKey>,
    before: &HashMap<TutorialKey, CatalogMain>,
    after: &HashMap<TutorialKey, CatalogMain>,
    all: bool,
) -> Vec<TutorialKey> {
    keys.iter()
        .filter(|k| all || before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(video: &str, main: bool, version_ms: i64) -> CatalogEntry {
        CatalogEntry {
            video_id: video.into(),
            foss: "Python".into(),
            tutorial: "Intro".into(),
            language: "English".into(),
            title: "t".into(),
            duration: Some(60.0),
            order: 0,
            main,
            level: None,
            version_ms,
            publication: "p".into(),
            active: true,
        }
    }

    #[test]
    fn the_newest_active_main_wins_whatever_the_order() {
        let a = entry("a", true, 1);
        let b = entry("b", true, 2);
        let mut c = entry("c", true, 3);
        c.active = false;
        let key: TutorialKey = ("Python".into(), "Intro".into(), "English".into());
        for order in [vec![&a, &b, &c], vec![&c, &b, &a]] {
            assert_eq!(mains_of(order)[&key].video_id, "b");
        }
        assert!(mains_of([&entry("x", false, 9)]).is_empty());
    }

    #[test]
    fn a_stored_document_is_older_by_version_then_publication() {
        let record = CatalogRecord::new("Python", Vec::new());
        let v = record.version.timestamp_millis();
        let mut e = entry("a", false, v - 1);
        assert!(e.older_than(&record));
        e.version_ms = v;
        e.publication = record.id.to_string();
        assert!(!e.older_than(&record), "the same publication is not older");
        e.publication = uuid::Uuid::nil().to_string();
        assert!(e.older_than(&record));
        e.version_ms = v + 1;
        assert!(!e.older_than(&record));
    }
}
