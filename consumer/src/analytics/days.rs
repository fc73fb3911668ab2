//! `tutorial_daily`, `site_daily` and `rollups`: a claimed day's figures
//! computed again from that day's page views, the sessions that started on
//! it, and the progress documents completed on it; a claimed month's rollup
//! from its days' rollups. The tutorial days claimed together are computed
//! from one read of their day, not one each. A day's `site_daily` and its
//! rollup come from the same fold, so they always agree.

use std::collections::BTreeMap;

use bson::{DateTime as BsonDate, Document, doc};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use visitlog_analytics::{
    DayFold, PageView, PeriodSum, Rollup, Session, SiteDay, Span, TutorialDay, TutorialDayKey,
    rollup_id,
};
use visitlog_progress::Progress;
use visitlog_schema::Collection as Coll;

use super::engine::{Analytics, Computed};
use super::marks::{Claimed, DerivedKind, Mark};
use super::store::{PAGE_VIEWS, READ_BATCH, SESSIONS, find_all, replace_all};
use crate::error::Result;

/// The claimed tutorials of one day (by foss, tutorial, language, so a
/// routed document is looked up by its borrowed names), each with its fence.
#[derive(Default)]
struct TutorialsOfDay(BTreeMap<String, BTreeMap<String, Languages>>);

/// A tutorial's claimed languages: its accumulator and fence each.
type Languages = BTreeMap<String, (TutorialDay, i64)>;

impl TutorialsOfDay {
    fn insert(&mut self, key: TutorialDayKey, acc: TutorialDay, fence: i64) {
        let TutorialDayKey {
            foss,
            tutorial,
            language,
            ..
        } = key;
        self.0
            .entry(foss)
            .or_default()
            .entry(tutorial)
            .or_default()
            .insert(language, (acc, fence));
    }

    fn get(&mut self, foss: &str, tutorial: &str, language: &str) -> Option<&mut TutorialDay> {
        let (day, _) = self.0.get_mut(foss)?.get_mut(tutorial)?.get_mut(language)?;
        Some(day)
    }

    fn into_days(self) -> impl Iterator<Item = (TutorialDay, i64)> {
        self.0
            .into_values()
            .flat_map(BTreeMap::into_values)
            .flat_map(BTreeMap::into_values)
    }
}

impl DayFold for TutorialsOfDay {
    fn add_page(&mut self, p: &PageView) {
        if let Some(t) = &p.tutorial
            && let Some(day) = self.get(&t.foss, &t.tutorial, &t.language)
        {
            day.add_page(p);
        }
    }

    fn add_session(&mut self, s: &Session) {
        for t in &s.tutorials {
            if let Some(day) = self.get(&t.foss, &t.tutorial, &t.language) {
                day.add_session(s);
            }
        }
    }

    fn add_completion(&mut self, p: &Progress) {
        if let Some(day) = self.get(&p.foss, &p.tutorial, &p.language) {
            day.add_completion(p);
        }
    }
}

impl Analytics {
    pub(super) async fn tutorial_days(&self, claimed: &[Claimed]) -> Result<Computed> {
        let mut days: BTreeMap<String, TutorialsOfDay> = BTreeMap::new();
        for c in claimed {
            let a = &c.mark.args;
            let (Ok(foss), Ok(tutorial), Ok(language), Ok(day)) = (
                a.get_str("foss"),
                a.get_str("tutorial"),
                a.get_str("language"),
                a.get_str("day"),
            ) else {
                tracing::warn!(key = %c.mark.key, "tutorial-day mark without its names; skipped");
                continue;
            };
            let key = TutorialDayKey {
                foss: foss.to_owned(),
                tutorial: tutorial.to_owned(),
                language: language.to_owned(),
                day: day.to_owned(),
            };
            let acc = TutorialDay::new(key.clone(), &self.rules);
            days.entry(day.to_owned())
                .or_default()
                .insert(key, acc, c.fence);
        }
        let mut docs = Vec::new();
        let now = Utc::now();
        for (day, mut tutorials) in days {
            if !self.feed_day(&day, &mut tutorials).await? {
                tracing::warn!(key = %day, "not a day; skipped");
                continue;
            }
            for (acc, fence) in tutorials.into_days() {
                let mut daily = acc.finish();
                (daily.fence, daily.derived_at) = (fence, now);
                docs.extend(built(daily.to_document()));
            }
        }
        Ok(Computed {
            written: replace_all(&self.sink, Coll::TutorialDaily, docs).await?,
            ..Computed::default()
        })
    }

