//! The `tutorial_progress` validator's rules on the typed document, so the
//! consumer checks what it is about to write (a guard against our own
//! bugs) without turning it into JSON first. What serde's types carry
//! (required fields, types, enums, no other fields) needs no check; the
//! rest is here: lengths, ranges, list sizes, patterns, finite numbers and
//! dates RFC 3339 can write. [`Progress::check`] accepts exactly what
//! `schema/validators/tutorial_progress.json` accepts of the document
//! [`Progress::to_document`] makes; the property test in `tests` proves
//! it over documents built to break each rule.

use uuid::Uuid;
use visitlog_schema::ValidationFailure;
use visitlog_schema::check::{
    Checked, date, items, length, number, optional_date, optional_length, optional_number, refuse,
};

use crate::bits::{MAX_SECONDS, MAX_WATCHED_INTERVALS, Seconds};
use crate::stretch::{MAX_PAGE_VIEWS, MAX_STREAMS, PageView, Stream};
use crate::tutorial::{MAX_CLIENT_EVENTS, MAX_RECENT_VISITORS, Progress};
use crate::watching::{MAX_VIDEOS, VideoProgress};

/// A day's seconds: the validator's bound on positions and durations.
const DAY: f64 = MAX_SECONDS as f64;
/// Longest `foss`, `tutorial`, `language` and video id.
const NAME: usize = 512;
/// Longest learner key.
const LEARNER: usize = 272;
/// Longest stream context.
const CONTEXT: usize = 600;
/// Longest manual mark's visit.
const VISIT: usize = 64;
/// Longest base64 text of a video's seconds (86,400 bits).
const SECONDS_TEXT: usize = 14_400;
/// Most view counts per video (one per 5-second segment of a day).
const SEGMENTS: usize = 17_280;

/// A UUID v7 of the RFC variant (the pattern of event and record ids).
fn v7(path: &str, id: &Uuid) -> Checked {
    if id.get_version_num() == 7 && id.as_bytes()[8] & 0xc0 == 0x80 {
        return Ok(());
    }
    refuse(path, "not a UUID v7 (pattern)".to_owned())
}

fn seconds(path: &str, s: &Seconds) -> Checked {
    if s.stored_bytes().div_ceil(3) * 4 > SECONDS_TEXT {
        return refuse(
            path,
            format!("longer than {SECONDS_TEXT} characters (maxLength)"),
        );
    }
    Ok(())
}

impl Progress {
    /// Checks the `tutorial_progress` validator's rules that the types do
    /// not carry; the refusal names the field (a JSON pointer) and the rule.
    pub fn check(&self) -> Result<(), ValidationFailure> {
        let id = self.id.as_bytes();
        if id.len() != 32 || !id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return refuse("/_id", "not 32 hex digits (pattern)".to_owned());
        }
        length("/learner", &self.learner, 1, LEARNER)?;
        length("/foss", &self.foss, 1, NAME)?;
        length("/tutorial", &self.tutorial, 1, NAME)?;
        length("/language", &self.language, 1, NAME)?;
        optional_length("/video_id", self.video_id.as_ref(), 1, NAME)?;
        optional_date("/first_visit", self.first_visit.as_ref())?;
        optional_date("/last_visit", self.last_visit.as_ref())?;
        optional_date("/completed_at", self.completed_at.as_ref())?;
        items("/watched", self.watched.len(), MAX_WATCHED_INTERVALS)?;
        for (i, [a, b]) in self.watched.iter().enumerate() {
            for (j, end) in [a, b].into_iter().enumerate() {
                if *end > MAX_SECONDS {
                    let path = format!("/watched/{i}/{j}");
                    return refuse(
                        &path,
                        format!("greater than the maximum of {DAY} (maximum)"),
                    );
                }
            }
        }
        optional_number("/duration", self.duration, 0.0, DAY)?;
        number("/coverage", self.coverage, 0.0, 1.0)?;
        items("/videos", self.videos.len(), MAX_VIDEOS)?;
        for (i, v) in self.videos.iter().enumerate() {
            v.check().map_err(|f| under(&format!("/videos/{i}"), f))?;
        }
        items("/page_views", self.page_views.len(), MAX_PAGE_VIEWS)?;
        for (i, p) in self.page_views.iter().enumerate() {
            p.check()
                .map_err(|f| under(&format!("/page_views/{i}"), f))?;
        }
        items("/streams", self.streams.len(), MAX_STREAMS)?;
        for (i, s) in self.streams.iter().enumerate() {
            s.check().map_err(|f| under(&format!("/streams/{i}"), f))?;
        }
        items(
            "/client_events",
            self.client_events.len(),
            MAX_CLIENT_EVENTS,
        )?;
        if let Some(m) = &self.manual {
            date("/manual/at", &m.at)?;
            optional_length("/manual/visit", m.visit.as_ref(), 1, VISIT)?;
        }
        items(
            "/recent_visits",
            self.recent_visits.len(),
            MAX_RECENT_VISITORS,
        )?;
        for (i, r) in self.recent_visits.iter().enumerate() {
            if r.visit == 0 {
                let path = format!("/recent_visits/{i}/visit");
                return refuse(&path, "less than the minimum of 1 (minimum)".to_owned());
            }
        }
        v7("/through", &self.through)?;
        if self.folded == 0 {
            return refuse("/folded", "less than the minimum of 1 (minimum)".to_owned());
        }
        date("/updated_at", &self.updated_at)
    }
}

/// A refusal inside an item, its path put under the item's.
fn under(at: &str, f: ValidationFailure) -> ValidationFailure {
    ValidationFailure {
        path: format!("{at}{}", f.path),
        message: f.message,
    }
}

impl VideoProgress {
    fn check(&self) -> Checked {
        length("/video_id", &self.video_id, 1, NAME)?;
        optional_number("/duration", self.duration, 0.0, DAY)?;
        seconds("/seen", &self.seen)?;
        if let Some(counted) = &self.counted {
            seconds("/counted", counted)?;
        }
        number("/played_s", self.played_s, 0.0, f64::MAX)?;
        number("/wall_s", self.wall_s, 0.0, f64::MAX)?;
        number("/suspect_s", self.suspect_s, 0.0, f64::MAX)?;
        optional_number("/coverage", self.coverage, 0.0, 1.0)?;
        items("/views", self.views.len(), SEGMENTS)
    }
}

impl PageView {
    fn check(&self) -> Checked {
        v7("/id", &self.id)?;
        date("/at", &self.at)?;
        number("/wall_s", self.wall_s, 0.0, f64::MAX)
    }
}

impl Stream {
    fn check(&self) -> Checked {
        length("/context", &self.context, 1, CONTEXT)?;
        length("/video_id", &self.video_id, 1, NAME)?;
        number("/position", self.position, 0.0, DAY)?;
        date("/since", &self.since)?;
        number("/wall_s", self.wall_s, 0.0, f64::MAX)
    }
}
