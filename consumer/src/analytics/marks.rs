//! Dirty marks: which derived documents must be computed again, in the
//! `derivations` collection, and the claims that let consumers share that
//! work without ever leaving a stale document behind.
//!
//! A batch marks each (kind, key) its records touch, after it stored them
//! and before it is acknowledged, so a crash replays the marks with the
//! batch. A mark is one document, `_id` `<kind>:<key>`:
//! - `gen` counts marks: every mark increments it;
//! - `due_ms` is when to compute it: a new mark is due `interval` after it
//!   was made, and later marks never push it later, so a busy key is
//!   computed at most once per interval and a quiet one within it (a key
//!   another key hands its work over to is due at once: that key's mark
//!   waited already);
//! - `from_ms` (learners) is the earliest activity the marks brought since
//!   the last claim; a claim moves it to `claimed_from`;
//! - `fence` counts claims: every claim increments it; `lease_ms` is when
//!   the claim lapses (a consumer that died mid-way).
//!
//! A claimed key is computed from stored documents read after the claim,
//! written, then settled: if no mark came since the claim (`gen` as
//! claimed) and nobody claimed it since (`fence` as claimed) the mark is
//! deleted; if marks came, it is due again after `interval`; if another
//! consumer claimed it since (our lease lapsed), our write may be older
//! than theirs, so the key is marked again and computed once more. Every
//! write is therefore followed by a computation that read everything
//! stored before it: the documents converge to the fold of all records,
//! whatever the order, the replays and the number of consumers.
//!
//! That holds per key: claims exclude per key, so each derived document is
//! written by one key's claims only. A key that names another's document
//! (a ping's page, whose page view is its visit's) marks that key rather
//! than compute it: two claims of two keys could otherwise write one
//! document, the older read last, and both settle cleanly.
//!
//! `gen` as claimed is the one the claim's update matched (it is in the
//! update's filter), never one read back after it: a mark landing between
//! the claim and such a read would count as computed, yet its `from_ms`
//! came after the claim moved `from_ms` away, so the computation starts
//! later than its activity, and settling would delete the only record of
//! it (a learner's earlier page view left out of its sessions for good).
//!
//! Counters and times are integers (milliseconds): nx-27017 stores `$min`
//! on a date as a string and compares dates to the second.

use std::collections::BTreeMap;

use bson::{Bson, Document, RawDocumentBuf, doc, rawdoc};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database};

use crate::error::Result;
use crate::sink::write_command::{self, Verb};

/// The collection of dirty marks.
pub const DERIVATIONS: &str = "derivations";

/// A key marked while it was computed waits at least this many times what
/// computing it took ([`Marks::settle_after`]).
pub const COST_FACTOR: i64 = 10;

/// What a mark asks to compute again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DerivedKind {
    /// The marks of one stored batch (key: a UUID; `args` holds them):
    /// expanded into their keys, one statement per distinct key for all
    /// the batches claimed together (see [`crate::analytics::journal`]).
    Batch,
    /// The `page_views` of one visit (key `<visitor>:<n>`), or of a page
    /// named by id (`page:<uuid>`: a page without a visitor cookie, its own
    /// visit; or the page a ping came from, whose visit it marks).
    Visit,
    /// The `sessions` of one learner (key: the learner key), from `from_ms`.
    Learner,
    /// The `video_stats` of one video (key: its `video_id`).
    Video,
    /// The `videos` rollup, every video's reach (key: `all`).
    Videos,
    /// One `tutorial_daily` document (key: its `_id`; `args` name it).
    TutorialDay,
    /// One `site_daily` document and the day's rollup (key: the day).
    Day,
    /// One month's rollup (key: `YYYY-MM`), from its days' rollups.
    Month,
}

impl DerivedKind {
    /// In the order a pass computes them: each kind's writes mark later kinds.
    pub const ORDER: [DerivedKind; 8] = [
        DerivedKind::Batch,
        DerivedKind::Visit,
        DerivedKind::Learner,
        DerivedKind::Video,
        DerivedKind::Videos,
        DerivedKind::TutorialDay,
        DerivedKind::Day,
        DerivedKind::Month,
    ];

    /// The kind named `name` (as [`DerivedKind::as_str`] gives it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|k| k.as_str() == name)
    }

    /// The name in marks' `_id` and `kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DerivedKind::Batch => "batch",
            DerivedKind::Visit => "visit",
            DerivedKind::Learner => "learner",
            DerivedKind::Video => "video",
            DerivedKind::Videos => "videos",
            DerivedKind::TutorialDay => "tutorial_day",
            DerivedKind::Day => "day",
            DerivedKind::Month => "month",
        }
    }
}

