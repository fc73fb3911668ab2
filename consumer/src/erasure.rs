//! One person's data, found everywhere visitlog keeps it: `erase` (GDPR
//! article 17) removes it, `export` (article 15) writes it out as JSON lines.
//!
//! A person is a user name, or a visitor id (a browser's cookie). A user
//! also brings the visitors linked to them only (`learner_links`: browsers
//! they logged in on, whose anonymous visits were theirs); a visitor linked
//! to other users too is left, and named in the summary.
//!
//! Where: the queue and every processing list in Redis (records not yet
//! stored), `request_logs`, `events`, `page_views`, `sessions`,
//! `tutorial_progress`, `video_positions`, `learner_links`, the dead
//! letters whose payload names them and the dirty marks (`derivations`)
//! of their learner keys and visits. The figures their records fed (days,
//! tutorial days, videos) are marked, so a running consumer derives them
//! again without them. A record a consumer had already taken off the queue
//! lands in MongoDB after the first pass: the MongoDB pass runs again after
//! `shutdown-deadline`, the longest a batch may take to store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;
use serde_json::Value;
use visitlog_schema::Collection as Coll;

use crate::analytics::batch::tutorial_day;
use crate::analytics::marks::DERIVATIONS;
use crate::analytics::{DerivedKind, Mark};
use crate::config::Config;
use crate::error::Result;
use crate::sink::{DEAD_LETTERS, Sink};

/// Whose data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A logged-in user, by the name the app gives.
    User(String),
    /// A browser, by its visitor cookie's id.
    Visitor(String),
}

/// A subject with everything that names them.
#[derive(Debug, Default)]
struct Person {
    users: Vec<String>,
    visitors: Vec<String>,
    learners: Vec<String>,
    /// Visitors linked to this user and to others too: not theirs alone.
    shared_visitors: Vec<String>,
}

impl Person {
    /// Whether a queued record (or a dead letter's payload) names them.
    fn names(&self, record: &Value) -> bool {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        field("user").is_some_and(|u| self.users.iter().any(|x| x == u))
            || field("visitor_id").is_some_and(|v| self.visitors.iter().any(|x| x == v))
            || field("learner").is_some_and(|l| self.learners.iter().any(|x| x == l))
    }

    /// The MongoDB filter of documents naming them in `fields`.
    fn filter(&self, fields: &[(&str, Names)]) -> Document {
        let mut any = Vec::new();
        for (field, names) in fields {
            let values = match names {
                Names::User => &self.users,
                Names::Visitor => &self.visitors,
                Names::Learner => &self.learners,
            };
            if !values.is_empty() {
                any.push(Bson::Document(doc! { *field: { "$in": values.clone() } }));
            }
        }
        match any.len() {
            0 => doc! { "_id": { "$in": [] } },
            _ => doc! { "$or": any },
        }
    }
}

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Names {
    /// A user name, as the app gives it.
    User,
    /// A visitor id.
    Visitor,
    /// A learner key, `user:<name>` or `visitor:<id>`.
    Learner,
}

/// Each collection and the fields that name a person in it.
const COLLECTIONS: [(&str, &[(&str, Names)]); 7] = [
    (
        Coll::RequestLogs.name(),
        &[("user", Names::User), ("visitor_id", Names::Visitor)],
    ),
    (
        Coll::Events.name(),
        &[
            ("learner", Names::Learner),
            ("user", Names::User),
            ("visitor_id", Names::Visitor),
        ],
    ),
    (
        Coll::PageViews.name(),
        &[
            ("learner", Names::Learner),
            ("user", Names::User),
            ("visitor_id", Names::Visitor),
        ],
    ),
    (Coll::Sessions.name(), &[("learner", Names::Learner)]),
    (
        Coll::TutorialProgress.name(),
        &[("learner", Names::Learner)],
    ),
    (Coll::VideoPositions.name(), &[("learner", Names::Learner)]),
    // A link's `user` is the learner key.
    (
        Coll::LearnerLinks.name(),
        &[("user", Names::Learner), ("visitor_id", Names::Visitor)],
    ),
];

