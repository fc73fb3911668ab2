//! The `tutorial_progress` document: one learner's progress in one
//! tutorial and language, which is also the state of the fold (`fold.rs`).
//! One type writes and reads it.

use std::fmt;

use bson::serde_helpers::{
    chrono_datetime_as_bson_datetime, chrono_datetime_as_bson_datetime_optional,
};
use bson::{Document, RawDocumentBuf};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DocumentError;
use crate::bits::Seconds;
use crate::serde_helpers::{intervals, uuid_list, uuid_text, whole};
use crate::stretch::{PageView, Stream};
use crate::watching::VideoProgress;

/// Most visitors remembered to tell a new visit from one already counted.
pub const MAX_RECENT_VISITORS: usize = 16;

/// Who completed a tutorial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletedBy {
    /// The watching rules.
    Auto,
    /// The learner's own mark.
    Manual,
}

impl fmt::Display for CompletedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompletedBy::Auto => "auto",
            CompletedBy::Manual => "manual",
        })
    }
}

/// Which rule completed a tutorial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletedRule {
    /// Coverage of the main video reached `completion_threshold`.
    Coverage,
    /// A real stretch covered the end point, with coverage of at least `end_min_coverage`.
    End,
    /// The learner's own mark.
    Manual,
}

impl fmt::Display for CompletedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompletedRule::Coverage => "coverage",
            CompletedRule::End => "end",
            CompletedRule::Manual => "manual",
        })
    }
}

/// Most `client_event_id`s remembered to skip a duplicate stored twice.
pub const MAX_CLIENT_EVENTS: usize = 256;

/// The latest manual mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manual {
    /// Marked complete (`true`) or incomplete.
    pub completed: bool,
    /// When.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub at: DateTime<Utc>,
    /// In which visit (`<visitor>:<n>`), when known (for the record: a mark
    /// holds whatever the visit).
    pub visit: Option<String>,
}

/// The latest visit number seen of one browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentVisit {
    /// The browser's visitor id.
    #[serde(with = "uuid_text")]
    pub visitor: Uuid,
    /// Its latest visit number.
    #[serde(with = "whole")]
    pub visit: u32,
}

/// One learner's progress in one tutorial and language: the fold state,
/// stored as the `tutorial_progress` document.
///
/// Optional fields are stored as `null`, never left out, as the validator
/// wants; reading, a missing one is `None`, and numbers may be of any BSON
/// number type.
///
/// Bounded: at most 16 `videos` of at most 2 × 10.8 KB of bits each at the
/// 86,400 s limit (about 350 KB), 256 `watched` intervals, 32 page views,
/// 64 streams and 256 client ids: under 500 KB at worst, far under
/// MongoDB's 16 MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// [`visitlog_schema::progress_id`] of the four fields below.
    #[serde(rename = "_id")]
    pub id: String,
    /// Learner key.
    pub learner: String,
    /// Tutorial.
    pub foss: String,
    /// Tutorial.
    pub tutorial: String,
    /// Tutorial.
    pub language: String,
    /// The tutorial's main video (the catalog's, else the longest), once
    /// an event named one.
    pub video_id: Option<String>,
    /// First visit to the tutorial page.
    #[serde(default, with = "chrono_datetime_as_bson_datetime_optional")]
    pub first_visit: Option<DateTime<Utc>>,
    /// Latest visit to the tutorial page.
    #[serde(default, with = "chrono_datetime_as_bson_datetime_optional")]
    pub last_visit: Option<DateTime<Utc>>,
    /// Distinct visits to the tutorial page.
    #[serde(with = "whole")]
    pub visits: u32,
    /// Completed, by the rules or by hand.
    pub completed: bool,
    /// When it was completed.
    #[serde(default, with = "chrono_datetime_as_bson_datetime_optional")]
    pub completed_at: Option<DateTime<Utc>>,
    /// How it was completed.
    pub completed_by: Option<CompletedBy>,
    /// Which rule completed it.
    #[serde(default)]
    pub completed_rule: Option<CompletedRule>,
    /// The main video's watched seconds as `[start, end)` intervals, sorted
    /// and disjoint (past 256, the smallest gaps shown closed).
    #[serde(with = "intervals")]
    pub watched: Vec<[u32; 2]>,
    /// The main video's duration (the latest reported, or the catalog's).
    pub duration: Option<f64>,
    /// The main video's watched fraction of the duration, 0 to 1 (0 while
    /// the duration is unknown).
    #[serde(default)]
    pub coverage: f64,
    /// Each video's watching (at most 16, first seen first).
    #[serde(default)]
    pub videos: Vec<VideoProgress>,
    /// Video events of videos past the 16th, not followed.
    #[serde(default, with = "whole")]
    pub ignored: u64,
    /// Recent page views and their budgets (most recent last, at most 32).
    #[serde(default)]
    pub page_views: Vec<PageView>,
    /// Recent playing states and budgets (most recently used last, at most 64).
    #[serde(default)]
    pub streams: Vec<Stream>,
    /// Recent `client_event_id`s folded (most recent last, at most 256).
    #[serde(default, with = "uuid_list")]
    pub client_events: Vec<Uuid>,
    /// The latest manual mark.
    pub manual: Option<Manual>,
    /// The latest visit number seen per visitor (most recent last, bounded
    /// by [`MAX_RECENT_VISITORS`]).
    pub recent_visits: Vec<RecentVisit>,
    /// The newest event folded in.
    #[serde(with = "uuid_text")]
    pub through: Uuid,
    /// How many events were folded in.
    #[serde(with = "whole")]
    pub folded: u64,
    /// Server time of the newest event folded in.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
    /// Some event folded in came from a user the app marked as staff: the
    /// document is kept, but no analytics figure counts it. Absent (false)
    /// in older documents.
    #[serde(default)]
    pub staff: bool,
}

impl Progress {
    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// The same document as raw BSON, written in one pass, as the driver
    /// sends it (what the consumer writes).
    pub fn to_raw_document(&self) -> Result<RawDocumentBuf, DocumentError> {
        Ok(bson::to_raw_document_buf(self)?)
    }

    /// Reads a stored document back. A document written before the
    /// per-video seconds gets them from its `watched` intervals, which were
    /// then the truth, so folding on top of it loses nothing.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        let mut p: Self = bson::from_document(doc.clone())?;
        if let (true, Some(video)) = (p.videos.is_empty(), &p.video_id) {
            let mut v = VideoProgress::new(video);
            v.seen = Seconds::from_intervals(&p.watched);
            if let Some(d) = p.duration.filter(|d| *d > 0.0) {
                v.set_duration(d);
            }
            p.videos.push(v);
        }
        Ok(p)
    }
}
