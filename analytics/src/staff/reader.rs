//! Reading the derived documents back for staff: the figures of a range of
//! days from `site_daily` and `tutorial_daily`, distinct visitors and
//! learners from the range's `page_views` (days cannot be added up for
//! them), videos from `video_stats` and the catalog, one learner from
//! `tutorial_progress` and `sessions`. Every read is a `find` on an
//! indexed field with a projection or a limit; the figures are computed
//! here, in Rust, never by the server's aggregation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use bson::{Bson, Document, doc};
use chrono::{Duration, NaiveDate, NaiveTime};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database};
use visitlog_progress::{Progress, ReadError, SEGMENT_S};
use visitlog_schema::Collection as Coll;

use super::Range;
use super::figures::{
    DayRow, LearnerSession, LearnerTutorial, LearnerView, Overview, TutorialRow, UnwatchedVideo,
    VideoView,
};
use crate::{Count, Session, SiteDaily, Totals, TutorialDaily, VideoStats};

/// Entries of a top list.
const TOP: usize = 20;

/// Sessions one learner answer lists at most.
pub const LEARNER_SESSIONS: usize = 200;

/// Tutorials one learner answer lists at most.
const LEARNER_TUTORIALS: i64 = 1000;

/// Documents per cursor batch.
const BATCH: u32 = 1000;

/// Reads the derived collections; cheap to clone.
#[derive(Debug, Clone)]
pub struct AnalyticsReader {
    db: Database,
}

/// Distinct visitors and learners of a range, whole and per tutorial.
#[derive(Default)]
struct Distinct {
    visitors: HashSet<u64>,
    learners: HashSet<u64>,
    tutorials: HashMap<u64, (HashSet<u64>, HashSet<u64>)>,
    /// Per day: anonymous visitors, learners.
    days: HashMap<String, (HashSet<u64>, HashSet<u64>)>,
}

/// What [`AnalyticsReader::distinct`] counts besides the whole range.
#[derive(Clone, Copy)]
enum Per {
    Range,
    Tutorial,
    Day,
}

/// A tutorial's daily documents added up.
#[derive(Default)]
struct Summed {
    names: (String, String, String),
    totals: Totals,
}

