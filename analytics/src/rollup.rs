//! The `rollups` collection: the staff answers' read model. One document
//! per UTC day (`day:YYYY-MM-DD`, derived with `site_daily` from the same
//! fold) and one per month (`month:YYYY-MM`, the month's days merged), each
//! holding a [`Period`]: the site's totals, sessions and top lists, every
//! tutorial's totals, each day's totals per FOSS, and who was reached, as
//! [`Sketch`]es so distinct visitors and learners add up over any range.
//!
//! A range of a year is then read as at most 12 month documents and the
//! days at its edges, instead of every daily document and page view of the
//! range. The period travels as one value, `data`: the BSON document of the
//! period, base64-encoded (decode it with any BSON library). The server
//! handles one value per document instead of thousands, which is what made
//! reading ranges slow; text rather than binData because nx-27017, the
//! server the tests may use, cannot replace a document holding binData. `site_daily` and `tutorial_daily` stay the readable
//! figures; the rollups hold the same figures, from the same fold.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitlog_progress::DocumentError;

use crate::{Count, Sketch, Totals};

/// Entries a month's (or a range's) top list keeps.
pub const TOP_KEPT: usize = 100;

/// Distinct ids a part of a period reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// Visitor ids (cookies) of its page views.
    pub visitors: Sketch,
    /// Logged-in learners (`user:` keys).
    pub learners: Sketch,
}

impl Reach {
    /// The union.
    pub fn merge(&mut self, other: &Reach) {
        self.visitors.merge(&other.visitors);
        self.learners.merge(&other.learners);
    }
}

/// One FOSS's tutorial pages over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FossPart {
    /// The FOSS.
    pub foss: String,
    /// Its figures, the days' added up.
    #[serde(with = "totals_row")]
    pub totals: Totals,
    /// Who its pages reached.
    pub reach: Reach,
}

/// One FOSS's tutorial pages on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FossDay {
    /// The FOSS.
    pub foss: String,
    /// Its figures (`learners` and `anonymous_visitors` distinct over the
    /// FOSS's pages that day).
    #[serde(with = "totals_row")]
    pub totals: Totals,
}

/// One tutorial (and language) over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TutorialPart {
    /// The tutorial.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial.
    pub language: String,
    /// Its figures, the days' added up.
    #[serde(with = "totals_row")]
    pub totals: Totals,
    /// Who its pages reached.
    pub reach: Reach,
}

/// One day of a period: the series the charts draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayPart {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The site's figures that day.
    #[serde(with = "totals_row")]
    pub totals: Totals,
    /// Sessions that started that day.
    pub sessions: u64,
    /// Each FOSS's, by name.
    pub foss: Vec<FossDay>,
}

/// The figures of a day, a month or a range of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// The site's figures, the days' added up.
    #[serde(with = "totals_row")]
    pub totals: Totals,
    /// Sessions that started in it.
    pub sessions: u64,
    /// Those that were bounces.
    pub bounces: u64,
    /// Σ their `duration_s`.
    pub session_s_sum: f64,
    /// Who the site reached.
    pub reach: Reach,
    /// Visits per country: the days' top lists added up, most first.
    pub countries: Vec<Count>,
    /// Visits per browser.
    pub browsers: Vec<Count>,
    /// Visits per operating system.
    pub os: Vec<Count>,
    /// Visits per referring domain.
    pub referrers: Vec<Count>,
    /// Every FOSS whose tutorials were viewed (or completed, or watched)
    /// in it, by name.
    pub foss: Vec<FossPart>,
    /// Every tutorial viewed (or completed, or watched) in it, by name.
    pub tutorials: Vec<TutorialPart>,
    /// Its days, in order.
    pub days: Vec<DayPart>,
}

