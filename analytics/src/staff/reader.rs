//! Reading the derived documents back for staff: the figures of a range of
//! days from `rollups` (its whole months' rollups and its other days'; a
//! month whose rollup is missing is read as its days), distinct visitors
//! and learners from their sketches, videos from `video_stats` and the
//! catalog, one learner from `tutorial_progress` and `sessions`. Every read
//! is a `find` on `_id` ranges or an indexed field with a limit; the
//! figures are computed here, in Rust, never by the server's aggregation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use bson::{Bson, Document, doc};
use chrono::{Datelike, Duration, Months, NaiveDate, NaiveTime};
use futures_util::TryStreamExt;
use mongodb::{Collection, Database};
use visitlog_progress::{Progress, ReadError, SEGMENT_S};
use visitlog_schema::Collection as Coll;

use super::Range;
use super::figures::{
    DayRow, LearnerSession, LearnerTutorial, LearnerView, Overview, TutorialRow, UnwatchedVideo,
    VideoView,
};
use crate::{
    Count, Period, PeriodSum, Reach, Rollup, Session, Span, Totals, TutorialPart, VideoReach,
    VideoStats, rollup_id,
};

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

    /// The figures of `range`: the whole site's when it names no FOSS,
    /// else those FOSS's tutorial pages' (without sessions or top lists,
    /// which are kept for the whole site only).
    pub async fn overview(&self, range: &Range) -> Result<Overview, ReadError> {
        let p = self.period(range).await?;
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
        let (totals, reach) = if range.foss().is_empty() {
            for d in &p.days {
                if let Some(row) = days.get_mut(&d.day) {
                    fill(row, &d.totals);
                    row.sessions = Some(d.sessions);
                }
            }
            o.sessions = Some(p.sessions);
            o.avg_session_s = mean(p.session_s_sum, p.sessions);
            o.bounce_rate = (p.sessions > 0).then(|| p.bounces as f64 / p.sessions as f64);
            let top = |list: &[Count]| list.iter().take(TOP).cloned().collect::<Vec<_>>();
            (o.countries, o.browsers, o.os, o.referrers) = (
                top(&p.countries),
                top(&p.browsers),
                top(&p.os),
                top(&p.referrers),
            );
            (p.totals, p.reach)
        } else {
            let asked = |foss: &String| range.foss().contains(foss);
            for d in &p.days {
                if let Some(row) = days.get_mut(&d.day) {
                    for f in d.foss.iter().filter(|f| asked(&f.foss)) {
                        fill(row, &f.totals);
                    }
                }
            }
            let (mut totals, mut reach) = (Totals::default(), Reach::default());
            for f in p.foss.iter().filter(|f| asked(&f.foss)) {
                totals.add(&f.totals);
                reach.merge(&f.reach);
            }
            (totals, reach)
        };
        o.page_views = totals.page_views;
        o.visits = totals.visits;
        o.visitors = reach.visitors.count();
        o.learners = reach.learners.count();
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
        let (parts, catalog, stats) = futures_util::try_join!(
            self.tutorial_parts(range),
            self.catalog(range),
            self.video_reach(range)
        )?;
        let mut rows: HashMap<u64, TutorialRow> = HashMap::new();
        for t in parts {
            let (sum, reach) = (&t.totals, &t.reach);
            rows.insert(
                names_key(&t.foss, &t.tutorial, &t.language),
                TutorialRow {
                    views: sum.page_views,
                    visits: sum.visits,
                    visitors: reach.visitors.count(),
                    learners: reach.learners.count(),
                    avg_time_on_page_s: mean(sum.time_on_page_s_sum, sum.time_on_page_n),
                    completions: sum.completions_auto + sum.completions_manual,
                    video_s: sum.video_s,
                    watched: sum.video_s > 0.0,
                    foss: t.foss,
                    tutorial: t.tutorial,
                    language: t.language,
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
                row.coverage_mean = stats.get(&c.video_id).and_then(|s| s.1);
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
        let stats = match self
            .coll(Coll::VideoStats)
            .find_one(doc! { "_id": video_id })
            .await?
        {
            Some(d) => Some(VideoStats::from_document(&d)?),
            None => None,
        };
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
        let (parts, catalog, stats) = futures_util::try_join!(
            self.tutorial_parts(range),
            self.catalog(range),
            self.video_reach(range)
        )?;
        let watched: HashSet<u64> = parts
            .iter()
            .filter(|t| t.totals.video_s > 0.0)
            .map(|t| names_key(&t.foss, &t.tutorial, &t.language))
            .collect();
        let mut list: Vec<UnwatchedVideo> = catalog
            .into_iter()
            .filter_map(|c| {
                let key = names_key(&c.foss, &c.tutorial, &c.language);
                let in_range = watched.contains(&key);
                let viewers_ever = stats.get(&c.video_id).map_or(0, |s| s.0);
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

    /// The range's figures: its whole months from their rollups (a month
    /// without one from its days'), its other days from theirs, added up in
    /// `_id` order.
    async fn period(&self, range: &Range) -> Result<Period, ReadError> {
        let coll = self.coll(Coll::Rollups);
        let mut stored: Vec<Document> = Vec::new();
        let months = whole_months(range.from(), range.to());
        let mut day_spans: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        if let (Some(first), Some(last)) = (months.first(), months.last()) {
            let key = |d: &NaiveDate| rollup_id(Span::Month, &d.format("%Y-%m").to_string());
            let found: Vec<Document> = coll
                .find(doc! { "_id": { "$gte": key(first), "$lte": key(last) } })
                .batch_size(BATCH)
                .await?
                .try_collect()
                .await?;
            let have: HashSet<String> = found
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect();
            for m in &months {
                if !have.contains(&key(m)) {
                    day_spans.push((*m, month_end(*m)));
                }
            }
            stored.extend(found);
            if range.from() < *first {
                day_spans.push((range.from(), *first - Duration::days(1)));
            }
            let after = month_end(*last) + Duration::days(1);
            if after <= range.to() {
                day_spans.push((after, range.to()));
            }
        } else {
            day_spans.push((range.from(), range.to()));
        }
        for (a, b) in day_spans {
            let key = |d: NaiveDate| rollup_id(Span::Day, &d.to_string());
            let mut cursor = coll
                .find(doc! { "_id": { "$gte": key(a), "$lte": key(b) } })
                .batch_size(BATCH)
                .await?;
            while let Some(d) = cursor.try_next().await? {
                stored.push(d);
            }
        }
        stored.sort_by(|a, b| a.get_str("_id").ok().cmp(&b.get_str("_id").ok()));
        let mut sum = PeriodSum::default();
        for d in &stored {
            sum.add(Rollup::from_document(d)?.period()?);
        }
        Ok(sum.finish())
    }

    /// The range's tutorials (of its FOSS), each added up over the range.
    async fn tutorial_parts(&self, range: &Range) -> Result<Vec<TutorialPart>, ReadError> {
        let p = self.period(range).await?;
        Ok(p.tutorials
            .into_iter()
            .filter(|t| range.foss().is_empty() || range.foss().contains(&t.foss))
            .collect())
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

    /// The viewers and mean coverage of the videos of the range's FOSS
    /// (all when it names none), by video id: from the `videos` rollup, or
    /// two fields of their `video_stats` while it is not derived yet. Read
    /// beside the catalog, not after it.
    async fn video_reach(
        &self,
        range: &Range,
    ) -> Result<HashMap<String, (u64, Option<f64>)>, ReadError> {
        let mut out = HashMap::new();
        let index = self
            .coll(Coll::Rollups)
            .find_one(doc! { "_id": rollup_id(Span::Videos, "") })
            .await?;
        if let Some(d) = index {
            let index = Rollup::from_document(&d)?.video_index()?;
            for v in index.videos {
                let asked = range.foss().is_empty()
                    || v.foss.as_ref().is_some_and(|f| range.foss().contains(f));
                if asked {
                    out.insert(v.video_id, (v.viewers, v.coverage_mean));
                }
            }
            return Ok(out);
        }
        let mut filter = doc! {};
        if !range.foss().is_empty() {
            filter.insert("foss", one_of(range.foss()));
        }
        let mut cursor = self
            .coll(Coll::VideoStats)
            .find(filter)
            .projection(VideoReach::fields())
            .batch_size(BATCH)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            if let Some(v) = VideoReach::from_stats(&d) {
                out.insert(v.video_id, (v.viewers, v.coverage_mean));
            }
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

fn names_key(foss: &str, tutorial: &str, language: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (foss, tutorial, language).hash(&mut h);
    h.finish()
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

/// The first days of the calendar months wholly inside `from..=to`.
fn whole_months(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut m = from.with_day(1).unwrap_or(from);
    if m < from {
        m = month_end(m) + Duration::days(1);
    }
    while month_end(m) <= to {
        out.push(m);
        m = month_end(m) + Duration::days(1);
    }
    out
}

/// The last day of `first`'s month.
fn month_end(first: NaiveDate) -> NaiveDate {
    let next = first
        .with_day(1)
        .and_then(|d| d.checked_add_months(Months::new(1)))
        .unwrap_or(NaiveDate::MAX);
    next.pred_opt().unwrap_or(next)
}