impl AnalyticsReader {
    /// Connects (lazily) to `uri` and reads from `database`, the consumer's.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, ReadError> {
        let db = visitlog_progress::connect_database(uri, database, "visitlog-analytics").await?;
        Ok(Self::new(&db))
    }

    /// Reads from `db`, a handle the app already has.
    pub fn new(db: &Database) -> Self {
        Self { db: db.clone() }
    }

    fn coll(&self, c: Coll) -> Collection<Document> {
        self.db.collection(c.name())
    }

    /// The figures of `range`: the whole site's when it names no FOSS
    /// (from `site_daily`), else those FOSS's tutorial pages' (from
    /// `tutorial_daily`, without sessions or top lists, which are kept for
    /// the whole site only).
    pub async fn overview(&self, range: &Range) -> Result<Overview, ReadError> {
        let mut o = Overview {
            from: range.from().to_string(),
            to: range.to().to_string(),
            foss: range.foss().to_vec(),
            ..Overview::default()
        };
        let mut days: BTreeMap<String, DayRow> = range
            .days()
            .map(|d| {
                let day = d.to_string();
                let row = DayRow {
                    day: day.clone(),
                    sessions: range.foss().is_empty().then_some(0),
                    ..DayRow::default()
                };
                (day, row)
            })
            .collect();
        let mut totals = Totals::default();
        if range.foss().is_empty() {
            let (mut sessions, mut bounces, mut session_s) = (0, 0, 0.0);
            let mut tops: [BTreeMap<String, u64>; 4] = Default::default();
            let mut cursor = self
                .coll(Coll::SiteDaily)
                .find(range.day_filter())
                .batch_size(BATCH)
                .await?;
            while let Some(d) = cursor.try_next().await? {
                let s = SiteDaily::from_document(&d)?;
                if let Some(row) = days.get_mut(&s.day) {
                    fill(row, &s.totals);
                    row.sessions = Some(s.sessions);
                }
                add(&mut totals, &s.totals);
                sessions += s.sessions;
                bounces += s.bounces;
                session_s += s.session_s_sum;
                for (top, list) in tops
                    .iter_mut()
                    .zip([s.countries, s.browsers, s.os, s.referrers])
                {
                    for c in list {
                        *top.entry(c.name).or_default() += c.count;
                    }
                }
            }
            o.sessions = Some(sessions);
            o.avg_session_s = mean(session_s, sessions);
            o.bounce_rate = (sessions > 0).then(|| bounces as f64 / sessions as f64);
            let [countries, browsers, os, referrers] = tops.map(top);
            (o.countries, o.browsers, o.os, o.referrers) = (countries, browsers, os, referrers);
        } else {
            let mut cursor = self.tutorial_days(range).await?;
            while let Some(d) = cursor.try_next().await? {
                let t = TutorialDaily::from_document(&d)?;
                if let Some(row) = days.get_mut(&t.day) {
                    fill(row, &t.totals);
                }
                add(&mut totals, &t.totals);
            }
        }
        let per = match range.foss().is_empty() {
            true => Per::Range,
            false => Per::Day,
        };
        let distinct = self.distinct(range, per).await?;
        // A learner viewing two tutorials of a day is one learner: the
        // FOSS's days are counted from the page views, not summed.
        for (day, (anonymous, learners)) in &distinct.days {
            if let Some(row) = days.get_mut(day) {
                row.anonymous_visitors = anonymous.len() as u64;
                row.learners = learners.len() as u64;
            }
        }
        o.page_views = totals.page_views;
        o.visits = totals.visits;
        o.visitors = distinct.visitors.len() as u64;
        o.learners = distinct.learners.len() as u64;
        o.returning_visits = totals.returning_visits;
        o.avg_time_on_page_s = mean(totals.time_on_page_s_sum, totals.time_on_page_n);
        o.video_s = totals.video_s;
        o.completions = totals.completions_auto + totals.completions_manual;
        o.series = days.into_values().collect();
        Ok(o)
    }

    /// One row per tutorial and language viewed in `range` or listed in the
    /// active catalog (so the unviewed show, with zeros), most viewed first.
    pub async fn tutorials(&self, range: &Range) -> Result<Vec<TutorialRow>, ReadError> {
        let summed = self.summed(range).await?;
        let distinct = self.distinct(range, Per::Tutorial).await?;
        let catalog = self.catalog(range).await?;
        let mains: Vec<&str> = catalog
            .iter()
            .filter(|c| c.main)
            .map(|c| c.video_id.as_str())
            .collect();
        let stats = self.video_stats(&mains).await?;
        let mut rows: HashMap<u64, TutorialRow> = HashMap::new();
        for (key, s) in summed {
            let (foss, tutorial, language) = s.names;
            let t = &s.totals;
            rows.insert(
                key,
                TutorialRow {
                    foss,
                    tutorial,
                    language,
                    views: t.page_views,
                    visits: t.visits,
                    avg_time_on_page_s: mean(t.time_on_page_s_sum, t.time_on_page_n),
                    completions: t.completions_auto + t.completions_manual,
                    video_s: t.video_s,
                    watched: t.video_s > 0.0,
                    ..TutorialRow::default()
                },
            );
        }
        for c in &catalog {
            let row = rows
                .entry(names_key(&c.foss, &c.tutorial, &c.language))
                .or_insert_with(|| TutorialRow {
                    foss: c.foss.clone(),
                    tutorial: c.tutorial.clone(),
                    language: c.language.clone(),
                    ..TutorialRow::default()
                });
            if c.main || row.title.is_none() {
                row.title = Some(c.title.clone());
            }
            if c.main {
                row.video_id = Some(c.video_id.clone());
                row.coverage_mean = stats.get(&c.video_id).and_then(|s| s.coverage_mean);
            }
        }
        for (key, row) in &mut rows {
            if let Some((visitors, learners)) = distinct.tutorials.get(key) {
                row.visitors = visitors.len() as u64;
                row.learners = learners.len() as u64;
            }
        }
        let mut rows: Vec<TutorialRow> = rows.into_values().collect();
        rows.sort_by(|a, b| {
            b.views.cmp(&a.views).then_with(|| {
                (&a.foss, &a.tutorial, &a.language).cmp(&(&b.foss, &b.tutorial, &b.language))
            })
        });
        Ok(rows)
    }

    /// `video_id`'s engagement over all time; `None` when nothing is known
    /// of it (neither in `video_stats` nor in the catalog).
    pub async fn video(&self, video_id: &str) -> Result<Option<VideoView>, ReadError> {
        let stats = self.video_stats(&[video_id]).await?.remove(video_id);
        let listed = self
            .coll(Coll::Catalog)
            .find_one(doc! { "_id": video_id })
            .await?
            .map(|d| CatalogEntry::read(&d));
        if stats.is_none() && listed.is_none() {
            return Ok(None);
        }
        let mut v = VideoView {
            video_id: video_id.to_owned(),
            segment_s: SEGMENT_S,
            ..VideoView::default()
        };
        if let Some(c) = &listed {
            v.title = Some(c.title.clone());
            (v.foss, v.tutorial, v.language) = (
                Some(c.foss.clone()),
                Some(c.tutorial.clone()),
                Some(c.language.clone()),
            );
            v.duration = c.duration;
        }
        if let Some(s) = stats {
            v.foss = v.foss.or(s.foss);
            v.tutorial = v.tutorial.or(s.tutorial);
            v.language = v.language.or(s.language);
            v.duration = v.duration.or(s.duration);
            v.viewers = s.viewers;
            v.plays = s.plays;
            v.watch_s = s.watch_s;
            v.coverage_mean = s.coverage_mean;
            v.completions = s.completions;
            v.users_at_start = s.users_at_start;
            v.users_at_end = s.users_at_end;
            v.segments = s.segments;
        }
        Ok(Some(v))
    }

    /// The active catalog's videos (of the range's FOSS) nobody watched in
    /// `range`: their tutorial had no credited video second in it, or the
    /// video never had a viewer. In catalog order.
    pub async fn unwatched(&self, range: &Range) -> Result<Vec<UnwatchedVideo>, ReadError> {
        let summed = self.summed(range).await?;
        let catalog = self.catalog(range).await?;
        let ids: Vec<&str> = catalog.iter().map(|c| c.video_id.as_str()).collect();
        let stats = self.video_stats(&ids).await?;
        let mut list: Vec<UnwatchedVideo> = catalog
            .into_iter()
            .filter_map(|c| {
                let key = names_key(&c.foss, &c.tutorial, &c.language);
                let in_range = summed.get(&key).is_some_and(|s| s.totals.video_s > 0.0);
                let viewers_ever = stats.get(&c.video_id).map_or(0, |s| s.viewers);
                (!in_range || viewers_ever == 0).then_some(UnwatchedVideo {
                    video_id: c.video_id,
                    foss: c.foss,
                    tutorial: c.tutorial,
                    language: c.language,
                    title: c.title,
                    duration: c.duration,
                    order: c.order,
                    main: c.main,
                    viewers_ever,
                })
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.foss, a.order, &a.tutorial, &a.language, &a.video_id).cmp(&(
                &b.foss,
                b.order,
                &b.tutorial,
                &b.language,
                &b.video_id,
            ))
        });
        Ok(list)
    }

    /// `learner`'s progress in every tutorial of the range's FOSS (all when
    /// it names none) and their sessions starting in the range that touched
    /// those FOSS (all sessions when it names none), most recent first, at
    /// most [`LEARNER_SESSIONS`].
    pub async fn learner(&self, learner: &str, range: &Range) -> Result<LearnerView, ReadError> {
        let mut filter = doc! { "learner": learner };
        if !range.foss().is_empty() {
            filter.insert("foss", one_of(range.foss()));
        }
        let mut tutorials = Vec::new();
        let mut cursor = self
            .coll(Coll::TutorialProgress)
            .find(filter)
            .limit(LEARNER_TUTORIALS)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let p = Progress::from_document(&d)?;
            tutorials.push(LearnerTutorial {
                foss: p.foss,
                tutorial: p.tutorial,
                language: p.language,
                completed: p.completed,
                completed_at: p.completed_at,
                completed_by: p.completed_by,
                completed_rule: p.completed_rule,
                video_id: p.video_id,
                coverage: p.coverage,
                visits: p.visits,
                first_visit: p.first_visit,
                last_visit: p.last_visit,
            });
        }
        tutorials.sort_by(|a, b| {
            b.last_visit.cmp(&a.last_visit).then_with(|| {
                (&a.foss, &a.tutorial, &a.language).cmp(&(&b.foss, &b.tutorial, &b.language))
            })
        });
        let (start, end) = instants(range);
        let mut filter = doc! { "learner": learner, "start": { "$gte": start, "$lt": end } };
        if !range.foss().is_empty() {
            filter.insert("tutorials.foss", one_of(range.foss()));
        }
        let mut sessions = Vec::new();
        let mut cursor = self
            .coll(Coll::Sessions)
            .find(filter)
            .sort(doc! { "start": -1 })
            .limit(LEARNER_SESSIONS as i64 + 1)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let s = Session::from_document(&d)?;
            sessions.push(LearnerSession {
                start: s.start,
                end: s.end,
                duration_s: s.duration_s,
                engaged_s: s.engaged_s,
                page_views: s.page_views,
                video_s: s.video_s,
                tutorials: s
                    .tutorials
                    .iter()
                    .map(|t| format!("{}/{}/{}", t.foss, t.tutorial, t.language))
                    .collect(),
                country: s.country,
                bounce: s.bounce,
            });
        }
        let truncated = sessions.len() > LEARNER_SESSIONS;
        sessions.truncate(LEARNER_SESSIONS);
        Ok(LearnerView {
            learner: learner.to_owned(),
            from: range.from().to_string(),
            to: range.to().to_string(),
            tutorials,
            sessions,
            sessions_truncated: truncated,
        })
    }

    /// The range's `tutorial_daily` documents (of its FOSS).
    async fn tutorial_days(&self, range: &Range) -> Result<mongodb::Cursor<Document>, ReadError> {
        let mut filter = range.day_filter();
        if !range.foss().is_empty() {
            filter.insert("foss", one_of(range.foss()));
        }
        Ok(self
            .coll(Coll::TutorialDaily)
            .find(filter)
            .batch_size(BATCH)
            .await?)
    }

    /// The range's tutorial days added up per tutorial and language.
    async fn summed(&self, range: &Range) -> Result<HashMap<u64, Summed>, ReadError> {
        let mut summed: HashMap<u64, Summed> = HashMap::new();
        let mut cursor = self.tutorial_days(range).await?;
        while let Some(d) = cursor.try_next().await? {
            let t = TutorialDaily::from_document(&d)?;
            let s = summed
                .entry(names_key(&t.foss, &t.tutorial, &t.language))
                .or_default();
            if s.names.0.is_empty() {
                s.names = (t.foss, t.tutorial, t.language);
            }
            add(&mut s.totals, &t.totals);
        }
        Ok(summed)
    }

    /// Distinct visitors and logged-in learners with a page view in the
    /// range (a tutorial page of its FOSS when it names some), and `per`
    /// tutorial or day. Exact up to 64-bit hash collisions.
    async fn distinct(&self, range: &Range, per: Per) -> Result<Distinct, ReadError> {
        let mut filter = range.day_filter();
        if !range.foss().is_empty() {
            filter.insert("tutorial.foss", one_of(range.foss()));
        }
        let mut cursor = self
            .coll(Coll::PageViews)
            .find(filter)
            .projection(doc! { "_id": 0, "visitor_id": 1, "learner": 1, "user": 1, "tutorial": 1, "day": 1 })
            .batch_size(BATCH)
            .await?;
        let mut out = Distinct::default();
        while let Some(d) = cursor.try_next().await? {
            let visitor = d.get_str("visitor_id").ok().map(hash_one);
            let learner = d
                .get_str("learner")
                .ok()
                .filter(|l| l.starts_with("user:"))
                .map(hash_one);
            out.visitors.extend(visitor);
            out.learners.extend(learner);
            if let (Per::Day, Ok(day)) = (per, d.get_str("day")) {
                let (anonymous, learners) = out.days.entry(day.to_owned()).or_default();
                if !matches!(d.get("user"), Some(Bson::String(_))) {
                    anonymous.extend(visitor);
                }
                learners.extend(learner);
            }
            if let (Per::Tutorial, Ok(t)) = (per, d.get_document("tutorial")) {
                let (Ok(foss), Ok(tutorial), Ok(language)) = (
                    t.get_str("foss"),
                    t.get_str("tutorial"),
                    t.get_str("language"),
                ) else {
                    continue;
                };
                let (visitors, learners) = out
                    .tutorials
                    .entry(names_key(foss, tutorial, language))
                    .or_default();
                visitors.extend(visitor);
                learners.extend(learner);
            }
        }
        Ok(out)
    }

    /// The active catalog (of the range's FOSS).
    async fn catalog(&self, range: &Range) -> Result<Vec<CatalogEntry>, ReadError> {
        let mut filter = doc! { "active": true };
        if !range.foss().is_empty() {
            filter.insert("foss", one_of(range.foss()));
        }
        let mut cursor = self
            .coll(Coll::Catalog)
            .find(filter)
            .batch_size(BATCH)
            .await?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            out.push(CatalogEntry::read(&d));
        }
        Ok(out)
    }

    /// The `video_stats` of `ids`, by video id.
    async fn video_stats(&self, ids: &[&str]) -> Result<HashMap<String, VideoStats>, ReadError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut cursor = self
            .coll(Coll::VideoStats)
            .find(doc! { "_id": { "$in": ids } })
            .batch_size(BATCH)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let s = VideoStats::from_document(&d)?;
            out.insert(s.video_id.clone(), s);
        }
        Ok(out)
    }
}

