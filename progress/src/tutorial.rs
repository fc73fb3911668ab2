//! The `tutorial_progress` document: one learner's progress in one
//! tutorial and language, which is also the state of the fold (`fold.rs`).
//! One type writes and reads it.

use std::fmt;

use bson::Document;
use bson::serde_helpers::{
    chrono_datetime_as_bson_datetime, chrono_datetime_as_bson_datetime_optional,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DocumentError;
use crate::serde_helpers::{intervals, uuid_text, whole};

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

/// The latest manual mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manual {
    /// Marked complete (`true`) or incomplete.
    pub completed: bool,
    /// When.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub at: DateTime<Utc>,
    /// In which visit (`<visitor>:<n>`), when known.
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
    /// The tutorial's video, once an event named it.
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
    /// Merged watched intervals, whole seconds, sorted and disjoint.
    #[serde(with = "intervals")]
    pub watched: Vec<[u32; 2]>,
    /// The video's duration (the largest reported).
    pub duration: Option<f64>,
    /// Watched fraction of the duration, 0 to 1.
    #[serde(default)]
    pub coverage: f64,
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
}

impl Progress {
    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }
}
