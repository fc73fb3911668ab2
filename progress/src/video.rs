//! The `video_positions` document: where a learner stopped in a video.
//! No fold: the newest event per learner and video wins.

use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType, video_position_id};

use crate::DocumentError;
use crate::serde_helpers::uuid_text;

/// One learner's resume position in one video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoPosition {
    /// [`video_position_id`] of `learner` and `video_id`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Learner key.
    pub learner: String,
    /// The video.
    pub video_id: String,
    /// Its tutorial.
    pub foss: String,
    /// Its tutorial.
    pub tutorial: String,
    /// Its tutorial.
    pub language: String,
    /// Where to resume, in seconds; 0 after the video ended.
    pub position: f64,
    /// The video's duration in seconds; 0 when the event did not say.
    pub duration: f64,
    /// Server time of the event.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
    /// The event it comes from; only a newer one replaces it.
    #[serde(with = "uuid_text")]
    pub last_event: Uuid,
}

impl VideoPosition {
    /// The position an event makes, if it is a video event. After
    /// `video.ended` the resume position is 0. A seek with `from == to` and
    /// no stretch (a page's own resume seek) moves nothing.
    pub fn of(e: &EventRecord) -> Option<Self> {
        if !e.event_type.is_video() {
            return None;
        }
        let own_seek = e.event_type == EventType::VideoSeek
            && e.played_from.is_none()
            && e.from.is_some()
            && e.from == e.to;
        if own_seek {
            return None;
        }
        let video_id = e.video_id.as_deref()?;
        let position = match e.event_type {
            EventType::VideoEnded => 0.0,
            _ => e.position?,
        };
        Some(Self {
            id: video_position_id(&e.learner, video_id),
            learner: e.learner.clone(),
            video_id: video_id.to_owned(),
            foss: e.foss.clone(),
            tutorial: e.tutorial.clone(),
            language: e.language.clone(),
            position,
            duration: e.duration.unwrap_or(0.0),
            updated_at: e.ts,
            last_event: e.id,
        })
    }

    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }
}