/// Periods added up: a month from its days, a range from its months and
/// days. The sum does not depend on the order the periods come in except
/// through floating-point addition, so callers add them in `_id` order.
#[derive(Debug, Default)]
pub struct PeriodSum {
    sum: Period,
    tops: [BTreeMap<String, u64>; 4],
    foss: BTreeMap<String, FossPart>,
    tutorials: BTreeMap<(String, String, String), TutorialPart>,
    days: BTreeMap<String, DayPart>,
}

impl PeriodSum {
    /// Adds `p`.
    pub fn add(&mut self, p: Period) {
        let s = &mut self.sum;
        s.totals.add(&p.totals);
        s.sessions += p.sessions;
        s.bounces += p.bounces;
        s.session_s_sum += p.session_s_sum;
        s.reach.merge(&p.reach);
        for (top, list) in self
            .tops
            .iter_mut()
            .zip([p.countries, p.browsers, p.os, p.referrers])
        {
            for c in list {
                *top.entry(c.name).or_default() += c.count;
            }
        }
        for f in p.foss {
            match self.foss.get_mut(&f.foss) {
                Some(mine) => {
                    mine.totals.add(&f.totals);
                    mine.reach.merge(&f.reach);
                }
                None => {
                    self.foss.insert(f.foss.clone(), f);
                }
            }
        }
        for t in p.tutorials {
            let key = (t.foss.clone(), t.tutorial.clone(), t.language.clone());
            match self.tutorials.get_mut(&key) {
                Some(mine) => {
                    mine.totals.add(&t.totals);
                    mine.reach.merge(&t.reach);
                }
                None => {
                    self.tutorials.insert(key, t);
                }
            }
        }
        for d in p.days {
            // A day comes once; a second copy (never written) is ignored.
            self.days.entry(d.day.clone()).or_insert(d);
        }
    }

    /// The sum.
    pub fn finish(self) -> Period {
        let mut p = self.sum;
        let [countries, browsers, os, referrers] = self.tops.map(|t| top(t, TOP_KEPT));
        (p.countries, p.browsers, p.os, p.referrers) = (countries, browsers, os, referrers);
        p.foss = self.foss.into_values().collect();
        p.tutorials = self.tutorials.into_values().collect();
        p.days = self.days.into_values().collect();
        p
    }
}

/// [`Totals`] as a row of ten numbers in field order: a rollup holds one
/// per tutorial, FOSS and day, and the field names would be most of its
/// bytes.
mod totals_row {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::Totals;

    type Row = (u64, u64, u64, u64, u64, f64, u64, u64, u64, f64);

    pub(super) fn serialize<S: Serializer>(t: &Totals, s: S) -> Result<S::Ok, S::Error> {
        let row: Row = (
            t.page_views,
            t.visits,
            t.learners,
            t.anonymous_visitors,
            t.returning_visits,
            t.time_on_page_s_sum,
            t.time_on_page_n,
            t.completions_auto,
            t.completions_manual,
            t.video_s,
        );
        row.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Totals, D::Error> {
        let r: Row = Deserialize::deserialize(d)?;
        Ok(Totals {
            page_views: r.0,
            visits: r.1,
            learners: r.2,
            anonymous_visitors: r.3,
            returning_visits: r.4,
            time_on_page_s_sum: r.5,
            time_on_page_n: r.6,
            completions_auto: r.7,
            completions_manual: r.8,
            video_s: r.9,
        })
    }
}

/// The `n` largest counts, most first, ties by name.
pub(crate) fn top(counts: BTreeMap<String, u64>, n: usize) -> Vec<Count> {
    let mut list: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    // The map gave them sorted by name; the sort is stable.
    list.sort_by_key(|c| std::cmp::Reverse(c.count));
    list.truncate(n);
    list
}

/// What a rollup covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// One UTC day.
    Day,
    /// One calendar month (UTC).
    Month,
    /// Every video, over all time: the [`VideoIndex`] (one document,
    /// `_id` `videos`).
    Videos,
}

impl Span {
    /// `day`, `month` or `videos`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Span::Day => "day",
            Span::Month => "month",
            Span::Videos => "videos",
        }
    }
}

