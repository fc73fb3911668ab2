//! `tutorial_daily` and `site_daily`: a claimed day's figures computed
//! again from that day's page views, the sessions that started on it, and
//! the progress documents completed on it.

use bson::{DateTime as BsonDate, Document, doc};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use visitlog_analytics::{DayFold, PageView, Session, SiteDay, TutorialDay, TutorialDayKey};
use visitlog_progress::Progress;

use super::engine::{Analytics, Computed};
use super::marks::Claimed;
use super::store::{PAGE_VIEWS, READ_BATCH, SESSIONS, replace_all};
use crate::error::Result;

impl Analytics {
    pub(super) async fn tutorial_days(&self, claimed: &[Claimed]) -> Result<Computed> {
        let mut docs = Vec::new();
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
            let Some((start, end)) = bounds(day) else {
                continue;
            };
            let acc = TutorialDay::new(
                TutorialDayKey {
                    foss: foss.to_owned(),
                    tutorial: tutorial.to_owned(),
                    language: language.to_owned(),
                    day: day.to_owned(),
                },
                &self.rules,
            );
            let pages = doc! { "day": day, "tutorial.foss": foss, "tutorial.tutorial": tutorial, "tutorial.language": language };
            let sessions = doc! { "day": day, "tutorials.tutorial": tutorial };
            let completed = doc! {
                "foss": foss, "tutorial": tutorial, "language": language,
                "completed": true, "completed_at": { "$gte": start, "$lt": end },
            };
            docs.extend(
                self.day_document(acc, c.fence, [pages, sessions, completed])
                    .await?,
            );
        }
        Ok(Computed {
            written: replace_all(&self.sink, visitlog_schema::Collection::TutorialDaily, docs)
                .await?,
            feeds: Vec::new(),
        })
    }

    pub(super) async fn days(&self, claimed: &[Claimed]) -> Result<Computed> {
        let mut docs = Vec::new();
        for c in claimed {
            let day = c.mark.key.as_str();
            let Some((start, end)) = bounds(day) else {
                tracing::warn!(key = %day, "not a day; skipped");
                continue;
            };
            let acc = SiteDay::new(day, &self.rules);
            let completed =
                doc! { "completed": true, "completed_at": { "$gte": start, "$lt": end } };
            docs.extend(
                self.day_document(
                    acc,
                    c.fence,
                    [doc! { "day": day }, doc! { "day": day }, completed],
                )
                .await?,
            );
        }
        Ok(Computed {
            written: replace_all(&self.sink, visitlog_schema::Collection::SiteDaily, docs).await?,
            feeds: Vec::new(),
        })
    }

    /// One day's document: `acc` fed the page views, sessions and
    /// completed progress documents the three filters find.
    async fn day_document(
        &self,
        mut acc: impl DayFold,
        fence: i64,
        [pages, sessions, completed]: [Document; 3],
    ) -> Result<Option<Document>> {
        self.each(PAGE_VIEWS, pages, |d| {
            if let Ok(p) = PageView::from_document(d) {
                acc.add_page(&p);
            }
        })
        .await?;
        self.each(SESSIONS, sessions, |d| {
            if let Ok(s) = Session::from_document(d) {
                acc.add_session(&s);
            }
        })
        .await?;
        self.each_progress(completed, |p| acc.add_completion(p))
            .await?;
        Ok(acc
            .into_document(fence, Utc::now())
            .inspect_err(|error| tracing::error!(%error, "a day's document could not be built"))
            .ok())
    }

    /// Streams the documents of `collection` that `filter` finds.
    async fn each(
        &self,
        collection: &str,
        filter: Document,
        mut f: impl FnMut(&Document),
    ) -> Result<()> {
        let mut cursor = self
            .sink
            .database()
            .collection::<Document>(collection)
            .find(filter)
            .batch_size(READ_BATCH)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            f(&d);
        }
        Ok(())
    }

    /// Streams the progress documents `filter` finds.
    async fn each_progress(&self, filter: Document, mut f: impl FnMut(&Progress)) -> Result<()> {
        let mut cursor = self
            .sink
            .tutorial_progress()
            .find(filter)
            .batch_size(READ_BATCH)
            .await?;
        while let Some(d) = cursor.try_next().await? {
            if let Ok(p) = Progress::from_document(&d) {
                f(&p);
            }
        }
        Ok(())
    }
}

/// The day's first instant and the next day's, as BSON dates; `None` for
/// a key that is not `YYYY-MM-DD`.
fn bounds(day: &str) -> Option<(BsonDate, BsonDate)> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let start: DateTime<Utc> = d.and_hms_opt(0, 0, 0)?.and_utc();
    let end = start + chrono::Duration::days(1);
    Some((BsonDate::from_chrono(start), BsonDate::from_chrono(end)))
}