/// One key to compute again.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// What to compute.
    pub kind: DerivedKind,
    /// Which one.
    pub key: String,
    /// Learners: the earliest activity time (ms) the mark brings.
    pub from_ms: Option<i64>,
    /// What the computation needs besides the key (tutorial days: the
    /// names and the day), stored with the mark when it is created.
    pub args: Document,
}

impl Mark {
    /// A mark with no arguments.
    pub fn new(kind: DerivedKind, key: impl Into<String>) -> Self {
        Self {
            kind,
            key: key.into(),
            from_ms: None,
            args: Document::new(),
        }
    }

    /// A learner's mark, from `from_ms`.
    pub fn learner(learner: &str, from_ms: i64) -> Self {
        Self {
            from_ms: Some(from_ms),
            ..Self::new(DerivedKind::Learner, learner)
        }
    }

    fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.key)
    }
}

/// A mark this consumer claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The mark as it was when claimed.
    pub mark: Mark,
    /// Its `gen` when claimed: the one the claim's update matched.
    pub generation: i64,
    /// Its `fence` after our claim.
    pub fence: i64,
}

/// What settling claimed marks found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Marks deleted or released (their key is up to date, or due again).
    pub done: u64,
    /// Marks another consumer claimed meanwhile: marked again.
    pub overtaken: u64,
}

/// The `derivations` collection, as one consumer uses it.
#[derive(Debug, Clone)]
pub struct Marks {
    pub(super) coll: Collection<Document>,
    db: Database,
    pub(super) interval_ms: i64,
    lease_ms: i64,
    owner: String,
}

impl Marks {
    /// Marks in `db`; keys are computed `interval` after their first mark,
    /// and a claim lapses after `lease`.
    pub fn new(
        db: &Database,
        interval: std::time::Duration,
        lease: std::time::Duration,
        owner: &str,
    ) -> Self {
        Self {
            coll: db.collection(DERIVATIONS),
            db: db.clone(),
            interval_ms: millis(interval),
            lease_ms: millis(lease),
            owner: owner.to_owned(),
        }
    }

    /// The index claims use.
    pub async fn create_indexes(&self) -> Result<()> {
        let index = mongodb::IndexModel::builder()
            .keys(doc! { "kind": 1, "due_ms": 1 })
            .build();
        self.coll.create_index(index).await?;
        Ok(())
    }

    /// Marks keys (one statement per distinct key, in one command); returns
    /// how many distinct keys.
    pub async fn mark(&self, marks: impl IntoIterator<Item = Mark>) -> Result<u64> {
        self.mark_due(marks, now_ms() + self.interval_ms).await
    }

    /// Marks keys due at once: the keys a computed key hands its work over
    /// to, whose own mark waited the interval already.
    pub(super) async fn mark_now(&self, marks: impl IntoIterator<Item = Mark>) -> Result<u64> {
        self.mark_due(marks, now_ms()).await
    }

    async fn mark_due(&self, marks: impl IntoIterator<Item = Mark>, due: i64) -> Result<u64> {
        let due = distinct(marks.into_iter().map(|m| (m, due)));
        self.write_marks(&due).await
    }

    /// Writes distinct marks, each due at its time at the latest (one
    /// statement each, a thousand per command); returns how many.
    pub(super) async fn write_marks(&self, distinct: &[(String, Mark, i64)]) -> Result<u64> {
        if distinct.is_empty() {
            return Ok(0);
        }
        let statements = distinct
            .iter()
            .map(|(id, m, due)| mark_statement(id, m, *due))
            .collect::<Result<Vec<_>>>()?;
        let errors = write_command::send(&self.db, Verb::Update, DERIVATIONS, statements).await?;
        // Two consumers creating one mark at once: one upsert inserts, the
        // other collides (11000), its increment not applied. The mark exists
        // now, so the statement is run once more and updates it.
        let mut refused = errors.refused - errors.duplicates.len() as u64;
        if !errors.duplicates.is_empty() {
            let again = errors
                .duplicates
                .iter()
                .filter_map(|&i| distinct.get(i))
                .map(|(id, m, due)| mark_statement(id, m, *due))
                .collect::<Result<Vec<_>>>()?;
            refused += write_command::send(&self.db, Verb::Update, DERIVATIONS, again)
                .await?
                .refused;
        }
        if refused > 0 {
            // A mark not written is a figure never computed again: the
            // batch is not acknowledged, and is retried.
            return Err(crate::error::Error::Refused {
                collection: DERIVATIONS.to_owned(),
                count: refused,
            });
        }
        Ok(distinct.len() as u64)
    }

