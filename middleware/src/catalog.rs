//! [`CatalogPublisher`]: the app declares what it offers (its tutorials and
//! their videos) by shipping `kind: "catalog"` records through the layer's
//! own non-blocking shipper, the way Open edX Aspects' event sink sends
//! course data when a course is published.
//!
//! A publication is one FOSS's whole catalog ([`CatalogRecord`]): the
//! consumer keeps one `catalog` document per `video_id`, the newest
//! publication of a FOSS wins whatever order they arrive in, and videos
//! missing from a newer publication become inactive. So publishing is
//! idempotent: publish at start-up, and again whenever the catalog changes.
//!
//! ```no_run
//! # fn run(capture: visitlog_middleware::CaptureLayer) -> Result<(), visitlog_middleware::CatalogError> {
//! use visitlog_middleware::CatalogItem;
//!
//! let published = capture.catalog().publish(vec![CatalogItem {
//!     foss: "Python".into(),
//!     tutorial: "Getting-started".into(),
//!     language: "English".into(),
//!     video_id: "Python/Getting-started/English".into(),
//!     title: "Getting started with Python".into(),
//!     duration: Some(600.0),
//!     order: 1,
//!     main: true,
//!     level: Some("beginner".into()),
//! }])?;
//! assert_eq!(published, 1); // one publication per FOSS
//! # Ok(()) }
//! ```

use std::sync::Arc;

use chrono::Utc;
use visitlog_schema::{CatalogItem, CatalogRecord};

use crate::capture::CaptureLayer;
use crate::shared::{Item, Shared};
use crate::stats::Counters;

/// Why a publication was not handed to the shipper. Nothing of the call was
/// shipped in any case, so the app may fix or retry the whole call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// An item or the publication is invalid; the field is named as in the
    /// caller's list, e.g. `items[3].duration`.
    #[error("invalid catalog: {0}")]
    Invalid(#[from] visitlog_schema::CatalogError),
    /// The shipper's channel has no room for the publications now (it
    /// keeps room for request records): retry later.
    #[error("the log shipper is busy; no catalog record was taken, retry later")]
    Busy,
    /// The shipper has stopped: nothing can be shipped any more.
    #[error("the log shipper has stopped")]
    Closed,
}

impl CatalogError {
    /// The invalid field (`items[i].field`), for [`CatalogError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(e) => Some(&e.field),
            _ => None,
        }
    }
}

/// Publishes the app's catalog through the layer's shipper; made with
/// [`CaptureLayer::catalog`]. Cheap to clone; never waits for Redis.
#[derive(Clone)]
pub struct CatalogPublisher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CatalogPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogPublisher").finish_non_exhaustive()
    }
}

impl CaptureLayer {
    /// The catalog publisher of this layer: its records go through the same
    /// shipper, to the same Redis list, as the request records.
    pub fn catalog(&self) -> CatalogPublisher {
        CatalogPublisher {
            shared: self.shared.clone(),
        }
    }
}

impl CatalogPublisher {
    /// Publishes `items` of any number of FOSSes: one publication per FOSS
    /// (all at one version, now), each the whole catalog of its FOSS. All
    /// are checked first; one bad item refuses the whole call, naming it as
    /// `items[i].field` (`i` its index in `items`), and nothing is shipped.
    ///
    /// Returns the number of publications handed to the shipper. An empty
    /// list publishes nothing: to retire all of a FOSS's videos, use
    /// [`Self::publish_foss`] with an empty list.
    pub fn publish(&self, items: Vec<CatalogItem>) -> Result<usize, CatalogError> {
        // Where each publication's items sit in the caller's list, so that
        // an error names the caller's index, not the publication's.
        let mut positions: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match positions.iter_mut().find(|(foss, _)| *foss == item.foss) {
                Some((_, at)) => at.push(i),
                None => positions.push((item.foss.clone(), vec![i])),
            }
        }
        let records = CatalogRecord::per_foss(items, Utc::now());
        for (record, (_, at)) in records.iter().zip(&positions) {
            record
                .check()
                .map_err(|e| CatalogError::Invalid(renumber(e, at)))?;
        }
        self.ship(records)
    }

    /// Publishes the whole catalog of one FOSS. `items` may be empty: the
    /// consumer then marks all of the FOSS's videos inactive.
    pub fn publish_foss(&self, foss: &str, items: Vec<CatalogItem>) -> Result<(), CatalogError> {
        let record = CatalogRecord::new(foss, items);
        record.check()?;
        self.ship(vec![record]).map(|_| ())
    }

    /// Hands all `records` to the shipper or none.
    fn ship(&self, records: Vec<CatalogRecord>) -> Result<usize, CatalogError> {
        let n = records.len();
        if n == 0 {
            return Ok(0);
        }
        if self.shared.tx.is_closed() {
            return Err(CatalogError::Closed);
        }
        let items = records
            .into_iter()
            .map(|record| Item::Catalog(Box::new(record)));
        if !self.shared.hand_over_all(n, items) {
            return Err(CatalogError::Busy);
        }
        Counters::add(&self.shared.counters.catalog, n);
        Ok(n)
    }
}

