//! One video's watching, as the `videos` entries of a `tutorial_progress`
//! document keep it: the seconds seen (all time) and counted (since the
//! latest manual "incomplete"), media and wall-clock seconds, suspect
//! stretches, whether the end was reached, and the coverage these give.

use serde::{Deserialize, Serialize};

use crate::Rules;
use crate::bits::{MAX_SECONDS, Seconds};
use crate::serde_helpers::{whole, wholes};

/// Width in media seconds of the segments [`VideoProgress::views`] counts
/// (the drop-off curve of `video_stats`).
pub const SEGMENT_S: u32 = 5;

/// Most videos followed per tutorial page; events of further videos count
/// in `ignored` only, so the document stays bounded.
pub const MAX_VIDEOS: usize = 16;

/// One video's watching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoProgress {
    /// The video.
    pub video_id: String,
    /// The latest reported duration (or the catalog's); `None` until known.
    pub duration: Option<f64>,
    /// Seconds ever watched, one bit per second.
    pub seen: Seconds,
    /// Seconds watched since the latest manual "incomplete"; `None` when
    /// there was no such mark since this video was first seen (then it is
    /// `seen`, not stored twice).
    pub counted: Option<Seconds>,
    /// Media seconds of credited stretches, rewatching included.
    pub played_s: f64,
    /// Wall-clock seconds of credited stretches (each stretch / its rate).
    pub wall_s: f64,
    /// Media seconds of suspect stretches (more than the page could play).
    pub suspect_s: f64,
    /// How many stretches were suspect.
    #[serde(with = "whole")]
    pub suspect: u64,
    /// A credited stretch of at least `end_min_stretch` covered the end
    /// point, since the latest manual "incomplete".
    pub end_reached: bool,
    /// Seen seconds over the duration, 0 to 1; `None` until the duration is known.
    pub coverage: Option<f64>,
    /// Credited viewings: stretches that are a viewing by [`credit`] and
    /// plausible (suspect ones are not plays). Absent (0) in older documents.
    #[serde(default, with = "whole")]
    pub plays: u64,
    /// Per [`SEGMENT_S`]-second segment `k` (`[5k, 5k+5)`), how many credited
    /// stretches set a second in it; trailing segments no stretch reached
    /// are left out, so it is bounded by the duration (or [`MAX_SECONDS`]).
    /// Absent (empty) in older documents.
    #[serde(default, with = "wholes")]
    pub views: Vec<u32>,
}

/// What a stretch of playback is worth (rule of sub-second stretches).
#[derive(Debug, Clone, PartialEq)]
pub enum Credit {
    /// Shorter than `min_viewing`: not a viewing, counts nowhere.
    Nothing,
    /// A viewing: its media seconds, and the seconds it sets (maybe none).
    Viewing {
        /// Media seconds, `end − start`.
        media: f64,
        /// Seconds to set.
        seconds: std::ops::Range<u32>,
    },
}

/// The credit of the stretch `start..end` of media time: under
/// `min_viewing` nothing; under 0.5 s media seconds but no second; else the
/// seconds [round(start), round(end)), or when that is empty the one
/// second floor((start + end) / 2).
pub fn credit(start: f64, end: f64, rules: &Rules) -> Credit {
    let media = end - start;
    if media.is_nan() || media < rules.min_viewing {
        return Credit::Nothing;
    }
    let seconds = if media < 0.5 {
        0..0
    } else {
        let (a, b) = (second(start.round()), second(end.round()));
        if a < b {
            a..b
        } else {
            let mid = second(((start + end) / 2.0).floor());
            mid..mid + 1
        }
    };
    Credit::Viewing { media, seconds }
}

fn second(t: f64) -> u32 {
    t.clamp(0.0, f64::from(MAX_SECONDS)) as u32
}

impl VideoProgress {
    /// A video not watched yet.
    pub fn new(video_id: &str) -> Self {
        Self {
            video_id: video_id.to_owned(),
            duration: None,
            seen: Seconds::default(),
            counted: None,
            played_s: 0.0,
            wall_s: 0.0,
            suspect_s: 0.0,
            suspect: 0,
            end_reached: false,
            coverage: None,
            plays: 0,
            views: Vec::new(),
        }
    }

    /// Sets the duration and recomputes coverage from the seconds.
    pub fn set_duration(&mut self, duration: f64) {
        self.duration = Some(duration);
        self.coverage = Some(fraction(&self.seen, duration));
    }

    /// Credits a plausible viewing `start..end` at `rate`.
    pub fn watch(&mut self, start: f64, end: f64, rate: f64, rules: &Rules) {
        let Credit::Viewing { media, seconds } = credit(start, end, rules) else {
            return;
        };
        self.played_s += media;
        self.wall_s += media / rate;
        // Seconds past a known duration are not set (a stale report).
        let top = self.duration.map_or(MAX_SECONDS, seconds_of);
        let seconds = seconds.start..seconds.end.min(top);
        self.plays += 1;
        self.count_views(&seconds);
        self.seen.insert(seconds.clone());
        if let Some(counted) = &mut self.counted {
            counted.insert(seconds);
        }
        if let Some(d) = self.duration {
            let point = rules.end_point(d);
            if media >= rules.end_min_stretch && start <= point && point <= end {
                self.end_reached = true;
            }
            self.coverage = Some(fraction(&self.seen, d));
        }
    }

    /// One more view of each segment the credited `seconds` touch (none for
    /// a viewing too short to set a second).
    fn count_views(&mut self, seconds: &std::ops::Range<u32>) {
        if seconds.start >= seconds.end {
            return;
        }
        let first = (seconds.start / SEGMENT_S) as usize;
        let last = ((seconds.end - 1) / SEGMENT_S) as usize;
        if self.views.len() <= last {
            self.views.resize(last + 1, 0);
        }
        for v in &mut self.views[first..=last] {
            *v = v.saturating_add(1);
        }
    }

    /// Records a stretch that was more than the page could have played.
    pub fn suspect(&mut self, start: f64, end: f64, rules: &Rules) {
        if let Credit::Viewing { media, .. } = credit(start, end, rules) {
            self.suspect_s += media;
            self.suspect += 1;
        }
    }

    /// A manual "incomplete": from now on only what is watched counts.
    pub fn mark_incomplete(&mut self) {
        self.counted = Some(Seconds::default());
        self.end_reached = false;
    }

    /// Coverage of the seconds counted for completion; `None` until the
    /// duration is known.
    pub fn counted_coverage(&self) -> Option<f64> {
        let d = self.duration?;
        Some(fraction(self.counted.as_ref().unwrap_or(&self.seen), d))
    }
}

/// Seconds below ceil(d) over d, capped at 1.
fn fraction(seconds: &Seconds, duration: f64) -> f64 {
    if duration.is_nan() || duration <= 0.0 {
        return 0.0;
    }
    (f64::from(seconds.count_below(seconds_of(duration))) / duration).min(1.0)
}

fn seconds_of(duration: f64) -> u32 {
    second(duration.ceil())
}