    /// Claims up to `limit` due marks of `kind` that nobody holds.
    pub async fn claim(&self, kind: DerivedKind, limit: i64) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let due: Vec<Document> = self
            .coll
            .find(doc! { "kind": kind.as_str(), "due_ms": { "$lte": now }, "lease_ms": { "$lte": now } })
            // What the claim's statements need (not `args`: a batch's
            // marks are read once, with the claim).
            .projection(doc! { "_id": 1, "gen": 1, "fence": 1, "from_ms": 1, "claimed_from": 1 })
            .sort(doc! { "due_ms": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        // The `gen` each claim is made at: the claim matches only the mark
        // as read (every mark increments `gen`; `from_ms` as read as well,
        // for a mark settled and made anew in between, whose `gen` starts
        // over), and settling compares with this `gen`, so a mark made
        // after the claim keeps the key marked, with its `from_ms`.
        let mut generations: BTreeMap<&str, i64> = BTreeMap::new();
        let statements: Vec<Document> = due
            .iter()
            .filter_map(|d| {
                let id = d.get_str("_id").ok()?;
                let generation = number(d.get("gen"));
                generations.insert(id, generation);
                let mut filter = doc! {
                    "_id": id,
                    "gen": generation,
                    "fence": number(d.get("fence")),
                    "lease_ms": { "$lte": now },
                };
                let mut set =
                    doc! { "lease_ms": now + self.lease_ms, "owner": &self.owner, "claim": &token };
                // `from_ms` moves into the claim, so that marks made from now
                // on start afresh (a key marked without pause would otherwise
                // be computed from its first activity forever); it stays
                // there until the claim is settled, for whoever takes the
                // key over if this consumer dies.
                let from = d.get("from_ms").map(|b| number(Some(b)));
                let before = d.get("claimed_from").map(|b| number(Some(b)));
                match from {
                    Some(f) => filter.insert("from_ms", f),
                    None => filter.insert("from_ms", doc! { "$exists": false }),
                };
                let mut update = doc! { "$inc": { "fence": 1_i64 } };
                if let Some(f) = [from, before].into_iter().flatten().min() {
                    set.insert("claimed_from", f);
                }
                if from.is_some() {
                    update.insert("$unset", doc! { "from_ms": "" });
                }
                update.insert("$set", set);
                Some(doc! { "q": filter, "u": update })
            })
            .collect();
        // A statement that no longer matches (another consumer's claim, a
        // new mark) claims nothing: the read back below tells.
        write_command::send_documents(&self.db, Verb::Update, DERIVATIONS, &statements).await?;
        let ids: Vec<&str> = generations.keys().copied().collect();
        let claimed: Vec<Document> = self
            .coll
            .find(doc! { "_id": { "$in": ids }, "claim": &token })
            .await?
            .try_collect()
            .await?;
        Ok(claimed
            .iter()
            .filter_map(|d| {
                let generation = *generations.get(d.get_str("_id").ok()?)?;
                claimed_of(kind, d, generation)
            })
            .collect())
    }

    /// How long after its first mark a key is computed.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.interval_ms).unwrap_or(0))
    }

    /// Settles marks after their keys were computed and written (see the
    /// module's comment).
    pub async fn settle(&self, claimed: &[Claimed]) -> Result<Settled> {
        self.settle_after(claimed, std::time::Duration::ZERO).await
    }