/// `items[j].field` of one publication as `items[at[j]].field`.
fn renumber(mut e: visitlog_schema::CatalogError, at: &[usize]) -> visitlog_schema::CatalogError {
    let index = e
        .field
        .strip_prefix("items[")
        .and_then(|rest| rest.split_once(']'));
    if let Some((j, rest)) = index
        && let Some(i) = j.parse::<usize>().ok().and_then(|j| at.get(j))
    {
        e.field = format!("items[{i}]{rest}");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shipper::Shipper;

    fn layer() -> (CaptureLayer, Shipper) {
        let config = Config::default()
            .cookie_key("0123456789abcdef0123456789abcdef")
            .redis_url("redis://127.0.0.1:1".to_owned());
        CaptureLayer::new(config).expect("a valid configuration")
    }

    fn item(foss: &str, tutorial: &str, video: &str) -> CatalogItem {
        CatalogItem {
            foss: foss.into(),
            tutorial: tutorial.into(),
            language: "English".into(),
            video_id: video.into(),
            title: format!("{tutorial} video"),
            duration: Some(30.0),
            order: 1,
            main: true,
            level: None,
        }
    }

    /// What the shipper would put on the Redis list, as JSON values.
    fn shipped(shipper: &mut Shipper) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(item) = shipper.rx.try_recv() {
            let bytes = shipper.serialise(item).expect("serialisable");
            out.push(serde_json::from_slice(&bytes).expect("JSON"));
        }
        out
    }

    #[tokio::test]
    async fn two_foss_become_two_records_of_one_version_that_round_trip() {
        let (layer, mut shipper) = layer();
        let n = layer
            .catalog()
            .publish(vec![
                item("Python", "Intro", "p1"),
                item("Java", "Hello", "j1"),
                item("Python", "Functions", "p2"),
            ])
            .expect("a good catalog");
        assert_eq!(n, 2);
        let records: Vec<CatalogRecord> = shipped(&mut shipper)
            .into_iter()
            .map(|json| {
                assert_eq!(json["kind"], "catalog");
                serde_json::from_value(json).expect("a CatalogRecord")
            })
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].foss, "Python");
        assert_eq!(
            records[0]
                .items
                .iter()
                .map(|i| i.video_id.as_str())
                .collect::<Vec<_>>(),
            ["p1", "p2"]
        );
        assert_eq!(records[1].foss, "Java");
        assert_eq!(records[0].version, records[1].version, "one version");
        assert_ne!(records[0].id, records[1].id);
        assert!(records.iter().all(|r| r.check().is_ok()));
        let stats = layer.stats();
        assert_eq!((stats.catalog, stats.captured), (2, 2));
    }

    #[tokio::test]
    async fn a_bad_item_refuses_the_call_naming_it_and_ships_nothing() {
        let (layer, mut shipper) = layer();
        let mut bad = item("Python", "Functions", "p2");
        bad.duration = Some(-1.0);
        // Index 2 in the caller's list, though index 1 of Python's record.
        let err = layer
            .catalog()
            .publish(vec![
                item("Python", "Intro", "p1"),
                item("Java", "Hello", "j1"),
                bad,
            ])
            .expect_err("a negative duration");
        assert_eq!(err.field(), Some("items[2].duration"), "{err}");
        let mut twice = item("Java", "Hello", "j1");
        twice.main = false;
        let err = layer
            .catalog()
            .publish(vec![item("Java", "Hello", "j1"), twice])
            .expect_err("a video listed twice");
        assert_eq!(err.field(), Some("items[1].video_id"), "{err}");
        assert!(shipped(&mut shipper).is_empty(), "nothing shipped");
        assert_eq!(layer.stats().captured, 0);
    }

    #[tokio::test]
    async fn an_empty_publication_of_one_foss_is_shipped() {
        let (layer, mut shipper) = layer();
        assert_eq!(layer.catalog().publish(Vec::new()), Ok(0));
        layer
            .catalog()
            .publish_foss("Scilab", Vec::new())
            .expect("an empty catalog retires the FOSS");
        let json = shipped(&mut shipper);
        assert_eq!(json.len(), 1);
        assert_eq!(json[0]["foss"], "Scilab");
        assert_eq!(json[0]["items"], serde_json::json!([]));
        let err = layer
            .catalog()
            .publish_foss("Scilab", vec![item("Python", "Intro", "p1")])
            .expect_err("another FOSS's item");
        assert_eq!(err.field(), Some("items[0].foss"));
    }

    #[tokio::test]
    async fn a_full_channel_refuses_without_blocking_and_a_stopped_shipper_is_said() {
        let config = Config::default()
            .cookie_key("0123456789abcdef0123456789abcdef")
            .redis_url("redis://127.0.0.1:1".to_owned())
            .buffer_records(4);
        let (layer, shipper) = CaptureLayer::new(config).expect("a valid configuration");
        let publisher = layer.catalog();
        // A channel of 4 keeps 1 for request records: 3 publications fit.
        for n in 0..3 {
            publisher
                .publish_foss("Python", vec![item("Python", "Intro", &format!("p{n}"))])
                .expect("room");
        }
        assert_eq!(
            publisher.publish_foss("Python", vec![item("Python", "Intro", "p9")]),
            Err(CatalogError::Busy)
        );
        drop(shipper);
        assert_eq!(
            publisher.publish_foss("Python", Vec::new()),
            Err(CatalogError::Closed)
        );
    }
}