    pub(super) async fn days(&self, claimed: &[Claimed]) -> Result<Computed> {
        let (mut docs, mut rollups, mut feeds) = (Vec::new(), Vec::new(), Vec::new());
        let now = Utc::now();
        for c in claimed {
            let day = c.mark.key.as_str();
            let mut acc = SiteDay::new(day, &self.rules);
            if !self.feed_day(day, &mut acc).await? {
                tracing::warn!(key = %day, "not a day; skipped");
                continue;
            }
            let (mut daily, period) = acc.finish_with_period();
            (daily.fence, daily.derived_at) = (c.fence, now);
            docs.extend(built(daily.to_document()));
            let rollup = Rollup::new(Span::Day, day, &period).map(|mut r| {
                (r.fence, r.derived_at) = (c.fence, now);
                r
            });
            rollups.extend(built(rollup.and_then(|r| r.to_document())));
            feeds.push(Mark::new(DerivedKind::Month, day.get(..7).unwrap_or(day)));
        }
        let written = replace_all(&self.sink, Coll::SiteDaily, docs).await?
            + replace_all(&self.sink, Coll::Rollups, rollups).await?;
        Ok(Computed {
            written,
            feeds,
            ..Computed::default()
        })
    }

    /// Each claimed month's rollup: its days' rollups added up in day order
    /// (none: the month's rollup is deleted).
    pub(super) async fn months(&self, claimed: &[Claimed]) -> Result<Computed> {
        let (mut docs, mut empty) = (Vec::new(), Vec::new());
        let now = Utc::now();
        let rollups = self.sink.database().collection(Coll::Rollups.name());
        for c in claimed {
            let month = c.mark.key.as_str();
            let Some(start) = month_start(month) else {
                tracing::warn!(key = %month, "not a month; skipped");
                continue;
            };
            // `day:YYYY-MM-` sorts before the month's days, `day:YYYY-MM.` after.
            let days = doc! { "_id": {
                "$gt": rollup_id(Span::Day, &format!("{month}-")),
                "$lt": rollup_id(Span::Day, &format!("{month}.")),
            } };
            let stored = find_all(&rollups, days, doc! { "_id": 1 }).await?;
            let mut sum = PeriodSum::default();
            for d in &stored {
                match Rollup::from_document(d).and_then(|r| r.period()) {
                    Ok(p) => sum.add(p),
                    Err(error) => {
                        tracing::error!(%error, "a day's rollup could not be read; left out of its month")
                    }
                }
            }
            if stored.is_empty() {
                empty.push(rollup_id(Span::Month, month));
                continue;
            }
            let rollup = Rollup::new(Span::Month, &start, &sum.finish()).map(|mut r| {
                (r.fence, r.derived_at) = (c.fence, now);
                r
            });
            docs.extend(built(rollup.and_then(|r| r.to_document())));
        }
        let written = replace_all(&self.sink, Coll::Rollups, docs).await?
            + super::store::delete_ids(&self.sink, Coll::Rollups.name(), empty).await?;
        Ok(Computed {
            written,
            ..Computed::default()
        })
    }

    /// Feeds `acc` the page views of `day`, the sessions that started on
    /// it and the progress documents completed on it, streamed; false for
    /// a key that is not a day.
    async fn feed_day(&self, day: &str, acc: &mut impl DayFold) -> Result<bool> {
        let Some((start, end)) = bounds(day) else {
            return Ok(false);
        };
        let db = self.sink.database();
        let day_of = doc! { "day": day };
        each(&db.collection(PAGE_VIEWS), day_of.clone(), |d| {
            if let Ok(p) = PageView::from_document(d) {
                acc.add_page(&p);
            }
        })
        .await?;
        each(&db.collection(SESSIONS), day_of, |d| {
            if let Ok(s) = Session::from_document(d) {
                acc.add_session(&s);
            }
        })
        .await?;
        let completed = doc! { "completed": true, "completed_at": { "$gte": start, "$lt": end } };
        each(self.sink.tutorial_progress(), completed, |d| {
            if let Ok(p) = Progress::from_document(d) {
                acc.add_completion(&p);
            }
        })
        .await?;
        Ok(true)
    }
}

/// Streams the documents of `coll` matching `filter` into `f`.
async fn each(
    coll: &mongodb::Collection<Document>,
    filter: Document,
    mut f: impl FnMut(&Document),
) -> Result<()> {
    let mut cursor = coll.find(filter).batch_size(READ_BATCH).await?;
    while let Some(d) = cursor.try_next().await? {
        f(&d);
    }
    Ok(())
}

/// A built document, or nothing (logged).
fn built(
    doc: std::result::Result<Document, visitlog_analytics::DocumentError>,
) -> Option<Document> {
    doc.inspect_err(|error| tracing::error!(%error, "a day's document could not be built"))
        .ok()
}

/// The first day of a `YYYY-MM` month, `YYYY-MM-01`.
fn month_start(month: &str) -> Option<String> {
    let start = format!("{month}-01");
    NaiveDate::parse_from_str(&start, "%Y-%m-%d").ok()?;
    Some(start)
}

/// The day's first instant and the next day's, as BSON dates; `None` for
/// a key that is not `YYYY-MM-DD`.
fn bounds(day: &str) -> Option<(BsonDate, BsonDate)> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let start: DateTime<Utc> = d.and_hms_opt(0, 0, 0)?.and_utc();
    let end = start + chrono::Duration::days(1);
    Some((BsonDate::from_chrono(start), BsonDate::from_chrono(end)))
}
