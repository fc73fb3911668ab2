//! Where a stretch of playback comes from, and whether the page could have
//! played it. Events that carry `played_from` say their stretch; those that
//! do not (edX-style streams: play, then pause) get it inferred from the
//! playing state of their page view, or visit, kept here per video
//! ([`Stream`]). Every stretch is then held to its page view's budget: the
//! playing time of its stretches (each one's media seconds over its rate)
//! at most the server time since the page was served, plus a slack
//! ([`PageView`]); events whose page view the fold never saw are held
//! to the budget of their visit and video, counted from its first event.
//! Both lists are bounded, least recently used first out, so the state stays
//! a deterministic function of the events in `_id` order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use visitlog_schema::{EventRecord, EventType};

use crate::serde_helpers::uuid_text;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;

/// Most page views remembered with their budget.
pub const MAX_PAGE_VIEWS: usize = 32;
/// Most streams (page view or visit, and video) remembered.
pub const MAX_STREAMS: usize = 64;

/// A tutorial page view, as its `page.view` event told the fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageView {
    /// The request record that served the page (what pages send as `page_view`).
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    /// Server time it was served (never the UUID's own time).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub at: DateTime<Utc>,
    /// Playing time of its stretches credited so far: each one's media
    /// seconds over its rate.
    pub wall_s: f64,
}

/// The playing state of one video in one page view (`page:<id>`) or, for
/// events without `page_view`, one visit (`visit:<visitor>:<n>`), session
/// (`session:<hash>`) or neither (`learner`); and the budget of those
/// without a known page view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// `page:<uuid>`, `visit:<visitor>:<n>`, `session:<hash>` or `learner`.
    pub context: String,
    /// The video.
    pub video_id: String,
    /// Playing since `position`, as far as the events tell.
    pub playing: bool,
    /// The latest position reported.
    pub position: f64,
    /// Server time of its first event (the budget's start).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub since: DateTime<Utc>,
    /// Playing time credited against this budget so far (media seconds
    /// over rate).
    pub wall_s: f64,
}

/// The context of an event's playing state: its page view, else its visit.
pub(crate) fn playing_context(e: &EventRecord) -> String {
    match e.page_view {
        Some(id) => format!("page:{id}"),
        None => visit_context(e),
    }
}

/// The context of the budget of an event whose page view is unknown.
pub(crate) fn visit_context(e: &EventRecord) -> String {
    if let Some(visit) = e.visit_key() {
        format!("visit:{visit}")
    } else if let Some(session) = &e.session_id {
        format!("session:{session}")
    } else {
        "learner".to_owned()
    }
}

/// The stream of `context` and `video_id`, made at `at` if new; moved to
/// the end (most recently used), the oldest dropped past [`MAX_STREAMS`].
pub(crate) fn stream<'a>(
    streams: &'a mut Vec<Stream>,
    context: String,
    video_id: &str,
    at: DateTime<Utc>,
) -> &'a mut Stream {
    let s = match streams
        .iter()
        .position(|s| s.context == context && s.video_id == video_id)
    {
        Some(i) => streams.remove(i),
        None => Stream {
            context,
            video_id: video_id.to_owned(),
            playing: false,
            position: 0.0,
            since: at,
            wall_s: 0.0,
        },
    };
    streams.push(s);
    if streams.len() > MAX_STREAMS {
        streams.remove(0);
    }
    let last = streams.len() - 1;
    &mut streams[last]
}

/// The stretch `(start, end)` an event reports (`played_from`) or implies
/// (from the stream's position while playing), and the stream moved on.
/// `duration` ends a `video.ended` without a position.
pub(crate) fn stretch(
    stream: &mut Stream,
    e: &EventRecord,
    duration: Option<f64>,
) -> Option<(f64, f64)> {
    let end = match e.event_type {
        EventType::VideoSeek => e.from,
        EventType::VideoEnded => e.position.or(duration),
        _ => e.position,
    };
    let start = match e.played_from {
        Some(from) => Some(from),
        None if stream.playing && e.event_type != EventType::VideoPlay => Some(stream.position),
        None => None,
    };
    let found = match (start, end) {
        (Some(a), Some(b)) if b >= a => Some((a, b)),
        _ => None,
    };
    match e.event_type {
        EventType::VideoPlay | EventType::VideoProgress => {
            stream.playing = true;
            stream.position = e.position.unwrap_or(stream.position);
        }
        EventType::VideoPause | EventType::VideoEnded => {
            stream.playing = false;
            stream.position = end.unwrap_or(stream.position);
        }
        // Playing continues (or not) from where the learner jumped to.
        EventType::VideoSeek => stream.position = e.to.or(e.position).unwrap_or(stream.position),
        _ => {}
    }
    found
}

/// Whether `media` more seconds played at `rate` fit a budget that started
/// at `since` and has `used` seconds of playing time already:
/// used + media / rate ≤ elapsed + slack / rate. At one rate throughout this
/// is the media ≤ rate × elapsed + slack; counted in playing time,
/// a learner who watched at 2× and then slows to 1× is not held to 1× for
/// what they watched at 2×.
pub(crate) fn fits(
    used: f64,
    media: f64,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
    rate: f64,
    slack: f64,
) -> bool {
    let elapsed = (at - since).num_milliseconds().max(0) as f64 / 1000.0;
    used + media / rate <= elapsed + slack / rate
}
