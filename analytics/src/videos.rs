//! The `video_stats` collection: one document per video, from the
//! `tutorial_progress` documents that hold it: who watched, how much, how
//! far, and the drop-off curve per segment. Videos nobody watched get one
//! too (all zeros), so the catalog's unwatched videos show up.

use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitlog_progress::{DocumentError, Progress, SEGMENT_S, Seconds, VideoProgress};

use crate::AnalyticsRules;

/// One segment of a video: `[start, start + segment_s)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Its first second.
    pub start: u32,
    /// Learners with a watched second in it.
    pub viewers: u64,
    /// Credited stretches through it.
    pub views: u64,
}

/// One video's engagement, as stored in `video_stats`; `fence` and
/// `derived_at` are the caller's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoStats {
    /// The video.
    #[serde(rename = "_id")]
    pub id: String,
    /// The video.
    pub video_id: String,
    /// Its tutorial (the catalog's, else the first by name of its documents).
    pub foss: Option<String>,
    /// See `foss`.
    pub tutorial: Option<String>,
    /// See `foss`.
    pub language: Option<String>,
    /// The catalog's duration, else the largest reported.
    pub duration: Option<f64>,
    /// Learners with at least one watched second.
    pub viewers: u64,
    /// Credited viewings.
    pub plays: u64,
    /// Media seconds watched, repeats included.
    pub watch_s: f64,
    /// Σ over learners of distinct seconds watched.
    pub unique_s: u64,
    /// Mean coverage (0–1) over viewers; `None` without viewers or duration.
    pub coverage_mean: Option<f64>,
    /// Lower median coverage over viewers; `None` likewise.
    pub coverage_p50: Option<f64>,
    /// Completed tutorials whose main video this is.
    pub completions: u64,
    /// Viewers with a watched second in the first segment.
    pub users_at_start: u64,
    /// Viewers with a watched second in the segment of max(d − 30, 0.95 d).
    pub users_at_end: u64,
    /// Per segment, from 0 up to the duration.
    pub segments: Vec<Segment>,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

impl VideoStats {
    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }
}

/// One learner's watching of the video, merged over their documents.
#[derive(Debug)]
struct Viewer {
    learner: String,
    seen: Seconds,
}

/// Folds `tutorial_progress` documents into one video's [`VideoStats`].
///
/// Give the documents sorted by `learner` (any order within and across
/// learners otherwise): a learner's documents are merged while they come
/// in a row, so one who watched the video on two pages counts once.
/// Memory: one learner's seconds, one coverage per viewer, one count per segment.
#[derive(Debug)]
pub struct VideoStatsFold {
    video_id: String,
    catalog_duration: Option<f64>,
    tutorial: Option<(String, String, String)>,
    from_catalog: bool,
    rules: AnalyticsRules,
    largest: Option<f64>,
    current: Option<Viewer>,
    /// Per viewer: seen seconds below the catalog duration (all seen
    /// seconds without one).
    counts: Vec<u32>,
    unique_s: u64,
    plays: u64,
    watch_s: f64,
    completions: u64,
    viewers: Vec<u64>,
    views: Vec<u64>,
}

impl VideoStatsFold {
    /// No document yet, for `video_id`, with the catalog's duration when it has one.
    pub fn new(video_id: &str, catalog_duration: Option<f64>, rules: AnalyticsRules) -> Self {
        Self {
            video_id: video_id.to_owned(),
            catalog_duration: catalog_duration.filter(|d| d.is_finite() && *d > 0.0),
            tutorial: None,
            from_catalog: false,
            rules,
            largest: None,
            current: None,
            counts: Vec::new(),
            unique_s: 0,
            plays: 0,
            watch_s: 0.0,
            completions: 0,
            viewers: Vec::new(),
            views: Vec::new(),
        }
    }

    /// The video's tutorial as the catalog says (else taken from the documents).
    pub fn tutorial(mut self, foss: &str, tutorial: &str, language: &str) -> Self {
        self.tutorial = Some((foss.to_owned(), tutorial.to_owned(), language.to_owned()));
        self.from_catalog = true;
        self
    }

