//! `video_stats`: a claimed video's figures computed again from the
//! `tutorial_progress` documents that hold it (one per learner and
//! tutorial, read in learner order), with the catalog's duration and
//! tutorial when it lists the video. Each write marks the `videos` rollup,
//! every video's reach in one document, computed again from `video_stats`.

use bson::{Document, doc};
use chrono::Utc;
use futures_util::TryStreamExt;
use visitlog_analytics::{Rollup, VideoIndex, VideoReach, VideoStatsFold};
use visitlog_progress::Progress;
use visitlog_schema::Collection as Coll;

use super::engine::{Analytics, Computed};
use super::marks::{Claimed, DerivedKind, Mark};
use super::store::{READ_BATCH, replace_all};
use crate::error::Result;

impl Analytics {
    pub(super) async fn videos(&self, claimed: &[Claimed]) -> Result<Computed> {
        let catalog = self
            .sink
            .database()
            .collection::<Document>(Coll::Catalog.name());
        let mut docs = Vec::new();
        let now = Utc::now();
        for c in claimed {
            let video = &c.mark.key;
            let listed = catalog.find_one(doc! { "_id": video }).await?;
            let duration = listed
                .as_ref()
                .and_then(|d| d.get("duration"))
                .and_then(bson::Bson::as_f64);
            let mut fold = VideoStatsFold::new(video, duration, self.rules);
            if let Some(d) = &listed
                && let (Ok(f), Ok(t), Ok(l)) = (
                    d.get_str("foss"),
                    d.get_str("tutorial"),
                    d.get_str("language"),
                )
            {
                fold = fold.tutorial(f, t, l);
            }
            let mut cursor = self
                .sink
                .tutorial_progress()
                .find(doc! { "videos.video_id": video })
                .sort(doc! { "learner": 1, "_id": 1 })
                .batch_size(READ_BATCH)
                .await?;
            while let Some(d) = cursor.try_next().await? {
                match Progress::from_document(&d) {
                    Ok(p) => fold.add(&p),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable progress skipped by video_stats")
                    }
                }
            }
            let mut stats = fold.finish();
            stats.fence = c.fence;
            stats.derived_at = now;
            match stats.to_document() {
                Ok(d) => docs.push(d),
                Err(e) => tracing::error!(%video, error = %e, "video stats not written"),
            }
        }
        let feeds = match docs.is_empty() {
            true => Vec::new(),
            false => vec![Mark::new(DerivedKind::Videos, VIDEO_INDEX)],
        };
        Ok(Computed {
            written: replace_all(&self.sink, Coll::VideoStats, docs).await?,
            feeds,
            ..Computed::default()
        })
    }

    /// The `videos` rollup: two fields of every `video_stats` document, by
    /// video id.
    pub(super) async fn video_index(&self, claimed: &[Claimed]) -> Result<Computed> {
        let Some(c) = claimed.first() else {
            return Ok(Computed::default());
        };
        let mut cursor = self
            .sink
            .database()
            .collection::<Document>(Coll::VideoStats.name())
            .find(doc! {})
            .projection(VideoReach::fields())
            .sort(doc! { "_id": 1 })
            .batch_size(READ_BATCH)
            .await?;
        let mut index = VideoIndex::default();
        while let Some(d) = cursor.try_next().await? {
            index.videos.extend(VideoReach::from_stats(&d));
        }
        let mut docs = Vec::new();
        match Rollup::videos(&index).and_then(|mut r| {
            (r.fence, r.derived_at) = (c.fence, Utc::now());
            r.to_document()
        }) {
            Ok(d) => docs.push(d),
            Err(e) => tracing::error!(error = %e, "the video index was not written"),
        }
        Ok(Computed {
            written: replace_all(&self.sink, Coll::Rollups, docs).await?,
            ..Computed::default()
        })
    }
}

/// The key of the `videos` rollup's mark.
pub(super) const VIDEO_INDEX: &str = "all";