    /// [`Marks::settle`] after computing each key took `cost` on average:
    /// a key marked meanwhile is due again after the interval, or after
    /// [`COST_FACTOR`] times its cost if that is longer. A day read whole
    /// each time (its page views, sessions and completions) grows with its
    /// traffic; at 100 requests/s its last hours hold millions of page views,
    /// and computing it every interval would keep a loop busy with it alone.
    /// So an expensive key takes at most about a tenth of the loop's time,
    /// and today's figures trail by about ten times what computing them
    /// takes (Matomo refreshes today's reports at most every 15 minutes by
    /// default, `time_before_today_archive_considered_outdated`). With an
    /// interval of 0 (the import) keys stay due at once.
    pub async fn settle_after(
        &self,
        claimed: &[Claimed],
        cost: std::time::Duration,
    ) -> Result<Settled> {
        // An interval of 0 is a one-shot command's (the import), which
        // computes everything it touched before it exits: due at once.
        let again_after = match self.interval_ms {
            0 => 0,
            interval => interval.max(millis(cost).saturating_mul(COST_FACTOR)),
        };
        let mut settled = Settled::default();
        if claimed.is_empty() {
            return Ok(settled);
        }
        let ids: Vec<String> = claimed.iter().map(|c| c.mark.id()).collect();
        let now: BTreeMap<String, Document> = self
            .coll
            .find(doc! { "_id": { "$in": &ids } })
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), d)))
            .collect();
        let mut deletes = Vec::new();
        let mut releases = Vec::new();
        let mut again = Vec::new();
        for (c, id) in claimed.iter().zip(&ids) {
            let fence = now.get(id).map(|d| number(d.get("fence")));
            if fence != Some(c.fence) {
                settled.overtaken += 1;
                // A batch's expansion wrote all its marks, after its records
                // were stored, whoever else expands it too: nothing to redo.
                if c.mark.kind != DerivedKind::Batch {
                    again.push(c.mark.clone());
                }
                continue;
            }
            settled.done += 1;
            deletes.push(
                doc! { "q": { "_id": id, "gen": c.generation, "fence": c.fence }, "limit": 1 },
            );
            releases.push(doc! {
                "q": { "_id": id, "fence": c.fence },
                "u": {
                    "$set": { "lease_ms": 0_i64, "due_ms": now_ms() + again_after },
                    "$unset": { "claimed_from": "" },
                },
            });
        }
        if !deletes.is_empty() {
            write_command::send_documents(&self.db, Verb::Delete, DERIVATIONS, &deletes).await?;
            // The ones a newer mark kept: due again after the interval.
            write_command::send_documents(&self.db, Verb::Update, DERIVATIONS, &releases).await?;
        }
        if !again.is_empty() {
            tracing::debug!(
                marks = again.len(),
                "another consumer claimed keys meanwhile; computing them again"
            );
            self.mark_due(again, now_ms() + self.interval_ms).await?;
        }
        Ok(settled)
    }

    /// How late the derivations are: now minus the oldest due time of a
    /// mark that is due; zero when none is.
    pub async fn lag(&self) -> Result<std::time::Duration> {
        let now = now_ms();
        let oldest = self
            .coll
            .find_one(doc! { "due_ms": { "$lte": now } })
            .sort(doc! { "due_ms": 1 })
            .await?;
        let late = oldest.map_or(0, |d| now - number(d.get("due_ms")));
        Ok(std::time::Duration::from_millis(
            u64::try_from(late).unwrap_or(0),
        ))
    }

    /// How many keys are marked: a batch's document counts the marks it
    /// lists (a key listed by two batches counts twice until expanded).
    pub async fn pending(&self) -> Result<u64> {
        let all = self.coll.estimated_document_count().await?;
        let mut batches = self
            .coll
            .find(doc! { "kind": DerivedKind::Batch.as_str() })
            .projection(doc! { "count": 1 })
            .await?;
        let (mut documents, mut listed) = (0, 0);
        while let Some(b) = batches.try_next().await? {
            documents += 1;
            listed += u64::try_from(number(b.get("count"))).unwrap_or(0);
        }
        Ok(all.saturating_sub(documents) + listed)
    }
}

/// One entry per key, in `_id` order: the earliest due time and the
/// earliest `from_ms` of its marks.
pub(super) fn distinct(marks: impl IntoIterator<Item = (Mark, i64)>) -> Vec<(String, Mark, i64)> {
    let mut distinct: BTreeMap<String, (Mark, i64)> = BTreeMap::new();
    for (m, due) in marks {
        match distinct.entry(m.id()) {
            std::collections::btree_map::Entry::Occupied(mut seen) => {
                let (seen, seen_due) = seen.get_mut();
                seen.from_ms = match (seen.from_ms, m.from_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                *seen_due = (*seen_due).min(due);
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((m, due));
            }
        }
    }
    distinct
        .into_iter()
        .map(|(id, (m, due))| (id, m, due))
        .collect()
}

/// The upsert of mark `m` (`_id` `id`), due at `due` at the latest.
fn mark_statement(id: &str, m: &Mark, due: i64) -> Result<RawDocumentBuf> {
    let mut min = rawdoc! { "due_ms": due };
    if let Some(from) = m.from_ms {
        min.append("from_ms", from);
    }
    let args = bson::to_raw_document_buf(&m.args).map_err(mongodb::error::Error::from)?;
    Ok(rawdoc! {
        "q": { "_id": id },
        "u": {
            "$inc": { "gen": 1_i64 },
            "$min": min,
            "$setOnInsert": {
                "kind": m.kind.as_str(),
                "key": m.key.as_str(),
                "args": args,
                "lease_ms": 0_i64,
                "fence": 0_i64,
            },
        },
        "upsert": true,
    })
}

/// The claim of mark `d` (as read back by its claim token), made at
/// `generation`.
fn claimed_of(kind: DerivedKind, d: &Document, generation: i64) -> Option<Claimed> {
    let key = d.get_str("key").ok()?.to_owned();
    let from_ms = d.get("claimed_from").map(|b| number(Some(b)));
    Some(Claimed {
        mark: Mark {
            kind,
            key,
            from_ms,
            args: d.get_document("args").cloned().unwrap_or_default(),
        },
        generation,
        fence: number(d.get("fence")),
    })
}

/// An integer field, whatever width the server gave it.
fn number(b: Option<&Bson>) -> i64 {
    match b {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(f)) if f.is_finite() => *f as i64,
        _ => 0,
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Now, in milliseconds since 1970.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
