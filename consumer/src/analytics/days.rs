//! `tutorial_daily` and `site_daily`: a claimed day's figures computed
//! again from that day's page views, the sessions that started on it, and
//! the progress documents completed on it.

use bson::{DateTime as BsonDate, Document, doc};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use visitlog_analytics::{PageView, Session, SiteDay, TutorialDay, TutorialDayKey};
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
            let mut acc = TutorialDay::new(
                TutorialDayKey {
                    foss: foss.to_owned(),
                    tutorial: tutorial.to_owned(),
                    language: language.to_owned(),
                    day: day.to_owned(),
                },
                &self.rules,
            );
            let pages = doc! { "day": day, "tutorial.foss": foss, "tutorial.tutorial": tutorial, "tutorial.language": language };
            self.each(PAGE_VIEWS, pages, |d| {
                if let Ok(p) = PageView::from_document(d) {
                    acc.add_page(&p);
                }
            })
            .await?;
            let sessions = doc! { "day": day, "tutorials.tutorial": tutorial };
            self.each(SESSIONS, sessions, |d| {
                if let Ok(s) = Session::from_document(d) {
                    acc.add_session(&s);
                }
            })
            .await?;
            let completed = doc! {
                "foss": foss, "tutorial": tutorial, "language": language,
                "completed": true, "completed_at": { "$gte": start, "$lt": end },
            };
            self.each_progress(completed, |p| acc.add_completion(p))
                .await?;
            let mut daily = acc.finish();
            daily.fence = c.fence;
            daily.derived_at = Utc::now();
            if let Ok(d) = daily.to_document() {
                docs.push(d);
            }
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
            let mut acc = SiteDay::new(day, &self.rules);
            self.each(PAGE_VIEWS, doc! { "day": day }, |d| {
                if let Ok(p) = PageView::from_document(d) {
                    acc.add_page(&p);
                }
            })
            .await?;
            self.each(SESSIONS, doc! { "day": day }, |d| {
                if let Ok(s) = Session::from_document(d) {
                    acc.add_session(&s);
                }
            })
            .await?;
            let completed =
                doc! { "completed": true, "completed_at": { "$gte": start, "$lt": end } };
            self.each_progress(completed, |p| acc.add_completion(p))
                .await?;
            let mut daily = acc.finish();
            daily.fence = c.fence;
            daily.derived_at = Utc::now();
            if let Ok(d) = daily.to_document() {
                docs.push(d);
            }
        }
        Ok(Computed {
            written: replace_all(&self.sink, visitlog_schema::Collection::SiteDaily, docs).await?,
            feeds: Vec::new(),
        })
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