/// A catalog document, as far as the answers need it.
struct CatalogEntry {
    video_id: String,
    foss: String,
    tutorial: String,
    language: String,
    title: String,
    duration: Option<f64>,
    order: u32,
    main: bool,
}

impl CatalogEntry {
    fn read(d: &Document) -> Self {
        let s = |k: &str| d.get_str(k).unwrap_or_default().to_owned();
        Self {
            video_id: s("_id"),
            foss: s("foss"),
            tutorial: s("tutorial"),
            language: s("language"),
            title: s("title"),
            duration: number(d.get("duration")),
            order: number(d.get("order")).map_or(0, |n| n as u32),
            main: d.get_bool("main").unwrap_or(false),
        }
    }
}

/// A filter on one of `names`: equality for one (which every server's
/// planner takes to an index), `$in` for more.
fn one_of(names: &[String]) -> Bson {
    match names {
        [one] => Bson::String(one.clone()),
        many => Bson::Document(doc! { "$in": many }),
    }
}

fn number(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Double(f) => Some(*f),
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        _ => None,
    }
}

/// The range's first instant and the instant after its last day.
fn instants(range: &Range) -> (bson::DateTime, bson::DateTime) {
    let at = |d: NaiveDate| bson::DateTime::from_chrono(d.and_time(NaiveTime::MIN).and_utc());
    (at(range.from()), at(range.to() + Duration::days(1)))
}

fn hash_one(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn names_key(foss: &str, tutorial: &str, language: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (foss, tutorial, language).hash(&mut h);
    h.finish()
}

fn add(sum: &mut Totals, t: &Totals) {
    sum.page_views += t.page_views;
    sum.visits += t.visits;
    sum.learners += t.learners;
    sum.anonymous_visitors += t.anonymous_visitors;
    sum.returning_visits += t.returning_visits;
    sum.time_on_page_s_sum += t.time_on_page_s_sum;
    sum.time_on_page_n += t.time_on_page_n;
    sum.completions_auto += t.completions_auto;
    sum.completions_manual += t.completions_manual;
    sum.video_s += t.video_s;
}

fn fill(row: &mut DayRow, t: &Totals) {
    row.page_views += t.page_views;
    row.visits += t.visits;
    row.learners += t.learners;
    row.anonymous_visitors += t.anonymous_visitors;
    row.video_s += t.video_s;
    row.completions += t.completions_auto + t.completions_manual;
}

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// The `TOP` largest, most first, ties by name.
fn top(counts: BTreeMap<String, u64>) -> Vec<Count> {
    let mut list: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.count));
    list.truncate(TOP);
    list
}
