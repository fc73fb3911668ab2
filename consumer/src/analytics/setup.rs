//! The indexes the analytics read by: each computation reads one visit,
//! one learner from a time, one video or one day, never a whole collection.

use std::collections::BTreeSet;

use bson::{Document, doc};
use futures_util::TryStreamExt;
use mongodb::IndexModel;
use visitlog_analytics::{Span, rollup_id};
use visitlog_schema::Collection as Coll;

use super::engine::Analytics;
use super::marks::{DerivedKind, Mark};
use super::store::{PAGE_VIEWS, SESSIONS};
use crate::error::Result;

impl Analytics {
    /// Creates the indexes (idempotent; every start runs it).
    pub async fn setup(&self) -> Result<()> {
        let db = self.sink.database();
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.marks.create_indexes().await?;
        // A visit's pings; a learner's events from a time (sessions).
        self.sink
            .events()
            .create_indexes([
                index(doc! { "page_view": 1 }),
                index(doc! { "learner": 1, "ts": 1 }),
            ])
            .await?;
        for name in [PAGE_VIEWS, SESSIONS] {
            db.collection::<Document>(name)
                .create_indexes([
                    index(doc! { "learner": 1, "start": 1 }),
                    index(doc! { "day": 1 }),
                ])
                .await?;
        }
        // A range of days (of some FOSS), for the staff analytics.
        db.collection::<Document>(Coll::SiteDaily.name())
            .create_indexes([index(doc! { "day": 1 })])
            .await?;
        db.collection::<Document>(Coll::TutorialDaily.name())
            .create_indexes([
                index(doc! { "day": 1 }),
                index(doc! { "foss": 1, "day": 1 }),
            ])
            .await?;
        let progress = self.sink.tutorial_progress();
        progress
            .create_indexes([
                index(doc! { "completed_at": 1 }),
                index(doc! { "foss": 1, "tutorial": 1, "language": 1 }),
            ])
            .await?;
        // A video's progress documents. nx-27017 (the wire-protocol server
        // tests may use) answers queries on an array field wrongly once an
        // index covers it: it names itself in `buildInfo` and goes without.
        let build = db.run_command(doc! { "buildInfo": 1 }).await?;
        if build.get_str("process") != Ok("nx_27017") {
            progress
                .create_index(index(doc! { "videos.video_id": 1 }))
                .await?;
        }
        self.backfill_rollups().await
    }

    /// Marks every day that has a `site_daily` document but no rollup (an
    /// installation from before rollups), so the staff answers cover its
    /// history once the marks are computed.
    async fn backfill_rollups(&self) -> Result<()> {
        let db = self.sink.database();
        let ids = |name: &'static str, filter: Document| {
            let coll = db.collection::<Document>(name);
            async move {
                let docs: Vec<Document> = coll
                    .find(filter)
                    .projection(doc! { "_id": 1 })
                    .await?
                    .try_collect()
                    .await?;
                Ok::<_, crate::error::Error>(
                    docs.iter()
                        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                        .collect::<BTreeSet<String>>(),
                )
            }
        };
        let days = ids(Coll::SiteDaily.name(), doc! {}).await?;
        let rolled = ids(Coll::Rollups.name(), doc! { "span": "day" }).await?;
        let missing: Vec<Mark> = days
            .into_iter()
            .filter(|day| !rolled.contains(&rollup_id(Span::Day, day)))
            .map(|day| Mark::new(DerivedKind::Day, day))
            .collect();
        if !missing.is_empty() {
            tracing::info!(
                days = missing.len(),
                "deriving the rollups of days derived before them"
            );
            self.marks.mark(missing).await?;
        }
        // Likewise the video index, when videos have figures but no index.
        let index = db
            .collection::<Document>(Coll::Rollups.name())
            .find_one(doc! { "_id": rollup_id(Span::Videos, "") })
            .await?;
        let stats = db
            .collection::<Document>(Coll::VideoStats.name())
            .find_one(doc! {})
            .await?;
        if index.is_none() && stats.is_some() {
            self.marks
                .mark([Mark::new(DerivedKind::Videos, super::videos::VIDEO_INDEX)])
                .await?;
        }
        Ok(())
    }
}