/// What was found (exported) or removed (erased), by place.
#[derive(Debug, Default)]
pub struct Summary {
    /// Count by collection or Redis list.
    pub by_place: BTreeMap<String, u64>,
    /// Figures marked to be derived again.
    pub marked: u64,
    /// Visitors linked to this user and to others, left in place.
    pub shared_visitors: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (place, n) in &self.by_place {
            writeln!(f, "{place}: {n}")?;
        }
        writeln!(f, "figures marked to be derived again: {}", self.marked)?;
        if !self.shared_visitors.is_empty() {
            writeln!(
                f,
                "left: visitors also linked to other users ({}); erase them with --visitor if they are this person's",
                self.shared_visitors.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Everything that names `subject`.
async fn person(sink: &Sink, subject: &Subject) -> Result<Person> {
    let mut p = Person::default();
    match subject {
        Subject::Visitor(id) => {
            p.visitors.push(id.clone());
            p.learners.push(format!("visitor:{id}"));
        }
        Subject::User(name) => {
            p.users.push(name.clone());
            p.learners.push(format!("user:{name}"));
            let key = format!("user:{name}");
            let links = sink
                .database()
                .collection::<Document>(Coll::LearnerLinks.name());
            let linked: Vec<Document> = links
                .find(doc! { "user": &key })
                .await?
                .try_collect()
                .await?;
            let visitors: BTreeSet<String> = linked
                .iter()
                .filter_map(|l| l.get_str("visitor_id").ok().map(str::to_owned))
                .collect();
            for visitor in visitors {
                let others = links
                    .count_documents(doc! { "visitor_id": &visitor, "user": { "$ne": &key } })
                    .await?;
                if others == 0 {
                    p.learners.push(format!("visitor:{visitor}"));
                    p.visitors.push(visitor);
                } else {
                    p.shared_visitors.push(visitor);
                }
            }
        }
    }
    Ok(p)
}

/// Calls `each` with every queued or in-process record naming `p`, and
/// its list; with `remove`, takes it off that list.
async fn in_redis(
    config: &Config,
    p: &Person,
    remove: bool,
    mut each: impl FnMut(&str, &Value),
) -> Result<BTreeMap<String, u64>> {
    let mut conn = crate::admin::connect(&config.redis_target()?).await?;
    let queue_keys = config.queue_keys();
    let mut lists = queue_keys.shards().to_vec();
    lists.extend(crate::source::processing_lists(&mut conn, &queue_keys).await?);
    let mut found = BTreeMap::new();
    for list in lists {
        let mut start = 0i64;
        let mut matched: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&list)
                .arg(start)
                .arg(start + 999)
                .query_async(&mut conn)
                .await?;
            if chunk.is_empty() {
                break;
            }
            start += chunk.len() as i64;
            for payload in chunk {
                let Ok(record) = serde_json::from_slice::<Value>(&payload) else {
                    continue;
                };
                if p.names(&record) {
                    each(&list, &record);
                    matched.push(payload);
                }
            }
        }
        let mut n = matched.len() as u64;
        if remove {
            n = 0;
            for payload in &matched {
                let removed: u64 = redis::cmd("LREM")
                    .arg(&list)
                    .arg(0)
                    .arg(payload.as_slice())
                    .query_async(&mut conn)
                    .await?;
                n += removed;
            }
        }
        if n > 0 {
            let place = if queue_keys.shards().contains(&list) {
                "redis queue".to_owned()
            } else {
                format!("redis {list}")
            };
            *found.entry(place).or_default() += n;
        }
    }
    Ok(found)
}

/// Dead letters whose payload names `p`: their ids.
async fn dead_letters(sink: &Sink, p: &Person) -> Result<Vec<Bson>> {
    let coll = sink.database().collection::<Document>(DEAD_LETTERS);
    let mut cursor = coll.find(doc! {}).projection(doc! { "payload": 1 }).await?;
    let mut ids = Vec::new();
    while let Some(letter) = cursor.try_next().await? {
        let names = letter
            .get_str("payload")
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .is_some_and(|record| p.names(&record));
        if names && let Some(id) = letter.get("_id") {
            ids.push(id.clone());
        }
    }
    Ok(ids)
}

/// The figures `docs` of `collection` fed: their days, tutorial days and videos.
fn marks_of(collection: &str, docs: &[Document]) -> Vec<Mark> {
    let mut marks = Vec::new();
    let text = |d: &Document, k: &str| d.get_str(k).ok().map(str::to_owned);
    for d in docs {
        let day = text(d, "day").or_else(|| {
            d.get_datetime("ts")
                .ok()
                .or_else(|| d.get_datetime("completed_at").ok())
                .map(|t| visitlog_analytics::day_of(t.to_chrono()))
        });
        let tutorial = match collection {
            c if c == Coll::PageViews.name() => d
                .get_document("tutorial")
                .ok()
                .map(|t| (text(t, "foss"), text(t, "tutorial"), text(t, "language"))),
            _ => Some((text(d, "foss"), text(d, "tutorial"), text(d, "language"))),
        };
        if let Some(day) = &day {
            marks.push(Mark::new(DerivedKind::Day, day.clone()));
            if let Some((Some(foss), Some(tutorial), Some(language))) = &tutorial {
                marks.push(tutorial_day(foss, tutorial, language, day));
            }
        }
        if let Some(video) = text(d, "video_id") {
            marks.push(Mark::new(DerivedKind::Video, video));
        }
        if let Ok(videos) = d.get_array("videos") {
            for v in videos.iter().filter_map(Bson::as_document) {
                if let Some(video) = text(v, "video_id") {
                    marks.push(Mark::new(DerivedKind::Video, video));
                }
            }
        }
    }
    marks
}

/// Removes everything of `subject`; what was removed, by place.
pub async fn erase(config: &Config, subject: &Subject) -> Result<Summary> {
    let sink = Sink::open(config).await?;
    let p = person(&sink, subject).await?;
    let mut summary = Summary {
        shared_visitors: p.shared_visitors.clone(),
        ..Summary::default()
    };
    // Redis first, so nothing queued lands after the MongoDB passes.
    summary.by_place = in_redis(config, &p, true, |_, _| {}).await?;
    erase_stored(&sink, &p, &mut summary).await?;
    // A batch a consumer held while the lists were read is stored within
    // shutdown-deadline: look again after it.
    tokio::time::sleep(config.shutdown_deadline.min(Duration::from_secs(30))).await;
    erase_stored(&sink, &p, &mut summary).await?;
    Ok(summary)
}

async fn erase_stored(sink: &Sink, p: &Person, summary: &mut Summary) -> Result<()> {
    let db = sink.database();
    let mut marks = Vec::new();
    for (collection, fields) in COLLECTIONS {
        let coll = db.collection::<Document>(collection);
        let filter = p.filter(fields);
        let docs: Vec<Document> = coll.find(filter.clone()).await?.try_collect().await?;
        if docs.is_empty() {
            continue;
        }
        marks.extend(marks_of(collection, &docs));
        let ids: Vec<Bson> = docs.iter().filter_map(|d| d.get("_id").cloned()).collect();
        let deleted = coll.delete_many(doc! { "_id": { "$in": ids } }).await?;
        *summary.by_place.entry(collection.to_owned()).or_default() += deleted.deleted_count;
    }
    let letters = dead_letters(sink, p).await?;
    if !letters.is_empty() {
        let deleted = db
            .collection::<Document>(DEAD_LETTERS)
            .delete_many(doc! { "_id": { "$in": letters } })
            .await?;
        *summary.by_place.entry(DEAD_LETTERS.to_owned()).or_default() += deleted.deleted_count;
    }
    let unmarked = erase_marks(sink, p).await?;
    if unmarked > 0 {
        *summary.by_place.entry(DERIVATIONS.to_owned()).or_default() += unmarked;
    }
    summary.marked += sink.marks().mark(marks).await?;
    Ok(())
}

/// Removes the dirty marks that name `p` (a learner's, a visit of their
/// browsers), and their keys from the batches' documents not expanded yet;
/// returns how many marks. What those marks would compute is erased
/// already. A batch a consumer is expanding meanwhile may still write its
/// marks: they name documents that are gone, and are deleted once computed.
async fn erase_marks(sink: &Sink, p: &Person) -> Result<u64> {
    let coll = sink.database().collection::<Document>(DERIVATIONS);
    let names = |kind: &str, key: &str| match DerivedKind::parse(kind) {
        Some(DerivedKind::Learner) => p.learners.iter().any(|l| l == key),
        Some(DerivedKind::Visit) => key
            .split_once(':')
            .is_some_and(|(visitor, _)| p.visitors.iter().any(|v| v == visitor)),
        _ => false,
    };
    let kinds = [DerivedKind::Learner, DerivedKind::Visit].map(DerivedKind::as_str);
    let mut cursor = coll
        .find(doc! { "kind": { "$in": kinds.to_vec() } })
        .projection(doc! { "_id": 1, "kind": 1, "key": 1 })
        .await?;
    let mut ids = Vec::new();
    while let Some(d) = cursor.try_next().await? {
        if names(
            d.get_str("kind").unwrap_or_default(),
            d.get_str("key").unwrap_or_default(),
        ) {
            ids.extend(d.get("_id").cloned());
        }
    }
    let mut removed = 0;
    if !ids.is_empty() {
        removed += coll
            .delete_many(doc! { "_id": { "$in": ids } })
            .await?
            .deleted_count;
    }
    let batches: Vec<Document> = coll
        .find(doc! { "kind": DerivedKind::Batch.as_str() })
        .await?
        .try_collect()
        .await?;
    for mut batch in batches {
        let Ok(args) = batch.get_document_mut("args") else {
            continue;
        };
        let Ok(listed) = args.get_array("marks") else {
            continue;
        };
        let kept: Vec<Bson> = listed
            .iter()
            .filter(|m| {
                let m = m.as_document();
                let field = |k| m.and_then(|m| m.get_str(k).ok()).unwrap_or_default();
                !names(field("kind"), field("key"))
            })
            .cloned()
            .collect();
        let dropped = (listed.len() - kept.len()) as u64;
        if dropped == 0 {
            continue;
        }
        args.insert("marks", kept);
        // Only as read: a batch claimed since is being expanded.
        let filter = doc! { "_id": batch.get("_id"), "fence": batch.get("fence") };
        if coll.replace_one(filter, &batch).await?.modified_count > 0 {
            removed += dropped;
        }
    }
    Ok(removed)
}

/// Writes everything of `subject` to `out` as JSON lines, one
/// `{"collection": .., "document": ..}` each (MongoDB's relaxed extended
/// JSON; Redis records as they are queued); what was found, by place.
pub async fn export(
    config: &Config,
    subject: &Subject,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Summary> {
    let sink = Sink::open(config).await?;
    let p = person(&sink, subject).await?;
    let mut summary = Summary {
        shared_visitors: p.shared_visitors.clone(),
        ..Summary::default()
    };
    let db = sink.database();
    for (collection, fields) in COLLECTIONS {
        let mut cursor = db
            .collection::<Document>(collection)
            .find(p.filter(fields))
            .await?;
        while let Some(d) = cursor.try_next().await? {
            line(out, collection, Bson::Document(d).into_relaxed_extjson())?;
            *summary.by_place.entry(collection.to_owned()).or_default() += 1;
        }
    }
    let letters = dead_letters(&sink, &p).await?;
    if !letters.is_empty() {
        let mut cursor = db
            .collection::<Document>(DEAD_LETTERS)
            .find(doc! { "_id": { "$in": letters } })
            .await?;
        while let Some(d) = cursor.try_next().await? {
            line(out, DEAD_LETTERS, Bson::Document(d).into_relaxed_extjson())?;
            *summary.by_place.entry(DEAD_LETTERS.to_owned()).or_default() += 1;
        }
    }
    let mut queued = Vec::new();
    let found = in_redis(config, &p, false, |list, record| {
        queued.push((list.to_owned(), record.clone()));
    })
    .await?;
    for (list, record) in queued {
        line(out, &format!("redis:{list}"), record)?;
    }
    summary.by_place.extend(found);
    Ok(summary)
}

fn line(out: &mut impl std::io::Write, collection: &str, document: Value) -> std::io::Result<()> {
    let value = serde_json::json!({ "collection": collection, "document": document });
    writeln!(out, "{value}")
}