    /// One learner's progress in one tutorial; skipped when it is staff's
    /// or does not hold the video.
    pub fn add(&mut self, p: &Progress) {
        if p.staff {
            return;
        }
        let Some(v) = p.videos.iter().find(|v| v.video_id == self.video_id) else {
            return;
        };
        if !self.from_catalog {
            let t = (p.foss.clone(), p.tutorial.clone(), p.language.clone());
            if self.tutorial.as_ref().is_none_or(|old| t < *old) {
                self.tutorial = Some(t);
            }
        }
        if let Some(d) = v.duration.filter(|d| d.is_finite() && *d > 0.0) {
            self.largest = Some(self.largest.map_or(d, |l| l.max(d)));
        }
        if p.completed && p.video_id.as_deref() == Some(self.video_id.as_str()) {
            self.completions += 1;
        }
        self.plays += v.plays;
        self.watch_s += v.played_s;
        self.add_views(v);
        match &mut self.current {
            Some(c) if c.learner == p.learner => {
                for [a, b] in v.seen.intervals() {
                    c.seen.insert(a..b);
                }
            }
            _ => {
                self.flush();
                self.current = Some(Viewer {
                    learner: p.learner.clone(),
                    seen: v.seen.clone(),
                });
            }
        }
    }

    /// The document.
    pub fn finish(mut self) -> VideoStats {
        self.flush();
        let duration = self.catalog_duration.or(self.largest);
        let width = self.rules.segment_s.max(1);
        let n = match duration {
            Some(d) => (d / f64::from(width)).ceil() as usize,
            None => self.viewers.len().max(self.views.len()),
        };
        self.viewers.resize(n, 0);
        self.views.resize(n, 0);
        let segments: Vec<Segment> = (0..n)
            .map(|k| Segment {
                start: k as u32 * width,
                viewers: self.viewers[k],
                views: self.views[k],
            })
            .collect();
        let (coverage_mean, coverage_p50) = match duration {
            Some(d) if !self.counts.is_empty() => {
                let mut c: Vec<f64> = self
                    .counts
                    .iter()
                    .map(|n| (f64::from(*n) / d).min(1.0))
                    .collect();
                c.sort_by(f64::total_cmp);
                let mean = c.iter().sum::<f64>() / c.len() as f64;
                (Some(mean), Some(c[(c.len() - 1) / 2]))
            }
            _ => (None, None),
        };
        let users_at_end = duration.map_or(0, |d| {
            let point = self.rules.progress.end_point(d).max(0.0);
            let k = (point / f64::from(width)) as usize;
            segments
                .get(k.min(n.saturating_sub(1)))
                .map_or(0, |s| s.viewers)
        });
        let (foss, tutorial, language) = match self.tutorial {
            Some((f, t, l)) => (Some(f), Some(t), Some(l)),
            None => (None, None, None),
        };
        VideoStats {
            id: self.video_id.clone(),
            video_id: self.video_id,
            foss,
            tutorial,
            language,
            duration,
            viewers: self.counts.len() as u64,
            plays: self.plays,
            watch_s: self.watch_s,
            unique_s: self.unique_s,
            coverage_mean,
            coverage_p50,
            completions: self.completions,
            users_at_start: segments.first().map_or(0, |s| s.viewers),
            users_at_end,
            segments,
            fence: 0,
            derived_at: DateTime::UNIX_EPOCH,
        }
    }

    /// Views per segment: progress counts them per 5 s; a wider segment
    /// takes the most of its 5-s parts per document (a stretch through it
    /// passes at least one part), exact when the widths agree.
    fn add_views(&mut self, v: &VideoProgress) {
        let width = self.rules.segment_s.max(1);
        let mut own: Vec<u64> = Vec::new();
        for (j, n) in v.views.iter().enumerate() {
            let k = (j as u32 * SEGMENT_S / width) as usize;
            if own.len() <= k {
                own.resize(k + 1, 0);
            }
            own[k] = own[k].max(u64::from(*n));
        }
        if self.views.len() < own.len() {
            self.views.resize(own.len(), 0);
        }
        for (k, n) in own.into_iter().enumerate() {
            self.views[k] += n;
        }
    }

    /// Counts the learner whose documents ended.
    fn flush(&mut self) {
        let Some(c) = self.current.take() else {
            return;
        };
        if c.seen.is_empty() {
            return;
        }
        self.unique_s += u64::from(c.seen.len());
        self.counts.push(match self.catalog_duration {
            Some(d) => c.seen.count_below(d.ceil().min(f64::from(u32::MAX)) as u32),
            None => c.seen.len(),
        });
        let width = self.rules.segment_s.max(1);
        let mut last: Option<usize> = None;
        for [a, b] in c.seen.intervals() {
            let (first, end) = ((a / width) as usize, ((b - 1) / width) as usize);
            let first = last.map_or(first, |l| first.max(l + 1));
            if first > end {
                continue;
            }
            if self.viewers.len() <= end {
                self.viewers.resize(end + 1, 0);
            }
            for k in first..=end {
                self.viewers[k] += 1;
            }
            last = Some(end);
        }
    }
}