/// The `_id` of the rollup of a day (`YYYY-MM-DD`) or month (`YYYY-MM`);
/// `videos` for the video index, whatever the key.
pub fn rollup_id(span: Span, key: &str) -> String {
    match span {
        Span::Videos => span.as_str().to_owned(),
        _ => format!("{}:{key}", span.as_str()),
    }
}

/// The period a rollup's `data` holds.
pub fn period_of(data: &str) -> Result<Period, DocumentError> {
    decode(data)
}

fn decode<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, DocumentError> {
    let bytes = STANDARD.decode(data).map_err(|e| {
        DocumentError::Read(<bson::de::Error as serde::de::Error>::custom(format!(
            "rollup data is not base64: {e}"
        )))
    })?;
    Ok(bson::from_slice(&bytes)?)
}

/// Every video's reach over all time, from `video_stats`: what the staff
/// lists need of them (the segments stay in `video_stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoIndex {
    /// By video id.
    pub videos: Vec<VideoReach>,
}

/// One video in the [`VideoIndex`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoReach {
    /// The video.
    pub video_id: String,
    /// Its FOSS, when known.
    pub foss: Option<String>,
    /// `video_stats.viewers`.
    pub viewers: u64,
    /// `video_stats.coverage_mean`.
    pub coverage_mean: Option<f64>,
}

impl VideoReach {
    /// The `video_stats` fields it is read from: a projection.
    pub fn fields() -> Document {
        bson::doc! { "foss": 1, "viewers": 1, "coverage_mean": 1 }
    }

    /// Reads it from a `video_stats` document (whole or projected on
    /// [`fields`](Self::fields)); `None` without a string `_id`.
    pub fn from_stats(d: &Document) -> Option<Self> {
        let viewers = match d.get("viewers") {
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            Some(bson::Bson::Int64(n)) => *n,
            _ => 0,
        };
        Some(Self {
            video_id: d.get_str("_id").ok()?.to_owned(),
            foss: d.get_str("foss").ok().map(str::to_owned),
            viewers: u64::try_from(viewers).unwrap_or(0),
            coverage_mean: d.get("coverage_mean").and_then(bson::Bson::as_f64),
        })
    }
}

/// One `rollups` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// [`rollup_id`].
    #[serde(rename = "_id")]
    pub id: String,
    /// `day`, `month` or `videos`.
    pub span: String,
    /// The first day it covers, `YYYY-MM-DD` (empty for `videos`).
    pub start: String,
    /// The [`Period`] (or [`VideoIndex`]): its BSON, base64-encoded.
    pub data: String,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

impl Rollup {
    /// The rollup of `period`, the `span` starting on `start` (`YYYY-MM-DD`).
    pub fn new(span: Span, start: &str, period: &Period) -> Result<Self, DocumentError> {
        let key = match span {
            Span::Day | Span::Videos => start,
            Span::Month => start.get(..7).unwrap_or(start),
        };
        Self::encoded(span, key, start, period)
    }

    /// The video index as a rollup.
    pub fn videos(index: &VideoIndex) -> Result<Self, DocumentError> {
        Self::encoded(Span::Videos, "", "", index)
    }

    fn encoded(
        span: Span,
        key: &str,
        start: &str,
        value: &impl Serialize,
    ) -> Result<Self, DocumentError> {
        Ok(Self {
            id: rollup_id(span, key),
            span: span.as_str().to_owned(),
            start: start.to_owned(),
            data: STANDARD.encode(bson::to_vec(value)?),
            fence: 0,
            derived_at: DateTime::UNIX_EPOCH,
        })
    }

    /// The period it holds.
    pub fn period(&self) -> Result<Period, DocumentError> {
        period_of(&self.data)
    }

    /// The video index it holds.
    pub fn video_index(&self) -> Result<VideoIndex, DocumentError> {
        decode(&self.data)
    }

    /// The stored document.
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }
}
